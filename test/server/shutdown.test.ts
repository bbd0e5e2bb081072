import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readSseData, startOcular } from '../helpers/ocular.ts';
import { startOpenAiUpstream, streamCompletion } from '../helpers/openai-upstream.ts';

let upstream: Awaited<ReturnType<typeof startOpenAiUpstream>>;

beforeAll(async () => {
  upstream = await startOpenAiUpstream();
});

afterAll(async () => {
  await upstream.close();
});

const config = () => ({ models: [{ id: 'm', provider: 'openai-compatible', baseUrl: `${upstream.url}/v1`, model: 'm' }] });

describe('graceful shutdown', () => {
  it('lets an in-flight stream finish and refuses new connections', async () => {
    const ocular = await startOcular(config());
    upstream.behave((_request, response) => streamCompletion(response, ['a', 'b', 'c', 'd', 'e'], { delayMs: 40, splitEvery: 40 }));
    const response = await ocular.post('/v1/chat', { messages: [{ role: 'user', content: 'x' }], stream: true });
    const closing = ocular.close(10_000);
    const events = (await readSseData(response)).map((data) => JSON.parse(data));
    expect(events.at(-1)).toMatchObject({ responses: [{ finish_reason: 'stop', chunk: { content: 'abcde' } }] });
    await closing;
    await expect(fetch(`${ocular.url}/healthz`)).rejects.toThrow();
  });

  it('cancels streams still running when the grace period ends, closing them with an error event', async () => {
    const ocular = await startOcular(config());
    upstream.behave((_request, response) =>
      streamCompletion(
        response,
        Array.from({ length: 500 }, () => 'x'),
        { delayMs: 20, splitEvery: 40 },
      ),
    );
    const response = await ocular.post('/v1/chat', { messages: [{ role: 'user', content: 'x' }], stream: true });
    const started = Date.now();
    const closing = ocular.close(300);
    const events = (await readSseData(response)).map((data) => JSON.parse(data));
    expect(events.at(-1)).toMatchObject({ error: { type: 'server_error' } });
    await closing;
    expect(Date.now() - started).toBeLessThan(5_000);
  });
});
