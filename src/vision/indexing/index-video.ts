import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import pLimit from 'p-limit';
import sharp from 'sharp';
import { z } from 'zod';
import type { IndexingSettings } from '../../config/schema.ts';
import type { Job } from '../../jobs/job-queue.ts';
import { PermanentJobError, type JobContext, type JobHandler, type JobLog } from '../../jobs/job-runner.ts';
import { toWav16kMono } from '../../media/audio.ts';
import type { FfmpegContext } from '../../media/binaries.ts';
import { assignKeyframes, planSegments, scanVideo } from '../../media/video-scan.ts';
import type { AnalyzerImage, DetectedObject, ImageLabel, ReadText, SpeechRange } from '../../perception/analyzers.ts';
import type { Transcript } from '../../perception/speech/transcriber.ts';
import { isAbortError, isOcularError, OcularError } from '../../spec/errors.ts';
import { SOURCE_FILE, type BlobStore } from '../../store/blob-store.ts';
import type { SegmentRecord, VideoRecord, VideoStore } from '../../store/video-store.ts';
import type { VideoLibrary } from '../video-library.ts';
import type { WebhookNotifier } from '../webhooks.ts';
import type { IndexingAnalyzers } from './analyzers.ts';
import { chooseAnalysisFrames, frameSignature, isSamePicture, type FrameSignature } from './frame-sampling.ts';
import { buildFactualCaption, clipRanges, mergeLabels, mergeObjects, mergeText, transcriptFor } from './describe-segment.ts';

/** Progress given to each stage (fractions of the whole job). */
const SCAN_END = 0.3;
const AUDIO_END = 0.4;
const SEGMENTS_END = 0.99;
const SEGMENT_THUMBNAIL_SIDE = 320;
/** Segments analysed at once. */
const SEGMENTS_IN_FLIGHT = 2;

const NO_TEXT: ReadText = { text: '', lines: [] };

interface SignedImage {
  image: AnalyzerImage;
  signature: FrameSignature;
}

/**
 * Runs `analyze` on the images at `positions`, except that an image showing the same picture as the previous
 * chosen one reuses that one's result. Calls are started together; the analyzer queues them.
 */
function runOnChanged<T>(
  images: readonly SignedImage[],
  positions: readonly number[],
  analyze: (image: AnalyzerImage) => Promise<T>,
): Promise<T[]> {
  const results: Array<Promise<T>> = [];
  let previous: { signature: FrameSignature; result: Promise<T> } | undefined;
  for (const position of positions) {
    const { image, signature } = images[position]!;
    const result = previous && isSamePicture(previous.signature, signature) ? previous.result : analyze(image);
    previous = { signature, result };
    results.push(result);
  }
  return Promise.all(results);
}

/** What the scan and audio stages found, saved on the video so a resumed job skips them. */
const planSchema = z.object({
  version: z.literal(1),
  segments: z.array(
    z.object({
      startSeconds: z.number(),
      endSeconds: z.number(),
      keyframes: z.array(z.object({ timeSeconds: z.number(), file: z.string() })),
    }),
  ),
  audio: z
    .object({
      speech: z.array(z.object({ startSeconds: z.number(), endSeconds: z.number() })).nullable(),
      transcript: z
        .object({
          text: z.string(),
          segments: z.array(z.object({ startSeconds: z.number(), endSeconds: z.number(), text: z.string() })),
        })
        .nullable(),
    })
    .optional(),
});

type IndexPlan = z.infer<typeof planSchema>;
type PlannedSegment = IndexPlan['segments'][number];

