import { readdir, readFile } from 'node:fs/promises';
import type { ServerResponse } from 'node:http';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  createMediaFetcher,
  fetchMedia,
  MEDIA_USER_AGENT,
  type FetchMediaOptions,
  type MediaFetcher,
  type ResolveHost,
} from '../../src/media/fetch-media.ts';
import { Scratch } from '../../src/media/scratch.ts';
import { OcularError } from '../../src/spec/errors.ts';
import { startFakeUpstream, type FakeUpstream } from '../helpers/fake-upstream.ts';

// Every server here listens on 127.0.0.1, and every test keeps traffic there: blocked URLs use a test
// server's port, so an address check that let them through would show up as a recorded request.

const LABEL = 'messages.0.content.1';
const BODY = Buffer.from('media bytes '.repeat(1000));

function drainOrClose(response: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      response.off('drain', done).off('close', done);
      resolve();
    };
    response.on('drain', done).on('close', done);
  });
}

/** Writes `total` bytes in 64 KiB chunks, honouring backpressure, until done or the client goes away. */
async function streamBytes(response: ServerResponse, total: number, stats: { sent: number; closedEarly: boolean }): Promise<void> {
  const chunk = Buffer.alloc(64 * 1024, 0x61);
  let closed = false;
  response.on('close', () => {
    closed = true;
  });
  response.writeHead(200, { 'content-type': 'application/octet-stream' }); // no Content-Length: chunked
  while (stats.sent < total && !closed) {
    stats.sent += chunk.length;
    if (!response.write(chunk)) await drainOrClose(response);
  }
  stats.closedEarly = closed && stats.sent < total;
  if (!closed) response.end();
}

/** The rejection of `promise`, asserted to be a validation error about LABEL. */
async function expectRejection(promise: Promise<unknown>): Promise<OcularError> {
  const error = await promise.then(
    () => undefined,
    (reason: unknown) => reason,
  );
  expect(error).toBeInstanceOf(OcularError);
  const ocular = error as OcularError;
  expect(ocular.type).toBe('validation_error');
  expect(ocular.status).toBe(400);
  expect(ocular.param).toBe(LABEL);
  expect(ocular.message.startsWith(`${LABEL}: `)).toBe(true);
  return ocular;
}

let upstream: FakeUpstream;
let other: FakeUpstream;
let port: number;
let otherPort: number;
let scratch: Scratch;
const signal = new AbortController().signal;

/** Routes of the main test server. */
const routes = new Map<string, (response: ServerResponse) => unknown>();

beforeAll(async () => {
  upstream = await startFakeUpstream(async (request, response) => {
    const route = routes.get(request.url.split('?')[0]!);
    if (route === undefined) {
      response.writeHead(404).end('not here');
      return;
    }
    await route(response);
  });
  other = await startFakeUpstream((_request, response) => {
    response.writeHead(200, { 'content-type': 'text/plain' }).end('other server');
  });
  port = Number(new URL(upstream.url).port);
  otherPort = Number(new URL(other.url).port);
});

afterAll(async () => {
  await upstream.close();
  await other.close();
});

beforeEach(async () => {
  routes.clear();
  routes.set('/media.bin', (response) => response.writeHead(200, { 'content-type': 'image/png' }).end(BODY));
  upstream.requests.length = 0;
  other.requests.length = 0;
  scratch = await Scratch.create();
});

afterEach(async () => {
  await scratch.dispose();
});

const options = (overrides: Partial<FetchMediaOptions> = {}): FetchMediaOptions => ({
  label: LABEL,
  maxBytes: 1024 * 1024,
  connectTimeoutMs: 2_000,
  timeoutMs: 5_000,
  allowHosts: [],
  ...overrides,
});

const allowLocal = (overrides: Partial<FetchMediaOptions> = {}): FetchMediaOptions =>
  options({ allowHosts: [`127.0.0.1:${port}`], ...overrides });

