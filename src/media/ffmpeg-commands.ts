// Pure builders of ffmpeg/ffprobe argument arrays: no I/O, so tests assert on exact arrays and the runner
// (run-process.ts) is the only code that starts a process.

/** Every ffmpeg run: never read stdin (it would block or eat input), no banner, only errors on stderr. */
export const FFMPEG_BASE_ARGS: readonly string[] = ['-nostdin', '-hide_banner', '-loglevel', 'error'];

/**
 * How an input file is opened. The `file:` prefix stops a name with a colon (`concat:...`, `http:...`) or a
 * leading dash from being read as a protocol or an option, and the whitelist stops a playlist format (HLS,
 * concat) inside an upload from making ffmpeg fetch URLs behind the SSRF-safe fetcher's back.
 */
export function buildInputArgs(inputPath: string): string[] {
  return ['-protocol_whitelist', 'file', '-i', `file:${inputPath}`];
}

/** `-` (stdout) as is, a file path with the `file:` prefix and `-y` (scratch paths are fresh; never prompt). */
function outputArgs(outputPath: string): string[] {
  return outputPath === '-' ? ['-'] : ['-y', `file:${outputPath}`];
}

/** Seconds as ffmpeg reads them, to the millisecond. */
export function formatSeconds(seconds: number): string {
  return Math.max(0, seconds).toFixed(3);
}

/** `ffprobe` printing the container and every stream as JSON on stdout. */
export function buildProbeArgs(inputPath: string): string[] {
  return ['-v', 'error', '-protocol_whitelist', 'file', '-print_format', 'json', '-show_format', '-show_streams', `file:${inputPath}`];
}

/**
 * Reads every video and audio packet without decoding (stream copy to the null muxer) and prints progress on
 * stdout; the last `out_time_us` is the media's duration. For files whose header states none, such as WebM
 * recorded by a browser's MediaRecorder.
 */
export function buildMeasureDurationArgs(inputPath: string): string[] {
  return [
    ...FFMPEG_BASE_ARGS,
    ...buildInputArgs(inputPath),
    '-map',
    '0:v?',
    '-map',
    '0:a?',
    '-c',
    'copy',
    '-f',
    'null',
    '-progress',
    'pipe:1',
    '-nostats',
    '-',
  ];
}

/** The scale filter fitting a frame inside maxSide x maxSide, keeping its aspect ratio and never enlarging it. */
export function buildFitFilter(maxSide: number): string {
  const side = Math.max(1, Math.floor(maxSide));
  return `scale=w='min(iw,${side})':h='min(ih,${side})':force_original_aspect_ratio=decrease`;
}

export interface FrameCommand {
  inputPath: string;
  timestampSeconds: number;
  /** Longest side of the JPEG; smaller frames are left as they are. */
  maxSide: number;
  /** Absolute index of the video stream (from the probe). @default the first video stream */
  streamIndex?: number | undefined;
  /** Decoder threads. Frames are extracted by several processes at once, so one each keeps them from competing. @default 1 */
  threads?: number | undefined;
}

/**
 * One JPEG of the frame at `timestampSeconds`, on stdout. `-ss` comes before `-i`, so ffmpeg seeks in the
 * container to the keyframe before the timestamp and decodes only from there: the cost is one GOP whatever
 * the length of the video, where `-ss` after `-i` would decode everything up to the timestamp.
 */
export function buildFrameArgs(command: FrameCommand): string[] {
  return [
    ...FFMPEG_BASE_ARGS,
    '-threads',
    String(command.threads ?? 1),
    '-ss',
    formatSeconds(command.timestampSeconds),
    ...buildInputArgs(command.inputPath),
    '-map',
    command.streamIndex === undefined ? '0:v:0' : `0:${command.streamIndex}`,
    '-frames:v',
    '1',
    '-vf',
    buildFitFilter(command.maxSide),
    '-f',
    'image2pipe',
    '-vcodec',
    'mjpeg',
    '-q:v',
    '3',
    '-',
  ];
}

export interface AudioCommand {
  inputPath: string;
  /** A file path, or `-` for stdout. @default '-' */
  outputPath?: string | undefined;
  /** Absolute index of the audio stream (from the probe). @default the first audio stream */
  streamIndex?: number | undefined;
}

const audioMap = (streamIndex: number | undefined): string[] => ['-map', streamIndex === undefined ? '0:a:0' : `0:${streamIndex}`];

/** Decodes the chosen audio stream to mono and encodes it with `encoding` (rate, codec, container). */
function buildAudioArgs(command: AudioCommand, encoding: readonly string[]): string[] {
  return [
    ...FFMPEG_BASE_ARGS,
    ...buildInputArgs(command.inputPath),
    ...audioMap(command.streamIndex),
    '-ac',
    '1',
    ...encoding,
    ...outputArgs(command.outputPath ?? '-'),
  ];
}

/**
 * 16 kHz mono 16-bit PCM WAV, what speech models expect. `-bitexact` leaves out the LIST/INFO chunk, so the
 * header is the canonical 44 bytes. On stdout the size fields cannot be filled in (no seeking back); the
 * caller patches them.
 */
export function buildWav16kMonoArgs(command: AudioCommand): string[] {
  return buildAudioArgs(command, ['-ar', '16000', '-c:a', 'pcm_s16le', '-bitexact', '-f', 'wav']);
}

/** Mono 24 kHz MP3 at 64 kbit/s: small, and plenty for speech-oriented audio models. */
export function buildMp3Args(command: AudioCommand): string[] {
  return buildAudioArgs(command, ['-ar', '24000', '-c:a', 'libmp3lame', '-b:a', '64k', '-f', 'mp3']);
}
