// Media files generated at test time with ffmpeg's lavfi sources (testsrc2 pictures, sine tones), cached per
// test process in one temp directory. Nothing binary is committed.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { createFfmpegContext, type FfmpegContext } from '../../src/media/binaries.ts';

const run = promisify(execFile);

/** The bundled binaries (no PATH search), so every machine generates and reads with the same builds. */
export const ffmpegContext: FfmpegContext = createFfmpegContext({ timeoutMs: 30_000, maxOutputBytes: 64 * 1024 * 1024 });
const FFMPEG = ffmpegContext.binaries.ffmpeg;

let directory: string | undefined;
const cache = new Map<string, Promise<string>>();
let counter = 0;

function fixtureDir(): string {
  if (directory === undefined) {
    directory = mkdtempSync(join(tmpdir(), 'ocular-media-fixtures-'));
    process.once('exit', removeMediaFixtures);
  }
  return directory;
}

/** Removes every generated file (call from `afterAll`; also runs when the process exits). */
export function removeMediaFixtures(): void {
  if (directory !== undefined) rmSync(directory, { recursive: true, force: true });
  directory = undefined;
  cache.clear();
}

function cached(key: string, make: (path: string) => Promise<void>, extension: string): Promise<string> {
  let file = cache.get(key);
  if (file === undefined) {
    const path = join(fixtureDir(), `${key.replace(/[^a-z0-9]+/gi, '-')}${extension}`);
    file = make(path).then(() => path);
    cache.set(key, file);
  }
  return file;
}

async function ffmpeg(args: string[]): Promise<void> {
  await run(FFMPEG, ['-nostdin', '-hide_banner', '-loglevel', 'error', '-y', ...args], { maxBuffer: 16 * 1024 * 1024 });
}

let x264: Promise<boolean> | undefined;
/** Whether the ffmpeg build has libx264 (the static one does); mpeg4 otherwise. */
function hasX264(): Promise<boolean> {
  x264 ??= run(FFMPEG, ['-hide_banner', '-encoders']).then(({ stdout }) => /\blibx264\b/.test(stdout));
  return x264;
}

export interface VideoFixture {
  /** @default 4 */
  seconds?: number;
  /** @default 320 */
  width?: number;
  /** @default 240 */
  height?: number;
  /** A 440 Hz tone, AAC. @default false */
  withAudio?: boolean;
  /** @default 25 */
  fps?: number;
  /** Put the index (moov) first, as streaming-ready files do. @default false */
  faststart?: boolean;
}

/** Longer clips are made of copies of one segment joined without re-encoding, so 10 minutes take about a second. */
const SEGMENT_SECONDS = 10;

/**
 * An MP4 of the testsrc2 pattern (H.264 when the build has it, keyframe every 2 s), with an optional sine
 * soundtrack. Clips over 20 s repeat a 10 s segment.
 */
export function makeVideo(options: VideoFixture = {}): Promise<string> {
  const { seconds = 4, width = 320, height = 240, withAudio = false, fps = 25, faststart = false } = options;
  const key = `video-${seconds}s-${width}x${height}-${fps}fps-${withAudio ? 'audio' : 'mute'}${faststart ? '-faststart' : ''}`;
  return cached(
    key,
    async (path) => {
      if (seconds > 2 * SEGMENT_SECONDS) {
        const segment = await makeVideo({ seconds: SEGMENT_SECONDS, width, height, withAudio, fps });
        const list = `${path}.txt`;
        await writeFile(list, `file '${segment}'\n`.repeat(Math.ceil(seconds / SEGMENT_SECONDS)));
        await ffmpeg([
          '-f',
          'concat',
          '-safe',
          '0',
          '-i',
          list,
          '-t',
          String(seconds),
          '-c',
          'copy',
          ...(faststart ? ['-movflags', '+faststart'] : []),
          path,
        ]);
        return;
      }
      const video = (await hasX264()) ? ['-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p'] : ['-c:v', 'mpeg4', '-q:v', '5'];
      await ffmpeg([
        '-f',
        'lavfi',
        '-i',
        `testsrc2=size=${width}x${height}:rate=${fps}:duration=${seconds}`,
        ...(withAudio ? ['-f', 'lavfi', '-i', `sine=frequency=440:sample_rate=44100:duration=${seconds}`] : []),
        ...video,
        '-g',
        String(Math.max(1, Math.round(fps * 2))),
        ...(withAudio ? ['-c:a', 'aac', '-b:a', '64k'] : []),
        ...(faststart ? ['-movflags', '+faststart'] : []),
        path,
      ]);
    },
    '.mp4',
  );
}

export interface AudioFixture {
  /** @default 3 */
  seconds?: number;
  format: 'wav' | 'mp3';
  /** @default 44100 */
  sampleRate?: number;
  /** @default 2 */
  channels?: number;
}

/** A 440 Hz sine tone as PCM WAV or MP3. */
export function makeAudio(options: AudioFixture): Promise<string> {
  const { seconds = 3, format, sampleRate = 44_100, channels = 2 } = options;
  return cached(
    `audio-${seconds}s-${sampleRate}hz-${channels}ch-${format}`,
    (path) =>
      ffmpeg([
        '-f',
        'lavfi',
        '-i',
        `sine=frequency=440:sample_rate=${sampleRate}:duration=${seconds}`,
        '-ac',
        String(channels),
        '-c:a',
        format === 'wav' ? 'pcm_s16le' : 'libmp3lame',
        path,
      ]),
    `.${format}`,
  );
}

/** Deterministic noise (a linear congruential generator), so failures reproduce. */
function noise(length: number, seed = 12345): Buffer {
  const bytes = Buffer.alloc(length);
  let state = seed >>> 0;
  for (let index = 0; index < length; index++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    bytes[index] = state >>> 24;
  }
  return bytes;
}

/** A fresh path in the fixture directory, for files a test writes itself; removed with the fixtures. */
export function fixturePath(extension = ''): string {
  return join(fixtureDir(), `file-${++counter}${extension}`);
}

/** A copy of `file` cut off after `bytes` bytes. */
export async function truncate(file: string, bytes: number): Promise<string> {
  const path = join(fixtureDir(), `truncated-${++counter}-${bytes}`);
  await writeFile(path, (await readFile(file)).subarray(0, bytes));
  return path;
}

/** A copy of `file` with `length` bytes from `offset` overwritten with noise. */
export async function corrupt(file: string, offset: number, length: number): Promise<string> {
  const data = await readFile(file);
  noise(Math.max(0, Math.min(length, data.length - offset))).copy(data, offset);
  const path = join(fixtureDir(), `corrupt-${++counter}`);
  await writeFile(path, data);
  return path;
}

/** A file of `bytes` bytes of noise, named like a video. */
export async function garbage(bytes: number, extension = '.mp4'): Promise<string> {
  const path = join(fixtureDir(), `garbage-${++counter}${extension}`);
  await writeFile(path, noise(bytes));
  return path;
}
