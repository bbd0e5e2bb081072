import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { isAbortError, isOcularError, type OcularError } from '../../src/spec/errors.ts';
import {
  createTranscriber,
  formatTranscript,
  transcriberSettingsSchema,
  type Transcriber,
} from '../../src/perception/speech/transcriber.ts';
import {
  WhisperTranscriber,
  type WhisperBinding,
  type WhisperBindingContext,
  type WhisperTranscriberOptions,
} from '../../src/perception/speech/whisper.ts';
import { buildTinyWhisperModel } from '../helpers/ggml-whisper-writer.ts';

const realBinding = createRequire(import.meta.url)('@fugood/whisper.node') as WhisperBinding;

interface BindingStats {
  loads: number;
  releases: number;
  /** whisper.cpp jobs started. */
  runs: number;
  /** Jobs whisper.cpp has not finished. */
  running: number;
  maxRunning: number;
  /** What whisper.cpp answered, in order. */
  results: Array<{ language?: string; result: string; segments: Array<{ text: string; t0: number; t1: number }> }>;
}

/** The real binding, wrapped to count loads, releases and jobs, and how many jobs overlap. */
function countingBinding(): { binding: WhisperBinding; stats: BindingStats } {
  const stats: BindingStats = { loads: 0, releases: 0, runs: 0, running: 0, maxRunning: 0, results: [] };
  const binding: WhisperBinding = {
    toggleNativeLog: (enable) => realBinding.toggleNativeLog!(enable),
    addNativeLogListener: (listener) => realBinding.addNativeLogListener!(listener),
    async initWhisper(options, variant) {
      stats.loads++;
      const context = await realBinding.initWhisper(options, variant);
      const wrapped: WhisperBindingContext = {
        transcribeData(pcm, transcribeOptions) {
          const job = context.transcribeData(pcm, transcribeOptions);
          stats.runs++;
          stats.maxRunning = Math.max(stats.maxRunning, ++stats.running);
          const finished = (): void => {
            stats.running--;
          };
          job.promise.then((result) => {
            stats.results.push(result);
            finished();
          }, finished);
          return job;
        },
        release: async () => {
          stats.releases++;
          await context.release();
        },
      };
      return wrapped;
    },
  };
  return { binding, stats };
}

let dir: string;
let tinyModel: string;
const transcribers: Transcriber[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ocular-whisper-'));
  tinyModel = join(dir, 'ggml-tiny-random.bin');
  await writeFile(tinyModel, buildTinyWhisperModel({ seed: 1 }));
});

afterEach(async () => {
  await Promise.all(transcribers.splice(0).map((transcriber) => transcriber.close?.()));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function setup(settings: Record<string, unknown>, options: WhisperTranscriberOptions = {}) {
  const parsed = transcriberSettingsSchema.parse({ provider: 'whisper', threads: 2, ...settings });
  if (parsed.provider !== 'whisper') throw new Error('expected whisper settings');
  const { binding, stats } = countingBinding();
  const transcriber = new WhisperTranscriber(parsed, { loadBinding: () => binding, ...options });
  transcribers.push(transcriber);
  return { transcriber, stats };
}

interface WavFormat {
  tag: number;
  channels: number;
  sampleRate: number;
  bits: number;
}

const PCM_16K_MONO: WavFormat = { tag: 1, channels: 1, sampleRate: 16_000, bits: 16 };

function chunk(id: string, body: Buffer): Buffer {
  const header = Buffer.alloc(8);
  header.write(id, 0, 'latin1');
  header.writeUInt32LE(body.length, 4);
  return Buffer.concat([header, body, body.length % 2 === 1 ? Buffer.alloc(1) : Buffer.alloc(0)]);
}

function fmtChunk(format: WavFormat): Buffer {
  const body = Buffer.alloc(16);
  const blockAlign = (format.channels * format.bits) / 8;
  body.writeUInt16LE(format.tag, 0);
  body.writeUInt16LE(format.channels, 2);
  body.writeUInt32LE(format.sampleRate, 4);
  body.writeUInt32LE(format.sampleRate * blockAlign, 8);
  body.writeUInt16LE(blockAlign, 12);
  body.writeUInt16LE(format.bits, 14);
  return chunk('fmt ', body);
}

function riff(chunks: Buffer[]): Buffer {
  const body = Buffer.concat([Buffer.from('WAVE', 'latin1'), ...chunks]);
  const header = Buffer.alloc(8);
  header.write('RIFF', 0, 'latin1');
  header.writeUInt32LE(body.length, 4);
  return Buffer.concat([header, body]);
}

/** A 440 Hz tone as 16-bit samples. */
function tone(seconds: number): Buffer {
  const count = Math.round(16_000 * seconds);
  const samples = Buffer.alloc(count * 2);
  for (let index = 0; index < count; index++)
    samples.writeInt16LE(Math.round(8000 * Math.sin((2 * Math.PI * 440 * index) / 16_000)), index * 2);
  return samples;
}

function wav(seconds: number, format: WavFormat = PCM_16K_MONO): Buffer {
  return riff([fmtChunk(format), chunk('data', tone(seconds))]);
}

const audio = (data: Buffer) => ({ data, mediaType: 'audio/wav', filename: 'audio.wav' });
const signal = (): AbortSignal => new AbortController().signal;

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => {
      throw new Error('expected a rejection');
    },
    (reason: unknown) => reason,
  );
}

