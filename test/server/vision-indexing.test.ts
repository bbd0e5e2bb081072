import { createHmac } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createParser } from 'eventsource-parser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SqlJobQueue } from '../../src/jobs/job-queue.ts';
import { ANALYZER_CATALOG } from '../../src/models/analyzer-catalog.ts';
import { environmentKeyOwner } from '../../src/store/api-keys.ts';
import { VideoStore } from '../../src/store/video-store.ts';
import { makeVideo, removeMediaFixtures } from '../helpers/media-fixtures.ts';
import { startOcular, type TestOcular } from '../helpers/ocular.ts';
import { FONT_PATH, makeCaptionedVideo } from '../helpers/vision-fixtures.ts';

const WEBHOOK_SECRET = 'a-webhook-secret-for-tests';

interface WireVideo {
  video_id: string;
  indexing_status: string;
  indexing_progress: number;
  error?: string;
}

interface Delivery {
  headers: IncomingMessage['headers'];
  body: string;
}

let ocular: TestOcular;
let hookServer: Server;
let hookUrl: string;
const deliveries: Delivery[] = [];
/** Answers to give webhook calls, in order; 200 once they run out. */
const hookAnswers: number[] = [];

async function upload(path: string, fields: Record<string, string>, server: TestOcular = ocular): Promise<WireVideo> {
  const body = new FormData();
  for (const [name, value] of Object.entries(fields)) body.set(name, value);
  body.set('file', new Blob([new Uint8Array(await readFile(path))], { type: 'video/mp4' }), 'clip.mp4');
  const response = await fetch(`${server.url}/v1/videos/upload`, { method: 'POST', headers: { 'x-api-key': server.key }, body });
  expect(response.status).toBe(200);
  return (await response.json()) as WireVideo;
}

async function getVideo(id: string, server: TestOcular = ocular): Promise<WireVideo> {
  return (await (await server.get(`/v1/videos/${id}`)).json()) as WireVideo;
}

const ended = (video: WireVideo): boolean => video.indexing_status === 'indexed' || video.indexing_status === 'failed';

