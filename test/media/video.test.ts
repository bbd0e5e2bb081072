import { writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';
import { OcularError } from '../../src/spec/errors.ts';
import { buildInputArgs, FFMPEG_BASE_ARGS } from '../../src/media/ffmpeg-commands.ts';
import { ProcessError, runProcess, toMediaError } from '../../src/media/run-process.ts';
import { extractFramesAt, formatTimestamp, planFrameTimestamps, probeMedia, sampleFrames } from '../../src/media/video.ts';
import {
  corrupt,
  ffmpegContext,
  fixturePath,
  garbage,
  makeAudio,
  makeVideo,
  removeMediaFixtures,
  truncate,
} from '../helpers/media-fixtures.ts';
import { expectOcularError, rejectionOf } from '../helpers/rejections.ts';

const FFMPEG = ffmpegContext.binaries.ffmpeg;
/** A lavfi source with no end: ffmpeg runs until it is killed. */
const ENDLESS = [...FFMPEG_BASE_ARGS, '-f', 'lavfi', '-i', 'testsrc2=size=320x240:rate=25', '-f', 'null', '-'];

afterAll(removeMediaFixtures);

async function jpegSize(jpeg: Buffer): Promise<{ width: number; height: number }> {
  const metadata = await sharp(jpeg).metadata();
  expect(metadata.format).toBe('jpeg');
  return { width: metadata.width, height: metadata.height };
}

describe('runProcess', () => {
  it('captures stdout as a Buffer on exit 0', async () => {
    const { stdout } = await runProcess(FFMPEG, ['-hide_banner', '-version']);
    expect(Buffer.isBuffer(stdout)).toBe(true);
    expect(stdout.toString()).toMatch(/^ffmpeg version/);
  });

  it('rejects a non-zero exit with the exit code and the end of stderr', async () => {
    const error = await rejectionOf(runProcess(FFMPEG, [...FFMPEG_BASE_ARGS, '-i', join(tmpdir(), 'ocular-no-such-file.mp4')]));
    expect(error).toBeInstanceOf(ProcessError);
    expect(error).toMatchObject({ failure: 'exit', exitCode: 1 });
    expect((error as ProcessError).stderrTail).toMatch(/No such file or directory/);
  });

  it('keeps only the last 4 KB of stderr', async () => {
    const error = await rejectionOf(
      runProcess('/bin/sh', ['-c', 'i=0; while [ $i -lt 2000 ]; do echo "line $i" >&2; i=$((i+1)); done; exit 3']),
    );
    expect(error).toMatchObject({ failure: 'exit', exitCode: 3 });
    const tail = (error as ProcessError).stderrTail;
    expect(tail.length).toBeLessThanOrEqual(4096);
    expect(tail).toMatch(/line 1999\n$/);
    expect(tail).not.toMatch(/line 0\n/);
    expect((error as ProcessError).message).toMatch(/line 1999$/);
  });

  it('kills a process whose stdout passes the cap', async () => {
    const started = performance.now();
    const error = await rejectionOf(
      runProcess(FFMPEG, [...FFMPEG_BASE_ARGS, '-f', 'lavfi', '-i', 'testsrc2=size=320x240:rate=25', '-f', 'rawvideo', '-'], {
        maxStdoutBytes: 1_000_000,
      }),
    );
    expect(error).toMatchObject({ failure: 'output_limit' });
    expect(performance.now() - started).toBeLessThan(5000);
  });

  it('kills a process that runs past the timeout', async () => {
    const started = performance.now();
    const error = await rejectionOf(runProcess(FFMPEG, ENDLESS, { timeoutMs: 300, stdout: 'ignore' }));
    expect(error).toMatchObject({ failure: 'timeout', signal: 'SIGKILL' });
    expect(performance.now() - started).toBeLessThan(3000);
  });

  it('kills the process on abort and rejects with the abort reason once it has exited', async () => {
    const controller = new AbortController();
    const reason = new Error('client went away');
    const running = runProcess(FFMPEG, ENDLESS, { signal: controller.signal, stdout: 'ignore' });
    await new Promise((resolve) => setTimeout(resolve, 200));
    const aborted = performance.now();
    controller.abort(reason);
    expect(await rejectionOf(running)).toBe(reason);
    expect(performance.now() - aborted).toBeLessThan(1000);
  });

  it('does not start anything when the signal is already aborted', async () => {
    const reason = new Error('too late');
    expect(await rejectionOf(runProcess('/definitely/not/here', [], { signal: AbortSignal.abort(reason) }))).toBe(reason);
  });

  it('reports an executable that cannot start', async () => {
    expect(await rejectionOf(runProcess(join(tmpdir(), 'ocular-no-such-binary'), []))).toMatchObject({ failure: 'spawn', exitCode: null });
  });

  it('maps failures to client errors, and a missing binary to a server error', () => {
    const failure = (kind: ProcessError['failure'], stderrTail = '') =>
      new ProcessError(kind, 'x', { command: 'ffmpeg', exitCode: 1, signal: null, stderrTail });
    const exit = toMediaError(
      failure('exit', 'file:/srv/scratch/1.mp4: Invalid data found when processing input\n'),
      'reading',
      '/srv/scratch/1.mp4',
    );
    expect(exit).toMatchObject({ type: 'unsupported_media_type', status: 415 });
    expect((exit as OcularError).message).not.toContain('/srv/scratch');
    expect(toMediaError(failure('timeout'), 'reading', 'a')).toMatchObject({ type: 'timeout_error' });
    expect(toMediaError(failure('output_limit'), 'reading', 'a')).toMatchObject({ type: 'payload_too_large' });
    expect(toMediaError(failure('spawn'), 'reading', 'a')).toMatchObject({ type: 'server_error' });
    const reason = new Error('aborted');
    expect(toMediaError(reason, 'reading', 'a')).toBe(reason);
  });
});

describe('planFrameTimestamps', () => {
  it('takes one frame per 1/fps seconds, at segment centres, when the clip is short', () => {
    expect(planFrameTimestamps(10)).toEqual([0.5, 1.5, 2.5, 3.5, 4.5, 5.5, 6.5, 7.5, 8.5, 9.5]);
    expect(planFrameTimestamps(3.5)).toEqual([0.5, 1.5, 2.5, 3.25]);
    expect(planFrameTimestamps(2.5, { fps: 2 })).toEqual([0.25, 0.75, 1.25, 1.75, 2.25]);
    expect(planFrameTimestamps(0.01)).toEqual([0.005]);
  });

  it('spreads maxFrames uniformly over a long clip', () => {
    const plan = planFrameTimestamps(600);
    expect(plan).toHaveLength(16);
    expect(plan[0]).toBe(18.75);
    expect(plan.at(-1)).toBe(581.25);
    expect(planFrameTimestamps(16)).toEqual(Array.from({ length: 16 }, (_, index) => index + 0.5));
    expect(planFrameTimestamps(100, { maxFrames: 4 })).toEqual([12.5, 37.5, 62.5, 87.5]);
    expect(planFrameTimestamps(7, { maxFrames: 1 })).toEqual([3.5]);
  });

  it('always plans at least one frame, never past the end, in increasing order', () => {
    expect(planFrameTimestamps(0)).toEqual([0]);
    expect(planFrameTimestamps(-3)).toEqual([0]);
    expect(planFrameTimestamps(Number.NaN)).toEqual([0]);
    expect(planFrameTimestamps(Number.POSITIVE_INFINITY)).toEqual([0]);
    expect(planFrameTimestamps(5, { maxFrames: 0, fps: 0 })).toEqual([2.5]);
    // 8.3 s at 30 fps is 249.00000000000003 segments in floating point: a 250th would start at the very end.
    for (const duration of [0.0004, 0.3, 1, 1.0001, 7.77, 8.3, 15.99, 16.01, 59.94, 3601.5, 86_400]) {
      for (const options of [{}, { maxFrames: 3, fps: 0.5 }, { maxFrames: 256, fps: 30 }]) {
        const plan = planFrameTimestamps(duration, options);
        expect(plan.length).toBeGreaterThanOrEqual(1);
        expect(plan.length).toBeLessThanOrEqual((options as { maxFrames?: number }).maxFrames ?? 16);
        for (const [index, timestamp] of plan.entries()) {
          expect(timestamp).toBeGreaterThanOrEqual(0);
          expect(timestamp).toBeLessThan(duration);
          if (index > 0) expect(timestamp).toBeGreaterThan(plan[index - 1]!);
        }
      }
    }
  });
});

describe('formatTimestamp', () => {
  it('prints mm:ss under an hour and h:mm:ss from an hour on', () => {
    expect(formatTimestamp(0)).toBe('00:00');
    expect(formatTimestamp(12.9)).toBe('00:12');
    expect(formatTimestamp(62)).toBe('01:02');
    expect(formatTimestamp(3599.99)).toBe('59:59');
    expect(formatTimestamp(3723)).toBe('1:02:03');
    expect(formatTimestamp(36_000)).toBe('10:00:00');
    expect(formatTimestamp(Number.NaN)).toBe('00:00');
    expect(formatTimestamp(-5)).toBe('00:00');
  });
});

describe('probeMedia', () => {
  it('reads duration, format, video and audio streams', async () => {
    const probe = await probeMedia(await makeVideo({ seconds: 4, withAudio: true }), ffmpegContext);
    expect(probe.durationSeconds).toBeCloseTo(4, 1);
    expect(probe.formatName).toContain('mp4');
    expect(probe.video).toEqual({ index: 0, width: 320, height: 240, codec: 'h264', durationSeconds: 4, averageFps: 25 });
    expect(probe.audio).toEqual({ index: 1, codec: 'aac', sampleRate: 44_100, channels: 1 });
  });

  it('has no audio entry for a silent video and no video entry for audio', async () => {
    expect((await probeMedia(await makeVideo({ seconds: 4 }), ffmpegContext)).audio).toBeUndefined();
    const audio = await probeMedia(await makeAudio({ seconds: 3, format: 'mp3' }), ffmpegContext);
    expect(audio.video).toBeUndefined();
    expect(audio.audio).toMatchObject({ codec: 'mp3', sampleRate: 44_100, channels: 2 });
    expect(audio.durationSeconds).toBeCloseTo(3, 1);
  });

  it('reports display dimensions of a rotated video', async () => {
    const rotated = fixturePath('.mp4');
    const source = await makeVideo({ seconds: 4 });
    await runProcess(FFMPEG, [...FFMPEG_BASE_ARGS, '-y', '-i', source, '-c', 'copy', '-metadata:s:v:0', 'rotate=90', rotated]);
    const probe = await probeMedia(rotated, ffmpegContext);
    expect(probe.video).toMatchObject({ width: 240, height: 320 });
    const [frame] = await extractFramesAt(rotated, [1], { maxSide: 768 }, ffmpegContext);
    expect(await jpegSize(frame!.jpeg)).toEqual({ width: 240, height: 320 });
  });

  it('measures the duration of a file whose header states none (a piped WebM/Matroska recording)', async () => {
    const source = await makeVideo({ seconds: 4, withAudio: true });
    const { stdout } = await runProcess(FFMPEG, [...FFMPEG_BASE_ARGS, ...buildInputArgs(source), '-c', 'copy', '-f', 'matroska', '-']);
    const piped = fixturePath('.mkv');
    await writeFile(piped, stdout);
    const probe = await probeMedia(piped, ffmpegContext);
    expect(probe.durationSeconds).toBeGreaterThan(3.8);
    expect(probe.durationSeconds).toBeLessThanOrEqual(4.1);
    expect(probe.formatName).toContain('matroska');
    const frames = await sampleFrames(piped, { maxSide: 768 }, ffmpegContext);
    expect(frames.map((frame) => frame.timestampSeconds)).toHaveLength(4);
  });

  it('never lets a playlist inside an upload make ffmpeg fetch a URL', async () => {
    let requests = 0;
    const server = createServer((_request, response) => {
      requests += 1;
      response.end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = server.address() as AddressInfo;
      const playlist = fixturePath('.m3u8');
      await writeFile(playlist, `#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nhttp://127.0.0.1:${port}/segment.ts\n#EXT-X-ENDLIST\n`);
      await expectOcularError(probeMedia(playlist, ffmpegContext), 'unsupported_media_type');
      await expectOcularError(extractFramesAt(playlist, [1], {}, ffmpegContext), 'unsupported_media_type');
      expect(requests).toBe(0);
    } finally {
      server.close();
    }
  });

  it('rejects bytes that are not media as unsupported_media_type', async () => {
    await expectOcularError(probeMedia(await garbage(50_000), ffmpegContext), 'unsupported_media_type');
    await expectOcularError(probeMedia(await garbage(0), ffmpegContext), 'unsupported_media_type');
    const error = await expectOcularError(
      probeMedia(await truncate(await makeVideo({ seconds: 4 }), 30_000), ffmpegContext),
      'unsupported_media_type',
    );
    expect(error.message).not.toContain(tmpdir());
  });
});

describe('sampleFrames', () => {
  it('takes one frame per second of a short clip, as JPEGs no larger than the video', async () => {
    const frames = await sampleFrames(await makeVideo({ seconds: 4 }), { maxSide: 768 }, ffmpegContext);
    expect(frames.map((frame) => frame.timestampSeconds)).toEqual([0.5, 1.5, 2.5, 3.5]);
    for (const frame of frames) expect(await jpegSize(frame.jpeg)).toEqual({ width: 320, height: 240 });
    // Different moments of the test pattern are different pictures.
    expect(new Set(frames.map((frame) => frame.jpeg.toString('base64'))).size).toBe(4);
  });

  it('spreads maxFrames over a long clip and fits them inside maxSide, keeping the aspect ratio', async () => {
    const video = await makeVideo({ seconds: 60, width: 1280, height: 720, fps: 10 });
    const frames = await sampleFrames(video, { maxFrames: 16, fps: 1, maxSide: 256, concurrency: 3 }, ffmpegContext);
    expect(frames.map((frame) => frame.timestampSeconds)).toEqual(planFrameTimestamps(60));
    for (const frame of frames) expect(await jpegSize(frame.jpeg)).toEqual({ width: 256, height: 144 });
  });

  it('seeks instead of decoding: 16 frames of a 10-minute video cost far less than decoding it once', async () => {
    const video = await makeVideo({ seconds: 600, fps: 25 });
    await sampleFrames(video, { maxFrames: 2 }, ffmpegContext); // warm the page cache
    const started = performance.now();
    const frames = await sampleFrames(video, { maxFrames: 16, maxSide: 768, concurrency: 2 }, ffmpegContext);
    const sampling = performance.now() - started;
    expect(frames).toHaveLength(16);
    expect(frames.at(-1)!.timestampSeconds).toBe(581.25);

    const decodeStarted = performance.now();
    await runProcess(FFMPEG, [...FFMPEG_BASE_ARGS, ...buildInputArgs(video), '-f', 'null', '-'], { stdout: 'ignore' });
    const fullDecode = performance.now() - decodeStarted;
    expect(sampling).toBeLessThan(fullDecode / 3);
    expect(sampling).toBeLessThan(3000);
  });

  it('stops every ffmpeg and rejects with the reason when aborted', async () => {
    const video = await makeVideo({ seconds: 600, fps: 25 });
    const controller = new AbortController();
    const reason = new Error('request cancelled');
    const running = sampleFrames(video, { maxFrames: 64, concurrency: 2 }, ffmpegContext, controller.signal);
    await new Promise((resolve) => setTimeout(resolve, 60));
    const aborted = performance.now();
    controller.abort(reason);
    expect(await rejectionOf(running)).toBe(reason);
    expect(performance.now() - aborted).toBeLessThan(500);
  });

  it('turns a run past the process timeout into timeout_error', async () => {
    await expectOcularError(sampleFrames(await makeVideo({ seconds: 4 }), {}, { ...ffmpegContext, timeoutMs: 1 }), 'timeout_error');
  });

  it('rejects garbage, a truncated MP4 and a file without video as unsupported_media_type', async () => {
    const video = await makeVideo({ seconds: 4 });
    await expectOcularError(sampleFrames(await garbage(200_000), {}, ffmpegContext), 'unsupported_media_type');
    await expectOcularError(sampleFrames(await truncate(video, 100_000), {}, ffmpegContext), 'unsupported_media_type');
    const error = await expectOcularError(sampleFrames(await makeAudio({ format: 'wav' }), {}, ffmpegContext), 'unsupported_media_type');
    expect(error.message).toMatch(/no video stream/);
  });

  it('rejects a streaming-ready MP4 cut off after its index as unsupported_media_type', async () => {
    const video = await makeVideo({ seconds: 4, faststart: true });
    await expectOcularError(sampleFrames(await truncate(video, 8_000), {}, ffmpegContext), 'unsupported_media_type');
  });

  it('answers corrupted video data with frames or a 4xx, never a server error', async () => {
    const video = await makeVideo({ seconds: 4 });
    for (const offset of [100, 5_000, 60_000]) {
      const damaged = await corrupt(video, offset, 4_000);
      const outcome = await sampleFrames(damaged, {}, ffmpegContext).catch((error: unknown) => error);
      if (Array.isArray(outcome)) {
        for (const frame of outcome) await jpegSize(frame.jpeg);
      } else {
        expect(outcome).toBeInstanceOf(OcularError);
        expect((outcome as OcularError).status).toBeGreaterThanOrEqual(400);
        expect((outcome as OcularError).status).toBeLessThan(500);
      }
    }
  });

  it('refuses a video with no duration as validation_error', async () => {
    const video = await makeVideo({ seconds: 4 });
    const { video: stream, ...probe } = await probeMedia(video, ffmpegContext);
    const { durationSeconds: _, ...withoutDuration } = stream!;
    await expectOcularError(
      sampleFrames(video, { probe: { ...probe, durationSeconds: 0, video: withoutDuration } }, ffmpegContext),
      'validation_error',
    );
  });

  it('uses a probe the caller already has', async () => {
    const video = await makeVideo({ seconds: 4 });
    const probe = await probeMedia(video, ffmpegContext);
    const frames = await sampleFrames(video, { probe: { ...probe, video: { ...probe.video!, durationSeconds: 2 } } }, ffmpegContext);
    expect(frames.map((frame) => frame.timestampSeconds)).toEqual([0.5, 1.5]);
  });
});
