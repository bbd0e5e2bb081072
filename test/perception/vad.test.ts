import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as ort from 'onnxruntime-node';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import type { SpeechRange, VoiceActivityDetector } from '../../src/perception/analyzers.ts';
import { createSileroVad, type SileroVadOptions } from '../../src/perception/vad/silero-vad.ts';
import { collectSpeechRanges, type SpeechRangeRules } from '../../src/perception/vad/speech-ranges.ts';
import { isAbortError, OcularError } from '../../src/spec/errors.ts';
import { random, syntheticVoice } from '../helpers/synthetic-speech.ts';
import { rejectionOf } from '../helpers/rejections.ts';

const MODEL_PATH = fileURLToPath(new URL('../../../shared/models/silero-vad/silero_vad.onnx', import.meta.url));
const hasModel = existsSync(MODEL_PATH);
const SAMPLE_RATE = 16_000;

describe('collectSpeechRanges (the reference hysteresis)', () => {
  // Windows of 100 samples keep the arithmetic readable.
  const rules: SpeechRangeRules = {
    windowSamples: 100,
    threshold: 0.5,
    negThreshold: 0.35,
    minSpeechSamples: 250,
    minSilenceSamples: 200,
    padSamples: 30,
  };
  const ranges = (probabilities: number[], overrides: Partial<SpeechRangeRules> = {}) =>
    collectSpeechRanges(probabilities, probabilities.length * 100, { ...rules, ...overrides });

  it('finds nothing in silence or in audio that never reaches the threshold', () => {
    expect(ranges([])).toEqual([]);
    expect(ranges([0, 0, 0, 0, 0])).toEqual([]);
    expect(ranges([0.49, 0.49, 0.49, 0.49, 0.49, 0.49])).toEqual([]);
  });

  it('starts at the first window over the threshold and ends where silence began, padded', () => {
    expect(ranges([0, 0, 0.9, 0.9, 0.9, 0.9, 0, 0, 0, 0, 0])).toEqual([{ start: 170, end: 630 }]);
  });

  it('keeps speech going through windows between the two thresholds', () => {
    expect(ranges([0, 0.9, 0.4, 0.4, 0.4, 0.4, 0.9, 0, 0, 0, 0])).toEqual([{ start: 70, end: 730 }]);
  });

  it('does not split on a silence shorter than minSilence, and splits on a longer one', () => {
    expect(ranges([0.9, 0.9, 0.9, 0, 0, 0.9, 0.9, 0.9, 0, 0, 0, 0])).toEqual([{ start: 0, end: 830 }]);
    expect(ranges([0.9, 0.9, 0.9, 0, 0, 0, 0.9, 0.9, 0.9, 0, 0, 0, 0])).toEqual([
      { start: 0, end: 330 },
      { start: 570, end: 930 },
    ]);
  });

  it('drops speech no longer than minSpeech', () => {
    expect(ranges([0, 0.9, 0.9, 0, 0, 0, 0])).toEqual([]);
    expect(ranges([0, 0.9, 0.9, 0.9, 0, 0, 0, 0])).toEqual([{ start: 70, end: 430 }]);
  });

  it('runs speech that lasts to the end up to the last sample', () => {
    expect(collectSpeechRanges([0, 0, 0.9, 0.9, 0.9, 0.9], 560, rules)).toEqual([{ start: 170, end: 560 }]);
  });

  it('never pads past the audio, and shares a gap shorter than two pads between its neighbours', () => {
    expect(ranges([0.9, 0.9, 0.9, 0, 0, 0], { padSamples: 500 })).toEqual([{ start: 0, end: 600 }]);
    expect(ranges([0.9, 0.9, 0.9, 0, 0, 0, 0.9, 0.9, 0.9, 0, 0, 0], { padSamples: 200 })).toEqual([
      { start: 0, end: 450 },
      { start: 450, end: 1100 },
    ]);
  });
});

// ---- the model ----

/** `seconds` of audio with `voice` placed at `at` seconds. */
function track(seconds: number, parts: Array<{ at: number; voice: Float32Array }> = []): Float32Array {
  const samples = new Float32Array(seconds * SAMPLE_RATE);
  for (const { at, voice } of parts) samples.set(voice, Math.round(at * SAMPLE_RATE));
  return samples;
}

const overlap = (range: SpeechRange, start: number, end: number): number =>
  Math.max(0, Math.min(range.endSeconds, end) - Math.max(range.startSeconds, start));

const detectors: VoiceActivityDetector[] = [];
function vad(options: Partial<SileroVadOptions> = {}): VoiceActivityDetector {
  const detector = createSileroVad({ modelPath: MODEL_PATH, ...options });
  detectors.push(detector);
  return detector;
}

const scratch: string[] = [];
afterEach(async () => {
  vi.restoreAllMocks();
  await Promise.all(detectors.splice(0).map((detector) => detector.close()));
});
afterAll(() => {
  for (const dir of scratch) rmSync(dir, { recursive: true, force: true });
});

