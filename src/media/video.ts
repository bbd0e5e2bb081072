import { availableParallelism } from 'node:os';
import pLimit from 'p-limit';
import { z } from 'zod';
import { OcularError, validationError } from '../spec/errors.ts';
import type { FfmpegContext } from './binaries.ts';
import { buildFrameArgs, buildMeasureDurationArgs, buildProbeArgs } from './ffmpeg-commands.ts';
import { runProcess, toMediaError } from './run-process.ts';

export interface VideoStreamInfo {
  /** The stream's absolute index in the file, for `-map 0:<index>`. */
  index: number;
  /** Width and height as displayed: swapped when the stream carries a 90 or 270 degree rotation. */
  width: number;
  height: number;
  codec: string;
  /** The stream's own duration when the container states it (it can be shorter than the file's). */
  durationSeconds?: number;
  /** Average frames per second, when ffprobe states it. */
  averageFps?: number;
}

export interface AudioStreamInfo {
  index: number;
  codec: string;
  sampleRate: number;
  channels: number;
}

/** What ffprobe says about a media file: its first video stream (cover art excluded) and first audio stream. */
export interface MediaProbe {
  /** Seconds; measured by reading the packets when the header states none; 0 for a file with no media. */
  durationSeconds: number;
  /** ffprobe's demuxer name list, such as `mov,mp4,m4a,3gp,3g2,mj2` or `matroska,webm`. */
  formatName: string;
  video?: VideoStreamInfo;
  audio?: AudioStreamInfo;
}

// ---- ffprobe output: lenient, since builds differ in what they print; a field of the wrong type is dropped ----

const numberLike = z.union([z.number(), z.string()]).optional().catch(undefined);
const optionalString = z.string().optional().catch(undefined);
const optionalNumber = z.number().optional().catch(undefined);

const probeStreamSchema = z.looseObject({
  index: optionalNumber,
  codec_type: optionalString,
  codec_name: optionalString,
  width: optionalNumber,
  height: optionalNumber,
  sample_rate: numberLike,
  channels: optionalNumber,
  duration: numberLike,
  avg_frame_rate: optionalString,
  r_frame_rate: optionalString,
  disposition: z.looseObject({ attached_pic: optionalNumber }).optional().catch(undefined),
  tags: z.looseObject({ rotate: numberLike }).optional().catch(undefined),
  side_data_list: z
    .array(z.looseObject({ rotation: numberLike }).catch({}))
    .optional()
    .catch(undefined),
});

const probeOutputSchema = z.looseObject({
  streams: z.array(probeStreamSchema.catch({})).catch([]).default([]),
  format: z.looseObject({ format_name: optionalString, duration: numberLike }).optional().catch(undefined),
});

type ProbeStream = z.infer<typeof probeStreamSchema>;

const PROBE_MAX_STDOUT_BYTES = 4 * 1024 * 1024;
const DEFAULT_MAX_FRAME_BYTES = 16 * 1024 * 1024;

function toFinite(value: number | string | undefined): number | undefined {
  const number = typeof value === 'string' ? Number.parseFloat(value) : value;
  return number !== undefined && Number.isFinite(number) ? number : undefined;
}

/** A duration, rate or size: finite and not negative. */
function toNumber(value: number | string | undefined): number | undefined {
  const number = toFinite(value);
  return number !== undefined && number >= 0 ? number : undefined;
}

/** Display rotation: the display matrix in newer ffprobe builds, the `rotate` tag in older ones. */
function isSideways(stream: ProbeStream): boolean {
  const candidates = [...(stream.side_data_list ?? []).map((entry) => entry.rotation), stream.tags?.rotate];
  const degrees = candidates.map(toFinite).find((value) => value !== undefined) ?? 0;
  return Math.abs(Math.round(degrees / 90)) % 2 === 1;
}

/** ffprobe's `30000/1001` rates; `0/0` (unknown) is undefined. */
function parseRate(value: string | undefined): number | undefined {
  const match = value?.match(/^(\d+(?:\.\d+)?)(?:\/(\d+))?$/);
  if (!match) return undefined;
  const rate = Number(match[1]) / Number(match[2] ?? 1);
  return Number.isFinite(rate) && rate > 0 && rate < 1000 ? Math.round(rate * 1000) / 1000 : undefined;
}

function readVideoStream(stream: ProbeStream, position: number): VideoStreamInfo {
  const width = stream.width ?? 0;
  const height = stream.height ?? 0;
  const sideways = isSideways(stream);
  const durationSeconds = toNumber(stream.duration);
  const averageFps = parseRate(stream.avg_frame_rate) ?? parseRate(stream.r_frame_rate);
  return {
    index: stream.index ?? position,
    width: sideways ? height : width,
    height: sideways ? width : height,
    codec: stream.codec_name ?? 'unknown',
    ...(durationSeconds !== undefined && durationSeconds > 0 ? { durationSeconds } : {}),
    ...(averageFps === undefined ? {} : { averageFps }),
  };
}

