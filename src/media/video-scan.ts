import { mkdir, open, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { OcularError, validationError } from '../spec/errors.ts';
import type { FfmpegContext } from './binaries.ts';
import { buildVideoScanArgs } from './ffmpeg-commands.ts';
import { runProcess, toMediaError } from './run-process.ts';
import { formatTimestamp, probeMedia, type MediaProbe } from './video.ts';

// One decoding pass over a video for the library indexer: scene-change scores from tiny grayscale frames,
// computed here as they stream out of ffmpeg, and JPEG keyframes at a fixed interval written to disk.
// planSegments and assignKeyframes turn that into the segments the analyzers index.

export interface VideoScanOptions {
  /** Directory the keyframes are written into as `keyframe-000000.jpg`...; created when missing. Keyframe files already there are replaced. */
  outputDir: string;
  /** The file's probe when the caller already has it (its duration drives progress), to save running ffprobe again. */
  probe?: MediaProbe | undefined;
  /** Seconds between keyframes, to the millisecond. @default 2 */
  keyframeIntervalSeconds?: number | undefined;
  /** Longest side of a keyframe JPEG; smaller videos are not enlarged. @default 1280 */
  maxKeyframeSide?: number | undefined;
  /** Analysis frames per second for scene detection; a cut is located to about half a frame period. @default 4 */
  analysisFps?: number | undefined;
  /** Scene score (0..1) above which a change counts as a cut. @default 0.3 */
  sceneThreshold?: number | undefined;
  /** Decoder threads; 0 lets ffmpeg use every core. Set 1 or 2 when several scans run at once. @default 0 */
  threads?: number | undefined;
  /**
   * Milliseconds the whole pass may take. A scan decodes the entire video, so the default grows with it.
   * @default context.timeoutMs + 4 x the video's duration
   */
  timeoutMs?: number | undefined;
}

/** How much the picture changed from the previous analysis frame to the one at `timeSeconds`: 0 (same) to 1. */
export interface SceneScore {
  timeSeconds: number;
  score: number;
}

export interface VideoKeyframe {
  /** The instant this picture is on screen: the frame shown at exactly `timeSeconds` (its own timestamp is at most one frame earlier). */
  timeSeconds: number;
  /** The JPEG, inside `outputDir`. */
  path: string;
  width: number;
  height: number;
}

export interface VideoScan {
  /**
   * Where the video ends on the file's timeline: the probe's duration of the file or of the video track,
   * whichever is nearer to how far decoding got, or that decoded length when neither is within a second.
   */
  durationSeconds: number;
  /** One score per analysis frame after the first, in time order. */
  sceneScores: SceneScore[];
  /** Times of the detected scene changes (scores above `sceneThreshold` that are local peaks), ascending. */
  cuts: number[];
  /** At `0, interval, 2 x interval, ...` up to the end of the video, ascending. */
  keyframes: VideoKeyframe[];
}

export interface VideoSegment {
  startSeconds: number;
  endSeconds: number;
}

export interface SegmentPlanOptions {
  /** @default 5 */
  minSeconds?: number | undefined;
  /** At least twice `minSeconds`, so that any span longer than it can be split evenly into valid pieces. @default 15 */
  maxSeconds?: number | undefined;
}

const ANALYSIS_WIDTH = 64;
const ANALYSIS_HEIGHT = 36;
const ANALYSIS_FRAME_BYTES = ANALYSIS_WIDTH * ANALYSIS_HEIGHT;
const KEYFRAME_PREFIX = 'keyframe-';
const KEYFRAME_NAME = /^keyframe-(\d{6,})\.jpg$/;
/** Progress is reported in steps of at least this much, so a long video does not call back thousands of times. */
const PROGRESS_STEP = 0.005;
/** How far the decoded length may fall short of (or run past) the probe's before the decoded one is believed. */
const DURATION_TOLERANCE_SECONDS = 1;
/** Decoding may end this much (the larger of the two) before the probe's duration before the file counts as cut off. */
const TRUNCATION_ALLOWANCE_SECONDS = 2;
const TRUNCATION_ALLOWANCE_SHARE = 0.1;

interface ResolvedScanOptions {
  keyframeIntervalMs: number;
  analysisIntervalMs: number;
  maxKeyframeSide: number;
  sceneThreshold: number;
  threads: number;
}

function resolveOptions(options: VideoScanOptions): ResolvedScanOptions {
  const keyframeIntervalSeconds = options.keyframeIntervalSeconds ?? 2;
  if (!(Number.isFinite(keyframeIntervalSeconds) && keyframeIntervalSeconds >= 0.05 && keyframeIntervalSeconds <= 3600)) {
    throw validationError('keyframeIntervalSeconds must be between 0.05 and 3600', 'keyframeIntervalSeconds');
  }
  const analysisFps = options.analysisFps ?? 4;
  if (!(Number.isFinite(analysisFps) && analysisFps >= 0.5 && analysisFps <= 30)) {
    throw validationError('analysisFps must be between 0.5 and 30', 'analysisFps');
  }
  const maxKeyframeSide = options.maxKeyframeSide ?? 1280;
  if (!(Number.isFinite(maxKeyframeSide) && maxKeyframeSide >= 16)) {
    throw validationError('maxKeyframeSide must be at least 16', 'maxKeyframeSide');
  }
  const sceneThreshold = options.sceneThreshold ?? 0.3;
  if (!(Number.isFinite(sceneThreshold) && sceneThreshold > 0 && sceneThreshold <= 1)) {
    throw validationError('sceneThreshold must be above 0 and at most 1', 'sceneThreshold');
  }
  const threads = options.threads ?? 0;
  if (!(Number.isInteger(threads) && threads >= 0)) throw validationError('threads must be a whole number, 0 or more', 'threads');
  if (options.outputDir === '') throw validationError('outputDir is required', 'outputDir');
  // Whole milliseconds: the fps filters get exact rationals (1000/ms), and timestamps are n x ms / 1000.
  return {
    keyframeIntervalMs: Math.round(keyframeIntervalSeconds * 1000),
    analysisIntervalMs: Math.round(1000 / analysisFps),
    maxKeyframeSide: Math.floor(maxKeyframeSide),
    sceneThreshold,
    threads,
  };
}

/**
 * Scores each analysis frame against the previous one as ffmpeg's `scene` select function does: with `mafd`
 * the mean absolute luma difference (0..255), the score is min(mafd, |mafd - previous mafd|) / 100, clipped
 * to 1. The second term keeps steady motion (a pan, a moving pattern: high but even mafd) from reading as a
 * run of cuts, while a cut is one isolated jump.
 */
class SceneScorer {
  private previousFrame: Uint8Array | undefined;
  private previousMafd = 0;

  /** The score of `frame` against the last one pushed; undefined for the first frame. */
  push(frame: Uint8Array): number | undefined {
    const previous = this.previousFrame;
    this.previousFrame = frame;
    if (previous === undefined) return undefined;
    let sum = 0;
    for (let index = 0; index < frame.length; index++) sum += Math.abs(frame[index]! - previous[index]!);
    const mafd = sum / frame.length;
    const score = Math.min(1, Math.min(mafd, Math.abs(mafd - this.previousMafd)) / 100);
    this.previousMafd = mafd;
    return Math.round(score * 10_000) / 10_000;
  }
}

/** Calls `onFrame` with each complete `frameBytes`-byte frame of a raw stream arriving in arbitrary chunks. */
function createFrameSplitter(frameBytes: number, onFrame: (frame: Buffer) => void): (chunk: Buffer) => void {
  let partial: Buffer = Buffer.alloc(0);
  return (chunk) => {
    const data = partial.length === 0 ? chunk : Buffer.concat([partial, chunk]);
    let offset = 0;
    for (; data.length - offset >= frameBytes; offset += frameBytes) onFrame(data.subarray(offset, offset + frameBytes));
    partial = data.subarray(offset);
  };
}

/**
 * The times of scores above `threshold` that are local peaks (at least the previous score, more than the
 * next), so a change spread over two analysis frames (a short dissolve, a cut between samples) is one cut.
 */
export function findCuts(sceneScores: readonly SceneScore[], threshold: number): number[] {
  const cuts: number[] = [];
  for (const [index, { timeSeconds, score }] of sceneScores.entries()) {
    if (score <= threshold) continue;
    const before = sceneScores[index - 1]?.score ?? 0;
    const after = sceneScores[index + 1]?.score ?? 0;
    if (score >= before && score > after) cuts.push(timeSeconds);
  }
  return cuts;
}

/** Width and height from a JPEG's start-of-frame header, or undefined when there is none in `bytes`. */
function parseJpegSize(bytes: Buffer): { width: number; height: number } | undefined {
  if (bytes[0] !== 0xff || bytes[1] !== 0xd8) return undefined;
  let offset = 2;
  while (offset + 9 <= bytes.length) {
    if (bytes[offset] !== 0xff) return undefined;
    const marker = bytes[offset + 1]!;
    if (marker === 0xff) {
      offset += 1; // fill byte
      continue;
    }
    // SOF0..SOF15, except DHT (C4), JPG (C8) and DAC (CC), which share the range.
    if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
      return { height: bytes.readUInt16BE(offset + 5), width: bytes.readUInt16BE(offset + 7) };
    }
    offset += 2 + bytes.readUInt16BE(offset + 2);
  }
  return undefined;
}

