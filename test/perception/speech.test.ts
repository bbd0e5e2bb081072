import { createServer, type IncomingHttpHeaders, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { isAbortError, isOcularError, type OcularError } from '../../src/spec/errors.ts';
import {
  createTranscriber,
  formatTranscript,
  transcriberSettingsSchema,
  type Transcriber,
  type Transcript,
} from '../../src/perception/speech/transcriber.ts';
import { sendJson } from '../helpers/fake-upstream.ts';

/** Recorded shape of OpenAI's `verbose_json` for whisper-1 (2025), including the fields Ocular ignores. */
const VERBOSE_JSON = {
  task: 'transcribe',
  language: 'english',
  duration: 8.470000267028809,
  text: 'The beach was a popular spot on a hot summer day. People were swimming in the ocean, building sandcastles, and playing beach volleyball.',
  segments: [
    {
      id: 0,
      seek: 0,
      start: 0.0,
      end: 3.319999933242798,
      text: ' The beach was a popular spot on a hot summer day.',
      tokens: [50364, 440, 7534, 390, 257, 3743, 4008, 322, 257, 2368, 4266, 786, 13, 50530],
      temperature: 0.0,
      avg_logprob: -0.2860786020755768,
      compression_ratio: 1.2363636493682861,
      no_speech_prob: 0.00985979475080967,
    },
    {
      id: 1,
      seek: 0,
      start: 3.319999933242798,
      end: 8.470000267028809,
      text: ' People were swimming in the ocean, building sandcastles, and playing beach volleyball.',
      tokens: [50530, 3432, 645, 11989, 294, 264, 7810, 11, 2390, 4932, 66, 525, 904, 11, 293, 2433, 7534, 18488, 13, 50794],
      temperature: 0.0,
      avg_logprob: -0.2860786020755768,
      compression_ratio: 1.2363636493682861,
      no_speech_prob: 0.00985979475080967,
    },
  ],
  usage: { type: 'duration', seconds: 9 },
};

/** OpenAI's `json` answer, and what servers without verbose_json send. */
const PLAIN_JSON = { text: 'Hello there, general Kenobi.' };

/** Recorded body of OpenAI's refusal of verbose_json for gpt-4o-transcribe. */
const VERBOSE_REFUSED = {
  error: {
    message: "response_format 'verbose_json' is not compatible with model 'gpt-4o-transcribe'. Use 'json' or 'text' instead.",
    type: 'invalid_request_error',
    param: 'response_format',
    code: 'unsupported_value',
  },
};

/** A RIFF/WAVE header and bytes above 0x7f, so a body decoded as text instead of bytes would not compare equal. */
const AUDIO = Buffer.concat([
  Buffer.from('RIFF\x24\x00\x00\x00WAVEfmt ', 'latin1'),
  Buffer.from([0x10, 0, 0, 0, 1, 0, 1, 0, 0x80, 0x3e, 0, 0, 0, 0x7d, 0, 0, 2, 0, 16, 0]),
  Buffer.from('data', 'latin1'),
  Buffer.from([0x00, 0xff, 0xfe, 0x80, 0x7f, 0xc3, 0x28, 0x0d, 0x0a, 0x2d, 0x2d]),
]);

interface CapturedRequest {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  form: globalThis.FormData;
}

type Handler = (request: CapturedRequest, response: ServerResponse) => void | Promise<void>;

interface MultipartUpstream {
  url: string;
  requests: CapturedRequest[];
  close(): Promise<void>;
}

/**
 * A real loopback HTTP server that keeps each body's raw bytes and parses them as multipart/form-data
 * (test/helpers/fake-upstream.ts decodes bodies as UTF-8 text, which would mangle the audio).
 */
async function startMultipartUpstream(handler: Handler): Promise<MultipartUpstream> {
  const requests: CapturedRequest[] = [];
  const server = createServer((raw, response) => {
    const chunks: Buffer[] = [];
    raw.on('data', (chunk: Buffer) => chunks.push(chunk));
    raw.on('end', () => {
      const contentType = raw.headers['content-type'] ?? '';
      new Response(Buffer.concat(chunks), { headers: { 'content-type': contentType } })
        .formData()
        .then((form) => {
          const captured = { method: raw.method ?? '', url: raw.url ?? '', headers: raw.headers, form };
          requests.push(captured);
          return handler(captured, response);
        })
        .catch((error: unknown) => {
          response.statusCode = 599;
          response.end(String(error));
        });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

let upstream: MultipartUpstream | undefined;
const transcribers: Transcriber[] = [];

afterEach(async () => {
  await Promise.all(transcribers.splice(0).map((transcriber) => transcriber.close?.()));
  await upstream?.close();
  upstream = undefined;
});

async function setup(handler: Handler, overrides: Record<string, unknown> = {}) {
  upstream = await startMultipartUpstream(handler);
  const transcriber = createTranscriber(
    transcriberSettingsSchema.parse({ provider: 'openai-compatible', baseUrl: `${upstream.url}/v1`, model: 'whisper-1', ...overrides }),
  );
  if (transcriber === undefined) throw new Error('expected a transcriber');
  transcribers.push(transcriber);
  return { transcriber, upstream };
}

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

const signal = (): AbortSignal => new AbortController().signal;
const audio = { data: AUDIO, mediaType: 'audio/wav', filename: 'meeting.wav' };

describe('transcriber settings', () => {
  it('accepts openai-compatible and none, strictly', () => {
    const parsed = transcriberSettingsSchema.parse({
      provider: 'openai-compatible',
      baseUrl: 'http://127.0.0.1:8000/v1',
      model: 'Systran/faster-whisper-small',
      language: 'en',
      timeoutMs: 120_000,
      maxRetries: 0,
    });
    expect(parsed).toMatchObject({ provider: 'openai-compatible', model: 'Systran/faster-whisper-small', language: 'en' });
    expect(transcriberSettingsSchema.parse({ provider: 'none' })).toEqual({ provider: 'none' });
    expect(createTranscriber({ provider: 'none' })).toBeUndefined();

    const rejected = [
      { provider: 'none', model: 'whisper-1' },
      { provider: 'openai-compatible', baseUrl: 'http://127.0.0.1:8000/v1' },
      { provider: 'openai-compatible', baseUrl: 'ftp://127.0.0.1/v1', model: 'whisper-1' },
      { provider: 'openai-compatible', baseUrl: 'http://127.0.0.1:8000/v1', model: 'whisper-1', apiKey: '' },
      { provider: 'openai-compatible', baseUrl: 'http://127.0.0.1:8000/v1', model: 'whisper-1', temperature: 0 },
      { provider: 'whisper-cpp', modelPath: '/models/ggml-base.bin' },
    ];
    for (const settings of rejected) expect(transcriberSettingsSchema.safeParse(settings).success, JSON.stringify(settings)).toBe(false);
  });
});

describe('openai-compatible transcriber', () => {
  it('posts the audio as multipart with model, verbose_json, segment timestamps, language and the API key', async () => {
    const { transcriber, upstream } = await setup((_request, response) => sendJson(response, 200, VERBOSE_JSON), {
      apiKey: 'sk-test',
      language: 'en',
    });
    expect(transcriber.name).toBe('openai-compatible');
    await transcriber.transcribe(audio, signal());

    expect(upstream.requests).toHaveLength(1);
    const recorded = upstream.requests[0]!;
    expect(recorded.method).toBe('POST');
    expect(recorded.url).toBe('/v1/audio/transcriptions');
    expect(recorded.headers.authorization).toBe('Bearer sk-test');
    expect(recorded.headers['content-type']).toMatch(/^multipart\/form-data; boundary=/);
    expect(recorded.form.get('model')).toBe('whisper-1');
    expect(recorded.form.get('response_format')).toBe('verbose_json');
    expect(recorded.form.getAll('timestamp_granularities[]')).toEqual(['segment']);
    expect(recorded.form.get('language')).toBe('en');
    const file = recorded.form.get('file');
    if (file === null || typeof file === 'string') throw new Error('expected a file part');
    expect(file.name).toBe('meeting.wav');
    expect(file.type).toBe('audio/wav');
    expect(Buffer.from(await file.arrayBuffer()).equals(AUDIO)).toBe(true);
  });

  it('sends no authorization or language when they are not configured', async () => {
    const { transcriber, upstream } = await setup((_request, response) => sendJson(response, 200, VERBOSE_JSON));
    await transcriber.transcribe(audio, signal());
    const recorded = upstream.requests[0]!;
    expect(recorded.headers.authorization).toBeUndefined();
    expect(recorded.form.has('language')).toBe(false);
  });

  it('parses verbose_json into trimmed, timed segments', async () => {
    const { transcriber } = await setup((_request, response) => sendJson(response, 200, VERBOSE_JSON));
    const transcript = await transcriber.transcribe(audio, signal());
    expect(transcript).toEqual({
      text: VERBOSE_JSON.text,
      language: 'english',
      segments: [
        { startSeconds: 0, endSeconds: 3.319999933242798, text: 'The beach was a popular spot on a hot summer day.' },
        {
          startSeconds: 3.319999933242798,
          endSeconds: 8.470000267028809,
          text: 'People were swimming in the ocean, building sandcastles, and playing beach volleyball.',
        },
      ],
    } satisfies Transcript);
  });

  it('accepts a plain {text} answer from a server that ignores response_format', async () => {
    const { transcriber, upstream } = await setup((_request, response) => sendJson(response, 200, PLAIN_JSON));
    const transcript = await transcriber.transcribe(audio, signal());
    expect(transcript).toEqual({ text: 'Hello there, general Kenobi.', segments: [] });
    expect(upstream.requests).toHaveLength(1);
  });

  it('falls back to json once when the upstream refuses verbose_json with 400, and remembers it', async () => {
    const { transcriber, upstream } = await setup((request, response) =>
      request.form.get('response_format') === 'verbose_json'
        ? sendJson(response, 400, VERBOSE_REFUSED)
        : sendJson(response, 200, PLAIN_JSON),
    );
    expect(await transcriber.transcribe(audio, signal())).toEqual({ text: 'Hello there, general Kenobi.', segments: [] });
    expect(upstream.requests.map((request) => request.form.get('response_format'))).toEqual(['verbose_json', 'json']);
    // json carries no timestamps, and OpenAI rejects timestamp_granularities alongside it.
    expect(upstream.requests[1]!.form.has('timestamp_granularities[]')).toBe(false);
    const second = upstream.requests[1]!.form.get('file');
    if (second === null || typeof second === 'string') throw new Error('expected a file part');
    expect(Buffer.from(await second.arrayBuffer()).equals(AUDIO)).toBe(true);

    await transcriber.transcribe(audio, signal());
    expect(upstream.requests.map((request) => request.form.get('response_format'))).toEqual(['verbose_json', 'json', 'json']);
  });

  it('reports the second refusal when json is refused too', async () => {
    const { transcriber, upstream } = await setup((_request, response) =>
      sendJson(response, 400, { error: { message: 'Invalid file format.', type: 'invalid_request_error' } }),
    );
    const error = await ocularRejection(transcriber.transcribe(audio, signal()));
    expect(error.type).toBe('upstream_error');
    expect(error.retryable).toBe(false);
    expect(upstream.requests.map((request) => request.form.get('response_format'))).toEqual(['verbose_json', 'json']);
  });

  it('retries a 503 and then succeeds', async () => {
    let calls = 0;
    const { transcriber, upstream } = await setup((_request, response) =>
      ++calls === 1
        ? sendJson(response, 503, { error: { message: 'model is loading' } }, { 'retry-after': '0' })
        : sendJson(response, 200, VERBOSE_JSON),
    );
    const transcript = await transcriber.transcribe(audio, signal());
    expect(transcript.segments).toHaveLength(2);
    expect(upstream.requests).toHaveLength(2);
    expect(upstream.requests.map((request) => request.form.get('response_format'))).toEqual(['verbose_json', 'verbose_json']);
    const retried = upstream.requests[1]!.form.get('file');
    if (retried === null || typeof retried === 'string') throw new Error('expected a file part');
    expect(Buffer.from(await retried.arrayBuffer()).equals(AUDIO)).toBe(true);
  });

  it('gives up after maxRetries with a retryable error of the mapped type', async () => {
    const { transcriber, upstream } = await setup(
      (_request, response) => sendJson(response, 429, { error: { message: 'Rate limit reached' } }, { 'retry-after': '0' }),
      { maxRetries: 1 },
    );
    const error = await ocularRejection(transcriber.transcribe(audio, signal()));
    expect(error.type).toBe('rate_limit_error');
    expect(error.status).toBe(429);
    expect(error.retryable).toBe(true);
    expect(upstream.requests).toHaveLength(2);
  });

  it('maps 401 to a non-retryable upstream_error that keeps the upstream message', async () => {
    const message = 'Incorrect API key provided: sk-wrong. You can find your API key at https://platform.openai.com/account/api-keys.';
    const { transcriber, upstream } = await setup(
      (_request, response) => sendJson(response, 401, { error: { message, type: 'invalid_request_error', code: 'invalid_api_key' } }),
      { apiKey: 'sk-wrong' },
    );
    const error = await ocularRejection(transcriber.transcribe(audio, signal()));
    expect(error.type).toBe('upstream_error');
    expect(error.status).toBe(502);
    expect(error.retryable).toBe(false);
    expect(error.message).toContain(message);
    expect(upstream.requests).toHaveLength(1);
  });

  it('rejects a 200 body that is not a transcription as an upstream_error', async () => {
    const { transcriber } = await setup((_request, response) => sendJson(response, 200, { segments: 'none' }));
    const error = await ocularRejection(transcriber.transcribe(audio, signal()));
    expect(error.type).toBe('upstream_error');
  });

  it('stops when the signal aborts, while the upstream is still transcribing', async () => {
    const controller = new AbortController();
    const { transcriber, upstream } = await setup(() => {
      controller.abort();
      // never answers
    });
    const error = await rejection(transcriber.transcribe(audio, controller.signal));
    expect(isAbortError(error)).toBe(true);
    expect(upstream.requests).toHaveLength(1);
  });

  it('stops when the signal aborts during the retry backoff', async () => {
    const controller = new AbortController();
    const { transcriber, upstream } = await setup((_request, response) => {
      sendJson(response, 503, { error: { message: 'busy' } }, { 'retry-after': '20' });
      setTimeout(() => controller.abort(), 50);
    });
    const started = Date.now();
    const error = await rejection(transcriber.transcribe(audio, controller.signal));
    expect(isAbortError(error)).toBe(true);
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(upstream.requests).toHaveLength(1);
  });

  it('times out a silent upstream with a timeout_error', async () => {
    const { transcriber, upstream } = await setup(() => undefined, { timeoutMs: 200, maxRetries: 0 });
    const error = await ocularRejection(transcriber.transcribe(audio, signal()));
    expect(error.type).toBe('timeout_error');
    expect(upstream.requests).toHaveLength(1);
  });

  it('maps a refused connection to a retryable upstream_error', async () => {
    const { transcriber, upstream } = await setup(() => undefined, { maxRetries: 0 });
    await upstream.close();
    const error = await ocularRejection(transcriber.transcribe(audio, signal()));
    expect(error.type).toBe('upstream_error');
    expect(error.retryable).toBe(true);
  });
});

describe('formatTranscript', () => {
  const transcript: Transcript = {
    text: 'hello there general kenobi',
    segments: [
      { startSeconds: 3.2, endSeconds: 7.9, text: ' hello there' },
      { startSeconds: 7.9, endSeconds: 9, text: '   ' },
      { startSeconds: 65, endSeconds: 71.5, text: 'general\nkenobi' },
    ],
  };

  it('writes one timestamped line per segment with words', () => {
    expect(formatTranscript(transcript)).toBe('[00:03 - 00:07] hello there\n[01:05 - 01:11] general kenobi');
  });

  it('shifts timestamps by offsetSeconds and switches to h:mm:ss past an hour', () => {
    expect(formatTranscript(transcript, { offsetSeconds: 3590 })).toBe('[59:53 - 59:57] hello there\n[1:00:55 - 1:01:01] general kenobi');
    expect(formatTranscript({ text: '', segments: [{ startSeconds: 36_000, endSeconds: 36_061, text: 'late' }] })).toBe(
      '[10:00:00 - 10:01:01] late',
    );
  });

  it('is the plain text when there are no segments', () => {
    expect(formatTranscript({ text: ' Hello there, general Kenobi. \n', segments: [] })).toBe('Hello there, general Kenobi.');
  });
});
