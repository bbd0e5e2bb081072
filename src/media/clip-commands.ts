// Pure builders of the ffmpeg/ffprobe arguments that cut and render clips (see ffmpeg-commands.ts for the
// conventions: `file:` inputs behind a protocol whitelist, no stdin, errors only on stderr).
import { buildInputArgs, FFMPEG_BASE_ARGS, formatSeconds } from './ffmpeg-commands.ts';

export type AspectRatio = '16:9' | '9:16' | '1:1';

/** How a frame reaches another aspect ratio: `crop` fills it (cutting the sides), `pad` fits it (bars). */
export type FitMode = 'crop' | 'pad';

export interface FrameSize {
  width: number;
  height: number;
}

/** The nearest even number, at least 2: H.264 in 4:2:0 needs even dimensions. */
export function toEven(value: number): number {
  return Math.max(2, Math.round(value / 2) * 2);
}

const RATIOS: Readonly<Record<AspectRatio, readonly [number, number]>> = { '16:9': [16, 9], '9:16': [9, 16], '1:1': [1, 1] };

/**
 * The rendered frame: `resolution` is its height (the source's when not asked), and the width follows the
 * asked aspect ratio, else the source's.
 */
export function outputFrameSize(source: FrameSize, aspectRatio: AspectRatio | undefined, resolution: number | undefined): FrameSize {
  const height = toEven(resolution ?? source.height);
  const [w, h] = aspectRatio === undefined ? [source.width, source.height] : RATIOS[aspectRatio];
  return { width: toEven((height * w) / h), height };
}

/**
 * Escapes a value for a filter option inside a filtergraph: first the option level (`\`, `'`, `:`), then the
 * graph level (`\`, `'`, `[`, `]`, `,`, `;`), as ffmpeg's "Notes on filtergraph escaping" describe. Scratch
 * paths sit under the data directory, whose name the server does not choose.
 */
