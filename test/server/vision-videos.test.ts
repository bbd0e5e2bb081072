import { createServer, type Server } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { readFile } from 'node:fs/promises';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hasTestBlob } from '../helpers/blob-mode.ts';
import { garbage, makeVideo, removeMediaFixtures } from '../helpers/media-fixtures.ts';
import { startOcular, type TestOcular } from '../helpers/ocular.ts';

const KEY_A = 'ocu_owner_a_0123456789abcdef';
const KEY_B = 'ocu_owner_b_0123456789abcdef';

interface WireVideo {
  video_id: string;
  video_name: string;
  url: string;
  indexing_status: string;
  indexing_progress: number;
  error?: string;
  group_id: string;
  metadata: Record<string, unknown> & { thumbnail: string | null; duration: number | null };
}

let ocular: TestOcular;
let videoPath: string;
let videoBytes: Buffer;
let mediaServer: Server;
let mediaUrl: string;

function form(fields: Record<string, string>, file?: { bytes: Buffer; name?: string; type?: string }): FormData {
  const body = new FormData();
  for (const [name, value] of Object.entries(fields)) body.set(name, value);
  if (file) body.set('file', new Blob([new Uint8Array(file.bytes)], { type: file.type ?? 'video/mp4' }), file.name ?? 'clip.mp4');
  return body;
}

function upload(body: FormData, key = KEY_A): Promise<Response> {
  return fetch(`${ocular.url}/v1/videos/upload`, { method: 'POST', headers: { 'x-api-key': key }, body });
}

