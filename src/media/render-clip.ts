import { writeFile } from 'node:fs/promises';
import type { FfmpegContext } from './binaries.ts';
import {
  buildCopyCutArgs,
  buildEncodeArgs,
  buildKeyframeProbeArgs,
  ENCODERS_ARGS,
  FILTERS_ARGS,
  formatSrt,
  subtitleFilterIn,
  type SubtitleBurn,
  outputFrameSize,
  type AspectRatio,
  type FitMode,
  type FrameSize,
  type SubtitleCue,
} from './clip-commands.ts';
import { runProcess, toMediaError } from './run-process.ts';
import type { Scratch } from './scratch.ts';
import { OcularError } from '../spec/errors.ts';

/** One time range of one source file. */
export interface RenderPiece {
  inputPath: string;
  startSeconds: number;
  endSeconds: number;
  /** The source's frame and whether it has a soundtrack (from the library's probe). */
  source: FrameSize & { hasAudio: boolean; fps: number };
}

export interface RenderSettings {
  aspectRatio?: AspectRatio | undefined;
  /** Output height in pixels. */
  resolution?: number | undefined;
  fit: FitMode;
  /** Cues to burn in, in seconds from the output's start; none or empty, no subtitles. */
  cues?: readonly SubtitleCue[] | undefined;
  /** The filter that draws them. @default the build's best: `subtitles` (libass), else `drawtext` */
  subtitleFilter?: SubtitleBurn['kind'] | undefined;
}

export interface RenderRequest {
  pieces: readonly RenderPiece[];
  settings: RenderSettings;
  outputPath: string;
}

/** How a clip is made: a plain cut (stream copy) or a re-encode. */
export type RenderMode = 'copy' | 'encode';

/** Two times closer than this are the same instant (a keyframe time read back from the container). */
const SAME_INSTANT_SECONDS = 0.001;

/**
 * Stream copy needs one piece, nothing asked that changes the frames (no subtitles, the source's own aspect
 * ratio and height) and a start on a keyframe (`startIsKeyframe`).
 */
export function chooseRenderMode(request: RenderRequest, startIsKeyframe: boolean): RenderMode {
  const [piece, ...rest] = request.pieces;
  if (piece === undefined || rest.length > 0 || !startIsKeyframe) return 'encode';
  const { settings } = request;
  if ((settings.cues?.length ?? 0) > 0) return 'encode';
  const size = outputFrameSize(piece.source, settings.aspectRatio, settings.resolution);
  return size.width === piece.source.width && size.height === piece.source.height ? 'copy' : 'encode';
}

/** The keyframe times of the source's first video stream between two times, in order. */
export async function probeKeyframes(
  inputPath: string,
  fromSeconds: number,
  toSeconds: number,
  ffmpeg: FfmpegContext,
  signal: AbortSignal,
): Promise<number[]> {
  try {
    const { stdout } = await runProcess(ffmpeg.binaries.ffprobe, buildKeyframeProbeArgs(inputPath, fromSeconds, toSeconds), {
      timeoutMs: ffmpeg.timeoutMs,
      signal,
    });
    return stdout
      .toString('utf8')
      .split('\n')
      .map((line) => line.split(','))
      .filter(([time, flags]) => flags?.includes('K') && time !== undefined && time !== 'N/A')
      .map(([time]) => Number(time))
      .filter((time) => Number.isFinite(time))
      .sort((a, b) => a - b);
  } catch (error) {
    throw toMediaError(error, 'reading the keyframes', inputPath);
  }
}

/** Whether `seconds` is one of `keyframes` (or the very start of the file). */
export function isKeyframeTime(seconds: number, keyframes: readonly number[]): boolean {
  return seconds <= SAME_INSTANT_SECONDS || keyframes.some((time) => Math.abs(time - seconds) <= SAME_INSTANT_SECONDS);
}

const encoderCache = new Map<string, Promise<'libx264' | 'mpeg4'>>();

/** libx264 when this ffmpeg build has it (the static builds do), else the native mpeg4 encoder. */
export function videoEncoder(ffmpeg: FfmpegContext): Promise<'libx264' | 'mpeg4'> {
  let encoder = encoderCache.get(ffmpeg.binaries.ffmpeg);
  if (encoder === undefined) {
    encoder = runProcess(ffmpeg.binaries.ffmpeg, ENCODERS_ARGS, { timeoutMs: 30_000 }).then(
      ({ stdout }) => (/\blibx264\b/.test(stdout.toString('utf8')) ? 'libx264' : 'mpeg4'),
      () => 'mpeg4' as const,
    );
    encoderCache.set(ffmpeg.binaries.ffmpeg, encoder);
  }
  return encoder;
}

const filterCache = new Map<string, Promise<SubtitleBurn['kind'] | undefined>>();

