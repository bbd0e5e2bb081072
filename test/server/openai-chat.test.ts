import { connect } from 'node:net';
import { readFile } from 'node:fs/promises';
import OpenAI from 'openai';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { sendJson } from '../helpers/fake-upstream.ts';
import { makeAudio } from '../helpers/media-fixtures.ts';
import { readSseData, startOcular, type TestOcular } from '../helpers/ocular.ts';
import { completion, startOpenAiUpstream, streamCompletion } from '../helpers/openai-upstream.ts';

const PNG = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==';

let upstream: Awaited<ReturnType<typeof startOpenAiUpstream>>;
let ocular: TestOcular;
let client: OpenAI;

beforeAll(async () => {
  upstream = await startOpenAiUpstream();
  ocular = await startOcular({
    models: [
      {
        id: 'qwen',
        provider: 'openai-compatible',
        baseUrl: `${upstream.url}/v1`,
        model: 'Qwen/Qwen2.5-VL-7B-Instruct',
        apiKey: 'upstream-secret',
      },
      { id: 'audio', provider: 'openai-compatible', baseUrl: `${upstream.url}/v1`, model: 'omni', capabilities: { audio: true } },
    ],
  });
  client = new OpenAI({ apiKey: ocular.key, baseURL: `${ocular.url}/openai/v1`, maxRetries: 0 });
});

afterAll(async () => {
  await ocular.close();
  await upstream.close();
});

beforeEach(() => {
  upstream.requests.length = 0;
  upstream.behave((_request, response) => sendJson(response, 200, completion('hello')));
});

const lastUpstream = () => upstream.requests.at(-1)!;

