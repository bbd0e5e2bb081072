// Every kind of blob on an S3-compatible store (s3rver on loopback, `blobs: {kind: "s3"}`): an uploaded video is
// indexed from the store and leaves no working copy behind; downloads stream from the store with Range support,
// or redirect to a URL the store signed; keyframes feed QA, images and conversation assets live in the store,
// clips are rendered from it and uploaded to it, deletes empty it, and /readyz fails when it is unreachable.
import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { S3Blobs } from '../../src/store/object-store.ts';
import { sendJson, type RecordedRequest } from '../helpers/fake-upstream.ts';
import { makeVideo, removeMediaFixtures } from '../helpers/media-fixtures.ts';
import { startOcular, tamperSignature, type TestOcular } from '../helpers/ocular.ts';
import { captionOnlyIndexing, completion, startOpenAiUpstream } from '../helpers/openai-upstream.ts';
import { startTestS3, type TestS3 } from '../helpers/s3.ts';

let s3: TestS3;
let store: S3Blobs;
let upstream: Awaited<ReturnType<typeof startOpenAiUpstream>>;
let ocular: TestOcular;
let redirecting: TestOcular;
let videoBytes: Buffer;
let videoId: string;

const config = () => ({
  models: [{ id: 'vision', provider: 'openai-compatible', baseUrl: `${upstream.url}/v1`, model: 'vision', maxRetries: 0 }],
  indexing: captionOnlyIndexing('vision', { minSegmentSeconds: 2, maxSegmentSeconds: 4 }),
});

beforeAll(async () => {
  s3 = await startTestS3({ prefix: 'team/' });
  store = new S3Blobs(s3.settings);
  upstream = await startOpenAiUpstream();
  upstream.behave(async (request: RecordedRequest, response) => {
    const text = JSON.stringify(request.body);
    if (text.includes('questions about one video')) return sendJson(response, 200, completion('A test pattern [00:02].'));
    sendJson(response, 200, completion('A colourful test pattern with a moving counter.'));
  });
  ocular = await startOcular({ ...config(), blobs: s3.settings });
  redirecting = await startOcular({ ...config(), blobs: { ...s3.settings, redirect: true } });
  videoBytes = await readFile(await makeVideo({ seconds: 8 }));
}, 60_000);

afterAll(async () => {
  await ocular?.close();
  await redirecting?.close();
  store?.close();
  await upstream?.close();
  await s3?.close();
  removeMediaFixtures();
});

async function waitFor<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

interface WireVideo {
  video_id: string;
  url: string;
  indexing_status: string;
  metadata: { thumbnail: string | null };
}

async function getVideo(server: TestOcular, id: string): Promise<WireVideo> {
  return (await (await server.get(`/v1/videos/${id}`)).json()) as WireVideo;
}

