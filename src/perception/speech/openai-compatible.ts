import { setTimeout as sleep } from 'node:timers/promises';
import { Agent, FormData, request, type Dispatcher } from 'undici';
import { z } from 'zod';
import { isAbortError, OcularError } from '../../spec/errors.ts';
import { computeBackoffMs, ERROR_BODY_LIMIT, readBodyUpTo } from '../../provider-utils/http-client.ts';
import { mapNetworkError, mapUpstreamStatus } from '../../provider-utils/map-upstream-error.ts';
import type { Transcriber, TranscriberAudio, Transcript } from './transcriber.ts';

/** Provider name in error messages: the client sees which analyzer's upstream failed. */
const ERROR_PROVIDER = 'transcriber';

export const openAiCompatibleTranscriberSettingsSchema = z.strictObject({
  provider: z.literal('openai-compatible'),
  /**
   * Base of an OpenAI-style API: `http://127.0.0.1:8000/v1` for faster-whisper-server or vLLM, whisper.cpp's
   * server in OpenAI mode, `https://api.openai.com/v1`.
   */
  baseUrl: z.url({ protocol: /^https?$/ }),
  /** The upstream's model name, e.g. `whisper-1` or `Systran/faster-whisper-small`. */
  model: z.string().min(1),
  apiKey: z.string().min(1).optional(),
  /** ISO-639-1 code of the spoken language; detection is left to the upstream when unset. */
  language: z.string().min(2).max(16).optional(),
  /**
   * Milliseconds to wait for the response headers, and between body chunks. The upstream answers only once the
   * whole file is transcribed, so this bounds one transcription. @default 600000
   */
  timeoutMs: z.int().min(100).max(3_600_000).optional(),
  /** Retries on 408/409/429/5xx and network errors. @default 2 */
  maxRetries: z.int().min(0).max(10).optional(),
});

export type OpenAiCompatibleTranscriberSettings = z.infer<typeof openAiCompatibleTranscriberSettingsSchema>;

/**
 * `verbose_json` (OpenAI, faster-whisper-server, whisper.cpp, vLLM) or the plain `{text}` of `json`. Lenient:
 * only the fields used are checked, and servers differ on the rest (`language` may be null or missing).
 */
const transcriptionResponseSchema = z.object({
  text: z.string(),
  language: z.string().nullish(),
  segments: z.array(z.object({ start: z.number(), end: z.number(), text: z.string() })).nullish(),
});

type ResponseFormat = 'verbose_json' | 'json';

type Attempt = { ok: true; body: unknown } | { ok: false; error: OcularError };

/** Statuses with which an upstream refuses `verbose_json` (gpt-4o-transcribe: 400; FastAPI servers: 422). */
const FORMAT_REJECTED_STATUSES = new Set([400, 422]);

/** Speech-to-text over `POST {baseUrl}/audio/transcriptions`, the OpenAI audio API that whisper servers copy. */
export class OpenAiCompatibleTranscriber implements Transcriber {
  readonly name = 'openai-compatible';
  readonly #url: string;
  readonly #model: string;
  readonly #language: string | undefined;
  readonly #headers: Record<string, string>;
  readonly #maxRetries: number;
  readonly #dispatcher: Dispatcher;
  /** Set once the upstream refused `verbose_json` and took `json`, so later calls do not pay for the refusal. */
  #textOnly = false;

