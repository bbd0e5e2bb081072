import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';
import { buildVideoScanArgs, FFMPEG_BASE_ARGS, formatIntervalRate } from '../../src/media/ffmpeg-commands.ts';
import { runProcess } from '../../src/media/run-process.ts';
import {
  assignKeyframes,
  findCuts,
  planSegments,
  scanVideo,
  type SceneScore,
  type VideoScan,
  type VideoSegment,
} from '../../src/media/video-scan.ts';
import { probeMedia } from '../../src/media/video.ts';
import { OcularError } from '../../src/spec/errors.ts';
import { ffmpegContext, fixturePath, garbage, makeAudio, makeVideo, removeMediaFixtures, truncate } from '../helpers/media-fixtures.ts';
import { COUNTER_CYCLE, makeFrameCounterVideo, makeSceneVideo, readCounter } from '../helpers/video-scan-fixtures.ts';
import { expectOcularError, rejectionOf } from '../helpers/rejections.ts';

afterAll(removeMediaFixtures);

/** A fresh, not yet existing directory for one scan's keyframes. */
const outputDirectory = (): string => fixturePath('-keyframes');

const keyframeFiles = (directory: string): string[] =>
  existsSync(directory) ? readdirSync(directory).filter((name) => name.endsWith('.jpg')) : [];

/** Command lines of the live processes that mention `text` (Linux /proc), to prove that no ffmpeg was left running. */
function processesMentioning(text: string): string[] {
  const found: string[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const commandLine = readFileSync(`/proc/${entry}/cmdline`, 'utf8').replaceAll('\0', ' ');
      if (commandLine.includes(text)) found.push(commandLine);
    } catch {
      // The process exited while we looked.
    }
  }
  return found;
}

/** The mean gray level of a JPEG, decoded independently of ffmpeg. */
async function meanLevel(path: string): Promise<number> {
  const pixels = await sharp(path).greyscale().raw().toBuffer();
  return pixels.reduce((sum, value) => sum + value, 0) / pixels.length;
}

function expectValidPlan(segments: VideoSegment[], durationSeconds: number, minSeconds = 5, maxSeconds = 15): void {
  expect(segments.length).toBeGreaterThan(0);
  expect(segments[0]!.startSeconds).toBe(0);
  expect(segments.at(-1)!.endSeconds).toBe(durationSeconds);
  for (const [index, segment] of segments.entries()) {
    if (index > 0) expect(segment.startSeconds).toBe(segments[index - 1]!.endSeconds);
    const length = segment.endSeconds - segment.startSeconds;
    if (durationSeconds < minSeconds) {
      expect(segments).toHaveLength(1);
    } else {
      expect(length).toBeGreaterThanOrEqual(minSeconds - 1e-9);
      expect(length).toBeLessThanOrEqual(maxSeconds + 1e-9);
    }
  }
}

describe('buildVideoScanArgs', () => {
  it('writes 1000/ms as an exact reduced rate', () => {
    expect(formatIntervalRate(2000)).toBe('1/2');
    expect(formatIntervalRate(250)).toBe('4/1');
    expect(formatIntervalRate(700)).toBe('10/7');
    expect(formatIntervalRate(333)).toBe('1000/333');
  });

  it('decodes once into analysis frames on stdout and keyframe files, scaling only what the fps filters keep', () => {
    const args = buildVideoScanArgs({
      inputPath: '/in/a.mp4',
      streamIndex: 2,
      analysisIntervalMs: 250,
      analysisWidth: 64,
      analysisHeight: 36,
      keyframeIntervalMs: 2000,
      maxKeyframeSide: 1280,
      keyframePathPrefix: '/out/50%/keyframe-',
    });
    expect(args.slice(0, 10)).toEqual([...FFMPEG_BASE_ARGS, '-threads', '0', '-protocol_whitelist', 'file', '-i', 'file:/in/a.mp4']);
    expect(args.filter((arg) => arg === '-i')).toHaveLength(1);
    expect(args[args.indexOf('-filter_complex') + 1]).toBe(
      '[0:2]split=2[analysis][keyframes];' +
        '[analysis]fps=fps=4/1:start_time=0,scale=64:36:flags=area,format=gray[analysis_out];' +
        "[keyframes]fps=fps=1/2:start_time=0:round=up,scale=w='min(iw,1280)':h='min(ih,1280)':force_original_aspect_ratio=decrease[keyframes_out]",
    );
    expect(args.slice(args.indexOf('-filter_complex') + 2)).toEqual([
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
      '-y',
      // `%` in the directory is escaped for the image2 muxer; the sequence number is not.
      'file:/out/50%%/keyframe-%06d.jpg',
    ]);
  });
});

