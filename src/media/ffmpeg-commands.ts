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

/** `1000/<ms>` reduced, the exact rate of one frame every `intervalMs` milliseconds, as the fps filter reads it. */
export function formatIntervalRate(intervalMs: number): string {
  const ms = Math.max(1, Math.round(intervalMs));
  const gcd = (a: number, b: number): number => (b === 0 ? a : gcd(b, a % b));
  const divisor = gcd(1000, ms);
  return `${1000 / divisor}/${ms / divisor}`;
}

export interface VideoScanCommand {
  inputPath: string;
  /** Absolute index of the video stream (from the probe). @default the first video stream */
  streamIndex?: number | undefined;
  /** Milliseconds between two analysis frames (a whole number). */
  analysisIntervalMs: number;
  /** Size of the grayscale analysis frames, stretched to it whatever the video's aspect ratio. */
  analysisWidth: number;
  analysisHeight: number;
  /** Milliseconds between two keyframes (a whole number). */
  keyframeIntervalMs: number;
  /** Longest side of the keyframe JPEGs; smaller videos are not enlarged. */
  maxKeyframeSide: number;
  /** Keyframe n is written to `<keyframePathPrefix><n, 6 digits>.jpg`, numbered from 0. */
  keyframePathPrefix: string;
  /** Decoder threads; 0 lets ffmpeg choose (one per core), right for one scan at a time. @default 0 */
  threads?: number | undefined;
}

/**
 * One decoding pass that feeds two outputs through `split`:
 * - raw 8-bit grayscale analysis frames on stdout, one every `analysisIntervalMs` (fps filter, nearest
 *   rounding: sample n is the frame nearest n x interval), flushed per frame so they double as progress;
 * - JPEG keyframes into files, one every `keyframeIntervalMs`. `round=up` makes keyframe n the frame on
 *   screen at exactly n x interval (the last one whose timestamp is not after it), not a frame up to half an
 *   interval later, which is what the default nearest rounding picks.
 * `start_time=0` on both anchors sample 0 at t=0 (the first frame is repeated when a stream starts late), so a
 * frame's position in its output is its timestamp. Both fps filters come before any scaling, so only the
 * frames kept are scaled; audio and other streams are not mapped, hence never decoded.
 */
export function buildVideoScanArgs(command: VideoScanCommand): string[] {
  const input = command.streamIndex === undefined ? '0:v:0' : `0:${command.streamIndex}`;
  const analysis =
    `fps=fps=${formatIntervalRate(command.analysisIntervalMs)}:start_time=0,` +
    `scale=${command.analysisWidth}:${command.analysisHeight}:flags=area,format=gray`;
  const keyframes = `fps=fps=${formatIntervalRate(command.keyframeIntervalMs)}:start_time=0:round=up,${buildFitFilter(command.maxKeyframeSide)}`;
  // The image2 muxer expands `%` sequences in the whole path, so a directory named `50%` must be escaped.
  const pattern = `${command.keyframePathPrefix.replaceAll('%', '%%')}%06d.jpg`;
  return [
    ...FFMPEG_BASE_ARGS,
    '-threads',
    String(command.threads ?? 0),
    ...buildInputArgs(command.inputPath),
    '-filter_complex',
    `[${input}]split=2[analysis][keyframes];[analysis]${analysis}[analysis_out];[keyframes]${keyframes}[keyframes_out]`,
    '-map',
    '[analysis_out]',
    '-c:v',
    'rawvideo',
    '-f',
    'rawvideo',
    '-flush_packets',
    '1',
    '-',
    '-map',
    '[keyframes_out]',
    '-c:v',
    'mjpeg',
    '-q:v',
    '3',
    '-f',
    'image2',
    '-start_number',
    '0',
    ...outputArgs(pattern),
  ];
}
