// Retries, timeouts and connection failures, against local HTTP servers that misbehave on purpose.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import {
  APIConnectionError,
  APITimeoutError,
  APIUserAbortError,
  BadRequestError,
  ConflictError,
  InternalServerError,
  Ocular,
  RateLimitError,
} from '../../src/sdk/index.ts';
import { retryAfterMs } from '../../src/sdk/client.ts';
import { closedPort } from '../cli/ocular-cli.ts';

type Handler = (request: IncomingMessage, response: ServerResponse, attempt: number) => void;

const servers: Server[] = [];
afterEach(async () => {
  for (const server of servers.splice(0)) {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});

/** A server answering each attempt with `handler`; `attempts` lists when each came (ms since the first). */
async function serve(handler: Handler): Promise<{ url: string; attempts: number[] }> {
  const attempts: number[] = [];
  let first: number | undefined;
  const server = createServer((request, response) => {
    first ??= Date.now();
    attempts.push(Date.now() - first);
    request.resume();
    handler(request, response, attempts.length);
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, attempts };
}

const json = (response: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) => {
  response.writeHead(status, { 'content-type': 'application/json', 'x-request-id': `req-${status}`, ...headers });
  response.end(JSON.stringify(body));
};

const rateLimited = { error: { type: 'rate_limit_error', message: 'slow down' } };

describe('retries', () => {
  it('retries a 429 after the Retry-After it names (seconds), then succeeds', async () => {
    const server = await serve((_request, response, attempt) =>
      attempt === 1 ? json(response, 429, rateLimited, { 'retry-after': '1' }) : json(response, 200, { data: [{ id: 'm' }] }),
    );
    const client = new Ocular({ baseURL: server.url, apiKey: 'k' });
    expect(await client.models.list()).toEqual([{ id: 'm' }]);
    expect(server.attempts).toHaveLength(2);
    expect(server.attempts[1]!).toBeGreaterThanOrEqual(950);
    expect(server.attempts[1]!).toBeLessThan(1_500);
  });

  it('honours retry-after-ms over retry-after, and retries 408, 409 and 5xx with backoff', async () => {
    const server = await serve((_request, response, attempt) => {
      if (attempt === 1) return json(response, 429, rateLimited, { 'retry-after-ms': '50', 'retry-after': '30' });
      if (attempt === 2) return json(response, 503, { error: { type: 'unavailable_error', message: 'loading' } });
      return json(response, 200, { data: [] });
    });
    const client = new Ocular({ baseURL: server.url, maxRetries: 3 });
    expect(await client.models.list()).toEqual([]);
    expect(server.attempts).toHaveLength(3);
    expect(server.attempts[1]!).toBeLessThan(400); // 50 ms asked, not 30 s
    expect(server.attempts[2]! - server.attempts[1]!).toBeGreaterThanOrEqual(370); // backoff: 0.5 s less up to 25 %

    const conflict = await serve((_request, response) => json(response, 409, { error: { type: 'conflict_error', message: 'busy' } }));
    const error = await new Ocular({ baseURL: conflict.url, maxRetries: 1 }).models.list().catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(ConflictError);
    expect(conflict.attempts).toHaveLength(2);
  });

  it('gives up after maxRetries with the last error, typed, and its request id', async () => {
    const server = await serve((_request, response) => json(response, 429, rateLimited, { 'retry-after-ms': '10' }));
    const error = await new Ocular({ baseURL: server.url, maxRetries: 2 }).models.list().catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(RateLimitError);
    expect(error).toMatchObject({ status: 429, type: 'rate_limit_error', requestId: 'req-429' });
    expect(server.attempts).toHaveLength(3);

    const broken = await serve((_request, response) => {
      response.writeHead(502, { 'content-type': 'text/html' });
      response.end('<h1>Bad gateway</h1>');
    });
    const gateway = await new Ocular({ baseURL: broken.url, maxRetries: 0 }).models.list().catch((caught: unknown) => caught);
    expect(gateway).toBeInstanceOf(InternalServerError);
    expect(gateway).toMatchObject({ status: 502, type: 'http_502' });
    expect(broken.attempts).toHaveLength(1);
  });

  it('does not retry a 400, nor when the server says x-should-retry: false', async () => {
    const server = await serve((_request, response, attempt) =>
      attempt === 1
        ? json(response, 400, { error: { type: 'validation_error', message: 'bad', param: 'query' } })
        : json(response, 500, { error: { type: 'server_error', message: 'no' } }, { 'x-should-retry': 'false' }),
    );
    const client = new Ocular({ baseURL: server.url, maxRetries: 3 });
    await expect(client.videos.search({ query: 'x' })).rejects.toBeInstanceOf(BadRequestError);
    await expect(client.videos.search({ query: 'x' })).rejects.toBeInstanceOf(InternalServerError);
    expect(server.attempts).toHaveLength(2);
  });

  it('reads Retry-After as an HTTP date too, and ignores waits that are negative or too long', () => {
    const now = Date.parse('2026-01-01T00:00:00Z');
    expect(retryAfterMs(new Headers({ 'retry-after': 'Thu, 01 Jan 2026 00:00:03 GMT' }), now)).toBe(3_000);
    expect(retryAfterMs(new Headers({ 'retry-after': '3600' }), now)).toBeUndefined();
    expect(retryAfterMs(new Headers({ 'retry-after': '-1' }), now)).toBeUndefined();
    expect(retryAfterMs(new Headers({ 'retry-after': 'soon' }), now)).toBeUndefined();
  });
});

describe('timeouts and connection failures', () => {
  it('abandons an attempt after `timeout`, retries it, then throws APITimeoutError', async () => {
    const server = await serve(() => {
      // never answers
    });
    const client = new Ocular({ baseURL: server.url, timeout: 200, maxRetries: 1 });
    const started = Date.now();
    const error = await client.models.list().catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(APITimeoutError);
    expect(error).toBeInstanceOf(APIConnectionError);
    expect(server.attempts).toHaveLength(2);
    expect(Date.now() - started).toBeLessThan(2_000);
    // A per-call timeout overrides the client's.
    const slow = await serve((_request, response) => setTimeout(() => json(response, 200, { data: [] }), 300));
    await expect(new Ocular({ baseURL: slow.url, timeout: 100, maxRetries: 0 }).models.list({ timeout: 2_000 })).resolves.toEqual([]);
  });

  it('times out a body that stops halfway', async () => {
    const server = await serve((_request, response) => {
      response.writeHead(200, { 'content-type': 'application/json' });
      response.write('{"data": [');
    });
    await expect(new Ocular({ baseURL: server.url, timeout: 200, maxRetries: 0 }).models.list()).rejects.toBeInstanceOf(APITimeoutError);
  });

  it('reports a server that is not there as APIConnectionError, after retrying', async () => {
    const client = new Ocular({ baseURL: `http://127.0.0.1:${await closedPort()}`, maxRetries: 1 });
    const error = await client.models.list().catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(APIConnectionError);
    expect(error).not.toBeInstanceOf(APITimeoutError);
    expect(error).toMatchObject({ type: 'connection_error', status: undefined });
  });

  it('stops at once on the caller`s signal, also while waiting to retry', async () => {
    const server = await serve((_request, response) => json(response, 429, rateLimited, { 'retry-after': '30' }));
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 100);
    const started = Date.now();
    const error = await new Ocular({ baseURL: server.url }).models.list({ signal: controller.signal }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(APIUserAbortError);
    expect(Date.now() - started).toBeLessThan(1_000);
  });
});

describe('videos.waitUntilIndexed', () => {
  const id = '00000000-0000-4000-8000-00000000000a';
  const event = (status: string, progress: number) =>
    JSON.stringify({ video_id: id, indexing_status: status, stage: 'analyzing', indexing_progress: progress, percent: progress * 100 });

  it('follows the event stream again when it breaks, and resolves with the indexed video', async () => {
    let streams = 0;
    const server = await serve((request, response) => {
      if (request.url === `/v1/videos/${id}`) return json(response, 200, { video_id: id, indexing_status: 'indexed' });
      streams += 1;
      response.writeHead(200, { 'content-type': 'text/event-stream' });
      if (streams === 1) {
        // Half an event, then the connection drops.
        response.write(`event: progress\ndata: ${event('indexing', 0.25)}\n\nevent: progress\ndata: {"vid`);
        setTimeout(() => response.destroy(), 20);
        return;
      }
      response.end(`event: progress\ndata: ${event('indexed', 1)}\n\nevent: done\ndata: ${event('indexed', 1)}\n\n`);
    });
    const seen: number[] = [];
    const video = await new Ocular({ baseURL: server.url }).videos.waitUntilIndexed(id, {
      onProgress: (update) => seen.push(update.indexing_progress),
      timeout: 10_000,
    });
    expect(video.indexing_status).toBe('indexed');
    expect(streams).toBe(2);
    expect(seen).toEqual([0.25, 1]);
  });

  it('fails rather than waits forever: indexing failed, server gone, timeout, abort', async () => {
    const failing = await serve((_request, response) => {
      response.writeHead(200, { 'content-type': 'text/event-stream' });
      response.end(`event: done\ndata: ${JSON.stringify({ video_id: id, indexing_status: 'failed', error: 'corrupt video' })}\n\n`);
    });
    const failed = await new Ocular({ baseURL: failing.url }).videos.waitUntilIndexed(id).catch((caught: unknown) => caught);
    expect(failed).toMatchObject({ type: 'indexing_error', indexingStatus: 'failed' });

    const gone = new Ocular({ baseURL: `http://127.0.0.1:${await closedPort()}`, maxRetries: 0 });
    await expect(gone.videos.waitUntilIndexed(id)).rejects.toBeInstanceOf(APIConnectionError);

    const silent = await serve((_request, response) => {
      response.writeHead(200, { 'content-type': 'text/event-stream' });
      response.write(': keep-alive\n\n');
    });
    const client = new Ocular({ baseURL: silent.url });
    await expect(client.videos.waitUntilIndexed(id, { timeout: 300 })).rejects.toBeInstanceOf(APITimeoutError);
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 100);
    await expect(client.videos.waitUntilIndexed(id, { signal: controller.signal })).rejects.toBeInstanceOf(APIUserAbortError);
  });
});

describe('configuration', () => {
  it('reads OCULAR_API_KEY and OCULAR_BASE_URL when not given, and sends the key as a Bearer token', async () => {
    let authorization: string | undefined;
    const server = await serve((request, response) => {
      authorization = request.headers.authorization;
      json(response, 200, { data: [] });
    });
    const saved = { key: process.env.OCULAR_API_KEY, url: process.env.OCULAR_BASE_URL };
    process.env.OCULAR_API_KEY = 'ocu_from_env';
    process.env.OCULAR_BASE_URL = `${server.url}/`;
    try {
      const client = new Ocular();
      expect(client.baseURL).toBe(server.url);
      await client.models.list();
      expect(authorization).toBe('Bearer ocu_from_env');
    } finally {
      for (const [name, value] of [
        ['OCULAR_API_KEY', saved.key],
        ['OCULAR_BASE_URL', saved.url],
      ] as const) {
        if (value === undefined) delete process.env[name];
        else process.env[name] = value;
      }
    }
  });
});
