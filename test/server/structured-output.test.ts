import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { zodResponseFormat } from 'openai/helpers/zod';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { sendJson, startFakeUpstream, type FakeUpstream, type RecordedRequest } from '../helpers/fake-upstream.ts';
import { writeTinyLlamaGguf } from '../helpers/gguf-writer.ts';
import { readSseData, startOcular, type TestOcular } from '../helpers/ocular.ts';
import { completion } from '../helpers/openai-upstream.ts';

/**
 * One local server speaks each vendor's protocol under its own prefix; every request takes the next text from
 * `answers` (the last one repeats), so a test decides what "the model" says on the first and second try.
 */
let answers: string[] = [];
/** An answer the openai-compatible upstream gives as a tool call. */
const TOOL_CALL = '<tool call>';
/** An answer that never comes: the upstream holds the request open until the caller hangs up. */
const HANG = '<hang>';
let hungUp = false;
let upstream: FakeUpstream;
let ocular: TestOcular;
let client: OpenAI;
let dir: string;

function nextAnswer(): string {
  return answers.length > 1 ? answers.shift()! : (answers[0] ?? '');
}

function reply(request: RecordedRequest, response: Parameters<Parameters<typeof startFakeUpstream>[0]>[1]): void {
  const text = nextAnswer();
  if (text === HANG) {
    response.on('close', () => (hungUp = true));
    return;
  }
  if (text === TOOL_CALL) {
    const call = { id: 'call_1', type: 'function', function: { name: 'lookup', arguments: '{"city":"Lyon"}' } };
    return sendJson(response, 200, completion(null, { toolCalls: [call], finishReason: 'tool_calls' }));
  }
  if (request.url.startsWith('/openai/')) return sendJson(response, 200, completion(text));
  if (request.url.startsWith('/anthropic/')) {
    return sendJson(response, 200, {
      id: 'msg_1',
      type: 'message',
      role: 'assistant',
      content: [{ type: 'text', text }],
      stop_reason: 'end_turn',
      usage: { input_tokens: 5, output_tokens: 3 },
    });
  }
  if (request.url.startsWith('/gemini/')) {
    return sendJson(response, 200, {
      candidates: [{ content: { role: 'model', parts: [{ text }] }, finishReason: 'STOP' }],
      usageMetadata: { promptTokenCount: 5, candidatesTokenCount: 3 },
    });
  }
  return sendJson(response, 200, {
    id: 'reka-1',
    model: 'reka-flash',
    responses: [{ finish_reason: 'stop', message: { role: 'assistant', content: text } }],
    usage: { input_tokens: 5, output_tokens: 3 },
  });
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ocular-structured-'));
  const tiny = writeTinyLlamaGguf(join(dir, 'tiny.gguf'), { endless: true, asciiOnly: true });
  upstream = await startFakeUpstream((request, response) => reply(request, response));
  ocular = await startOcular({
    models: [
      { id: 'oai', provider: 'openai-compatible', baseUrl: `${upstream.url}/openai/v1`, model: 'gpt-upstream' },
      { id: 'claude', provider: 'anthropic', baseUrl: `${upstream.url}/anthropic`, model: 'claude-sonnet-4-5', apiKey: 'k' },
      { id: 'gem', provider: 'gemini', baseUrl: `${upstream.url}/gemini`, model: 'gemini-2.5-flash', apiKey: 'k' },
      { id: 'reka', provider: 'reka', baseUrl: `${upstream.url}/reka`, model: 'reka-flash', apiKey: 'k' },
      { id: 'tiny', provider: 'llama', modelPath: tiny, contextSize: 2048, parallel: 1 },
    ],
  });
  client = new OpenAI({ apiKey: ocular.key, baseURL: `${ocular.url}/openai/v1`, maxRetries: 0 });
});

afterAll(async () => {
  await ocular?.close();
  await upstream?.close();
  rmSync(dir, { recursive: true, force: true });
});

beforeEach(() => {
  upstream.requests.length = 0;
  answers = [];
});

