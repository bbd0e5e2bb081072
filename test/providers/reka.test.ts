import { readFileSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { isOcularError, type OcularError } from '../../src/spec/errors.ts';
import type { PromptMessage } from '../../src/spec/messages.ts';
import type { LanguageModel, ProviderRequest } from '../../src/spec/provider.ts';
import type { StreamPart } from '../../src/spec/stream-parts.ts';
import { convertMessages, convertRequest } from '../../src/providers/reka/convert-request.ts';
import { reka, settingsSchema } from '../../src/providers/reka/index.ts';
import { sendEvents, sendJson, startFakeUpstream, type FakeUpstream, type UpstreamHandler } from '../helpers/fake-upstream.ts';

function fixture(name: string): unknown {
  return JSON.parse(readFileSync(new URL(`../fixtures/reka/${name}`, import.meta.url), 'utf8'));
}

const streamText = fixture('stream-text.json') as unknown[];
const streamToolCall = fixture('stream-tool-call.json') as unknown[];

const PNG_BASE64 = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==';

let upstream: FakeUpstream | undefined;
let model: LanguageModel | undefined;

afterEach(async () => {
  await model?.close?.();
  await upstream?.close();
  model = undefined;
  upstream = undefined;
});

async function setup(handler: UpstreamHandler, maxRetries = 0): Promise<{ upstream: FakeUpstream; model: LanguageModel }> {
  upstream = await startFakeUpstream(handler);
  const settings = settingsSchema.parse({
    id: 'reka-flash',
    provider: 'reka',
    model: 'reka-flash',
    apiKey: 'test-key',
    baseUrl: `${upstream.url}/v1`,
    maxRetries,
  });
  model = reka.create(settings);
  return { upstream, model };
}

function request(messages: PromptMessage[], extra: Partial<ProviderRequest> = {}): ProviderRequest {
  return { messages, maxTokens: 256, ...extra };
}

const hello: PromptMessage[] = [{ role: 'user', content: [{ type: 'text', text: 'What is the fifth prime number?' }] }];

async function collect(stream: ReadableStream<StreamPart>): Promise<StreamPart[]> {
  const parts: StreamPart[] = [];
  const reader = stream.getReader();
  for (let next = await reader.read(); !next.done; next = await reader.read()) parts.push(next.value);
  return parts;
}

function textOf(parts: StreamPart[]): string {
  return parts.map((part) => (part.type === 'text-delta' ? part.text : '')).join('');
}

async function rejection(promise: Promise<unknown>): Promise<OcularError> {
  const error: unknown = await promise.then(
    () => undefined,
    (reason: unknown) => reason,
  );
  if (!isOcularError(error)) throw new Error(`expected an OcularError, got ${String(error)}`);
  return error;
}

/** Writes a raw SSE body in small slices, so events and multi-byte characters straddle TCP writes. */
async function sendSplit(response: ServerResponse, body: string, sliceBytes: number): Promise<void> {
  response.writeHead(200, { 'content-type': 'text/event-stream' });
  const bytes = Buffer.from(body, 'utf8');
  for (let offset = 0; offset < bytes.length; offset += sliceBytes) {
    response.write(bytes.subarray(offset, offset + sliceBytes));
    await new Promise((resolve) => setImmediate(resolve));
  }
  response.end();
}

describe('reka settings', () => {
  it('requires an API key and defaults the base URL to Reka v1', () => {
    expect(settingsSchema.safeParse({ id: 'r', provider: 'reka', model: 'reka-flash' }).success).toBe(false);
    const parsed = settingsSchema.parse({ id: 'r', provider: 'reka', model: 'reka-flash', apiKey: 'k' });
    expect(parsed.baseUrl).toBe('https://api.reka.ai/v1');
    expect(reka.defaultCapabilities).toEqual({ image: true, video: true, audio: true, pdf: true, tools: true });
  });
});

describe('reka request conversion', () => {
  it('posts to /chat with X-Api-Key and the converted body', async () => {
    const { upstream, model } = await setup((_, response) => sendJson(response, 200, fixture('chat-text.json')));
    await model.generate(
      request(
        [
          { role: 'system', content: 'You are terse.' },
          {
            role: 'user',
            content: [
              { type: 'media', kind: 'image', mediaType: 'image/png', data: PNG_BASE64 },
              { type: 'text', text: 'What is this?' },
            ],
          },
        ],
        { temperature: 0.2, topP: 0.9, topK: 40, seed: 7, stop: ['\n\n'], frequencyPenalty: 0.1, presencePenalty: 0.3 },
      ),
      AbortSignal.timeout(5000),
    );
    expect(upstream.requests).toHaveLength(1);
    const recorded = upstream.requests[0]!;
    expect(recorded.method).toBe('POST');
    expect(recorded.url).toBe('/v1/chat');
    expect(recorded.headers['x-api-key']).toBe('test-key');
    expect(recorded.headers.authorization).toBeUndefined();
    expect(recorded.body).toEqual({
      model: 'reka-flash',
      messages: [
        {
          role: 'user',
          content: [
            { type: 'text', text: 'You are terse.' },
            { type: 'image_url', image_url: `data:image/png;base64,${PNG_BASE64}` },
            { type: 'text', text: 'What is this?' },
          ],
        },
      ],
      max_tokens: 256,
      stream: false,
      temperature: 0.2,
      top_p: 0.9,
      top_k: 40,
      seed: 7,
      stop: ['\n\n'],
      frequency_penalty: 0.1,
      presence_penalty: 0.3,
    });
  });

  it('folds system messages into the first user turn and sends text-only turns as strings', () => {
    const messages = convertMessages([
      { role: 'system', content: 'Be brief.' },
      { role: 'system', content: 'Answer in English.' },
      {
        role: 'user',
        content: [
          { type: 'text', text: 'Hi' },
          { type: 'text', text: 'there' },
        ],
      },
      { role: 'assistant', content: 'Hello!' },
      { role: 'user', content: [{ type: 'text', text: 'Bye' }] },
    ]);
    expect(messages).toEqual([
      { role: 'user', content: 'Be brief.\n\nAnswer in English.\n\nHi\nthere' },
      { role: 'assistant', content: 'Hello!' },
      { role: 'user', content: 'Bye' },
    ]);
    expect(messages.some((message) => (message.role as string) === 'system')).toBe(false);
  });

  it('keeps system text when there is no user turn', () => {
    expect(
      convertMessages([
        { role: 'system', content: 'Rules' },
        { role: 'assistant', content: 'Sure' },
      ]),
    ).toEqual([
      { role: 'user', content: 'Rules' },
      { role: 'assistant', content: 'Sure' },
    ]);
  });

  it('sends video, audio and pdf as flat data URLs', () => {
    const [message] = convertMessages([
      {
        role: 'user',
        content: [
          { type: 'media', kind: 'video', mediaType: 'video/mp4', data: 'AAAA' },
          { type: 'media', kind: 'audio', mediaType: 'audio/mpeg', data: 'BBBB' },
          { type: 'media', kind: 'pdf', mediaType: 'application/pdf', data: 'CCCC' },
        ],
      },
    ]);
    expect(message).toEqual({
      role: 'user',
      content: [
        { type: 'video_url', video_url: 'data:video/mp4;base64,AAAA' },
        { type: 'audio_url', audio_url: 'data:audio/mpeg;base64,BBBB' },
        { type: 'pdf_url', pdf_url: 'data:application/pdf;base64,CCCC' },
      ],
    });
  });

  it('converts tools, tool calls and merges consecutive tool results into one tool_output message', () => {
    const body = convertRequest(
      request(
        [
          { role: 'user', content: [{ type: 'text', text: 'Is AX-2941 in stock, and what is similar?' }] },
          {
            role: 'assistant',
            content: '',
            toolCalls: [
              { id: 'call_1', name: 'get_product_availability', arguments: { product_id: 'AX-2941' } },
              { id: 'call_2', name: 'get_similar_products', arguments: '{"product_id":"AX-2941","max_results":2}' },
            ],
          },
          { role: 'tool', toolCallId: 'call_1', content: '{"in_stock":true}' },
          { role: 'tool', toolCallId: 'call_2', content: '["AX-2942","AX-2950"]' },
        ],
        {
          tools: [
            {
              name: 'get_product_availability',
              description: 'Whether a product is in stock.',
              parameters: { type: 'object', properties: { product_id: { type: 'string' } }, required: ['product_id'] },
            },
            { name: 'get_similar_products', parameters: { type: 'object', properties: {} } },
          ],
          toolChoice: 'auto',
        },
      ),
      { upstreamModel: 'reka-flash', stream: false },
    );
    expect(body.tools).toEqual([
      {
        name: 'get_product_availability',
        description: 'Whether a product is in stock.',
        parameters: { type: 'object', properties: { product_id: { type: 'string' } }, required: ['product_id'] },
      },
      { name: 'get_similar_products', parameters: { type: 'object', properties: {} } },
    ]);
    expect(body.tool_choice).toBe('auto');
    expect(body.messages).toEqual([
      { role: 'user', content: 'Is AX-2941 in stock, and what is similar?' },
      {
        role: 'assistant',
        tool_calls: [
          { id: 'call_1', name: 'get_product_availability', parameters: { product_id: 'AX-2941' } },
          { id: 'call_2', name: 'get_similar_products', parameters: { product_id: 'AX-2941', max_results: 2 } },
        ],
      },
      {
        role: 'tool_output',
        content: [
          { tool_call_id: 'call_1', output: '{"in_stock":true}' },
          { tool_call_id: 'call_2', output: '["AX-2942","AX-2950"]' },
        ],
      },
    ]);
  });

  it.each([
    ['required', 'tool'],
    [{ name: 'get_product_availability' }, 'tool'],
    ['none', 'none'],
    ['auto', 'auto'],
  ] as const)('maps tool choice %j to %s', (toolChoice, expected) => {
    const body = convertRequest(request(hello, { tools: [{ name: 'lookup', parameters: { type: 'object' } }], toolChoice }), {
      upstreamModel: 'reka-flash',
      stream: false,
    });
    expect(body.tool_choice).toBe(expected);
  });

  it('omits tools and tool_choice when no tools are given', () => {
    const body = convertRequest(request(hello, { toolChoice: 'required' }), { upstreamModel: 'reka-flash', stream: true });
    expect(body).not.toHaveProperty('tools');
    expect(body).not.toHaveProperty('tool_choice');
    expect(body.stream).toBe(true);
  });

  it('continues a final assistant message natively, without an extra instruction', async () => {
    const { upstream, model } = await setup((_, response) => sendJson(response, 200, fixture('chat-text.json')));
    await model.generate(
      request([...hello, { role: 'assistant', content: '{"answer": ' }], { continuation: true }),
      AbortSignal.timeout(5000),
    );
    const body = upstream.requests[0]!.body as { messages: unknown[] };
    expect(body.messages).toEqual([
      { role: 'user', content: 'What is the fifth prime number?' },
      { role: 'assistant', content: '{"answer": ' },
    ]);
  });
});

describe('reka generate', () => {
  it('returns text, finish reason and usage', async () => {
    const { model } = await setup((_, response) => sendJson(response, 200, fixture('chat-text.json')));
    const result = await model.generate(request(hello), AbortSignal.timeout(5000));
    expect(result).toEqual({
      text: 'The fifth prime number is 11. The first five primes are 2, 3, 5, 7 and 11.',
      toolCalls: [],
      finishReason: 'stop',
      usage: { inputTokens: 16, outputTokens: 27 },
    });
  });

  it('returns tool calls with their parameters as arguments', async () => {
    const { model } = await setup((_, response) => sendJson(response, 200, fixture('chat-tool-call.json')));
    const result = await model.generate(
      request(hello, { tools: [{ name: 'get_product_availability', parameters: { type: 'object' } }] }),
      AbortSignal.timeout(5000),
    );
    expect(result).toEqual({
      text: '',
      toolCalls: [{ id: 'a1b2c3d4-e5f6-4789-9abc-def012345678', name: 'get_product_availability', arguments: { product_id: 'AX-2941' } }],
      finishReason: 'tool_call',
      usage: { inputTokens: 212, outputTokens: 31 },
    });
  });

  it('rejects a response without responses as upstream_error', async () => {
    const { model } = await setup((_, response) => sendJson(response, 200, { id: 'x', model: 'reka-flash', usage: {} }));
    const error = await rejection(model.generate(request(hello), AbortSignal.timeout(5000)));
    expect(error.type).toBe('upstream_error');
    expect(error.status).toBe(502);
  });
});

describe('reka stream', () => {
  it('turns cumulative content into deltas and ends with finish and usage', async () => {
    const { upstream, model } = await setup((_, response) =>
      sendEvents(
        response,
        streamText.map((data) => ({ data })),
      ),
    );
    const parts = await collect(await model.stream(request(hello), AbortSignal.timeout(5000)));
    expect(parts).toEqual([
      { type: 'text-delta', text: 'The' },
      { type: 'text-delta', text: ' fifth prime' },
      { type: 'text-delta', text: ' number is 11.' },
      { type: 'finish', finishReason: 'stop', usage: { inputTokens: 16, outputTokens: 9 } },
    ]);
    expect((upstream.requests[0]!.body as { stream: unknown }).stream).toBe(true);
    expect(upstream.requests[0]!.headers['x-api-key']).toBe('test-key');
  });

  it('emits only the part after the common prefix when the upstream rewrites its text', async () => {
    const chunk = (content: string, finishReason: string | null) => ({
      data: { id: 's', model: 'reka-flash', responses: [{ chunk: { role: 'assistant', content }, finish_reason: finishReason }] },
    });
    const { model } = await setup((_, response) =>
      sendEvents(response, [chunk('Hello wor', null), chunk('Hello there', null), chunk('Hello there!', 'length')]),
    );
    const parts = await collect(await model.stream(request(hello), AbortSignal.timeout(5000)));
    expect(parts).toEqual([
      { type: 'text-delta', text: 'Hello wor' },
      { type: 'text-delta', text: 'there' },
      { type: 'text-delta', text: '!' },
      { type: 'finish', finishReason: 'length', usage: { inputTokens: 0, outputTokens: 0 } },
    ]);
  });

  it('decodes events and multi-byte text split across arbitrary writes', async () => {
    const contents = ['Prime: ', 'Prime: 11 ✓', 'Prime: 11 ✓ 😀'];
    const body = contents
      .map(
        (content, index) =>
          `data: ${JSON.stringify({
            id: 's',
            model: 'reka-flash',
            responses: [{ chunk: { role: 'assistant', content }, finish_reason: index === contents.length - 1 ? 'stop' : null }],
            usage: { input_tokens: 5, output_tokens: index + 1 },
          })}\n\n`,
      )
      .join('');
    const { model } = await setup((_, response) => sendSplit(response, body, 5));
    const parts = await collect(await model.stream(request(hello), AbortSignal.timeout(5000)));
    expect(textOf(parts)).toBe('Prime: 11 ✓ 😀');
    expect(parts.at(-1)).toEqual({ type: 'finish', finishReason: 'stop', usage: { inputTokens: 5, outputTokens: 3 } });
  });

  it('emits streamed tool calls before finish', async () => {
    const { model } = await setup((_, response) =>
      sendEvents(
        response,
        streamToolCall.map((data) => ({ data })),
      ),
    );
    const parts = await collect(await model.stream(request(hello), AbortSignal.timeout(5000)));
    expect(parts).toEqual([
      {
        type: 'tool-call',
        toolCall: { id: 'f0e1d2c3-b4a5-4968-8776-655443322110', name: 'get_product_availability', arguments: { product_id: 'AX-2941' } },
      },
      { type: 'finish', finishReason: 'tool_call', usage: { inputTokens: 212, outputTokens: 31 } },
    ]);
  });

  it('ends with an error part when the stream is cut before a finish_reason', async () => {
    const { model } = await setup((_, response) =>
      sendEvents(
        response,
        streamText.slice(0, 2).map((data) => ({ data })),
      ),
    );
    const parts = await collect(await model.stream(request(hello), AbortSignal.timeout(5000)));
    expect(textOf(parts)).toBe('The fifth prime');
    const last = parts.at(-1);
    expect(last?.type).toBe('error');
    expect(last?.type === 'error' ? last.error.type : undefined).toBe('upstream_error');
    expect(parts.filter((part) => part.type === 'finish')).toHaveLength(0);
  });

  it('ends with an error part when the upstream reports a failure mid-stream', async () => {
    const { model } = await setup((_, response) =>
      sendEvents(response, [{ data: streamText[0] }, { data: { detail: 'Internal inference error' } }, { data: streamText[3] }]),
    );
    const parts = await collect(await model.stream(request(hello), AbortSignal.timeout(5000)));
    expect(parts.map((part) => part.type)).toEqual(['text-delta', 'error']);
  });

  it('rejects before streaming when the upstream refuses the request', async () => {
    const { model } = await setup((_, response) => sendJson(response, 429, fixture('error-429.json')));
    const error = await rejection(model.stream(request(hello), AbortSignal.timeout(5000)));
    expect(error.type).toBe('rate_limit_error');
    expect(error.status).toBe(429);
  });
});

describe('reka errors', () => {
  it('maps 429 to rate_limit_error and keeps Retry-After', async () => {
    const { upstream, model } = await setup((_, response) => sendJson(response, 429, fixture('error-429.json'), { 'retry-after': '12' }));
    const error = await rejection(model.generate(request(hello), AbortSignal.timeout(5000)));
    expect(error.type).toBe('rate_limit_error');
    expect(error.status).toBe(429);
    expect(error.retryAfterSeconds).toBe(12);
    expect(upstream.requests).toHaveLength(1);
  });

  it('maps 400 to upstream_error, keeping the upstream message, without retrying', async () => {
    const body = fixture('error-400.json') as { detail: string };
    const { upstream, model } = await setup((_, response) => sendJson(response, 400, body), 2);
    const error = await rejection(model.generate(request(hello), AbortSignal.timeout(5000)));
    expect(error.type).toBe('upstream_error');
    expect(error.status).toBe(502);
    expect(error.retryable).toBe(false);
    expect(error.message).toContain(body.detail);
    expect(upstream.requests).toHaveLength(1);
  });

  it('retries a 500 and returns the answer that follows', async () => {
    let calls = 0;
    const { upstream, model } = await setup((_, response) => {
      calls += 1;
      if (calls === 1) sendJson(response, 500, { detail: 'Internal Server Error' }, { 'retry-after': '0' });
      else sendJson(response, 200, fixture('chat-text.json'));
    }, 2);
    const result = await model.generate(request(hello), AbortSignal.timeout(5000));
    expect(result.finishReason).toBe('stop');
    expect(result.text).toContain('11');
    expect(upstream.requests).toHaveLength(2);
  });
});
