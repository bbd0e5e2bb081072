import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AnalyzerImage, ObjectDetector, TextReader } from '../../src/perception/analyzers.ts';
import { createMobileNetLabeler } from '../../src/perception/labels/mobilenet-labeler.ts';
import { createHumanObjectDetector } from '../../src/perception/objects/human-object-detector.ts';
import { createPaddleTextReader } from '../../src/perception/ocr/paddle-text-reader.ts';
import { createSileroVad } from '../../src/perception/vad/silero-vad.ts';
import { fromWireError, toWireError } from '../../src/perception/worker/protocol.ts';
import {
  analyzerWorkerOf,
  createWorkerImageLabeler,
  createWorkerObjectDetector,
  createWorkerTextReader,
  createWorkerVad,
} from '../../src/perception/worker/worker-analyzers.ts';
import { isAbortError, isOcularError, OcularError } from '../../src/spec/errors.ts';
import { syntheticVoice } from '../helpers/synthetic-speech.ts';
import { rejectionOf } from '../helpers/rejections.ts';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const MODELS = fileURLToPath(new URL('../../../shared/models/', import.meta.url));
const VAD_MODEL = join(MODELS, 'silero-vad', 'silero_vad.onnx');
const LABELS_MODEL = join(MODELS, 'mobilenetv2-int8', 'mobilenetv2-12-int8.onnx');
const LABELS_FILE = join(MODELS, 'mobilenetv2-int8', 'imagenet-simple-labels.json');

const require = createRequire(import.meta.url);
/** A photo that ships inside `@vladmandic/human`; its third tile is a man seated behind a table (see objects.test.ts). */
const SAMPLES_JPG = join(dirname(require.resolve('@vladmandic/human')), '..', 'assets', 'samples.jpg');

async function personPhoto(): Promise<AnalyzerImage> {
  const data = await sharp(await readFile(SAMPLES_JPG))
    .extract({ left: 326, top: 0, width: 210, height: 157 })
    .jpeg({ quality: 95 })
    .toBuffer();
  return { data, width: 210, height: 157 };
}

/** Black text on a white 1280x720 frame, rendered by sharp. */
async function textFrame(text: string): Promise<AnalyzerImage> {
  const svg =
    `<svg xmlns="http://www.w3.org/2000/svg" width="1280" height="720"><rect width="100%" height="100%" fill="white"/>` +
    `<text x="100" y="300" font-family="sans-serif" font-weight="bold" font-size="120" fill="black">${text}</text>` +
    `<text x="100" y="560" font-family="sans-serif" font-size="60" fill="black">second line ${text.length}</text></svg>`;
  return { data: await sharp(Buffer.from(svg)).jpeg({ quality: 90 }).toBuffer(), width: 1280, height: 720 };
}

const corrupt: AnalyzerImage = { data: Buffer.from('this is not a jpeg, only some text'), width: 1280, height: 720 };
const squeeze = (text: string): string => text.replace(/\s+/g, '');

function expectOcularError(error: unknown, type: string): void {
  expect(error).toBeInstanceOf(OcularError);
  expect(isOcularError(error) && error.type).toBe(type);
}

/** The main thread's time on a CPU so far in ms, where Linux tells it; undefined elsewhere. */
function mainThreadCpuMs(): number | undefined {
  try {
    // The first field is the thread's total run time in ns. The main thread's id is the process id.
    return Number(readFileSync(`/proc/self/task/${process.pid}/schedstat`, 'utf8').split(' ')[0]) / 1e6;
  } catch {
    return undefined;
  }
}

interface LoopLoad {
  /** The longest the event loop went without turning, in ms. */
  longestStall: number;
  /**
   * The longest stall this thread caused itself: the most CPU time it used between two turns, in ms (Linux only).
   * `longestStall` also counts time the OS gave the core to other threads, which on a loaded 2-core machine
   * reaches tens of ms, now and then over 100, with nothing running here.
   */
  longestBusy: number | undefined;
  /** The share of the time the main thread was running rather than waiting for events (0..1). */
  utilization: number;
}

async function loopLoad(work: () => Promise<unknown>): Promise<LoopLoad> {
  const histogram = monitorEventLoopDelay({ resolution: 5 });
  let lastCpu = mainThreadCpuMs();
  let longestBusy = lastCpu === undefined ? undefined : 0;
  const probe = setInterval(() => {
    const cpu = mainThreadCpuMs();
    if (cpu !== undefined && lastCpu !== undefined && longestBusy !== undefined) longestBusy = Math.max(longestBusy, cpu - lastCpu);
    lastCpu = cpu;
  }, 2);
  const before = performance.eventLoopUtilization();
  histogram.enable();
  try {
    await work();
  } finally {
    histogram.disable();
    clearInterval(probe);
  }
  return { longestStall: histogram.max / 1e6, longestBusy, utilization: performance.eventLoopUtilization(before).utilization };
}

