import { afterEach, describe, expect, it } from 'vitest';
import { HttpClient } from '../../src/provider-utils/http-client.ts';
import { sendEvents, sendJson, startFakeUpstream, type FakeUpstream, type UpstreamHandler } from '../helpers/fake-upstream.ts';
import { rejectionOf } from '../helpers/rejections.ts';

let upstream: FakeUpstream | undefined;
let client: HttpClient | undefined;

afterEach(async () => {
  await client?.close();
  await upstream?.close();
  client = undefined;
  upstream = undefined;
});

async function clientFor(handler: UpstreamHandler, options: { maxResponseBytes?: number; maxConnections?: number } = {}): Promise<HttpClient> {
  upstream = await startFakeUpstream(handler);
  client = new HttpClient({ provider: 'test', baseUrl: `${upstream.url}/v1`, maxRetries: 0, ...options });
  return client;
}

const never = new AbortController().signal;

async function readAll<T>(stream: ReadableStream<T>): Promise<T[]> {
  const items: T[] = [];
  const reader = stream.getReader();
  for (let next = await reader.read(); !next.done; next = await reader.read()) items.push(next.value);
  return items;
}

describe('HttpClient.postJson', () => {
  it('posts JSON under the base path and returns the parsed answer', async () => {
    const http = await clientFor((request, response) => sendJson(response, 200, { echo: request.body, path: request.url }));
    expect(await http.postJson('/chat', { hello: 'world' }, never)).toEqual({ echo: { hello: 'world' }, path: '/v1/chat' });
  });

  it('fails as upstream_error when the answer is larger than maxResponseBytes', async () => {
    const http = await clientFor((_request, response) => sendJson(response, 200, { text: 'x'.repeat(10_000) }), { maxResponseBytes: 4096 });
    expect(await rejectionOf(http.postJson('/chat', {}, never))).toMatchObject({
      type: 'upstream_error',
      message: expect.stringContaining('larger than 4096 bytes'),
    });
  });

  it("keeps an error answer's message and reads no more than the start of a huge error body", async () => {
    const http = await clientFor((_request, response) => {
      response.writeHead(500, { 'content-type': 'text/plain' });
      response.end(`model crashed ${'x'.repeat(4 * 1024 * 1024)}`);
    });
    const error = await rejectionOf(http.postJson('/chat', {}, never));
    expect(error).toMatchObject({ type: 'upstream_error', message: expect.stringContaining('test upstream returned 500: model crashed') });
    expect((error as Error).message.length).toBeLessThan(1_000);
  });

  it('fails as upstream_error when a 2xx body is not JSON', async () => {
    const http = await clientFor((_request, response) => {
      response.writeHead(200, { 'content-type': 'application/json' });
      response.end('{"truncated":');
    });
    expect(await rejectionOf(http.postJson('/chat', {}, never))).toMatchObject({
      type: 'upstream_error',
      message: expect.stringContaining('not JSON'),
    });
  });

  it('ends the upstream call with the reason when the signal aborts', async () => {
    let closed!: () => void;
    const upstreamClosed = new Promise<void>((resolve) => (closed = resolve));
    const http = await clientFor((_request, response) => {
      response.once('close', closed); // never answers
    });
    const controller = new AbortController();
    const pending = http.postJson('/chat', {}, controller.signal);
    while (upstream!.requests.length === 0) await new Promise((resolve) => setTimeout(resolve, 5));
    const reason = new Error('client went away');
    controller.abort(reason);
    expect(await rejectionOf(pending)).toBe(reason);
    await upstreamClosed;
  });
});