async function waitFor(
  id: string,
  done: (video: WireVideo) => boolean,
  timeoutMs = 90_000,
  server: TestOcular = ocular,
): Promise<WireVideo> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const video = await getVideo(id, server);
    if (done(video)) return video;
    if (Date.now() > deadline) throw new Error(`video ${id} stayed ${video.indexing_status} (${video.indexing_progress})`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

function segments(id: string, server: TestOcular = ocular) {
  return server.withDatabase((database) => new VideoStore(database).listSegments(id));
}

beforeAll(async () => {
  hookServer = createServer((request, response) => {
    let body = '';
    request.setEncoding('utf8');
    request.on('data', (chunk: string) => (body += chunk));
    request.on('end', () => {
      deliveries.push({ headers: request.headers, body });
      response.writeHead(hookAnswers.shift() ?? 200).end();
    });
  });
  await new Promise<void>((resolve) => hookServer.listen(0, '127.0.0.1', resolve));
  const port = (hookServer.address() as AddressInfo).port;
  hookUrl = `http://127.0.0.1:${port}/hook`;
  ocular = await startOcular({
    media: { allowHosts: [`127.0.0.1:${port}`] },
    // Object detection is tested in test/perception; leaving it out keeps these tests quick.
    indexing: { objects: { enabled: false } },
  });
}, 60_000);

afterAll(async () => {
  await ocular?.close();
  await new Promise<void>((resolve) => hookServer?.close(() => resolve()));
  removeMediaFixtures();
});

describe.skipIf(FONT_PATH === undefined)('indexing a video with on-screen text', () => {
  it('indexes the text into the segment that covers it, reports progress over SSE, and calls the webhook', async () => {
    const path = await makeCaptionedVideo({ seconds: 20, text: 'HELLO OCULAR', fromSeconds: 4, toSeconds: 9 });
    const video = await upload(path, { video_name: 'captioned', index: 'true', webhook_url: hookUrl, webhook_secret: WEBHOOK_SECRET });
    expect(video.indexing_status).toBe('pending');

    // Progress events until the end, then `done`.
    const events: Array<{ event: string | undefined; data: { indexing_status: string; indexing_progress: number; stage: string | null } }> =
      [];
    const stream = await ocular.get(`/v1/videos/${video.video_id}/events`);
    expect(stream.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const parser = createParser({ onEvent: (event) => events.push({ event: event.event, data: JSON.parse(event.data) }) });
    const decoder = new TextDecoder();
    const reader = stream.body!.getReader();
    for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read())
      parser.feed(decoder.decode(chunk.value, { stream: true }));

    const last = events.at(-1)!;
    expect(last.event).toBe('done');
    expect(last.data).toMatchObject({ indexing_status: 'indexed', indexing_progress: 1 });
    const progress = events.map((event) => event.data.indexing_progress);
    expect(progress).toEqual([...progress].sort((a, b) => a - b));
    expect(events.some((event) => event.data.stage === 'analyzing')).toBe(true);

    const indexed = await getVideo(video.video_id);
    expect(indexed).toMatchObject({ indexing_status: 'indexed', indexing_progress: 1 });
    const rows = await segments(video.video_id);
    expect(rows.length).toBeGreaterThanOrEqual(2);
    // Contiguous, covering the whole video, each 5-15 s.
    expect(rows[0]!.startSeconds).toBe(0);
    for (const [index, row] of rows.entries()) {
      expect(row.seq).toBe(index);
      if (index > 0) expect(row.startSeconds).toBeCloseTo(rows[index - 1]!.endSeconds, 6);
      expect(row.endSeconds - row.startSeconds).toBeGreaterThanOrEqual(5 - 1e-6);
      expect(row.endSeconds - row.startSeconds).toBeLessThanOrEqual(15 + 1e-6);
      expect(row.keyframes.length).toBeGreaterThan(0);
      expect(row.caption).not.toBe('');
    }
    expect(rows.at(-1)!.endSeconds).toBeCloseTo(20, 0);
    const holding = rows.filter((row) => /HELLO\s*OCULAR/i.test(row.ocrText));
    expect(holding.length).toBeGreaterThan(0);
    for (const row of holding) {
      // Each segment holding the text overlaps the 4-9 s window it was shown in ...
      expect(row.startSeconds).toBeLessThan(9);
      expect(row.endSeconds).toBeGreaterThan(4);
    }
    // ... and the segments covering 4-9 s together hold it.
    const covering = rows.filter((row) => row.startSeconds < 9 && row.endSeconds > 4);
    expect(covering.some((row) => /HELLO/i.test(row.ocrText))).toBe(true);
    expect(rows.filter((row) => row.startSeconds >= 10).every((row) => !/HELLO/i.test(row.ocrText))).toBe(true);
    expect(holding[0]!.caption).toMatch(/On-screen text: .*HELLO/i);

    // Keyword search works with no model at all.
    const searched = await fetch(`${ocular.url}/v1/videos/search`, {
      method: 'POST',
      headers: { ...ocular.headers, 'content-type': 'application/json' },
      body: JSON.stringify({ query: 'hello ocular', max_results: 10 }),
    });
    expect(searched.status).toBe(200);
    const found = (await searched.json()) as { results: Array<{ video_id: string }> };
    expect(found.results.map((hit) => hit.video_id)).toContain(video.video_id);

    // The webhook: signed with HMAC-SHA256 of the body.
    const deadline = Date.now() + 10_000;
    while (!deliveries.some((delivery) => delivery.body.includes(video.video_id)) && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const delivery = deliveries.find((entry) => entry.body.includes(video.video_id))!;
    expect(delivery).toBeDefined();
    const expected = `sha256=${createHmac('sha256', WEBHOOK_SECRET).update(delivery.body).digest('hex')}`;
    expect(delivery.headers['x-ocular-signature']).toBe(expected);
    expect(delivery.headers['x-ocular-event']).toBe('video.indexed');
    expect(JSON.parse(delivery.body)).toMatchObject({ event: 'video.indexed', video_id: video.video_id, indexing_status: 'indexed' });
  }, 120_000);
});

describe('webhooks', () => {
  it('are retried with backoff until the receiver accepts them', async () => {
    hookAnswers.push(500, 503);
    const path = await makeVideo({ seconds: 6, width: 160, height: 120 });
    const group = (await (await ocular.post('/v1/videos/groups', { name: 'hooked', webhook_url: hookUrl })).json()) as { group_id: string };
    const video = await upload(path, { video_name: 'retried', index: 'true', group_id: group.group_id });
    await waitFor(video.video_id, (entry) => entry.indexing_status === 'indexed');
    const deadline = Date.now() + 20_000;
    const mine = () => deliveries.filter((delivery) => delivery.body.includes(video.video_id));
    while (mine().length < 3 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
    expect(mine().length).toBe(3);
    // The same delivery each time, signed with the server's own secret (the group named none).
    expect(new Set(mine().map((delivery) => delivery.headers['x-ocular-delivery'])).size).toBe(1);
    const secret = (await readFile(join(ocular.dataDir, 'webhook-secret'), 'utf8')).trim();
    const last = mine().at(-1)!;
    expect(last.headers['x-ocular-signature']).toBe(`sha256=${createHmac('sha256', secret).update(last.body).digest('hex')}`);
  }, 60_000);
});

describe('indexing metrics', () => {
  it('report the realtime factor of each indexed video and the seconds of video indexed', async () => {
    const read = async (): Promise<string> => (await ocular.get('/metrics')).text();
    const count = (text: string, name: string): number => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? 0);
    const before = await read();
    const path = await makeVideo({ seconds: 4, width: 160, height: 120 });
    const video = await upload(path, { video_name: 'measured', index: 'true' });
    await waitFor(video.video_id, (entry) => entry.indexing_status === 'indexed');
    const after = await read();
    expect(count(after, 'ocular_indexing_realtime_factor_count') - count(before, 'ocular_indexing_realtime_factor_count')).toBe(1);
    expect(count(after, 'ocular_indexed_media_seconds_total') - count(before, 'ocular_indexed_media_seconds_total')).toBeCloseTo(4, 0);
    expect(count(after, 'ocular_indexing_realtime_factor_sum')).toBeGreaterThan(0);
  }, 60_000);
});

describe('webhooks that cannot succeed', () => {
  it('are not retried when the receiver refuses the call or the address policy refuses the URL', async () => {
    const path = await makeVideo({ seconds: 6, width: 160, height: 120 });
    hookAnswers.push(410);
    const gone = await upload(path, { video_name: 'gone', index: 'true', webhook_url: hookUrl });
    const blocked = await upload(path, { video_name: 'blocked', index: 'true', webhook_url: 'http://10.1.2.3/hook' });
    await waitFor(gone.video_id, ended);
    await waitFor(blocked.video_id, ended);
    const database = await ocular.openDatabase();
    try {
      const jobs = new SqlJobQueue(database);
      const webhookJob = async (videoId: string) =>
        (await jobs.list({ kind: 'webhook.deliver', limit: 100, offset: 0 })).find((job) => JSON.stringify(job.payload).includes(videoId));
      const allFailed = async (): Promise<boolean> => {
        for (const video of [gone, blocked]) if ((await webhookJob(video.video_id))?.status !== 'failed') return false;
        return true;
      };
      const deadline = Date.now() + 10_000;
      while (Date.now() < deadline && !(await allFailed())) {
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      expect(await webhookJob(gone.video_id)).toMatchObject({ status: 'failed', attempts: 1, error: expect.stringContaining('410') });
      expect(await webhookJob(blocked.video_id)).toMatchObject({
        status: 'failed',
        attempts: 1,
        error: expect.stringContaining('not fetched'),
      });
      expect(deliveries.filter((delivery) => delivery.body.includes(gone.video_id))).toHaveLength(1);
    } finally {
      await database.close();
    }
  }, 60_000);
});

describe('failures and deletion', () => {
  it('ends a video that cannot be decoded as failed, with a reason, and keeps serving', async () => {
    const good = await readFile(await makeVideo({ seconds: 8, width: 160, height: 120 }));
    // The header and index survive, so it probes; the frames are gone, so nothing decodes.
    const broken = Buffer.from(good);
    broken.fill(0, Math.floor(good.length * 0.05), Math.floor(good.length * 0.95));
    const { writeFile } = await import('node:fs/promises');
    const path = join(ocular.dataDir, 'broken.mp4');
    await writeFile(path, broken);
    const video = await upload(path, { video_name: 'broken', index: 'true' });
    const ended = await waitFor(video.video_id, (entry) => entry.indexing_status === 'failed' || entry.indexing_status === 'indexed');
    expect(ended.indexing_status).toBe('failed');
    expect(ended.error).toMatch(/^scanning the video failed: \S/);
    expect(ended.error).not.toMatch(/Last message repeated/);
    expect((await ocular.get('/healthz')).status).toBe(200);
  }, 60_000);

  it('cancels indexing when a video is deleted mid-way and leaves nothing behind', async () => {
    const path = await makeVideo({ seconds: 60, width: 640, height: 360 });
    const video = await upload(path, { video_name: 'long', index: 'true' });
    await waitFor(video.video_id, (entry) => entry.indexing_status === 'indexing', 30_000);
    const events = await ocular.get(`/v1/videos/${video.video_id}/events`);
    const deleted = await fetch(`${ocular.url}/v1/videos/${video.video_id}`, { method: 'DELETE', headers: ocular.headers });
    expect(deleted.status).toBe(200);
    // A client following its progress is told, and its stream ends.
    const told = await events.text();
    expect(told).toMatch(/event: done\ndata: .*"stage":"deleted"/);
    expect((await ocular.get(`/v1/videos/${video.video_id}`)).status).toBe(404);
    expect(existsSync(join(ocular.dataDir, 'videos', video.video_id))).toBe(false);
    // The job ends cancelled, and nothing it was doing writes rows afterwards.
    const database = await ocular.openDatabase();
    try {
      const jobs = new SqlJobQueue(database);
      const deadline = Date.now() + 15_000;
      let job = (await jobs.list({ kind: 'video.index', limit: 50, offset: 0 })).find((entry) =>
        JSON.stringify(entry.payload).includes(video.video_id),
      );
      while (job && job.status !== 'cancelled' && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        job = await jobs.get(job.id);
      }
      expect(job?.status).toBe('cancelled');
      expect(await segments(video.video_id)).toEqual([]);
    } finally {
      await database.close();
    }
    // The server goes on indexing other videos.
    const next = await upload(await makeVideo({ seconds: 6, width: 160, height: 120 }), { video_name: 'after', index: 'true' });
    await waitFor(next.video_id, (entry) => entry.indexing_status === 'indexed');
  }, 120_000);

  it('ends the event stream at once for a video that is not being indexed', async () => {
    const path = await makeVideo({ seconds: 6, width: 160, height: 120 });
    const video = await upload(path, { video_name: 'idle', index: 'false' });
    const response = await ocular.get(`/v1/videos/${video.video_id}/events`);
    const text = await response.text();
    expect(text).toContain('"indexing_status":"pending"');
  });
});

const SHARED_MODELS = fileURLToPath(new URL('../../../shared/models/', import.meta.url));
const hasSharedModels =
  existsSync(join(SHARED_MODELS, 'silero-vad', 'silero_vad.onnx')) && existsSync(join(SHARED_MODELS, 'mobilenetv2-int8'));

describe.skipIf(!hasSharedModels)('indexing with the voice activity detector and the scene labeler (../shared/models)', () => {
  it('marks segments without speech and labels keyframes', async () => {
    const server = await startOcular({
      indexing: {
        objects: { enabled: false },
        vad: { modelPath: join(SHARED_MODELS, 'silero-vad', 'silero_vad.onnx') },
        labels: {
          modelPath: join(SHARED_MODELS, 'mobilenetv2-int8', 'mobilenetv2-12-int8.onnx'),
          labelsPath: join(SHARED_MODELS, 'mobilenetv2-int8', 'imagenet-simple-labels.json'),
        },
      },
    });
    try {
      const path = await makeVideo({ seconds: 12, width: 320, height: 240, withAudio: true });
      const { video_id: id } = await upload(path, { video_name: 'tone', index: 'true' }, server);
      expect((await waitFor(id, ended, 60_000, server)).indexing_status).toBe('indexed');
      const rows = await segments(id, server);
      expect(rows.length).toBeGreaterThan(0);
      // A steady 440 Hz tone is not speech; the detector ran, so the answer is false rather than unknown.
      for (const row of rows) expect(row.hasSpeech).toBe(false);
      expect(rows.some((row) => row.labels.length > 0)).toBe(true);
      for (const row of rows) for (const label of row.labels) expect(label.score).toBeGreaterThan(0);
    } finally {
      await server.close();
    }
  }, 90_000);
});

describe('retries', () => {
  it('retries a failing step and ends failed with the reason after indexing.maxAttempts', async () => {
    let transcriptions = 0;
    const broken = createServer((request, response) => {
      request.resume();
      request.on('end', () => {
        transcriptions += 1;
        response.writeHead(500, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { message: 'the GPU caught fire' } }));
      });
    });
    await new Promise<void>((resolve) => broken.listen(0, '127.0.0.1', resolve));
    const server = await startOcular({
      transcriber: {
        provider: 'openai-compatible',
        baseUrl: `http://127.0.0.1:${(broken.address() as AddressInfo).port}/v1`,
        model: 'whisper-1',
        maxRetries: 0,
      },
      indexing: { objects: { enabled: false }, ocr: { enabled: false }, maxAttempts: 2 },
    });
    try {
      const path = await makeVideo({ seconds: 6, width: 160, height: 120, withAudio: true });
      const { video_id: id } = await upload(path, { video_name: 'speech', index: 'true' }, server);
      const video = await waitFor(id, ended, 30_000, server);
      expect(video.indexing_status).toBe('failed');
      expect(video.error).toMatch(/GPU caught fire/);
      expect(transcriptions).toBe(2);
    } finally {
      await server.close();
      await new Promise<void>((resolve) => broken.close(() => resolve()));
    }
  }, 60_000);
});

describe.skipIf(!hasSharedModels)('analyzer weights pulled in the background', () => {
  it('downloads missing VAD and label weights at start and uses them once they are in place', async () => {
    const served: string[] = [];
    const files = new Map([
      ['/silero_vad.onnx', join(SHARED_MODELS, 'silero-vad', 'silero_vad.onnx')],
      ['/mobilenetv2-12-int8.onnx', join(SHARED_MODELS, 'mobilenetv2-int8', 'mobilenetv2-12-int8.onnx')],
      ['/imagenet-simple-labels.json', join(SHARED_MODELS, 'mobilenetv2-int8', 'imagenet-simple-labels.json')],
    ]);
    const weights = createServer((request, response) => {
      const path = files.get(request.url ?? '');
      served.push(request.url ?? '');
      if (!path) return void response.writeHead(404).end();
      readFile(path).then((bytes) => response.writeHead(200, { 'content-length': bytes.length }).end(bytes));
    });
    await new Promise<void>((resolve) => weights.listen(0, '127.0.0.1', resolve));
    const base = `http://127.0.0.1:${(weights.address() as AddressInfo).port}`;
    const catalog = ANALYZER_CATALOG.map((model) => ({
      ...model,
      files: model.files.map((file) => ({ ...file, url: `${base}/${file.file}` })),
    }));
    const server = await startOcular({ indexing: { objects: { enabled: false } } }, {}, { analyzerCatalog: catalog });
    try {
      const vadPath = join(server.dataDir, 'models', 'silero-vad', 'silero_vad.onnx');
      const labelsPath = join(server.dataDir, 'models', 'mobilenetv2', 'imagenet-simple-labels.json');
      const deadline = Date.now() + 20_000;
      while (!(existsSync(vadPath) && existsSync(labelsPath)) && Date.now() < deadline)
        await new Promise((resolve) => setTimeout(resolve, 50));
      expect(existsSync(vadPath) && existsSync(labelsPath)).toBe(true);
      expect(served.sort()).toEqual([...files.keys()].sort());

      const path = await makeVideo({ seconds: 6, width: 320, height: 240, withAudio: true });
      const { video_id: id } = await upload(path, { video_name: 'tone', index: 'true' }, server);
      expect((await waitFor(id, ended, 60_000, server)).indexing_status).toBe('indexed');
      const rows = await segments(id, server);
      expect(rows.length).toBeGreaterThan(0);
      expect(rows.every((row) => row.hasSpeech === false)).toBe(true); // the detector ran
      expect(rows.some((row) => row.labels.length > 0)).toBe(true); // so did the labeler
    } finally {
      await server.close();
      await new Promise<void>((resolve) => weights.close(() => resolve()));
    }
  }, 90_000);
});

describe('analyzer weights that cannot be downloaded', () => {
  it('leave those analyzers out while indexing goes on', async () => {
    const server = await startOcular({ indexing: { objects: { enabled: false }, ocr: { enabled: false } } });
    try {
      const path = await makeVideo({ seconds: 6, width: 160, height: 120, withAudio: true });
      const { video_id: id } = await upload(path, { video_name: 'offline', index: 'true' }, server);
      expect((await waitFor(id, ended, 30_000, server)).indexing_status).toBe('indexed');
      const rows = await segments(id, server);
      expect(rows.every((row) => row.hasSpeech === null && row.labels.length === 0)).toBe(true);
    } finally {
      await server.close();
    }
  }, 60_000);
});
