import { readFileSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { isOcularError, type OcularError } from '../../src/spec/errors.ts';
import type { ProviderRequest } from '../../src/spec/provider.ts';
import type { StreamPart } from '../../src/spec/stream-parts.ts';
import { anthropic, settingsSchema } from '../../src/providers/anthropic/index.ts';
import { sendJson, startFakeUpstream, type FakeUpstream, type UpstreamHandler } from '../helpers/fake-upstream.ts';

const fixturesDir = new URL('../fixtures/anthropic/', import.meta.url);
const readText = (name: string): string => readFileSync(new URL(name, fixturesDir), 'utf8');
const readJson = (name: string): unknown => JSON.parse(readText(name));

const PNG_BASE64 = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==';
const PDF_BASE64 = 'JVBERi0xLjQKJcfsj6IKMSAwIG9iago8PC9UeXBlL0NhdGFsb2c+PgplbmRvYmoK';

let upstream: FakeUpstream | undefined;
const models: Array<{ close?(): Promise<void> }> = [];

afterEach(async () => {
  await Promise.all(models.splice(0).map((model) => model.close?.()));
  await upstream?.close();
  upstream = undefined;
});

async function setup(handler: UpstreamHandler, overrides: Record<string, unknown> = {}) {
  upstream = await startFakeUpstream(handler);
  const settings = settingsSchema.parse({
    id: 'claude',
    provider: 'anthropic',
    model: 'claude-sonnet-4-20250514',
    apiKey: 'sk-ant-test',
    baseUrl: upstream.url,
    ...overrides,
  });
  const model = anthropic.create(settings);
  models.push(model);
  return { model, upstream };
}

/** Writes a recorded SSE transcript in small byte slices, so events and UTF-8 characters straddle chunks. */
async function sendTranscript(response: ServerResponse, transcript: string, sliceBytes = 7): Promise<void> {
  response.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' });
  const bytes = Buffer.from(transcript, 'utf8');
  for (let offset = 0; offset < bytes.length; offset += sliceBytes) {
    response.write(bytes.subarray(offset, offset + sliceBytes));
    await new Promise((resolve) => setImmediate(resolve));
  }
  response.end();
}

async function collect(stream: ReadableStream<StreamPart>): Promise<StreamPart[]> {
  const parts: StreamPart[] = [];
  const reader = stream.getReader();
  for (let next = await reader.read(); !next.done; next = await reader.read()) parts.push(next.value);
  return parts;
}

async function rejection(promise: Promise<unknown>): Promise<OcularError> {
  const error = await promise.then(
    () => undefined,
    (reason: unknown) => reason,
  );
  if (!isOcularError(error)) throw new Error(`expected an OcularError, got ${String(error)}`);
  return error;
}

const signal = (): AbortSignal => new AbortController().signal;

const textRequest = (text: string): ProviderRequest => ({
  maxTokens: 256,
  messages: [{ role: 'user', content: [{ type: 'text', text }] }],
});

describe('anthropic settings', () => {
  it('defaults baseUrl to the public API and requires an API key', () => {
    const parsed = settingsSchema.parse({ id: 'c', provider: 'anthropic', model: 'claude-sonnet-4-20250514', apiKey: 'k' });
    expect(parsed.baseUrl).toBe('https://api.anthropic.com');
    expect(settingsSchema.safeParse({ id: 'c', provider: 'anthropic', model: 'claude-sonnet-4-20250514' }).success).toBe(false);
    expect(settingsSchema.safeParse({ id: 'c', provider: 'openai-compatible', model: 'm', apiKey: 'k' }).success).toBe(false);
  });

  it('declares images, PDFs and tools but not video or audio', () => {
    expect(anthropic.defaultCapabilities).toEqual({ image: true, pdf: true, tools: true, video: false, audio: false });
  });
});

describe('anthropic request conversion', () => {
  it('sends system, media, tools, tool results and sampling options in the Messages format', async () => {
    const { model, upstream } = await setup((_request, response) => sendJson(response, 200, readJson('message-text.json')));
    await model.generate(
      {
        maxTokens: 512,
        temperature: 0.4,
        topP: 0.9,
        topK: 40,
        seed: 7,
        frequencyPenalty: 0.5,
        presencePenalty: 0.5,
        stop: ['\n\nHuman:'],
        tools: [
          {
            name: 'get_weather',
            description: 'Current weather for a city',
            parameters: { type: 'object', properties: { location: { type: 'string' } }, required: ['location'] },
          },
        ],
        toolChoice: 'required',
        messages: [
          { role: 'system', content: 'You are a concise assistant.' },
          { role: 'system', content: 'Answer in English.' },
          {
            role: 'user',
            content: [
              { type: 'text', text: 'What is in this picture and this file?' },
              { type: 'media', kind: 'image', mediaType: 'image/png', data: PNG_BASE64 },
              { type: 'media', kind: 'pdf', mediaType: 'application/pdf', data: PDF_BASE64 },
            ],
          },
          {
            role: 'assistant',
            content: 'Let me check the weather first.',
            toolCalls: [{ id: 'toolu_01A09q90qw90lq917835lq9', name: 'get_weather', arguments: { location: 'Paris' } }],
          },
          { role: 'tool', toolCallId: 'toolu_01A09q90qw90lq917835lq9', content: '18°C, cloudy' },
          { role: 'user', content: [{ type: 'text', text: 'Thanks, now summarise.' }] },
        ],
      },
      signal(),
    );

    expect(upstream.requests).toHaveLength(1);
    const recorded = upstream.requests[0]!;
    expect(recorded.method).toBe('POST');
    expect(recorded.url).toBe('/v1/messages');
    expect(recorded.headers['x-api-key']).toBe('sk-ant-test');
    expect(recorded.headers['anthropic-version']).toBe('2023-06-01');
    expect(recorded.headers.authorization).toBeUndefined();
    expect(recorded.body).toEqual({
      model: 'claude-sonnet-4-20250514',
      max_tokens: 512,
      system: 'You are a concise assistant.\n\nAnswer in English.',
      messages: [
        {
          role: 'user',
          content: [
            { type: 'text', text: 'What is in this picture and this file?' },
            { type: 'image', source: { type: 'base64', media_type: 'image/png', data: PNG_BASE64 } },
            { type: 'document', source: { type: 'base64', media_type: 'application/pdf', data: PDF_BASE64 } },
          ],
        },
        {
          role: 'assistant',
          content: [
            { type: 'text', text: 'Let me check the weather first.' },
            { type: 'tool_use', id: 'toolu_01A09q90qw90lq917835lq9', name: 'get_weather', input: { location: 'Paris' } },
          ],
        },
        {
          // The tool result and the next user turn are merged: Anthropic requires alternating roles.
          role: 'user',
          content: [
            { type: 'tool_result', tool_use_id: 'toolu_01A09q90qw90lq917835lq9', content: '18°C, cloudy' },
            { type: 'text', text: 'Thanks, now summarise.' },
          ],
        },
      ],
      temperature: 0.4,
      top_p: 0.9,
      top_k: 40,
      stop_sequences: ['\n\nHuman:'],
      tools: [
        {
          name: 'get_weather',
          description: 'Current weather for a city',
          input_schema: { type: 'object', properties: { location: { type: 'string' } }, required: ['location'] },
        },
      ],
      tool_choice: { type: 'any' },
    });
  });

  it.each([
    ['auto', { type: 'auto' }],
    ['none', { type: 'none' }],
    [{ name: 'get_weather' }, { type: 'tool', name: 'get_weather' }],
  ] as const)('maps tool choice %j', async (toolChoice, expected) => {
    const { model, upstream } = await setup((_request, response) => sendJson(response, 200, readJson('message-text.json')));
    await model.generate(
      { ...textRequest('Weather?'), tools: [{ name: 'get_weather', parameters: { type: 'object' } }], toolChoice },
      signal(),
    );
    const body = upstream.requests[0]!.body as Record<string, unknown>;
    expect(body.tool_choice).toEqual(expected);
    expect(body.tools).toEqual([{ name: 'get_weather', input_schema: { type: 'object' } }]);
  });

  it('sends a continuation as a native prefill without its trailing whitespace', async () => {
    const { model, upstream } = await setup((_request, response) => sendTranscript(response, readText('stream-text.txt')));
    const parts = await collect(
      await model.stream(
        {
          maxTokens: 64,
          continuation: true,
          messages: [
            { role: 'user', content: [{ type: 'text', text: 'Describe the photo.' }] },
            { role: 'assistant', content: 'Sure. \n' },
          ],
        },
        signal(),
      ),
    );
    const body = upstream.requests[0]!.body as Record<string, unknown>;
    expect(body.stream).toBe(true);
    expect(body.messages).toEqual([
      { role: 'user', content: [{ type: 'text', text: 'Describe the photo.' }] },
      { role: 'assistant', content: [{ type: 'text', text: 'Sure.' }] },
    ]);
    expect(parts.at(-1)?.type).toBe('finish');
  });

  it.each(['video', 'audio'] as const)('rejects %s input with a validation_error before calling the upstream', async (kind) => {
    const { model, upstream } = await setup((_request, response) => sendJson(response, 200, readJson('message-text.json')));
    const request: ProviderRequest = {
      maxTokens: 64,
      messages: [
        {
          role: 'user',
          content: [
            { type: 'text', text: 'What happens here?' },
            { type: 'media', kind, mediaType: kind === 'video' ? 'video/mp4' : 'audio/wav', data: 'AAAA' },
          ],
        },
      ],
    };
    const error = await rejection(model.generate(request, signal()));
    expect(error.type).toBe('validation_error');
    expect(error.status).toBe(400);
    expect(error.param).toBe('messages.0.content.1');
    const streamError = await rejection(model.stream(request, signal()));
    expect(streamError.type).toBe('validation_error');
    expect(upstream.requests).toHaveLength(0);
  });
});

describe('anthropic generate', () => {
  it('returns the text, finish reason and usage of a Messages response', async () => {
    const { model } = await setup((_request, response) => sendJson(response, 200, readJson('message-text.json')));
    const result = await model.generate(textRequest('What is in the image?'), signal());
    expect(result).toEqual({
      text: 'The image shows a red fox sitting in fresh snow, looking toward the camera.',
      toolCalls: [],
      finishReason: 'stop',
      usage: { inputTokens: 1591, outputTokens: 21 },
    });
  });

  it('returns tool_use blocks as tool calls and counts cached prompt tokens as input', async () => {
    const { model } = await setup((_request, response) => sendJson(response, 200, readJson('message-tool-use.json')));
    const result = await model.generate(textRequest('Weather in SF?'), signal());
    expect(result).toEqual({
      text: "I'll check the current weather in San Francisco for you.",
      toolCalls: [
        { id: 'toolu_01A09q90qw90lq917835lq9', name: 'get_weather', arguments: { location: 'San Francisco, CA', unit: 'celsius' } },
      ],
      finishReason: 'tool_call',
      usage: { inputTokens: 384 + 1200, outputTokens: 76 },
    });
  });

  it.each([
    ['max_tokens', 'length'],
    ['stop_sequence', 'stop'],
    ['model_context_window_exceeded', 'context'],
  ])('maps stop_reason %s to %s', async (stopReason, finishReason) => {
    const payload = { ...(readJson('message-text.json') as Record<string, unknown>), stop_reason: stopReason };
    const { model } = await setup((_request, response) => sendJson(response, 200, payload));
    expect((await model.generate(textRequest('Hi'), signal())).finishReason).toBe(finishReason);
  });

  it('rejects a 200 response that is not a Message with an upstream_error', async () => {
    const { model } = await setup((_request, response) => sendJson(response, 200, { completion: 'legacy shape' }));
    const error = await rejection(model.generate(textRequest('Hi'), signal()));
    expect(error.type).toBe('upstream_error');
    expect(error.status).toBe(502);
  });
});

describe('anthropic stream', () => {
  it('streams text deltas split across arbitrary byte chunks and finishes with usage', async () => {
    const { model } = await setup((_request, response) => sendTranscript(response, readText('stream-text.txt')));
    const parts = await collect(await model.stream(textRequest('Describe the photo.'), signal()));
    expect(parts).toEqual([
      { type: 'text-delta', text: 'Hello' },
      { type: 'text-delta', text: '! The photo shows a café — ' },
      { type: 'text-delta', text: 'with two cups of coffee on a wooden table ☕.' },
      { type: 'finish', finishReason: 'stop', usage: { inputTokens: 472, outputTokens: 24 } },
    ]);
  });

  it('assembles a tool_use block from input_json_delta fragments', async () => {
    const { model } = await setup((_request, response) => sendTranscript(response, readText('stream-tool-use.txt'), 13));
    const parts = await collect(await model.stream(textRequest('Weather in SF?'), signal()));
    expect(parts).toEqual([
      { type: 'text-delta', text: 'Okay' },
      { type: 'text-delta', text: ", let's check the weather for San Francisco, CA:" },
      {
        type: 'tool-call',
        toolCall: {
          id: 'toolu_01T1x1fJ34qAmk2tNTrN7Up6',
          name: 'get_weather',
          arguments: { location: 'San Francisco, CA', unit: 'fahrenheit' },
        },
      },
      { type: 'finish', finishReason: 'tool_call', usage: { inputTokens: 472, outputTokens: 89 } },
    ]);
  });

  it.each([
    ['overloaded_error', 'upstream_error', true],
    ['rate_limit_error', 'rate_limit_error', true],
    ['invalid_request_error', 'upstream_error', false],
  ] as const)('ends with an error part when the upstream sends a mid-stream %s event', async (upstreamType, type, retryable) => {
    // The recorded transcript carries overloaded_error; the other kinds use the same event with another type.
    const transcript = readText('stream-error.txt').replace('"overloaded_error"', JSON.stringify(upstreamType));
    const { model } = await setup((_request, response) => sendTranscript(response, transcript));
    const parts = await collect(await model.stream(textRequest('Tell me a story.'), signal()));
    expect(parts.slice(0, -1)).toEqual([{ type: 'text-delta', text: 'Once upon a time' }]);
    const last = parts.at(-1);
    if (last?.type !== 'error') throw new Error(`expected an error part, got ${JSON.stringify(last)}`);
    expect(last.error.type).toBe(type);
    expect(last.error.retryable).toBe(retryable);
  });

  it('ends with an error part when the stream closes before message_stop', async () => {
    const transcript = readText('stream-text.txt');
    const truncated = transcript.slice(0, transcript.indexOf('event: message_delta'));
    const { model } = await setup((_request, response) => sendTranscript(response, truncated));
    const parts = await collect(await model.stream(textRequest('Describe the photo.'), signal()));
    expect(parts.filter((part) => part.type === 'text-delta')).toHaveLength(3);
    const last = parts.at(-1);
    expect(last?.type).toBe('error');
    if (last?.type === 'error') expect(last.error.type).toBe('upstream_error');
  });
});

describe('anthropic upstream errors', () => {
  it('retries a 429 after the Retry-After delay', async () => {
    let calls = 0;
    const { model, upstream } = await setup((_request, response) => {
      calls++;
      if (calls === 1) sendJson(response, 429, readJson('error-rate-limit.json'), { 'retry-after': '1' });
      else sendJson(response, 200, readJson('message-text.json'));
    });
    const started = performance.now();
    const result = await model.generate(textRequest('Hi'), signal());
    expect(result.finishReason).toBe('stop');
    expect(upstream.requests).toHaveLength(2);
    expect(performance.now() - started).toBeGreaterThanOrEqual(900);
  });

  it('maps a 429 that outlasts the retries to rate_limit_error with its Retry-After', async () => {
    const { model, upstream } = await setup(
      (_request, response) => sendJson(response, 429, readJson('error-rate-limit.json'), { 'retry-after': '0' }),
      { maxRetries: 1 },
    );
    const error = await rejection(model.generate(textRequest('Hi'), signal()));
    expect(error.type).toBe('rate_limit_error');
    expect(error.status).toBe(429);
    expect(error.retryable).toBe(true);
    expect(error.retryAfterSeconds).toBe(0);
    expect(upstream.requests).toHaveLength(2);
  });

  it('maps a 400 to upstream_error, keeps the upstream message and does not retry', async () => {
    const payload = readJson('error-invalid-request.json') as { error: { message: string } };
    const { model, upstream } = await setup((_request, response) => sendJson(response, 400, payload));
    const error = await rejection(model.stream(textRequest('Hi'), signal()));
    expect(error.type).toBe('upstream_error');
    expect(error.status).toBe(502);
    expect(error.retryable).toBe(false);
    expect(error.message).toContain(payload.error.message);
    expect(upstream.requests).toHaveLength(1);
  });

  it('retries 529 overloaded responses and then succeeds', async () => {
    let calls = 0;
    const { model, upstream } = await setup((_request, response) => {
      calls++;
      if (calls <= 2) sendJson(response, 529, readJson('error-overloaded.json'));
      else void sendTranscript(response, readText('stream-text.txt'));
    });
    const parts = await collect(await model.stream(textRequest('Describe the photo.'), signal()));
    expect(upstream.requests).toHaveLength(3);
    expect(parts.at(-1)).toEqual({ type: 'finish', finishReason: 'stop', usage: { inputTokens: 472, outputTokens: 24 } });
  });

  it('gives up on 529 after maxRetries with a retryable upstream_error', async () => {
    const { model, upstream } = await setup((_request, response) => sendJson(response, 529, readJson('error-overloaded.json')), {
      maxRetries: 0,
    });
    const error = await rejection(model.generate(textRequest('Hi'), signal()));
    expect(error.type).toBe('upstream_error');
    expect(error.retryable).toBe(true);
    expect(upstream.requests).toHaveLength(1);
  });
});
