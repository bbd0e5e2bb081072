/**
 * The embedded `whisper` transcriber: a whisper.cpp ggml model run in this process through
 * `@fugood/whisper.node`. The model loads on first use, transcribes one audio at a time and is unloaded after
 * an idle period.
 */
import { open } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { resolve } from 'node:path';
import { z } from 'zod';
import { OcularError, validationError } from '../../spec/errors.ts';
import type { Transcriber, TranscriberAudio, Transcript } from './transcriber.ts';

/** Language codes whisper.cpp knows (`g_lang` in whisper.cpp), plus `auto` for detection. */
const WHISPER_LANGUAGES = new Set(
  (
    'auto en zh de es ru ko fr ja pt tr pl ca nl ar sv it id hi fi vi he uk el ms cs ro da hu ta no th ur hr bg lt la mi ' +
    'ml cy sk te fa lv bn sr az sl kn et mk br eu is hy ne mn bs kk sq sw gl mr pa si km sn yo so af oc ka be tg sd gu am ' +
    'yi lo uz fo ht ps tk nn mt sa lb my bo tl mg as tt haw ln ha ba jw su yue'
  ).split(' '),
);

const MODEL_SOURCE = 'https://huggingface.co/ggerganov/whisper.cpp';

export const whisperTranscriberSettingsSchema = z.strictObject({
  provider: z.literal('whisper'),
  /**
   * A whisper.cpp ggml model file, e.g. `ggml-base.en.bin` from https://huggingface.co/ggerganov/whisper.cpp.
   * A relative path is taken from the server's working directory.
   */
  modelPath: z.string().min(1),
  /**
   * Spoken language as a whisper code (`en`, `de`, `zh`), or `auto` to detect it per audio. English-only models
   * (`*.en.bin`) always transcribe English. @default 'auto'
   */
  language: z
    .string()
    .refine((code) => WHISPER_LANGUAGES.has(code), { message: 'expected a whisper language code such as "en", "de" or "zh", or "auto"' })
    .optional(),
  /** CPU threads for one transcription. @default the binding's: the CPU count, at most 8 */
  threads: z.int().min(1).max(256).optional(),
  /**
   * Run on the GPU: loads the binding's CUDA build on Linux and Windows (falling back to the CPU build when it
   * cannot load) and Metal on macOS. @default false
   */
  gpu: z.boolean().optional(),
  /** Milliseconds without a transcription after which the model is unloaded; 0 keeps it loaded. @default 600000 */
  idleUnloadMs: z.int().min(0).max(2_147_483_647).optional(),
  /** Write whisper.cpp's own log lines to stderr, as JSON lines at level debug; off, they are dropped. @default false */
  nativeLog: z.boolean().optional(),
});

export type WhisperTranscriberSettings = z.infer<typeof whisperTranscriberSettingsSchema>;

/** Knobs for tests; the defaults are what the server uses. */
export interface WhisperTranscriberOptions {
  /**
   * Milliseconds a running transcription may go without a progress report (whisper.cpp reports once per
   * 30 s window) before it is given up as lost. @default 600000
   */
  stallTimeoutMs?: number | undefined;
  /** Loads the binding; tests wrap the real one to count loads. @default `require('@fugood/whisper.node')` */
  loadBinding?: (() => WhisperBinding) | undefined;
}

// ---- the binding ----

/** A segment as the binding reports it: `t0`/`t1` in milliseconds (whisper.cpp's centiseconds times ten). */
interface BindingSegment {
  text: string;
  t0: number;
  t1: number;
}

interface BindingResult {
  /** The language whisper.cpp used or detected; absent for empty audio. */
  language?: string;
  result: string;
  segments: BindingSegment[];
  isAborted: boolean;
}

/** The part of `@fugood/whisper.node`'s `WhisperContext` Ocular uses (its `lib/binding.ts`). */
export interface WhisperBindingContext {
  /** 16-bit little-endian mono PCM at 16 kHz; the binding converts it to float32 itself. */
  transcribeData(
    pcm: ArrayBuffer,
    options: { language?: string; maxThreads?: number; onProgress?: (percent: number) => void },
  ): { stop(): Promise<void>; promise: Promise<BindingResult> };
  release(): Promise<void>;
}