const Weather = z.object({ city: z.string(), celsius: z.number(), tags: z.array(z.string()), unit: z.enum(['c', 'f']).nullable() });
const WEATHER = { city: 'Lyon', celsius: 21.5, tags: ['sunny'], unit: 'c' };
const weatherFormat = zodResponseFormat(Weather, 'weather');
const ask = [{ role: 'user' as const, content: 'Weather in Lyon, as JSON.' }];
const bodies = () => upstream.requests.map((request) => request.body as Record<string, unknown>);

describe('structured output through the openai SDK', () => {
  it('parse() works against an openai-compatible upstream, which gets response_format as sent', async () => {
    answers = [JSON.stringify(WEATHER)];
    const answer = await client.chat.completions.parse({ model: 'oai', messages: ask, response_format: weatherFormat });
    expect(answer.choices[0]!.message.parsed).toEqual(WEATHER);
    expect(bodies()).toHaveLength(1);
    expect(bodies()[0]!.response_format).toEqual({
      type: 'json_schema',
      json_schema: { name: 'weather', schema: weatherFormat.json_schema.schema, strict: true },
    });
  });

  it('parse() works against anthropic, with the schema as output_config.format', async () => {
    answers = [JSON.stringify(WEATHER)];
    const answer = await client.chat.completions.parse({ model: 'claude', messages: ask, response_format: weatherFormat });
    expect(answer.choices[0]!.message.parsed).toEqual(WEATHER);
    expect(bodies()[0]!.output_config).toEqual({ format: { type: 'json_schema', schema: weatherFormat.json_schema.schema } });
  });

  it('parse() works against gemini, in JSON mode with responseJsonSchema', async () => {
    answers = [JSON.stringify(WEATHER)];
    const answer = await client.chat.completions.parse({ model: 'gem', messages: ask, response_format: weatherFormat });
    expect(answer.choices[0]!.message.parsed).toEqual(WEATHER);
    expect(bodies()[0]!.generationConfig).toMatchObject({
      responseMimeType: 'application/json',
      responseJsonSchema: weatherFormat.json_schema.schema,
    });
  });

  it('parse() works against reka, which is given the schema in the prompt; a fenced answer is unwrapped', async () => {
    answers = ['```json\n' + JSON.stringify(WEATHER) + '\n```'];
    const answer = await client.chat.completions.parse({ model: 'reka', messages: ask, response_format: weatherFormat });
    expect(answer.choices[0]!.message.parsed).toEqual(WEATHER);
    expect(answer.choices[0]!.message.content).toBe(JSON.stringify(WEATHER));
    const [message] = bodies()[0]!.messages as Array<{ role: string; content: string }>;
    expect(message!.role).toBe('user');
    expect(message!.content).toContain(JSON.stringify(weatherFormat.json_schema.schema));
    expect(message!.content).toContain('Weather in Lyon');
  });

  it('parse() works against a generated GGUF, held to the schema by a grammar', async () => {
    const Mood = z.object({ mood: z.enum(['calm', 'tense']) });
    const answer = await client.chat.completions.parse({
      model: 'tiny',
      messages: [{ role: 'user', content: 'How does it feel?' }],
      response_format: zodResponseFormat(Mood, 'mood'),
      max_completion_tokens: 40,
      temperature: 0,
    });
    expect(['calm', 'tense']).toContain(answer.choices[0]!.message.parsed!.mood);
  });

  it('the stream() helper works: the validated answer is streamed', async () => {
    answers = [JSON.stringify(WEATHER)];
    const stream = client.chat.completions.stream({ model: 'oai', messages: ask, response_format: weatherFormat });
    const final = await stream.finalChatCompletion();
    expect(final.choices[0]!.message.parsed).toEqual(WEATHER);
  });

  it('retries once, telling the model what did not match, and answers with the corrected JSON', async () => {
    answers = [JSON.stringify({ city: 'Lyon' }), JSON.stringify(WEATHER)];
    const answer = await client.chat.completions.parse({ model: 'oai', messages: ask, response_format: weatherFormat });
    expect(answer.choices[0]!.message.parsed).toEqual(WEATHER);
    expect(answer.usage).toMatchObject({ prompt_tokens: 22, completion_tokens: 14 });
    expect(bodies()).toHaveLength(2);
    const retried = bodies()[1]!.messages as Array<{ role: string; content: string }>;
    expect(retried.at(-2)).toEqual({ role: 'assistant', content: JSON.stringify({ city: 'Lyon' }) });
    expect(retried.at(-1)!.role).toBe('user');
    expect(retried.at(-1)!.content).toContain('celsius');
  });

  it('answers 502 upstream_error when the answer is invalid twice, streaming or not', async () => {
    for (const provider of ['oai', 'claude', 'gem', 'reka']) {
      upstream.requests.length = 0;
      answers = ['not json at all'];
      const error = await client.chat.completions.parse({ model: provider, messages: ask, response_format: weatherFormat }).then(
        () => undefined,
        (caught: unknown) => caught,
      );
      expect(error).toBeInstanceOf(OpenAI.APIError);
      expect((error as InstanceType<typeof OpenAI.APIError>).status).toBe(502);
      expect((error as InstanceType<typeof OpenAI.APIError>).type).toBe('upstream_error');
      expect(bodies()).toHaveLength(2);
    }
    answers = ['{"city": 3}'];
    const response = await ocular.post('/v1/chat/completions', {
      model: 'oai',
      messages: ask,
      response_format: weatherFormat,
      stream: true,
    });
    expect(response.status).toBe(502);
    expect((await response.json()).error.type).toBe('upstream_error');
  });

  it('json_object: passed on as such, and the answer must be a JSON object', async () => {
    answers = ['{"ok": true}'];
    const answer = await client.chat.completions.create({ model: 'oai', messages: ask, response_format: { type: 'json_object' } });
    expect(JSON.parse(answer.choices[0]!.message.content!)).toEqual({ ok: true });
    expect(bodies()[0]!.response_format).toEqual({ type: 'json_object' });

    upstream.requests.length = 0;
    answers = ['[1, 2]'];
    const response = await ocular.post('/v1/chat/completions', { model: 'gem', messages: ask, response_format: { type: 'json_object' } });
    expect(response.status).toBe(502);
    expect((await response.json()).error.type).toBe('upstream_error');
    expect((bodies()[0]!.generationConfig as Record<string, unknown>).responseMimeType).toBe('application/json');

    upstream.requests.length = 0;
    answers = ['{"ok": 1}'];
    const claude = await client.chat.completions.create({ model: 'claude', messages: ask, response_format: { type: 'json_object' } });
    expect(JSON.parse(claude.choices[0]!.message.content!)).toEqual({ ok: 1 });
    expect(bodies()[0]!.output_config).toBeUndefined();
    expect(bodies()[0]!.system).toContain('JSON object');
  });

  it('leaves tool calls unvalidated: a tool call is not an answer', async () => {
    answers = [TOOL_CALL];
    const response = await ocular.post('/v1/chat/completions', {
      model: 'oai',
      messages: ask,
      response_format: weatherFormat,
      tools: [{ type: 'function', function: { name: 'lookup', parameters: { type: 'object' } } }],
    });
    expect(response.status).toBe(200);
    const body = await response.json();
    expect(body.choices[0].finish_reason).toBe('tool_calls');
    expect(body.choices[0].message.tool_calls[0].function.name).toBe('lookup');
    expect(bodies()).toHaveLength(1);
  });
});