function call(method: string, path: string, key = KEY_A, body?: unknown): Promise<Response> {
  return fetch(ocular.url + path, {
    method,
    headers: { 'x-api-key': key, 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
}

async function expectError(response: Response, status: number, type: string): Promise<{ message: string; param?: string }> {
  const body = (await response.json()) as { error: { type: string; message: string; param?: string } };
  expect({ status: response.status, type: body.error.type }).toEqual({ status, type });
  return body.error;
}

async function uploadVideo(fields: Record<string, string> = {}, key = KEY_A): Promise<WireVideo> {
  const response = await upload(form({ video_name: 'clip', index: 'false', ...fields }, { bytes: videoBytes }), key);
  expect(response.status).toBe(200);
  return (await response.json()) as WireVideo;
}

beforeAll(async () => {
  videoPath = await makeVideo({ seconds: 6, width: 320, height: 240, withAudio: true });
  videoBytes = await readFile(videoPath);
  mediaServer = createServer((request, response) => {
    if (request.url === '/clip.mp4') {
      response.writeHead(200, { 'content-type': 'video/mp4', 'content-length': videoBytes.length });
      response.end(videoBytes);
    } else if (request.url === '/page.html') {
      response.writeHead(200, { 'content-type': 'text/html' });
      response.end('<html><body>not a video</body></html>');
    } else {
      response.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve) => mediaServer.listen(0, '127.0.0.1', resolve));
  mediaUrl = `http://127.0.0.1:${(mediaServer.address() as AddressInfo).port}`;
  ocular = await startOcular(
    { limits: { maxUploadBytes: 5 * 1024 * 1024 }, media: { allowHosts: [`127.0.0.1:${(mediaServer.address() as AddressInfo).port}`] } },
    { envApiKeys: [KEY_A, KEY_B] },
  );
}, 60_000);

afterAll(async () => {
  await ocular?.close();
  await new Promise<void>((resolve) => mediaServer?.close(() => resolve()));
  removeMediaFixtures();
});

describe('POST /v1/videos/upload', () => {
  it('stores an uploaded file and describes it', async () => {
    const video = await uploadVideo({ video_name: 'my clip', video_start_absolute_timestamp: '2025-04-12T19:05:45' });
    expect(video).toMatchObject({
      video_name: 'my clip',
      indexing_status: 'pending',
      indexing_progress: 0,
      group_id: 'default',
      metadata: { width: 320, height: 240, codec: 'h264', has_audio: true, size_bytes: videoBytes.length, avg_fps: 25 },
    });
    expect(video.video_id).toMatch(/^[0-9a-f-]{36}$/);
    expect(video.metadata.duration).toBeCloseTo(6, 0);
    expect(video.metadata.video_start_absolute_timestamp).toBe('2025-04-12T19:05:45');
    const fetched = (await (await call('GET', `/v1/videos/${video.video_id}`)).json()) as WireVideo;
    expect(fetched).toMatchObject({ video_id: video.video_id, video_name: 'my clip', indexing_status: 'pending' });
  });

  it('accepts the video_absolute_start_timestamp alias', async () => {
    const video = await uploadVideo({ video_absolute_start_timestamp: '2025-04-12T19:05:45Z' });
    expect(video.metadata.video_start_absolute_timestamp).toBe('2025-04-12T19:05:45Z');
  });

  it('fetches a video_url through the safe fetcher', async () => {
    const response = await upload(form({ video_name: 'from url', index: 'false', video_url: `${mediaUrl}/clip.mp4` }));
    expect(response.status).toBe(200);
    const video = (await response.json()) as WireVideo;
    expect(video.metadata.size_bytes).toBe(videoBytes.length);
    const file = await fetch(video.url);
    expect(Buffer.from(await file.arrayBuffer()).equals(videoBytes)).toBe(true);
  });

  it('refuses a video_url on a private address that is not allow-listed', async () => {
    const error = await expectError(
      await upload(form({ video_name: 'x', index: 'false', video_url: 'http://10.0.0.1/clip.mp4' })),
      400,
      'validation_error',
    );
    expect(error.param).toBe('video_url');
    const loopback = await upload(form({ video_name: 'x', index: 'false', video_url: 'http://127.0.0.1:9/clip.mp4' }));
    await expectError(loopback, 400, 'validation_error');
  });

  it('refuses a video_url that is not a video (415) or that does not exist (400)', async () => {
    await expectError(
      await upload(form({ video_name: 'x', index: 'false', video_url: `${mediaUrl}/page.html` })),
      415,
      'unsupported_media_type',
    );
    await expectError(
      await upload(form({ video_name: 'x', index: 'false', video_url: `${mediaUrl}/missing.mp4` })),
      400,
      'validation_error',
    );
  });

  it('indexes an upload that leaves out `index`, as Reka does', async () => {
    const response = await upload(form({ video_name: 'no index field' }, { bytes: videoBytes }));
    expect(response.status).toBe(200);
    const video = (await response.json()) as WireVideo & { indexing_type: string | null };
    expect(video.indexing_type).toBe('segments');
    expect((await call('DELETE', `/v1/videos/${video.video_id}`)).status).toBe(200);
    expect(((await uploadVideo()) as WireVideo & { indexing_type: string | null }).indexing_type).toBeNull();
  });

  it('needs exactly one of file and video_url', async () => {
    const both = form({ video_name: 'x', index: 'false', video_url: `${mediaUrl}/clip.mp4` }, { bytes: videoBytes });
    await expectError(await upload(both), 400, 'validation_error');
    await expectError(await upload(form({ video_name: 'x', index: 'false' })), 400, 'validation_error');
  });

  it('validates the form fields', async () => {
    const file = { bytes: videoBytes };
    expect((await expectError(await upload(form({ index: 'false' }, file)), 400, 'validation_error')).param).toBe('video_name');
    expect((await expectError(await upload(form({ video_name: 'x', index: 'maybe' }, file)), 400, 'validation_error')).param).toBe('index');
    const badTime = form({ video_name: 'x', index: 'false', video_start_absolute_timestamp: 'yesterday' }, file);
    expect((await expectError(await upload(badTime), 400, 'validation_error')).param).toBe('video_start_absolute_timestamp');
    await expectError(await upload(form({ video_name: 'x', index: 'false', colour: 'red' }, file)), 400, 'validation_error');
    const badHook = form({ video_name: 'x', index: 'false', webhook_url: 'ftp://example.com/hook' }, file);
    expect((await expectError(await upload(badHook), 400, 'validation_error')).param).toBe('webhook_url');
  });

  it('refuses an empty file, bytes that are not a video, and bodies that are not multipart', async () => {
    await expectError(await upload(form({ video_name: 'x', index: 'false' }, { bytes: Buffer.alloc(0) })), 400, 'validation_error');
    const text = form(
      { video_name: 'x', index: 'false' },
      { bytes: Buffer.from('just some text, not a video at all'), type: 'text/plain' },
    );
    await expectError(await upload(text), 415, 'unsupported_media_type');
    const png = await (
      await import('sharp')
    )
      .default({ create: { width: 8, height: 8, channels: 3, background: '#f00' } })
      .png()
      .toBuffer();
    await expectError(
      await upload(form({ video_name: 'x', index: 'false' }, { bytes: png, type: 'image/png' })),
      415,
      'unsupported_media_type',
    );
    const json = await fetch(`${ocular.url}/v1/videos/upload`, {
      method: 'POST',
      headers: { 'x-api-key': KEY_A, 'content-type': 'application/json' },
      body: JSON.stringify({ video_name: 'x', index: false }),
    });
    await expectError(json, 415, 'unsupported_media_type');
  });

  it('refuses uploads over limits.maxUploadBytes and keeps nothing of them', async () => {
    const big = Buffer.concat([videoBytes, Buffer.alloc(6 * 1024 * 1024)]);
    const response = await upload(form({ video_name: 'big', index: 'false' }, { bytes: big }));
    await expectError(response, 413, 'payload_too_large');
    const incoming = join(ocular.dataDir, 'videos', '.incoming');
    const { readdir } = await import('node:fs/promises');
    expect(existsSync(incoming) ? await readdir(incoming) : []).toEqual([]);
  });

  it('answers 404 for an unknown group', async () => {
    const error = await expectError(
      await upload(form({ video_name: 'x', index: 'false', group_id: 'nope' }, { bytes: videoBytes })),
      404,
      'not_found_error',
    );
    expect(error.param).toBe('group_id');
  });

  it('keeps a video ffprobe cannot read as failed, with a reason, and goes on serving', async () => {
    const bytes = await readFile(await garbage(4096));
    // An MP4 signature followed by noise: sniffs as a video, cannot be decoded.
    const fake = Buffer.concat([videoBytes.subarray(0, 32), bytes]);
    const response = await upload(form({ video_name: 'broken', index: 'true' }, { bytes: fake }));
    expect(response.status).toBe(200);
    const video = (await response.json()) as WireVideo;
    expect(video.indexing_status).toBe('failed');
    expect(video.error).toMatch(/could not be read as a video/);
    expect((await call('GET', '/healthz')).status).toBe(200);
    expect((await uploadVideo()).indexing_status).toBe('pending');
  });
});

describe('GET /v1/videos', () => {
  it('pages through the owner’s videos and filters by group and status', async () => {
    const group = (await (await call('POST', '/v1/videos/groups', KEY_A, { name: 'paging' })).json()) as { group_id: string };
    const ids: string[] = [];
    for (let index = 0; index < 3; index++) ids.push((await uploadVideo({ group_id: group.group_id, video_name: `p${index}` })).video_id);
    const first = (await (await call('GET', `/v1/videos?group_id=${group.group_id}&limit=2`)).json()) as {
      results: WireVideo[];
      total: number;
    };
    expect(first.total).toBe(3);
    expect(first.results.map((video) => video.video_id)).toEqual(ids.slice(0, 2));
    const second = (await (await call('GET', `/v1/videos?group_id=${group.group_id}&limit=2&offset=2`)).json()) as { results: WireVideo[] };
    expect(second.results.map((video) => video.video_id)).toEqual(ids.slice(2));
    const failed = (await (await call('GET', '/v1/videos?indexing_status=failed&limit=100')).json()) as { results: WireVideo[] };
    expect(failed.results.every((video) => video.indexing_status === 'failed')).toBe(true);
  });

  it('validates paging and filters', async () => {
    await expectError(await call('GET', '/v1/videos?limit=0'), 400, 'validation_error');
    await expectError(await call('GET', '/v1/videos?limit=101'), 400, 'validation_error');
    await expectError(await call('GET', '/v1/videos?offset=-1'), 400, 'validation_error');
    await expectError(await call('GET', '/v1/videos?indexing_status=done'), 400, 'validation_error');
    await expectError(await call('GET', '/v1/videos?sort=name'), 400, 'validation_error');
  });
});

describe('signed URLs', () => {
  it('serve the video with Range support and no API key, and refuse tampering', async () => {
    const video = await uploadVideo();
    const full = await fetch(video.url);
    expect(full.status).toBe(200);
    expect(full.headers.get('accept-ranges')).toBe('bytes');
    expect(Buffer.from(await full.arrayBuffer()).equals(videoBytes)).toBe(true);
    const part = await fetch(video.url, { headers: { range: 'bytes=100-199' } });
    expect(part.status).toBe(206);
    expect(part.headers.get('content-range')).toBe(`bytes 100-199/${videoBytes.length}`);
    expect(Buffer.from(await part.arrayBuffer()).equals(videoBytes.subarray(100, 200))).toBe(true);

    const url = new URL(video.url);
    const other = await uploadVideo();
    const swapped = `${ocular.url}/v1/videos/${other.video_id}/file${url.search}`;
    await expectError(await fetch(swapped), 403, 'permission_error');
    url.searchParams.set('expires', String(Number(url.searchParams.get('expires')) + 60));
    await expectError(await fetch(url), 403, 'permission_error');
    await expectError(await fetch(`${ocular.url}/v1/videos/${video.video_id}/file`), 403, 'permission_error');
  });

  it('are built on vision.publicBaseUrl when it is set (behind a reverse proxy)', async () => {
    const proxied = await startOcular({ vision: { publicBaseUrl: 'https://ocular.example.com/' } });
    try {
      const response = await fetch(`${proxied.url}/v1/videos/upload`, {
        method: 'POST',
        headers: { 'x-api-key': proxied.key },
        body: form({ video_name: 'proxied', index: 'false' }, { bytes: videoBytes }),
      });
      const video = (await response.json()) as WireVideo;
      const url = new URL(video.url);
      expect(url.origin).toBe('https://ocular.example.com');
      // The proxy forwards path and query unchanged: the signature holds on the server behind it.
      const served = await fetch(`${proxied.url}${url.pathname}${url.search}`, { headers: { range: 'bytes=0-9' } });
      expect(served.status).toBe(206);
    } finally {
      await proxied.close();
    }
  });

  it('serve the thumbnail as a JPEG', async () => {
    const video = await uploadVideo();
    expect(video.metadata.thumbnail).toMatch(/\/thumbnail\?expires=/);
    const thumbnail = await fetch(video.metadata.thumbnail!);
    expect(thumbnail.status).toBe(200);
    expect(thumbnail.headers.get('content-type')).toBe('image/jpeg');
    const bytes = Buffer.from(await thumbnail.arrayBuffer());
    expect(bytes.subarray(0, 2).toString('hex')).toBe('ffd8');
  });
});

describe('owner isolation', () => {
  it('hides one owner’s videos and groups from another', async () => {
    const group = (await (await call('POST', '/v1/videos/groups', KEY_A, { name: 'private' })).json()) as { group_id: string };
    const video = await uploadVideo({ group_id: group.group_id });
    await expectError(await call('GET', `/v1/videos/${video.video_id}`, KEY_B), 404, 'not_found_error');
    await expectError(await call('DELETE', `/v1/videos/${video.video_id}`, KEY_B), 404, 'not_found_error');
    await expectError(await call('GET', `/v1/videos/${video.video_id}/events`, KEY_B), 404, 'not_found_error');
    await expectError(await call('GET', `/v1/videos/groups/${group.group_id}`, KEY_B), 404, 'not_found_error');
    await expectError(await call('PATCH', `/v1/videos/groups/${group.group_id}`, KEY_B, { name: 'mine' }), 404, 'not_found_error');
    await expectError(await call('DELETE', `/v1/videos/groups/${group.group_id}?force=true`, KEY_B), 404, 'not_found_error');
    const listed = (await (await call('GET', '/v1/videos?limit=100', KEY_B)).json()) as { results: WireVideo[]; total: number };
    expect(listed.results.map((entry) => entry.video_id)).not.toContain(video.video_id);
    const groups = (await (await call('GET', '/v1/videos/groups?limit=100', KEY_B)).json()) as { results: Array<{ group_id: string }> };
    expect(groups.results.map((entry) => entry.group_id)).toEqual(['default']);
    await expectError(
      await upload(form({ video_name: 'x', index: 'false', group_id: group.group_id }, { bytes: videoBytes }), KEY_B),
      404,
      'not_found_error',
    );
    // Still there for its owner.
    expect((await call('GET', `/v1/videos/${video.video_id}`, KEY_A)).status).toBe(200);
  });

  it('needs an API key', async () => {
    const response = await fetch(`${ocular.url}/v1/videos`);
    await expectError(response, 401, 'authentication_error');
  });
});

describe('groups', () => {
  it('are created, listed, read, updated and deleted', async () => {
    const created = await call('POST', '/v1/videos/groups', KEY_A, { name: 'Launch', metadata: { campaign: 'x' } });
    expect(created.status).toBe(201);
    const group = (await created.json()) as { group_id: string; name: string; metadata: unknown; created_at: string; updated_at: string };
    expect(group).toMatchObject({ name: 'Launch', metadata: { campaign: 'x' } });
    const read = (await (await call('GET', `/v1/videos/groups/${group.group_id}`)).json()) as typeof group;
    expect(read).toEqual(group);
    const patched = (await (
      await call('PATCH', `/v1/videos/groups/${group.group_id}`, KEY_A, { name: 'Renamed', metadata: 'plain' })
    ).json()) as typeof group;
    expect(patched).toMatchObject({ group_id: group.group_id, name: 'Renamed', metadata: 'plain' });
    const list = (await (await call('GET', '/v1/videos/groups?limit=100')).json()) as {
      results: Array<{ group_id: string }>;
      total: number;
    };
    expect(list.results.map((entry) => entry.group_id)).toContain(group.group_id);
    expect(list.results[0]!.group_id).toBe('default');
    expect((await call('DELETE', `/v1/videos/groups/${group.group_id}`)).status).toBe(200);
    await expectError(await call('GET', `/v1/videos/groups/${group.group_id}`), 404, 'not_found_error');
  });

  it('refuse to delete a group that holds videos unless forced, and force deletes the videos', async () => {
    const group = (await (await call('POST', '/v1/videos/groups', KEY_A, { name: 'full' })).json()) as { group_id: string };
    const video = await uploadVideo({ group_id: group.group_id });
    await expectError(await call('DELETE', `/v1/videos/groups/${group.group_id}`), 409, 'conflict_error');
    expect((await call('DELETE', `/v1/videos/groups/${group.group_id}?force=true`)).status).toBe(200);
    await expectError(await call('GET', `/v1/videos/${video.video_id}`), 404, 'not_found_error');
    expect(await hasTestBlob(ocular.dataDir, `videos/${video.video_id}`)).toBe(false);
  });

  it('validate their fields', async () => {
    await expectError(await call('POST', '/v1/videos/groups', KEY_A, {}), 400, 'validation_error');
    await expectError(await call('POST', '/v1/videos/groups', KEY_A, { name: 'x', metadata: 'm'.repeat(501) }), 400, 'validation_error');
    await expectError(
      await call('POST', '/v1/videos/groups', KEY_A, { name: 'x', metadata: { note: 'n'.repeat(500) } }),
      400,
      'validation_error',
    );
    await expectError(await call('POST', '/v1/videos/groups', KEY_A, { name: 42 }), 400, 'validation_error');
    await expectError(await call('POST', '/v1/videos/groups', KEY_A, { name: 'x', colour: 'red' }), 400, 'validation_error');
    await expectError(await call('PATCH', '/v1/videos/groups/default', KEY_A, {}), 400, 'validation_error');
    const malformed = await fetch(`${ocular.url}/v1/videos/groups`, { method: 'POST', headers: { 'x-api-key': KEY_A }, body: '{"name":' });
    await expectError(malformed, 400, 'validation_error');
  });
});

describe('DELETE /v1/videos/{id}', () => {
  it('removes the video and its blobs', async () => {
    const video = await uploadVideo();
    expect(await hasTestBlob(ocular.dataDir, `videos/${video.video_id}/source`)).toBe(true);
    expect((await call('DELETE', `/v1/videos/${video.video_id}`)).status).toBe(200);
    await expectError(await call('GET', `/v1/videos/${video.video_id}`), 404, 'not_found_error');
    expect(existsSync(join(ocular.dataDir, 'videos', video.video_id))).toBe(false);
    await expectError(await fetch(video.url), 404, 'not_found_error');
    await expectError(await call('DELETE', `/v1/videos/${video.video_id}`), 404, 'not_found_error');
  });

  it('answers 404 for ids that are not video ids', async () => {
    await expectError(await call('GET', '/v1/videos/..%2F..%2Fetc'), 404, 'not_found_error');
    await expectError(await call('DELETE', '/v1/videos/not-a-uuid'), 404, 'not_found_error');
  });
});

describe('limits.maxConcurrentUploads', () => {
  it('answers 429 with Retry-After while the limit is reached, and accepts uploads again after', async () => {
    const limited = await startOcular({ limits: { maxConcurrentUploads: 1 } });
    const socket = connect(Number(new URL(limited.url).port), '127.0.0.1');
    try {
      // A first upload that has sent its headers and part of its body, and then waits.
      socket.on('error', () => undefined);
      const boundary = 'ocular-limit-test';
      socket.write(
        `POST /v1/videos/upload HTTP/1.1\r\nHost: x\r\nX-Api-Key: ${limited.key}\r\n` +
          `Content-Type: multipart/form-data; boundary=${boundary}\r\nContent-Length: 100000\r\n\r\n` +
          `--${boundary}\r\nContent-Disposition: form-data; name="video_name"\r\n\r\nslow\r\n` +
          `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="slow.mp4"\r\n\r\n` +
          'x'.repeat(20_000),
      );
      // It holds its slot once its file is being written.
      const incoming = join(limited.dataDir, 'videos', '.incoming');
      for (let waited = 0; !(existsSync(incoming) && readdirSync(incoming).length > 0) && waited < 10_000; waited += 20) {
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      const refused = await fetch(`${limited.url}/v1/videos/upload`, {
        method: 'POST',
        headers: { 'x-api-key': limited.key },
        body: form({ video_name: 'second', index: 'false' }, { bytes: videoBytes }),
      });
      expect(refused.headers.get('retry-after')).toBe('5');
      await expectError(refused, 429, 'rate_limit_error');
      // The bound is shared by every route that takes an upload: images, assets, audio and quicktag wait too.
      const image = new FormData();
      image.set('images', new Blob([new Uint8Array(videoBytes)]), 'photo.jpg');
      await expectError(
        await fetch(`${limited.url}/v1/images/upload`, { method: 'POST', headers: { 'x-api-key': limited.key }, body: image }),
        429,
        'rate_limit_error',
      );
      const asset = new FormData();
      asset.set('asset', new Blob([new Uint8Array(videoBytes)]), 'clip.mp4');
      await expectError(
        await fetch(`${limited.url}/api/assets`, { method: 'POST', headers: { 'x-api-key': limited.key }, body: asset }),
        429,
        'rate_limit_error',
      );
      socket.destroy();
      // The slot is given back once the server has seen the client go and removed the partial file.
      for (let waited = 0; readdirSync(incoming).length > 0 && waited < 10_000; waited += 20) {
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      const accepted = await fetch(`${limited.url}/v1/videos/upload`, {
        method: 'POST',
        headers: { 'x-api-key': limited.key },
        body: form({ video_name: 'third', index: 'false' }, { bytes: videoBytes }),
      });
      expect(accepted.status).toBe(200);
    } finally {
      socket.destroy();
      await limited.close();
    }
  });
});
