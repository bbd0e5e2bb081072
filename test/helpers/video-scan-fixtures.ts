// Videos whose content is known frame by frame, for scene detection and keyframe timing tests: scenes of
// lavfi sources joined at known times, and a clip whose brightness encodes its frame number. Generated at
// test time with the bundled ffmpeg into the media-fixtures directory (removed with removeMediaFixtures).
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { ffmpegContext, fixturePath } from './media-fixtures.ts';

const run = promisify(execFile);

async function ffmpeg(args: string[]): Promise<void> {
  await run(ffmpegContext.binaries.ffmpeg, ['-nostdin', '-hide_banner', '-loglevel', 'error', '-y', ...args], {
    maxBuffer: 16 * 1024 * 1024,
  });
}

/** A scene: a lavfi source (`color=c=red`, `testsrc`, `testsrc2`, `smptebars`...) shown for `seconds`. */
export interface Scene {
  source: string;
  seconds: number;
}

export interface SceneVideoOptions {
  /** @default 320 */
  width?: number;
  /** @default 180 */
  height?: number;
  /** @default 25 */
  fps?: number;
  /** Add a 440 Hz AAC track, which a scan must not decode. @default false */
  withAudio?: boolean;
}

/** An H.264 MP4 playing `scenes` one after another: the cuts are at the running sums of their lengths. */
export async function makeSceneVideo(scenes: readonly Scene[], options: SceneVideoOptions = {}): Promise<string> {
  const { width = 320, height = 180, fps = 25, withAudio = false } = options;
  const path = fixturePath('.mp4');
  const inputs = scenes.flatMap((scene) => {
    const separator = scene.source.includes('=') ? ':' : '=';
    return ['-f', 'lavfi', '-i', `${scene.source}${separator}size=${width}x${height}:rate=${fps}:duration=${scene.seconds}`];
  });
  const total = scenes.reduce((sum, scene) => sum + scene.seconds, 0);
  const joined = `${scenes.map((_, index) => `[${index}:v]setsar=1,format=yuv420p[v${index}]`).join(';')};${scenes
    .map((_, index) => `[v${index}]`)
    .join('')}concat=n=${scenes.length}:v=1:a=0[out]`;
  await ffmpeg([
    ...inputs,
    ...(withAudio ? ['-f', 'lavfi', '-i', `sine=frequency=440:sample_rate=44100:duration=${total}`] : []),
    '-filter_complex',
    joined,
    '-map',
    '[out]',
    ...(withAudio ? ['-map', `${scenes.length}:a`, '-c:a', 'aac', '-b:a', '64k'] : []),
    '-c:v',
    'libx264',
    '-preset',
    'ultrafast',
    '-g',
    String(fps * 2),
    path,
  ]);
  return path;
}

export interface FrameCounterVideoOptions {
  seconds: number;
  /** A rate ffmpeg reads: `25`, `30000/1001`. */
  fps: string;
  /** Container: mp4 starts at 0; MPEG-TS starts at 1.4 s, which ffmpeg's input offset must cancel. @default 'mp4' */
  container?: 'mp4' | 'ts';
  /** Delay the video track by this much behind a soundtrack starting at 0 (mp4 only). @default 0 */
  videoStartSeconds?: number;
}

/** Frames counted per brightness cycle of `makeFrameCounterVideo`. */
export const COUNTER_CYCLE = 50;

/**
 * A flat gray clip whose luma (limited range) is 16 + 4 x (frame number mod 50), encoded losslessly with
 * B-frames, so a decoded frame tells which frame it is: see `readCounter`.
 */
export async function makeFrameCounterVideo(options: FrameCounterVideoOptions): Promise<string> {
  const container = options.container ?? 'mp4';
  const videoStartSeconds = options.videoStartSeconds ?? 0;
  const path = fixturePath(`.${container}`);
  const counter = videoStartSeconds > 0 ? fixturePath(`.${container}`) : path;
  await ffmpeg([
    '-f',
    'lavfi',
    '-i',
    `nullsrc=size=160x120:rate=${options.fps}:duration=${options.seconds},format=yuv420p,geq=lum='16+4*mod(N\\,${COUNTER_CYCLE})':cb=128:cr=128`,
    '-c:v',
    'libx264',
    '-preset',
    'medium',
    '-qp',
    '0',
    '-bf',
    '3',
    ...(container === 'ts' ? ['-f', 'mpegts'] : []),
    counter,
  ]);
  if (videoStartSeconds > 0) {
    await ffmpeg([
      '-itsoffset',
      String(videoStartSeconds),
      '-i',
      counter,
      '-f',
      'lavfi',
      '-i',
      `sine=frequency=440:sample_rate=44100:duration=${options.seconds + videoStartSeconds}`,
      '-map',
      '0:v',
      '-map',
      '1:a',
      '-c:v',
      'copy',
      '-c:a',
      'aac',
      path,
    ]);
  }
  return path;
}

/**
 * The frame number (mod 50) a decoded full-range gray level stands for: JPEG keyframes are full range, so
 * level = (16 + 4n - 16) x 255 / 219.
 */
export function readCounter(meanLevel: number): number {
  return Math.round((meanLevel * 219) / 255 / 4);
}
