/**
 * Voice activity with Silero VAD v5 (ONNX, 16 kHz) on onnxruntime-node: one model call per 32 ms window,
 * carrying the recurrent state and the previous window's last 64 samples from call to call, then the reference
 * hysteresis (`collectSpeechRanges`) over the probabilities.
 */
import { resolve } from 'node:path';
import type { InferenceSession, Tensor } from 'onnxruntime-node';
import { OcularError } from '../../spec/errors.ts';
import type { SpeechRange, VoiceActivityDetector } from '../analyzers.ts';
import { ModelLifecycle } from '../model-lifecycle.ts';
import { openOnnxSession, unavailable as unavailableModel, type OnnxModelIdentity, type OnnxRuntime } from '../onnx-session.ts';
import { collectSpeechRanges, type SpeechRangeRules } from './speech-ranges.ts';

export interface SileroVadOptions {
  /** The Silero VAD v5 ONNX file (`silero_vad.onnx`, `ocular models pull silero-vad`). */
  modelPath: string;
  /** Speech probability at which a window counts as speech; speech ends below `threshold - 0.15`. @default 0.5 */
  threshold?: number | undefined;
  /** Speech shorter than this is dropped. @default 250 */
  minSpeechMs?: number | undefined;
  /** Silence shorter than this does not split speech. @default 100 */
  minSilenceMs?: number | undefined;
  /** Added before and after each range. @default 30 */
  speechPadMs?: number | undefined;
}

const SAMPLE_RATE = 16_000;
/** What the v5 model takes at 16 kHz: 512 new samples after the last 64 of the previous window. */
const WINDOW = 512;
const CONTEXT = 64;
const STATE_SIZE = 2 * 1 * 128;

const PULL_HINT = 'download it with `ocular models pull silero-vad`';

const MODEL: OnnxModelIdentity = { name: 'silero-vad', pullHint: PULL_HINT };
const unavailable = (message: string, cause?: unknown): OcularError => unavailableModel(MODEL, message, cause);

interface LoadedModel {
  ort: OnnxRuntime;
  session: InferenceSession;
  sampleRate: Tensor;
}

/**
 * Checks the file first, so a wrong path gets an answer that says how to get the file, then opens one session.
 * The runtime is imported here, not at the top, so that building the analyzer at boot costs nothing and a
 * platform without its native binary fails only when VAD is used.
 */
async function openModel(modelPath: string): Promise<LoadedModel> {
  const { ort, session } = await openOnnxSession(MODEL, modelPath);
  const expected = ['input', 'state', 'sr'];
  const outputs = ['output', 'stateN'];
  if (!expected.every((name) => session.inputNames.includes(name)) || !outputs.every((name) => session.outputNames.includes(name))) {
    await session.release();
    throw unavailable(
      `${modelPath} is not a Silero VAD v5 model (inputs ${session.inputNames.join(', ')}; expected ${expected.join(', ')}); ${PULL_HINT}`,
    );
  }
  return { ort, session, sampleRate: new ort.Tensor('int64', BigInt64Array.of(BigInt(SAMPLE_RATE)), []) };
}

function checkRange(name: string, value: number | undefined, min: number, max: number): void {
  if (value !== undefined && !(value >= min && value <= max)) {
    throw new RangeError(`silero-vad: ${name} must be between ${min} and ${max}, got ${value}`);
  }
}

class SileroVad implements VoiceActivityDetector {
  readonly name = 'silero-vad';
  readonly #modelPath: string;
  readonly #rules: SpeechRangeRules;
  readonly #lifecycle = new ModelLifecycle<LoadedModel>({
    name: 'silero-vad',
    load: () => openModel(this.#modelPath),
    release: (model) => model.session.release(),
  });

  constructor(options: SileroVadOptions) {
    checkRange('threshold', options.threshold, 0, 1);
    checkRange('minSpeechMs', options.minSpeechMs, 0, 3_600_000);
    checkRange('minSilenceMs', options.minSilenceMs, 0, 3_600_000);
    checkRange('speechPadMs', options.speechPadMs, 0, 3_600_000);
    this.#modelPath = resolve(options.modelPath);
    const threshold = options.threshold ?? 0.5;
    const samples = (ms: number) => Math.round((ms * SAMPLE_RATE) / 1000);
    this.#rules = {
      windowSamples: WINDOW,
      threshold,
      negThreshold: Math.max(threshold - 0.15, 0.01),
      minSpeechSamples: samples(options.minSpeechMs ?? 250),
      minSilenceSamples: samples(options.minSilenceMs ?? 100),
      padSamples: samples(options.speechPadMs ?? 30),
    };
  }

  detect(samples: Float32Array, signal?: AbortSignal): Promise<SpeechRange[]> {
    // Detections run side by side: each carries its own state, and one onnxruntime session takes concurrent runs.
    return this.#lifecycle.use((model, stop) => this.#detect(model, samples, stop), signal);
  }

  close(): Promise<void> {
    return this.#lifecycle.close();
  }

  async #detect({ ort, session, sampleRate }: LoadedModel, samples: Float32Array, stop: AbortSignal): Promise<SpeechRange[]> {
    const windows = Math.ceil(samples.length / WINDOW);
    const probabilities = new Float32Array(windows);
    // One buffer for every call: the context (last 64 samples of the window before, zeros at first), then the
    // window (zero-padded at the end of the audio, as the reference pads its last chunk).
    const frame = new Float32Array(CONTEXT + WINDOW);
    const input = new ort.Tensor('float32', frame, [1, CONTEXT + WINDOW]);
    let state: Tensor = new ort.Tensor('float32', new Float32Array(STATE_SIZE), [2, 1, 128]);
    for (let index = 0; index < windows; index += 1) {
      // Checked before every call (the caller's abort, or close): each one is a step onnxruntime runs on the main
      // thread (from setImmediate).
      stop.throwIfAborted();
      frame.copyWithin(0, WINDOW, WINDOW + CONTEXT);
      const window = samples.subarray(index * WINDOW, (index + 1) * WINDOW);
      frame.set(window, CONTEXT);
      if (window.length < WINDOW) frame.fill(0, CONTEXT + window.length);
      const outputs = await session.run({ input, state, sr: sampleRate });
      probabilities[index] = (outputs.output!.data as Float32Array)[0]!;
      state = outputs.stateN!;
    }
    return collectSpeechRanges(probabilities, samples.length, this.#rules).map((range) => ({
      startSeconds: range.start / SAMPLE_RATE,
      endSeconds: range.end / SAMPLE_RATE,
    }));
  }
}

/**
 * A Silero VAD v5 detector. Nothing is loaded until the first `detect`. Takes 16 kHz mono samples in -1..1;
 * a 10-minute track is 18,750 model calls, a couple of seconds on one core.
 */
export function createSileroVad(options: SileroVadOptions): VoiceActivityDetector {
  return new SileroVad(options);
}