describe('createSileroVad', () => {
  it('rejects out-of-range options when built', () => {
    expect(() => createSileroVad({ modelPath: MODEL_PATH, threshold: 1.5 })).toThrow(RangeError);
    expect(() => createSileroVad({ modelPath: MODEL_PATH, minSilenceMs: -1 })).toThrow(RangeError);
  });

  it('rejects with unavailable_error naming the path when the model file is missing, and loads nothing before use', async () => {
    const missing = join(tmpdir(), 'no-such-dir', 'silero_vad.onnx');
    const detector = vad({ modelPath: missing });
    const error = await rejectionOf(detector.detect(new Float32Array(1024)));
    expect(error).toBeInstanceOf(OcularError);
    expect((error as OcularError).type).toBe('unavailable_error');
    expect((error as OcularError).message).toContain(missing);
    expect((error as OcularError).message).toContain('ocular models pull silero-vad');
  });

  it('rejects a file that is not an ONNX model', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ocular-vad-'));
    scratch.push(dir);
    const path = join(dir, 'silero_vad.onnx');
    writeFileSync(path, 'not a model');
    const error = await rejectionOf(vad({ modelPath: path }).detect(new Float32Array(1024)));
    expect((error as OcularError).type).toBe('unavailable_error');
    expect((error as OcularError).message).toContain(path);
  });
});

describe.skipIf(!hasModel)('Silero VAD on the real model', () => {
  it('finds the voice between two silences, and only there', async () => {
    const ranges = await vad().detect(track(6, [{ at: 2, voice: syntheticVoice(2) }]));
    expect(ranges.length).toBeGreaterThan(0);
    for (const range of ranges) {
      expect(range.startSeconds).toBeGreaterThanOrEqual(2 - 0.1);
      expect(range.endSeconds).toBeLessThanOrEqual(4 + 0.1);
      expect(range.endSeconds).toBeGreaterThan(range.startSeconds);
    }
    const covered = ranges.reduce((sum, range) => sum + overlap(range, 2, 4), 0);
    expect(covered).toBeGreaterThan(1.6);
  });

  it('finds no speech in silence, faint noise or a steady tone', async () => {
    const detector = vad();
    const next = random(5);
    expect(await detector.detect(track(3))).toEqual([]);
    expect(await detector.detect(new Float32Array(3 * SAMPLE_RATE).map(() => (next() - 0.5) * 0.02))).toEqual([]);
    expect(
      await detector.detect(new Float32Array(3 * SAMPLE_RATE).map((_, index) => 0.5 * Math.sin((2 * Math.PI * 440 * index) / SAMPLE_RATE))),
    ).toEqual([]);
    expect(await detector.detect(new Float32Array(0))).toEqual([]);
    expect(await detector.detect(new Float32Array(100))).toEqual([]);
  });

  it('applies its options: padding widens, a long minSilence joins, a long minSpeech drops', async () => {
    const audio = track(6, [{ at: 2, voice: syntheticVoice(2) }]);
    const plain = await vad().detect(audio);
    const padded = await vad({ speechPadMs: 300 }).detect(audio);
    expect(padded[0]!.startSeconds).toBeCloseTo(Math.max(0, plain[0]!.startSeconds - 0.27), 2);
    expect(await vad({ minSpeechMs: 5_000 }).detect(audio)).toEqual([]);
    const joined = await vad({ minSilenceMs: 5_000 }).detect(audio);
    expect(joined).toHaveLength(1);
    expect(joined[0]!.startSeconds).toBe(plain[0]!.startSeconds);
    expect(joined[0]!.endSeconds).toBeGreaterThanOrEqual(plain.at(-1)!.endSeconds);
  });

  it('loads the model once for concurrent first calls, and gives each call its own state', async () => {
    const create = vi.spyOn(ort.InferenceSession, 'create');
    const detector = vad();
    const voiced = track(6, [{ at: 2, voice: syntheticVoice(2) }]);
    const [first, silent, second] = await Promise.all([detector.detect(voiced), detector.detect(track(3)), detector.detect(voiced)]);
    expect(create).toHaveBeenCalledTimes(1);
    expect(silent).toEqual([]);
    expect(second).toEqual(first);
    expect(await detector.detect(voiced)).toEqual(first);
  });

  it('stops when its signal is aborted, and when it is closed', async () => {
    const detector = vad();
    const audio = track(300);
    const controller = new AbortController();
    const aborted = detector.detect(audio, controller.signal);
    setTimeout(() => controller.abort(new Error('stop')), 50);
    expect(await rejectionOf(aborted)).toEqual(new Error('stop'));
    await expect(detector.detect(audio, AbortSignal.abort())).rejects.toSatisfy(isAbortError);

    const running = detector.detect(audio);
    await new Promise((resolve) => setTimeout(resolve, 50));
    await detector.close();
    expect(((await rejectionOf(running)) as OcularError).type).toBe('unavailable_error');
    expect(((await rejectionOf(detector.detect(audio))) as OcularError).type).toBe('unavailable_error');
  });

  it('gets through a 10-minute track in seconds', { timeout: 60_000 }, async () => {
    const detector = vad();
    await detector.detect(new Float32Array(512)); // the load, timed apart
    const voice = syntheticVoice(3, 7);
    const starts = Array.from({ length: 60 }, (_, index) => index * 10 + 4);
    const audio = track(
      600,
      starts.map((at) => ({ at, voice })),
    );
    const started = performance.now();
    const ranges = await detector.detect(audio);
    const seconds = (performance.now() - started) / 1000;
    console.info(`silero-vad: 10 minutes of audio in ${seconds.toFixed(2)} s, ${ranges.length} ranges`);
    expect(seconds).toBeLessThan(20);
    for (const at of starts) expect(ranges.some((range) => overlap(range, at, at + 3) > 0)).toBe(true);
    for (const range of ranges) expect(starts.some((at) => overlap(range, at - 0.1, at + 3.1) > 0)).toBe(true);
    expect(ranges.at(-1)!.endSeconds).toBeLessThanOrEqual(600);
  });
});