describe('blobs on S3', () => {
  it('indexes an uploaded video from the store, keeping nothing but the store copy', { timeout: 90_000 }, async () => {
    const form = new FormData();
    form.set('video_name', 'on s3');
    form.set('index', 'true');
    form.set('enable_thumbnails', 'true');
    form.set('file', new Blob([new Uint8Array(videoBytes)], { type: 'video/mp4' }), 'v.mp4');
    const uploaded = await fetch(`${ocular.url}/v1/videos/upload`, { method: 'POST', headers: { 'x-api-key': ocular.key }, body: form });
    const text = await uploaded.text();
    expect(uploaded.status, text).toBe(200);
    videoId = (JSON.parse(text) as WireVideo).video_id;
    const video = await waitFor('the video to be indexed', async () => {
      const current = await getVideo(ocular, videoId);
      if (current.indexing_status === 'failed') throw new Error(JSON.stringify(current));
      return current.indexing_status === 'indexed' ? current : undefined;
    });

    const videos = store.within('videos');
    expect((await videos.list(videoId)).sort()).toEqual(['keyframes', 'source', 'thumbnail.jpg']);
    expect((await videos.read(`${videoId}/source`))!.equals(videoBytes)).toBe(true);
    const keyframes = await videos.list(`${videoId}/keyframes`);
    expect(keyframes.some((name) => name.startsWith('segment-'))).toBe(true); // the segment thumbnails
    expect(keyframes.length).toBeGreaterThan(2);
    // The working copy (source and keyframes) went once indexing ended; no upload is left half received.
    expect(existsSync(join(ocular.dataDir, 'videos', videoId))).toBe(false);
    expect(video.metadata.thumbnail).not.toBeNull();
  });

  it('leaves nothing in the store for an upload it refuses', async () => {
    const before = await store.within('videos').list();
    for (const fields of [{ video_name: 'not a video' }, { video_name: 'no group', group_id: 'missing' }]) {
      const form = new FormData();
      for (const [name, value] of Object.entries(fields)) form.set(name, value);
      form.set('index', 'false');
      const bytes = fields.video_name === 'not a video' ? Buffer.from('plain text, not a video '.repeat(1000)) : videoBytes;
      form.set('file', new Blob([new Uint8Array(bytes)], { type: 'video/mp4' }), 'v.mp4');
      const response = await fetch(`${ocular.url}/v1/videos/upload`, { method: 'POST', headers: { 'x-api-key': ocular.key }, body: form });
      expect(response.status).toBeGreaterThanOrEqual(400);
      expect(response.status).toBeLessThan(500);
    }
    expect(await store.within('videos').list()).toEqual(before);
  });

  it('clears what a process that died mid-upload or mid-delete left in the store, found through its claims', async () => {
    // What a process killed while receiving a video and an image leaves: their blobs, and claims nobody refreshes.
    const orphanVideo = randomUUID();
    const orphanImage = randomUUID();
    const orphanClip = randomUUID();
    await store.put(`videos/${orphanVideo}/source`, videoBytes);
    await store.put(`clips/${orphanClip}/output-0.mp4`, videoBytes);
    await store.put(`videos/${orphanVideo}/thumbnail.jpg`, Buffer.from('thumbnail'));
    await store.put(`images/${orphanImage}`, Buffer.from('image'));
    const longAgo = Date.now() - 10 * 60_000;
    await ocular.withDatabase((database) =>
      database.db
        .insertInto('blob_claims')
        .values([
          { name: `video:${orphanVideo}`, holder: 'a-process-that-died', heartbeat_at: longAgo },
          { name: `image:${orphanImage}`, holder: 'a-process-that-died', heartbeat_at: longAgo },
          // Killed deleting a clip, after its row went.
          { name: `clip:${orphanClip}`, holder: 'a-process-that-died', heartbeat_at: longAgo },
          // Killed after the row went in, before the claim went: the video stays.
          { name: `video:${videoId}`, holder: 'a-process-that-died', heartbeat_at: longAgo },
          // Still being received by a live process: left alone.
          { name: `video:${randomUUID()}`, holder: 'a-live-process', heartbeat_at: Date.now() },
        ])
        .execute(),
    );

    // Another process taking uploads on the same database and bucket finds them as it starts.
    const other = await startOcular({ ...config(), blobs: s3.settings }, { dataDir: ocular.dataDir });
    await other.close();
    expect(await store.within('videos').list(orphanVideo)).toEqual([]);
    expect(await store.within('images').list()).not.toContain(orphanImage);
    expect(await store.within('clips').list(orphanClip)).toEqual([]);
    expect(await store.within('videos').list(videoId)).toContain('source');
    expect((await getVideo(ocular, videoId)).video_id).toBe(videoId);
    const left = await ocular.withDatabase((database) => database.db.selectFrom('blob_claims').select(['name', 'holder']).execute());
    expect(left).toEqual([{ name: expect.stringMatching(/^video:/), holder: 'a-live-process' }]);
    await ocular.withDatabase((database) => database.db.deleteFrom('blob_claims').execute());
  });

  it('streams the video from the store with ranges and validators', async () => {
    const { url } = await getVideo(ocular, videoId);
    const whole = await fetch(url);
    expect(whole.status).toBe(200);
    expect(whole.headers.get('content-type')).toBe('video/mp4');
    expect(Buffer.from(await whole.arrayBuffer()).equals(videoBytes)).toBe(true);
    const etag = whole.headers.get('etag')!;
    expect(etag).toMatch(/^".+"$/);

    const part = await fetch(url, { headers: { range: 'bytes=100-199' } });
    expect(part.status).toBe(206);
    expect(part.headers.get('content-range')).toBe(`bytes 100-199/${videoBytes.length}`);
    expect(Buffer.from(await part.arrayBuffer()).equals(videoBytes.subarray(100, 200))).toBe(true);
    const tail = await fetch(url, { headers: { range: 'bytes=-10' } });
    expect(Buffer.from(await tail.arrayBuffer()).equals(videoBytes.subarray(-10))).toBe(true);
    expect((await fetch(url, { headers: { range: `bytes=${videoBytes.length}-` } })).status).toBe(416);
    expect((await fetch(url, { headers: { 'if-none-match': etag } })).status).toBe(304);
    const head = await fetch(url, { method: 'HEAD' });
    expect(head.headers.get('content-length')).toBe(String(videoBytes.length));
  });

  it('serves thumbnails and segment pictures from the store, and QA sees the keyframes', async () => {
    const video = await getVideo(ocular, videoId);
    const thumbnail = await fetch(video.metadata.thumbnail!);
    expect(thumbnail.status).toBe(200);
    expect((await sharp(Buffer.from(await thumbnail.arrayBuffer())).metadata()).format).toBe('jpeg');

    const search = await ocular.post('/v1/videos/search', { query: 'colourful test pattern', max_results: 5 });
    const found = (await search.json()) as { results: Array<{ video_id: string; thumbnail_url: string }> };
    expect(found.results.length).toBeGreaterThan(0);
    const picture = await fetch(found.results[0]!.thumbnail_url);
    expect(picture.status).toBe(200);
    expect((await sharp(Buffer.from(await picture.arrayBuffer())).metadata()).format).toBe('jpeg');

    const qa = await ocular.post('/v1/qa/chat', { video_id: videoId, messages: [{ role: 'user', content: 'What is shown?' }] });
    expect(qa.status).toBe(200);
    const asked = JSON.stringify(upstream.requests.at(-1)!.body);
    expect(asked).toContain('data:image/jpeg;base64,');
  });

  it('redirects downloads to a URL the store signed, after checking its own signature', async () => {
    const form = new FormData();
    form.set('video_name', 'redirected');
    form.set('index', 'false');
    form.set('file', new Blob([new Uint8Array(videoBytes)], { type: 'video/mp4' }), 'v.mp4');
    const uploaded = await fetch(`${redirecting.url}/v1/videos/upload`, {
      method: 'POST',
      headers: { 'x-api-key': redirecting.key },
      body: form,
    });
    expect(uploaded.status).toBe(200);
    const { url } = (await uploaded.json()) as WireVideo;
    const response = await fetch(url, { redirect: 'manual' });
    expect(response.status).toBe(302);
    expect(response.headers.get('cache-control')).toBe('no-store');
    const location = response.headers.get('location')!;
    expect(location.startsWith(`${s3.url}/`)).toBe(true);
    // The store serves ranges itself, under the type Ocular decided.
    const part = await fetch(location, { headers: { range: 'bytes=0-99' } });
    expect(part.status).toBe(206);
    expect(part.headers.get('content-type')).toBe('video/mp4');
    expect(Buffer.from(await part.arrayBuffer()).equals(videoBytes.subarray(0, 100))).toBe(true);
    // Without a valid signature of Ocular's there is no redirect.
    expect((await fetch(tamperSignature(url), { redirect: 'manual' })).status).toBe(403);
    expect((await fetch(url.split('?')[0]!, { redirect: 'manual' })).status).toBe(403);
  });

  it('stores images in the store and serves them from it', async () => {
    const png = await sharp({ create: { width: 64, height: 48, channels: 3, background: '#c03030' } })
      .png()
      .toBuffer();
    const body = new FormData();
    body.append('images', new Blob([new Uint8Array(png)], { type: 'image/png' }), 'red.png');
    body.append('metadata', JSON.stringify({ requests: [{ indexing_config: { index: false } }] }));
    const response = await fetch(`${redirecting.url}/v1/images/upload`, {
      method: 'POST',
      headers: { 'x-api-key': redirecting.key },
      body,
    });
    const text = await response.text();
    expect(response.status, text).toBe(200);
    const [image] = (JSON.parse(text) as { results: Array<{ image_id: string; image_url: string }> }).results;
    expect(await store.within('images').exists(image!.image_id)).toBe(true);
    expect(existsSync(join(redirecting.dataDir, 'images', image!.image_id))).toBe(false);

    const redirect = await fetch(image!.image_url, { redirect: 'manual' });
    expect(redirect.status).toBe(302);
    const location = redirect.headers.get('location')!;
    expect(location.startsWith(`${s3.url}/`)).toBe(true);
    const fromStore = await fetch(location);
    expect(fromStore.headers.get('content-type')).toBe('image/jpeg'); // normalised on upload
    expect((await sharp(Buffer.from(await fromStore.arrayBuffer())).metadata()).width).toBe(64);
    // A URL that is not validly signed gets no redirect.
    expect((await fetch(tamperSignature(image!.image_url), { redirect: 'manual' })).status).toBe(403);

    const deleted = await fetch(`${redirecting.url}/v1/images/${image!.image_id}`, { method: 'DELETE', headers: redirecting.headers });
    expect(deleted.status).toBeLessThan(300);
    expect(await store.within('images').exists(image!.image_id)).toBe(false);
  });

  it('keeps conversation assets in the store and sends them to the model from there', async () => {
    const jpeg = await sharp({ create: { width: 40, height: 30, channels: 3, background: '#20c020' } })
      .jpeg()
      .toBuffer();
    const body = new FormData();
    body.append('asset', new Blob([new Uint8Array(jpeg)]), 'green.jpg');
    const response = await fetch(`${ocular.url}/api/assets`, { method: 'POST', headers: { 'API-KEY': ocular.key }, body });
    const text = await response.text();
    expect(response.status, text).toBe(200);
    const { asset } = JSON.parse(text) as { asset: { key: string; url: string } };
    expect(await store.within('assets').exists(asset.key)).toBe(true);
    const file = await fetch(asset.url);
    expect(file.status).toBe(200);
    expect((await sharp(Buffer.from(await file.arrayBuffer())).metadata()).width).toBe(40);

    const turn = await fetch(`${ocular.url}/api/features`, {
      method: 'POST',
      headers: { 'API-KEY': ocular.key, 'content-type': 'application/json' },
      body: JSON.stringify({ type: 'CHAT_WITH_IMAGE', conversationId: null, promptObject: { prompt: 'Colour?', imageList: [asset.key] } }),
    });
    expect(turn.status, await turn.clone().text()).toBe(200);
    expect(JSON.stringify(upstream.requests.at(-1)!.body)).toContain('data:image/jpeg;base64,');
  });

  it('renders a clip from the store and uploads its output there', { timeout: 90_000 }, async () => {
    const created = await ocular.post('/v1/clips', {
      video_ids: [videoId],
      prompt: 'colourful test pattern',
      generation_config: { min_duration_seconds: 1, max_duration_seconds: 2 },
    });
    const text = await created.text();
    expect(created.status, text).toBe(200);
    const { id } = JSON.parse(text) as { id: string };
    const clip = await waitFor('the clip', async () => {
      const current = (await (await ocular.get(`/v1/clips/${id}`)).json()) as {
        status: string;
        error_message?: string;
        output: Array<{ url: string }>;
      };
      return current.status === 'completed' || current.status === 'failed' ? current : undefined;
    });
    expect(clip.status, clip.error_message).toBe('completed');
    expect(await store.within('clips').list(id)).toEqual(['output-0.mp4']);
    expect(existsSync(join(ocular.dataDir, 'clips', id))).toBe(false);
    const output = await fetch(clip.output[0]!.url, { headers: { range: 'bytes=0-7' } });
    expect(output.status).toBe(206);
    expect(
      Buffer.from(await output.arrayBuffer())
        .subarray(4, 8)
        .toString('latin1'),
    ).toBe('ftyp');

    const deleted = await fetch(`${ocular.url}/v1/clips/${id}`, { method: 'DELETE', headers: ocular.headers });
    expect(deleted.status).toBeLessThan(300);
    expect(await store.within('clips').list(id)).toEqual([]);
  });

  it('deletes every blob of a deleted video from the store', async () => {
    const deleted = await fetch(`${ocular.url}/v1/videos/${videoId}`, { method: 'DELETE', headers: ocular.headers });
    expect(deleted.status).toBeLessThan(300);
    expect(await store.within('videos').list(videoId)).toEqual([]);
  });

  it('counts its requests to the store in /metrics, by operation and outcome', async () => {
    const response = await ocular.get('/metrics');
    expect(response.status).toBe(200);
    const text = await response.text();
    const count = (operation: string, outcome: string): number =>
      Number(
        new RegExp(`^ocular_blob_store_requests_total\\{operation="${operation}",outcome="${outcome}"\\} (\\d+)`, 'm').exec(text)?.[1] ?? 0,
      );
    // The uploads (one part each: the test video is smaller than a part), downloads, deletes.
    expect(count('PutObject', 'ok')).toBeGreaterThan(0);
    expect(count('GetObject', 'ok')).toBeGreaterThan(0);
    expect(count('HeadObject', 'ok')).toBeGreaterThan(0);
    expect(count('DeleteObjects', 'ok')).toBeGreaterThan(0);
    expect(text).toMatch(/^ocular_blob_store_request_duration_seconds_bucket\{le="[^"]+",operation="GetObject"\} \d+/m);
  });

  it('refuses to start on a bucket it cannot reach, saying which', async () => {
    await expect(startOcular({ ...config(), blobs: { ...s3.settings, bucket: 'no-such-bucket' } })).rejects.toThrow(
      /blobs: .*"no-such-bucket"/,
    );
  });

  it('reports the store in /readyz, and fails readiness while it is unreachable', async () => {
    expect((await fetch(`${ocular.url}/readyz`)).status).toBe(200);
    const own = await startTestS3();
    const server = await startOcular({ ...config(), blobs: own.settings });
    try {
      expect((await fetch(`${server.url}/readyz`)).status).toBe(200);
      await own.close();
      const ready = await fetch(`${server.url}/readyz`);
      expect(ready.status).toBe(503);
      expect(await ready.text()).toContain('blobs');
      // Requests that need the store answer 503 with Retry-After (the store is down, not Ocular), never 500.
      const form = new FormData();
      form.set('video_name', 'store down');
      form.set('index', 'false');
      form.set('file', new Blob([new Uint8Array(videoBytes)], { type: 'video/mp4' }), 'v.mp4');
      const upload = await fetch(`${server.url}/v1/videos/upload`, { method: 'POST', headers: { 'x-api-key': server.key }, body: form });
      expect(upload.status).toBe(503);
      expect(upload.headers.get('retry-after')).toBe('5');
      expect(((await upload.json()) as { error: { type: string; message: string } }).error).toMatchObject({
        type: 'unavailable_error',
        message: expect.stringMatching(/blob store/),
      });
      const image = new FormData();
      image.append(
        'images',
        new Blob([
          new Uint8Array(
            await sharp({ create: { width: 8, height: 8, channels: 3, background: '#000' } })
              .png()
              .toBuffer(),
          ),
        ]),
        'i.png',
      );
      const images = await fetch(`${server.url}/v1/images/upload`, { method: 'POST', headers: { 'x-api-key': server.key }, body: image });
      expect(images.status).toBe(503);
    } finally {
      await server.close();
    }
  });
});