export interface WhisperBinding {
  initWhisper(options: { filePath: string; useGpu?: boolean }, variant?: 'default' | 'cuda' | 'vulkan'): Promise<WhisperBindingContext>;
  /** On: whisper.cpp's log goes to the listeners instead of stderr. Absent on a test's stand-in. */
  toggleNativeLog?(enable: boolean): Promise<void>;
  addNativeLogListener?(listener: (level: string, text: string) => void): { remove(): void };
}

// The binding is CommonJS and ships TypeScript sources rather than declarations: `require` keeps tsc from
// type-checking those under this project's stricter options, and defers loading native code until the
// transcriber is first used.
const require = createRequire(import.meta.url);
const BINDING_MODULE = '@fugood/whisper.node';
const requireBinding = (): WhisperBinding => require(BINDING_MODULE) as WhisperBinding;

// ---- whisper.cpp's log ----

/**
 * whisper.cpp writes its log (dozens of lines per load, more per run) to stderr, among the server's JSON log lines, unless the
 * binding's log callback is on; then the lines come here instead. The callback keeps the event loop alive, so it is
 * on only while some model is loaded: each load holds it, and the release of the last model turns it off.
 */
const nativeLog = {
  holders: 0,
  /** Holders that asked for the lines on stderr (`nativeLog`). */
  forwarding: 0,
  listener: undefined as { remove(): void } | undefined,
  /** The latest lines, for the reason a load failed. */
  recent: [] as string[],
};
const NATIVE_LOG_RECENT_LINES = 20;

/** Turns the callback on for one load; the returned function (idempotent) lets go of it. */
async function holdNativeLog(binding: WhisperBinding, forward: boolean): Promise<() => Promise<void>> {
  if (binding.toggleNativeLog === undefined || binding.addNativeLogListener === undefined) return async () => {};
  nativeLog.holders++;
  if (forward) nativeLog.forwarding++;
  nativeLog.recent.length = 0;
  if (nativeLog.listener === undefined) {
    nativeLog.listener = binding.addNativeLogListener((level, text) => {
      const line = text.trimEnd();
      if (line === '') return;
      nativeLog.recent.push(line);
      if (nativeLog.recent.length > NATIVE_LOG_RECENT_LINES) nativeLog.recent.shift();
      if (nativeLog.forwarding > 0) {
        process.stderr.write(
          `${JSON.stringify({ time: new Date().toISOString(), level: 'debug', message: 'whisper.cpp', text: line, nativeLevel: level })}\n`,
        );
      }
    });
  }
  await binding.toggleNativeLog(true);
  let held = true;
  return async () => {
    if (!held) return;
    held = false;
    if (forward) nativeLog.forwarding--;
    if (--nativeLog.holders > 0) return;
    nativeLog.listener?.remove();
    nativeLog.listener = undefined;
    await binding.toggleNativeLog?.(false);
  };
}

/** whisper.cpp's latest complaints (lines that say error or failed), for the reason a load failed. */
function recentNativeErrors(): string {
  return nativeLog.recent
    .filter((line) => /error|fail/i.test(line))
    .slice(-3)
    .join('; ');
}

// ---- the model file ----

const GGML_FILE_MAGIC = 0x67676d6c;
const GGUF_MAGIC = 0x46554747;
/** Vocabularies at least this large are multilingual (`whisper_vocab::is_multilingual`). */
const MULTILINGUAL_VOCAB_SIZE = 51865;
/** Bins of whisper's 400-point FFT, the width of every mel filter in a whisper model. */
const MEL_FFT_BINS = 201;

interface ModelHeader {
  multilingual: boolean;
}

const unavailable = (message: string, cause?: unknown): OcularError =>
  new OcularError('unavailable_error', `whisper transcriber is not available: ${message}`, { cause });

const downloadHint = `download a whisper.cpp ggml model (for example ggml-base.en.bin from ${MODEL_SOURCE}) and set transcriber.modelPath to it`;

/**
 * Reads and checks the ggml header before whisper.cpp sees the file. whisper.cpp trusts these numbers to size
 * its allocations and asserts on some, so a file that is not a whisper model but starts with the ggml magic
 * (an old llama.cpp model) must be turned away here rather than abort the process in there.
 */
