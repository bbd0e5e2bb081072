import { mkdtempSync, rmSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createServer, type Server, type ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { estimateTextTokens } from '../../src/conversations/context-window.ts';
import { memoryInstructions } from '../../src/conversations/memory.ts';
import { sendJson } from '../helpers/fake-upstream.ts';
import { makeAudio, makeVideo, removeMediaFixtures } from '../helpers/media-fixtures.ts';
import { startOcular, tamperSignature, type TestOcular } from '../helpers/ocular.ts';
import { completion, startOpenAiUpstream, streamCompletion } from '../helpers/openai-upstream.ts';
import { buildPdf, linesPage } from '../helpers/pdf-writer.ts';

const KEY_A = 'ocu_conv_a_0123456789abcdef';
const KEY_B = 'ocu_conv_b_0123456789abcdef';
/** An owner with no memory notes, so its system prompt is known exactly (trimming arithmetic). */
const KEY_C = 'ocu_conv_c_0123456789abcdef';
const MAX_ASSET_BYTES = 2 * 1024 * 1024;
/** `tiny-ctx`: room for the current turn and little history. */
const TINY_CONTEXT = 2600;
const MAX_TOKENS = 512;
const MEDIA_TOKENS = 1000;

interface WireAsset {
  key: string;
  kind: string;
  mime_type: string;
  size: number;
  width: number | null;
  height: number | null;
  duration_seconds: number | null;
  created_at: string;
  url: string;
}

interface WireAnswer {
  id: string;
  role: 'assistant';
  content: string;
  model: string;
  finish_reason: string;
  usage: { input_tokens: number; output_tokens: number };
  latency_ms: number;
  sources: Array<{ index: number; title: string; url: string }>;
}

interface WireConversation {
  uuid: string;
  type: string;
  title: string | null;
  model: string | null;
  turn_count: number;
  usage: { input_tokens: number; output_tokens: number };
  messages?: Array<{ id: string; role: string; content: string; imageList?: string[]; model?: string; finish_reason?: string }>;
}

interface UpstreamMessage {
  role: string;
  content: string | Array<{ type: string; text?: string; image_url?: { url: string } }>;
}

let upstream: Awaited<ReturnType<typeof startOpenAiUpstream>>;
let ocular: TestOcular;
/** No search backend, memory off. */
let plain: TestOcular;
let searchServer: Server;
let pagesServer: Server;
let searchRequests: string[] = [];

function listen(server: Server): Promise<number> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)));
}