async function elapsed(work: () => Promise<unknown>): Promise<number> {
  const started = performance.now();
  await work();
  return performance.now() - started;
}

/** Numbers the report quotes: measured here, printed at the end. */
const measured: Record<string, number> = {};
afterAll(() => {
  const rounded = Object.fromEntries(Object.entries(measured).map(([name, value]) => [name, Math.round(value * 10) / 10]));
  console.info('analyzer worker measurements (ms unless named):', rounded);
});

describe('wire errors', () => {
  it('keep an OcularError its type, message and param, and other errors their name and message', () => {
    const ocular = fromWireError(toWireError(new OcularError('validation_error', 'bad size', { param: 'image.width', retryable: true })));
    expect(ocular).toBeInstanceOf(OcularError);
    expect(ocular).toMatchObject({ type: 'validation_error', status: 400, message: 'bad size', param: 'image.width', retryable: true });
    const range = fromWireError(toWireError(new RangeError('too far')));
    expect(range).toBeInstanceOf(Error);
    expect(range).not.toBeInstanceOf(OcularError);
    expect(range).toMatchObject({ name: 'RangeError', message: 'too far' });
    expect(fromWireError(toWireError('a string'))).toMatchObject({ name: 'Error', message: 'a string' });
  });
});

describe('text reader in a worker', () => {
  let inThread: TextReader;
  let inWorker: TextReader;
  const workerLoads: number[] = [];
  let frame: AnalyzerImage;

  beforeAll(async () => {
    inThread = createPaddleTextReader();
    inWorker = createWorkerTextReader({ onLoad: ({ milliseconds }) => workerLoads.push(milliseconds) });
    frame = await textFrame('OCULAR 2026');
  });

  afterAll(async () => {
    await Promise.all([inThread.close(), inWorker.close()]);
  });

  it('checks options when built, as in the main thread, and starts no worker until called', () => {
    expect(() => createWorkerTextReader({ minConfidence: 1.5 })).toThrow(RangeError);
    expect(() => createWorkerObjectDetector({ maxObjects: 0 })).toThrow(RangeError);
    expect(() => createWorkerVad({ modelPath: 'x.onnx', threshold: 2 })).toThrow(RangeError);
    expect(inWorker.name).toBe(inThread.name);
    expect(analyzerWorkerOf(inWorker)).toBeUndefined();
  });

  it('reads what the main-thread reader reads, loading once for concurrent first calls, and leaves the caller’s buffer alone', async () => {
    const before = Buffer.from(frame.data);
    let worker: ReturnType<typeof analyzerWorkerOf>;
    measured['worker first read (start + load + read)'] = await elapsed(async () => {
      const pending = Promise.all([inWorker.read(frame), inWorker.read(frame)]);
      worker = analyzerWorkerOf(inWorker);
      const [first, second] = await pending;
      expect(second).toEqual(first);
    });
    expect(worker).toBeDefined();
    expect(workerLoads).toHaveLength(1);
    measured['worker model load'] = workerLoads[0]!;
    const expected = await inThread.read(frame);
    expect(expected.lines.map((line) => squeeze(line.text))).toEqual(['OCULAR2026', 'secondline11']);
    expect(await inWorker.read(frame)).toEqual(expected);
    // The same worker answered every call, and the bytes sent were a copy.
    expect(analyzerWorkerOf(inWorker)).toBe(worker);
    expect(frame.data.byteLength).toBe(before.byteLength);
    expect(frame.data.equals(before)).toBe(true);
  });

  it('keeps the error type, message and param of a failed read', async () => {
    const expected = await rejectionOf(inThread.read(corrupt));
    const error = await rejectionOf(inWorker.read(corrupt));
    expectOcularError(error, 'unsupported_media_type');
    expect(error).toMatchObject({ message: (expected as OcularError).message, param: (expected as OcularError).param });
    // A failure is an answer, not a crash: the worker carries on.
    expect(squeeze((await inWorker.read(frame)).text)).toContain('OCULAR2026');
  });

  it('keeps the event loop turning while it reads a 720p frame', async () => {
    // Warm both (the worker is warm already), so what is measured is reads, not loads.
    await inThread.read(frame);
    const reads = async (reader: TextReader): Promise<void> => {
      for (let index = 0; index < 3; index += 1) await reader.read(frame);
    };
    const inThreadLoad = await loopLoad(() => reads(inThread));
    const inWorkerLoad = await loopLoad(() => reads(inWorker));
    measured['longest stall, OCR in the main thread'] = inThreadLoad.longestStall;
    measured['longest stall, OCR in a worker'] = inWorkerLoad.longestStall;
    measured['longest self-caused stall, OCR in the main thread'] = inThreadLoad.longestBusy ?? Number.NaN;
    measured['longest self-caused stall, OCR in a worker'] = inWorkerLoad.longestBusy ?? Number.NaN;
    measured['main thread busy %, OCR in the main thread'] = inThreadLoad.utilization * 100;
    measured['main thread busy %, OCR in a worker'] = inWorkerLoad.utilization * 100;
    expect(inWorkerLoad.utilization).toBeLessThan(0.1);
    expect(inThreadLoad.utilization).toBeGreaterThan(0.5);
    if (inWorkerLoad.longestBusy !== undefined && inThreadLoad.longestBusy !== undefined) {
      expect(inThreadLoad.longestBusy).toBeGreaterThan(100);
      // Usually a few ms; a garbage collection of the test's own heap can still take tens of ms now and then.
      expect(inWorkerLoad.longestBusy).toBeLessThan(inThreadLoad.longestBusy / 3);
    } else {
      expect(inWorkerLoad.longestStall).toBeLessThan(inThreadLoad.longestStall / 2);
    }
  });

  it('rejects an aborted call at once with the signal’s reason, and drops the worker’s late answer', async () => {
    const reason = new Error('caller left');
    const controller = new AbortController();
    const aborted = rejectionOf(inWorker.read(await textFrame('DROPPED'), controller.signal));
    // 30 ms into a read of several hundred. The rejection must come before the event loop turns again, so it
    // cannot have waited for anything from the worker.
    let turned = false;
    setTimeout(() => {
      controller.abort(reason);
      setImmediate(() => (turned = true));
    }, 30);
    expect(await aborted).toBe(reason);
    expect(turned).toBe(false);
    // The next call gets its own answer, not the dropped one.
    expect(squeeze((await inWorker.read(await textFrame('NEXT'))).text)).toContain('NEXT');
  });

  it('never sends a call whose signal has already aborted', async () => {
    const fresh = createWorkerTextReader();
    try {
      const error = await rejectionOf(fresh.read(frame, AbortSignal.abort()));
      expect(isAbortError(error)).toBe(true);
      expect(analyzerWorkerOf(fresh)).toBeUndefined();
    } finally {
      await fresh.close();
    }
  });

  it('rejects pending calls with unavailable_error when the worker dies, and starts a fresh one on the next call', async () => {
    const loads: number[] = [];
    const crashing = createWorkerTextReader({ onLoad: ({ milliseconds }) => loads.push(milliseconds) });
    try {
      const first = rejectionOf(crashing.read(frame));
      const dying = analyzerWorkerOf(crashing);
      expect(dying).toBeDefined();
      // What a crash looks like from here: the thread exits with calls in flight.
      await dying!.terminate();
      const error = await first;
      expectOcularError(error, 'unavailable_error');
      expect((error as Error).message).toMatch(/worker stopped/);
      expect(analyzerWorkerOf(crashing)).toBeUndefined();
      expect(await crashing.read(frame)).toEqual(await inThread.read(frame));
      expect(analyzerWorkerOf(crashing)).not.toBe(dying);
      expect(loads).toHaveLength(1);
    } finally {
      await crashing.close();
    }
  });

  it('close rejects pending calls, frees the worker, and turns later calls away with unavailable_error', async () => {
    const closing = createWorkerTextReader();
    const pending = rejectionOf(closing.read(frame));
    const worker = analyzerWorkerOf(closing)!;
    const exited = new Promise<number>((resolveExit) => worker.once('exit', resolveExit));
    await closing.close();
    expectOcularError(await pending, 'unavailable_error');
    await exited;
    expect(analyzerWorkerOf(closing)).toBeUndefined();
    expectOcularError(await rejectionOf(closing.read(frame)), 'unavailable_error');
    await closing.close();
  });
});

