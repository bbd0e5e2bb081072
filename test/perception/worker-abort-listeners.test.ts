import { execFile } from 'node:child_process';
import { getEventListeners, setMaxListeners } from 'node:events';
import { readFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';
import type { AnalyzerImage } from '../../src/perception/analyzers.ts';
import { createWorkerTextReader } from '../../src/perception/worker/worker-analyzers.ts';
import { ffmpegContext, fixturePath, removeMediaFixtures } from '../helpers/media-fixtures.ts';
import { startOcular } from '../helpers/ocular.ts';

/** Node 20 gives every AbortSignal this limit and warns past it; later versions give none, so tests set it. */
const NODE_LISTENER_LIMIT = 10;

afterAll(() => removeMediaFixtures());

/** Collects the process's warnings while `run` runs. */
async function warningsDuring(run: () => Promise<void>): Promise<Error[]> {
  const warnings: Error[] = [];
  const onWarning = (warning: Error): void => {
    warnings.push(warning);
  };
  process.on('warning', onWarning);
  try {
    await run();
    // Warnings are emitted on a later tick.
    await new Promise((resolve) => setImmediate(resolve));
  } finally {
    process.off('warning', onWarning);
  }
  return warnings;
}

async function smallFrame(shade: number): Promise<AnalyzerImage> {
  const data = await sharp({ create: { width: 64, height: 48, channels: 3, background: { r: shade, g: shade, b: shade } } })
    .jpeg()
    .toBuffer();
  return { data, width: 64, height: 48 };
}

describe('analyzer calls that share one abort signal', () => {
  it('add one abort listener to it however many wait, remove it when they settle, and all abort with it', async () => {
    const reader = createWorkerTextReader();
    try {
      const frames = await Promise.all(Array.from({ length: 2 * NODE_LISTENER_LIMIT }, (_, index) => smallFrame(index * 10)));
      const warnings = await warningsDuring(async () => {
        const settled = new AbortController();
        setMaxListeners(NODE_LISTENER_LIMIT, settled.signal);
        const reads = frames.map((frame) => reader.read(frame, settled.signal));
        expect(getEventListeners(settled.signal, 'abort')).toHaveLength(1);
        await Promise.all(reads);
        expect(getEventListeners(settled.signal, 'abort')).toHaveLength(0);

        const aborted = new AbortController();
        setMaxListeners(NODE_LISTENER_LIMIT, aborted.signal);
        const cancelled = frames.map((frame) =>
          reader.read(frame, aborted.signal).then(
            () => 'read',
            (error: unknown) => error,
          ),
        );
        expect(getEventListeners(aborted.signal, 'abort')).toHaveLength(1);
        const reason = new Error('stop');
        aborted.abort(reason);
        expect(await Promise.all(cancelled)).toEqual(frames.map(() => reason));
      });
      expect(warnings.filter((warning) => warning.name === 'MaxListenersExceededWarning')).toEqual([]);
    } finally {
      await reader.close();
    }
  }, 60_000);
});

describe('indexing a 30 s clip', () => {
  it('keeps the abort listeners on any one signal well under the limit, and prints no warning', async () => {
    // Noise: every keyframe differs, so none is skipped as a repeat and every analyzer call is made.
    const path = fixturePath('.mp4');
    const source = 'color=c=gray:size=320x240:rate=25:duration=30,noise=alls=100:allf=t';
    const video = ['-c:v', 'libx264', '-preset', 'ultrafast', '-g', '50'];
    await promisify(execFile)(ffmpegContext.binaries.ffmpeg, [
      '-nostdin',
      '-loglevel',
      'error',
      '-y',
      '-f',
      'lavfi',
      '-i',
      source,
      ...video,
      path,
    ]);
    // OCR on every keyframe and objects on many: dozens of calls on the job's signal, two segments at once.
    const ocular = await startOcular({
      indexing: { ocrIntervalSeconds: 0.1, objectFramesPerSegment: 20, vad: { enabled: false }, labels: { enabled: false } },
    });
    // Node 24 sets no limit on signals (so never warns): count the listeners each signal holds at its fullest.
    let mostOnOneSignal = 0;
    const addEventListener = EventTarget.prototype.addEventListener;
    EventTarget.prototype.addEventListener = function (this: EventTarget, ...args: Parameters<EventTarget['addEventListener']>) {
      addEventListener.apply(this, args);
      if (this instanceof AbortSignal && args[0] === 'abort')
        mostOnOneSignal = Math.max(mostOnOneSignal, getEventListeners(this, 'abort').length);
    };
    try {
      const warnings = await warningsDuring(async () => {
        const body = new FormData();
        body.set('video_name', 'noise');
        body.set('index', 'true');
        body.set('file', new Blob([new Uint8Array(await readFile(path))], { type: 'video/mp4' }), 'noise.mp4');
        const response = await fetch(`${ocular.url}/v1/videos/upload`, { method: 'POST', headers: { 'x-api-key': ocular.key }, body });
        expect(response.status).toBe(200);
        const { video_id: id } = (await response.json()) as { video_id: string };
        const deadline = Date.now() + 90_000;
        for (;;) {
          const { indexing_status: status } = (await (await ocular.get(`/v1/videos/${id}`)).json()) as { indexing_status: string };
          if (status === 'indexed') break;
          expect(status).not.toBe('failed');
          expect(Date.now()).toBeLessThan(deadline);
          await new Promise((resolve) => setTimeout(resolve, 200));
        }
      });
      expect(warnings.map((warning) => `${warning.name}: ${warning.message}`)).toEqual([]);
      // One per analyzer worker plus the job's own; a listener per call reached the limit (10) on this clip.
      expect(mostOnOneSignal).toBeGreaterThan(0);
      expect(mostOnOneSignal).toBeLessThanOrEqual(4);
    } finally {
      EventTarget.prototype.addEventListener = addEventListener;
      await ocular.close();
    }
  }, 120_000);
});
