// What Ocular's frame sampling costs against plain ffmpeg: 16 frames (fitted in 768 px) from a 10-minute
// 720p H.264 video, through sampleFrames (ffprobe, then one seeking ffmpeg per frame, bounded concurrency)
// and through the fastest bare ffmpeg command lines for the same 16 timestamps, which are told the duration
// and so skip the probe. The video is generated once and cached in the OS temp directory.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pLimit from 'p-limit';
import { readEnvironment } from '../src/config/settings.ts';
import { createFfmpegContext, type FfmpegContext } from '../src/media/binaries.ts';
import { buildFitFilter, formatSeconds } from '../src/media/ffmpeg-commands.ts';
import { planFrameTimestamps, sampleFrames } from '../src/media/video.ts';
import { BENCH_CACHE_DIR, median, printTable, verdict } from './report.ts';

const run = promisify(execFile);

/** The target: Ocular's median time over the fastest bare approach's. */
const TARGET_RATIO = 1.2;

const PLAN = {
  seconds: 600,
  width: 1280,
  height: 720,
  fps: 30,
  /** The video repeats one segment joined without re-encoding: generating 18,000 frames would take minutes. */
  segmentSeconds: 20,
  /** x264 quality: about 5.5 Mbit/s for this pattern, a usual 720p bitrate (the file is ~420 MB). */
  crf: 28,
  frames: 16,
  maxSide: 768,
  repetitions: 3,
  /** Ocular's default, used for the bare per-frame commands too. */
  concurrency: Math.min(4, availableParallelism()),
  /** The single-process full decode is run once, and given up on after this long. */
  fullDecodeLimitMs: 30_000,
};

const QUIET = ['-nostdin', '-hide_banner', '-loglevel', 'error'];

async function ffmpeg(context: FfmpegContext, args: string[], timeout = 600_000): Promise<Buffer> {
  const { stdout } = await run(context.binaries.ffmpeg, [...QUIET, ...args], { encoding: 'buffer', maxBuffer: 256 * 1024 * 1024, timeout });
  return stdout;
}