function call(method: string, path: string, key = KEY_A, body?: unknown, server = ocular): Promise<Response> {
  return fetch(server.url + path, {
    method,
    headers: { 'API-KEY': key, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
}

async function expectError(response: Response, status: number, type: string, param?: string): Promise<void> {
  const body = (await response.json()) as { error: { type: string; param?: string } };
  expect(response.status, JSON.stringify(body)).toBe(status);
  expect(body.error.type).toBe(type);
  if (param !== undefined) expect(body.error.param).toBe(param);
}

function jpeg(width: number, height: number, colour: string): Promise<Buffer> {
  return sharp({ create: { width, height, channels: 3, background: colour } })
    .jpeg()
    .toBuffer();
}

function uploadForm(data: Buffer | string, field = 'asset', name = 'file.bin'): FormData {
  const body = new FormData();
  const bytes = typeof data === 'string' ? new TextEncoder().encode(data) : new Uint8Array(data);
  body.append(field, new Blob([bytes]), name);
  return body;
}

function upload(body: FormData, key = KEY_A, server = ocular): Promise<Response> {
  return fetch(`${server.url}/api/assets`, { method: 'POST', headers: { 'API-KEY': key }, body });
}

async function uploadAsset(data: Buffer, key = KEY_A, name = 'photo.jpg'): Promise<WireAsset> {
  const response = await upload(uploadForm(data, 'asset', name), key);
  const text = await response.text();
  expect(response.status, text).toBe(200);
  return (JSON.parse(text) as { asset: WireAsset }).asset;
}

function feature(body: Record<string, unknown>, key = KEY_A, query = '', headers: Record<string, string> = {}, signal?: AbortSignal) {
  return fetch(`${ocular.url}/api/features${query}`, {
    method: 'POST',
    headers: { 'API-KEY': key, 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
    ...(signal ? { signal } : {}),
  });
}

function turnBody(
  prompt: string,
  fields: { conversationId?: string | null; model?: string; imageList?: string[]; [name: string]: unknown } = {},
) {
  const { conversationId = null, model, imageList = [], ...promptFields } = fields;
  return { type: 'CHAT_WITH_IMAGE', conversationId, ...(model ? { model } : {}), promptObject: { prompt, imageList, ...promptFields } };
}

async function ask(prompt: string, fields: Parameters<typeof turnBody>[1] = {}, key = KEY_A) {
  const response = await feature(turnBody(prompt, fields), key);
  const text = await response.text();
  expect(response.status, text).toBe(200);
  return JSON.parse(text) as { conversationId: string; title: string | null; message: WireAnswer };
}

/** The chat messages of the upstream's latest request, and its model. */
function lastUpstream(): { model: string; messages: UpstreamMessage[] } {
  return upstream.requests.at(-1)!.body as { model: string; messages: UpstreamMessage[] };
}

const textOf = (message: UpstreamMessage): string =>
  typeof message.content === 'string'
    ? message.content
    : message.content
        .filter((part) => part.type === 'text')
        .map((part) => part.text)
        .join('\n');

const imagesOf = (message: UpstreamMessage): string[] =>
  typeof message.content === 'string' ? [] : message.content.filter((part) => part.type === 'image_url').map((part) => part.image_url!.url);

async function imageSize(dataUrl: string): Promise<[number, number]> {
  const metadata = await sharp(Buffer.from(dataUrl.slice(dataUrl.indexOf(',') + 1), 'base64')).metadata();
  return [metadata.width!, metadata.height!];
}

const answerWith = (text: string, usage: [number, number] = [50, 9]) =>
  upstream.behave((_request, response) => sendJson(response, 200, completion(text, { usage })));

beforeAll(async () => {
  upstream = await startOpenAiUpstream();
  searchServer = createServer((request, response) => {
    searchRequests.push(request.url ?? '');
    const pages = `http://127.0.0.1:${(pagesServer.address() as AddressInfo).port}`;
    const blocked = `http://127.0.0.1:${(searchServer.address() as AddressInfo).port}/not-allowed`;
    sendJson(response, 200, {
      query: 'q',
      results: [
        { url: `${pages}/moon`, title: 'Moon facts', content: 'snippet about the moon' },
        { url: blocked, title: 'Private page', content: 'the snippet stands in for a page that may not be fetched' },
        { url: `${pages}/missing`, title: 'Gone', content: '' },
        { url: `${pages}/plain`, title: 'Plain text', content: 'plain snippet' },
      ],
    });
  });
  pagesServer = createServer((request, response) => {
    if (request.url === '/moon') {
      const words = Array.from({ length: 400 }, (_, index) => `lunar${index}`).join(' ');
      response.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      response.end(
        `<!doctype html><html><head><title>Moon</title><script>var secret = "script text";</script></head><body>` +
          `<nav>Menu Home About</nav><article><h1>The Moon</h1><p>The Moon orbits the Earth every 27 days. ${words}</p>` +
          `<p>It is the fifth largest moon in the Solar System and has no atmosphere to speak of at all.</p></article></body></html>`,
      );
    } else if (request.url === '/plain') {
      response.writeHead(200, { 'content-type': 'text/plain' });
      response.end('Tides are caused by the Moon.');
    } else {
      response.writeHead(404);
      response.end();
    }
  });
  const [searchPort, pagesPort] = await Promise.all([listen(searchServer), listen(pagesServer)]);
  const model = (id: string, upstreamModel: string, extra: Record<string, unknown> = {}) => ({
    id,
    provider: 'openai-compatible',
    baseUrl: `${upstream.url}/v1`,
    model: upstreamModel,
    maxRetries: 0,
    ...extra,
  });
  const base = {
    models: [
      model('vision-a', 'up-a'),
      model('vision-b', 'up-b'),
      model('text-only', 'up-text', { capabilities: { image: false } }),
      model('tiny-ctx', 'up-tiny'),
    ],
    media: { maxBytes: MAX_ASSET_BYTES, allowHosts: [`127.0.0.1:${pagesPort}`] },
    indexing: { vad: { enabled: false }, labels: { enabled: false } },
    limits: { maxMediaPerTurn: 3 },
    conversations: {
      modelContextTokens: { 'tiny-ctx': TINY_CONTEXT },
      maxTokens: MAX_TOKENS,
      mediaTokens: MEDIA_TOKENS,
      maxAssetSeconds: 10,
    },
  };
  ocular = await startOcular(
    { ...base, search: { provider: `http://127.0.0.1:${searchPort}/search?q={query}&format=json` }, memory: { enabled: true } },
    { envApiKeys: [KEY_A, KEY_B, KEY_C] },
  );
  plain = await startOcular({ ...base, conversations: { ...base.conversations, maxTurns: 2 } }, { envApiKeys: [KEY_A] });
}, 60_000);

afterAll(async () => {
  await Promise.all([ocular?.close(), plain?.close(), upstream?.close()]);
  searchServer?.close();
  pagesServer?.close();
  removeMediaFixtures();
});

describe('assets', () => {
  it('stores an image, normalised, with a signed URL; the API-KEY header authenticates', async () => {
    const asset = await uploadAsset(await jpeg(3000, 1000, '#c03020'));
    expect(asset).toMatchObject({ kind: 'image', mime_type: 'image/jpeg', width: 1568, height: 523 });
    expect(asset.size).toBeGreaterThan(0);
    const file = await fetch(asset.url);
    expect(file.status).toBe(200);
    expect(file.headers.get('content-type')).toBe('image/jpeg');
    expect((await sharp(Buffer.from(await file.arrayBuffer())).metadata()).width).toBe(1568);
    expect((await fetch(tamperSignature(asset.url))).status).toBe(403);

    const fetched = (await (await call('GET', `/api/assets/${asset.key}`)).json()) as { asset: WireAsset };
    expect(fetched.asset).toMatchObject({ key: asset.key, width: 1568 });
    // Also with the usual headers.
    expect((await fetch(`${ocular.url}/api/assets/${asset.key}`, { headers: { authorization: `Bearer ${KEY_A}` } })).status).toBe(200);
    await expectError(await fetch(`${ocular.url}/api/assets/${asset.key}`), 401, 'authentication_error');
    await expectError(
      await fetch(`${ocular.url}/api/assets/${asset.key}`, { headers: { 'API-KEY': 'wrong' } }),
      401,
      'authentication_error',
    );
  });

  it('takes PDFs and short videos, and refuses what is not media', async () => {
    const pdf = await uploadAsset(buildPdf([linesPage('Quarterly report')]), KEY_A, 'report.pdf');
    expect(pdf).toMatchObject({ kind: 'pdf', mime_type: 'application/pdf', width: null });
    const clip = await uploadAsset(await readFile(await makeVideo({ seconds: 1, width: 96, height: 64 })), KEY_A, 'clip.mp4');
    expect(clip).toMatchObject({ kind: 'video', width: 96, height: 64 });
    expect(clip.duration_seconds).toBeGreaterThan(0.5);
    const long = await makeVideo({ seconds: 12, width: 32, height: 32 });
    await expectError(await upload(uploadForm(await readFile(long), 'asset', 'long.mp4')), 400, 'validation_error');
  }, 30_000);

  it.each([
    ['a text file', () => uploadForm('just some text'), 415, 'unsupported_media_type'],
    ['an empty file', () => uploadForm(Buffer.alloc(0)), 400, 'validation_error'],
    ['a file under another field', () => uploadForm(Buffer.from('x'), 'image'), 400, 'validation_error'],
    ['no file at all', () => new FormData(), 400, 'validation_error'],
    ['a file over media.maxBytes', () => uploadForm(Buffer.alloc(MAX_ASSET_BYTES + 10, 1)), 413, 'payload_too_large'],
  ] as const)('refuses %s', async (_, body, status, type) => {
    await expectError(await upload(body()), status, type);
  });

  it('refuses a corrupt image and a JSON body', async () => {
    const broken = (await jpeg(64, 64, '#00ff00')).subarray(0, 200);
    await expectError(await upload(uploadForm(broken)), 415, 'unsupported_media_type');
    await expectError(await call('POST', '/api/assets', KEY_A, { asset: 'x' }), 415, 'unsupported_media_type');
  });

  it("keeps each owner's assets apart, and deletes", async () => {
    const asset = await uploadAsset(await jpeg(40, 40, '#123456'));
    await expectError(await call('GET', `/api/assets/${asset.key}`, KEY_B), 404, 'not_found_error');
    await expectError(await call('DELETE', `/api/assets/${asset.key}`, KEY_B), 404, 'not_found_error');
    await expectError(await call('GET', '/api/assets/not-a-key'), 404, 'not_found_error');
    expect((await call('DELETE', `/api/assets/${asset.key}`)).status).toBe(200);
    await expectError(await call('GET', `/api/assets/${asset.key}`), 404, 'not_found_error');
    expect((await fetch(asset.url)).status).toBe(404);
  });
});

describe('conversations', () => {
  it('creates, lists (paginated), shows, exports and deletes', async () => {
    const created = (await (
      await call('POST', '/api/conversations', KEY_B, { type: 'CHAT_WITH_IMAGE', title: 'Holiday photos', model: 'vision-b' })
    ).json()) as {
      conversation: WireConversation;
    };
    expect(created.conversation).toMatchObject({ type: 'CHAT_WITH_IMAGE', title: 'Holiday photos', model: 'vision-b', turn_count: 0 });
    const id = created.conversation.uuid;
    answerWith('A beach at sunset.', [30, 5]);
    const turn = await ask('What is in the picture?', { conversationId: id }, KEY_B);
    expect(turn.conversationId).toBe(id);
    expect(lastUpstream().model).toBe('up-b'); // the conversation's model
    await ask('And the weather?', {}, KEY_B); // a second conversation, titled from its first prompt

    const first = (await (await call('GET', '/api/conversations?limit=1', KEY_B)).json()) as {
      conversations: WireConversation[];
      total: number;
    };
    expect(first.total).toBe(2);
    expect(first.conversations).toHaveLength(1);
    expect(first.conversations[0]!.title).toBe('And the weather?');
    const second = (await (await call('GET', '/api/conversations?limit=1&offset=1', KEY_B)).json()) as {
      conversations: WireConversation[];
    };
    expect(second.conversations[0]!.uuid).toBe(id);

    const shown = (await (await call('GET', `/api/conversations/${id}`, KEY_B)).json()) as { conversation: WireConversation };
    expect(shown.conversation.title).toBe('Holiday photos'); // a given title is kept
    expect(shown.conversation.usage).toEqual({ input_tokens: 30, output_tokens: 5 });
    expect(shown.conversation.messages!.map((message) => [message.role, message.content])).toEqual([
      ['user', 'What is in the picture?'],
      ['assistant', 'A beach at sunset.'],
    ]);

    const markdown = await call('GET', `/api/conversations/${id}/export`, KEY_B);
    expect(markdown.headers.get('content-type')).toMatch(/^text\/markdown/);
    const text = await markdown.text();
    expect(text).toContain('# Holiday photos');
    expect(text).toContain('A beach at sunset.');
    expect(text).toContain('vision-b');
    const json = (await (await call('GET', `/api/conversations/${id}/export?format=json`, KEY_B)).json()) as {
      conversation: WireConversation;
    };
    expect(json.conversation.messages).toHaveLength(2);
    await expectError(await call('GET', `/api/conversations/${id}/export?format=pdf`, KEY_B), 400, 'validation_error');

    await expectError(await call('GET', `/api/conversations/${id}`, KEY_A), 404, 'not_found_error');
    await expectError(await call('DELETE', `/api/conversations/${id}`, KEY_A), 404, 'not_found_error');
    expect((await call('DELETE', `/api/conversations/${id}`, KEY_B)).status).toBe(200);
    await expectError(await call('GET', `/api/conversations/${id}`, KEY_B), 404, 'not_found_error');
  });

  it.each([
    ['a wrong type', { type: 'CHAT' }, 400, 'validation_error'],
    ['no type', { title: 'x' }, 400, 'validation_error'],
    ['a title that is not a string', { type: 'CHAT_WITH_IMAGE', title: 5 }, 400, 'validation_error'],
    ['an unknown model', { type: 'CHAT_WITH_IMAGE', model: 'nope' }, 404, 'not_found_error'],
  ] as const)('refuses to create one with %s', async (_, body, status, type) => {
    await expectError(await call('POST', '/api/conversations', KEY_A, body), status, type);
  });

  it('refuses bad list parameters and unknown ids', async () => {
    await expectError(await call('GET', '/api/conversations?limit=0'), 400, 'validation_error');
    await expectError(await call('GET', '/api/conversations?limit=1000'), 400, 'validation_error');
    await expectError(await call('GET', '/api/conversations/not-a-uuid'), 404, 'not_found_error');
    await expectError(await call('GET', `/api/conversations/${crypto.randomUUID()}/export`), 404, 'not_found_error');
  });
});

describe('POST /api/features', () => {
  it('keeps the context: later turns carry earlier ones in order, with their images, and may switch models', async () => {
    const red = await uploadAsset(await jpeg(64, 48, '#d02020'));
    const blue = await uploadAsset(await jpeg(40, 90, '#2020d0'));
    answerWith('A red rectangle.', [100, 4]);
    const first = await ask('Describe this image.', { imageList: [red.key], isMixed: true });
    expect(first.title).toBe('Describe this image.');
    expect(first.message).toMatchObject({ role: 'assistant', content: 'A red rectangle.', model: 'vision-a', finish_reason: 'stop' });
    expect(first.message.usage).toEqual({ input_tokens: 100, output_tokens: 4 });
    expect(first.message.latency_ms).toBeGreaterThanOrEqual(0);
    expect(lastUpstream().model).toBe('up-a');

    answerWith('A blue one.', [200, 3]);
    await ask('And this one?', { conversationId: first.conversationId, imageList: [blue.key] });

    answerWith('The first image was red.', [300, 6]);
    const third = await ask('What colour was the first image?', { conversationId: first.conversationId, model: 'vision-b' });
    expect(third.message.model).toBe('vision-b');
    const sent = lastUpstream();
    expect(sent.model).toBe('up-b');
    const chat = sent.messages.filter((message) => message.role !== 'system');
    expect(chat.map((message) => [message.role, textOf(message)])).toEqual([
      ['user', 'Describe this image.'],
      ['assistant', 'A red rectangle.'],
      ['user', 'And this one?'],
      ['assistant', 'A blue one.'],
      ['user', 'What colour was the first image?'],
    ]);
    // The first image still goes with the first turn, the second with the second.
    expect(imagesOf(chat[0]!)).toHaveLength(1);
    expect(await imageSize(imagesOf(chat[0]!)[0]!)).toEqual([64, 48]);
    expect(await imageSize(imagesOf(chat[2]!)[0]!)).toEqual([40, 90]);
    expect(imagesOf(chat[4]!)).toEqual([]);

    const shown = (await (await call('GET', `/api/conversations/${first.conversationId}`)).json()) as { conversation: WireConversation };
    expect(shown.conversation.turn_count).toBe(3);
    expect(shown.conversation.usage).toEqual({ input_tokens: 600, output_tokens: 13 });
    expect(shown.conversation.messages!.filter((message) => message.role === 'assistant').map((message) => message.model)).toEqual([
      'vision-a',
      'vision-a',
      'vision-b',
    ]);
    expect(shown.conversation.messages![0]!.imageList).toEqual([red.key]);

    // The next turn without a model stays on the conversation's own (the one it was opened with).
    answerWith('ok');
    await ask('Thanks.', { conversationId: first.conversationId });
    expect(lastUpstream().model).toBe('up-a');

    // An asset deleted since is named, not sent.
    expect((await call('DELETE', `/api/assets/${red.key}`)).status).toBe(200);
    await ask('Once more.', { conversationId: first.conversationId });
    const after = lastUpstream().messages.filter((message) => message.role !== 'system');
    expect(imagesOf(after[0]!)).toEqual([]);
    expect(textOf(after[0]!)).toContain(red.key);
  });

  it('trims history to the model context: old images first, then the oldest turns', async () => {
    const answer = 'B'.repeat(400);
    answerWith(answer);
    const image = () => jpeg(32, 32, '#808080');
    const one = await ask('first turn', { model: 'tiny-ctx', imageList: [(await uploadAsset(await image(), KEY_C)).key] }, KEY_C);
    const id = one.conversationId;
    // Both images do not fit: the first turn's goes, its text stays.
    await ask('second turn', { conversationId: id, imageList: [(await uploadAsset(await image(), KEY_C)).key] }, KEY_C);
    let chat = lastUpstream().messages.filter((message) => message.role !== 'system');
    expect(chat.map(textOf)[0]).toContain('first turn');
    expect(chat.map(textOf)[0]).toContain('left out');
    expect(imagesOf(chat[0]!)).toEqual([]);
    expect(imagesOf(chat[2]!)).toHaveLength(1);

    // A prompt that leaves room for one past turn's text, not two: the oldest turn goes.
    const system = estimateTextTokens(memoryInstructions([]));
    const pastTurn = estimateTextTokens('second turn') + estimateTextTokens(answer);
    const room = TINY_CONTEXT - MAX_TOKENS - system - pastTurn - 4 - 10;
    const prompt = `third ${'x'.repeat(room * 4 - 8)}`;
    await ask(prompt, { conversationId: id }, KEY_C);
    chat = lastUpstream().messages.filter((message) => message.role !== 'system');
    expect(chat.map(textOf)).toEqual(['second turn\n\n[1 attachment(s) of this message left out to fit the context]', answer, prompt]);

    // A prompt too long for the context on its own is refused, and nothing is stored.
    await expectError(
      await feature(turnBody('y'.repeat(TINY_CONTEXT * 4), { conversationId: id }), KEY_C),
      400,
      'validation_error',
      'promptObject.prompt',
    );
    const shown = (await (await call('GET', `/api/conversations/${id}`, KEY_C)).json()) as { conversation: WireConversation };
    expect(shown.conversation.turn_count).toBe(3);
  });

  it('streams server-sent events, then a final event with the message id and usage', async () => {
    upstream.behave((_request, response) => streamCompletion(response, ['Hel', 'lo ', 'world'], { usage: [21, 3] }));
    const response = await feature(turnBody('Say hello'), KEY_A, '?isStreaming=true', { accept: 'text/event-stream' });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const text = await response.text();
    const events = text
      .split('\n\n')
      .filter((block) => block.trim() !== '')
      .map((block) => ({
        event: /^event: (.+)$/m.exec(block)?.[1],
        data: JSON.parse(/^data: (.+)$/m.exec(block)![1]!) as Record<string, unknown>,
      }));
    expect(events[0]!.event).toBe('start');
    expect(
      events
        .filter((event) => event.event === 'delta')
        .map((event) => event.data.text)
        .join(''),
    ).toBe('Hello world');
    const done = events.at(-1)!;
    expect(done.event).toBe('done');
    expect(done.data).toMatchObject({ finish_reason: 'stop', usage: { input_tokens: 21, output_tokens: 3 }, model: 'vision-a' });
    expect(done.data.messageId).toBe(response.headers.get('x-message-id'));
    const shown = (await (await call('GET', `/api/conversations/${done.data.conversationId as string}`)).json()) as {
      conversation: WireConversation;
    };
    expect(shown.conversation.messages![1]).toMatchObject({ id: done.data.messageId, content: 'Hello world', finish_reason: 'stop' });
  });

  it('streams plain text to a client that does not ask for events', async () => {
    upstream.behave((_request, response) => streamCompletion(response, ['Plain ', 'text.']));
    const response = await feature(turnBody('Say something'), KEY_A, '?isStreaming=true');
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^text\/plain/);
    expect(await response.text()).toBe('Plain text.');
    const id = response.headers.get('x-conversation-id')!;
    const shown = (await (await call('GET', `/api/conversations/${id}`)).json()) as { conversation: WireConversation };
    expect(shown.conversation.messages![1]).toMatchObject({ id: response.headers.get('x-message-id'), content: 'Plain text.' });
  });

  it('a client that goes away mid-stream aborts the upstream, and the partial answer is kept as cancelled', async () => {
    let upstreamClosed!: () => void;
    const closed = new Promise<void>((resolve) => (upstreamClosed = resolve));
    upstream.behave(async (_request, response: ServerResponse) => {
      response.once('close', () => upstreamClosed());
      await streamCompletion(
        response,
        Array.from({ length: 200 }, (_, index) => `w${index} `),
        { delayMs: 20, splitEvery: 40 },
      );
    });
    const controller = new AbortController();
    const response = await feature(turnBody('Count slowly'), KEY_A, '?isStreaming=true', {}, controller.signal);
    const reader = response.body!.getReader();
    let received = '';
    while (!received.includes('w3 ')) received += new TextDecoder().decode((await reader.read()).value);
    controller.abort();
    await closed;
    const id = response.headers.get('x-conversation-id')!;
    let answer: NonNullable<WireConversation['messages']>[number] | undefined;
    for (let attempt = 0; attempt < 100 && answer === undefined; attempt++) {
      const shown = (await (await call('GET', `/api/conversations/${id}`)).json()) as { conversation: WireConversation };
      answer = shown.conversation.messages?.[1];
      if (answer === undefined) await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(answer).toMatchObject({ finish_reason: 'cancelled' });
    expect(answer!.content.startsWith('w0 w1 w2 w3')).toBe(true);
    expect(answer!.content).not.toContain('w199');
  });

  it('answers with web search results, cited by number, read through the safe fetcher', async () => {
    answerWith('The Moon orbits every 27 days [1].');
    searchRequests = [];
    const result = await ask('How long is a lunar orbit?', { webSearch: true, numOfSite: 3, maxWord: 20 });
    expect(searchRequests).toHaveLength(1);
    expect(decodeURIComponent(searchRequests[0]!)).toContain('How long is a lunar orbit?');
    expect(result.message.sources.map((source) => [source.index, source.title])).toEqual([
      [1, 'Moon facts'],
      [2, 'Private page'],
      [3, 'Plain text'],
    ]);
    const prompt = textOf(lastUpstream().messages.at(-1)!);
    expect(prompt).toContain('[1] Moon facts');
    expect(prompt).toContain('The Moon orbits the Earth every 27 days');
    expect(prompt).not.toContain('script text');
    expect(prompt).not.toContain('lunar30'); // cut to maxWord words
    // The private page was refused by the fetcher: its snippet stands in.
    expect(prompt).toContain('[2] Private page');
    expect(prompt).toContain('the snippet stands in');
    expect(prompt).toContain('Tides are caused by the Moon.');
    expect(prompt).toContain('Question: How long is a lunar orbit?');
  });

  it('sends a PDF asset as /v1/chat sends PDFs, and leaves earlier images out for a model that cannot see them', async () => {
    const pdf = await uploadAsset(buildPdf([linesPage('Quarterly report: revenue rose 12 percent')]), KEY_A, 'report.pdf');
    const photo = await uploadAsset(await jpeg(30, 30, '#aa5500'));
    answerWith('Revenue rose.');
    const first = await ask('Summarise these.', { imageList: [pdf.key, photo.key] });
    const sent = lastUpstream().messages.at(-1)!;
    expect(textOf(sent)).toContain('Quarterly report: revenue rose 12 percent'); // the model takes no PDFs: their text
    expect(imagesOf(sent).length).toBeGreaterThanOrEqual(1);

    answerWith('Text only.');
    await ask('Again, briefly.', { conversationId: first.conversationId, model: 'text-only' });
    const chat = lastUpstream().messages.filter((message) => message.role !== 'system');
    expect(imagesOf(chat[0]!)).toEqual([]);
    expect(textOf(chat[0]!)).toContain('Quarterly report'); // the PDF's text still goes
    expect(textOf(chat[0]!)).toContain('not shown');
  });

  it('sends a video asset as frames to a model without video input; refuses audio it cannot hear', async () => {
    const clip = await uploadAsset(await readFile(await makeVideo({ seconds: 2, width: 64, height: 48 })), KEY_A, 'clip.mp4');
    answerWith('A short clip.');
    await ask('What happens in the clip?', { imageList: [clip.key] });
    const sent = lastUpstream().messages.at(-1)!;
    expect(imagesOf(sent).length).toBeGreaterThanOrEqual(2);
    expect(textOf(sent)).toContain('frame at');

    const tone = await uploadAsset(await readFile(await makeAudio({ seconds: 1, format: 'wav' })), KEY_A, 'tone.wav');
    expect(tone).toMatchObject({ kind: 'audio', mime_type: 'audio/wav', width: null });
    await expectError(
      await feature(turnBody('What is this sound?', { imageList: [tone.key] })),
      400,
      'validation_error',
      'promptObject.imageList.0',
    );
  }, 30_000);

  it('reports an upstream failure mid-stream as a last error event, and keeps the partial turn', async () => {
    upstream.behave((_request, response) => streamCompletion(response, ['Half an ', 'answer'], { omitEnd: true }));
    const response = await feature(turnBody('Tell me everything'), KEY_A, '?isStreaming=true', { accept: 'text/event-stream' });
    expect(response.status).toBe(200);
    const text = await response.text();
    expect(text).toContain('event: error');
    expect(text).not.toContain('event: done');
    const shown = (await (await call('GET', `/api/conversations/${response.headers.get('x-conversation-id')!}`)).json()) as {
      conversation: WireConversation;
    };
    expect(shown.conversation.messages![1]).toMatchObject({ content: 'Half an answer', finish_reason: 'error' });
  });

  it('finishes a stream whose conversation was deleted meanwhile without storing it', async () => {
    upstream.behave((_request, response) => streamCompletion(response, ['slow ', 'answer'], { delayMs: 30, splitEvery: 20 }));
    const response = await feature(turnBody('Take your time'), KEY_A, '?isStreaming=true', { accept: 'text/event-stream' });
    const id = response.headers.get('x-conversation-id')!;
    expect((await call('DELETE', `/api/conversations/${id}`)).status).toBe(200);
    const text = await response.text();
    expect(text).toContain('event: done');
    await expectError(await call('GET', `/api/conversations/${id}`), 404, 'not_found_error');
  });

  it('refuses a turn past conversations.maxTurns', async () => {
    answerWith('ok');
    const post = (body: unknown) =>
      fetch(`${plain.url}/api/features`, {
        method: 'POST',
        headers: { 'API-KEY': KEY_A, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
    const first = (await (await post(turnBody('one'))).json()) as { conversationId: string };
    expect((await post(turnBody('two', { conversationId: first.conversationId }))).status).toBe(200);
    await expectError(await post(turnBody('three', { conversationId: first.conversationId })), 400, 'validation_error', 'conversationId');
  });

  it('refuses web search without a backend, saying how to configure one', async () => {
    const response = await fetch(`${plain.url}/api/features`, {
      method: 'POST',
      headers: { 'API-KEY': KEY_A, 'content-type': 'application/json' },
      body: JSON.stringify(turnBody('news?', { webSearch: true })),
    });
    await expectError(response, 400, 'validation_error', 'promptObject.webSearch');
  });

  it('saves memory notes the model writes, hides them, and recalls them in later conversations', async () => {
    upstream.behave((_request, response) =>
      streamCompletion(response, ['Noted. <mem', 'ory>The user', "'s cat is called Miso</memory>", ' Anything else?'], { splitEvery: 3 }),
    );
    const response = await feature(turnBody('My cat is called Miso.'), KEY_B, '?isStreaming=true');
    expect(await response.text()).toBe('Noted.  Anything else?');
    const memory = (await (await call('GET', '/api/memory', KEY_B)).json()) as {
      enabled: boolean;
      memories: Array<{ id: string; text: string }>;
    };
    expect(memory.enabled).toBe(true);
    expect(memory.memories.map((note) => note.text)).toEqual(["The user's cat is called Miso"]);
    expect((await (await call('GET', '/api/memory', KEY_A)).json()) as { memories: unknown[] }).toMatchObject({ memories: [] });

    answerWith('Miso!');
    await ask("What is my cat's name?", {}, KEY_B);
    const system = lastUpstream().messages.find((message) => message.role === 'system')!;
    expect(textOf(system)).toContain("The user's cat is called Miso");

    await expectError(await call('DELETE', `/api/memory/${memory.memories[0]!.id}`, KEY_A), 404, 'not_found_error');
    expect(((await (await call('DELETE', '/api/memory', KEY_B)).json()) as { deleted: number }).deleted).toBe(1);
    expect(((await (await call('GET', '/api/memory', KEY_B)).json()) as { memories: unknown[] }).memories).toEqual([]);
  });

  it("keeps owners apart: another owner's conversation and assets are unknown", async () => {
    answerWith('ok');
    const mine = await ask('hello');
    const asset = await uploadAsset(await jpeg(20, 20, '#00aa00'));
    await expectError(
      await feature(turnBody('hi', { conversationId: mine.conversationId }), KEY_B),
      404,
      'not_found_error',
      'conversationId',
    );
    await expectError(await feature(turnBody('hi', { imageList: [asset.key] }), KEY_B), 404, 'not_found_error', 'promptObject.imageList.0');
    const listed = (await (await call('GET', '/api/conversations?limit=100', KEY_B)).json()) as { conversations: WireConversation[] };
    expect(listed.conversations.map((conversation) => conversation.uuid)).not.toContain(mine.conversationId);
  });

  it('does not keep a new conversation whose first turn failed upstream', async () => {
    upstream.behave((_request, response) => sendJson(response, 400, { error: { message: 'bad request upstream' } }));
    const before = ((await (await call('GET', '/api/conversations', KEY_B)).json()) as { total: number }).total;
    const response = await feature(turnBody('this fails'), KEY_B);
    expect(response.status).toBeGreaterThanOrEqual(400);
    expect(((await (await call('GET', '/api/conversations', KEY_B)).json()) as { total: number }).total).toBe(before);
  });

  const badRequests: Array<[string, () => Promise<unknown>, number, string, string?]> = [
    ['an empty prompt', async () => turnBody(''), 400, 'validation_error', 'promptObject.prompt'],
    ['a blank prompt', async () => turnBody('  \n '), 400, 'validation_error', 'promptObject.prompt'],
    ['no promptObject', async () => ({ type: 'CHAT_WITH_IMAGE' }), 400, 'validation_error', 'promptObject'],
    ['a wrong type', async () => ({ ...turnBody('hi'), type: 'TEXT' }), 400, 'validation_error', 'type'],
    [
      'an imageList that is no list',
      async () => ({ type: 'CHAT_WITH_IMAGE', promptObject: { prompt: 'hi', imageList: 'k' } }),
      400,
      'validation_error',
    ],
    ['an unknown field', async () => ({ ...turnBody('hi'), extra: 1 }), 400, 'validation_error'],
    [
      'an unknown asset key',
      async () => turnBody('hi', { imageList: [crypto.randomUUID()] }),
      404,
      'not_found_error',
      'promptObject.imageList.0',
    ],
    [
      'a malformed asset key',
      async () => turnBody('hi', { imageList: ['../etc/passwd'] }),
      404,
      'not_found_error',
      'promptObject.imageList.0',
    ],
    ['an unknown model', async () => turnBody('hi', { model: 'gpt-17' }), 404, 'not_found_error', 'model'],
    [
      'an unknown conversation',
      async () => turnBody('hi', { conversationId: crypto.randomUUID() }),
      404,
      'not_found_error',
      'conversationId',
    ],
    ['numOfSite 0', async () => turnBody('hi', { webSearch: true, numOfSite: 0 }), 400, 'validation_error', 'promptObject.numOfSite'],
    [
      'more assets than limits.maxMediaPerTurn',
      async () => {
        const keys = [];
        for (let index = 0; index < 4; index++) keys.push((await uploadAsset(await jpeg(16, 16, '#ffffff'))).key);
        return turnBody('hi', { imageList: keys });
      },
      400,
      'validation_error',
      'promptObject.imageList',
    ],
    [
      'an image for a model without image input',
      async () => turnBody('hi', { model: 'text-only', imageList: [(await uploadAsset(await jpeg(16, 16, '#000000'))).key] }),
      400,
      'validation_error',
      'promptObject.imageList.0',
    ],
  ];

  it.each(badRequests)('refuses %s (also when streaming)', async (_, body, status, type, param) => {
    const json = await body();
    await expectError(await feature(json as Record<string, unknown>), status, type, param);
    await expectError(
      await feature(json as Record<string, unknown>, KEY_A, '?isStreaming=true', { accept: 'text/event-stream' }),
      status,
      type,
      param,
    );
  });

  it('refuses a body that is not JSON and a bad isStreaming', async () => {
    await expectError(
      await fetch(`${ocular.url}/api/features`, {
        method: 'POST',
        headers: { 'API-KEY': KEY_A, 'content-type': 'application/json' },
        body: '{',
      }),
      400,
      'validation_error',
    );
    await expectError(await feature(turnBody('hi'), KEY_A, '?isStreaming=yes'), 400, 'validation_error');
  });
});

describe('configuration', () => {
  it('refuses conversations.modelContextTokens for a model that is not configured', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'ocular-conv-config-'));
    try {
      await expect(
        startOcular({ models: [], conversations: { modelContextTokens: { 'no-such-model': 4096 } } }, { envApiKeys: [KEY_A], dataDir }),
      ).rejects.toThrow(/conversations\.modelContextTokens/);
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

describe('GET /api/models', () => {
  it('lists the configured models with capabilities and context', async () => {
    const { models } = (await (await call('GET', '/api/models')).json()) as {
      models: Array<{
        id: string;
        provider: string;
        upstream_model: string;
        capabilities: Record<string, boolean>;
        context_tokens: number;
      }>;
    };
    expect(models.map((model) => model.id)).toEqual(['vision-a', 'vision-b', 'text-only', 'tiny-ctx']);
    expect(models[2]).toMatchObject({ provider: 'openai-compatible', upstream_model: 'up-text', capabilities: { image: false } });
    expect(models[3]!.context_tokens).toBe(TINY_CONTEXT);
    expect(models[0]!.context_tokens).toBe(32_768);
  });
});
