import { readFileSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { isOcularError, type OcularError } from '../../src/spec/errors.ts';
import type { LanguageModel, ProviderRequest } from '../../src/spec/provider.ts';
import type { StreamPart } from '../../src/spec/stream-parts.ts';
import { gemini, settingsSchema } from '../../src/providers/gemini/index.ts';
import { sendJson, startFakeUpstream, type FakeUpstream, type UpstreamHandler } from '../helpers/fake-upstream.ts';

const fixtureDir = new URL('../fixtures/gemini/', import.meta.url);
const fixtureText = (name: string): string => readFileSync(new URL(name, fixtureDir), 'utf8');
const fixtureJson = (name: string): unknown => JSON.parse(fixtureText(name));

const MODEL = 'gemini-2.5-flash';
const API_KEY = 'test-gemini-key';
const CALL_ID = /^call_[0-9a-f]{32}$/;

/** Writes a recorded SSE transcript in small uneven pieces, so events straddle TCP writes. */
async function sendTranscript(response: ServerResponse, transcript: string): Promise<void> {
  response.writeHead(200, { 'content-type': 'text/event-stream' });
  const bytes = Buffer.from(transcript, 'utf8');
  const sizes = [5, 17, 3, 64, 1, 29];
  for (let offset = 0, index = 0; offset < bytes.length; index++) {
    const size = sizes[index % sizes.length]!;
    response.write(bytes.subarray(offset, offset + size));
    offset += size;
    await new Promise((resolve) => setImmediate(resolve));
  }
  response.end();
}

const replyJson =
  (name: string, status = 200): UpstreamHandler =>
  (_request, response) =>
    sendJson(response, status, fixtureJson(name));

const replyTranscript =
  (name: string): UpstreamHandler =>
  (_request, response) =>
    sendTranscript(response, fixtureText(name));

let upstream: FakeUpstream | undefined;
let model: LanguageModel | undefined;

afterEach(async () => {
  await model?.close?.();
  await upstream?.close();
  model = undefined;
  upstream = undefined;
});

async function setup(
  handler: UpstreamHandler,
  overrides: Record<string, unknown> = {},
): Promise<{ upstream: FakeUpstream; model: LanguageModel }> {
  upstream = await startFakeUpstream(handler);
  model = gemini.create(
    settingsSchema.parse({ id: 'gem', provider: 'gemini', model: MODEL, apiKey: API_KEY, baseUrl: `${upstream.url}/v1beta`, ...overrides }),
  );
  return { upstream, model };
}

function textRequest(text: string, extra: Partial<ProviderRequest> = {}): ProviderRequest {
  return { messages: [{ role: 'user', content: [{ type: 'text', text }] }], maxTokens: 256, ...extra };
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

describe('gemini settings', () => {
  it('requires an API key and the gemini provider name', () => {
    const base = { id: 'gem', provider: 'gemini', model: MODEL };
    expect(settingsSchema.safeParse({ ...base, apiKey: 'k' }).success).toBe(true);
    expect(settingsSchema.safeParse(base).success).toBe(false);
    expect(settingsSchema.safeParse({ ...base, apiKey: 'k', provider: 'openai-compatible' }).success).toBe(false);
    expect(settingsSchema.safeParse({ ...base, apiKey: 'k', unknownField: 1 }).success).toBe(false);
  });

  it('accepts every media kind and tools by default', () => {
    expect(gemini.defaultCapabilities).toEqual({ image: true, video: true, audio: true, pdf: true, tools: true });
  });
});

describe('gemini generate', () => {
  it('posts to models/{model}:generateContent with the key in x-goog-api-key', async () => {
    const { upstream, model } = await setup(replyJson('generate-text.json'));
    await model.generate(textRequest('How many r are in strawberry?'), signal());

    expect(upstream.requests).toHaveLength(1);
    const [request] = upstream.requests;
    expect(request!.method).toBe('POST');
    expect(request!.url).toBe(`/v1beta/models/${MODEL}:generateContent`);
    expect(request!.headers['x-goog-api-key']).toBe(API_KEY);
    expect(request!.headers.authorization).toBeUndefined();
    expect(request!.headers['content-type']).toBe('application/json');
  });

  it('returns the answer text without thought parts, with usage counting thinking as output', async () => {
    const { model } = await setup(replyJson('generate-text.json'));
    const result = await model.generate(textRequest('How many r are in strawberry?'), signal());

    expect(result).toEqual({
      text: 'There are **3** r\'s in "strawberry".',
      toolCalls: [],
      finishReason: 'stop',
      usage: { inputTokens: 9, outputTokens: 12 + 229 },
    });
  });

  it('returns function calls with generated ids and finishes with tool_call', async () => {
    const { model } = await setup(replyJson('generate-function-call.json'));
    const result = await model.generate(textRequest('Weather and time in SF?'), signal());

    expect(result.text).toBe('');
    expect(result.finishReason).toBe('tool_call');
    expect(result.toolCalls.map(({ name, arguments: args }) => ({ name, args }))).toEqual([
      { name: 'get_weather', args: { city: 'San Francisco', unit: 'celsius' } },
      { name: 'get_time', args: { timezone: 'America/Los_Angeles' } },
    ]);
    for (const call of result.toolCalls) expect(call.id).toMatch(CALL_ID);
    expect(result.toolCalls[0]!.id).not.toBe(result.toolCalls[1]!.id);
    expect(result.usage).toEqual({ inputTokens: 83, outputTokens: 31 + 178 });
  });

  it('maps MAX_TOKENS to length', async () => {
    const { model } = await setup(replyJson('generate-max-tokens.json'));
    const result = await model.generate(textRequest('Tell me a story'), signal());
    expect(result.finishReason).toBe('length');
    expect(result.text).toBe('Once upon a time, in a valley where the river');
  });

  it('rejects a blocked prompt (no candidates) as upstream_error', async () => {
    const { model } = await setup(replyJson('prompt-blocked.json'));
    const error = await rejection(model.generate(textRequest('something prohibited'), signal()));
    expect(error.type).toBe('upstream_error');
    expect(error.status).toBe(502);
    expect(error.retryable).toBe(false);
    expect(error.message).toContain('PROHIBITED_CONTENT');
  });

  it('rejects a 200 body that is not a GenerateContentResponse', async () => {
    const { model } = await setup((_request, response) => sendJson(response, 200, { candidates: 'nope' }));
    const error = await rejection(model.generate(textRequest('hi'), signal()));
    expect(error.type).toBe('upstream_error');
  });
});

describe('gemini request conversion', () => {
  const image = { type: 'media', kind: 'image', mediaType: 'image/png', data: 'iVBORw0KGgo=' } as const;
  const audio = { type: 'media', kind: 'audio', mediaType: 'audio/mpeg', data: 'SUQzBAAAAAAA' } as const;
  const weatherTool = {
    name: 'get_weather',
    description: 'Current weather for a city',
    parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'], additionalProperties: false },
  };

  it('converts system, media, tool calls, tool results, tools and sampling options', async () => {
    const { upstream, model } = await setup(replyJson('generate-text.json'));
    await model.generate(
      {
        messages: [
          { role: 'system', content: 'You are terse.' },
          { role: 'user', content: [{ type: 'text', text: 'What is in this picture, and what is the weather there?' }, image, audio] },
          {
            role: 'assistant',
            content: 'Checking.',
            toolCalls: [
              { id: 'call_a', name: 'get_weather', arguments: { city: 'Paris' } },
              { id: 'call_b', name: 'get_time', arguments: '{"timezone":"Europe/Paris"}' },
            ],
          },
          { role: 'tool', toolCallId: 'call_b', content: '14:05' },
          { role: 'tool', toolCallId: 'call_a', content: '{"temp":21}' },
          { role: 'user', content: [{ type: 'text', text: 'Thanks. Summarise.' }] },
        ],
        tools: [weatherTool, { name: 'get_time', parameters: { type: 'object', properties: { timezone: { type: 'string' } } } }],
        toolChoice: 'auto',
        maxTokens: 512,
        temperature: 0.2,
        topP: 0.9,
        topK: 40,
        seed: 7,
        stop: ['END'],
        frequencyPenalty: 0.1,
        presencePenalty: 0.3,
      },
      signal(),
    );

    expect(upstream.requests[0]!.body).toEqual({
      systemInstruction: { parts: [{ text: 'You are terse.' }] },
      contents: [
        {
          role: 'user',
          parts: [
            { text: 'What is in this picture, and what is the weather there?' },
            { inlineData: { mimeType: 'image/png', data: 'iVBORw0KGgo=' } },
            { inlineData: { mimeType: 'audio/mpeg', data: 'SUQzBAAAAAAA' } },
          ],
        },
        {
          role: 'model',
          parts: [
            { text: 'Checking.' },
            { functionCall: { name: 'get_weather', args: { city: 'Paris' } }, thoughtSignature: 'skip_thought_signature_validator' },
            { functionCall: { name: 'get_time', args: { timezone: 'Europe/Paris' } } },
          ],
        },
        {
          // Both tool results and the next user message share one user turn.
          role: 'user',
          parts: [
            { functionResponse: { name: 'get_time', response: { output: '14:05' } } },
            { functionResponse: { name: 'get_weather', response: { output: '{"temp":21}' } } },
            { text: 'Thanks. Summarise.' },
          ],
        },
      ],
      generationConfig: {
        maxOutputTokens: 512,
        temperature: 0.2,
        topP: 0.9,
        topK: 40,
        seed: 7,
        stopSequences: ['END'],
        frequencyPenalty: 0.1,
        presencePenalty: 0.3,
      },
      tools: [
        {
          functionDeclarations: [
            { name: 'get_weather', description: 'Current weather for a city', parametersJsonSchema: weatherTool.parameters },
            { name: 'get_time', parametersJsonSchema: { type: 'object', properties: { timezone: { type: 'string' } } } },
          ],
        },
      ],
      toolConfig: { functionCallingConfig: { mode: 'AUTO' } },
    });
  });

  it('sends only maxOutputTokens when no other sampling option is set, and no tools', async () => {
    const { upstream, model } = await setup(replyJson('generate-text.json'));
    await model.generate(textRequest('hi', { maxTokens: 64 }), signal());
    expect(upstream.requests[0]!.body).toEqual({
      contents: [{ role: 'user', parts: [{ text: 'hi' }] }],
      generationConfig: { maxOutputTokens: 64 },
    });
  });

  it.each([
    ['none', { mode: 'NONE' }],
    ['required', { mode: 'ANY' }],
    [{ name: 'get_weather' }, { mode: 'ANY', allowedFunctionNames: ['get_weather'] }],
  ] as const)('maps tool choice %j', async (toolChoice, functionCallingConfig) => {
    const { upstream, model } = await setup(replyJson('generate-text.json'));
    await model.generate(textRequest('weather?', { tools: [weatherTool], toolChoice }), signal());
    expect((upstream.requests[0]!.body as { toolConfig: unknown }).toolConfig).toEqual({ functionCallingConfig });
  });

  it('sends a continuation as the final model turn, without an extra instruction', async () => {
    const { upstream, model } = await setup(replyJson('generate-text.json'));
    await model.generate(
      {
        messages: [
          { role: 'user', content: [{ type: 'text', text: 'Write a haiku about rain.' }] },
          { role: 'assistant', content: 'Soft rain on the roof' },
        ],
        maxTokens: 64,
        continuation: true,
      },
      signal(),
    );
    const { contents } = upstream.requests[0]!.body as { contents: unknown[] };
    expect(contents).toEqual([
      { role: 'user', parts: [{ text: 'Write a haiku about rain.' }] },
      { role: 'model', parts: [{ text: 'Soft rain on the roof' }] },
    ]);
  });

  it('rejects a tool result whose call id no assistant message made, without calling upstream', async () => {
    const { upstream, model } = await setup(replyJson('generate-text.json'));
    const error = await rejection(
      model.generate(
        { messages: [textRequest('hi').messages[0]!, { role: 'tool', toolCallId: 'call_missing', content: 'x' }], maxTokens: 16 },
        signal(),
      ),
    );
    expect(error.type).toBe('validation_error');
    expect(error.param).toBe('messages.1.toolCallId');
    expect(upstream.requests).toHaveLength(0);
  });
});

describe('gemini stream', () => {
  it('posts to :streamGenerateContent?alt=sse and yields text deltas then finish with the last usage', async () => {
    const { upstream, model } = await setup(replyTranscript('stream-text.sse'));
    const parts = await collect(await model.stream(textRequest('How many r are in strawberry?'), signal()));

    expect(upstream.requests[0]!.url).toBe(`/v1beta/models/${MODEL}:streamGenerateContent?alt=sse`);
    expect(upstream.requests[0]!.headers['x-goog-api-key']).toBe(API_KEY);
    expect(upstream.requests[0]!.headers.accept).toBe('text/event-stream');
    expect(parts).toEqual([
      { type: 'text-delta', text: "There are **3** r's in" },
      { type: 'text-delta', text: ' "strawberry".\n\nHere is the breakdown: st**r**awbe**rr**y.' },
      { type: 'finish', finishReason: 'stop', usage: { inputTokens: 9, outputTokens: 29 + 256 } },
    ]);
  });

  it('yields a function call as a tool-call part and finishes with tool_call', async () => {
    const { model } = await setup(replyTranscript('stream-function-call.sse'));
    const parts = await collect(await model.stream(textRequest('Weather in SF?'), signal()));

    expect(parts).toHaveLength(3);
    expect(parts[0]).toEqual({ type: 'text-delta', text: 'Let me check.' });
    const toolCall = parts[1];
    expect(toolCall?.type === 'tool-call' && toolCall.toolCall).toMatchObject({
      name: 'get_weather',
      arguments: { city: 'San Francisco' },
    });
    expect(toolCall?.type === 'tool-call' && toolCall.toolCall.id).toMatch(CALL_ID);
    expect(parts[2]).toEqual({ type: 'finish', finishReason: 'tool_call', usage: { inputTokens: 83, outputTokens: 21 + 178 } });
  });

  it('ends with an error part when the stream closes without a finishReason', async () => {
    const { model } = await setup(replyTranscript('stream-truncated.sse'));
    const parts = await collect(await model.stream(textRequest('Tell me a story'), signal()));

    expect(parts.slice(0, 2).map((part) => part.type)).toEqual(['text-delta', 'text-delta']);
    expect(parts).toHaveLength(3);
    const last = parts[2];
    expect(last?.type).toBe('error');
    expect(last?.type === 'error' && last.error.type).toBe('upstream_error');
  });

  it('turns an error event into an error part and stops there', async () => {
    const { model } = await setup(replyTranscript('stream-error.sse'));
    const parts = await collect(await model.stream(textRequest('Capital of France?'), signal()));

    expect(parts.map((part) => part.type)).toEqual(['text-delta', 'error']);
    const last = parts[1];
    expect(last?.type === 'error' && last.error.type).toBe('upstream_error');
    // Read from the error event itself, not reported as a cut-off stream: the upstream's words are kept.
    const errorEvent = fixtureText('stream-error.sse')
      .split('\r\n\r\n')[1]!
      .replace(/^data: /, '');
    const upstreamMessage = (JSON.parse(errorEvent) as { error: { message: string } }).error.message;
    expect(last?.type === 'error' && last.error.message).toContain(upstreamMessage);
  });

  it('turns a blocked prompt into a single error part', async () => {
    const { model } = await setup(replyTranscript('stream-blocked.sse'));
    const parts = await collect(await model.stream(textRequest('something prohibited'), signal()));

    expect(parts).toHaveLength(1);
    const only = parts[0];
    expect(only?.type === 'error' && only.error.type).toBe('upstream_error');
    expect(only?.type === 'error' && only.error.message).toContain('PROHIBITED_CONTENT');
  });

  it('rejects before streaming when the upstream answers with an error status', async () => {
    const { model } = await setup(replyJson('error-400.json', 400), { maxRetries: 0 });
    const error = await rejection(model.stream(textRequest('hi'), signal()));
    expect(error.type).toBe('upstream_error');
    expect(error.status).toBe(502);
  });
});

describe('gemini upstream errors', () => {
  it('maps 429 RESOURCE_EXHAUSTED to rate_limit_error', async () => {
    const { upstream, model } = await setup(replyJson('error-429.json', 429), { maxRetries: 0 });
    const error = await rejection(model.generate(textRequest('hi'), signal()));
    expect(error.type).toBe('rate_limit_error');
    expect(error.status).toBe(429);
    expect(error.retryable).toBe(true);
    expect(upstream.requests).toHaveLength(1);
  });

  it('maps a 400 Google error body to upstream_error and keeps its message', async () => {
    const { upstream, model } = await setup(replyJson('error-400.json', 400));
    const error = await rejection(model.generate(textRequest('hi'), signal()));
    expect(error.type).toBe('upstream_error');
    expect(error.status).toBe(502);
    expect(error.retryable).toBe(false);
    // The upstream's own words, taken from the fixture rather than restated here.
    const upstreamMessage = (fixtureJson('error-400.json') as { error: { message: string } }).error.message;
    expect(error.message).toContain(upstreamMessage);
    expect(upstream.requests).toHaveLength(1); // a 400 is not retried
  });

  it('retries a 503 and returns the answer that follows', async () => {
    let calls = 0;
    const { upstream, model } = await setup((_request, response) => {
      calls += 1;
      if (calls === 1) sendJson(response, 503, fixtureJson('error-503.json'), { 'retry-after': '0' });
      else sendJson(response, 200, fixtureJson('generate-text.json'));
    });
    const result = await model.generate(textRequest('hi'), signal());
    expect(upstream.requests).toHaveLength(2);
    expect(result.finishReason).toBe('stop');
    expect(upstream.requests[1]!.body).toEqual(upstream.requests[0]!.body);
  });

  it('retries a 503 before a stream starts', async () => {
    let calls = 0;
    const { upstream, model } = await setup((_request, response) => {
      calls += 1;
      if (calls === 1) return sendJson(response, 503, fixtureJson('error-503.json'), { 'retry-after': '0' });
      return sendTranscript(response, fixtureText('stream-text.sse'));
    });
    const parts = await collect(await model.stream(textRequest('hi'), signal()));
    expect(upstream.requests).toHaveLength(2);
    expect(parts.at(-1)?.type).toBe('finish');
  });

  it('gives up with upstream_error once 503 retries are spent', async () => {
    const { upstream, model } = await setup(replyJson('error-503.json', 503), { maxRetries: 1 });
    const error = await rejection(model.generate(textRequest('hi'), signal()));
    expect(error.type).toBe('upstream_error');
    expect(error.retryable).toBe(true);
    expect(upstream.requests).toHaveLength(2);
  });
});
