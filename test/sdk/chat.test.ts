// The SDK against a real Ocular server whose model is a fake OpenAI-compatible upstream over real HTTP.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  AuthenticationError,
  BadRequestError,
  InternalServerError,
  NotFoundError,
  Ocular,
  OcularError,
  APIUserAbortError,
} from '../../src/sdk/index.ts';
import { sendJson } from '../helpers/fake-upstream.ts';
import { startOcular, type TestOcular } from '../helpers/ocular.ts';
import { completion, startOpenAiUpstream, streamCompletion } from '../helpers/openai-upstream.ts';

let upstream: Awaited<ReturnType<typeof startOpenAiUpstream>>;
let ocular: TestOcular;
let client: Ocular;

beforeAll(async () => {
  upstream = await startOpenAiUpstream();
  ocular = await startOcular({
    defaultModel: 'flash',
    models: [{ id: 'flash', provider: 'openai-compatible', baseUrl: `${upstream.url}/v1`, model: 'upstream-model', maxRetries: 0 }],
    aliases: { 'reka-flash': 'flash' },
  });
  client = new Ocular({ apiKey: ocular.key, baseURL: ocular.url, maxRetries: 0, timeout: 10_000 });
});

afterAll(async () => {
  await ocular?.close();
  await upstream?.close();
});

beforeEach(() => {
  upstream.requests.length = 0;
});

const question = [{ role: 'user' as const, content: 'Say hello' }];

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

describe('chat.create', () => {
  it('answers with the Reka response, sending the params as given', async () => {
    upstream.behave((_request, response) => sendJson(response, 200, completion('Hello there', { usage: [5, 2] })));
    const reply = await client.chat.create({
      model: 'reka-flash',
      messages: [{ role: 'user', content: [{ type: 'text', text: 'Say hello' }] }],
      max_tokens: 50,
      temperature: 0.2,
    });
    expect(reply.responses[0]!.message.content).toBe('Hello there');
    expect(reply.responses[0]!.finish_reason).toBe('stop');
    expect(reply.usage).toEqual({ input_tokens: 5, output_tokens: 2 });
    const sent = upstream.requests.at(-1)!.body as { max_tokens: number; temperature: number; stream?: boolean };
    expect(sent).toMatchObject({ max_tokens: 50, temperature: 0.2 });
    expect(sent.stream ?? false).toBe(false);
  });

  it('maps errors to their classes, with type, param and the request id', async () => {
    const unknown = await client.chat.create({ model: 'nope', messages: question }).catch((error: unknown) => error);
    expect(unknown).toBeInstanceOf(NotFoundError);
    expect(unknown).toMatchObject({ status: 404, type: 'not_found_error', param: 'model' });
    expect((unknown as OcularError).requestId).toMatch(/^[\w.:-]+$/);

    const invalid = await client.chat
      .create({ messages: [{ role: 'user', content: 42 as unknown as string }] })
      .catch((error: unknown) => error);
    expect(invalid).toBeInstanceOf(BadRequestError);
    expect(invalid).toMatchObject({ status: 400, type: 'validation_error', param: 'messages.0.content' });

    const anonymous = new Ocular({ apiKey: 'ocu_wrong_key_0000000000000', baseURL: ocular.url, maxRetries: 0 });
    const denied = await anonymous.chat.create({ messages: question }).catch((error: unknown) => error);
    expect(denied).toBeInstanceOf(AuthenticationError);
    expect(denied).toMatchObject({ status: 401, type: 'authentication_error' });
    expect((denied as OcularError).requestId).toBeDefined();

    upstream.behave((_request, response) => sendJson(response, 500, { error: { message: 'upstream broke' } }));
    const failed = await client.chat.create({ messages: question }).catch((error: unknown) => error);
    expect(failed).toBeInstanceOf(InternalServerError);
    expect((failed as OcularError).status).toBeGreaterThanOrEqual(500);
  });
});

describe('chat.createStream', () => {
  it('streams chunks, text deltas and the final text and usage', async () => {
    upstream.behave((_request, response) => streamCompletion(response, ['Hel', 'lo ', 'wör', 'ld'], { usage: [9, 4] }));
    const stream = await client.chat.createStream({ messages: question });
    expect(stream.requestId).toBeDefined();
    const deltas: string[] = [];
    for await (const delta of stream.textDeltas()) deltas.push(delta);
    expect(deltas.join('')).toBe('Hello wörld');
    expect(deltas.length).toBeGreaterThan(1);
    const final = await stream.finalResult();
    expect(final).toMatchObject({ text: 'Hello wörld', finishReason: 'stop', usage: { input_tokens: 9, output_tokens: 4 } });
    expect((upstream.requests.at(-1)!.body as { stream: boolean }).stream).toBe(true);
  });

  it('gives the final result without iterating, and cannot be iterated twice', async () => {
    upstream.behave((_request, response) => streamCompletion(response, ['a', 'b', 'c']));
    const stream = await client.chat.createStream({ messages: question });
    expect((await stream.finalResult()).text).toBe('abc');
    await expect(async () => {
      for await (const _chunk of stream) {
        // never reached
      }
    }).rejects.toMatchObject({ type: 'stream_consumed' });
  });

  it('abort() ends the iteration and cancels the request upstream', async () => {
    const closed = streamSlowlyUntilClosed();
    const stream = await client.chat.createStream({ messages: question });
    let chunks = 0;
    const started = Date.now();
    for await (const _chunk of stream) {
      chunks += 1;
      if (chunks === 3) stream.abort();
    }
    expect(chunks).toBe(3);
    expect(stream.aborted).toBe(true);
    await closed; // the upstream request was cancelled through Ocular, long before its 4 s
    expect(Date.now() - started).toBeLessThan(3_000);
    await expect(stream.finalResult()).rejects.toBeInstanceOf(APIUserAbortError);
  });

  it('a caller signal aborts the stream; breaking out of the loop cancels it too', async () => {
    let closed = streamSlowlyUntilClosed();
    const controller = new AbortController();
    const stream = await client.chat.createStream({ messages: question }, { signal: controller.signal });
    for await (const _chunk of stream) controller.abort();
    expect(stream.aborted).toBe(true);
    await closed;

    closed = streamSlowlyUntilClosed();
    const second = await client.chat.createStream({ messages: question });
    for await (const _chunk of second) break;
    await closed;
  });

  it('rejects before streaming on an HTTP error, and throws a stream error while iterating', async () => {
    await expect(client.chat.createStream({ model: 'nope', messages: question })).rejects.toBeInstanceOf(NotFoundError);
    // The upstream dies mid-stream: Ocular sends an `event: error`, which the iteration throws, typed.
    upstream.behave((_request, response) => streamCompletion(response, ['partial ', 'answer'], { omitEnd: true }));
    const stream = await client.chat.createStream({ messages: question });
    const error = await (async () => {
      for await (const _chunk of stream) {
        // reading
      }
    })().catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(OcularError);
    expect((error as OcularError).type).toMatch(/_error$/);
    expect(stream.text).toBe('partial answer');
    await expect(stream.finalResult()).rejects.toBe(error);
  });
});

describe('models', () => {
  it('lists and gets models; an unknown one is NotFoundError', async () => {
    const models = await client.models.list();
    expect(models.map((model) => model.id)).toEqual(expect.arrayContaining(['flash', 'reka-flash']));
    expect(await client.models.get('flash')).toMatchObject({ id: 'flash' });
    await expect(client.models.get('absent')).rejects.toMatchObject({ status: 404, type: 'not_found_error' });
  });
});
