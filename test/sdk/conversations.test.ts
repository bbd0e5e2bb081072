// client.conversations, client.assets and client.memory against a real Ocular whose model is a fake
// OpenAI-compatible upstream over HTTP.
import type { ServerResponse } from 'node:http';
import sharp from 'sharp';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  APIUserAbortError,
  BadRequestError,
  ConversationStream,
  NotFoundError,
  Ocular,
  PayloadTooLargeError,
} from '../../src/sdk/index.ts';
import { sendJson } from '../helpers/fake-upstream.ts';
import { startOcular, type TestOcular } from '../helpers/ocular.ts';
import { completion, startOpenAiUpstream, streamCompletion } from '../helpers/openai-upstream.ts';

const KEY_A = 'ocu_sdk_conv_owner_a_0123456789';
const KEY_B = 'ocu_sdk_conv_owner_b_0123456789';

let upstream: Awaited<ReturnType<typeof startOpenAiUpstream>>;
let ocular: TestOcular;
let client: Ocular;
let other: Ocular;
let deltas: string[] = [];
let delayMs = 0;
let omitEnd = false;
let lastStream: ServerResponse | undefined;
/** The image parts the upstream received in its last request. */
let lastImages = 0;

beforeAll(async () => {
  upstream = await startOpenAiUpstream();
  upstream.behave(async (request, response) => {
    const body = request.body as { stream?: boolean; messages: Array<{ content: unknown }> };
    lastImages = (JSON.stringify(body.messages).match(/"type":"image_url"/g) ?? []).length;
    if (body.stream) {
      lastStream = response;
      return streamCompletion(response, deltas, { delayMs, omitEnd });
    }
    return sendJson(response, 200, completion('A red square.'));
  });
  ocular = await startOcular(
    {
      defaultModel: 'vision',
      models: [{ id: 'vision', provider: 'openai-compatible', baseUrl: `${upstream.url}/v1`, model: 'up', maxRetries: 0 }],
      media: { maxBytes: 200_000 },
    },
    { envApiKeys: [KEY_A, KEY_B] },
  );
  client = new Ocular({ apiKey: KEY_A, baseURL: ocular.url, maxRetries: 0 });
  other = new Ocular({ apiKey: KEY_B, baseURL: ocular.url, maxRetries: 0 });
}, 30_000);

afterAll(async () => {
  await ocular?.close();
  await upstream?.close();
});

beforeEach(() => {
  deltas = ['A red ', 'square ', 'on white.'];
  delayMs = 0;
  omitEnd = false;
});

const png = (color: string) =>
  sharp({ create: { width: 64, height: 48, channels: 3, background: color } })
    .png()
    .toBuffer();

describe('client.assets', () => {
  it('uploads a Blob, gets, lists and deletes it; another owner cannot see it', async () => {
    const asset = await client.assets.upload({
      file: new Blob([new Uint8Array(await png('#c03020'))], { type: 'image/png' }),
      fileName: 'red.png',
    });
    expect(asset).toMatchObject({ kind: 'image', width: 64, height: 48 });
    expect((await fetch(asset.url)).status).toBe(200);
    expect((await client.assets.get(asset.key)).key).toBe(asset.key);
    expect((await client.assets.list()).assets.map((item) => item.key)).toContain(asset.key);
    await expect(other.assets.get(asset.key)).rejects.toBeInstanceOf(NotFoundError);
    expect(await client.assets.delete(asset.key)).toMatchObject({ key: asset.key, deleted: true });
    await expect(client.assets.get(asset.key)).rejects.toBeInstanceOf(NotFoundError);
  });

  it('refuses a file that is not media (typed 4xx) and one over media.maxBytes (413)', async () => {
    const text = await client.assets.upload({ file: new Blob(['just text']), fileName: 'a.txt' }).catch((error: unknown) => error);
    expect((text as { status?: number }).status).toBeGreaterThanOrEqual(400);
    expect((text as { status?: number }).status).toBeLessThan(500);
    const big = await client.assets
      .upload({ file: new Blob([new Uint8Array(300_000)]), fileName: 'big.png' })
      .catch((error: unknown) => error);
    expect(big).toBeInstanceOf(PayloadTooLargeError);
  });
});