function readAudioStream(stream: ProbeStream, position: number): AudioStreamInfo {
  return {
    index: stream.index ?? position,
    codec: stream.codec_name ?? 'unknown',
    sampleRate: toNumber(stream.sample_rate) ?? 0,
    channels: stream.channels ?? 0,
  };
}

async function measureDuration(path: string, context: FfmpegContext, signal: AbortSignal | undefined): Promise<number> {
  const { stdout } = await runProcess(context.binaries.ffmpeg, buildMeasureDurationArgs(path), {
    timeoutMs: context.timeoutMs,
    signal,
    maxStdoutBytes: PROBE_MAX_STDOUT_BYTES,
  });
  // The progress block repeats; the last one is the end of the file. `out_time_ms` is also microseconds (an old ffmpeg misnomer).
  const times = [...stdout.toString('utf8').matchAll(/^out_time_(?:us|ms)=(\d+)$/gm)];
  const last = times.at(-1)?.[1];
  return last === undefined ? 0 : Number(last) / 1_000_000;
}

/**
 * Reads a media file's container and streams with ffprobe. A file ffprobe cannot read is an
 * `unsupported_media_type` error, never a server error.
 */
export async function probeMedia(path: string, context: FfmpegContext, signal?: AbortSignal): Promise<MediaProbe> {
  let stdout: Buffer;
  try {
    ({ stdout } = await runProcess(context.binaries.ffprobe, buildProbeArgs(path), {
      timeoutMs: context.timeoutMs,
      signal,
      maxStdoutBytes: PROBE_MAX_STDOUT_BYTES,
    }));
  } catch (error) {
    throw toMediaError(error, 'reading the media file', path);
  }
  let json: unknown;
  try {
    json = JSON.parse(stdout.toString('utf8'));
  } catch {
    json = undefined;
  }
  const parsed = probeOutputSchema.safeParse(json);
  if (!parsed.success || parsed.data.format === undefined) {
    throw new OcularError('unsupported_media_type', 'the file is not a media file that can be read');
  }
  const { streams, format } = parsed.data;
  const videoPosition = streams.findIndex((stream) => stream.codec_type === 'video' && stream.disposition?.attached_pic !== 1);
  const audioPosition = streams.findIndex((stream) => stream.codec_type === 'audio');
  const video = videoPosition === -1 ? undefined : readVideoStream(streams[videoPosition]!, videoPosition);
  const audio = audioPosition === -1 ? undefined : readAudioStream(streams[audioPosition]!, audioPosition);

  const streamDurations = streams.map((stream) => toNumber(stream.duration)).filter((value) => value !== undefined);
  let durationSeconds = toNumber(format.duration) ?? (streamDurations.length > 0 ? Math.max(...streamDurations) : undefined);
  if (durationSeconds === undefined && (video !== undefined || audio !== undefined)) {
    try {
      durationSeconds = await measureDuration(path, context, signal);
    } catch (error) {
      throw toMediaError(error, 'reading the media file', path);
    }
  }
  return {
    durationSeconds: durationSeconds ?? 0,
    formatName: format.format_name ?? 'unknown',
    ...(video === undefined ? {} : { video }),
    ...(audio === undefined ? {} : { audio }),
  };
}

// ---- frame sampling ----

export interface FramePlanOptions {
  /** @default 16 */
  maxFrames?: number | undefined;
  /** Frames per second used instead when the clip is short enough: duration x fps < maxFrames. @default 1 */
  fps?: number | undefined;
}

/**
 * When to take frames from a clip: the centres of `maxFrames` equal segments, or, for a short clip, the
 * centres of 1/fps-second segments (the last one may be shorter). Always at least one timestamp, each in
 * [0, duration), rounded down to the millisecond.
 */
export function planFrameTimestamps(durationSeconds: number, options: FramePlanOptions = {}): number[] {
  const maxFrames = Math.max(1, Math.floor(options.maxFrames ?? 16));
  const fps = options.fps !== undefined && options.fps > 0 && Number.isFinite(options.fps) ? options.fps : 1;
  if (!Number.isFinite(durationSeconds) || durationSeconds <= 0) return [0];
  const segment = durationSeconds * fps < maxFrames ? 1 / fps : durationSeconds / maxFrames;
  // The epsilon keeps 10 s at 1 fps from becoming 11 segments through rounding.
  const count = Math.min(maxFrames, Math.max(1, Math.ceil(durationSeconds / segment - 1e-9)));
  return Array.from({ length: count }, (_, index) => {
    const start = index * segment;
    const end = Math.min(durationSeconds, start + segment);
    return Math.floor(((start + end) / 2) * 1000) / 1000;
  });
}