export interface VideoIndexerOptions {
  store: VideoStore;
  blobs: BlobStore;
  library: VideoLibrary;
  webhooks: WebhookNotifier;
  /** ffmpeg for indexing: long timeouts, since one pass reads the whole video. */
  ffmpeg: FfmpegContext;
  analyzers: IndexingAnalyzers;
  settings: IndexingSettings;
  log: JobLog;
  /**
   * Writes the whole-video summary video QA uses for global questions, after the segments and before the video
   * counts as indexed (present when a caption model is configured).
   */
  summarize?: ((videoId: string, signal: AbortSignal) => Promise<void>) | undefined;
  /**
   * Called once a video is indexed (semantic search queues the embedding of its segments; metrics record the
   * realtime factor): `mediaSeconds` of video took `runSeconds` in this run.
   */
  onIndexed?: ((videoId: string, timing: { mediaSeconds: number; runSeconds: number }) => void) | undefined;
}

/** The folder inside a video's blob folder that holds its keyframes and segment thumbnails. */
export const KEYFRAMES_DIR = 'keyframes';

function readPlan(video: VideoRecord): IndexPlan | undefined {
  if (video.plan === null) return undefined;
  try {
    return planSchema.parse(JSON.parse(video.plan));
  } catch {
    return undefined; // a plan from another version: scan again
  }
}

/** Whether a failure will recur however often the job is retried (the file itself is the problem). */
function isPermanent(error: unknown): boolean {
  return isOcularError(error) && (error.type === 'unsupported_media_type' || error.type === 'validation_error');
}

function describeFailure(error: unknown): string {
  if (isOcularError(error)) return error.message;
  return `indexing failed: ${(error as Error)?.message ?? String(error)}`;
}

/**
 * 16-bit little-endian PCM samples of a 44-byte-header WAV as floats in -1..1. Read through an Int16Array view
 * (copied first only when the bytes are not 2-aligned): an hour of 16 kHz audio is 58 M samples, and the
 * per-sample `readInt16LE` loop this replaces held the event loop for a noticeable time.
 */
function wavToFloat32(wav: Buffer): Float32Array {
  const count = Math.max(0, Math.floor((wav.length - 44) / 2));
  const offset = wav.byteOffset + 44;
  // Int16Array reads in the platform's byte order: little-endian on every platform Node ships prebuilt for.
  const pcm =
    offset % 2 === 0 ? new Int16Array(wav.buffer, offset, count) : new Int16Array(new Uint8Array(wav.subarray(44, 44 + count * 2)).buffer);
  const samples = new Float32Array(count);
  for (let index = 0; index < count; index++) samples[index] = pcm[index]! / 32768;
  return samples;
}

/**
 * The `video.index` job: scan (one decode pass: scene cuts and keyframes) -> audio (speech ranges and
 * transcript) -> per segment, the analyzers over its keyframes -> one row per segment, searchable at once.
 * Each stage's result is saved before the next starts and segments are written by their position in a
 * deterministic plan, so a job resumed after a crash redoes only the unfinished segment, never duplicates one.
 */