describe('runProcess onStdout', () => {
  it('streams stdout to the callback instead of collecting it, past maxStdoutBytes', async () => {
    let bytes = 0;
    const { stdout } = await runProcess(
      ffmpegContext.binaries.ffmpeg,
      [...FFMPEG_BASE_ARGS, '-f', 'lavfi', '-i', 'color=size=64x36:rate=25:duration=4', '-f', 'rawvideo', '-pix_fmt', 'gray', '-'],
      { maxStdoutBytes: 1000, onStdout: (chunk) => (bytes += chunk.length) },
    );
    expect(stdout.length).toBe(0);
    expect(bytes).toBe(100 * 64 * 36);
  });

  it('kills the process and rejects with what the callback threw', async () => {
    const thrown = new Error('bad frame');
    const started = performance.now();
    const endless = [...FFMPEG_BASE_ARGS, '-f', 'lavfi', '-i', 'testsrc2=size=64x36:rate=25', '-f', 'rawvideo', '-'];
    const error = await rejectionOf(
      runProcess(ffmpegContext.binaries.ffmpeg, endless, {
        onStdout: () => {
          throw thrown;
        },
      }),
    );
    expect(error).toBe(thrown);
    expect(performance.now() - started).toBeLessThan(5000);
  });
});

describe('scanVideo', () => {
  // 7 s red, 12 s of testsrc (a moving pattern), 6 s blue, with a soundtrack the scan must not decode.
  const scenes = [
    { source: 'color=c=red', seconds: 7 },
    { source: 'testsrc', seconds: 12 },
    { source: 'color=c=blue', seconds: 6 },
  ];
  let sceneVideo: Promise<string> | undefined;
  const threeScenes = (): Promise<string> => (sceneVideo ??= makeSceneVideo(scenes, { withAudio: true }));

  let sceneScan: Promise<{ scan: VideoScan; progress: number[]; outputDir: string }> | undefined;
  const scanThreeScenes = (): Promise<{ scan: VideoScan; progress: number[]; outputDir: string }> =>
    (sceneScan ??= (async () => {
      const outputDir = outputDirectory();
      const progress: number[] = [];
      const scan = await scanVideo(await threeScenes(), { outputDir }, ffmpegContext, undefined, (fraction) => progress.push(fraction));
      return { scan, progress, outputDir };
    })());

  it('finds the two scene changes, and nothing inside the moving scene', async () => {
    const { scan } = await scanThreeScenes();
    expect(scan.durationSeconds).toBeCloseTo(25, 1);
    expect(scan.cuts).toHaveLength(2);
    expect(Math.abs(scan.cuts[0]! - 7)).toBeLessThanOrEqual(0.5);
    expect(Math.abs(scan.cuts[1]! - 19)).toBeLessThanOrEqual(0.5);
    // One score per analysis frame (4 per second) after the first, in order.
    expect(scan.sceneScores.length).toBeGreaterThanOrEqual(98);
    expect(scan.sceneScores.length).toBeLessThanOrEqual(100);
    expect(scan.sceneScores.every((entry, index) => index === 0 || entry.timeSeconds > scan.sceneScores[index - 1]!.timeSeconds)).toBe(
      true,
    );
    const away = scan.sceneScores.filter((entry) => Math.abs(entry.timeSeconds - 7) > 0.5 && Math.abs(entry.timeSeconds - 19) > 0.5);
    expect(Math.max(...away.map((entry) => entry.score))).toBeLessThan(0.15);
  });

  it('writes a keyframe every 2 s from t=0, fitted and never enlarged, with their sizes', async () => {
    const { scan, outputDir } = await scanThreeScenes();
    expect(scan.keyframes.map((keyframe) => keyframe.timeSeconds)).toEqual([0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24]);
    expect(keyframeFiles(outputDir)).toHaveLength(13);
    for (const keyframe of scan.keyframes) {
      expect(keyframe.path.startsWith(outputDir)).toBe(true);
      expect({ width: keyframe.width, height: keyframe.height }).toEqual({ width: 320, height: 180 });
      const metadata = await sharp(keyframe.path).metadata();
      expect({ format: metadata.format, width: metadata.width, height: metadata.height }).toEqual({
        format: 'jpeg',
        width: 320,
        height: 180,
      });
    }
    // The first keyframes are red, the last blue: pictures match their times.
    const { dominant: first } = await sharp(scan.keyframes[0]!.path).stats();
    const { dominant: last } = await sharp(scan.keyframes.at(-1)!.path).stats();
    expect(first.r).toBeGreaterThan(200);
    expect(last.b).toBeGreaterThan(200);
  });

  it('reports increasing progress that ends at 1', async () => {
    const { progress } = await scanThreeScenes();
    expect(progress.length).toBeGreaterThan(10);
    expect(progress.every((value, index) => index === 0 || value > progress[index - 1]!)).toBe(true);
    expect(progress[0]).toBeGreaterThan(0);
    expect(progress.at(-2)).toBeLessThan(1);
    expect(progress.at(-1)).toBe(1);
  });

  it('plans the segments at the cuts and gives each its keyframes', async () => {
    const { scan } = await scanThreeScenes();
    const segments = planSegments(scan.durationSeconds, scan.cuts);
    expect(segments.map((segment) => [Math.round(segment.startSeconds), Math.round(segment.endSeconds)])).toEqual([
      [0, 7],
      [7, 19],
      [19, 25],
    ]);
    const assigned = assignKeyframes(segments, scan.keyframes);
    expect(assigned.map((segment) => segment.keyframes.length)).toEqual([4, 6, 3]);
  });

  it('scales keyframes down to maxKeyframeSide and spaces them by keyframeIntervalSeconds', async () => {
    const outputDir = outputDirectory();
    const scan = await scanVideo(await threeScenes(), { outputDir, maxKeyframeSide: 100, keyframeIntervalSeconds: 5 }, ffmpegContext);
    expect(scan.keyframes.map((keyframe) => keyframe.timeSeconds)).toEqual([0, 5, 10, 15, 20]);
    expect(scan.keyframes.map((keyframe) => [keyframe.width, keyframe.height])).toEqual(Array(5).fill([100, 56]));
    expect((await sharp(scan.keyframes[0]!.path).metadata()).width).toBe(100);
  });

  // Each frame's brightness encodes its number, so a keyframe tells which frame it is. Keyframe n must be the
  // frame on screen at n x interval: the last one whose timestamp is not after it (the first frame before the
  // video track starts).
  it.each([
    { container: 'mp4' as const, fps: '25', rate: 25, interval: 0.5, start: 0 },
    { container: 'mp4' as const, fps: '30000/1001', rate: 30000 / 1001, interval: 0.7, start: 0 },
    // MPEG-TS timestamps start at 1.4 s: keyframe 0 must still be frame 0.
    { container: 'ts' as const, fps: '30000/1001', rate: 30000 / 1001, interval: 0.7, start: 0 },
    // The soundtrack starts at 0 and the picture at 1 s: times stay on the file's timeline.
    { container: 'mp4' as const, fps: '25', rate: 25, interval: 0.5, start: 1 },
  ])(
    'keyframes are the frames on screen at their timestamps ($container, $fps fps, every $interval s, video from $start s)',
    async ({ container, fps, rate, interval, start }) => {
      const seconds = 6;
      const video = await makeFrameCounterVideo({ seconds, fps, container, videoStartSeconds: start });
      const endSeconds = start + Math.round(seconds * rate) / rate;
      // The bundled ffprobe build crashes on MPEG-TS, so that case passes the probe (which also skips ffprobe).
      const probe = { durationSeconds: endSeconds, formatName: container, video: { index: 0, width: 160, height: 120, codec: 'h264' } };
      const scan = await scanVideo(
        video,
        { outputDir: outputDirectory(), keyframeIntervalSeconds: interval, ...(container === 'ts' ? { probe } : {}) },
        ffmpegContext,
      );
      expect(scan.durationSeconds).toBeCloseTo(endSeconds, 2);
      expect(scan.keyframes).toHaveLength(Math.ceil(endSeconds / interval - 1e-9));
      for (const [index, keyframe] of scan.keyframes.entries()) {
        expect(keyframe.timeSeconds).toBeCloseTo(index * interval, 9);
        const expected = Math.floor(Math.max(0, keyframe.timeSeconds - start) * rate + 1e-6) % COUNTER_CYCLE;
        const actual = readCounter(await meanLevel(keyframe.path));
        // Within one frame, cyclically; in practice exact.
        const distance = Math.min(Math.abs(actual - expected), COUNTER_CYCLE - Math.abs(actual - expected));
        expect({ time: keyframe.timeSeconds, distance }).toEqual({ time: keyframe.timeSeconds, distance: 0 });
      }
    },
  );

  it('replaces keyframe files left by an earlier run and leaves other files alone', async () => {
    // A `%` in the directory must not be read as part of ffmpeg's file name pattern.
    const outputDir = join(outputDirectory(), '50% done');
    mkdirSync(outputDir, { recursive: true });
    writeFileSync(join(outputDir, 'keyframe-000099.jpg'), 'stale');
    writeFileSync(join(outputDir, 'notes.txt'), 'keep');
    const scan = await scanVideo(await threeScenes(), { outputDir, keyframeIntervalSeconds: 10 }, ffmpegContext);
    expect(scan.keyframes).toHaveLength(3);
    expect(readdirSync(outputDir).sort()).toEqual(['keyframe-000000.jpg', 'keyframe-000001.jpg', 'keyframe-000002.jpg', 'notes.txt']);
  });

  it('rejects a file with no video stream', async () => {
    await expectOcularError(
      scanVideo(await makeAudio({ format: 'wav' }), { outputDir: outputDirectory() }, ffmpegContext),
      'unsupported_media_type',
    );
  });

  it('rejects bytes that are not a video, with or without a probe, and leaves no keyframes', async () => {
    const file = await garbage(50_000);
    const outputDir = outputDirectory();
    await expectOcularError(scanVideo(file, { outputDir }, ffmpegContext), 'unsupported_media_type');
    const probe = await probeMedia(await makeVideo(), ffmpegContext);
    const error = await expectOcularError(scanVideo(file, { outputDir, probe }, ffmpegContext), 'unsupported_media_type');
    expect(error.message).not.toContain(file);
    expect(keyframeFiles(outputDir)).toEqual([]);
  });

  it('rejects a cut-off file: an MP4 without its index, and one that stops early', async () => {
    const whole = await makeVideo({ seconds: 30 });
    await expectOcularError(
      scanVideo(await truncate(whole, 200_000), { outputDir: outputDirectory() }, ffmpegContext),
      'unsupported_media_type',
    );
    // With the index first, ffmpeg decodes up to the cut and exits 0: the scan notices the missing 28 s.
    const outputDir = outputDirectory();
    const streamable = await makeVideo({ seconds: 30, faststart: true });
    await expectOcularError(scanVideo(await truncate(streamable, 200_000), { outputDir }, ffmpegContext), 'unsupported_media_type');
    expect(keyframeFiles(outputDir)).toEqual([]);
  });

  it('kills ffmpeg on abort, rejects with the reason once it has exited, and removes its keyframes', async () => {
    const video = await makeVideo({ seconds: 600, width: 640, height: 360 });
    const controller = new AbortController();
    const reason = new Error('stop');
    const outputDir = outputDirectory();
    let calls = 0;
    const error = await rejectionOf(
      scanVideo(video, { outputDir }, ffmpegContext, controller.signal, () => {
        calls += 1;
        controller.abort(reason);
      }),
    );
    expect(error).toBe(reason);
    expect(calls).toBe(1);
    expect(processesMentioning(video)).toEqual([]);
    expect(keyframeFiles(outputDir)).toEqual([]);
    // Already aborted: nothing starts.
    expect(await rejectionOf(scanVideo(video, { outputDir }, ffmpegContext, AbortSignal.abort(reason)))).toBe(reason);
  });

  it('stops a scan that outlasts timeoutMs', async () => {
    const video = await makeVideo({ seconds: 600, width: 640, height: 360 });
    await expectOcularError(scanVideo(video, { outputDir: outputDirectory(), timeoutMs: 200 }, ffmpegContext), 'timeout_error');
    expect(processesMentioning(video)).toEqual([]);
  });

  it('rejects options out of range as validation errors', async () => {
    const video = await threeScenes();
    for (const options of [
      { keyframeIntervalSeconds: 0 },
      { analysisFps: 100 },
      { sceneThreshold: 0 },
      { maxKeyframeSide: 4 },
      { threads: -1 },
    ]) {
      await expectOcularError(scanVideo(video, { outputDir: outputDirectory(), ...options }, ffmpegContext), 'validation_error');
    }
  });
});