async function readModelHeader(path: string): Promise<ModelHeader> {
  let bytes: Buffer;
  try {
    const file = await open(path, 'r');
    try {
      if (!(await file.stat()).isFile()) throw unavailable(`the model path ${path} is not a file; ${downloadHint}`);
      const { buffer, bytesRead } = await file.read({ buffer: Buffer.alloc(56), position: 0 });
      bytes = buffer.subarray(0, bytesRead);
    } finally {
      await file.close();
    }
  } catch (error) {
    if (error instanceof OcularError) throw error;
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw unavailable(`the model file ${path} does not exist; ${downloadHint}`, error);
    if (code === 'EISDIR') throw unavailable(`the model path ${path} is not a file; ${downloadHint}`, error);
    throw unavailable(`the model file ${path} cannot be read (${(error as Error).message})`, error);
  }
  const magic = bytes.length >= 4 ? bytes.readUInt32LE(0) : undefined;
  if (magic === GGUF_MAGIC) {
    throw unavailable(`${path} is a GGUF file, but whisper.cpp reads only its own ggml format; ${downloadHint}`);
  }
  if (magic !== GGML_FILE_MAGIC || bytes.length < 56) {
    throw unavailable(`${path} is not a whisper.cpp ggml model (it does not start with the ggml magic "lmgg"); ${downloadHint}`);
  }
  const [nVocab, nAudioCtx, nAudioState, nAudioHead, nAudioLayer, nTextCtx, nTextState, nTextHead, nTextLayer, nMels, , nMel, nFft] =
    Array.from({ length: 13 }, (_, index) => bytes.readInt32LE(4 + index * 4));
  const within = (value: number | undefined, max: number): value is number => value !== undefined && value >= 1 && value <= max;
  const plausible =
    within(nVocab, 1_000_000) &&
    within(nAudioCtx, 100_000) &&
    within(nTextCtx, 100_000) &&
    within(nAudioState, 16_384) &&
    nTextState === nAudioState &&
    within(nAudioHead, 1024) &&
    nAudioState % nAudioHead === 0 &&
    within(nTextHead, 1024) &&
    nTextState % nTextHead === 0 &&
    within(nAudioLayer, 256) &&
    within(nTextLayer, 256) &&
    within(nMels, 512) &&
    nMel === nMels &&
    nFft === MEL_FFT_BINS;
  if (!plausible) {
    throw unavailable(`${path} is a ggml file but not a whisper model (its header does not describe one); ${downloadHint}`);
  }
  return { multilingual: nVocab >= MULTILINGUAL_VOCAB_SIZE };
}

// ---- the audio ----

const SAMPLE_RATE = 16_000;
/** whisper.cpp returns nothing for less than 100 ms of audio (`delta_min` in `whisper_full_with_state`). */
const MIN_SAMPLES = SAMPLE_RATE / 10;
const WAVE_FORMAT_PCM = 1;
const WAVE_FORMAT_EXTENSIBLE = 0xfffe;
/** A size field ffmpeg leaves unfilled when it writes to a pipe. */
const UNKNOWN_SIZE = 0xffffffff;

const wavError = (detail: string): OcularError =>
  validationError(`the whisper transcriber takes 16 kHz mono 16-bit PCM WAV audio: ${detail}`);

/**
 * The 16-bit samples of a 16 kHz mono PCM WAV, as a fresh ArrayBuffer (the binding reads it as int16 in place,
 * so it must not be a view into a pooled Buffer). Chunks other than `fmt ` and `data` (LIST, fact) are skipped.
 */
