import { connect } from 'node:net';
import sharp from 'sharp';
import { Client } from 'undici';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { sendJson } from '../helpers/fake-upstream.ts';
import { readSseData, startOcular, type TestOcular } from '../helpers/ocular.ts';
import { completion, startOpenAiUpstream, streamCompletion } from '../helpers/openai-upstream.ts';

const PNG = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==';

let upstream: Awaited<ReturnType<typeof startOpenAiUpstream>>;
let ocular: TestOcular;

beforeAll(async () => {
  upstream = await startOpenAiUpstream();
  ocular = await startOcular({
    defaultModel: 'flash',
    models: [
      { id: 'flash', provider: 'openai-compatible', baseUrl: `${upstream.url}/v1`, model: 'upstream-model', maxRetries: 2 },
      { id: 'vllm', provider: 'openai-compatible', baseUrl: `${upstream.url}/v1`, model: 'upstream-model', continueFinalMessage: true },
      {
        id: 'text-only',
        provider: 'openai-compatible',
        baseUrl: `${upstream.url}/v1`,
        model: 'm',
        capabilities: { image: false, tools: false },
      },
      { id: 'down', provider: 'openai-compatible', baseUrl: 'http://127.0.0.1:9/v1', model: 'm', maxRetries: 0 },
    ],
    aliases: { 'reka-flash': 'flash' },
    limits: { maxMediaPerTurn: 2, maxRequestBytes: 200_000, requestBodyTimeoutMs: 400 },
  });
});

afterAll(async () => {
  await ocular.close();
  await upstream.close();
});

beforeEach(() => {
  upstream.requests.length = 0;
});

const lastUpstreamBody = () => upstream.requests.at(-1)!.body as Record<string, any>;

/** Makes the upstream stream 200 words over 4 s; resolves when its response closes (finished or cancelled). */
function streamSlowlyUntilClosed(): Promise<void> {
  return new Promise((resolve) => {
    upstream.behave((_request, response) => {
      response.on('close', () => resolve());
      return streamCompletion(
        response,
        Array.from({ length: 200 }, (_, index) => `w${index} `),
        { delayMs: 20, splitEvery: 64 },
      );
    });
  });
}

/** Writes raw bytes to Ocular and returns all it answers, once it closes the connection. */
function sendUntilClosed(request: string): Promise<string> {
  const { hostname, port } = new URL(ocular.url);
  const socket = connect(Number(port), hostname);
  socket.on('error', () => undefined);
  const answer: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => answer.push(chunk));
  socket.write(request);
  return new Promise((resolve) => socket.once('close', () => resolve(Buffer.concat(answer).toString('utf8'))));
}

describe('GET /v1/models', () => {
  it('lists every model and alias as [{id}]', async () => {
    const response = await ocular.get('/v1/models');
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual([{ id: 'flash' }, { id: 'vllm' }, { id: 'text-only' }, { id: 'down' }, { id: 'reka-flash' }]);
  });
});