describe('findCuts', () => {
  const scores = (values: number[]): SceneScore[] => values.map((score, index) => ({ timeSeconds: (index + 1) / 4, score }));

  it('keeps local peaks above the threshold, one per change', () => {
    expect(findCuts(scores([0, 0.9, 0.1, 0, 0.29, 0.31, 0]), 0.3)).toEqual([0.5, 1.5]);
    // A change spread over two samples is one cut, at the stronger one; a plateau counts once.
    expect(findCuts(scores([0, 0.4, 0.6, 0, 0.5, 0.5, 0]), 0.3)).toEqual([0.75, 1.5]);
    expect(findCuts(scores([0.8]), 0.3)).toEqual([0.25]);
    expect(findCuts([], 0.3)).toEqual([]);
  });
});

describe('planSegments', () => {
  it('gives a video shorter than minSeconds (0 included) one segment', () => {
    expect(planSegments(0, [])).toEqual([{ startSeconds: 0, endSeconds: 0 }]);
    expect(planSegments(3, [1, 2])).toEqual([{ startSeconds: 0, endSeconds: 3 }]);
    expect(planSegments(4.99, [2.5])).toEqual([{ startSeconds: 0, endSeconds: 4.99 }]);
  });

  it('keeps a video of minSeconds..maxSeconds whole unless a cut leaves both sides long enough', () => {
    expect(planSegments(5, [])).toEqual([{ startSeconds: 0, endSeconds: 5 }]);
    expect(planSegments(15, [])).toEqual([{ startSeconds: 0, endSeconds: 15 }]);
    expect(planSegments(12, [4])).toEqual([{ startSeconds: 0, endSeconds: 12 }]);
    expect(planSegments(12, [6])).toEqual([
      { startSeconds: 0, endSeconds: 6 },
      { startSeconds: 6, endSeconds: 12 },
    ]);
  });

  it('splits a long scene into the fewest equal pieces', () => {
    expect(planSegments(15.5, [])).toEqual([
      { startSeconds: 0, endSeconds: 7.75 },
      { startSeconds: 7.75, endSeconds: 15.5 },
    ]);
    const hundred = planSegments(100, []);
    expect(hundred).toHaveLength(7);
    expectValidPlan(hundred, 100);
    for (const segment of hundred) expect(segment.endSeconds - segment.startSeconds).toBeCloseTo(100 / 7, 9);
  });

  it('cuts at scene changes and splits the scenes that are too long', () => {
    expect(planSegments(25, [7, 19])).toEqual([
      { startSeconds: 0, endSeconds: 7 },
      { startSeconds: 7, endSeconds: 19 },
      { startSeconds: 19, endSeconds: 25 },
    ]);
    const fifty = planSegments(50, [10]);
    expectValidPlan(fifty, 50);
    expect(fifty.map((segment) => [segment.startSeconds, segment.endSeconds].map((value) => Math.round(value * 1000) / 1000))).toEqual([
      [0, 10],
      [10, 23.333],
      [23.333, 36.667],
      [36.667, 50],
    ]);
  });

  it('drops cuts too close to the previous boundary or to the end', () => {
    // 11, 12 and 13 are within 5 s of 10; 37 would leave a 3 s tail.
    expect(planSegments(40, [10, 11, 12, 13, 37])).toEqual([
      { startSeconds: 0, endSeconds: 10 },
      { startSeconds: 10, endSeconds: 25 },
      { startSeconds: 25, endSeconds: 40 },
    ]);
    // A cut at 2 s would make a 2 s first segment.
    expect(planSegments(20, [2, 9])).toEqual([
      { startSeconds: 0, endSeconds: 9 },
      { startSeconds: 9, endSeconds: 20 },
    ]);
  });

  it('merges a short tail into the scene before, splitting that evenly when it gets too long', () => {
    expect(planSegments(19, [7, 16])).toEqual([
      { startSeconds: 0, endSeconds: 7 },
      { startSeconds: 7, endSeconds: 19 },
    ]);
    expect(planSegments(22, [18])).toEqual([
      { startSeconds: 0, endSeconds: 11 },
      { startSeconds: 11, endSeconds: 22 },
    ]);
  });

  it('ignores unsorted, repeated, non-finite and out-of-range cuts', () => {
    expect(planSegments(25, [19, Number.NaN, 7, -3, 19, 25, 40, Number.POSITIVE_INFINITY])).toEqual(planSegments(25, [7, 19]));
  });

  it('honours custom bounds', () => {
    const segments = planSegments(61, [3, 20, 21, 45], { minSeconds: 10, maxSeconds: 20 });
    expect(segments).toEqual([
      { startSeconds: 0, endSeconds: 20 },
      { startSeconds: 20, endSeconds: 32.5 },
      { startSeconds: 32.5, endSeconds: 45 },
      { startSeconds: 45, endSeconds: 61 },
    ]);
    expectValidPlan(segments, 61, 10, 20);
  });

  it('always covers the whole video with valid, deterministic segments', () => {
    let state = 42;
    const random = (): number => {
      state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
      return state / 2 ** 32;
    };
    for (let trial = 0; trial < 500; trial++) {
      const duration = random() < 0.1 ? random() * 5 : random() * 600;
      const cuts = Array.from({ length: Math.floor(random() * 40) }, () => random() * duration * 1.1 - 1);
      const segments = planSegments(duration, cuts);
      expectValidPlan(segments, duration);
      expect(planSegments(duration, [...cuts].reverse())).toEqual(segments);
    }
  });

  it('rejects bounds and durations it cannot honour', () => {
    for (const [duration, options] of [
      [10, { minSeconds: 5, maxSeconds: 9 }],
      [10, { minSeconds: 0 }],
      [-1, {}],
      [Number.NaN, {}],
      [Number.POSITIVE_INFINITY, {}],
    ] as const) {
      expect(() => planSegments(duration, [], options)).toThrow(OcularError);
    }
  });
});

