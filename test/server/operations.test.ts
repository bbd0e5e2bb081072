// Operations: Prometheus metrics, per-key rate limits and token quotas (in memory and shared through Redis), and
// readiness.
import { chmodSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BullmqJobQueue } from '../../src/jobs/bullmq-queue.ts';
import { sendJson } from '../helpers/fake-upstream.ts';
import { startOcular, type TestOcular } from '../helpers/ocular.ts';
import { completion, startOpenAiUpstream } from '../helpers/openai-upstream.ts';

let upstream: Awaited<ReturnType<typeof startOpenAiUpstream>>;
const servers: TestOcular[] = [];
const REDIS_PREFIX = `ocular-test:${process.pid}:${Date.now()}`;
/** The job queue's key prefix (letters, digits, `.`, `_`, `-`: no colon). */
const QUEUE_PREFIX = `ocular-test-queue-${process.pid}-${Date.now()}`;

const models = () => [{ id: 'flash', provider: 'openai-compatible', baseUrl: `${upstream.url}/v1`, model: 'm', maxRetries: 0 }];

async function start(config: Record<string, unknown>): Promise<TestOcular> {
  const server = await startOcular({ models: models(), ...config });
  servers.push(server);
  return server;
}

const chat = (server: TestOcular, key = server.key) =>
  fetch(`${server.url}/v1/chat`, {
    method: 'POST',
    headers: { 'x-api-key': key, 'content-type': 'application/json' },
    body: JSON.stringify({ messages: [{ role: 'user', content: 'hi' }] }),
  });

/** The value of a sample line `name{labels} value` in the exposition text, or undefined. */
function sample(text: string, name: string, labels: Record<string, string>): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`)) continue;
    if (Object.entries(labels).every(([label, value]) => line.includes(`${label}="${value}"`))) return Number(line.split(' ').at(-1));
  }
  return undefined;
}

beforeAll(async () => {
  upstream = await startOpenAiUpstream();
  upstream.behave((_request, response) => sendJson(response, 200, completion('hello', { usage: [30, 12] })));
});

afterAll(async () => {
  await Promise.all(servers.map((server) => server.close()));
  await upstream?.close();
  const redis = new Redis('redis://127.0.0.1:6379');
  const keys = [...(await redis.keys(`${REDIS_PREFIX}*`)), ...(await redis.keys(`${QUEUE_PREFIX}:*`))];
  if (keys.length > 0) await redis.del(...keys);
  redis.disconnect();
});

describe('GET /metrics', () => {
  it('counts requests by route pattern and status, model latency and tokens, and jobs', async () => {
    const server = await start({});
    expect((await chat(server)).status).toBe(200);
    expect(
      (await fetch(`${server.url}/v1/videos/00000000-0000-4000-8000-000000000000`, { headers: { 'x-api-key': server.key } })).status,
    ).toBe(404);
    await fetch(`${server.url}/v1/models`, { headers: { 'x-api-key': server.key } });
    const response = await fetch(`${server.url}/metrics`, { headers: { 'x-api-key': server.key } });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toContain('text/plain');
    const text = await response.text();
    expect(sample(text, 'ocular_http_requests_total', { route: '/v1/chat', method: 'POST', status: '200' })).toBe(1);
    expect(sample(text, 'ocular_http_requests_total', { route: '/v1/videos/:id', method: 'GET', status: '404' })).toBe(1);
    expect(sample(text, 'ocular_http_requests_total', { route: '/v1/models', status: '200' })).toBe(1);
    expect(sample(text, 'ocular_http_request_duration_seconds_count', { route: '/v1/chat' })).toBe(1);
    expect(sample(text, 'ocular_tokens_total', { model: 'flash', direction: 'input' })).toBe(30);
    expect(sample(text, 'ocular_tokens_total', { model: 'flash', direction: 'output' })).toBe(12);
    expect(sample(text, 'ocular_upstream_duration_seconds_count', { model: 'flash' })).toBe(1);
    expect(text).toContain('ocular_sse_streams_open 0');
    expect(text).toMatch(/# TYPE ocular_jobs gauge/);
  });

  it('counts upstream errors by type, and needs a key unless public', async () => {
    const server = await start({
      models: [{ id: 'flash', provider: 'openai-compatible', baseUrl: 'http://127.0.0.1:9/v1', model: 'm', maxRetries: 0 }],
    });
    expect((await chat(server)).status).toBeGreaterThanOrEqual(500);
    expect((await fetch(`${server.url}/metrics`)).status).toBe(401);
    const text = await (await fetch(`${server.url}/metrics`, { headers: { 'x-api-key': server.key } })).text();
    expect(sample(text, 'ocular_upstream_errors_total', { model: 'flash', type: 'upstream_error' })).toBe(1);

    const open = await start({ metrics: { public: true } });
    expect((await fetch(`${open.url}/metrics`)).status).toBe(200);
    const off = await start({ metrics: { enabled: false } });
    expect((await fetch(`${off.url}/metrics`, { headers: { 'x-api-key': off.key } })).status).toBe(404);
  });
});

describe('rate limits', () => {
  it('answers 429 with Retry-After and x-ratelimit headers past the minute, on chat and library routes alike', async () => {
    const server = await start({ rateLimits: { requestsPerMinute: 3 } });
    const first = await chat(server);
    expect(first.status).toBe(200);
    expect(first.headers.get('x-ratelimit-limit-requests')).toBe('3');
    expect(first.headers.get('x-ratelimit-remaining-requests')).toBe('2');
    expect(first.headers.get('x-ratelimit-reset-requests')).toMatch(/^\d+s$/);
    const second = await fetch(`${server.url}/v1/videos`, { headers: { 'x-api-key': server.key } });
    expect(second.status).toBe(200);
    expect(second.headers.get('x-ratelimit-remaining-requests')).toBe('1');
    expect((await chat(server)).status).toBe(200);
    const refused = await fetch(`${server.url}/v1/videos`, { headers: { 'x-api-key': server.key } });
    expect(refused.status).toBe(429);
    expect(((await refused.json()) as { error: { type: string } }).error.type).toBe('rate_limit_error');
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(refused.headers.get('x-ratelimit-remaining-requests')).toBe('0');
    const refusedChat = await chat(server);
    expect(refusedChat.status).toBe(429);
    expect(Number(refusedChat.headers.get('retry-after'))).toBeGreaterThan(0);
    // Health and readiness are not limited.
    expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
  });

  it('stops chat for the day once the token quota is spent', async () => {
    const server = await start({ rateLimits: { tokensPerDay: 50 } });
    const first = await chat(server); // 42 tokens
    expect(first.status).toBe(200);
    expect(first.headers.get('x-ratelimit-remaining-tokens')).toBe('50');
    const second = await chat(server); // starts with 8 left, ends over the quota
    expect(second.status).toBe(200);
    expect(second.headers.get('x-ratelimit-remaining-tokens')).toBe('8');
    const third = await chat(server);
    expect(third.status).toBe(429);
    expect(third.headers.get('x-ratelimit-remaining-tokens')).toBe('0');
    expect(Number(third.headers.get('retry-after'))).toBeGreaterThan(0);
  });

  it('shares the limit between servers through Redis', async () => {
    const config = { rateLimits: { requestsPerMinute: 2, store: 'redis', redisPrefix: REDIS_PREFIX } };
    const a = await start(config);
    const b = await start(config);
    expect((await chat(a)).status).toBe(200);
    expect((await chat(b)).status).toBe(200);
    expect((await chat(a)).status).toBe(429);
    expect((await chat(b)).status).toBe(429);
    expect((await fetch(`${a.url}/readyz`)).status).toBe(200);
  });
});

describe('GET /readyz', () => {
  it('is ready when every dependency answers, and names the one that does not', async () => {
    const server = await start({});
    const ready = await fetch(`${server.url}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({
      status: 'ready',
      checks: { database: { status: 'ok' }, queue: { status: 'ok' }, blobs: { status: 'ok' } },
    });

    const videos = join(server.dataDir, 'videos');
    mkdirSync(videos, { recursive: true });
    chmodSync(videos, 0o500);
    try {
      const notReady = await fetch(`${server.url}/readyz`);
      // root ignores file modes: only check the answer's shape there.
      if (process.getuid?.() !== 0) expect(notReady.status).toBe(503);
    } finally {
      chmodSync(videos, 0o700);
    }

    const unreachable = await start({ rateLimits: { requestsPerMinute: 100, store: 'redis', redisUrl: 'redis://127.0.0.1:9' } });
    const answer = await fetch(`${unreachable.url}/readyz`);
    expect(answer.status).toBe(503);
    expect(await answer.json()).toMatchObject({
      status: 'not_ready',
      checks: { redis: { status: 'failing' }, database: { status: 'ok' } },
    });
    // The API itself keeps answering: counting falls back to memory.
    expect((await chat(unreachable)).status).toBe(200);
  });
});