describe('object detector in a worker', () => {
  let inThread: ObjectDetector;
  let inWorker: ObjectDetector;

  beforeAll(() => {
    inThread = createHumanObjectDetector();
    inWorker = createWorkerObjectDetector();
  });

  afterAll(async () => {
    await Promise.all([inThread.close(), inWorker.close()]);
  });

  it('finds what the main-thread detector finds', async () => {
    const photo = await personPhoto();
    const expected = await inThread.detect(photo);
    expect(expected.map((object) => object.label)).toContain('person');
    expect(await inWorker.detect(photo)).toEqual(expected);
    expect(inWorker.name).toBe(inThread.name);
  });

  it('keeps the error type of a failed detection', async () => {
    expectOcularError(await rejectionOf(inWorker.detect(corrupt)), 'unsupported_media_type');
  });

  it('runs beside a worker text reader, each on its own thread', async () => {
    const reader = createWorkerTextReader();
    try {
      const [frame, photo] = await Promise.all([textFrame('PARALLEL'), personPhoto()]);
      // Warm both workers, then time the same work one after the other and side by side. The timings are only
      // reported: on a shared 2-core machine other processes decide how much of the second core is free.
      await Promise.all([reader.read(frame), inWorker.detect(photo)]);
      const rounds = 4;
      const ocr = async (): Promise<void> => {
        for (let index = 0; index < rounds; index += 1) expect(squeeze((await reader.read(frame)).text)).toContain('PARALLEL');
      };
      const detection = async (): Promise<void> => {
        for (let index = 0; index < rounds; index += 1) {
          expect((await inWorker.detect(photo)).map((object) => object.label)).toContain('person');
        }
      };
      const ocrAlone = await elapsed(ocr);
      const detectionAlone = await elapsed(detection);
      measured[`${rounds} OCR reads + ${rounds} detections, one after the other`] = ocrAlone + detectionAlone;
      measured[`${rounds} OCR reads + ${rounds} detections, side by side`] = await elapsed(() => Promise.all([ocr(), detection()]));
    } finally {
      await reader.close();
    }
  }, 60_000);
});