describe('assignKeyframes', () => {
  const at = (...times: number[]): Array<{ timeSeconds: number }> => times.map((timeSeconds) => ({ timeSeconds }));
  const times = (assigned: Array<{ keyframes: Array<{ timeSeconds: number }> }>): number[][] =>
    assigned.map((segment) => segment.keyframes.map((keyframe) => keyframe.timeSeconds));

  it('puts each keyframe in the segment that contains it, a boundary starting the next one', () => {
    const segments = planSegments(25, [7, 19]);
    const assigned = assignKeyframes(segments, at(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24));
    expect(times(assigned)).toEqual([
      [0, 2, 4, 6],
      [8, 10, 12, 14, 16, 18],
      [20, 22, 24],
    ]);
    expect(times(assignKeyframes(segments, at(19, 7, 0)))).toEqual([[0], [7], [19]]);
    expect(assigned[1]).toMatchObject({ startSeconds: 7, endSeconds: 19 });
  });

  it('gives a segment with none the nearest keyframe, the earlier on a tie', () => {
    const segments = [
      { startSeconds: 0, endSeconds: 5 },
      { startSeconds: 5, endSeconds: 10 },
      { startSeconds: 10, endSeconds: 15 },
    ];
    expect(times(assignKeyframes(segments, at(1, 14)))).toEqual([[1], [1], [14]]);
    expect(times(assignKeyframes(segments, at(1, 11)))).toEqual([[1], [11], [11]]);
    expect(times(assignKeyframes(segments, at(7)))).toEqual([[7], [7], [7]]);
  });

  it('keeps keyframes just outside the segments, and returns empty lists when there are none', () => {
    const segments = [
      { startSeconds: 0, endSeconds: 5 },
      { startSeconds: 5, endSeconds: 10 },
    ];
    expect(times(assignKeyframes(segments, at(-0.1, 10, 10.2)))).toEqual([[-0.1], [10, 10.2]]);
    expect(times(assignKeyframes(segments, []))).toEqual([[], []]);
    expect(assignKeyframes([], at(1))).toEqual([]);
  });
});