function readWavSamples(audio: TranscriberAudio): ArrayBuffer {
  const data = audio.data;
  if (data.length < 12 || data.toString('latin1', 0, 4) !== 'RIFF' || data.toString('latin1', 8, 12) !== 'WAVE') {
    throw wavError(`the ${audio.mediaType} data is not a RIFF/WAVE file`);
  }
  let format: { tag: number; channels: number; sampleRate: number; bits: number } | undefined;
  let offset = 12;
  while (offset + 8 <= data.length) {
    const id = data.toString('latin1', offset, offset + 4);
    const size = data.readUInt32LE(offset + 4);
    const body = offset + 8;
    if (id === 'fmt ') {
      if (size < 16 || body + 16 > data.length) throw wavError('the fmt chunk is truncated');
      let tag = data.readUInt16LE(body);
      // WAVE_FORMAT_EXTENSIBLE names the real format in the first two bytes of its sub-format GUID.
      if (tag === WAVE_FORMAT_EXTENSIBLE && size >= 40 && body + 26 <= data.length) tag = data.readUInt16LE(body + 24);
      format = { tag, channels: data.readUInt16LE(body + 2), sampleRate: data.readUInt32LE(body + 4), bits: data.readUInt16LE(body + 14) };
    } else if (id === 'data') {
      if (format === undefined) throw wavError('the data chunk comes before any fmt chunk');
      const problems = [
        ...(format.tag === WAVE_FORMAT_PCM ? [] : [`format ${format.tag} is not integer PCM (1)`]),
        ...(format.channels === 1 ? [] : [`${format.channels} channels`]),
        ...(format.sampleRate === SAMPLE_RATE ? [] : [`${format.sampleRate} Hz`]),
        ...(format.bits === 16 ? [] : [`${format.bits}-bit samples`]),
      ];
      if (problems.length > 0) throw wavError(`got ${problems.join(', ')}; convert it first (ffmpeg -ac 1 -ar 16000 -c:a pcm_s16le)`);
      // A size that runs past the end is a streamed or cut-off file: take the whole samples that are there.
      const available = data.length - body;
      const length = size === UNKNOWN_SIZE || size > available ? available : size;
      const whole = length - (length % 2);
      const samples = new ArrayBuffer(whole);
      new Uint8Array(samples).set(data.subarray(body, body + whole));
      return samples;
    }
    if (size === UNKNOWN_SIZE) break;
    // Chunks are padded to an even length.
    offset = body + size + (size % 2);
  }
  throw wavError(format === undefined ? 'it has no fmt chunk' : 'it has no data chunk');
}

// ---- the transcriber ----

const DEFAULT_IDLE_UNLOAD_MS = 600_000;
const DEFAULT_STALL_TIMEOUT_MS = 600_000;

interface LoadedModel {
  /** Its `release` also lets go of whisper.cpp's log callback. */
  context: WhisperBindingContext;
  /** English-only models get `en`: language detection on them only costs an encoder pass and guesses wrong. */
  language: string;
}

const closedError = (): OcularError => new OcularError('unavailable_error', 'whisper transcriber is shut down');

/** Rejects with the signal's reason, like fetch, or with `closedError` once the transcriber is closed. */
function settleFirst<T>(promise: Promise<T>, signal: AbortSignal, closing: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  if (closing.aborted) return Promise.reject(closedError());
  return new Promise<T>((resolvePromise, reject) => {
    const cleanup = (): void => {
      signal.removeEventListener('abort', onAbort);
      closing.removeEventListener('abort', onClose);
    };
    const onAbort = (): void => {
      cleanup();
      reject(signal.reason);
    };
    const onClose = (): void => {
      cleanup();
      reject(closedError());
    };
    signal.addEventListener('abort', onAbort, { once: true });
    closing.addEventListener('abort', onClose, { once: true });
    promise.then(
      (value) => {
        cleanup();
        resolvePromise(value);
      },
      (error: unknown) => {
        cleanup();
        reject(error);
      },
    );
  });
}

/**
 * Speech-to-text with a local whisper.cpp model. Transcriptions run strictly one at a time: each already uses
 * several threads, and the binding must never run two on one context (it takes the context's lock on the main
 * thread when a job ends, which blocks the event loop while the other job computes, or for good when that one
 * waits on a progress callback).
 *
 * Cancelling: the binding's `stop()` cannot interrupt whisper.cpp mid-window (it sets a flag read only before
 * and after `whisper_full`), and a stopped job's promise never settles (node-addon-api's `OnError` calls back
 * with one argument; the binding settles only on two). So an aborted caller is answered at once, `stop()` is
 * not called, and the next transcription waits until whisper.cpp has finished the abandoned one.
 */
export class WhisperTranscriber implements Transcriber {
  readonly name = 'whisper';
  readonly #modelPath: string;
  readonly #language: string;
  readonly #threads: number | undefined;
  readonly #gpu: boolean;
  readonly #idleUnloadMs: number;
  readonly #nativeLog: boolean;
  readonly #stallTimeoutMs: number;
  readonly #loadBinding: () => WhisperBinding;
  readonly #closing = new AbortController();
  #model: Promise<LoadedModel> | undefined;
  /** Settles when the last transcription in line has let go of whisper.cpp. */
  #tail: Promise<void> = Promise.resolve();
  /** Transcriptions waiting or running, including abandoned ones whisper.cpp has not finished. */
  #inLine = 0;
  #idleTimer: NodeJS.Timeout | undefined;