async function ocularRejection(promise: Promise<unknown>): Promise<OcularError> {
  const error = await rejection(promise);
  if (!isOcularError(error)) throw new Error(`expected an OcularError, got ${String(error)}`);
  return error;
}

async function waitFor(condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  const started = Date.now();
  while (!condition()) {
    if (Date.now() - started > timeoutMs) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

describe('whisper transcriber settings', () => {
  it('accepts the whisper member, strictly, and createTranscriber builds it', () => {
    const full = transcriberSettingsSchema.parse({
      provider: 'whisper',
      modelPath: '/models/ggml-base.en.bin',
      language: 'de',
      threads: 4,
      gpu: true,
      idleUnloadMs: 0,
    });
    expect(full).toEqual({
      provider: 'whisper',
      modelPath: '/models/ggml-base.en.bin',
      language: 'de',
      threads: 4,
      gpu: true,
      idleUnloadMs: 0,
    });
    const minimal = transcriberSettingsSchema.parse({ provider: 'whisper', modelPath: 'models/ggml-base.bin' });
    expect(minimal).toEqual({ provider: 'whisper', modelPath: 'models/ggml-base.bin' });
    expect(transcriberSettingsSchema.parse({ provider: 'whisper', modelPath: 'm.bin', language: 'auto' })).toMatchObject({
      language: 'auto',
    });

    const transcriber = createTranscriber(minimal);
    expect(transcriber).toBeInstanceOf(WhisperTranscriber);
    expect(transcriber?.name).toBe('whisper');

    const rejected = [
      { provider: 'whisper' },
      { provider: 'whisper', modelPath: '' },
      { provider: 'whisper', modelPath: 'm.bin', language: 'english' },
      { provider: 'whisper', modelPath: 'm.bin', language: 'xx' },
      { provider: 'whisper', modelPath: 'm.bin', threads: 0 },
      { provider: 'whisper', modelPath: 'm.bin', threads: 1.5 },
      { provider: 'whisper', modelPath: 'm.bin', gpu: 'yes' },
      { provider: 'whisper', modelPath: 'm.bin', idleUnloadMs: -1 },
      { provider: 'whisper', modelPath: 'm.bin', model: 'base' },
    ];
    for (const settings of rejected) expect(transcriberSettingsSchema.safeParse(settings).success, JSON.stringify(settings)).toBe(false);
  });
});

describe('whisper model file', () => {
  it('answers 503 naming the path, where to get weights and the setting when the file does not exist', async () => {
    const path = join(dir, 'missing', 'ggml-base.en.bin');
    const { transcriber, stats } = setup({ modelPath: path });
    const error = await ocularRejection(transcriber.transcribe(audio(wav(1)), signal()));
    expect(error.type).toBe('unavailable_error');
    expect(error.status).toBe(503);
    expect(error.message).toContain(path);
    expect(error.message).toContain('huggingface.co/ggerganov/whisper.cpp');
    expect(error.message).toContain('transcriber.modelPath');
    expect(stats.loads).toBe(0);
  });

  it('turns away files that are not whisper models before whisper.cpp reads them', async () => {
    const oldLlamaHeader = Buffer.alloc(64);
    [0x67676d6c, 32_000, 4096, 256, 32, 32, 128, 2].forEach((value, index) => oldLlamaHeader.writeUInt32LE(value, index * 4));
    const files: Record<string, Buffer> = {
      'notes.txt': Buffer.from('these are not the weights you are looking for\n'),
      'empty.bin': Buffer.alloc(0),
      'model.gguf': Buffer.concat([Buffer.from('GGUF', 'latin1'), Buffer.alloc(60)]),
      'old-llama.bin': oldLlamaHeader,
    };
    const folder = join(dir, 'a-folder.bin');
    await mkdir(folder, { recursive: true });
    const paths = [folder];
    for (const [name, bytes] of Object.entries(files)) {
      paths.push(join(dir, name));
      await writeFile(join(dir, name), bytes);
    }
    for (const path of paths) {
      const { transcriber, stats } = setup({ modelPath: path });
      const error = await ocularRejection(transcriber.transcribe(audio(wav(1)), signal()));
      expect(error.type, path).toBe('unavailable_error');
      expect(error.message, path).toContain(path);
      expect(stats.loads, path).toBe(0);
    }
  });

  it('answers 503 when whisper.cpp rejects a damaged model, without crashing, and loads the file once it is fixed', async () => {
    const good = buildTinyWhisperModel({ seed: 1 });
    const renamed = Buffer.from(good);
    const at = renamed.indexOf('encoder.positional_embedding');
    expect(at).toBeGreaterThan(0);
    renamed.write('encoder.positional_embeddinX', at, 'latin1');
    const path = join(dir, 'damaged.bin');

    for (const damaged of [renamed, good.subarray(0, Math.floor(good.length / 2))]) {
      await writeFile(path, damaged);
      const { transcriber, stats } = setup({ modelPath: path });
      const error = await ocularRejection(transcriber.transcribe(audio(wav(1)), signal()));
      expect(error.type).toBe('unavailable_error');
      expect(error.message).toContain(path);
      expect(stats.loads).toBe(1);

      // A failed load is not cached: the next call tries again and succeeds once the file is right.
      await writeFile(path, good);
      const transcript = await transcriber.transcribe(audio(wav(1)), signal());
      expect(typeof transcript.text).toBe('string');
      expect(stats.loads).toBe(2);
    }
  });
});

describe('whisper audio input', () => {
  const missingModel = () => setup({ modelPath: join(dir, 'no-such-model.bin') });

  it('answers 400 for audio that is not 16 kHz mono 16-bit PCM WAV, before looking at the model', async () => {
    const data = tone(1);
    const cases: Record<string, Buffer> = {
      'mp3 bytes': Buffer.concat([Buffer.from('ID3\x04\x00\x00', 'latin1'), Buffer.alloc(100)]),
      'too short': Buffer.from('RIFF', 'latin1'),
      'RIFF but not WAVE': riff([chunk('data', data)]).fill('AVI ', 8, 12, 'latin1'),
      stereo: riff([fmtChunk({ ...PCM_16K_MONO, channels: 2 }), chunk('data', data)]),
      '44.1 kHz': riff([fmtChunk({ ...PCM_16K_MONO, sampleRate: 44_100 }), chunk('data', data)]),
      '8-bit': riff([fmtChunk({ ...PCM_16K_MONO, bits: 8 }), chunk('data', data)]),
      '24-bit': riff([fmtChunk({ ...PCM_16K_MONO, bits: 24 }), chunk('data', data)]),
      'float samples': riff([fmtChunk({ ...PCM_16K_MONO, tag: 3, bits: 32 }), chunk('data', data)]),
      'no fmt chunk': riff([chunk('data', data)]),
      'no data chunk': riff([fmtChunk(PCM_16K_MONO)]),
      'truncated fmt chunk': riff([chunk('fmt ', Buffer.alloc(8))]),
    };
    const { transcriber, stats } = missingModel();
    for (const [name, bytes] of Object.entries(cases)) {
      const error = await ocularRejection(transcriber.transcribe(audio(bytes), signal()));
      expect(error.type, name).toBe('validation_error');
      expect(error.status, name).toBe(400);
    }
    expect(stats.loads).toBe(0);
  });

  it('reads WAV with extra chunks, an odd-length chunk, and the unfilled sizes of a piped ffmpeg', async () => {
    const streamed = wav(1);
    streamed.writeUInt32LE(0xffffffff, 4);
    streamed.writeUInt32LE(0xffffffff, 40);
    const extensible = Buffer.alloc(40);
    fmtChunk(PCM_16K_MONO).copy(extensible, 0, 8);
    extensible.writeUInt16LE(0xfffe, 0);
    extensible.writeUInt16LE(22, 16);
    extensible.writeUInt16LE(1, 24); // KSDATAFORMAT_SUBTYPE_PCM
    const accepted = {
      streamed,
      'LIST before fmt, odd chunk': riff([
        chunk('LIST', Buffer.from('INFOISFT', 'latin1')),
        chunk('junk', Buffer.alloc(3)),
        fmtChunk(PCM_16K_MONO),
        chunk('data', tone(1)),
      ]),
      WAVE_FORMAT_EXTENSIBLE: riff([chunk('fmt ', extensible), chunk('data', tone(1))]),
    };
    const { transcriber } = missingModel();
    // Audio that parses goes on to the model, which is missing here: 503, not 400.
    for (const [name, bytes] of Object.entries(accepted)) {
      const error = await ocularRejection(transcriber.transcribe(audio(bytes), signal()));
      expect(error.type, name).toBe('unavailable_error');
    }
  });

  it('returns an empty transcript for less than 100 ms of audio without loading the model', async () => {
    const { transcriber, stats } = missingModel();
    expect(await transcriber.transcribe(audio(wav(0)), signal())).toEqual({ text: '', segments: [] });
    expect(await transcriber.transcribe(audio(wav(0.05)), signal())).toEqual({ text: '', segments: [] });
    expect(stats.loads).toBe(0);
  });
});

describe('whisper transcriber with a tiny random-weight model', () => {
  it('transcribes to a Transcript with time-ordered segments inside the audio', async () => {
    const { transcriber, stats } = setup({ modelPath: tinyModel });
    const seconds = 29;
    const transcript = await transcriber.transcribe(audio(wav(seconds)), signal());
    expect(stats.loads).toBe(1);
    expect(transcript.language).toBe('en');
    expect(typeof transcript.text).toBe('string');
    expect(transcript.segments.length).toBeGreaterThan(0);
    let previousStart = 0;
    for (const segment of transcript.segments) {
      expect(segment.startSeconds).toBeGreaterThanOrEqual(previousStart);
      expect(segment.endSeconds).toBeGreaterThanOrEqual(segment.startSeconds);
      expect(segment.endSeconds).toBeLessThanOrEqual(seconds);
      expect(segment.text).toBe(segment.text.trim());
      previousStart = segment.startSeconds;
    }
    // The binding's times are milliseconds; those past the end of the audio are cut there.
    const raw = stats.results[0]!;
    expect(transcript.text).toBe(raw.result.trim());
    expect(transcript.segments).toEqual(
      raw.segments.map((segment) => ({
        startSeconds: Math.min(segment.t0 / 1000, seconds),
        endSeconds: Math.min(segment.t1 / 1000, seconds),
        text: segment.text.trim(),
      })),
    );
    expect(raw.segments.some((segment) => segment.t1 > 1000 && segment.t1 < seconds * 1000)).toBe(true);
    expect(formatTranscript(transcript).length).toBeGreaterThan(0);
  });

  it('loads once for concurrent first calls and runs one transcription at a time', async () => {
    const { transcriber, stats } = setup({ modelPath: tinyModel });
    const transcripts = await Promise.all([1, 2, 3].map(() => transcriber.transcribe(audio(wav(2)), signal())));
    expect(transcripts).toHaveLength(3);
    for (const transcript of transcripts) {
      expect(transcript.language).toBe('en');
      // whisper times the last segment of a padded 30 s window past the end of 2 s of audio; it is cut there.
      for (const segment of transcript.segments) expect(segment.endSeconds).toBeLessThanOrEqual(2);
    }
    expect(stats.loads).toBe(1);
    expect(stats.runs).toBe(3);
    expect(stats.maxRunning).toBe(1);
  });

  it('answers an abort at once while whisper.cpp runs, and the next call waits for it and succeeds', async () => {
    const { transcriber, stats } = setup({ modelPath: tinyModel });
    await transcriber.transcribe(audio(wav(1)), signal());

    const controller = new AbortController();
    const aborted = rejection(transcriber.transcribe(audio(wav(29)), controller.signal));
    await waitFor(() => stats.runs === 2);
    controller.abort();
    const error = await aborted;
    expect(isAbortError(error)).toBe(true);
    // Answered before whisper.cpp finished the window it was in.
    expect(stats.running).toBe(1);

    const next = await transcriber.transcribe(audio(wav(1)), signal());
    expect(next.language).toBe('en');
    expect(stats.maxRunning).toBe(1);
  });

  it('rejects an already aborted signal, and one aborted while waiting in line, without running them', async () => {
    const { transcriber, stats } = setup({ modelPath: tinyModel });
    const before = new AbortController();
    before.abort();
    expect(isAbortError(await rejection(transcriber.transcribe(audio(wav(1)), before.signal)))).toBe(true);
    expect(stats.loads).toBe(0);

    const first = transcriber.transcribe(audio(wav(2)), signal());
    const waiting = new AbortController();
    const second = rejection(transcriber.transcribe(audio(wav(2)), waiting.signal));
    waiting.abort();
    expect(isAbortError(await second)).toBe(true);
    await first;
    expect(stats.runs).toBe(1);
  });

  it('unloads the model after idleUnloadMs and loads it again for the next call', async () => {
    const { transcriber, stats } = setup({ modelPath: tinyModel, idleUnloadMs: 50 });
    await transcriber.transcribe(audio(wav(1)), signal());
    await waitFor(() => stats.releases === 1);
    await transcriber.transcribe(audio(wav(1)), signal());
    expect(stats.loads).toBe(2);
  });

  it('keeps the model loaded with idleUnloadMs 0', async () => {
    const { transcriber, stats } = setup({ modelPath: tinyModel, idleUnloadMs: 0 });
    await transcriber.transcribe(audio(wav(1)), signal());
    await new Promise((resolve) => setTimeout(resolve, 200));
    await transcriber.transcribe(audio(wav(1)), signal());
    expect(stats.loads).toBe(1);
    expect(stats.releases).toBe(0);
  });

  it('close() releases the model, answers a running call, and refuses later ones with 503', async () => {
    const { transcriber, stats } = setup({ modelPath: tinyModel });
    await transcriber.transcribe(audio(wav(1)), signal());
    const running = ocularRejection(transcriber.transcribe(audio(wav(29)), signal()));
    await waitFor(() => stats.runs === 2);
    await transcriber.close();
    expect((await running).type).toBe('unavailable_error');
    expect(stats.releases).toBe(1);
    const after = await ocularRejection(transcriber.transcribe(audio(wav(1)), signal()));
    expect(after.type).toBe('unavailable_error');
  });

  it('gives up with upstream_error when whisper.cpp fails inside a job (whose promise the binding never settles)', async () => {
    // whisper.cpp throws std::out_of_range looking up the " " token this vocabulary lacks; the binding turns
    // that into a job error that it never reports.
    const path = join(dir, 'no-space-token.bin');
    await writeFile(path, buildTinyWhisperModel({ seed: 1, vocab: ['a', 'b', 'c'] }));
    const { transcriber, stats } = setup({ modelPath: path }, { stallTimeoutMs: 500 });
    const error = await ocularRejection(transcriber.transcribe(audio(wav(1)), signal()));
    expect(error.type).toBe('upstream_error');
    expect(stats.runs).toBe(1);
    // The line moves on, on a fresh context: the lost job's context is released, never shared.
    expect((await ocularRejection(transcriber.transcribe(audio(wav(1)), signal()))).type).toBe('upstream_error');
    expect(stats.runs).toBe(2);
    expect(stats.loads).toBe(2);
    expect(stats.releases).toBe(2);
  });
});
