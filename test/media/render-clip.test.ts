import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { renderClip } from '../../src/media/render-clip.ts';
import { runProcess } from '../../src/media/run-process.ts';
import { Scratch } from '../../src/media/scratch.ts';
import { probeMedia } from '../../src/media/video.ts';
import { ffmpegContext, makeVideo, removeMediaFixtures } from '../helpers/media-fixtures.ts';

const root = mkdtempSync(join(tmpdir(), 'ocular-render-'));

afterAll(() => {
  rmSync(root, { recursive: true, force: true });
  removeMediaFixtures();
});

it('burns subtitles from a scratch folder whose name holds filtergraph syntax', async () => {
  // A data directory may be named anything: quotes, colons, commas and brackets must not break the filter.
  const dir = join(root, "it's: a [strange], dir; really");
  mkdirSync(dir);
  const scratch = await Scratch.create(dir);
  try {
    const input = await makeVideo({ seconds: 3, withAudio: true });
    const output = join(dir, 'out.mp4');
    const mode = await renderClip(
      {
        pieces: [{ inputPath: input, startSeconds: 0.5, endSeconds: 2.5, source: { width: 320, height: 240, hasAudio: true, fps: 25 } }],
        settings: { fit: 'pad', aspectRatio: '1:1', resolution: 240, cues: [{ startSeconds: 0, endSeconds: 2, text: 'Hello, world' }] },
        outputPath: output,
      },
      { ffmpeg: ffmpegContext, scratch, signal: new AbortController().signal, startIsKeyframe: false },
    );
    expect(mode).toBe('encode');
    const probe = await probeMedia(output, ffmpegContext);
    expect(probe.video).toMatchObject({ width: 240, height: 240 });
    expect(probe.durationSeconds).toBeCloseTo(2, 0);
  } finally {
    await scratch.dispose();
  }
});

it('draws subtitles with drawtext, for builds without libass', async () => {
  const scratch = await Scratch.create(root);
  try {
    const input = await makeVideo({ seconds: 3 });
    const render = async (cues: Array<{ startSeconds: number; endSeconds: number; text: string }>, name: string) => {
      const output = join(root, name);
      await renderClip(
        {
          pieces: [{ inputPath: input, startSeconds: 0, endSeconds: 2, source: { width: 320, height: 240, hasAudio: false, fps: 25 } }],
          settings: { fit: 'crop', resolution: 240, cues, subtitleFilter: 'drawtext' },
          outputPath: output,
        },
        { ffmpeg: ffmpegContext, scratch, signal: new AbortController().signal, startIsKeyframe: false },
      );
      const { stdout } = await runProcess(ffmpegContext.binaries.ffmpeg, [
        '-v',
        'error',
        '-ss',
        '1',
        '-i',
        output,
        '-frames:v',
        '1',
        '-vf',
        'crop=iw:ih/4:0:ih*3/4,scale=64:16,format=gray',
        '-f',
        'rawvideo',
        '-',
      ]);
      return stdout;
    };
    const plain = await render([], 'plain.mp4');
    const drawn = await render([{ startSeconds: 0.5, endSeconds: 2, text: "It's 50%: a, b; [c]" }], 'drawn.mp4');
    let difference = 0;
    for (let index = 0; index < plain.length; index++) difference += Math.abs(plain[index]! - drawn[index]!);
    expect(difference / plain.length).toBeGreaterThan(3);
  } finally {
    await scratch.dispose();
  }
});

it('kills ffmpeg when the render is aborted', async () => {
  const scratch = await Scratch.create(root);
  try {
    const input = await makeVideo({ seconds: 60, width: 640, height: 360 });
    const controller = new AbortController();
    const started = Date.now();
    const render = renderClip(
      {
        pieces: [{ inputPath: input, startSeconds: 0, endSeconds: 60, source: { width: 640, height: 360, hasAudio: false, fps: 25 } }],
        settings: { fit: 'crop', resolution: 1080 },
        outputPath: join(root, 'aborted.mp4'),
      },
      {
        ffmpeg: ffmpegContext,
        scratch,
        signal: controller.signal,
        startIsKeyframe: false,
        onProgress: () => controller.abort(new Error('stop')),
      },
    );
    await expect(render).rejects.toThrow('stop');
    expect(Date.now() - started).toBeLessThan(10_000);
  } finally {
    await scratch.dispose();
  }
});