async function readJpegSize(path: string): Promise<{ width: number; height: number }> {
  const handle = await open(path, 'r');
  try {
    // ffmpeg's JPEGs carry no EXIF or thumbnail, so the frame header is within the first few hundred bytes.
    const { bytesRead, buffer } = await handle.read(Buffer.alloc(16 * 1024), 0, 16 * 1024, 0);
    const size = parseJpegSize(buffer.subarray(0, bytesRead));
    if (size === undefined) throw new OcularError('server_error', 'ffmpeg wrote a keyframe that is not a JPEG');
    return size;
  } finally {
    await handle.close();
  }
}

/** Indices of the keyframe files in `directory`, ascending. */
async function listKeyframeIndices(directory: string): Promise<number[]> {
  const names = await readdir(directory);
  return names
    .map((name) => KEYFRAME_NAME.exec(name)?.[1])
    .filter((digits) => digits !== undefined)
    .map(Number)
    .sort((a, b) => a - b);
}

const keyframePath = (directory: string, index: number): string =>
  join(directory, `${KEYFRAME_PREFIX}${String(index).padStart(6, '0')}.jpg`);

async function removeKeyframes(directory: string): Promise<void> {
  const indices = await listKeyframeIndices(directory).catch(() => []);
  await Promise.all(indices.map((index) => rm(keyframePath(directory, index), { force: true })));
}