describe('idle workers', () => {
  it('run under plain Node outside vitest (types stripped by Node itself), and an idle one does not keep the process alive', async () => {
    // The process never closes its detector: it must still exit once the call has been answered.
    const script = [
      `const { createWorkerVad } = await import(${JSON.stringify(pathToFileURL(join(REPO, 'src/perception/worker/worker-analyzers.ts')).href)});`,
      `const vad = createWorkerVad({ modelPath: '/nonexistent/silero_vad.onnx' });`,
      `const error = await vad.detect(new Float32Array(16000)).catch((caught) => caught);`,
      `console.log(error.constructor.name, error.type);`,
    ].join('\n');
    const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script], { cwd: REPO, timeout: 15_000 });
    expect(stdout.trim()).toBe('OcularError unavailable_error');
  });
});

describe.skipIf(!existsSync(VAD_MODEL))('voice activity detector in a worker', () => {
  it('finds the speech ranges the main-thread detector finds, in samples it copies', async () => {
    const samples = new Float32Array(8 * 16_000);
    samples.set(syntheticVoice(3), 2 * 16_000);
    const inThread = createSileroVad({ modelPath: VAD_MODEL });
    const inWorker = createWorkerVad({ modelPath: VAD_MODEL });
    try {
      const expected = await inThread.detect(samples);
      expect(expected.length).toBeGreaterThan(0);
      expect(await inWorker.detect(samples)).toEqual(expected);
      expect(samples.length).toBe(8 * 16_000);
      expect(inWorker.name).toBe(inThread.name);
      const missing = createWorkerVad({ modelPath: join(MODELS, 'missing.onnx') });
      expectOcularError(await rejectionOf(missing.detect(samples)), 'unavailable_error');
      await missing.close();
    } finally {
      await Promise.all([inThread.close(), inWorker.close()]);
    }
  });
});

describe.skipIf(!existsSync(LABELS_MODEL) || !existsSync(LABELS_FILE))('image labeler in a worker', () => {
  it('gives the labels the main-thread labeler gives, and keeps the error type of a corrupt image', async () => {
    const inThread = createMobileNetLabeler({ modelPath: LABELS_MODEL, labelsPath: LABELS_FILE });
    const inWorker = createWorkerImageLabeler({ modelPath: LABELS_MODEL, labelsPath: LABELS_FILE });
    try {
      const photo = await personPhoto();
      const expected = await inThread.label(photo);
      expect(expected.length).toBeGreaterThan(0);
      expect(await inWorker.label(photo)).toEqual(expected);
      expectOcularError(await rejectionOf(inWorker.label(corrupt)), 'unsupported_media_type');
    } finally {
      await Promise.all([inThread.close(), inWorker.close()]);
    }
  });
});