describe('client.conversations', () => {
  it('sends a turn with an image, continues it, gets, lists, exports and deletes the conversation', async () => {
    const asset = await client.assets.upload({ file: new Blob([new Uint8Array(await png('#c03020'))], { type: 'image/png' }) });
    const first = await client.conversations.send({ prompt: 'What is this?', imageList: [asset.key] });
    expect(first.message).toMatchObject({ role: 'assistant', content: 'A red square.' });
    expect(lastImages).toBe(1);
    const second = await client.conversations.send({ conversationId: first.conversationId, prompt: 'And its colour?' });
    expect(second.conversationId).toBe(first.conversationId);

    const conversation = await client.conversations.get(first.conversationId);
    expect(conversation.turn_count).toBe(2);
    expect(conversation.messages.map((message) => message.role)).toEqual(['user', 'assistant', 'user', 'assistant']);
    expect((await client.conversations.list()).conversations.map((item) => item.uuid)).toContain(first.conversationId);
    const markdown = await client.conversations.export(first.conversationId);
    expect(markdown).toContain('And its colour?');
    expect((await client.conversations.export(first.conversationId, { format: 'json' })).messages).toHaveLength(4);

    await expect(other.conversations.get(first.conversationId)).rejects.toBeInstanceOf(NotFoundError);
    await expect(other.conversations.send({ conversationId: first.conversationId, prompt: 'x' })).rejects.toBeInstanceOf(NotFoundError);
    expect(await client.conversations.delete(first.conversationId)).toMatchObject({ uuid: first.conversationId, deleted: true });
    await expect(client.conversations.get(first.conversationId)).rejects.toBeInstanceOf(NotFoundError);
  });

  it('creates an empty conversation with a title; bad params are typed 400s', async () => {
    const created = await client.conversations.create({ title: 'Shapes' });
    expect(created).toMatchObject({ title: 'Shapes', turn_count: 0 });
    await expect(client.conversations.send({ prompt: '   ' })).rejects.toBeInstanceOf(BadRequestError);
    await expect(client.conversations.send({ prompt: 'x', numOfSite: 99 })).rejects.toBeInstanceOf(BadRequestError);
    await expect(client.conversations.send({ prompt: 'x', imageList: ['no-such-asset'] })).rejects.toBeInstanceOf(NotFoundError);
  });

  it('sendStream yields the text deltas, then the ids, model and usage', async () => {
    const stream = await client.conversations.sendStream({ prompt: 'Describe it.' });
    expect(stream).toBeInstanceOf(ConversationStream);
    const pieces: string[] = [];
    for await (const delta of stream) pieces.push(delta);
    expect(pieces.join('')).toBe('A red square on white.');
    const result = await stream.finalResult();
    expect(result).toMatchObject({ text: 'A red square on white.', conversationId: stream.conversationId, messageId: stream.messageId });
    expect(result.usage.output_tokens).toBeGreaterThan(0);
    const saved = await client.conversations.get(result.conversationId);
    expect(saved.messages.at(-1)).toMatchObject({ role: 'assistant', content: 'A red square on white.' });
  });

  it('abort() ends the stream quietly and stops the upstream; a broken upstream rejects with a typed error', async () => {
    deltas = Array.from({ length: 200 }, (_, index) => `word${index} `);
    delayMs = 20;
    const stream = await client.conversations.sendStream({ prompt: 'Go on.' });
    let seen = 0;
    let closed: Promise<void> | undefined;
    for await (const _delta of stream) {
      if (++seen === 2) {
        const response = lastStream!;
        closed = new Promise<void>((resolve) => (response.destroyed ? resolve() : response.once('close', resolve)));
        stream.abort();
      }
    }
    expect(seen).toBe(2);
    await expect(stream.finalResult()).rejects.toBeInstanceOf(APIUserAbortError);
    await closed;
    expect(lastStream!.writableFinished).toBe(false);

    delayMs = 0;
    deltas = ['partial '];
    omitEnd = true;
    const broken = await client.conversations.sendStream({ prompt: 'Again.' });
    const failure = await broken.finalResult().catch((error: unknown) => error);
    expect((failure as { type?: string }).type).toMatch(/_error$/);
  });
});

describe('client.memory', () => {
  it('lists memories (off by default) and deletes them; an unknown id is a 404', async () => {
    const page = await client.memory.list();
    expect(page).toMatchObject({ enabled: false, memories: [], total: 0 });
    expect((await client.memory.delete()).deleted).toBe(0);
    await expect(client.memory.delete('no-such-memory')).rejects.toBeInstanceOf(NotFoundError);
  });
});