/**
 * Decodes the video once (see `buildVideoScanArgs`) and returns its scene-change scores, the cuts among them
 * and the keyframes written to `options.outputDir`. `onProgress` gets increasing fractions of the duration
 * while decoding and 1 on success. A file that is not a video, has no video stream or yields no frame is
 * `unsupported_media_type`; an abort rejects with the signal's reason once ffmpeg has exited, and a failed
 * or aborted scan removes the keyframes it wrote.
 */
export async function scanVideo(
  path: string,
  options: VideoScanOptions,
  context: FfmpegContext,
  signal?: AbortSignal,
  onProgress?: (fraction: number) => void,
): Promise<VideoScan> {
  const resolved = resolveOptions(options);
  if (signal?.aborted) throw signal.reason;
  const probe = options.probe ?? (await probeMedia(path, context, signal));
  if (probe.video === undefined) throw new OcularError('unsupported_media_type', 'the file has no video stream');
  // The file's duration is the timeline the samples are on (a video track may start late); the video
  // track's own is its length, which is what decoding must reach for the file not to count as cut off.
  const fileDuration = probe.durationSeconds;
  const videoLength = probe.video.durationSeconds ?? fileDuration;
  const { outputDir } = options;
  await mkdir(outputDir, { recursive: true });
  await removeKeyframes(outputDir);

  const sceneScores: SceneScore[] = [];
  const scorer = new SceneScorer();
  let sampleCount = 0;
  let reported = 0;
  const report = (fraction: number): void => {
    if (onProgress === undefined || !(fraction - reported >= PROGRESS_STEP || (fraction === 1 && reported < 1))) return;
    reported = fraction;
    onProgress(fraction);
  };
  const onFrame = (frame: Buffer): void => {
    // The rest of a chunk that arrived with the abort: ffmpeg is being killed, so nothing more is reported.
    if (signal?.aborted) return;
    const timeSeconds = (sampleCount * resolved.analysisIntervalMs) / 1000;
    sampleCount += 1;
    const score = scorer.push(frame);
    if (score !== undefined) sceneScores.push({ timeSeconds, score });
    // Short of 1 while ffmpeg finishes the last keyframes; 1 is reported once everything is in place.
    if (fileDuration > 0) report(Math.min(0.99, (sampleCount * resolved.analysisIntervalMs) / 1000 / fileDuration));
  };

  const args = buildVideoScanArgs({
    inputPath: path,
    streamIndex: probe.video.index,
    analysisIntervalMs: resolved.analysisIntervalMs,
    analysisWidth: ANALYSIS_WIDTH,
    analysisHeight: ANALYSIS_HEIGHT,
    keyframeIntervalMs: resolved.keyframeIntervalMs,
    maxKeyframeSide: resolved.maxKeyframeSide,
    keyframePathPrefix: join(outputDir, KEYFRAME_PREFIX),
    threads: resolved.threads,
  });
  // Sample n stands for [n - 1/2, n + 1/2) periods, so the count in periods is how far decoding got.
  const decodedSeconds = (): number => (sampleCount * resolved.analysisIntervalMs) / 1000;
  const keyframes: VideoKeyframe[] = [];
  try {
    try {
      await runProcess(context.binaries.ffmpeg, args, {
        timeoutMs: options.timeoutMs ?? context.timeoutMs + 4 * 1000 * fileDuration,
        signal,
        onStdout: createFrameSplitter(ANALYSIS_FRAME_BYTES, onFrame),
      });
    } catch (error) {
      throw toMediaError(error, 'scanning the video', path);
    }
    const indices = await listKeyframeIndices(outputDir);
    if (indices.length === 0 || sampleCount === 0) {
      throw new OcularError('unsupported_media_type', 'no frame could be decoded from the video');
    }
    // ffmpeg reads a cut-off file up to the cut and exits 0; indexing the rest of a video that is not there
    // would be silently wrong. The allowance covers a video stream that ends a little before the audio.
    const allowance = Math.max(TRUNCATION_ALLOWANCE_SECONDS, videoLength * TRUNCATION_ALLOWANCE_SHARE);
    if (videoLength > 0 && decodedSeconds() < videoLength - allowance) {
      throw new OcularError(
        'unsupported_media_type',
        `the video is cut off: its frames stop at ${formatTimestamp(decodedSeconds())} of ${formatTimestamp(videoLength)}`,
      );
    }
    for (const [position, index] of indices.entries()) {
      // The fps filter numbers its output without gaps (and older files were removed): a gap is not ours.
      if (index !== position) break;
      const file = keyframePath(outputDir, index);
      keyframes.push({ timeSeconds: (index * resolved.keyframeIntervalMs) / 1000, path: file, ...(await readJpegSize(file)) });
    }
  } catch (error) {
    await removeKeyframes(outputDir);
    throw error;
  }

  // The stated duration nearest to the decoded one when it agrees, for a clean number; else what decoded.
  const decoded = decodedSeconds();
  const stated = [fileDuration, videoLength]
    .filter((candidate) => candidate > 0 && Math.abs(decoded - candidate) <= DURATION_TOLERANCE_SECONDS)
    .sort((a, b) => Math.abs(decoded - a) - Math.abs(decoded - b));
  const durationSeconds = stated[0] ?? decoded;
  report(1);
  return { durationSeconds, sceneScores, cuts: findCuts(sceneScores, resolved.sceneThreshold), keyframes };
}