  constructor(settings: OpenAiCompatibleTranscriberSettings) {
    this.#url = `${settings.baseUrl.replace(/\/+$/, '')}/audio/transcriptions`;
    this.#model = settings.model;
    this.#language = settings.language;
    this.#headers = {
      accept: 'application/json',
      'user-agent': 'ocular/0.1',
      ...(settings.apiKey ? { authorization: `Bearer ${settings.apiKey}` } : {}),
    };
    this.#maxRetries = settings.maxRetries ?? 2;
    const timeoutMs = settings.timeoutMs ?? 600_000;
    this.#dispatcher = new Agent({ headersTimeout: timeoutMs, bodyTimeout: timeoutMs, keepAliveTimeout: 30_000 });
  }

  async transcribe(audio: TranscriberAudio, signal: AbortSignal): Promise<Transcript> {
    if (!this.#textOnly) {
      const attempt = await this.#post(audio, 'verbose_json', signal);
      if (attempt.ok) return parseTranscript(attempt.body);
    }
    // The upstream refused verbose_json (models like gpt-4o-transcribe, servers without it): ask for plain text
    // once; if that is refused too, the second refusal is the error the caller sees.
    const attempt = await this.#post(audio, 'json', signal);
    if (!attempt.ok) throw attempt.error;
    this.#textOnly = true;
    return parseTranscript(attempt.body);
  }

  async close(): Promise<void> {
    await this.#dispatcher.close();
  }

  #buildForm(audio: TranscriberAudio, format: ResponseFormat): FormData {
    const form = new FormData();
    // A view, not a copy: Blob copies the bytes once itself.
    const bytes = new Uint8Array(audio.data.buffer as ArrayBuffer, audio.data.byteOffset, audio.data.byteLength);
    form.append('file', new Blob([bytes], { type: audio.mediaType }), audio.filename);
    form.append('model', this.#model);
    form.append('response_format', format);
    // Only verbose_json carries timestamps; OpenAI rejects timestamp_granularities with any other format.
    if (format === 'verbose_json') form.append('timestamp_granularities[]', 'segment');
    if (this.#language !== undefined) form.append('language', this.#language);
    return form;
  }

  /**
   * One request with retries on transient failures. A refusal of `verbose_json` is returned, not thrown, so the
   * caller can fall back to `json`; every other failure throws.
   */
  async #post(audio: TranscriberAudio, format: ResponseFormat, signal: AbortSignal): Promise<Attempt> {
    for (let attempt = 0; ; attempt++) {
      let failure: OcularError;
      try {
        const response = await request(this.#url, {
          dispatcher: this.#dispatcher,
          method: 'POST',
          headers: this.#headers,
          // Rebuilt per attempt: undici turns the form into a one-shot stream.
          body: this.#buildForm(audio, format),
          signal,
        });
        if (response.statusCode >= 200 && response.statusCode < 300) return { ok: true, body: await readJson(response, signal) };
        const text = (await readBodyUpTo(response.body, ERROR_BODY_LIMIT)).bytes.toString('utf8');
        const retryAfter = response.headers['retry-after'];
        failure = mapUpstreamStatus(ERROR_PROVIDER, response.statusCode, text, Array.isArray(retryAfter) ? retryAfter[0] : retryAfter);
        if (format === 'verbose_json' && FORMAT_REJECTED_STATUSES.has(response.statusCode)) return { ok: false, error: failure };
      } catch (error) {
        if (isAbortError(error) || signal.aborted) throw error;
        failure = error instanceof OcularError ? error : mapNetworkError(ERROR_PROVIDER, error);
      }
      if (!failure.retryable || attempt >= this.#maxRetries) throw failure;
      await sleep(computeBackoffMs(attempt, failure.retryAfterSeconds), undefined, { signal });
    }
  }
}

/** A transcript with segments is a few kilobytes a minute of audio: this is hours of it. */
const MAX_RESPONSE_BYTES = 16 * 1024 * 1024;

async function readJson(response: Dispatcher.ResponseData, signal: AbortSignal): Promise<unknown> {
  const { bytes, complete } = await readBodyUpTo(response.body, MAX_RESPONSE_BYTES);
  if (!complete) throw new OcularError('upstream_error', `${ERROR_PROVIDER} upstream sent more than ${MAX_RESPONSE_BYTES} bytes`);
  try {
    return JSON.parse(bytes.toString('utf8'));
  } catch (error) {
    if (isAbortError(error) || signal.aborted) throw error;
    throw new OcularError('upstream_error', `${ERROR_PROVIDER} upstream sent a body that is not JSON`, { cause: error });
  }
}

function parseTranscript(body: unknown): Transcript {
  const parsed = transcriptionResponseSchema.safeParse(body);
  if (!parsed.success) {
    throw new OcularError('upstream_error', `${ERROR_PROVIDER} upstream sent an unexpected transcription body`, { cause: parsed.error });
  }
  const { text, language, segments } = parsed.data;
  return {
    text: text.trim(),
    ...(language ? { language } : {}),
    // Whisper's segment text starts with the tokenizer's leading space.
    segments: (segments ?? []).map((segment) => ({ startSeconds: segment.start, endSeconds: segment.end, text: segment.text.trim() })),
  };
}
