// Videos for the video library tests: a test pattern with a caption drawn at known times (drawtext), made
// with the bundled ffmpeg into the media-fixtures directory.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { promisify } from 'node:util';
import { ffmpegContext, fixturePath } from './media-fixtures.ts';

const run = promisify(execFile);

const FONT_CANDIDATES = [
  '/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf',
  '/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf',
  '/usr/share/fonts/TTF/DejaVuSans-Bold.ttf',
  '/usr/share/fonts/dejavu/DejaVuSans-Bold.ttf',
  '/System/Library/Fonts/Supplemental/Arial Bold.ttf',
];

/** A TrueType font for drawtext (Debian: fonts-dejavu-core, which .ci/run installs), or undefined. */
export const FONT_PATH = FONT_CANDIDATES.find((path) => existsSync(path));

export interface CaptionedVideoOptions {
  seconds: number;
  /** Drawn large, white on black, centred, from `fromSeconds` to `toSeconds`. */
  text: string;
  fromSeconds: number;
  toSeconds: number;
  /** @default 640 */
  width?: number;
  /** @default 360 */
  height?: number;
  /** A lavfi source for the picture. @default a plain dark grey background */
  background?: string;
  /** Adds a sine tone soundtrack. @default false */
  withAudio?: boolean;
}

/** Text drawn on screen for a while. */
export interface Caption {
  text: string;
  fromSeconds: number;
  toSeconds: number;
}

/** An H.264 MP4 with `text` on screen between the given times only. */
export function makeCaptionedVideo(options: CaptionedVideoOptions): Promise<string> {
  const { text, fromSeconds, toSeconds, ...rest } = options;
  return makeTitledVideo({ ...rest, captions: [{ text, fromSeconds, toSeconds }] });
}

/** An H.264 MP4 showing each caption (large, white on black, centred) between its times only. */
export async function makeTitledVideo(
  options: Omit<CaptionedVideoOptions, 'text' | 'fromSeconds' | 'toSeconds'> & { captions: readonly Caption[] },
): Promise<string> {
  if (FONT_PATH === undefined) throw new Error('no TrueType font found for drawtext; install fonts-dejavu-core');
  const { seconds, width = 640, height = 360, withAudio = false } = options;
  const background = options.background ?? 'color=c=0x303030';
  const path = fixturePath('.mp4');
  const draw = options.captions
    .map(({ text, fromSeconds, toSeconds }) => {
      const escaped = text.replace(/[\\':]/g, (character) => `\\${character}`);
      return (
        `drawtext=fontfile=${FONT_PATH}:text='${escaped}':fontsize=${Math.round(height / 7)}:fontcolor=white:box=1:boxcolor=black:` +
        `boxborderw=12:x=(w-tw)/2:y=(h-th)/2:enable='between(t,${fromSeconds},${toSeconds})'`
      );
    })
    .join(',');
  await run(
    ffmpegContext.binaries.ffmpeg,
    [
      '-nostdin',
      '-hide_banner',
      '-loglevel',
      'error',
      '-y',
      '-f',
      'lavfi',
      '-i',
      `${background}:size=${width}x${height}:rate=25:duration=${seconds}`,
      ...(withAudio ? ['-f', 'lavfi', '-i', `sine=frequency=300:sample_rate=44100:duration=${seconds}`] : []),
      '-vf',
      draw,
      '-c:v',
      'libx264',
      '-preset',
      'ultrafast',
      '-pix_fmt',
      'yuv420p',
      '-g',
      '50',
      ...(withAudio ? ['-c:a', 'aac', '-b:a', '64k'] : []),
      path,
    ],
    { maxBuffer: 16 * 1024 * 1024 },
  );
  return path;
}
