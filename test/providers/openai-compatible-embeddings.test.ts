import { afterEach, describe, expect, it } from 'vitest';
import type { LanguageModel } from '../../src/spec/provider.ts';
import { openAiCompatible, settingsSchema } from '../../src/providers/openai-compatible/index.ts';
import { sendJson, startFakeUpstream, type FakeUpstream, type UpstreamHandler } from '../helpers/fake-upstream.ts';
import { expectOcularError } from '../helpers/rejections.ts';

let upstream: FakeUpstream | undefined;
let model: LanguageModel | undefined;

afterEach(async () => {
  await model?.close?.();
  await upstream?.close();
  model = undefined;
  upstream = undefined;
});

async function modelFor(handler: UpstreamHandler): Promise<LanguageModel> {
  upstream = await startFakeUpstream(handler);
  model = openAiCompatible.create(
    settingsSchema.parse({ id: 'embed', provider: 'openai-compatible', baseUrl: `${upstream.url}/v1`, model: 'bge-small', maxRetries: 0 }),
  );
  return model;
}

const never = new AbortController().signal;

/** What an OpenAI-style server answers: vectors whose first value is the input's length, out of order. */
const embeddingsHandler: UpstreamHandler = (request, response) => {
  const { input } = request.body as { input: string[] };
  const data = input.map((text, index) => ({ object: 'embedding', index, embedding: [text.length, 1, 0] })).reverse();
  sendJson(response, 200, { object: 'list', data, model: 'bge-small', usage: { prompt_tokens: 3, total_tokens: 3 } });
};

describe('openai-compatible embeddings', () => {
  it('posts the inputs to /embeddings and returns unit vectors in input order', async () => {
    const embedder = await modelFor(embeddingsHandler);
    const vectors = await embedder.embed!(['abc', 'a'], never);
    expect(upstream!.requests[0]).toMatchObject({
      url: '/v1/embeddings',
      body: { model: 'bge-small', input: ['abc', 'a'], encoding_format: 'float' },
    });
    expect(vectors.map((vector) => [...vector].map((value) => Number(value.toFixed(4))))).toEqual([
      [Number((3 / Math.sqrt(10)).toFixed(4)), Number((1 / Math.sqrt(10)).toFixed(4)), 0],
      [Number((1 / Math.sqrt(2)).toFixed(4)), Number((1 / Math.sqrt(2)).toFixed(4)), 0],
    ]);
  });

  it('sends many inputs in batches and keeps their order across them', async () => {
    const embedder = await modelFor(embeddingsHandler);
    const inputs = Array.from({ length: 150 }, (_, index) => 'x'.repeat(index + 1));
    const vectors = await embedder.embed!(inputs, never);
    expect(upstream!.requests.map((request) => (request.body as { input: string[] }).input.length)).toEqual([64, 64, 22]);
    // The first component over the second is the input's length: order survives the batches.
    expect(vectors.map((vector) => Math.round(vector[0]! / vector[1]!))).toEqual(inputs.map((text) => text.length));
  });

  it('fails as upstream_error when a vector is missing or of another size', async () => {
    const missing = await modelFor((_request, response) => sendJson(response, 200, { data: [{ index: 0, embedding: [1, 0] }] }));
    await expectOcularError(missing.embed!(['a', 'b'], never), 'upstream_error');
    await model?.close?.();
    await upstream?.close();
    const ragged = await modelFor((_request, response) =>
      sendJson(response, 200, { data: [{ index: 0, embedding: [1, 0] }, { index: 1, embedding: [1, 0, 0] }] }),
    );
    await expectOcularError(ragged.embed!(['a', 'b'], never), 'upstream_error');
  });

  it('reports an upstream that has no embeddings endpoint as its error', async () => {
    const chatOnly = await modelFor((_request, response) => sendJson(response, 404, { error: { message: 'Not Found' } }));
    const error = await expectOcularError(chatOnly.embed!(['a'], never));
    expect(error.status).toBeGreaterThanOrEqual(400);
  });
});