describe('fetchMedia: address policy', () => {
  it('blocks a loopback URL by default, before connecting', async () => {
    const error = await expectRejection(fetchMedia(`${upstream.url}/media.bin`, options(), scratch, signal));
    expect(error.message).toContain('loopback address 127.0.0.1');
    expect(upstream.requests).toHaveLength(0);
  });

  it.each([
    ['an address', (p: number) => `http://127.0.0.1:${p}/media.bin`],
    ['a name resolving to one', (p: number) => `http://localhost:${p}/media.bin`],
  ])('says how to allow a blocked host (%s): the host it names in media.allowHosts lets the same URL through', async (_, url) => {
    const error = await expectRejection(fetchMedia(url(port), options(), scratch, signal));
    const named = /add "([^"]+)" to media\.allowHosts/.exec(error.message)?.[1];
    expect(named).toBe(new URL(url(port)).host);
    const fetched = await fetchMedia(url(port), options({ allowHosts: [named!] }), scratch, signal);
    expect(await readFile(fetched.path)).toEqual(BODY);
  });

  it('blocks localhost: the name resolves to loopback', async () => {
    const error = await expectRejection(fetchMedia(`http://localhost:${port}/media.bin`, options(), scratch, signal));
    expect(error.message).toMatch(/localhost resolves to an? (?:IPv4-mapped )?loopback address/);
    expect(upstream.requests).toHaveLength(0);
  });

  it.each([
    (p: number) => `http://2130706433:${p}/media.bin`,
    (p: number) => `http://0x7f.1:${p}/media.bin`,
    (p: number) => `http://0177.0.0.1:${p}/media.bin`,
    (p: number) => `http://127.1:${p}/media.bin`,
    (p: number) => `http://0x7f000001:${p}/media.bin`,
    (p: number) => `http://[::ffff:127.0.0.1]:${p}/media.bin`,
    (p: number) => `http://[::ffff:7f00:1]:${p}/media.bin`,
    (p: number) => `http://[::127.0.0.1]:${p}/media.bin`,
    (p: number) => `http://[::1]:${p}/media.bin`,
    (p: number) => `http://0.0.0.0:${p}/media.bin`,
    (p: number) => `http://0:${p}/media.bin`,
    (p: number) => `http://[::]:${p}/media.bin`,
  ])('blocks the numeric host form %#', async (form) => {
    const url = form(port);
    const error = await expectRejection(fetchMedia(url, options(), scratch, signal));
    expect(error.message).toMatch(/loopback|unspecified|non-global/);
    expect(upstream.requests).toHaveLength(0);
  });

  it('lets an allow-listed host:port through and streams the body to a file', async () => {
    const fetched = await fetchMedia(`${upstream.url}/media.bin?x=1`, allowLocal(), scratch, signal);
    expect(await readFile(fetched.path)).toEqual(BODY);
    expect(fetched.size).toBe(BODY.length);
    expect(fetched.contentType).toBe('image/png');
    expect(fetched.finalUrl).toBe(`${upstream.url}/media.bin?x=1`);
    expect(fetched.path.startsWith(scratch.dir)).toBe(true);
    expect(upstream.requests).toHaveLength(1);
    expect(upstream.requests[0]!.headers['user-agent']).toBe(MEDIA_USER_AGENT);
  });

  it('exempts a bare allow-listed host on any port', async () => {
    const fetched = await fetchMedia(`${other.url}/`, options({ allowHosts: ['127.0.0.1'] }), scratch, signal);
    expect(await readFile(fetched.path, 'utf8')).toBe('other server');
  });

  it('exempts an allow-listed name resolved by the system resolver', async () => {
    const fetched = await fetchMedia(`http://localhost:${port}/media.bin`, options({ allowHosts: [`localhost:${port}`] }), scratch, signal);
    expect(await readFile(fetched.path)).toEqual(BODY);
    expect(upstream.requests[0]!.headers.host).toBe(`localhost:${port}`);
  });

  it('does not let an allowance for another port leak to this one', async () => {
    const error = await expectRejection(
      fetchMedia(`${upstream.url}/media.bin`, options({ allowHosts: [`127.0.0.1:${otherPort}`] }), scratch, signal),
    );
    expect(error.message).toContain('loopback');
    expect(upstream.requests).toHaveLength(0);
  });

  it('does not exempt localhost when only 127.0.0.1 is allowed (names are not addresses)', async () => {
    await expectRejection(fetchMedia(`http://localhost:${port}/media.bin`, allowLocal(), scratch, signal));
    expect(upstream.requests).toHaveLength(0);
  });
});

