import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openAiCompatible, settingsSchema } from '../../src/providers/openai-compatible/index.ts';
import type { LanguageModel } from '../../src/spec/provider.ts';
import { SegmentEmbeddingStore } from '../../src/store/segment-embeddings.ts';
import type { SqlDatabase } from '../../src/store/sql.ts';
import { VideoStore } from '../../src/store/video-store.ts';
import {
  createEmbedSegmentsHandler,
  createSemanticRetriever,
  embeddingText,
  EMBED_SEGMENTS_JOB,
  SegmentVectors,
  type Embed,
} from '../../src/vision/semantic-search.ts';
import { createTestDatabase, DIALECTS, type TestDatabase } from '../helpers/databases.ts';
import { sendJson, startFakeUpstream, type FakeUpstream } from '../helpers/fake-upstream.ts';
import { insertIndexedVideo, runJobOnce } from '../helpers/library-fixtures.ts';

/** Words an embedding server here knows, one dimension each (a tiny bag-of-words model, served over HTTP). */
const VOCABULARY = ['car', 'road', 'red', 'fruit', 'bowl', 'table', 'dog', 'park', 'note'];

function bagOfWords(text: string): number[] {
  const words = text.toLowerCase().match(/[a-z]+/g) ?? [];
  const vector = VOCABULARY.map((word) => words.filter((candidate) => candidate === word).length);
  // A last dimension keeps texts without known words from being the zero vector.
  return [...vector, 0.01];
}

let target: TestDatabase;
let dir: string;
let database: SqlDatabase;
let videos: VideoStore;
let upstream: FakeUpstream;
let model: LanguageModel;
let embed: Embed;
let embeddings: SegmentEmbeddingStore;
let vectors: SegmentVectors;

function addVideo(owner: string, texts: readonly string[], status: 'indexed' | 'indexing' = 'indexed'): Promise<string> {
  return insertIndexedVideo(
    videos,
    owner,
    texts.map((caption) => ({ caption })),
    { status },
  );
}

async function segmentIdsOf(videoId: string): Promise<number[]> {
  const rows = await database.db.selectFrom('video_segments').select('rowid').where('video_id', '=', videoId).orderBy('seq').execute();
  return rows.map((row) => row.rowid);
}

async function runEmbedJob(): Promise<void> {
  await runJobOnce(createEmbedSegmentsHandler({ embeddings, vectors, embed }), EMBED_SEGMENTS_JOB, {});
}

function retriever() {
  return createSemanticRetriever({ embeddings, vectors, embed, inScope: async (_scope, ids) => new Set(ids) });
}

const retrieve = (owner: string, text: string, videoIds?: string[]) =>
  retriever().retrieve({ text, scope: { owner, videoIds }, limit: 5, signal: new AbortController().signal });

describe.each(DIALECTS)('semantic video search on %s', (dialect) => {
  beforeEach(async () => {
    target = await createTestDatabase(dialect);
    dir = target.dataDir;
    database = await target.open();
    videos = new VideoStore(database);
    upstream = await startFakeUpstream((request, response) => {
      const { input } = request.body as { input: string[] };
      sendJson(response, 200, { data: input.map((text, index) => ({ index, embedding: bagOfWords(text) })) });
    });
    model = openAiCompatible.create(
      settingsSchema.parse({ id: 'bow', provider: 'openai-compatible', baseUrl: `${upstream.url}/v1`, model: 'bow', maxRetries: 0 }),
    );
    embed = model.embed!;
    embeddings = new SegmentEmbeddingStore(database, 'bow');
    vectors = new SegmentVectors(dir, embeddings);
  });

  afterEach(async () => {
    await vectors.close();
    await model.close?.();
    await upstream.close();
    await target.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('embeds the segments of indexed videos only, and finds the nearest in meaning for the owner', async () => {
    const cars = await addVideo('alice', ['a red car on the road', 'a bowl of fruit on a table']);
    await addVideo('bob', ['red car red car']);
    const unfinished = await addVideo('alice', ['a car'], 'indexing');
    await runEmbedJob();
    // The video still being indexed waits; once indexed, it is what is left to embed.
    expect(await embeddings.missing(10)).toEqual([]);
    await videos.updateVideo(unfinished, { status: 'indexed' });
    expect((await embeddings.missing(10)).map((segment) => segment.videoId)).toEqual([unfinished]);

    const hits = await retrieve('alice', 'car road');
    expect(hits[0]!.segmentId).toBe((await segmentIdsOf(cars))[0]);
    expect(hits[0]!.relevance).toBeGreaterThan(0.7);
    // Bob's segment is as near, but never Alice's to see.
    const own = new Set(await segmentIdsOf(cars));
    for (const hit of hits) expect(own.has(hit.segmentId)).toBe(true);
    expect((await retrieve('alice', 'fruit bowl'))[0]!.segmentId).toBe((await segmentIdsOf(cars))[1]);
  });

  it('narrows to video_ids inside the index', async () => {
    await addVideo('alice', ['a red car']);
    const other = await addVideo('alice', ['a dog in the park']);
    await runEmbedJob();
    const hits = await retrieve('alice', 'red car', [other]);
    expect(hits.map((hit) => hit.segmentId)).toEqual(await segmentIdsOf(other));
  });

  it('finds nothing, without calling the model, before anything is embedded', async () => {
    await addVideo('alice', ['a red car']);
    expect(await retrieve('alice', 'car')).toEqual([]);
    expect(upstream.requests).toHaveLength(0);
  });

  it('re-embeds a segment whose text changed, and drops the embeddings of a deleted video', async () => {
    const id = await addVideo('alice', ['a red car']);
    await runEmbedJob();
    const [segmentId] = await segmentIdsOf(id);
    await videos.saveSegment({ ...(await videos.getSegment(id, 0))!, caption: 'a dog in the park' });
    expect((await embeddings.missing(10)).map((segment) => segment.segmentId)).toEqual([segmentId]);
    await runEmbedJob();
    expect((await retrieve('alice', 'dog park'))[0]!.segmentId).toBe(segmentId);

    await videos.deleteVideo('alice', id);
    expect((await embeddings.summary('alice')).count).toBe(0);
    expect(await retrieve('alice', 'dog park')).toEqual([]);
  });

  it('rebuilds the vector index from the database when its files are gone', async () => {
    const id = await addVideo('alice', ['a red car', 'a bowl of fruit']);
    await runEmbedJob();
    await vectors.close();
    rmSync(join(dir, 'vectors'), { recursive: true, force: true });
    vectors = new SegmentVectors(dir, embeddings);
    expect((await retrieve('alice', 'fruit'))[0]!.segmentId).toBe((await segmentIdsOf(id))[1]);
    expect(existsSync(join(dir, 'vectors', 'segment-text'))).toBe(true);
  });

  it('embeds a segment with no text as a placeholder, never as an empty input', () => {
    expect(embeddingText(' \n \n ')).toBe('(no text)');
    expect(embeddingText('a\n\n\nb')).toBe('a\nb');
    expect(embeddingText('x'.repeat(5_000))).toHaveLength(2_000);
  });
});