export function escapeFilterValue(value: string): string {
  const option = value.replace(/[\\':]/g, (character) => `\\${character}`);
  return option.replace(/[\\'[\],;]/g, (character) => `\\${character}`);
}

/** Scales (and crops or pads) one input's frames to `size`, square pixels. */
export function buildFitChain(size: FrameSize, fit: FitMode): string {
  const { width, height } = size;
  return fit === 'crop'
    ? `scale=${width}:${height}:force_original_aspect_ratio=increase,crop=${width}:${height},setsar=1`
    : `scale=${width}:${height}:force_original_aspect_ratio=decrease,pad=${width}:${height}:(ow-iw)/2:(oh-ih)/2,setsar=1`;
}

/**
 * The keyframes (video packets flagged `K`) between two times, one `pts_time,flags` line each, read from
 * the container's packets without decoding.
 */
export function buildKeyframeProbeArgs(inputPath: string, fromSeconds: number, toSeconds: number): string[] {
  return [
    '-v',
    'error',
    '-protocol_whitelist',
    'file',
    '-select_streams',
    'v:0',
    '-read_intervals',
    `${formatSeconds(fromSeconds)}%${formatSeconds(toSeconds)}`,
    '-show_entries',
    'packet=pts_time,flags',
    '-of',
    'csv=p=0',
    `file:${inputPath}`,
  ];
}

/** Progress as `key=value` lines on stdout (`out_time_us`), which the renderer turns into a fraction. */
const PROGRESS_ARGS = ['-progress', 'pipe:1', '-nostats'];

export interface CopyCutCommand {
  inputPath: string;
  startSeconds: number;
  durationSeconds: number;
  outputPath: string;
}

/**
 * A cut without re-encoding. `-ss` before `-i` seeks to the keyframe at or before the start, so the cut is
 * exact only when the start is a keyframe (the caller checks); the end needs none, packets stop at it.
 */
export function buildCopyCutArgs(command: CopyCutCommand): string[] {
  return [
    ...FFMPEG_BASE_ARGS,
    '-ss',
    formatSeconds(command.startSeconds),
    ...buildInputArgs(command.inputPath),
    '-t',
    formatSeconds(command.durationSeconds),
    '-map',
    '0:v:0',
    '-map',
    '0:a:0?',
    '-c',
    'copy',
    '-avoid_negative_ts',
    'make_zero',
    '-movflags',
    '+faststart',
    ...PROGRESS_ARGS,
    '-y',
    `file:${command.outputPath}`,
  ];
}

/**
 * How subtitles are drawn: the `subtitles` filter (libass) reading an SRT file, or, in builds without libass,
 * one `drawtext` (libfreetype) per cue, each reading its text from a file (no escaping of the words needed,
 * and `expansion=none` so a `%` in them is text, not a template)
 * and shown only during its cue.
 */
export type SubtitleBurn =
  | { kind: 'subtitles'; srtPath: string }
  | { kind: 'drawtext'; cues: ReadonlyArray<{ startSeconds: number; endSeconds: number; textPath: string }> };

/** Which filter this ffmpeg build can burn subtitles with, from its `-filters` listing. */
export function subtitleFilterIn(filters: string): SubtitleBurn['kind'] | undefined {
  if (/^\s*\S+\s+subtitles\s/m.test(filters)) return 'subtitles';
  if (/^\s*\S+\s+drawtext\s/m.test(filters)) return 'drawtext';
  return undefined;
}

export function buildSubtitleChain(burn: SubtitleBurn): string {
  if (burn.kind === 'subtitles') return `subtitles=filename=${escapeFilterValue(burn.srtPath)}`;
  if (burn.cues.length === 0) return 'null';
  return burn.cues
    .map(
      (cue) =>
        `drawtext=textfile=${escapeFilterValue(cue.textPath)}:expansion=none:fontsize=h/16:fontcolor=white:box=1:boxcolor=black@0.5:boxborderw=6` +
        `:x=(w-text_w)/2:y=h-text_h-h/12:enable=${escapeFilterValue(`between(t,${formatSeconds(cue.startSeconds)},${formatSeconds(cue.endSeconds)})`)}`,
    )
    .join(',');
}

/** ffmpeg listing its filters, to learn which can draw subtitles. */
export const FILTERS_ARGS: readonly string[] = ['-hide_banner', '-filters'];

export interface EncodePiece {
  inputPath: string;
  startSeconds: number;
  durationSeconds: number;
}

export interface EncodeCommand {
  /** One for a clip, several for a compilation (joined in this order). */
  pieces: readonly EncodePiece[];
  size: FrameSize;
  fit: FitMode;
  /** Whether every piece has a soundtrack (a compilation keeps audio only then). */
  audio: boolean;
  /** Frame rate every piece is brought to, so a compilation's pieces join; absent, a single piece keeps its own. */
  fps?: number | undefined;
  /** Subtitles burnt onto the frames after joining (times from the output's start). */
  subtitles?: SubtitleBurn | undefined;
  /** `libx264` when the build has it, else `mpeg4`. */
  videoEncoder: 'libx264' | 'mpeg4';
  outputPath: string;
}

/**
 * A re-encoded clip or compilation in one ffmpeg run: each piece is opened with its own input seek (frame
 * exact when transcoding), fitted to the output size, joined with the concat filter, subtitled, and
 * encoded to H.264/AAC MP4 with the index first (streamable).
 */
export function buildEncodeArgs(command: EncodeCommand): string[] {
  const inputs = command.pieces.flatMap((piece) => [
    '-ss',
    formatSeconds(piece.startSeconds),
    '-t',
    formatSeconds(piece.durationSeconds),
    ...buildInputArgs(piece.inputPath),
  ]);
  const fps = command.fps === undefined ? '' : `,fps=${Math.round(command.fps * 1000) / 1000}`;
  const chains: string[] = [];
  command.pieces.forEach((_, index) => {
    chains.push(`[${index}:v:0]${buildFitChain(command.size, command.fit)}${fps},format=yuv420p[v${index}]`);
    if (command.audio) chains.push(`[${index}:a:0]aresample=44100,aformat=sample_fmts=fltp:channel_layouts=stereo[a${index}]`);
  });
  let video = 'v0';
  let audio = 'a0';
  if (command.pieces.length > 1) {
    const joined = command.pieces.map((_, index) => (command.audio ? `[v${index}][a${index}]` : `[v${index}]`)).join('');
    chains.push(`${joined}concat=n=${command.pieces.length}:v=1:a=${command.audio ? 1 : 0}[vj]${command.audio ? '[aj]' : ''}`);
    video = 'vj';
    audio = 'aj';
  }
  if (command.subtitles !== undefined) {
    chains.push(`[${video}]${buildSubtitleChain(command.subtitles)}[vs]`);
    video = 'vs';
  }
  const encoder =
    command.videoEncoder === 'libx264'
      ? ['-c:v', 'libx264', '-preset', 'veryfast', '-crf', '23', '-pix_fmt', 'yuv420p']
      : ['-c:v', 'mpeg4', '-q:v', '4', '-pix_fmt', 'yuv420p'];
  return [
    ...FFMPEG_BASE_ARGS,
    ...inputs,
    '-filter_complex',
    chains.join(';'),
    '-map',
    `[${video}]`,
    ...(command.audio ? ['-map', `[${audio}]`, '-c:a', 'aac', '-b:a', '128k'] : ['-an']),
    ...encoder,
    '-movflags',
    '+faststart',
    ...PROGRESS_ARGS,
    '-y',
    `file:${command.outputPath}`,
  ];
}

/** ffmpeg listing its encoders, to learn whether this build has libx264. */
export const ENCODERS_ARGS: readonly string[] = ['-hide_banner', '-encoders'];

export interface SubtitleCue {
  startSeconds: number;
  endSeconds: number;
  text: string;
}

function srtTime(seconds: number): string {
  const ms = Math.max(0, Math.round(seconds * 1000));
  const pad = (value: number, width = 2) => String(value).padStart(width, '0');
  return `${pad(Math.floor(ms / 3_600_000))}:${pad(Math.floor(ms / 60_000) % 60)}:${pad(Math.floor(ms / 1000) % 60)},${pad(ms % 1000, 3)}`;
}

/** SubRip text for the cues; line breaks inside a cue's text are folded (a blank line would end the cue). */
export function formatSrt(cues: readonly SubtitleCue[]): string {
  return cues
    .map(
      (cue, index) =>
        `${index + 1}\n${srtTime(cue.startSeconds)} --> ${srtTime(cue.endSeconds)}\n${cue.text.replace(/\s+/g, ' ').trim()}\n`,
    )
    .join('\n');
}