describe('fetchMedia: redirects', () => {
  const redirect =
    (location: string, status = 302) =>
    (response: ServerResponse) => {
      response.writeHead(status, { location }).end('moved');
    };

  it('follows a relative redirect on an allowed host', async () => {
    routes.set('/start', redirect('/media.bin', 301));
    const fetched = await fetchMedia(`${upstream.url}/start`, allowLocal(), scratch, signal);
    expect(await readFile(fetched.path)).toEqual(BODY);
    expect(fetched.finalUrl).toBe(`${upstream.url}/media.bin`);
  });

  it('refuses a redirect from an allowed host to a host that is not allowed', async () => {
    routes.set('/start', redirect(`${other.url}/secret`));
    const error = await expectRejection(fetchMedia(`${upstream.url}/start`, allowLocal(), scratch, signal));
    expect(error.message).toContain('loopback address 127.0.0.1');
    expect(upstream.requests).toHaveLength(1);
    expect(other.requests).toHaveLength(0);
  });

  it('refuses a redirect from an allowed host to a name resolving to loopback', async () => {
    routes.set('/start', redirect(`http://localhost:${port}/media.bin`, 307));
    const error = await expectRejection(fetchMedia(`${upstream.url}/start`, allowLocal(), scratch, signal));
    expect(error.message).toContain('localhost resolves to');
    expect(upstream.requests).toHaveLength(1);
  });

  it('refuses a redirect to another scheme', async () => {
    routes.set('/start', redirect('file:///etc/passwd'));
    const error = await expectRejection(fetchMedia(`${upstream.url}/start`, allowLocal(), scratch, signal));
    expect(error.message).toContain("scheme 'file'");
  });

  it('follows five redirects and refuses the sixth', async () => {
    for (let hop = 1; hop <= 6; hop++) routes.set(`/hop${hop}`, redirect(hop === 6 ? '/media.bin' : `/hop${hop + 1}`, 308));
    const fetched = await fetchMedia(`${upstream.url}/hop2`, allowLocal(), scratch, signal); // 5 redirects
    expect(await readFile(fetched.path)).toEqual(BODY);
    upstream.requests.length = 0;
    const error = await expectRejection(fetchMedia(`${upstream.url}/hop1`, allowLocal(), scratch, signal)); // 6 redirects
    expect(error.message).toContain('too many');
    expect(upstream.requests).toHaveLength(6);
  });

  it('honours maxRedirects', async () => {
    routes.set('/start', redirect('/media.bin'));
    const error = await expectRejection(fetchMedia(`${upstream.url}/start`, allowLocal({ maxRedirects: 0 }), scratch, signal));
    expect(error.message).toContain('too many');
  });

  it('fails a redirect without a Location', async () => {
    routes.set('/start', (response) => response.writeHead(302).end());
    const error = await expectRejection(fetchMedia(`${upstream.url}/start`, allowLocal(), scratch, signal));
    expect(error.message).toContain('HTTP 302 without a Location');
  });
});