/** The cached 10-minute 720p test video; generated (about 10 s) when missing. */
async function benchVideo(context: FfmpegContext): Promise<string> {
  const name = `ocular-bench-testsrc2-${PLAN.width}x${PLAN.height}-${PLAN.fps}fps-${PLAN.seconds}s-seg${PLAN.segmentSeconds}-x264ultrafast-crf${PLAN.crf}.mp4`;
  const path = join(BENCH_CACHE_DIR, name);
  if (existsSync(path)) return path;
  process.stdout.write(`video-sampling: generating ${path} (once)...\n`);
  await mkdir(BENCH_CACHE_DIR, { recursive: true });
  // Next to the cache, so the finished file is renamed into it rather than copied across file systems.
  const work = await mkdtemp(join(BENCH_CACHE_DIR, 'generating-'));
  try {
    const segment = join(work, 'segment.mp4');
    await ffmpeg(context, [
      '-f',
      'lavfi',
      '-i',
      `testsrc2=size=${PLAN.width}x${PLAN.height}:rate=${PLAN.fps}:duration=${PLAN.segmentSeconds}`,
      '-c:v',
      'libx264',
      '-preset',
      'ultrafast',
      '-crf',
      String(PLAN.crf),
      '-pix_fmt',
      'yuv420p',
      segment,
    ]);
    const list = join(work, 'list.txt');
    await writeFile(list, `file '${segment}'\n`.repeat(Math.ceil(PLAN.seconds / PLAN.segmentSeconds)));
    const partial = join(work, 'video.mp4');
    await ffmpeg(context, ['-f', 'concat', '-safe', '0', '-i', list, '-c', 'copy', partial]);
    await rename(partial, path); // whole or not at all: an interrupted run leaves no half file in the cache
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  return path;
}

// ---- the approaches; each returns the JPEGs it produced, so that they can be checked to be the same work ----

const frameArgs = (video: string, timestamp: number, extraBefore: string[] = []): string[] => [
  ...extraBefore,
  '-ss',
  formatSeconds(timestamp),
  '-i',
  video,
  '-frames:v',
  '1',
  '-vf',
  buildFitFilter(PLAN.maxSide),
  '-f',
  'image2pipe',
  '-vcodec',
  'mjpeg',
  '-q:v',
  '3',
  '-',
];

function countJpegs(bytes: Buffer): number {
  let count = 0;
  for (
    let index = bytes.indexOf(Buffer.from([0xff, 0xd8, 0xff]));
    index !== -1;
    index = bytes.indexOf(Buffer.from([0xff, 0xd8, 0xff]), index + 3)
  ) {
    count += 1;
  }
  return count;
}

interface Approach {
  name: string;
  run(video: string, timestamps: number[]): Promise<number>;
  /** Runs once instead of PLAN.repetitions (too slow to repeat). */
  once?: boolean;
}

function approaches(context: FfmpegContext): Approach[] {
  const perFrame = (extraBefore: string[]) => async (video: string, timestamps: number[]) => {
    const limit = pLimit(PLAN.concurrency);
    const jpegs = await Promise.all(timestamps.map((timestamp) => limit(() => ffmpeg(context, frameArgs(video, timestamp, extraBefore)))));
    return jpegs.filter((jpeg) => countJpegs(jpeg) === 1).length;
  };
  return [
    { name: `bare: 1 seeking ffmpeg per frame, ${PLAN.concurrency} at a time`, run: perFrame([]) },
    { name: `bare: same, -threads 1`, run: perFrame(['-threads', '1']) },
    {
      name: 'bare: 1 ffmpeg, 16 seeking inputs',
      run: async (video, timestamps) => {
        const out = await mkdtemp(join(tmpdir(), 'ocular-bench-frames-'));
        try {
          const inputs = timestamps.flatMap((timestamp) => ['-ss', formatSeconds(timestamp), '-i', video]);
          const outputs = timestamps.flatMap((_, index) => [
            '-map',
            `${index}:v:0`,
            '-frames:v',
            '1',
            '-vf',
            buildFitFilter(PLAN.maxSide),
            '-q:v',
            '3',
            join(out, `${String(index).padStart(2, '0')}.jpg`),
          ]);
          await ffmpeg(context, [...inputs, ...outputs]);
          return (await readdir(out)).length;
        } finally {
          await rm(out, { recursive: true, force: true });
        }
      },
    },
    {
      name: '1 ffmpeg, select filter (decodes everything)',
      once: true,
      run: async (video, timestamps) => {
        const frames = timestamps.map((timestamp) => `eq(n,${Math.round(timestamp * PLAN.fps)})`).join('+');
        const stdout = await ffmpeg(
          context,
          [
            '-i',
            video,
            '-vf',
            `select='${frames}',${buildFitFilter(PLAN.maxSide)}`,
            '-vsync',
            '0',
            '-f',
            'image2pipe',
            '-vcodec',
            'mjpeg',
            '-q:v',
            '3',
            '-',
          ],
          PLAN.fullDecodeLimitMs,
        );
        return countJpegs(stdout);
      },
    },
  ];
}

// ---- statistics and report ----

const formatMs = (value: number): string => value.toFixed(0);

async function time(run: () => Promise<number>): Promise<{ ms: number; frames: number }> {
  const started = performance.now();
  const frames = await run();
  return { ms: performance.now() - started, frames };
}

// ---- the bench ----

const OCULAR = 'Ocular sampleFrames (probe + seeks)';

export async function runVideoSampling(): Promise<void> {
  const context = createFfmpegContext({ searchPath: readEnvironment().PATH });
  const video = await benchVideo(context);
  const megabitsPerSecond = ((await stat(video)).size * 8) / PLAN.seconds / 1e6;
  const timestamps = planFrameTimestamps(PLAN.seconds, { maxFrames: PLAN.frames });
  const ocular = async (): Promise<number> =>
    (await sampleFrames(video, { maxFrames: PLAN.frames, maxSide: PLAN.maxSide, concurrency: PLAN.concurrency }, context)).length;
  const bare = approaches(context);
  const repeated = bare.filter((approach) => approach.once !== true);

  process.stdout.write('video-sampling: warming up (page cache, one run each)...\n');
  await ocular();
  for (const approach of repeated) await approach.run(video, timestamps);

  process.stdout.write(`video-sampling: ${PLAN.repetitions} rounds, approaches interleaved...\n`);
  const samples = new Map<string, number[]>([[OCULAR, []], ...bare.map((approach): [string, number[]] => [approach.name, []])]);
  const problems: string[] = [];
  const record = (name: string, result: { ms: number; frames: number }): void => {
    samples.get(name)!.push(result.ms);
    if (result.frames !== PLAN.frames) problems.push(`${name} produced ${result.frames} frames, not ${PLAN.frames}`);
  };
  for (let round = 0; round < PLAN.repetitions; round++) {
    record(OCULAR, await time(ocular));
    for (const approach of repeated) record(approach.name, await time(() => approach.run(video, timestamps)));
  }
  for (const approach of bare.filter((candidate) => candidate.once === true)) {
    process.stdout.write(`video-sampling: ${approach.name}, once (limit ${PLAN.fullDecodeLimitMs / 1000} s)...\n`);
    try {
      record(approach.name, await time(() => approach.run(video, timestamps)));
    } catch (error) {
      problems.push(`${approach.name}: ${error instanceof Error ? error.message.split('\n')[0] : String(error)} (left out)`);
      samples.delete(approach.name);
    }
  }

  const rows = [...samples].map(([name, values]) => ({ name, values, ms: median(values) }));
  const ocularMedian = rows[0]!.ms;
  const fastest = rows.slice(1).reduce((best, candidate) => (candidate.ms < best.ms ? candidate : best));
  const ratio = ocularMedian / fastest.ms;

  process.stdout.write(
    `\nVideo sampling: ${PLAN.frames} frames fitted in ${PLAN.maxSide} px from a ${PLAN.seconds / 60}-minute ${PLAN.width}x${PLAN.height} ` +
      `${PLAN.fps} fps H.264 video (${megabitsPerSecond.toFixed(1)} Mbit/s), ${PLAN.concurrency} at a time, ${availableParallelism()} CPUs\n\n`,
  );
  printTable([
    ['approach', 'runs', 'median ms', 'all ms'],
    ...rows.map((row) => [row.name, String(row.values.length), formatMs(row.ms), row.values.map(formatMs).join(' ')]),
  ]);
  process.stdout.write('\n');
  printTable([
    ['target', 'Ocular', 'fastest bare', 'ratio', 'goal', 'result'],
    [
      'sampleFrames vs fastest bare ffmpeg',
      `${formatMs(ocularMedian)} ms`,
      `${formatMs(fastest.ms)} ms`,
      `${ratio.toFixed(2)}x`,
      `<= ${TARGET_RATIO}x`,
      verdict(ratio <= TARGET_RATIO),
    ],
  ]);
  process.stdout.write(
    `fastest bare approach: ${fastest.name}. The bare commands are given the timestamps; Ocular also runs ffprobe to learn\n` +
      `the duration. The test video repeats a ${PLAN.segmentSeconds} s segment (joined without re-encoding), which changes nothing for seeking.\n`,
  );
  for (const problem of problems) process.stdout.write(`note: ${problem}\n`);
  process.stdout.write('\n');
}
