import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { serve } from '@hono/node-server';
import { Hono } from 'hono';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { errorEnvelope } from '../../src/server/errors.ts';
import { fileResponse, parseRange } from '../../src/server/file-response.ts';
import { OcularError } from '../../src/spec/errors.ts';

const SIZE = 100_000;
const content = randomBytes(SIZE);
let dir: string;
let server: Server;
let base: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ocular-file-response-'));
  writeFileSync(join(dir, 'video.mp4'), content);
  writeFileSync(join(dir, 'empty.bin'), '');
  // A fixed mtime, so Last-Modified is known to the second.
  utimesSync(join(dir, 'video.mp4'), new Date('2030-01-01T00:00:00Z'), new Date('2030-01-01T00:00:00Z'));
  const app = new Hono();
  app.onError((error, c) => {
    const mapped = error instanceof OcularError ? error : new OcularError('server_error', String(error));
    return c.json(errorEnvelope(mapped), mapped.status as 400);
  });
  app.get('/files/:name', (c) =>
    fileResponse(join(dir, c.req.param('name')), c.req.raw, {
      contentType: 'video/mp4',
      cacheControl: 'private, max-age=3600',
      ...(c.req.query('download') === undefined ? {} : { downloadName: c.req.query('download') }),
    }),
  );
  server = await new Promise<Server>((resolve) => {
    const instance = serve({ fetch: app.fetch, hostname: '127.0.0.1', port: 0 }, () => resolve(instance as Server));
  });
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/files`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
  rmSync(dir, { recursive: true, force: true });
});

async function bytes(response: Response): Promise<Buffer> {
  return Buffer.from(await response.arrayBuffer());
}

describe('fileResponse', () => {
  it('serves the whole file with its length, type, validators and range support', async () => {
    const response = await fetch(`${base}/video.mp4`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-length')).toBe(String(SIZE));
    expect(response.headers.get('content-type')).toBe('video/mp4');
    expect(response.headers.get('accept-ranges')).toBe('bytes');
    expect(response.headers.get('cache-control')).toBe('private, max-age=3600');
    expect(response.headers.get('etag')).toMatch(/^"[0-9a-f]+-[0-9a-f]+"$/);
    expect(response.headers.get('last-modified')).toBe('Tue, 01 Jan 2030 00:00:00 GMT');
    expect(response.headers.get('content-disposition')).toBeNull();
    expect((await bytes(response)).equals(content)).toBe(true);
  });

  it.each([
    ['bytes=0-99', 0, 99],
    ['bytes=1000-1999', 1000, 1999],
    ['bytes=99990-200000', 99_990, SIZE - 1], // the end is clamped to the file
    ['bytes=1000-', 1000, SIZE - 1], // a browser seeking in a video
    ['bytes=-500', SIZE - 500, SIZE - 1],
    ['bytes=-200000', 0, SIZE - 1], // a suffix longer than the file is the whole file
    ['BYTES = 5 - 5', 5, 5],
  ])('answers %s with 206 and exactly those bytes', async (range, start, end) => {
    const response = await fetch(`${base}/video.mp4`, { headers: { range } });
    expect(response.status).toBe(206);
    expect(response.headers.get('content-range')).toBe(`bytes ${start}-${end}/${SIZE}`);
    expect(response.headers.get('content-length')).toBe(String(end - start + 1));
    expect((await bytes(response)).equals(content.subarray(start, end + 1))).toBe(true);
  });

  it.each(['bytes=100000-', 'bytes=200000-300000', 'bytes=-0'])('answers %s with 416 and the size', async (range) => {
    const response = await fetch(`${base}/video.mp4`, { headers: { range } });
    expect(response.status).toBe(416);
    expect(response.headers.get('content-range')).toBe(`bytes */${SIZE}`);
    expect((await bytes(response)).length).toBe(0);
  });

  it.each(['bytes=0-1,5-9', 'bytes=5-1', 'items=0-5', 'bytes=', 'bytes=-', 'bytes=abc'])(
    'ignores %s (several ranges, or not a valid byte range) and serves the whole file',
    async (range) => {
      const response = await fetch(`${base}/video.mp4`, { headers: { range } });
      expect(response.status).toBe(200);
      expect(response.headers.get('content-range')).toBeNull();
      expect((await bytes(response)).equals(content)).toBe(true);
    },
  );

  it('answers HEAD with the headers of the whole file and no body, ignoring Range', async () => {
    for (const headers of [{}, { range: 'bytes=0-9' }]) {
      const response = await fetch(`${base}/video.mp4`, { method: 'HEAD', headers });
      expect(response.status).toBe(200);
      expect(response.headers.get('content-length')).toBe(String(SIZE));
      expect(response.headers.get('accept-ranges')).toBe('bytes');
      expect(response.headers.get('etag')).toMatch(/^"/);
      expect((await bytes(response)).length).toBe(0);
    }
  });

  it('answers a matching If-None-Match or a later If-Modified-Since with 304', async () => {
    const etag = (await fetch(`${base}/video.mp4`, { method: 'HEAD' })).headers.get('etag')!;
    for (const ifNoneMatch of [etag, `W/${etag}`, `"other", ${etag}`, '*']) {
      const response = await fetch(`${base}/video.mp4`, { headers: { 'if-none-match': ifNoneMatch } });
      expect(response.status).toBe(304);
      expect(response.headers.get('etag')).toBe(etag);
      expect(response.headers.get('cache-control')).toBe('private, max-age=3600');
      expect((await bytes(response)).length).toBe(0);
    }
    const stale = await fetch(`${base}/video.mp4`, { headers: { 'if-none-match': '"other"' } });
    expect(stale.status).toBe(200);
    expect((await bytes(stale)).length).toBe(SIZE);

    const later = await fetch(`${base}/video.mp4`, { headers: { 'if-modified-since': 'Tue, 01 Jan 2030 00:00:00 GMT' } });
    expect(later.status).toBe(304);
    const earlier = await fetch(`${base}/video.mp4`, { headers: { 'if-modified-since': 'Mon, 31 Dec 2029 23:59:59 GMT' } });
    expect(earlier.status).toBe(200);
    await earlier.arrayBuffer();
    // If-None-Match wins over If-Modified-Since.
    const both = await fetch(`${base}/video.mp4`, {
      headers: { 'if-none-match': '"other"', 'if-modified-since': 'Tue, 01 Jan 2030 00:00:00 GMT' },
    });
    expect(both.status).toBe(200);
    await both.arrayBuffer();
  });

  it('serves the range only while If-Range still matches the file', async () => {
    const head = await fetch(`${base}/video.mp4`, { method: 'HEAD' });
    const etag = head.headers.get('etag')!;
    const lastModified = head.headers.get('last-modified')!;
    for (const ifRange of [etag, lastModified]) {
      const response = await fetch(`${base}/video.mp4`, { headers: { range: 'bytes=10-19', 'if-range': ifRange } });
      expect(response.status).toBe(206);
      expect((await bytes(response)).equals(content.subarray(10, 20))).toBe(true);
    }
    for (const ifRange of ['"stale"', `W/${etag}`, 'Mon, 31 Dec 2029 23:59:59 GMT', 'not a date']) {
      const response = await fetch(`${base}/video.mp4`, { headers: { range: 'bytes=10-19', 'if-range': ifRange } });
      expect(response.status).toBe(200);
      expect((await bytes(response)).equals(content)).toBe(true);
    }
  });

  it('serves an empty file with length 0 and refuses any range of it', async () => {
    const response = await fetch(`${base}/empty.bin`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-length')).toBe('0');
    expect((await bytes(response)).length).toBe(0);
    const ranged = await fetch(`${base}/empty.bin`, { headers: { range: 'bytes=0-' } });
    expect(ranged.status).toBe(416);
    expect(ranged.headers.get('content-range')).toBe('bytes */0');
  });

  it('offers a download under a name, with an ASCII fallback', async () => {
    const response = await fetch(`${base}/video.mp4?download=${encodeURIComponent('clip "één".mp4')}`);
    expect(response.headers.get('content-disposition')).toBe(
      `attachment; filename="clip ___n_.mp4"; filename*=UTF-8''clip%20%22%C3%A9%C3%A9n%22.mp4`,
    );
    await response.arrayBuffer();
  });

  it('answers a missing file with a 404 not_found_error', async () => {
    for (const name of ['missing.mp4', 'video.mp4%2Fx']) {
      const response = await fetch(`${base}/${name}`);
      expect(response.status).toBe(404);
      expect(await response.json()).toMatchObject({ error: { type: 'not_found_error' } });
    }
  });

  it('serves many partial reads that stop early without leaking descriptors', async () => {
    // A client that reads a little and goes away, as a video element does: each read stream must be closed.
    const openDescriptors = (): number => (process.platform === 'linux' ? readdirSync('/proc/self/fd').length : 0);
    const before = openDescriptors();
    for (let i = 0; i < 50; i += 1) {
      const controller = new AbortController();
      const response = await fetch(`${base}/video.mp4`, { signal: controller.signal });
      const reader = response.body!.getReader();
      await reader.read();
      controller.abort();
    }
    // Sockets take a moment to close on both ends; 50 leaked files would stay.
    for (let waited = 0; openDescriptors() > before + 10 && waited < 3000; waited += 50) await new Promise((r) => setTimeout(r, 50));
    expect(openDescriptors()).toBeLessThanOrEqual(before + 10);
    const response = await fetch(`${base}/video.mp4`, { headers: { range: 'bytes=1000-' } });
    expect((await bytes(response)).equals(content.subarray(1000))).toBe(true);
  });
});

describe('parseRange', () => {
  it('reads the three single-range forms and refuses what is past the end', () => {
    expect(parseRange('bytes=0-0', 10)).toEqual({ kind: 'range', start: 0, end: 0 });
    expect(parseRange('bytes=3-', 10)).toEqual({ kind: 'range', start: 3, end: 9 });
    expect(parseRange('bytes=-3', 10)).toEqual({ kind: 'range', start: 7, end: 9 });
    expect(parseRange('bytes=10-', 10)).toEqual({ kind: 'unsatisfiable' });
    expect(parseRange('bytes=-3', 0)).toEqual({ kind: 'unsatisfiable' });
    expect(parseRange(`bytes=${'9'.repeat(30)}-`, 10)).toEqual({ kind: 'none' });
    expect(parseRange(`bytes=0-${'9'.repeat(30)}`, 10)).toEqual({ kind: 'range', start: 0, end: 9 });
  });
});