describe('POST /v1/chat', () => {
  it('answers a text chat in Reka format and forwards sampling options', async () => {
    upstream.behave((_request, response) => sendJson(response, 200, completion('Paris.', { usage: [20, 3] })));
    const response = await ocular.post('/v1/chat', {
      model: 'reka-flash',
      messages: [{ role: 'user', content: 'Capital of France?' }],
      temperature: 0.2,
      top_p: 0.9,
      top_k: 40,
      seed: 7,
      stop: ['\n\n'],
      frequency_penalty: 0.1,
      presence_penalty: 0.2,
    });
    expect(response.status).toBe(200);
    expect(response.headers.get('x-request-id')).toBeTruthy();
    const body = await response.json();
    expect(body).toMatchObject({
      model: 'reka-flash',
      responses: [{ finish_reason: 'stop', message: { role: 'assistant', content: 'Paris.' } }],
      usage: { input_tokens: 20, output_tokens: 3 },
    });
    expect(typeof body.id).toBe('string');
    expect(lastUpstreamBody()).toMatchObject({
      model: 'upstream-model',
      max_tokens: 1024,
      temperature: 0.2,
      top_p: 0.9,
      top_k: 40,
      seed: 7,
      stop: ['\n\n'],
      frequency_penalty: 0.1,
      presence_penalty: 0.2,
      messages: [{ role: 'user', content: 'Capital of France?' }],
    });
  });

  it('uses the default model when none is named', async () => {
    const body = await (await ocular.post('/v1/chat', { messages: [{ role: 'user', content: 'hi' }] })).json();
    expect(body.model).toBe('flash');
  });

  it('sends inline images upstream as base64 data URLs, in both URL forms', async () => {
    const response = await ocular.post('/v1/chat', {
      messages: [
        {
          role: 'user',
          content: [
            { type: 'image_url', image_url: `data:image/png;base64,${PNG}` },
            { type: 'image_url', image_url: { url: `data:image/png;base64,${PNG}` } },
            { type: 'text', text: 'What is this?' },
          ],
        },
      ],
    });
    expect(response.status).toBe(200);
    const content = lastUpstreamBody().messages[0].content;
    expect(content).toHaveLength(3);
    expect(content[2]).toEqual({ type: 'text', text: 'What is this?' });
    for (const part of content.slice(0, 2)) {
      expect(part.type).toBe('image_url');
      // Re-encoded by Ocular (orientation, size, metadata stripped), still the same 1x1 image.
      const url: string = part.image_url.url;
      expect(url).toMatch(/^data:image\/(jpeg|png);base64,/);
      const metadata = await sharp(Buffer.from(url.slice(url.indexOf(',') + 1), 'base64')).metadata();
      expect([metadata.width, metadata.height]).toEqual([1, 1]);
    }
  });

  it('round-trips tools, tool calls and tool outputs', async () => {
    upstream.behave((_request, response) =>
      sendJson(
        response,
        200,
        completion(null, {
          finishReason: 'tool_calls',
          toolCalls: [{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }],
        }),
      ),
    );
    const tools = [
      { name: 'get_weather', description: 'Weather for a city', parameters: { type: 'object', properties: { city: { type: 'string' } } } },
    ];
    const first = await (
      await ocular.post('/v1/chat', { messages: [{ role: 'user', content: 'Weather in Paris?' }], tools, tool_choice: 'tool' })
    ).json();
    expect(first.responses[0]).toMatchObject({
      finish_reason: 'tool_call',
      message: { tool_calls: [{ id: 'call_1', name: 'get_weather', parameters: { city: 'Paris' } }] },
    });
    expect(lastUpstreamBody()).toMatchObject({
      tools: [{ type: 'function', function: { name: 'get_weather', parameters: tools[0]!.parameters } }],
      tool_choice: 'required',
    });

    upstream.behave((_request, response) => sendJson(response, 200, completion('It is sunny.')));
    const second = await ocular.post('/v1/chat', {
      tools,
      messages: [
        { role: 'user', content: 'Weather in Paris?' },
        { role: 'assistant', content: null, tool_calls: first.responses[0].message.tool_calls },
        { role: 'tool_output', content: [{ tool_call_id: 'call_1', output: { temperature: 21, sky: 'clear' } }] },
      ],
    });
    expect(second.status).toBe(200);
    expect(lastUpstreamBody().messages.slice(1)).toEqual([
      {
        role: 'assistant',
        content: null,
        tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }],
      },
      { role: 'tool', tool_call_id: 'call_1', content: '{"temperature":21,"sky":"clear"}' },
    ]);
  });

  it('continues a final assistant message natively where the upstream can (continue_final_message)', async () => {
    upstream.behave((_request, response) => sendJson(response, 200, completion(' upon a time')));
    const body = await (
      await ocular.post('/v1/chat', {
        model: 'vllm',
        messages: [
          { role: 'user', content: 'Tell a story' },
          { role: 'assistant', content: 'Once' },
        ],
      })
    ).json();
    expect(body.responses[0].message.content).toBe(' upon a time');
    expect(lastUpstreamBody()).toMatchObject({ continue_final_message: true, add_generation_prompt: false });
    expect(lastUpstreamBody().messages.at(-1)).toEqual({ role: 'assistant', content: 'Once' });
  });

  it('falls back to an instruction for upstreams without native continuation', async () => {
    await ocular.post('/v1/chat', {
      messages: [
        { role: 'user', content: 'Tell a story' },
        { role: 'assistant', content: 'Once' },
      ],
    });
    const sent = lastUpstreamBody();
    expect(sent.continue_final_message).toBeUndefined();
    expect(sent.messages.at(-2)).toEqual({ role: 'assistant', content: 'Once' });
    expect(sent.messages.at(-1).role).toBe('user');
  });

  it('cuts the answer at a stop string even when the upstream ignores stop', async () => {
    upstream.behave((_request, response) => sendJson(response, 200, completion('one two STOP three')));
    const body = await (await ocular.post('/v1/chat', { messages: [{ role: 'user', content: 'count' }], stop: ['STOP'] })).json();
    expect(body.responses[0]).toMatchObject({ finish_reason: 'stop', message: { content: 'one two ' } });
  });

  it('reports finish_reason length when max_tokens is reached', async () => {
    upstream.behave((_request, response) => sendJson(response, 200, completion('one two', { finishReason: 'length' })));
    const body = await (await ocular.post('/v1/chat', { messages: [{ role: 'user', content: 'count' }], max_tokens: 2 })).json();
    expect(body.responses[0].finish_reason).toBe('length');
    expect(lastUpstreamBody().max_tokens).toBe(2);
  });
});