/**
 * Splits [0, duration] into contiguous segments of `minSeconds`..`maxSeconds`, preferring the given cuts as
 * boundaries. Cuts are taken in time order, each kept when it is at least `minSeconds` after the last kept
 * one and before the end (so a short last scene merges into the one before); then every scene longer than
 * `maxSeconds` is split into the fewest equal pieces that fit. A video shorter than `minSeconds` (0 included)
 * is one segment. Pure and deterministic: indexing resumes after a crash by segment index.
 */
export function planSegments(durationSeconds: number, cuts: readonly number[], options: SegmentPlanOptions = {}): VideoSegment[] {
  const minSeconds = options.minSeconds ?? 5;
  const maxSeconds = options.maxSeconds ?? 15;
  if (!(Number.isFinite(minSeconds) && minSeconds > 0)) throw validationError('minSeconds must be above 0', 'minSeconds');
  if (!(Number.isFinite(maxSeconds) && maxSeconds >= 2 * minSeconds)) {
    throw validationError('maxSeconds must be at least twice minSeconds', 'maxSeconds');
  }
  if (!(Number.isFinite(durationSeconds) && durationSeconds >= 0)) {
    throw validationError('the duration must be a number of seconds, 0 or more', 'durationSeconds');
  }
  const boundaries = [0];
  const inside = cuts.filter((cut) => Number.isFinite(cut) && cut > 0 && cut < durationSeconds).sort((a, b) => a - b);
  for (const cut of inside) {
    if (cut - boundaries.at(-1)! >= minSeconds && durationSeconds - cut >= minSeconds) boundaries.push(cut);
  }
  boundaries.push(durationSeconds);

  const segments: VideoSegment[] = [];
  for (let scene = 0; scene + 1 < boundaries.length; scene++) {
    const start = boundaries[scene]!;
    const end = boundaries[scene + 1]!;
    // The epsilon keeps a scene of exactly maxSeconds, give or take rounding, in one piece. With maxSeconds
    // >= 2 x minSeconds, pieces of a scene longer than maxSeconds are over maxSeconds / 2 >= minSeconds.
    const pieces = Math.max(1, Math.ceil((end - start) / maxSeconds - 1e-9));
    for (let piece = 0; piece < pieces; piece++) {
      segments.push({
        startSeconds: piece === 0 ? start : start + ((end - start) * piece) / pieces,
        endSeconds: piece === pieces - 1 ? end : start + ((end - start) * (piece + 1)) / pieces,
      });
    }
  }
  return segments;
}