export function createIndexVideoHandler(options: VideoIndexerOptions): JobHandler {
  const { store, blobs, library, analyzers, settings } = options;

  return async (job: Job, context: JobContext) => {
    const { videoId } = z.object({ videoId: z.string() }).parse(job.payload);
    const video = await store.getVideoById(videoId);
    if (video === undefined || video.status === 'indexed') return; // deleted, or finished by an earlier run
    // Progress never goes back, also when a resumed run passes through stages an earlier run finished.
    let reached = video.progress;
    // Progress is written in the background (in order); a write that finds the row gone stops the run at the
    // next report, and `settled` waits for the writes before the steps that must not outlive the video.
    let gone = false;
    let lastWrite: Promise<boolean> = Promise.resolve(true);
    const deleted = (): OcularError => new OcularError('not_found_error', 'the video was deleted');
    const report = (stage: string, progress: number): void => {
      context.signal.throwIfAborted();
      if (gone) throw deleted();
      reached = Math.max(reached, progress);
      lastWrite = library.report(videoId, { status: 'indexing', stage, progress: reached });
      lastWrite.then(
        (exists) => void (gone ||= !exists),
        () => undefined, // surfaces in `settled`
      );
      context.reportProgress(reached);
    };
    const settled = async (): Promise<void> => {
      if (!(await lastWrite)) throw deleted();
    };
    const started = performance.now();
    try {
      report('scanning', Math.max(0.01, video.progress));
      // The soundtrack is analysed while the scan decodes the picture (a separate ffmpeg, and the VAD and the
      // transcriber have their own threads or hosts); it stops with the scan if the scan fails.
      const audioRun = new AbortController();
      const stopAudio = (): void => audioRun.abort(context.signal.reason);
      context.signal.addEventListener('abort', stopAudio, { once: true });
      const saved = readPlan(video)?.audio;
      const audio = saved !== undefined ? Promise.resolve(saved) : analyzeAudio(video, audioRun.signal);
      audio.catch(() => undefined); // awaited below; a scan failure must not leave it unhandled
      let withAudio: IndexPlan;
      try {
        const plan = await ensurePlan(video, context, report);
        withAudio = { ...plan, audio: await audio };
      } catch (error) {
        audioRun.abort(error);
        throw error;
      } finally {
        context.signal.removeEventListener('abort', stopAudio);
      }
      await store.updateVideo(video.id, { plan: JSON.stringify(withAudio) });
      report('analyzing', AUDIO_END);
      await indexSegments(video, withAudio, context, report);
      if (options.summarize) {
        report('summarizing', SEGMENTS_END);
        await options.summarize(videoId, context.signal);
      }
      await settled();
      if (!(await library.report(videoId, { status: 'indexed', stage: 'done', progress: 1 }))) throw deleted();
      context.reportProgress(1);
      await notify(videoId, 'video.indexed');
      const runSeconds = (performance.now() - started) / 1000;
      options.onIndexed?.(videoId, { mediaSeconds: video.metadata?.durationSeconds ?? 0, runSeconds });
    } catch (error) {
      if (context.signal.aborted || isAbortError(error)) throw error;
      if (isOcularError(error) && error.type === 'not_found_error') return; // deleted mid-way: nothing left to index
      const lastAttempt = job.attempts >= job.maxAttempts;
      if (isPermanent(error) || lastAttempt) {
        await lastWrite.catch(() => undefined);
        await library.report(videoId, {
          status: 'failed',
          stage: 'failed',
          progress: (await store.getVideoById(videoId))?.progress ?? 0,
          error: describeFailure(error),
        });
        await notify(videoId, 'video.failed');
        // Retrying cannot help (the file itself is the problem): the job fails now, the video says why.
        if (isPermanent(error)) throw new PermanentJobError(describeFailure(error), { cause: error });
      } else {
        options.log.warn('indexing attempt failed; it will be retried', { videoId, attempt: job.attempts, error: describeFailure(error) });
      }
      throw error;
    } finally {
      // With a blob store, this worker's copy of the video and its keyframes (all uploaded) goes.
      await blobs.dropLocal(videoId).catch(() => undefined);
    }
  };

  async function notify(videoId: string, event: 'video.indexed' | 'video.failed'): Promise<void> {
    const video = await store.getVideoById(videoId);
    if (video) await options.webhooks.notify(video, await store.getGroup(video.owner, video.groupId), event);
  }

  async function ensurePlan(
    video: VideoRecord,
    context: JobContext,
    report: (stage: string, progress: number) => void,
  ): Promise<IndexPlan> {
    const saved = readPlan(video);
    const dir = blobs.videoDir(video.id);
    if (
      saved &&
      (await blobs.hasAll(
        video.id,
        saved.segments.flatMap((segment) => segment.keyframes.map((frame) => frame.file)),
      ))
    ) {
      return saved;
    }

    // A new plan: rows written under an earlier one (whose keyframes are gone) no longer line up with it.
    await store.deleteSegments(video.id);
    const keyframesDir = join(dir, KEYFRAMES_DIR);
    await rm(keyframesDir, { recursive: true, force: true });
    await mkdir(keyframesDir, { recursive: true });
    const durationSeconds = video.metadata?.durationSeconds ?? 0;
    const scan = await scanVideo(
      await blobs.localFile(video.id, SOURCE_FILE, context.signal),
      {
        outputDir: keyframesDir,
        keyframeIntervalSeconds: settings.keyframeIntervalSeconds,
        maxKeyframeSide: settings.maxKeyframeSide,
      },
      options.ffmpeg,
      context.signal,
      (fraction) => report('scanning', 0.01 + fraction * (SCAN_END - 0.01)),
    );
    if (scan.keyframes.length === 0) throw new OcularError('unsupported_media_type', 'no frame of the video could be decoded');
    const segments = planSegments(scan.durationSeconds > 0 ? scan.durationSeconds : durationSeconds, scan.cuts, {
      minSeconds: settings.minSegmentSeconds,
      maxSeconds: settings.maxSegmentSeconds,
    });
    const plan: IndexPlan = {
      version: 1,
      segments: assignKeyframes(segments, scan.keyframes).map((segment) => ({
        startSeconds: segment.startSeconds,
        endSeconds: segment.endSeconds,
        keyframes: segment.keyframes.map((frame) => ({
          timeSeconds: frame.timeSeconds,
          file: `${KEYFRAMES_DIR}/${basename(frame.path)}`,
        })),
      })),
    };
    // The keyframes are durable before the plan that names them (with a blob store: uploaded), so a run that
    // resumes on another worker finds them.
    await blobs.persist(
      video.id,
      plan.segments.flatMap((segment) => segment.keyframes.map((frame) => frame.file)),
      'image/jpeg',
    );
    await store.updateVideo(video.id, { plan: JSON.stringify(plan) });
    report('scanning', SCAN_END);
    return plan;
  }

  async function analyzeAudio(video: VideoRecord, signal: AbortSignal): Promise<NonNullable<IndexPlan['audio']>> {
    const wantSpeech = analyzers.vad !== undefined;
    const wantTranscript = analyzers.transcriber !== undefined;
    let speech: SpeechRange[] | null = null;
    let transcript: Transcript | null = null;
    if (video.metadata?.hasAudio && (wantSpeech || wantTranscript)) {
      const wav = await toWav16kMono(await blobs.localFile(video.id, SOURCE_FILE, signal), options.ffmpeg, signal);
      if (analyzers.vad) speech = await analyzers.vad.detect(wavToFloat32(wav), signal);
      // With a detector that heard nobody, a transcriber would only hallucinate words into silence.
      if (analyzers.transcriber && (speech === null || speech.length > 0)) {
        transcript = await analyzers.transcriber.transcribe({ data: wav, mediaType: 'audio/wav', filename: 'audio.wav' }, signal);
      }
    } else if (wantSpeech) {
      speech = []; // no soundtrack: certainly no speech
    }
    return { speech, transcript: transcript && { text: transcript.text, segments: transcript.segments } };
  }

  async function indexSegments(
    video: VideoRecord,
    plan: IndexPlan,
    context: JobContext,
    report: (stage: string, progress: number) => void,
  ): Promise<void> {
    const done = await store.savedSegmentSeqs(video.id);
    const total = plan.segments.length;
    // Two segments in flight: while one waits for its slowest analyzer, the next keeps the other workers busy.
    // Rows are written by position, so finishing out of order (or resuming after a crash) is harmless.
    const limit = pLimit(SEGMENTS_IN_FLIGHT);
    const stop = new AbortController();
    const signal = AbortSignal.any([context.signal, stop.signal]);
    const runs = [...plan.segments.entries()]
      .filter(([seq]) => !done.has(seq))
      .map(([seq, segment]) =>
        limit(async () => {
          signal.throwIfAborted();
          const record = await analyzeSegment(video, plan, seq, segment, signal);
          signal.throwIfAborted();
          await store.saveSegment(record);
          done.add(seq);
          context.heartbeat();
          report('analyzing', AUDIO_END + (done.size / total) * (SEGMENTS_END - AUDIO_END));
        }),
      );
    // The first failure stops the rest; the job fails with it (saved segments stay for the retry).
    for (const run of runs) run.catch((error: unknown) => stop.abort(error));
    const results = await Promise.allSettled(runs);
    const failed = results.find((result): result is PromiseRejectedResult => result.status === 'rejected');
    if (failed) throw context.signal.aborted ? context.signal.reason : (stop.signal.reason ?? failed.reason);
  }

  async function analyzeSegment(
    video: VideoRecord,
    plan: IndexPlan,
    seq: number,
    segment: PlannedSegment,
    signal: AbortSignal,
  ): Promise<SegmentRecord> {
    const images = await Promise.all(
      segment.keyframes.map(async (frame) => {
        const data = await blobs.read(video.id, frame.file);
        const [{ width = 0, height = 0 }, signature] = await Promise.all([sharp(data).metadata(), frameSignature(data)]);
        return { image: { data, width, height } satisfies AnalyzerImage, signature };
      }),
    );
    const chosen = chooseAnalysisFrames(
      segment.keyframes.map((frame) => frame.timeSeconds),
      { ocrIntervalSeconds: settings.ocrIntervalSeconds, objectFrames: settings.objectFramesPerSegment },
    );
    // OCR and detection run at once (each analyzer has its own worker); a keyframe showing the same picture as
    // the one read before it takes that one's result instead of being read again.
    const [texts, detections] = await Promise.all([
      runOnChanged(images, chosen.ocr, (image) => analyzers.textReader?.read(image, signal) ?? Promise.resolve<ReadText>(NO_TEXT)),
      runOnChanged(images, chosen.objects, async (image) => {
        const [objects, labels] = await Promise.all([
          analyzers.objectDetector?.detect(image, signal) ?? Promise.resolve<DetectedObject[]>([]),
          analyzers.labeler?.label(image, signal) ?? Promise.resolve<ImageLabel[]>([]),
        ]);
        return { objects, labels };
      }),
    ]);
    const frames = images.map(({ image }) => ({ image }));
    const speechRanges = plan.audio?.speech ?? null;
    const speech = speechRanges === null ? [] : clipRanges(speechRanges, segment.startSeconds, segment.endSeconds);
    const transcript = transcriptFor(plan.audio?.transcript ?? undefined, segment.startSeconds, segment.endSeconds, seq === 0);
    const findings = {
      ocrText: mergeText(texts),
      objects: mergeObjects(detections.map((detection) => detection.objects)),
      labels: mergeLabels(detections.map((detection) => detection.labels)),
      transcript,
      hasSpeech: speechRanges === null ? null : speech.length > 0,
    };
    let caption = buildFactualCaption(findings);
    if (analyzers.captioner && frames.length > 0) {
      caption = await analyzers.captioner.caption(
        frames.map((frame) => frame.image),
        { findings: caption, startSeconds: segment.startSeconds, endSeconds: segment.endSeconds },
        signal,
      );
    }
    let thumbnail: string | null = null;
    const middle = frames[Math.floor(frames.length / 2)];
    if (video.thumbnails && middle) {
      thumbnail = `${KEYFRAMES_DIR}/segment-${String(seq).padStart(5, '0')}.jpg`;
      const resized = await sharp(middle.image.data)
        .resize({ width: SEGMENT_THUMBNAIL_SIDE, height: SEGMENT_THUMBNAIL_SIDE, fit: 'inside', withoutEnlargement: true })
        .jpeg({ quality: 80 })
        .toBuffer();
      await blobs.write(video.id, thumbnail, resized, 'image/jpeg');
    }
    return {
      videoId: video.id,
      seq,
      startSeconds: segment.startSeconds,
      endSeconds: segment.endSeconds,
      keyframes: segment.keyframes,
      ...findings,
      objects: [...findings.objects],
      labels: [...findings.labels],
      speech,
      caption,
      thumbnail,
    };
  }
}