  constructor(settings: WhisperTranscriberSettings, options: WhisperTranscriberOptions = {}) {
    this.#modelPath = resolve(settings.modelPath);
    this.#language = settings.language ?? 'auto';
    this.#threads = settings.threads;
    this.#gpu = settings.gpu ?? false;
    this.#idleUnloadMs = settings.idleUnloadMs ?? DEFAULT_IDLE_UNLOAD_MS;
    this.#nativeLog = settings.nativeLog ?? false;
    this.#stallTimeoutMs = options.stallTimeoutMs ?? DEFAULT_STALL_TIMEOUT_MS;
    this.#loadBinding = options.loadBinding ?? requireBinding;
  }

  async transcribe(audio: TranscriberAudio, signal: AbortSignal): Promise<Transcript> {
    if (this.#closing.signal.aborted) throw closedError();
    signal.throwIfAborted();
    const pcm = readWavSamples(audio);
    const sampleCount = pcm.byteLength / 2;
    if (sampleCount < MIN_SAMPLES) return { text: '', segments: [] };

    const release = this.#joinLine();
    let handedOver = false;
    try {
      await settleFirst(release.ready, signal, this.#closing.signal);
      const loading = this.#load();
      const model = await settleFirst(loading, signal, this.#closing.signal);
      const result = this.#run(loading, model, pcm);
      handedOver = true;
      void result.then(release.done, release.done);
      return toTranscript(await settleFirst(result, signal, this.#closing.signal), sampleCount / SAMPLE_RATE);
    } finally {
      if (!handedOver) release.done();
    }
  }

  async close(): Promise<void> {
    if (this.#closing.signal.aborted) return;
    this.#closing.abort();
    clearTimeout(this.#idleTimer);
    await this.#unload();
  }

  /** A place in line: `ready` settles when the ones before have let go of whisper.cpp. */
  #joinLine(): { ready: Promise<void>; done: () => void } {
    const ready = this.#tail;
    let markDone!: () => void;
    const finished = new Promise<void>((resolvePromise) => (markDone = resolvePromise));
    this.#tail = ready.then(() => finished);
    this.#inLine++;
    clearTimeout(this.#idleTimer);
    let done = false;
    return {
      ready,
      done: () => {
        if (done) return;
        done = true;
        markDone();
        if (--this.#inLine === 0) this.#scheduleUnload();
      },
    };
  }

  /** The loaded model; concurrent callers share one load, and a failed load is retried by the next call. */
  #load(): Promise<LoadedModel> {
    if (this.#model === undefined) {
      const loading = this.#open();
      this.#model = loading;
      loading.catch(() => {
        if (this.#model === loading) this.#model = undefined;
      });
    }
    return this.#model;
  }

  async #open(): Promise<LoadedModel> {
    const header = await readModelHeader(this.#modelPath);
    let binding: WhisperBinding;
    try {
      binding = this.#loadBinding();
    } catch (error) {
      throw unavailable(
        `the whisper.cpp binding (${BINDING_MODULE}) cannot be loaded on ${process.platform}-${process.arch}: ${(error as Error).message}`,
        error,
      );
    }
    const letGoOfLog = await holdNativeLog(binding, this.#nativeLog);
    let loaded: WhisperBindingContext;
    try {
      // The binding's default build is CPU-only except on macOS, where it has Metal.
      const variant = this.#gpu && process.platform !== 'darwin' ? 'cuda' : 'default';
      loaded = await binding.initWhisper({ filePath: this.#modelPath, useGpu: this.#gpu }, variant);
    } catch (error) {
      // The log lines reach the callback a little after the failure does (not within one turn of the event loop,
      // measured); a failed load can wait for them.
      await new Promise((resolveLater) => setTimeout(resolveLater, 50));
      const said = recentNativeErrors();
      await letGoOfLog();
      throw unavailable(
        `whisper.cpp could not load ${this.#modelPath} (${(error as Error).message}${said === '' ? '' : `; whisper.cpp said: ${said}`}); ` +
          `the file may be truncated or not a whisper model: ${downloadHint}`,
        error,
      );
    }
    const context: WhisperBindingContext = {
      transcribeData: (pcm, options) => loaded.transcribeData(pcm, options),
      release: async () => {
        try {
          await loaded.release();
        } finally {
          await letGoOfLog();
        }
      },
    };
    if (this.#closing.signal.aborted) {
      await context.release();
      throw closedError();
    }
    return { context, language: header.multilingual ? this.#language : 'en' };
  }

  /**
   * One whisper.cpp run. Rejects with `upstream_error` when whisper.cpp fails, or when it stops reporting
   * progress: the binding leaves a job's promise pending for ever when whisper.cpp throws inside it. A job
   * given up on takes its context with it, and the next transcription loads the model afresh.
   */
  #run(loading: Promise<LoadedModel>, model: LoadedModel, pcm: ArrayBuffer): Promise<BindingResult> {
    let stallTimer: NodeJS.Timeout | undefined;
    let rejectStalled!: (reason: unknown) => void;
    const stalled = new Promise<never>((_, reject) => (rejectStalled = reject));
    const giveUp = (): void => {
      // The job may be lost or only slow. Either way the next one must not share its context: the binding
      // locks the context's mutex on the main thread when a job finishes, so a job finishing while another
      // runs on the same context blocks the event loop (for good, when the other waits on a progress callback).
      if (this.#model === loading) this.#model = undefined;
      void model.context.release().catch(() => undefined);
      rejectStalled(
        new OcularError('upstream_error', `whisper.cpp stopped reporting progress for ${this.#stallTimeoutMs} ms and was given up`),
      );
    };
    const watch = (): void => {
      clearTimeout(stallTimer);
      stallTimer = setTimeout(giveUp, this.#stallTimeoutMs);
    };
    const stopWatching = (): void => clearTimeout(stallTimer);
    this.#closing.signal.addEventListener('abort', stopWatching, { once: true });
    watch();
    let job: ReturnType<WhisperBindingContext['transcribeData']>;
    try {
      job = model.context.transcribeData(pcm, {
        language: model.language,
        ...(this.#threads === undefined ? {} : { maxThreads: this.#threads }),
        onProgress: watch,
      });
    } catch (error) {
      job = { stop: async () => undefined, promise: Promise.reject(error as Error) };
    }
    const native = job.promise.then(
      (result) => {
        if (result.isAborted) throw new OcularError('upstream_error', 'whisper.cpp stopped the transcription before it finished');
        return result;
      },
      (error: unknown) => {
        throw new OcularError('upstream_error', `whisper.cpp failed to transcribe the audio: ${(error as Error).message}`, {
          cause: error,
        });
      },
    );
    return Promise.race([native, stalled]).finally(() => {
      stopWatching();
      this.#closing.signal.removeEventListener('abort', stopWatching);
    });
  }

  #scheduleUnload(): void {
    if (this.#idleUnloadMs === 0 || this.#model === undefined || this.#closing.signal.aborted) return;
    clearTimeout(this.#idleTimer);
    this.#idleTimer = setTimeout(() => {
      this.#idleTimer = undefined;
      if (this.#inLine === 0) void this.#unload();
    }, this.#idleUnloadMs);
    this.#idleTimer.unref();
  }

  /** Drops the model; a later transcription loads it again. Never called while whisper.cpp runs, except by close. */
  async #unload(): Promise<void> {
    const model = this.#model;
    this.#model = undefined;
    const loaded = await model?.catch(() => undefined);
    await loaded?.context.release();
  }
}

/** Binding milliseconds to seconds, kept within the audio: whisper pads to 30 s windows and can time past the end. */
function toTranscript(result: BindingResult, durationSeconds: number): Transcript {
  const clamp = (milliseconds: number): number => Math.min(Math.max(0, milliseconds / 1000), durationSeconds);
  return {
    text: result.result.trim(),
    ...(result.language ? { language: result.language } : {}),
    segments: result.segments.map((segment) => {
      const startSeconds = clamp(segment.t0);
      return { startSeconds, endSeconds: Math.max(startSeconds, clamp(segment.t1)), text: segment.text.trim() };
    }),
  };
}