describe('structured output with tools and cancellation', () => {
  it('keeps gemini out of JSON mode when tools are offered, and anthropic in structured outputs', async () => {
    const tools = [{ type: 'function', function: { name: 'lookup', parameters: { type: 'object' } } }];
    answers = [JSON.stringify(WEATHER)];
    for (const model of ['gem', 'claude']) {
      const response = await ocular.post('/v1/chat/completions', { model, messages: ask, response_format: weatherFormat, tools });
      expect(response.status).toBe(200);
    }
    const [gemini, claude] = bodies();
    expect(gemini!.generationConfig).not.toHaveProperty('responseMimeType');
    expect(gemini!.tools).toBeDefined();
    expect(claude!.output_config).toBeDefined();
    expect(claude!.tools).toBeDefined();
  });

  it('stops the upstream call when the client hangs up on a buffered stream', async () => {
    answers = [HANG];
    hungUp = false;
    const controller = new AbortController();
    const pending = ocular
      .post('/v1/chat/completions', { model: 'oai', messages: ask, response_format: weatherFormat, stream: true }, {}, controller.signal)
      .catch((error: unknown) => error);
    for (let waited = 0; upstream.requests.length === 0 && waited < 5_000; waited += 20)
      await new Promise((resolve) => setTimeout(resolve, 20));
    controller.abort();
    expect(await pending).toBeInstanceOf(Error);
    for (let waited = 0; !hungUp && waited < 5_000; waited += 20) await new Promise((resolve) => setTimeout(resolve, 20));
    expect(hungUp).toBe(true);
    expect(upstream.requests).toHaveLength(1);
  });
});