describe('HttpClient.postEventStream', () => {
  it('parses events split across writes and at odd boundaries', async () => {
    const http = await clientFor((_request, response) => {
      response.writeHead(200, { 'content-type': 'text/event-stream' });
      const text = 'data: {"a":1}\n\ndata: {"b":\n\nevent: done\ndata: [DONE]\n\n';
      // One byte at a time: events, fields and even UTF-8 sequences arrive split.
      const bytes = Buffer.from(`${text}data: "é"\n\n`);
      let index = 0;
      const next = (): void => {
        if (index === bytes.length) return void response.end();
        response.write(bytes.subarray(index, ++index));
        setImmediate(next);
      };
      next();
    });
    const events = await readAll(await http.postEventStream('/chat', {}, never));
    expect(events.map((event) => [event.event, event.data])).toEqual([
      [undefined, '{"a":1}'],
      [undefined, '{"b":'],
      ['done', '[DONE]'],
      [undefined, '"é"'],
    ]);
  });

  it('reports a non-2xx answer as an error before any event, with the upstream message', async () => {
    const http = await clientFor((_request, response) =>
      sendJson(response, 429, { error: { message: 'slow down' } }, { 'retry-after': '3' }),
    );
    expect(await rejectionOf(http.postEventStream('/chat', {}, never))).toMatchObject({
      type: 'rate_limit_error',
      retryAfterSeconds: 3,
      message: expect.stringContaining('slow down'),
    });
  });

  it('cancels the upstream call when the reader cancels the stream', async () => {
    let closed!: () => void;
    const upstreamClosed = new Promise<void>((resolve) => (closed = resolve));
    const http = await clientFor((_request, response) => {
      response.once('close', closed);
      void sendEvents(
        response,
        Array.from({ length: 1000 }, (_, index) => ({ data: { index } })),
        5,
      );
    });
    const reader = (await http.postEventStream('/chat', {}, never)).getReader();
    expect((await reader.read()).value?.data).toBe('{"index":0}');
    await reader.cancel();
    await upstreamClosed;
  });

  it('errors the stream with the abort reason when the signal aborts mid-stream', async () => {
    const http = await clientFor((_request, response) => {
      void sendEvents(
        response,
        Array.from({ length: 1000 }, (_, index) => ({ data: { index } })),
        5,
      );
    });
    const controller = new AbortController();
    const reader = (await http.postEventStream('/chat', {}, controller.signal)).getReader();
    await reader.read();
    const reason = new Error('client went away');
    controller.abort(reason);
    let caught: unknown;
    try {
      for (;;) if ((await reader.read()).done) break;
    } catch (error) {
      caught = error;
    }
    expect(caught).toBe(reason);
  });
});

describe('HttpClient connections', () => {
  /** An upstream that holds every stream open until released, counting the connections it has at once. */
  async function holdingUpstream(): Promise<{ http: (maxConnections?: number) => Promise<HttpClient>; open: () => number; release: () => void }> {
    const held: Array<() => void> = [];
    let open = 0;
    const handler: UpstreamHandler = (_request, response, raw) => {
      open += 1;
      raw.socket.once('close', () => (open -= 1));
      response.writeHead(200, { 'content-type': 'text/event-stream' });
      response.write('data: {"n":1}\n\n');
      held.push(() => response.end());
    };
    return {
      http: (maxConnections) => clientFor(handler, maxConnections === undefined ? {} : { maxConnections }),
      open: () => open,
      release: () => held.splice(0).forEach((end) => end()),
    };
  }

  it('opens one connection per concurrent stream by default, well past the 256 it once stopped at', async () => {
    const upstream = await holdingUpstream();
    const http = await upstream.http();
    const streams = await Promise.all(Array.from({ length: 300 }, () => http.postEventStream('/chat', {}, never)));
    expect(upstream.open()).toBe(300);
    upstream.release();
    await Promise.all(streams.map(readAll));
  });

  it('queues streams beyond maxConnections until one ends', async () => {
    const upstream = await holdingUpstream();
    const http = await upstream.http(2);
    const first = await Promise.all([http.postEventStream('/chat', {}, never), http.postEventStream('/chat', {}, never)]);
    let thirdOpened = false;
    const third = http.postEventStream('/chat', {}, never).then((stream) => ((thirdOpened = true), stream));
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(thirdOpened).toBe(false);
    upstream.release();
    await Promise.all(first.map(readAll));
    const stream = await third;
    upstream.release();
    expect(await readAll(stream)).toHaveLength(1);
  });
});
