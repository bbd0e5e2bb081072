import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { environmentKeyOwner } from '../../src/store/api-keys.ts';
import { VideoStore } from '../../src/store/video-store.ts';
import { withDataDirDatabase } from '../helpers/storage-mode.ts';
import { sendJson, startFakeUpstream, type FakeUpstream } from '../helpers/fake-upstream.ts';
import { insertIndexedVideo } from '../helpers/library-fixtures.ts';
import { startOcular, TEST_KEY, type TestOcular } from '../helpers/ocular.ts';

/** An embeddings server that knows a few concepts, each with several words: synonyms land on the same axis. */
const CONCEPTS = [
  ['car', 'automobile', 'vehicle'],
  ['fruit', 'apple', 'banana'],
  ['dog', 'puppy', 'hound'],
];

function embedConcepts(text: string): number[] {
  const words = text.toLowerCase().match(/[a-z]+/g) ?? [];
  return [...CONCEPTS.map((synonyms) => words.filter((word) => synonyms.includes(word)).length), 0.01];
}

let dataDir: string;
let embedder: FakeUpstream;
let ocular: TestOcular | undefined;
let carVideo: string;

const config = (embeddingModel: string) => ({
  models: [
    { id: 'embedder', provider: 'openai-compatible', baseUrl: `${embedder.url}/v1`, model: 'concepts', maxRetries: 0 },
    { id: 'claude', provider: 'anthropic', model: 'claude', apiKey: 'k' },
  ],
  indexing: { embeddingModel },
});

function insertVideo(captions: readonly string[]): Promise<string> {
  return withDataDirDatabase(dataDir, (database) =>
    insertIndexedVideo(
      new VideoStore(database),
      environmentKeyOwner(TEST_KEY),
      captions.map((caption) => ({ caption, seconds: 10 })),
    ),
  );
}

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'ocular-semantic-server-'));
  embedder = await startFakeUpstream((request, response) => {
    const { input } = request.body as { input: string[] };
    sendJson(response, 200, { data: input.map((text, index) => ({ index, embedding: embedConcepts(text) })) });
  });
  // Videos indexed before the server (and its embedding model) started: the job at start embeds them.
  ocular = await startOcular(config('embedder'), { dataDir });
  await ocular.close();
  carVideo = await insertVideo(['A red car waits at the lights.', 'The street is empty.']);
  await insertVideo(['A bowl of apples on a table.']);
  ocular = await startOcular(config('embedder'), { dataDir });
}, 30_000);

afterAll(async () => {
  await ocular?.close();
  await embedder?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

async function search(
  query: string,
): Promise<{ retrievers: string | null; results: Array<{ video_id: string; start_timestamp: number }> }> {
  const response = await ocular!.post('/v1/videos/search', { query });
  expect(response.status).toBe(200);
  const body = (await response.json()) as { results: Array<{ video_id: string; start_timestamp: number }> };
  return { retrievers: response.headers.get('x-ocular-retrievers'), results: body.results };
}

describe('semantic video search over HTTP', () => {
  it('embeds segments indexed earlier in the background, then finds them by meaning where no word matches', async () => {
    await expect.poll(async () => (await search('automobile')).results.length, { timeout: 15_000, interval: 200 }).toBeGreaterThan(0);
    const { retrievers, results } = await search('automobile');
    expect(retrievers).toContain('semantic');
    expect(results[0]).toMatchObject({ video_id: carVideo, start_timestamp: 0 });
  });

  it('refuses at boot an embedding model that does not exist or does not embed', async () => {
    await expect(startOcular(config('nope'))).rejects.toThrow(/indexing\.embeddingModel/);
    await expect(startOcular(config('claude'))).rejects.toThrow(/does not embed/);
  });
});
