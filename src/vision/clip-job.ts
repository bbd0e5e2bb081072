import { join } from 'node:path';
import type { ChatService } from '../chat/chat-service.ts';
import { PermanentJobError, type JobContext, type JobHandler, type JobLog } from '../jobs/job-runner.ts';
import type { FfmpegContext } from '../media/binaries.ts';
import type { SubtitleCue } from '../media/clip-commands.ts';
import { isKeyframeTime, probeKeyframes, renderClip, type RenderPiece } from '../media/render-clip.ts';
import { Scratch } from '../media/scratch.ts';
import { probeMedia } from '../media/video.ts';
import { isOcularError } from '../spec/errors.ts';
import { SOURCE_FILE, type BlobStore } from '../store/blob-store.ts';
import type { ClipBlobStore, ClipMomentRecord, ClipOutputRecord, ClipPieceRecord, ClipRecord, ClipStore } from '../store/clip-store.ts';
import type { SegmentRecord, VideoRecord, VideoStore } from '../store/video-store.ts';
import { pickWithModel } from './clip-model.ts';
import { allowedRange, planMoments, type MomentCandidate, type VideoBounds } from './clip-moments.ts';
import type { ClipService } from './clips.ts';
import type { VideoSearch } from './video-search.ts';

export interface ClipJobOptions {
  clips: ClipService;
  store: ClipStore;
  blobs: ClipBlobStore;
  videos: VideoStore;
  videoBlobs: BlobStore;
  search: VideoSearch;
  ffmpeg: FfmpegContext;
  chat: ChatService;
  /** The model that picks and titles moments among the search's candidates; absent, the search ranking decides. */
  model: string | undefined;
  log: JobLog;
  /** How often a job waiting for a video's indexing looks again. @default 500 */
  indexingPollMs?: number | undefined;
}

/** Search results the moments are chosen from. */
const CANDIDATES = 50;
/** A cut may start this much earlier than asked, on a keyframe, so that it can be a stream copy. */
const SNAP_SECONDS = 1;
/** Words per subtitle cue: a segment's transcript is spread over its time in lines this long. */
const CUE_WORDS = 10;

const round = (seconds: number): number => Math.round(seconds * 1000) / 1000;

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason as Error);
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal.reason as Error);
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

function describeFailure(error: unknown): string {
  if (isOcularError(error) || error instanceof PermanentJobError) return error.message;
  return `clip generation failed: ${(error as Error)?.message ?? String(error)}`;
}

/** Errors retrying cannot fix: the media itself, or what the request asks of it. */
function isPermanent(error: unknown): boolean {
  return (
    error instanceof PermanentJobError ||
    (isOcularError(error) && (error.type === 'unsupported_media_type' || error.type === 'validation_error'))
  );
}

/**
 * Subtitle cues for the output, from the pieces' segment transcripts: each segment's words are spread evenly
 * over its time, CUE_WORDS at a time (transcripts carry no word timings), and the lines that fall inside a
 * piece are shifted to the output's timeline.
 */
export function buildCues(pieces: readonly ClipPieceRecord[], segmentsOf: (videoId: string) => readonly SegmentRecord[]): SubtitleCue[] {
  const cues: SubtitleCue[] = [];
  let offset = 0;
  for (const piece of pieces) {
    for (const segment of segmentsOf(piece.videoId)) {
      const words = segment.transcript.split(/\s+/).filter((word) => word !== '');
      if (words.length === 0 || segment.endSeconds <= piece.startSeconds || segment.startSeconds >= piece.endSeconds) continue;
      const lines = Math.ceil(words.length / CUE_WORDS);
      const step = (segment.endSeconds - segment.startSeconds) / lines;
      for (let line = 0; line < lines; line++) {
        const from = Math.max(segment.startSeconds + line * step, piece.startSeconds);
        const to = Math.min(segment.startSeconds + (line + 1) * step, piece.endSeconds);
        if (to - from < 0.05) continue;
        cues.push({
          startSeconds: round(from - piece.startSeconds + offset),
          endSeconds: round(to - piece.startSeconds + offset),
          text: words.slice(line * CUE_WORDS, (line + 1) * CUE_WORDS).join(' '),
        });
      }
    }
    offset += piece.endSeconds - piece.startSeconds;
  }
  return cues;
}