describe('POST /v1/chat streaming', () => {
  it('streams cumulative content, parsing upstream bytes split anywhere, and ends with finish_reason and usage', async () => {
    const deltas = ['Hel', 'lo, ', 'wörld ', '🌍', '!'];
    upstream.behave((_request, response) => streamCompletion(response, deltas, { splitEvery: 3, usage: [9, 5] }));
    const response = await ocular.post('/v1/chat', { messages: [{ role: 'user', content: 'greet' }], stream: true });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toContain('text/event-stream');
    const events = (await readSseData(response)).map((data) => JSON.parse(data));
    const contents = events.map((event) => event.responses[0].chunk.content);
    expect(contents.at(-1)).toBe('Hello, wörld 🌍!');
    // Cumulative: each event's content extends the previous one.
    contents.slice(1).forEach((content, index) => expect(content.startsWith(contents[index])).toBe(true));
    expect(events.slice(0, -1).every((event) => event.responses[0].finish_reason === null)).toBe(true);
    expect(events.at(-1)).toMatchObject({
      model: 'flash',
      responses: [{ finish_reason: 'stop' }],
      usage: { input_tokens: 9, output_tokens: 5 },
    });
    expect(lastUpstreamBody()).toMatchObject({ stream: true, stream_options: { include_usage: true } });
  });

  it('holds back a stop string split across deltas and never returns it', async () => {
    upstream.behave((_request, response) => streamCompletion(response, ['alpha be', 'ta EN', 'D gamma']));
    const response = await ocular.post('/v1/chat', { messages: [{ role: 'user', content: 'x' }], stream: true, stop: ['END'] });
    const events = (await readSseData(response)).map((data) => JSON.parse(data));
    expect(events.at(-1).responses[0]).toMatchObject({ finish_reason: 'stop', chunk: { content: 'alpha beta ' } });
    expect(events.every((event) => !event.responses[0].chunk.content.includes('END'))).toBe(true);
  });

  it('ends the stream with an error event when the upstream is cut off mid-answer', async () => {
    upstream.behave((_request, response) => streamCompletion(response, ['partial'], { omitEnd: true }));
    const response = await ocular.post('/v1/chat', { messages: [{ role: 'user', content: 'x' }], stream: true });
    const events = (await readSseData(response)).map((data) => JSON.parse(data));
    expect(events.at(-1)).toMatchObject({ error: { type: 'upstream_error' } });
  });

  it('aborts the upstream request when the client disconnects', async () => {
    const closed = streamSlowlyUntilClosed();
    const controller = new AbortController();
    const response = await ocular.post('/v1/chat', { messages: [{ role: 'user', content: 'long' }], stream: true }, {}, controller.signal);
    const reader = response.body!.getReader();
    await reader.read();
    controller.abort();
    const started = Date.now();
    await closed;
    expect(Date.now() - started).toBeLessThan(2_000);
  });
});

describe('one kept-alive connection carrying many requests', () => {
  it('piles up no abort listeners, and a disconnect still cancels the upstream call in flight', async () => {
    const warnings: Error[] = [];
    const onWarning = (warning: Error): void => void warnings.push(warning);
    process.on('warning', onWarning);
    const { hostname, port } = new URL(ocular.url);
    const connection = new Client(`http://${hostname}:${port}`, { pipelining: 1 });
    try {
      const chat = async (stream: boolean): Promise<string> => {
        const response = await connection.request({
          path: '/v1/chat',
          method: 'POST',
          headers: { 'content-type': 'application/json', 'x-api-key': ocular.key },
          body: JSON.stringify({ messages: [{ role: 'user', content: 'hi' }], stream }),
        });
        expect(response.statusCode).toBe(200);
        return response.body.text();
      };
      for (let round = 0; round < 30; round++) {
        upstream.behave((_request, response) =>
          round % 2 === 0 ? sendJson(response, 200, completion(`answer ${round}`)) : streamCompletion(response, ['a', 'b']),
        );
        expect(await chat(round % 2 === 1)).toContain(round % 2 === 0 ? `answer ${round}` : '"content":"ab"');
      }
      const closed = streamSlowlyUntilClosed();
      const pending = chat(true).catch(() => undefined);
      while (upstream.requests.length < 31) await new Promise((resolve) => setTimeout(resolve, 5));
      const started = Date.now();
      await connection.destroy();
      await closed;
      expect(Date.now() - started).toBeLessThan(2_000); // the stream alone would take 4 s
      await pending;
      expect(warnings.filter((warning) => warning.name === 'MaxListenersExceededWarning')).toEqual([]);
    } finally {
      process.off('warning', onWarning);
      await connection.destroy();
    }
  });
});