describe('response_format on the Reka route', () => {
  it('answers /v1/chat with the validated JSON, streaming or not', async () => {
    answers = [JSON.stringify(WEATHER)];
    const response = await ocular.post('/v1/chat', { model: 'reka', messages: ask, response_format: weatherFormat });
    expect(response.status).toBe(200);
    expect(JSON.parse((await response.json()).responses[0].message.content)).toEqual(WEATHER);

    answers = ['nope', JSON.stringify(WEATHER)];
    const streamed = await ocular.post('/v1/chat', { model: 'claude', messages: ask, response_format: weatherFormat, stream: true });
    expect(streamed.status).toBe(200);
    const last = JSON.parse((await readSseData(streamed)).at(-1)!);
    expect(JSON.parse(last.responses[0].chunk.content)).toEqual(WEATHER);
    expect(last.responses[0].finish_reason).toBe('stop');
  });

  it('answers 502 on /v1/chat when the answer is invalid twice', async () => {
    answers = ['{"city": "Lyon"}'];
    const response = await ocular.post('/v1/chat', { model: 'reka', messages: ask, response_format: weatherFormat });
    expect(response.status).toBe(502);
    expect((await response.json()).error.type).toBe('upstream_error');
  });
});

describe('response_format refusals', () => {
  const schemaWith = (schema: unknown) => ({ type: 'json_schema', json_schema: { name: 'x', schema } });
  let deep: Record<string, unknown> = { type: 'string' };
  for (let level = 0; level < 40; level++) deep = { type: 'array', items: deep };

  it.each([
    ['a regular expression', schemaWith({ type: 'string', pattern: '^(a+)+$' })],
    ['patternProperties', schemaWith({ type: 'object', patternProperties: { '^x': { type: 'string' } } })],
    ['a schema nested too deep', schemaWith(deep)],
    ['a dangling $ref', schemaWith({ type: 'object', properties: { a: { $ref: '#/definitions/missing' } } })],
    ['a schema that only refers to itself', schemaWith({ $ref: '#' })],
    ['an unknown type', schemaWith({ type: 'wizard' })],
    ['a schema that is not an object', schemaWith('string')],
    ['a missing schema', { type: 'json_schema', json_schema: { name: 'x' } }],
    ['a missing json_schema', { type: 'json_schema' }],
    ['a bad name', { type: 'json_schema', json_schema: { name: 'no spaces', schema: {} } }],
    ['an unknown type of response_format', { type: 'xml' }],
  ])('refuses %s with 400, before calling the model', async (_name, format) => {
    for (const path of ['/v1/chat/completions', '/v1/chat']) {
      const response = await ocular.post(path, { model: 'oai', messages: ask, response_format: format });
      expect(response.status).toBe(400);
      const { error } = await response.json();
      expect(error.type).toBe('validation_error');
      expect(error.param).toMatch(/^response_format/);
    }
    expect(upstream.requests).toHaveLength(0);
  });

  it('refuses response_format with a final assistant message to continue', async () => {
    const response = await ocular.post('/v1/chat/completions', {
      model: 'oai',
      messages: [...ask, { role: 'assistant', content: '{"city": "Ly' }],
      response_format: weatherFormat,
    });
    expect(response.status).toBe(400);
    expect((await response.json()).error).toMatchObject({ type: 'validation_error', param: 'response_format' });
  });

  it('accepts {"type":"text"} as no format at all', async () => {
    answers = ['plain words'];
    const response = await ocular.post('/v1/chat/completions', { model: 'oai', messages: ask, response_format: { type: 'text' } });
    expect(response.status).toBe(200);
    expect((await response.json()).choices[0].message.content).toBe('plain words');
    expect(bodies()[0]!.response_format).toBeUndefined();
  });
});