describe('fetchMedia: caps', () => {
  it('fails at once when Content-Length announces more than the cap', async () => {
    routes.set('/big', (response) => {
      response.writeHead(200, { 'content-length': String(10 * 1024 * 1024) });
      response.write(Buffer.alloc(1024)); // and then nothing: a fetcher that waits for the body would hang
    });
    const started = Date.now();
    const error = await expectRejection(fetchMedia(`${upstream.url}/big`, allowLocal({ timeoutMs: 10_000 }), scratch, signal));
    expect(Date.now() - started).toBeLessThan(2_000);
    expect(error.message).toContain('1048576-byte limit');
    expect(await readdir(scratch.dir)).toEqual([]);
  });

  it('stops a chunked body at the cap without buffering it, and drops the connection', async () => {
    const total = 200 * 1024 * 1024;
    const stats = { sent: 0, closedEarly: false };
    let finished!: Promise<void>;
    routes.set('/stream', (response) => {
      finished = streamBytes(response, total, stats);
      return finished;
    });
    const rssBefore = process.memoryUsage().rss;
    const started = Date.now();
    const error = await expectRejection(fetchMedia(`${upstream.url}/stream`, allowLocal({ maxBytes: 1024 * 1024 }), scratch, signal));
    expect(error.message).toContain('1048576-byte limit');
    await finished;
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(stats.closedEarly).toBe(true);
    expect(stats.sent).toBeLessThan(32 * 1024 * 1024); // the cap plus what socket buffers held
    expect(process.memoryUsage().rss - rssBefore).toBeLessThan(64 * 1024 * 1024);
    expect(await readdir(scratch.dir)).toEqual([]); // the partial file is gone
  });

  it('accepts a body of exactly the cap', async () => {
    const fetched = await fetchMedia(`${upstream.url}/media.bin`, allowLocal({ maxBytes: BODY.length }), scratch, signal);
    expect(fetched.size).toBe(BODY.length);
  });

  it('times out a server that sends headers and then trickles', async () => {
    routes.set('/slow', async (response) => {
      response.writeHead(200, { 'content-type': 'video/mp4' });
      for (let i = 0; i < 100 && !response.destroyed; i++) {
        response.write('x');
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      response.end();
    });
    const started = Date.now();
    const error = await expectRejection(fetchMedia(`${upstream.url}/slow`, allowLocal({ timeoutMs: 400 }), scratch, signal));
    expect(error.message).toContain('timed out after 400 ms');
    expect(Date.now() - started).toBeLessThan(2_000);
    expect(await readdir(scratch.dir)).toEqual([]);
  });

  it('times out a server that never sends headers', async () => {
    routes.set('/silent', () => undefined);
    const started = Date.now();
    const error = await expectRejection(fetchMedia(`${upstream.url}/silent`, allowLocal({ timeoutMs: 300 }), scratch, signal));
    expect(error.message).toContain('timed out after 300 ms');
    expect(Date.now() - started).toBeLessThan(2_000);
  });
});

describe('fetchMedia: other failures', () => {
  it('names the HTTP status', async () => {
    const error = await expectRejection(fetchMedia(`${upstream.url}/missing`, allowLocal(), scratch, signal));
    expect(error.message).toContain('returned HTTP 404');
  });

  it.each(['ftp://127.0.0.1/file.png', 'file:///etc/passwd', 'data:text/plain,hi', 'gopher://127.0.0.1/'])('rejects %s', async (url) => {
    const error = await expectRejection(fetchMedia(url, allowLocal({ allowHosts: ['127.0.0.1'] }), scratch, signal));
    expect(error.message).toContain('unsupported media URL scheme');
  });

  it('rejects text that is not a URL', async () => {
    const error = await expectRejection(fetchMedia('not a url', allowLocal(), scratch, signal));
    expect(error.message).toContain('not a valid URL');
  });

  it('reports a connection failure without a 500', async () => {
    const closed = await startFakeUpstream(() => undefined);
    await closed.close();
    const error = await expectRejection(fetchMedia(`${closed.url}/`, options({ allowHosts: ['127.0.0.1'] }), scratch, signal));
    expect(error.message).toContain('ECONNREFUSED');
  });

  it('rethrows an abort before headers', async () => {
    routes.set('/silent', () => undefined);
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 100);
    const error = await fetchMedia(`${upstream.url}/silent`, allowLocal(), scratch, controller.signal).catch((reason: unknown) => reason);
    expect(error).not.toBeInstanceOf(OcularError);
    expect(error).toBe(controller.signal.reason);
    expect((error as Error).name).toBe('AbortError');
  });

  it('rethrows an abort mid-body and removes the partial file', async () => {
    const controller = new AbortController();
    routes.set('/slow', async (response) => {
      response.writeHead(200);
      response.write(Buffer.alloc(16 * 1024));
      setTimeout(() => controller.abort(), 50);
      await new Promise((resolve) => setTimeout(resolve, 2_000));
      if (!response.destroyed) response.end();
    });
    const error = await fetchMedia(`${upstream.url}/slow`, allowLocal(), scratch, controller.signal).catch((reason: unknown) => reason);
    expect(error).toBe(controller.signal.reason);
    expect(await readdir(scratch.dir)).toEqual([]);
  });

  it('rethrows an abort that happened before the call', async () => {
    const controller = new AbortController();
    controller.abort();
    await expect(fetchMedia(`${upstream.url}/media.bin`, allowLocal(), scratch, controller.signal)).rejects.toBe(controller.signal.reason);
    expect(upstream.requests).toHaveLength(0);
  });
});