describe('POST /v1/chat errors', () => {
  const user = [{ role: 'user', content: 'hi' }];
  const cases: Array<[string, unknown, number, string]> = [
    ['malformed JSON', '{"messages": [', 400, 'validation_error'],
    ['empty body', '', 400, 'validation_error'],
    ['a JSON array', '[]', 400, 'validation_error'],
    ['missing messages', { model: 'flash' }, 400, 'validation_error'],
    ['empty messages', { messages: [] }, 400, 'validation_error'],
    ['a bad role', { messages: [{ role: 'wizard', content: 'hi' }] }, 400, 'validation_error'],
    ['content of the wrong type', { messages: [{ role: 'user', content: 42 }] }, 400, 'validation_error'],
    ['max_tokens of the wrong type', { messages: user, max_tokens: 'many' }, 400, 'validation_error'],
    ['negative max_tokens', { messages: user, max_tokens: -1 }, 400, 'validation_error'],
    ['temperature out of range', { messages: user, temperature: 9 }, 400, 'validation_error'],
    ['an unknown part type', { messages: [{ role: 'user', content: [{ type: 'hologram', hologram: 'x' }] }] }, 400, 'validation_error'],
    ['an unknown model', { model: 'nope', messages: user }, 404, 'not_found_error'],
    ['use_search_engine without a search backend', { messages: user, use_search_engine: true }, 400, 'validation_error'],
    [
      'tools for a model without tools',
      { model: 'text-only', messages: user, tools: [{ name: 't', parameters: {} }] },
      400,
      'validation_error',
    ],
    [
      'an image for a text-only model',
      { model: 'text-only', messages: [{ role: 'user', content: [{ type: 'image_url', image_url: `data:image/png;base64,${PNG}` }] }] },
      400,
      'validation_error',
    ],
    [
      'an image part carrying text',
      { messages: [{ role: 'user', content: [{ type: 'image_url', image_url: 'data:text/plain;base64,aGk=' }] }] },
      415,
      'unsupported_media_type',
    ],
    [
      'invalid base64',
      { messages: [{ role: 'user', content: [{ type: 'image_url', image_url: 'data:image/png;base64,@@@' }] }] },
      400,
      'validation_error',
    ],
    [
      'an unsupported URL scheme',
      { messages: [{ role: 'user', content: [{ type: 'image_url', image_url: 'file:///etc/passwd' }] }] },
      400,
      'validation_error',
    ],
    ['a tool_output without ids', { messages: [...user, { role: 'tool_output', content: [{ output: 'x' }] }] }, 400, 'validation_error'],
    [
      'duplicate tool names',
      {
        messages: user,
        tools: [
          { name: 't', parameters: {} },
          { name: 't', parameters: {} },
        ],
      },
      400,
      'validation_error',
    ],
    ['a bad tool_choice', { messages: user, tool_choice: 'sometimes' }, 400, 'validation_error'],
  ];

  it.each(cases)('rejects %s', async (_name, body, status, type) => {
    const response = await ocular.post('/v1/chat', body);
    expect(response.status).toBe(status);
    expect((await response.json()).error.type).toBe(type);
    expect(response.headers.get('x-request-id')).toBeTruthy();
  });

  it('rejects more media parts per turn than limits.maxMediaPerTurn, naming the limit', async () => {
    const image = { type: 'image_url', image_url: `data:image/png;base64,${PNG}` };
    const response = await ocular.post('/v1/chat', { messages: [{ role: 'user', content: [image, image, image] }] });
    expect(response.status).toBe(400);
    const body = await response.json();
    expect(body.error.type).toBe('validation_error');
    expect(body.error.message).toContain('maxMediaPerTurn');
  });

  it('rejects a body over limits.maxRequestBytes with 413', async () => {
    const response = await ocular.post('/v1/chat', { messages: [{ role: 'user', content: 'x'.repeat(300_000) }] });
    expect(response.status).toBe(413);
    expect((await response.json()).error.type).toBe('payload_too_large');
  });

  it('answers 400 and closes the connection when a body does not arrive within limits.requestBodyTimeoutMs', async () => {
    const started = Date.now();
    // Headers announce 100 bytes; only the first few arrive, and the client then waits.
    const text = await sendUntilClosed(
      `POST /v1/chat HTTP/1.1\r\nHost: x\r\nX-Api-Key: ${ocular.key}\r\nContent-Type: application/json\r\n` +
        `Content-Length: 100\r\n\r\n{"messages":`,
    );
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(text).toMatch(/^HTTP\/1\.1 400 /);
    expect(text).toMatch(/connection: close/i);
    expect(JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4)).error).toMatchObject({
      type: 'validation_error',
      message: expect.stringContaining('limits.requestBodyTimeoutMs'),
    });
  });

  it('closes the connection, reading no more, when it refuses a request before its body', async () => {
    // A wrong key, and a body of 50 MB announced of which only the start is sent.
    const text = await sendUntilClosed(
      `POST /v1/chat HTTP/1.1\r\nHost: x\r\nX-Api-Key: wrong\r\nContent-Type: application/json\r\n` +
        `Content-Length: 50000000\r\n\r\n{"messages":[`,
    );
    expect(text).toMatch(/^HTTP\/1\.1 401 /);
    expect(text).toMatch(/connection: close/i);
  });

  it('rejects a non-JSON content type with 415', async () => {
    const response = await ocular.post('/v1/chat', 'a=b', { 'content-type': 'multipart/form-data; boundary=x' });
    expect(response.status).toBe(415);
    expect((await response.json()).error.type).toBe('unsupported_media_type');
  });

  it('retries upstream 5xx and then succeeds', async () => {
    let calls = 0;
    upstream.behave((_request, response) =>
      ++calls < 3 ? sendJson(response, 503, { error: { message: 'warming up' } }) : sendJson(response, 200, completion('ok')),
    );
    const response = await ocular.post('/v1/chat', { messages: user });
    expect(response.status).toBe(200);
    expect(calls).toBe(3);
  });

  it('maps a persistent upstream failure to 502 upstream_error keeping the upstream message', async () => {
    upstream.behave((_request, response) => sendJson(response, 500, { error: { message: 'CUDA out of memory' } }));
    const response = await ocular.post('/v1/chat', { messages: user });
    expect(response.status).toBe(502);
    const body = await response.json();
    expect(body.error.type).toBe('upstream_error');
    expect(body.error.message).toContain('CUDA out of memory');
  });

  it('does not retry an upstream 400 and reports it as 502', async () => {
    upstream.behave((_request, response) => sendJson(response, 400, { error: { message: 'context too long' } }));
    const response = await ocular.post('/v1/chat', { messages: user });
    expect(response.status).toBe(502);
    expect(upstream.requests).toHaveLength(1);
  });

  it('passes an upstream 429 through with Retry-After', async () => {
    upstream.behave((_request, response) => sendJson(response, 429, { error: { message: 'slow down' } }, { 'retry-after': '0' }));
    const response = await ocular.post('/v1/chat', { messages: user });
    expect(response.status).toBe(429);
    expect((await response.json()).error.type).toBe('rate_limit_error');
    expect(response.headers.get('retry-after')).toBe('0');
  });

  it('maps an unreachable upstream to 502', async () => {
    const response = await ocular.post('/v1/chat', { model: 'down', messages: user });
    expect(response.status).toBe(502);
    expect((await response.json()).error.type).toBe('upstream_error');
  });

  it('reports an upstream failure before the first streamed byte as a plain error response', async () => {
    upstream.behave((_request, response) => sendJson(response, 400, { error: { message: 'bad prompt' } }));
    const response = await ocular.post('/v1/chat', { messages: user, stream: true });
    expect(response.status).toBe(502);
    expect((await response.json()).error.type).toBe('upstream_error');
  });

  it('answers unknown routes with a 404 envelope', async () => {
    const response = await ocular.get('/v1/nothing-here');
    expect(response.status).toBe(404);
    expect((await response.json()).error.type).toBe('not_found_error');
  });

  it('tolerates the double slash the Reka SDK produces from a base URL ending in /', async () => {
    upstream.behave((_request, response) => sendJson(response, 200, completion('ok')));
    const response = await ocular.post('/v1//chat', { messages: user });
    expect(response.status).toBe(200);
  });
});
