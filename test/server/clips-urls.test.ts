// Clips from `video_urls`: each URL is fetched by the safe fetcher, stored in the caller's library, indexed for
// real, and only then clipped.
import { readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { makeVideo, removeMediaFixtures } from '../helpers/media-fixtures.ts';
import { startOcular, type TestOcular } from '../helpers/ocular.ts';

let ocular: TestOcular;
let mediaServer: Server;
let mediaUrl: string;
/** Ends the held `/slow.mp4` download. */
let releaseSlow: (() => void) | undefined;

beforeAll(async () => {
  const bytes = await readFile(await makeVideo({ seconds: 6, withAudio: true }));
  mediaServer = createServer((request, response) => {
    if (request.url === '/match.mp4') {
      response.writeHead(200, { 'content-type': 'video/mp4', 'content-length': bytes.length });
      response.end(bytes);
    } else if (request.url === '/slow.mp4') {
      response.writeHead(200, { 'content-type': 'video/mp4', 'content-length': bytes.length });
      response.write(bytes.subarray(0, 1024));
      releaseSlow = () => response.end(bytes.subarray(1024));
    } else if (request.url === '/page.html') {
      response.writeHead(200, { 'content-type': 'text/html' });
      response.end('<html><body>not a video</body></html>');
    } else {
      response.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve) => mediaServer.listen(0, '127.0.0.1', resolve));
  const { port } = mediaServer.address() as AddressInfo;
  mediaUrl = `http://127.0.0.1:${port}`;
  ocular = await startOcular({
    media: { allowHosts: [`127.0.0.1:${port}`] },
    limits: { maxConcurrentUploads: 1 },
    indexing: { objects: { enabled: false }, vad: { enabled: false }, labels: { enabled: false } },
  });
}, 60_000);

afterAll(async () => {
  await ocular?.close();
  await new Promise<void>((resolve) => mediaServer?.close(() => resolve()));
  removeMediaFixtures();
});

it('adds each URL to the library, waits for its indexing, then clips it', { timeout: 90_000 }, async () => {
  const response = await ocular.post('/v1/clips', {
    video_urls: [`${mediaUrl}/match.mp4`],
    prompt: 'anything at all',
    generation_config: { max_duration_seconds: 3 },
    rendering_config: { aspect_ratio: '1:1', resolution: 240 },
  });
  expect(response.status).toBe(200);
  const created = (await response.json()) as { id: string; video_urls: string[]; video_ids: string[] };
  expect(created.video_urls).toEqual([`${mediaUrl}/match.mp4`]);
  expect(created.video_ids).toHaveLength(1);
  const videoId = created.video_ids[0]!;

  let clip: {
    status: string;
    stage: string | null;
    error_message?: string;
    output: Array<{ video_id: string; end: number; start: number }>;
  };
  const stages = new Set<string>();
  const deadline = Date.now() + 80_000;
  for (;;) {
    clip = (await (await ocular.get(`/v1/clips/${created.id}`)).json()) as typeof clip;
    if (clip.stage !== null) stages.add(clip.stage);
    if (clip.status === 'completed' || clip.status === 'failed') break;
    expect(Date.now()).toBeLessThan(deadline);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  expect(clip.status, clip.error_message).toBe('completed');
  expect(stages.has('waiting_for_indexing')).toBe(true);
  expect(clip.output[0]).toMatchObject({ video_id: videoId });
  expect(clip.output[0]!.end - clip.output[0]!.start).toBeLessThanOrEqual(3);
  // The video is the caller's, indexed, like an upload by URL.
  const video = (await (await ocular.get(`/v1/videos/${videoId}`)).json()) as { indexing_status: string };
  expect(video.indexing_status).toBe('indexed');
});

it('answers like an upload by URL when the URL is not a video, and creates no clip', async () => {
  const before = (await (await ocular.get('/v1/clips')).json()) as { total: number };
  const notVideo = await ocular.post('/v1/clips', { video_urls: [`${mediaUrl}/page.html`], prompt: 'x' });
  expect(notVideo.status).toBe(415);
  expect(((await notVideo.json()) as { error: { type: string; param?: string } }).error).toMatchObject({
    type: 'unsupported_media_type',
    param: 'video_urls.0',
  });
  const missing = await ocular.post('/v1/clips', { video_urls: [`${mediaUrl}/missing.mp4`], prompt: 'x' });
  expect(missing.status).toBe(400);
  const after = (await (await ocular.get('/v1/clips')).json()) as { total: number };
  expect(after.total).toBe(before.total);
});

it('bounds the requests downloading videos at once, like uploads', { timeout: 30_000 }, async () => {
  const slow = ocular.post('/v1/clips', { video_urls: [`${mediaUrl}/slow.mp4`], prompt: 'x' });
  const deadline = Date.now() + 10_000;
  while (releaseSlow === undefined) {
    expect(Date.now()).toBeLessThan(deadline);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  const refused = await ocular.post('/v1/clips', { video_urls: [`${mediaUrl}/match.mp4`], prompt: 'x' });
  expect(refused.status).toBe(429);
  expect(((await refused.json()) as { error: { type: string } }).error.type).toBe('rate_limit_error');
  releaseSlow();
  expect((await slow).status).toBe(200);
  expect((await ocular.post('/v1/clips', { video_urls: [`${mediaUrl}/match.mp4`], prompt: 'x' })).status).toBe(200);
});