/**
 * The clip job: waits for the videos' indexing, chooses the moments (search over the index, then the model
 * when one is configured), saves them as the plan, and renders each output into the clip's folder. A rerun
 * (retry, restart after a crash) keeps the plan and the outputs already recorded, and renders the rest.
 */
export function createClipJobHandler(options: ClipJobOptions): JobHandler {
  const { clips, store, blobs, videos, videoBlobs, ffmpeg, log } = options;
  const pollMs = options.indexingPollMs ?? 500;
  /** A video's file for ffmpeg: the blob itself on disk; with a store, a copy in the clip's own working folder. */
  const sourceOf = (clipId: string, videoId: string, signal: AbortSignal): Promise<string> =>
    videoBlobs.localFile(videoId, SOURCE_FILE, signal, join(blobs.sourcesDir(clipId), videoId));

  const waitForVideos = async (clip: ClipRecord, context: JobContext): Promise<Map<string, VideoRecord>> => {
    let reported = false;
    for (;;) {
      const ready = new Map<string, VideoRecord>();
      let waiting = 0;
      for (const id of clip.request.videoIds) {
        const video = await videos.getVideoById(id);
        if (video === undefined) throw new PermanentJobError(`video "${id}" was deleted`);
        if (video.status === 'failed') throw new PermanentJobError(`video "${id}" could not be indexed: ${video.error ?? 'unknown error'}`);
        if (video.status === 'indexed' && video.metadata !== null) ready.set(id, video);
        else if (video.status === 'pending' && !video.indexRequested) {
          throw new PermanentJobError(`video "${id}" was uploaded without indexing (index=false), so it has no moments to choose from`);
        } else waiting += 1;
      }
      if (waiting === 0) return ready;
      if (!reported) await clips.report(clip.id, { status: 'processing', stage: 'waiting_for_indexing', progress: 0 });
      reported = true;
      await sleep(pollMs, context.signal);
    }
  };

  const choose = async (clip: ClipRecord, ready: Map<string, VideoRecord>, context: JobContext): Promise<ClipMomentRecord[]> => {
    const { request } = clip;
    const { signal } = context;
    await clips.report(clip.id, { status: 'processing', stage: 'choosing', progress: 0 });
    const outcome = await options.search.search(
      { owner: clip.owner, query: request.prompt, maxResults: CANDIDATES, offset: 0, videoIds: request.videoIds },
      signal,
    );
    let candidates: MomentCandidate[] = outcome.hits.map((hit) => ({
      videoId: hit.videoId,
      startSeconds: hit.startSeconds,
      endSeconds: hit.endSeconds,
      text: [hit.caption, hit.transcript].filter((text) => text !== '').join(' '),
    }));
    if (candidates.length === 0) {
      // Nothing in the index matches the prompt: the videos' segments in time order still make clips.
      for (const id of request.videoIds) {
        for (const segment of await videos.listSegments(id)) {
          candidates.push({
            videoId: id,
            startSeconds: segment.startSeconds,
            endSeconds: segment.endSeconds,
            text: [segment.caption, segment.transcript].filter((text) => text !== '').join(' '),
          });
        }
      }
    }
    if (options.model !== undefined && candidates.length > 0) {
      const picked = await pickWithModel(
        options.chat,
        options.model,
        request.prompt,
        candidates,
        request.generation.numGenerations,
        signal,
      );
      if (picked.ok) candidates = picked.candidates;
      else log.warn('the clip model gave no usable choice; the search ranking decides', { clipId: clip.id, reason: picked.reason });
    }
    const bounds = new Map<string, VideoBounds>(
      [...ready].map(([id, video]) => [id, { videoId: id, durationSeconds: video.metadata!.durationSeconds }]),
    );
    let plan = planMoments(candidates, bounds, request.generation);
    if (plan.length === 0) {
      const longest = Math.max(
        ...[...bounds.values()].map((video) => {
          const range = allowedRange(video, request.generation);
          return range.hi - range.lo;
        }),
      );
      throw new PermanentJobError(
        longest < request.generation.minDurationSeconds
          ? `the source range holds ${round(Math.max(0, longest))} s of video, less than min_duration_seconds (${request.generation.minDurationSeconds})`
          : 'the videos hold no indexed moment to cut a clip from',
      );
    }
    if (!changesFrames(clip) && request.generation.template === 'moments') plan = await snapToKeyframes(plan, clip, ready, signal);
    return plan;
  };

  /** Moves each cut's start back onto a keyframe at most SNAP_SECONDS earlier (inside the bounds), so it can be a stream copy. */
  const snapToKeyframes = async (
    plan: ClipMomentRecord[],
    clip: ClipRecord,
    ready: Map<string, VideoRecord>,
    signal: AbortSignal,
  ): Promise<ClipMomentRecord[]> => {
    const snapped: ClipMomentRecord[] = [];
    for (const moment of plan) {
      const piece = moment.pieces[0]!;
      const video = ready.get(piece.videoId)!;
      const range = allowedRange({ videoId: video.id, durationSeconds: video.metadata!.durationSeconds }, clip.request.generation);
      // Never back into another moment of the same video: moments do not overlap.
      const floor = Math.max(
        range.lo,
        ...plan
          .flatMap((other) => other.pieces)
          .filter((other) => other.videoId === piece.videoId && other.endSeconds <= piece.startSeconds)
          .map((other) => other.endSeconds),
      );
      const keyframes = await probeKeyframes(
        await sourceOf(clip.id, video.id, signal),
        Math.max(0, piece.startSeconds - SNAP_SECONDS),
        piece.startSeconds + 0.001,
        ffmpeg,
        signal,
      );
      // The start of the file counts as a keyframe (a stream copy from 0 is exact); the latest one wins.
      const keyframe = [...keyframes, ...(piece.startSeconds <= SNAP_SECONDS ? [0] : [])]
        .sort((a, b) => a - b)
        .filter((time) => time <= piece.startSeconds + 0.001 && time >= floor && piece.startSeconds - time <= SNAP_SECONDS)
        .at(-1);
      if (keyframe === undefined) {
        snapped.push(moment);
        continue;
      }
      const start = round(keyframe);
      const end = round(Math.min(piece.endSeconds, start + clip.request.generation.maxDurationSeconds));
      snapped.push({ ...moment, pieces: [{ ...piece, startSeconds: start, endSeconds: end }] });
    }
    return snapped;
  };

  const renderOutput = async (
    clip: ClipRecord,
    index: number,
    moment: ClipMomentRecord,
    ready: Map<string, VideoRecord>,
    context: JobContext,
  ): Promise<ClipOutputRecord> => {
    const { rendering } = clip.request;
    const total = clip.plan?.length ?? 1;
    const scratch = await Scratch.create(blobs.clipDir(clip.id));
    try {
      const inputs = new Map<string, string>();
      for (const piece of moment.pieces) inputs.set(piece.videoId, await sourceOf(clip.id, piece.videoId, context.signal));
      const pieces: RenderPiece[] = moment.pieces.map((piece) => {
        const video = ready.get(piece.videoId)!;
        const metadata = video.metadata!;
        return {
          inputPath: inputs.get(video.id)!,
          startSeconds: piece.startSeconds,
          endSeconds: piece.endSeconds,
          source: { width: metadata.width, height: metadata.height, hasAudio: metadata.hasAudio, fps: metadata.avgFps },
        };
      });
      const segmentsOf = new Map<string, SegmentRecord[]>();
      if (rendering.subtitles) {
        for (const piece of moment.pieces) {
          if (!segmentsOf.has(piece.videoId)) segmentsOf.set(piece.videoId, await videos.listSegments(piece.videoId));
        }
      }
      const cues = rendering.subtitles ? buildCues(moment.pieces, (id) => segmentsOf.get(id) ?? []) : [];
      let startIsKeyframe = false;
      if (pieces.length === 1 && !changesFrames(clip)) {
        const [piece] = pieces;
        const keyframes = await probeKeyframes(
          piece!.inputPath,
          Math.max(0, piece!.startSeconds - 0.01),
          piece!.startSeconds + 0.01,
          ffmpeg,
          context.signal,
        );
        startIsKeyframe = isKeyframeTime(piece!.startSeconds, keyframes);
      }
      const target = scratch.path('.mp4');
      // ffmpeg reports progress faster than rows are written: write the latest fraction, one write at a time.
      let latest: number | undefined;
      let writing: Promise<void> | undefined;
      const saveProgress = (progress: number): void => {
        latest = progress;
        writing ??= (async () => {
          while (latest !== undefined) {
            const next = latest;
            latest = undefined;
            await clips.report(clip.id, { status: 'processing', stage: 'rendering', progress: next }).catch(() => false);
          }
          writing = undefined;
        })();
      };
      const mode = await renderClip(
        {
          pieces,
          settings: {
            aspectRatio: rendering.aspectRatio ?? undefined,
            resolution: rendering.resolution ?? undefined,
            fit: rendering.fit,
            cues,
          },
          outputPath: target,
        },
        {
          ffmpeg,
          scratch,
          signal: context.signal,
          startIsKeyframe,
          onProgress: (fraction) => {
            const progress = (index + fraction) / total;
            saveProgress(progress);
            context.reportProgress(progress);
          },
        },
      );
      const probe = await probeMedia(target, ffmpeg, context.signal);
      const file = blobs.outputFile(index);
      await blobs.saveOutput(clip.id, index, target);
      await writing; // a late progress write must not land after the next stage's
      return { index, file, title: moment.title, durationSeconds: round(probe.durationSeconds), pieces: moment.pieces, mode };
    } finally {
      await scratch.dispose();
    }
  };

  return async (job, context) => {
    const { clipId } = job.payload as { clipId: string };
    let clip = await store.getById(clipId);
    if (clip === undefined) return; // deleted before the job ran
    try {
      const ready = await waitForVideos(clip, context);
      if (clip.plan === null) {
        const plan = await choose(clip, ready, context);
        await store.update(clip.id, { plan });
        clip = { ...clip, plan };
      }
      await blobs.createClipDir(clip.id);
      // A render the previous attempt left half done (its scratch folder) goes; recorded outputs stay.
      await blobs.removeLeftovers(
        clip.id,
        clip.outputs.map((output) => output.file),
      );
      const outputs = [...clip.outputs];
      for (const [index, moment] of clip.plan!.entries()) {
        if (outputs.some((output) => output.index === index)) continue;
        await clips.report(clip.id, { status: 'processing', stage: 'rendering', progress: index / clip.plan!.length });
        outputs.push(await renderOutput(clip, index, moment, ready, context));
        if (!(await store.update(clip.id, { outputs }))) return; // deleted meanwhile
      }
      // Let the working copy go before saying so: whoever sees `completed` finds this worker cleaned up.
      await blobs.dropLocal(clip.id).catch(() => undefined);
      await clips.report(clip.id, { status: 'completed', stage: 'done', progress: 1 });
    } catch (error) {
      if (context.signal.aborted) throw error;
      if (isPermanent(error) || job.attempts >= job.maxAttempts) {
        await clips.report(clipId, {
          status: 'failed',
          stage: 'failed',
          progress: (await store.getById(clipId))?.progress ?? 0,
          error: describeFailure(error),
        });
        if (isPermanent(error)) throw new PermanentJobError(describeFailure(error), { cause: error });
      } else {
        log.warn('clip attempt failed; it will be retried', { clipId, attempt: job.attempts, error: describeFailure(error) });
      }
      throw error;
    } finally {
      // With a blob store: the copies of the videos and the uploaded outputs go from this worker.
      await blobs.dropLocal(clipId).catch(() => undefined);
    }
  };
}

/** Whether the request asks for anything that a stream copy cannot give (subtitles, another frame). */
function changesFrames(clip: ClipRecord): boolean {
  const { rendering } = clip.request;
  return rendering.subtitles || rendering.aspectRatio !== null || rendering.resolution !== null;
}