/** `00:12` under an hour, `1:02:03` from an hour on; whole seconds, rounded down. */
export function formatTimestamp(seconds: number): string {
  const total = Number.isFinite(seconds) && seconds > 0 ? Math.floor(seconds) : 0;
  const hours = Math.floor(total / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const pad = (value: number): string => String(value).padStart(2, '0');
  return hours > 0 ? `${hours}:${pad(minutes)}:${pad(total % 60)}` : `${pad(minutes)}:${pad(total % 60)}`;
}

export interface FrameExtractionOptions {
  /** Longest side of each JPEG; smaller videos are not enlarged. @default 768 */
  maxSide?: number | undefined;
  /** ffmpeg processes running at once. @default min(4, CPU count) */
  concurrency?: number | undefined;
  /** Largest JPEG accepted from one ffmpeg run. @default 16777216 (16 MiB) */
  maxFrameBytes?: number | undefined;
}

export interface SampleFramesOptions extends FrameExtractionOptions, FramePlanOptions {
  /** The file's probe when the caller already has it, to save running ffprobe again. */
  probe?: MediaProbe | undefined;
}

export interface SampledFrame {
  timestampSeconds: number;
  jpeg: Buffer;
}

const isJpeg = (bytes: Buffer): boolean => bytes.length > 3 && bytes[0] === 0xff && bytes[1] === 0xd8;

/**
 * JPEGs of the frames at the given timestamps, one seeking ffmpeg per frame, `concurrency` at a time, in the
 * order given. A timestamp with no decodable frame (past the last frame, in a cut-off file) is left out; if
 * none is left the video is unsupported. The first failure stops the other runs, and this returns only once
 * every ffmpeg it started has exited.
 */
export async function extractFramesAt(
  path: string,
  timestamps: readonly number[],
  options: FrameExtractionOptions & { streamIndex?: number | undefined },
  context: FfmpegContext,
  signal?: AbortSignal,
): Promise<SampledFrame[]> {
  if (signal?.aborted) throw signal.reason;
  const maxSide = options.maxSide ?? 768;
  const limit = pLimit(Math.max(1, Math.floor(options.concurrency ?? Math.min(4, availableParallelism()))));
  // One controller for the batch: the caller's abort and the first failure both stop every run.
  const batch = new AbortController();
  const forwardAbort = (): void => batch.abort(signal!.reason);
  signal?.addEventListener('abort', forwardAbort, { once: true });

  const runs = timestamps.map((timestampSeconds) =>
    limit(async () => {
      const args = buildFrameArgs({ inputPath: path, timestampSeconds, maxSide, streamIndex: options.streamIndex });
      try {
        const { stdout } = await runProcess(context.binaries.ffmpeg, args, {
          timeoutMs: context.timeoutMs,
          signal: batch.signal,
          maxStdoutBytes: options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES,
        });
        if (stdout.length > 0 && !isJpeg(stdout)) {
          throw new OcularError('unsupported_media_type', `the frame at ${formatTimestamp(timestampSeconds)} could not be decoded`);
        }
        return stdout;
      } catch (error) {
        throw toMediaError(error, `extracting the frame at ${formatTimestamp(timestampSeconds)}`, path);
      }
    }),
  );
  for (const run of runs) run.catch((error: unknown) => batch.abort(error));
  const results = await Promise.allSettled(runs);
  signal?.removeEventListener('abort', forwardAbort);
  if (signal?.aborted) throw signal.reason;

  const frames: SampledFrame[] = [];
  for (const [index, result] of results.entries()) {
    if (result.status === 'rejected') throw result.reason;
    if (result.value.length > 0) frames.push({ timestampSeconds: timestamps[index]!, jpeg: result.value });
  }
  if (frames.length === 0 && timestamps.length > 0) {
    throw new OcularError('unsupported_media_type', 'no frame could be decoded from the video');
  }
  return frames;
}

/**
 * Probes a video and extracts up to `maxFrames` JPEGs spread over it (see `planFrameTimestamps`). Bytes that
 * are not a decodable video, or a file without a video stream, are `unsupported_media_type`; a video with no
 * duration is a `validation_error`.
 */
export async function sampleFrames(
  path: string,
  options: SampleFramesOptions,
  context: FfmpegContext,
  signal?: AbortSignal,
): Promise<SampledFrame[]> {
  const probe = options.probe ?? (await probeMedia(path, context, signal));
  if (probe.video === undefined) throw new OcularError('unsupported_media_type', 'the file has no video stream');
  const durationSeconds = probe.video.durationSeconds ?? probe.durationSeconds;
  if (!(durationSeconds > 0)) throw validationError('the video has no duration, so no frame can be sampled from it');
  const timestamps = planFrameTimestamps(durationSeconds, options);
  return extractFramesAt(path, timestamps, { ...options, streamIndex: probe.video.index }, context, signal);
}