describe('openai SDK against /openai/v1', () => {
  it('lists models', async () => {
    const page = await client.models.list();
    expect(page.data.map((model) => model.id)).toEqual(['qwen', 'audio']);
    expect(page.data[0]).toMatchObject({ object: 'model' });
    expect((await client.models.retrieve('qwen')).id).toBe('qwen');
  });

  it('completes a text chat', async () => {
    upstream.behave((_request, response) => sendJson(response, 200, completion('Bonjour!', { usage: [12, 4] })));
    const answer = await client.chat.completions.create({
      model: 'qwen',
      messages: [
        { role: 'system', content: 'Answer in French.' },
        { role: 'user', content: 'Hello' },
      ],
      max_completion_tokens: 50,
    });
    expect(answer.object).toBe('chat.completion');
    expect(answer.id).toMatch(/^chatcmpl-/);
    expect(answer.model).toBe('qwen');
    expect(answer.choices[0]!.message.content).toBe('Bonjour!');
    expect(answer.choices[0]!.finish_reason).toBe('stop');
    expect(answer.usage).toMatchObject({ prompt_tokens: 12, completion_tokens: 4, total_tokens: 16 });
    expect(lastUpstream().headers.authorization).toBe('Bearer upstream-secret');
    expect(lastUpstream().body).toMatchObject({ model: 'Qwen/Qwen2.5-VL-7B-Instruct', max_tokens: 50 });
  });

  it('sends an image to the upstream as a data URL', async () => {
    await client.chat.completions.create({
      model: 'qwen',
      messages: [
        {
          role: 'user',
          content: [
            { type: 'text', text: 'Describe' },
            { type: 'image_url', image_url: { url: `data:image/png;base64,${PNG}`, detail: 'low' } },
          ],
        },
      ],
    });
    const part = (lastUpstream().body as any).messages[0].content[1];
    expect(part.type).toBe('image_url');
    expect(part.image_url.url).toMatch(/^data:image\/(jpeg|png);base64,/);
  });

  it('sends input_audio to an audio-capable model', async () => {
    const wav = (await readFile(await makeAudio({ seconds: 1, format: 'wav' }))).toString('base64');
    await client.chat.completions.create({
      model: 'audio',
      messages: [{ role: 'user', content: [{ type: 'input_audio', input_audio: { data: wav, format: 'wav' } }] }],
    });
    expect((lastUpstream().body as any).messages[0].content[0]).toEqual({ type: 'input_audio', input_audio: { data: wav, format: 'wav' } });
  });

  it('streams deltas with usage and [DONE]', async () => {
    upstream.behave((_request, response) => streamCompletion(response, ['Once', ' upon', ' a time'], { splitEvery: 5, usage: [3, 3] }));
    const stream = await client.chat.completions.create({
      model: 'qwen',
      messages: [{ role: 'user', content: 'story' }],
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = '';
    let finish: string | null | undefined;
    let usage: unknown;
    for await (const event of stream) {
      text += event.choices[0]?.delta.content ?? '';
      finish = event.choices[0]?.finish_reason ?? finish;
      if (event.usage) usage = event.usage;
    }
    expect(text).toBe('Once upon a time');
    expect(finish).toBe('stop');
    expect(usage).toMatchObject({ prompt_tokens: 3, completion_tokens: 3 });
  });

  it('streams tool calls', async () => {
    upstream.behave((_request, response) => {
      response.writeHead(200, { 'content-type': 'text/event-stream' });
      const frames = [
        {
          choices: [
            {
              index: 0,
              delta: {
                role: 'assistant',
                tool_calls: [{ index: 0, id: 'call_9', type: 'function', function: { name: 'lookup', arguments: '' } }],
              },
            },
          ],
        },
        { choices: [{ index: 0, delta: { tool_calls: [{ index: 0, function: { arguments: '{"q":' } }] } }] },
        { choices: [{ index: 0, delta: { tool_calls: [{ index: 0, function: { arguments: '"cats"}' } }] } }] },
        { choices: [{ index: 0, delta: {}, finish_reason: 'tool_calls' }] },
      ];
      response.end(frames.map((frame) => `data: ${JSON.stringify(frame)}\n\n`).join('') + 'data: [DONE]\n\n');
    });
    const stream = client.chat.completions.stream({
      model: 'qwen',
      messages: [{ role: 'user', content: 'find cats' }],
      tools: [{ type: 'function', function: { name: 'lookup', parameters: { type: 'object', properties: { q: { type: 'string' } } } } }],
    });
    const final = await stream.finalChatCompletion();
    expect(final.choices[0]!.finish_reason).toBe('tool_calls');
    expect(final.choices[0]!.message.tool_calls).toEqual([
      { id: 'call_9', type: 'function', function: { name: 'lookup', arguments: '{"q":"cats"}' } },
    ]);
  });

  it('sends tool results back upstream', async () => {
    await client.chat.completions.create({
      model: 'qwen',
      messages: [
        { role: 'user', content: 'find cats' },
        {
          role: 'assistant',
          content: null,
          tool_calls: [{ id: 'call_9', type: 'function', function: { name: 'lookup', arguments: '{"q":"cats"}' } }],
        },
        { role: 'tool', tool_call_id: 'call_9', content: '3 cats' },
      ],
    });
    expect((lastUpstream().body as any).messages.slice(1)).toEqual([
      {
        role: 'assistant',
        content: null,
        tool_calls: [{ id: 'call_9', type: 'function', function: { name: 'lookup', arguments: '{"q":"cats"}' } }],
      },
      { role: 'tool', tool_call_id: 'call_9', content: '3 cats' },
    ]);
  });

  it('surfaces errors as SDK errors with the right status', async () => {
    await expect(client.chat.completions.create({ model: 'missing', messages: [{ role: 'user', content: 'x' }] })).rejects.toMatchObject({
      status: 404,
      type: 'not_found_error',
    });
    await expect(client.chat.completions.create({ model: 'qwen', messages: [] })).rejects.toMatchObject({
      status: 400,
      type: 'validation_error',
    });
    const anonymous = new OpenAI({ apiKey: 'wrong', baseURL: `${ocular.url}/openai/v1`, maxRetries: 0 });
    await expect(anonymous.models.list()).rejects.toMatchObject({ status: 401 });
  });

  it('surfaces a mid-stream upstream failure as an error while iterating', async () => {
    upstream.behave((_request, response) => streamCompletion(response, ['partial'], { omitEnd: true }));
    const stream = await client.chat.completions.create({ model: 'qwen', messages: [{ role: 'user', content: 'x' }], stream: true });
    await expect(
      (async () => {
        for await (const _event of stream);
      })(),
    ).rejects.toThrow();
  });
});

describe('streams to a slow reader', () => {
  it('waits for the client to drain many times without piling up listeners, and delivers every event', async () => {
    const warnings: Error[] = [];
    const onWarning = (warning: Error): void => void warnings.push(warning);
    process.on('warning', onWarning);
    try {
      const deltas = Array.from({ length: 300 }, (_, index) => `${index}:${'y'.repeat(32 * 1024)}`);
      upstream.behave((_request, response) => streamCompletion(response, deltas, { splitEvery: 256 * 1024 }));
      const { hostname, port } = new URL(ocular.url);
      const socket = connect(Number(port), hostname);
      const body = JSON.stringify({ model: 'qwen', messages: [{ role: 'user', content: 'x' }], stream: true });
      socket.write(
        `POST /openai/v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${ocular.key}\r\n` +
          `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
      );
      // Read in bursts with pauses, so that Ocular's writes back up again and again.
      const received: Buffer[] = [];
      socket.on('data', (chunk: Buffer) => {
        received.push(chunk);
        socket.pause();
        setTimeout(() => socket.resume(), 2);
      });
      await new Promise<void>((resolve, reject) => socket.once('end', resolve).once('error', reject));
      const text = Buffer.concat(received).toString('utf8');
      expect(text).toContain('data: [DONE]');
      for (const index of [0, 150, 299]) expect(text).toContain(`"content":"${index}:`);
      expect(warnings.filter((warning) => warning.name === 'MaxListenersExceededWarning')).toEqual([]);
    } finally {
      process.off('warning', onWarning);
    }
  }, 30_000);
});

describe('streams from a misbehaving upstream', () => {
  it('cuts a stream whose upstream sends an event longer than 16 MiB, ending it with an error event', async () => {
    upstream.behave((_request, response) => {
      response.writeHead(200, { 'content-type': 'text/event-stream' });
      const line = Buffer.alloc(1024 * 1024, 'x');
      let sent = 0;
      // An event that never ends: data without a line break, until the client goes away (or 40 MiB).
      const push = (): void => {
        while (sent < 40 && !response.destroyed) {
          sent++;
          if (!response.write(sent === 1 ? Buffer.concat([Buffer.from('data: '), line]) : line)) return void response.once('drain', push);
        }
        response.end();
      };
      push();
    });
    const response = await ocular.post('/openai/v1/chat/completions', {
      model: 'qwen',
      messages: [{ role: 'user', content: 'x' }],
      stream: true,
    });
    expect(response.status).toBe(200);
    const events = await readSseData(response);
    const last = JSON.parse(events.at(-1)!);
    expect(last.error).toMatchObject({ type: 'upstream_error', message: expect.stringContaining('longer than') });
  });
});

describe('POST /v1/chat/completions', () => {
  it('is the same handler as /openai/v1/chat/completions', async () => {
    const response = await ocular.post('/v1/chat/completions', { model: 'qwen', messages: [{ role: 'user', content: 'hi' }] });
    expect(response.status).toBe(200);
    expect((await response.json()).choices[0].message.content).toBe('hello');
  });

  it('ends a stream with [DONE] and no usage chunk unless asked', async () => {
    upstream.behave((_request, response) => streamCompletion(response, ['a', 'b']));
    const response = await ocular.post('/v1/chat/completions', {
      model: 'qwen',
      messages: [{ role: 'user', content: 'hi' }],
      stream: true,
    });
    const data = await readSseData(response);
    expect(data.at(-1)).toBe('[DONE]');
    const chunks = data.slice(0, -1).map((item) => JSON.parse(item));
    expect(chunks[0].choices[0].delta).toEqual({ role: 'assistant', content: '' });
    expect(chunks.some((chunk) => chunk.usage)).toBe(false);
    expect(chunks.at(-1).choices[0].finish_reason).toBe('stop');
  });

  it.each([
    ['n > 1', { n: 2 }],
    ['a json_schema response_format with a bad name', { response_format: { type: 'json_schema', json_schema: { name: 'x y', schema: {} } } }],
    ['an unknown role', { messages: [{ role: 'wizard', content: 'x' }] }],
    ['a tool message without tool_call_id', { messages: [{ role: 'tool', content: 'x' }] }],
    [
      'an audio format OpenAI does not define',
      { model: 'audio', messages: [{ role: 'user', content: [{ type: 'input_audio', input_audio: { data: 'AA==', format: 'aiff' } }] }] },
    ],
  ])('rejects %s with 400', async (_name, patch) => {
    const response = await ocular.post('/v1/chat/completions', { model: 'qwen', messages: [{ role: 'user', content: 'hi' }], ...patch });
    expect(response.status).toBe(400);
    expect((await response.json()).error.type).toBe('validation_error');
  });
});
