import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createClipModel, inspectClipFolder, type ImageEmbeddingModel } from '../../src/perception/clip/clip-model.ts';
import { BlobStore } from '../../src/store/blob-store.ts';
import { KeyframeEmbeddingStore } from '../../src/store/image-embeddings.ts';
import { SegmentSearchStore } from '../../src/store/segment-search.ts';
import type { SqlDatabase } from '../../src/store/sql.ts';
import type { LazyVectorIndex } from '../../src/store/vector-index.ts';
import { VideoStore } from '../../src/store/video-store.ts';
import {
  createEmbedKeyframesHandler,
  createImageRetriever,
  createVisualRetriever,
  EMBED_KEYFRAMES_JOB,
  keyframeVectors,
} from '../../src/vision/image-embeddings.ts';
import { writeClipFixture } from '../helpers/clip-model-writer.ts';
import { createTestDatabase, DIALECTS, type TestDatabase } from '../helpers/databases.ts';
import { insertIndexedVideo, runJobOnce } from '../helpers/library-fixtures.ts';

let target: TestDatabase;
let dir: string;
let database: SqlDatabase;
let videos: VideoStore;
let blobs: BlobStore;
let model: ImageEmbeddingModel;
let embeddings: KeyframeEmbeddingStore;
let vectors: LazyVectorIndex;
let warnings: Array<Record<string, unknown> | undefined>;

const colour = (background: string): Promise<Buffer> =>
  sharp({ create: { width: 48, height: 32, channels: 3, background } })
    .jpeg()
    .toBuffer();

async function count(): Promise<number> {
  const rows = await database.db.selectFrom('keyframe_embeddings').select('id').execute();
  return rows.length;
}

function handler() {
  return createEmbedKeyframesHandler({ embeddings, vectors, model, blobs, log: { warn: (_message, fields) => warnings.push(fields) } });
}

/** A video of `owner` with one segment per entry, each keyframe a file written from its picture (undefined: no file). */
async function insertVideo(owner: string, segments: ReadonlyArray<ReadonlyArray<Buffer | undefined>>): Promise<string> {
  const id = await insertIndexedVideo(
    videos,
    owner,
    segments.map((frames, seq) => ({
      seconds: 5,
      keyframes: frames.map((_, index) => ({ timeSeconds: seq * 5 + index, file: `keyframes/keyframe-${seq}-${index}.jpg` })),
    })),
  );
  mkdirSync(join(blobs.videoDir(id), 'keyframes'), { recursive: true });
  for (const [seq, frames] of segments.entries()) {
    for (const [index, data] of frames.entries()) {
      if (data !== undefined) writeFileSync(blobs.filePath(id, `keyframes/keyframe-${seq}-${index}.jpg`), data);
    }
  }
  return id;
}

describe.each(DIALECTS)('keyframe embeddings on %s', (dialect) => {
  beforeEach(async () => {
    target = await createTestDatabase(dialect);
    dir = target.dataDir;
    database = await target.open();
    videos = new VideoStore(database);
    blobs = new BlobStore(join(dir, 'videos'));
    model = createClipModel(inspectClipFolder(writeClipFixture(join(dir, 'clip'))));
    embeddings = new KeyframeEmbeddingStore(database, model.id);
    vectors = keyframeVectors(dir, embeddings);
    warnings = [];
  });

  afterEach(async () => {
    await vectors.close();
    await model.close();
    await target.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('embeds every readable keyframe, skips missing and corrupt ones, and ends', async () => {
    const red = await colour('#e02020');
    const id = await insertVideo('owner-a', [[red, undefined], [Buffer.from('not a jpeg')], [await colour('#2040f0')]]);
    await runJobOnce(handler(), EMBED_KEYFRAMES_JOB, {});
    const rows = await database.db
      .selectFrom('keyframe_embeddings')
      .select(['segment_id', 'time_seconds'])
      .where('video_id', '=', id)
      .orderBy('id')
      .execute();
    expect(rows.map((row) => row.time_seconds)).toEqual([0, 10]);
    expect(warnings).toHaveLength(2);
    // The segment without a usable keyframe is left for the next run; the others are not embedded again.
    expect((await embeddings.missing(0, 10)).map((segment) => segment.keyframes.length)).toEqual([1]);
    await runJobOnce(handler(), EMBED_KEYFRAMES_JOB, {});
    expect(await count()).toBe(2);
  });

  it('ranks segments by their best keyframe, for the owner and the scope only', async () => {
    const red = await colour('#e02020');
    const blue = await colour('#2040f0');
    const mine = await insertVideo('owner-a', [[blue], [blue, red]]);
    await insertVideo('owner-b', [[red]]);
    await runJobOnce(handler(), EMBED_KEYFRAMES_JOB, {});
    const segments = new SegmentSearchStore(database);
    const inScope = (scope: Parameters<SegmentSearchStore['inScope']>[0], ids: readonly number[]) => segments.inScope(scope, ids);
    const retriever = createImageRetriever({ embeddings, vectors, model, inScope });
    const signal = new AbortController().signal;
    const hits = await retriever.retrieve({ text: '', image: red, scope: { owner: 'owner-a' }, limit: 10, signal });
    const spans = await segments.spans(
      'owner-a',
      hits.map((hit) => hit.segmentId),
    );
    expect(hits).toHaveLength(2);
    expect(spans.find((span) => span.segmentId === hits[0]!.segmentId)).toMatchObject({ videoId: mine, seq: 1 });
    expect(hits[0]!.relevance).toBeGreaterThan(0.99);
    expect(hits[0]!.relevance).toBeLessThanOrEqual(1);
    expect(await retriever.retrieve({ text: '', image: red, scope: { owner: 'owner-a', videoIds: ['nope'] }, limit: 10, signal })).toEqual(
      [],
    );
    expect(await retriever.retrieve({ text: '', image: red, scope: { owner: 'owner-c' }, limit: 10, signal })).toEqual([]);
    // The text-to-image retriever ranks the same keyframes by the text encoder, relevance within 0..1.
    const visual = await createVisualRetriever({ embeddings, vectors, model, inScope }).retrieve({
      text: 'a red square',
      scope: { owner: 'owner-a' },
      limit: 10,
      signal,
    });
    for (const hit of visual) expect(hit.relevance).toBeGreaterThanOrEqual(0);
    expect(visual.every((hit) => hit.relevance <= 1)).toBe(true);
  });

  it('drops the embeddings of a deleted segment and of a re-planned one', async () => {
    const id = await insertVideo('owner-a', [[await colour('#e02020')], [await colour('#20e020')]]);
    await runJobOnce(handler(), EMBED_KEYFRAMES_JOB, {});
    expect(await count()).toBe(2);
    await database.db.updateTable('video_segments').set({ keyframes: '[]' }).where('video_id', '=', id).where('seq', '=', 0).execute();
    expect(await count()).toBe(1);
    await videos.deleteVideo('owner-a', id);
    expect(await count()).toBe(0);
  });
});