describe('createMediaFetcher: resolution', () => {
  let fetcher: MediaFetcher | undefined;
  afterEach(async () => {
    await fetcher?.close();
    fetcher = undefined;
  });

  /** A resolver that maps names to fixed answers and counts its calls. */
  function fakeResolver(answers: Record<string, string[]>): ResolveHost & { calls: string[] } {
    const calls: string[] = [];
    const resolve = async (hostname: string) => {
      calls.push(hostname);
      const addresses = answers[hostname];
      if (addresses === undefined) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: 'ENOTFOUND' });
      return addresses.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }));
    };
    return Object.assign(resolve, { calls });
  }

  const base = { maxBytes: 1024 * 1024, connectTimeoutMs: 2_000, timeoutMs: 5_000 };

  it('blocks a name resolving to loopback and names the address', async () => {
    fetcher = createMediaFetcher({ ...base, allowHosts: [], resolveHost: fakeResolver({ 'media.test': ['127.0.0.1'] }) });
    const error = await expectRejection(fetcher.fetch(`http://media.test:${port}/media.bin`, LABEL, scratch, signal));
    expect(error.message).toContain('media.test resolves to a loopback address 127.0.0.1');
    expect(upstream.requests).toHaveLength(0);
  });

  it('blocks a name when any of its addresses is blocked, before connecting anywhere', async () => {
    fetcher = createMediaFetcher({ ...base, allowHosts: [], resolveHost: fakeResolver({ 'media.test': ['8.8.8.8', '10.1.2.3'] }) });
    const error = await expectRejection(fetcher.fetch(`http://media.test:${port}/media.bin`, LABEL, scratch, signal));
    expect(error.message).toContain('private address 10.1.2.3');
  });

  it('connects to the resolved address once, keeping the hostname in the Host header', async () => {
    const resolver = fakeResolver({ 'media.test': ['127.0.0.1'] });
    fetcher = createMediaFetcher({ ...base, allowHosts: [`media.test:${port}`], resolveHost: resolver });
    const fetched = await fetcher.fetch(`http://media.test:${port}/media.bin`, LABEL, scratch, signal);
    expect(await readFile(fetched.path)).toEqual(BODY);
    expect(upstream.requests[0]!.headers.host).toBe(`media.test:${port}`);
    expect(resolver.calls).toEqual(['media.test']);
  });

  it('reports a DNS failure', async () => {
    fetcher = createMediaFetcher({ ...base, allowHosts: [], resolveHost: fakeResolver({}) });
    const error = await expectRejection(fetcher.fetch('http://nowhere.test/a.png', LABEL, scratch, signal));
    expect(error.message).toContain('DNS lookup of the media host nowhere.test failed (ENOTFOUND)');
  });

  it('reports a connect timeout (here: a resolver that never answers)', async () => {
    const hang: ResolveHost = () => new Promise(() => undefined);
    fetcher = createMediaFetcher({ ...base, connectTimeoutMs: 200, allowHosts: [], resolveHost: hang });
    const started = Date.now();
    const error = await expectRejection(fetcher.fetch('http://stuck.test/a.png', LABEL, scratch, signal));
    expect(error.message).toContain('connecting to the media host stuck.test timed out after 200 ms');
    expect(Date.now() - started).toBeLessThan(2_000);
  });

  it('rejects an invalid allowHosts entry when built', () => {
    expect(() => createMediaFetcher({ ...base, allowHosts: ['http://minio:9000'] })).toThrow(/invalid allowHosts entry/);
  });
});
