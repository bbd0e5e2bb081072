import { writeFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { Agent, request, type Dispatcher } from 'undici';
import { z } from 'zod';
import { patchWavSizes } from '../../media/audio.ts';
import { findOnPath } from '../../media/binaries.ts';
import { ProcessError, runProcess } from '../../media/run-process.ts';
import type { Scratch } from '../../media/scratch.ts';
import { computeBackoffMs, ERROR_BODY_LIMIT, readBodyUpTo } from '../../provider-utils/http-client.ts';
import { mapNetworkError, mapUpstreamStatus } from '../../provider-utils/map-upstream-error.ts';
import { isAbortError, OcularError } from '../../spec/errors.ts';

/** Provider name in error messages. */
const ERROR_PROVIDER = 'text-to-speech';

/** Text spoken per request: a few minutes of speech. Longer translations are refused rather than cut. */
export const MAX_SPEECH_CHARS = 8_000;

/** The languages the Speech API translates into, by the names Reka's API uses, with their ISO 639-1 codes. */
export const SPEECH_LANGUAGES = {
  english: 'en',
  french: 'fr',
  spanish: 'es',
  japanese: 'ja',
  chinese: 'zh',
  korean: 'ko',
  italian: 'it',
  portuguese: 'pt',
  german: 'de',
} as const;

export type SpeechLanguage = keyof typeof SPEECH_LANGUAGES;

/** Text to speech: WAV bytes of `text` spoken in `language`. Rejects with `OcularError` and honours `signal`. */
export interface Synthesizer {
  readonly name: string;
  synthesize(text: string, language: SpeechLanguage, scratch: Scratch, signal: AbortSignal): Promise<Buffer>;
  close?(): Promise<void>;
}

export const espeakSynthesizerSettingsSchema = z.strictObject({
  provider: z.literal('espeak-ng'),
  /** The executable: a path, or a name looked up on PATH. @default espeak-ng */
  binary: z.string().min(1).optional(),
  /** Words per minute. @default 165 */
  wordsPerMinute: z.int().min(80).max(450).optional(),
});

export const openAiCompatibleSynthesizerSettingsSchema = z.strictObject({
  provider: z.literal('openai-compatible'),
  /** Base of an OpenAI-style API serving `POST /audio/speech` (OpenAI, Kokoro-FastAPI, openedai-speech, vLLM). */
  baseUrl: z.url({ protocol: /^https?$/ }),
  /** e.g. `tts-1`, `kokoro` */
  model: z.string().min(1),
  /** @default alloy */
  voice: z.string().min(1).optional(),
  apiKey: z.string().min(1).optional(),
  /** @default 120000 */
  timeoutMs: z.int().min(100).max(3_600_000).optional(),
  /** @default 2 */
  maxRetries: z.int().min(0).max(10).optional(),
});

/**
 * `textToSpeech` in the config: `auto` (the default) uses espeak-ng when it is installed and none otherwise;
 * `none` turns speech output off.
 */
export const synthesizerSettingsSchema = z.discriminatedUnion('provider', [
  espeakSynthesizerSettingsSchema,
  openAiCompatibleSynthesizerSettingsSchema,
  z.strictObject({ provider: z.literal('auto') }),
  z.strictObject({ provider: z.literal('none') }),
]);

export type SynthesizerSettings = z.infer<typeof synthesizerSettingsSchema>;

/** espeak-ng voice names for the languages above (`cmn` is Mandarin). */
const ESPEAK_VOICES: Readonly<Record<SpeechLanguage, string>> = {
  english: 'en',
  french: 'fr',
  spanish: 'es',
  japanese: 'ja',
  chinese: 'cmn',
  korean: 'ko',
  italian: 'it',
  portuguese: 'pt',
  german: 'de',
};

/** A local engine: espeak-ng, from Debian's package `espeak-ng` (formant synthesis: robotic, but offline and fast). */
export class EspeakSynthesizer implements Synthesizer {
  readonly name = 'espeak-ng';
  readonly #binary: string;
  readonly #wordsPerMinute: number;

  constructor(binary: string, wordsPerMinute = 165) {
    this.#binary = binary;
    this.#wordsPerMinute = wordsPerMinute;
  }

  async synthesize(text: string, language: SpeechLanguage, scratch: Scratch, signal: AbortSignal): Promise<Buffer> {
    // From a file, not the command line: the text is the client's and may be long or start with `-`.
    const input = scratch.path('.txt');
    await writeFile(input, text, 'utf8');
    try {
      const { stdout } = await runProcess(
        this.#binary,
        ['-v', ESPEAK_VOICES[language], '-s', String(this.#wordsPerMinute), '-b', '1', '-f', input, '--stdout'],
        { signal, timeoutMs: 120_000, maxStdoutBytes: 256 * 1024 * 1024 },
      );
      // espeak-ng writes a streaming header whose sizes are placeholders.
      return patchWavSizes(stdout);
    } catch (error) {
      if (error instanceof ProcessError) {
        throw new OcularError('server_error', `espeak-ng failed (${error.failure}): ${error.message}`, { cause: error });
      }
      throw error;
    }
  }
}

/** Speech from an upstream speaking OpenAI's `POST {baseUrl}/audio/speech`, asked for WAV. */
export class OpenAiCompatibleSynthesizer implements Synthesizer {
  readonly name = 'openai-compatible';
  readonly #url: string;
  readonly #model: string;
  readonly #voice: string;
  readonly #headers: Record<string, string>;
  readonly #maxRetries: number;
  readonly #dispatcher: Dispatcher;

  constructor(settings: z.infer<typeof openAiCompatibleSynthesizerSettingsSchema>) {
    this.#url = `${settings.baseUrl.replace(/\/+$/, '')}/audio/speech`;
    this.#model = settings.model;
    this.#voice = settings.voice ?? 'alloy';
    this.#headers = {
      'content-type': 'application/json',
      accept: 'audio/wav',
      'user-agent': 'ocular/0.1',
      ...(settings.apiKey ? { authorization: `Bearer ${settings.apiKey}` } : {}),
    };
    this.#maxRetries = settings.maxRetries ?? 2;
    const timeoutMs = settings.timeoutMs ?? 120_000;
    this.#dispatcher = new Agent({ headersTimeout: timeoutMs, bodyTimeout: timeoutMs, keepAliveTimeout: 30_000 });
  }

  async synthesize(text: string, _language: SpeechLanguage, _scratch: Scratch, signal: AbortSignal): Promise<Buffer> {
    const body = JSON.stringify({ model: this.#model, input: text, voice: this.#voice, response_format: 'wav' });
    for (let attempt = 0; ; attempt++) {
      let failure: OcularError;
      try {
        const response = await request(this.#url, { dispatcher: this.#dispatcher, method: 'POST', headers: this.#headers, body, signal });
        if (response.statusCode >= 200 && response.statusCode < 300) {
          const { bytes, complete } = await readBodyUpTo(response.body, 256 * 1024 * 1024);
          if (!complete) throw new OcularError('upstream_error', `${ERROR_PROVIDER} upstream sent more than 256 MB of audio`);
          if (bytes.subarray(0, 4).toString('latin1') !== 'RIFF' || bytes.subarray(8, 12).toString('latin1') !== 'WAVE') {
            throw new OcularError('upstream_error', `${ERROR_PROVIDER} upstream did not answer with WAV audio`);
          }
          return patchWavSizes(bytes);
        }
        const errorText = (await readBodyUpTo(response.body, ERROR_BODY_LIMIT)).bytes.toString('utf8');
        const retryAfter = response.headers['retry-after'];
        failure = mapUpstreamStatus(ERROR_PROVIDER, response.statusCode, errorText, Array.isArray(retryAfter) ? retryAfter[0] : retryAfter);
      } catch (error) {
        if (isAbortError(error) || signal.aborted) throw error;
        if (error instanceof OcularError && !error.retryable) throw error;
        failure = error instanceof OcularError ? error : mapNetworkError(ERROR_PROVIDER, error);
      }
      if (!failure.retryable || attempt >= this.#maxRetries) throw failure;
      await sleep(computeBackoffMs(attempt, failure.retryAfterSeconds), undefined, { signal });
    }
  }

  async close(): Promise<void> {
    await this.#dispatcher.close();
  }
}

/** Builds the configured backend once at boot; undefined when there is none (`none`, or `auto` without espeak-ng). */
export function createSynthesizer(settings: SynthesizerSettings, searchPath: string): Synthesizer | undefined {
  switch (settings.provider) {
    case 'espeak-ng': {
      const name = settings.binary ?? 'espeak-ng';
      const binary = name.includes('/') ? name : findOnPath(name, searchPath);
      if (binary === undefined) throw new Error(`textToSpeech: "${name}" was not found on PATH (Debian: apt-get install espeak-ng)`);
      return new EspeakSynthesizer(binary, settings.wordsPerMinute);
    }
    case 'openai-compatible':
      return new OpenAiCompatibleSynthesizer(settings);
    case 'auto': {
      const binary = findOnPath('espeak-ng', searchPath);
      return binary === undefined ? undefined : new EspeakSynthesizer(binary);
    }
    case 'none':
      return undefined;
  }
}