/**
 * The keyframes of each segment (segments as planSegments returns them: contiguous, in order). A keyframe
 * belongs to the last segment starting at or before it, so those before the first segment go to the first
 * and those past the end to the last. A segment with none of its own gets the keyframe nearest to it (the
 * earlier one on a tie), which then also stays with its own segment. With no keyframes at all, every list is
 * empty.
 */
export function assignKeyframes<K extends { timeSeconds: number }>(
  segments: readonly VideoSegment[],
  keyframes: readonly K[],
): Array<VideoSegment & { keyframes: K[] }> {
  const sorted = [...keyframes].sort((a, b) => a.timeSeconds - b.timeSeconds);
  const assigned = segments.map((segment) => ({
    startSeconds: segment.startSeconds,
    endSeconds: segment.endSeconds,
    keyframes: [] as K[],
  }));
  if (assigned.length === 0 || sorted.length === 0) return assigned;
  let segmentIndex = 0;
  for (const keyframe of sorted) {
    while (segmentIndex + 1 < assigned.length && assigned[segmentIndex + 1]!.startSeconds <= keyframe.timeSeconds) segmentIndex++;
    assigned[segmentIndex]!.keyframes.push(keyframe);
  }
  for (const segment of assigned) {
    if (segment.keyframes.length > 0) continue;
    const distance = (keyframe: K): number =>
      Math.max(0, segment.startSeconds - keyframe.timeSeconds, keyframe.timeSeconds - segment.endSeconds);
    let nearest = sorted[0]!;
    for (const keyframe of sorted) if (distance(keyframe) < distance(nearest)) nearest = keyframe;
    segment.keyframes.push(nearest);
  }
  return assigned;
}
