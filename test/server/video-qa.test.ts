import { mkdirSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { environmentKeyOwner } from '../../src/store/api-keys.ts';
import { VideoStore } from '../../src/store/video-store.ts';
import { VideoSummaryStore } from '../../src/store/video-summary-store.ts';
import { sendJson, startFakeUpstream, type FakeUpstream, type RecordedRequest } from '../helpers/fake-upstream.ts';
import { insertIndexedVideo, type FixtureSegment, type FixtureVideo } from '../helpers/library-fixtures.ts';
import { makeVideo, removeMediaFixtures } from '../helpers/media-fixtures.ts';
import { readSseData, startOcular, TEST_KEY, type TestOcular } from '../helpers/ocular.ts';
import { completion, startOpenAiUpstream, streamCompletion } from '../helpers/openai-upstream.ts';

const KEY_B = 'ocu_qa_owner_b_0123456789abcdef';
const SUMMARY_TEXT = 'A synthetic test pattern with a moving clock.';

let upstream: Awaited<ReturnType<typeof startOpenAiUpstream>>;
/** Serves the generated video at /pattern.mp4: the "remote" host of `video_url` requests (allowed in media.allowHosts). */
let mediaHost: FakeUpstream;
let patternVideo: Buffer;
let ocular: TestOcular;
/** What the fake model answers to a QA question (captions and summaries get their own answers). */
let answer = 'It launches at [00:12].';
let streamDeltas: string[] = [];
let streamDelayMs = 0;
let streamOmitEnd = false;
/** The upstream's last streamed response, to see whether it was cut short. */
let lastStream: ServerResponse | undefined;

interface UpstreamMessage {
  role: string;
  content: string | Array<{ type: string; text?: string; image_url?: { url: string } }>;
}

const textOf = (message: UpstreamMessage): string =>
  typeof message.content === 'string' ? message.content : message.content.map((part) => part.text ?? '').join('\n');

/** The QA requests the upstream received (not captions or summaries). */
function qaRequests(): Array<{ model: string; messages: UpstreamMessage[] }> {
  return upstream.requests
    .map((request) => request.body as { model: string; messages: UpstreamMessage[] })
    .filter((body) => body?.messages?.[0]?.role === 'system' && textOf(body.messages[0]).includes('questions about one video'));
}

function insertVideo(segments: readonly FixtureSegment[], video: FixtureVideo = {}, key = TEST_KEY): Promise<string> {
  return ocular.withDatabase((database) => insertIndexedVideo(new VideoStore(database), environmentKeyOwner(key), segments, video));
}

function ask(body: unknown, key = TEST_KEY, signal?: AbortSignal): Promise<Response> {
  return ocular.post('/v1/qa/chat', body, { 'x-api-key': key }, signal);
}

async function expectError(response: Response, status: number, type: string): Promise<void> {
  const body = (await response.json()) as { error: { type: string; message: string } };
  expect({ status: response.status, type: body.error.type }).toEqual({ status, type });
  expect(body.error.message).not.toBe('');
}

/** Six 5-second segments; the third (00:10-00:15) is about the launch, the fifth about a recipe. */
const SEGMENTS: FixtureSegment[] = [
  { caption: 'A presenter stands in a studio.', transcript: 'welcome to the show' },
  { caption: 'A map of the coast.', ocrText: 'WEATHER TODAY' },
  { caption: 'A rocket on a launch pad.', ocrText: 'QUARTZ FALCON', transcript: 'the quartz falcon launches at dawn' },
  { caption: 'Crowds watch from a beach.' },
  { caption: 'A kitchen counter with tomatoes.', ocrText: 'TOMATO SOUP', transcript: 'chop the tomatoes finely' },
  { caption: 'Credits roll.', ocrText: 'THE END' },
];

beforeAll(async () => {
  upstream = await startOpenAiUpstream();
  upstream.behave(async (request: RecordedRequest, response) => {
    const body = request.body as { stream?: boolean; messages: UpstreamMessage[] };
    const all = body.messages.map(textOf).join('\n');
    if (all.includes('Write a summary of the whole video')) return sendJson(response, 200, completion(SUMMARY_TEXT));
    if (!all.includes('questions about one video')) return sendJson(response, 200, completion('A test pattern.'));
    if (body.stream) {
      lastStream = response;
      return streamCompletion(response, streamDeltas, { splitEvery: 5, delayMs: streamDelayMs, omitEnd: streamOmitEnd });
    }
    return sendJson(response, 200, completion(answer));
  });
  patternVideo = await readFile(await makeVideo({ seconds: 2, width: 160, height: 120 }));
  mediaHost = await startFakeUpstream((request, response) => {
    if (request.url !== '/pattern.mp4') return sendJson(response, 404, {});
    response.writeHead(200, { 'content-type': 'video/mp4', 'content-length': patternVideo.length });
    response.end(patternVideo);
  });
  const model = (id: string, extra: Record<string, unknown> = {}) => ({
    id,
    provider: 'openai-compatible',
    baseUrl: `${upstream.url}/v1`,
    model: `upstream-${id}`,
    maxRetries: 0,
    ...extra,
  });
  ocular = await startOcular(
    {
      models: [model('vision'), model('text-only', { capabilities: { image: false } })],
      indexing: {
        captionModel: 'vision',
        ocr: { enabled: false },
        objects: { enabled: false },
        vad: { enabled: false },
        labels: { enabled: false },
        speech: { enabled: false },
      },
      qa: { maxWaitSeconds: 1 },
      media: { allowHosts: [new URL(mediaHost.url).host] },
      limits: { maxMediaPerTurn: 2 },
    },
    { envApiKeys: [TEST_KEY, KEY_B] },
  );
}, 30_000);

afterAll(async () => {
  await ocular?.close();
  await Promise.all([upstream?.close(), mediaHost?.close()]);
  removeMediaFixtures();
});

beforeEach(() => {
  upstream.requests.length = 0;
  answer = 'It launches at [00:12].';
});

describe('POST /v1/qa/chat', () => {
  it('sends the segments relevant to the question, with timestamps, and not the others', async () => {
    const id = await insertVideo(SEGMENTS);
    const response = await ask({ video_id: id, messages: [{ role: 'user', content: 'When does the quartz falcon launch?' }] });
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ chat_response: 'It launches at [00:12].', status: 'success' });
    const [request] = qaRequests();
    expect(request).toBeDefined();
    const system = textOf(request!.messages[0]!);
    expect(system).toContain('[00:10-00:15]');
    expect(system).toContain('QUARTZ FALCON');
    expect(system).toContain('the quartz falcon launches at dawn');
    expect(system).toContain('[mm:ss]');
    expect(system).not.toContain('TOMATO');
    expect(system).not.toContain('WEATHER');
    expect(textOf(request!.messages.at(-1)!)).toContain('When does the quartz falcon launch?');
  });

  it('removes citations that point outside the video', async () => {
    const id = await insertVideo(SEGMENTS); // 30 s long
    answer = 'The rocket is at [00:12], again at [00:29] and at [45:10], and [1:02:03].';
    const response = await ask({ video_id: id, messages: [{ role: 'user', content: 'Where is the quartz falcon?' }] });
    expect(response.status).toBe(200);
    const body = (await response.json()) as { chat_response: string };
    expect(body.chat_response).toBe('The rocket is at [00:12], again at [00:29] and at, and.');
  });

  it('streams the text so far, then a final event with status, citations filtered across deltas', async () => {
    const id = await insertVideo(SEGMENTS);
    streamDeltas = ['It launches ', 'at [00:', '12] and ', 'ends [59', ':00].'];
    const response = await ask({ video_id: id, stream: true, messages: [{ role: 'user', content: 'When does the falcon launch?' }] });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toContain('text/event-stream');
    const events = (await readSseData(response)).map((data) => JSON.parse(data) as { chat_response: string; status?: string });
    expect(events.length).toBeGreaterThan(2);
    const last = events.at(-1)!;
    expect(last).toEqual({ chat_response: 'It launches at [00:12] and ends.', status: 'success' });
    for (const event of events.slice(0, -1)) {
      expect(event.status).toBeUndefined();
      expect(last.chat_response.startsWith(event.chat_response)).toBe(true);
    }
  });

  it('ends the stream with an error event, and no status, when the upstream breaks off', async () => {
    const id = await insertVideo(SEGMENTS);
    streamDeltas = ['It launches ', 'at [00:12]'];
    streamOmitEnd = true;
    try {
      const response = await ask({ video_id: id, stream: true, messages: [{ role: 'user', content: 'falcon?' }] });
      expect(response.status).toBe(200);
      const text = await response.text();
      expect(text).toContain('event: error');
      expect(text).toContain('It launches at [00:12]');
      expect(text).not.toContain('"status"');
    } finally {
      streamOmitEnd = false;
    }
  });

  it('stops the upstream stream when the client goes away', async () => {
    const id = await insertVideo(SEGMENTS);
    streamDeltas = Array.from({ length: 200 }, (_, index) => `word${index} `);
    streamDelayMs = 20;
    try {
      const abort = new AbortController();
      const response = await ask({ video_id: id, stream: true, messages: [{ role: 'user', content: 'falcon?' }] }, TEST_KEY, abort.signal);
      expect(response.status).toBe(200);
      const reader = response.body!.getReader();
      await reader.read();
      const upstreamResponse = lastStream!;
      const closed = new Promise<void>((resolve) => (upstreamResponse.destroyed ? resolve() : upstreamResponse.once('close', resolve)));
      abort.abort();
      await closed;
      expect(upstreamResponse.writableFinished).toBe(false);
    } finally {
      streamDelayMs = 0;
    }
  });

  it('carries earlier turns and retrieves for the last question', async () => {
    const id = await insertVideo(SEGMENTS);
    const response = await ask({
      video_id: id,
      messages: [
        { role: 'system', content: 'Answer in one sentence.' },
        { role: 'user', content: 'When does the quartz falcon launch?' },
        { role: 'assistant', content: 'At [00:12].' },
        { role: 'user', content: [{ type: 'text', text: 'And what soup is cooked with tomatoes?' }] },
      ],
    });
    expect(response.status).toBe(200);
    const [request] = qaRequests();
    const roles = request!.messages.map((message) => message.role);
    expect(roles).toEqual(['system', 'user', 'assistant', 'user']);
    expect(textOf(request!.messages[2]!)).toBe('At [00:12].');
    const system = textOf(request!.messages[0]!);
    expect(system).toContain('TOMATO SOUP');
    expect(system).toContain('[00:20-00:25]');
    expect(system).not.toContain('QUARTZ FALCON');
    expect(system).toContain('Answer in one sentence.');
  });

  it('answers a global question from the whole-video summary and segments spread over the video', async () => {
    const id = await insertVideo(SEGMENTS);
    await ocular.withDatabase((database) =>
      new VideoSummaryStore(database).put(id, 'A news bulletin: a launch, then a cooking segment.', 'vision'),
    );
    const response = await ask({ video_id: id, messages: [{ role: 'user', content: 'Summarize it' }] });
    expect(response.status).toBe(200);
    const system = textOf(qaRequests()[0]!.messages[0]!);
    expect(system).toContain('A news bulletin: a launch, then a cooking segment.');
    expect(system).toContain('[00:00-00:05]');
  });

  it('keeps the prompt bounded for a long video', async () => {
    const long = Array.from({ length: 400 }, (_, index) => ({
      caption: `Scene ${index} shows item${index} on a table.`,
      transcript: 'some narration about the table and the room',
      seconds: 15,
    }));
    const id = await insertVideo(long);
    const response = await ask({ video_id: id, messages: [{ role: 'user', content: 'What is on the table?' }] });
    expect(response.status).toBe(200);
    const system = textOf(qaRequests()[0]!.messages[0]!);
    expect(system.length).toBeLessThan(16_000);
    expect((system.match(/^\[\d\d:\d\d(?::\d\d)?-/gm) ?? []).length).toBeLessThanOrEqual(8);
  });

  it('sends keyframes to a model with image input, within limits.maxMediaPerTurn, and text only to one without', async () => {
    const id = await insertVideo(
      SEGMENTS.map((segment, index) => ({
        ...segment,
        keyframes: [{ timeSeconds: index * 5 + 2, file: `keyframes/keyframe-00000${index}.jpg` }],
      })),
    );
    const dir = join(ocular.dataDir, 'videos', id, 'keyframes');
    mkdirSync(dir, { recursive: true });
    for (let index = 0; index < SEGMENTS.length; index++) {
      await sharp({ create: { width: 32, height: 24, channels: 3, background: { r: 10 * index, g: 90, b: 30 } } })
        .jpeg()
        .toFile(join(dir, `keyframe-00000${index}.jpg`));
    }
    const question = {
      video_id: id,
      messages: [{ role: 'user', content: 'What happens in the video? falcon tomatoes presenter credits' }],
    };
    expect((await ask({ ...question, model: 'vision' })).status).toBe(200);
    expect((await ask({ ...question, model: 'text-only' })).status).toBe(200);
    const [withImages, textOnly] = qaRequests();
    const images = (request: typeof withImages) =>
      (request!.messages.at(-1)!.content as Array<{ type: string }>).filter?.((part) => part.type === 'image_url') ?? [];
    expect(withImages!.model).toBe('upstream-vision');
    expect(images(withImages)).toHaveLength(2);
    expect(textOnly!.model).toBe('upstream-text-only');
    expect(typeof textOnly!.messages.at(-1)!.content === 'string' || images(textOnly).length === 0).toBe(true);
  });

  it('answers 409 with the indexing status for a video not indexed yet, also after the bounded wait', async () => {
    const id = await insertVideo(SEGMENTS, { status: 'indexing' });
    const question = { video_id: id, messages: [{ role: 'user', content: 'What is this?' }] };
    await expectError(await ask(question), 409, 'conflict_error');
    const started = Date.now();
    await expectError(await ask({ ...question, wait: true }), 409, 'conflict_error');
    expect(Date.now() - started).toBeGreaterThanOrEqual(900);
    expect(qaRequests()).toHaveLength(0);
  });

  it('waits for indexing with wait: true; indexing writes the whole-video summary', async () => {
    const path = await makeVideo({ seconds: 2, width: 160, height: 120 });
    const form = new FormData();
    form.set('video_name', 'pattern');
    form.set('index', 'true');
    form.set('file', new Blob([new Uint8Array(await readFile(path))], { type: 'video/mp4' }), 'pattern.mp4');
    const uploaded = await fetch(`${ocular.url}/v1/videos/upload`, { method: 'POST', headers: { 'x-api-key': TEST_KEY }, body: form });
    expect(uploaded.status).toBe(200);
    const { video_id: id } = (await uploaded.json()) as { video_id: string };
    answer = 'A test pattern [00:01].';
    // The wait is bounded by qa.maxWaitSeconds (1 s here): ask until indexing is done, which takes a few seconds.
    let response: Response | undefined;
    for (let attempt = 0; attempt < 30; attempt++) {
      response = await ask({ video_id: id, wait: true, messages: [{ role: 'user', content: 'What is this video about?' }] });
      if (response.status !== 409) break;
      await response.body?.cancel();
    }
    expect(response!.status).toBe(200);
    expect(await response!.json()).toEqual({ chat_response: 'A test pattern [00:01].', status: 'success' });
    const summary = await ocular.withDatabase((database) => new VideoSummaryStore(database).get(id));
    expect(summary?.summary).toBe(SUMMARY_TEXT);
    expect(textOf(qaRequests().at(-1)!.messages[0]!)).toContain(SUMMARY_TEXT);
    // The summary goes with its video.
    expect((await fetch(`${ocular.url}/v1/videos/${id}`, { method: 'DELETE', headers: { 'x-api-key': TEST_KEY } })).status).toBe(200);
    expect(await ocular.withDatabase((database) => new VideoSummaryStore(database).get(id))).toBeUndefined();
  }, 60_000);

  it('stores, indexes and answers a video_url; a 409 names the new video so the client asks again by id', async () => {
    const question = { messages: [{ role: 'user', content: 'What is this video about?' }] };
    answer = 'A test pattern.';
    const first = await ask({ ...question, video_url: `${mediaHost.url}/pattern.mp4` });
    const id = first.headers.get('x-ocular-video-id');
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
    // Indexing was only queued when the request looked: the answer is 409, and names the video.
    await expectError(first, 409, 'conflict_error');
    let response: Response | undefined;
    for (let attempt = 0; attempt < 30; attempt++) {
      response = await ask({ ...question, video_id: id, wait: true });
      if (response.status !== 409) break;
      await response.body?.cancel();
    }
    expect(response!.status).toBe(200);
    expect(await response!.json()).toEqual({ chat_response: 'A test pattern.', status: 'success' });
    const video = (await (await ocular.get(`/v1/videos/${id}`)).json()) as { video_name: string; indexing_status: string };
    expect(video).toMatchObject({ video_name: 'pattern.mp4', indexing_status: 'indexed' });
    expect((await ocular.get(`/v1/videos/${id}`, { 'x-api-key': KEY_B })).status).toBe(404);
  }, 60_000);

  it("answers 404 for another owner's video and for unknown ids", async () => {
    const id = await insertVideo(SEGMENTS, {}, KEY_B);
    const question = { messages: [{ role: 'user', content: 'What is this?' }] };
    await expectError(await ask({ ...question, video_id: id }), 404, 'not_found_error');
    await expectError(await ask({ ...question, video_id: '00000000-0000-4000-8000-000000000000' }), 404, 'not_found_error');
    await expectError(await ask({ ...question, video_id: 'not-a-uuid' }), 404, 'not_found_error');
    expect((await ask({ ...question, video_id: id }, KEY_B)).status).toBe(200);
  });

  it('refuses private video URLs', async () => {
    const response = await ask({ video_url: 'http://127.0.0.1:9/video.mp4', messages: [{ role: 'user', content: 'What is this?' }] });
    expect(response.status).toBeGreaterThanOrEqual(400);
    expect(response.status).toBeLessThan(500);
  });

  it.each([
    ['neither video_id nor video_url', { messages: [{ role: 'user', content: 'q' }] }],
    ['both video_id and video_url', { video_id: 'x', video_url: 'https://example.com/v.mp4', messages: [{ role: 'user', content: 'q' }] }],
    ['no messages', { video_id: 'x' }],
    ['empty messages', { video_id: 'x', messages: [] }],
    [
      'a media part',
      { video_id: 'x', messages: [{ role: 'user', content: [{ type: 'image_url', image_url: 'https://example.com/a.png' }] }] },
    ],
    ['a non-http video_url', { video_url: 'file:///etc/passwd', messages: [{ role: 'user', content: 'q' }] }],
    ['a wrong type', { video_id: 'x', stream: 'yes', messages: [{ role: 'user', content: 'q' }] }],
    ['a tool_output message', { video_id: 'x', messages: [{ role: 'tool_output', content: [] }] }],
  ])('answers 400 for %s', async (_, body) => {
    await expectError(await ask(body), 400, 'validation_error');
  });

  it('answers 400 when the last message is not a user question, and for malformed JSON', async () => {
    const id = await insertVideo(SEGMENTS);
    await expectError(
      await ask({
        video_id: id,
        messages: [
          { role: 'user', content: 'q' },
          { role: 'assistant', content: 'a' },
        ],
      }),
      400,
      'validation_error',
    );
    await expectError(await ask({ video_id: id, messages: [{ role: 'user', content: '   ' }] }), 400, 'validation_error');
    await expectError(await ask('{"video_id":'), 400, 'validation_error');
  });

  it('answers 401 without an API key', async () => {
    const response = await fetch(`${ocular.url}/v1/qa/chat`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ video_id: 'x', messages: [{ role: 'user', content: 'q' }] }),
    });
    await expectError(response, 401, 'authentication_error');
  });

  it('answers 404 for an unknown model', async () => {
    const id = await insertVideo(SEGMENTS);
    await expectError(await ask({ video_id: id, model: 'nope', messages: [{ role: 'user', content: 'q' }] }), 404, 'not_found_error');
  });
});