describe('the job queue on Redis (queue.kind redis)', () => {
  it('serves with BullMQ queues, and readiness fails on the queue when its Redis does not answer', { timeout: 30_000 }, async () => {
    const server = await start({ queue: { kind: 'redis', url: 'redis://127.0.0.1:6379', prefix: QUEUE_PREFIX } });
    const ready = await fetch(`${server.url}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ status: 'ready', checks: { queue: { status: 'ok' } } });
    // An upload's indexing job goes to Redis, where another process sees it.
    const png = await sharp({ create: { width: 8, height: 8, channels: 3, background: '#336699' } })
      .png()
      .toBuffer();
    const body = new FormData();
    body.append('images', new Blob([new Uint8Array(png)], { type: 'image/png' }), 'image.png');
    const uploaded = await fetch(`${server.url}/v1/images/upload`, { method: 'POST', headers: { 'x-api-key': server.key }, body });
    expect(uploaded.status).toBe(200);
    const observer = new BullmqJobQueue({ url: 'redis://127.0.0.1:6379', prefix: QUEUE_PREFIX });
    try {
      const jobs = await observer.list({ limit: 10, offset: 0 });
      expect(jobs).toHaveLength(1);
      expect(jobs[0]).toMatchObject({ key: expect.stringMatching(/^image:/) });
      expect(await observer.counts()).toContainEqual(expect.objectContaining({ kind: jobs[0]!.kind, count: 1 }));
    } finally {
      await observer.close();
    }

    const unreachable = await start({ queue: { kind: 'redis', url: 'redis://127.0.0.1:9', prefix: QUEUE_PREFIX } });
    const answer = await fetch(`${unreachable.url}/readyz`);
    expect(answer.status).toBe(503);
    expect(await answer.json()).toMatchObject({
      status: 'not_ready',
      checks: { queue: { status: 'failing' }, database: { status: 'ok' } },
    });
    // Shutting down does not wait for a Redis that is not there.
    const closing = Date.now();
    await unreachable.close();
    servers.splice(servers.indexOf(unreachable), 1);
    expect(Date.now() - closing).toBeLessThan(10_000);
  });
});