/** The filter this ffmpeg build burns subtitles with: `subtitles` (needs libass), else `drawtext` (libfreetype). */
export function subtitleFilter(ffmpeg: FfmpegContext): Promise<SubtitleBurn['kind'] | undefined> {
  let filter = filterCache.get(ffmpeg.binaries.ffmpeg);
  if (filter === undefined) {
    filter = runProcess(ffmpeg.binaries.ffmpeg, FILTERS_ARGS, { timeoutMs: 30_000 }).then(
      ({ stdout }) => subtitleFilterIn(stdout.toString('utf8')),
      () => undefined,
    );
    filterCache.set(ffmpeg.binaries.ffmpeg, filter);
  }
  return filter;
}

/** Writes what the chosen filter reads: one SRT file, or one text file per cue. */
async function prepareSubtitles(cues: readonly SubtitleCue[], kind: SubtitleBurn['kind'], scratch: Scratch): Promise<SubtitleBurn> {
  if (kind === 'subtitles') {
    const srtPath = scratch.path('.srt');
    await writeFile(srtPath, formatSrt(cues));
    return { kind, srtPath };
  }
  const files = [];
  for (const cue of cues) {
    const textPath = scratch.path('.txt');
    await writeFile(textPath, cue.text.replace(/\s+/g, ' ').trim());
    files.push({ startSeconds: cue.startSeconds, endSeconds: cue.endSeconds, textPath });
  }
  return { kind, cues: files };
}

/** Reads `out_time_us` (older builds: `out_time_ms`, also microseconds) from ffmpeg's `-progress` lines. */
function progressReader(totalSeconds: number, onProgress: (fraction: number) => void): (chunk: Buffer) => void {
  let pending = '';
  return (chunk) => {
    pending += chunk.toString('utf8');
    const lines = pending.split('\n');
    pending = lines.pop() ?? '';
    for (const line of lines) {
      const match = /^out_time_(?:us|ms)=(\d+)/.exec(line.trim());
      if (match && totalSeconds > 0) onProgress(Math.min(1, Number(match[1]) / 1e6 / totalSeconds));
    }
  };
}

/**
 * Renders one clip or compilation into `request.outputPath`: a stream copy when `chooseRenderMode` allows
 * it, else one re-encode that fits every piece to the output frame, joins them and burns the subtitles.
 * Aborting kills ffmpeg (run-process.ts); the subtitle file is written into `scratch`, which the caller
 * disposes.
 */
export async function renderClip(
  request: RenderRequest,
  options: {
    ffmpeg: FfmpegContext;
    scratch: Scratch;
    signal: AbortSignal;
    startIsKeyframe: boolean;
    onProgress?: (fraction: number) => void;
  },
): Promise<RenderMode> {
  const { ffmpeg, scratch, signal } = options;
  const { pieces, settings } = request;
  const first = pieces[0];
  if (first === undefined) throw new RangeError('a clip needs at least one piece');
  const total = pieces.reduce((sum, piece) => sum + (piece.endSeconds - piece.startSeconds), 0);
  const onStdout = progressReader(total, options.onProgress ?? (() => undefined));
  const mode = chooseRenderMode(request, options.startIsKeyframe);
  let args: string[];
  if (mode === 'copy') {
    args = buildCopyCutArgs({
      inputPath: first.inputPath,
      startSeconds: first.startSeconds,
      durationSeconds: first.endSeconds - first.startSeconds,
      outputPath: request.outputPath,
    });
  } else {
    let subtitles: SubtitleBurn | undefined;
    if ((settings.cues?.length ?? 0) > 0) {
      const kind = settings.subtitleFilter ?? (await subtitleFilter(ffmpeg));
      if (kind === undefined) {
        throw new OcularError('server_error', 'this ffmpeg build can draw no subtitles (it has neither libass nor libfreetype)');
      }
      subtitles = await prepareSubtitles(settings.cues!, kind, scratch);
    }
    args = buildEncodeArgs({
      pieces: pieces.map((piece) => ({
        inputPath: piece.inputPath,
        startSeconds: piece.startSeconds,
        durationSeconds: piece.endSeconds - piece.startSeconds,
      })),
      size: outputFrameSize(first.source, settings.aspectRatio, settings.resolution),
      fit: settings.fit,
      audio: pieces.every((piece) => piece.source.hasAudio),
      fps: pieces.length > 1 ? first.source.fps || 25 : undefined,
      subtitles,
      videoEncoder: await videoEncoder(ffmpeg),
      outputPath: request.outputPath,
    });
  }
  try {
    await runProcess(ffmpeg.binaries.ffmpeg, args, { timeoutMs: ffmpeg.timeoutMs, signal, onStdout });
  } catch (error) {
    throw toMediaError(error, 'rendering the clip', first.inputPath);
  }
  return mode;
}
