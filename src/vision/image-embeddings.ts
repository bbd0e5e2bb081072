/**
 * Image embeddings for video search: a CLIP-style model (`indexing.imageEmbeddingModel`) embeds every keyframe
 * of indexed videos in a durable job (queued after each video is indexed, and at start for videos indexed
 * before the setting existed), kept in SQLite and in a vector index beside it. Two retrievers read them: search
 * by image (the query picture against the keyframes) and the text-to-image one (the query's words through the
 * model's text encoder against the keyframes), each mapping keyframes to their segments.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { JobHandler, JobLog } from '../jobs/job-runner.ts';
import type { ImageEmbeddingModel } from '../perception/clip/clip-model.ts';
import { isAbortError } from '../spec/errors.ts';
import type { BlobStore } from '../store/blob-store.ts';
import type { KeyframeEmbeddingStore } from '../store/image-embeddings.ts';
import { LazyVectorIndex } from '../store/vector-index.ts';
import type { ScopeFilter } from './semantic-search.ts';
import type { RetrievedSegment, SegmentRetriever } from './video-search.ts';

/** The durable job that embeds the keyframes of indexed videos that have no embedding yet. */
export const EMBED_KEYFRAMES_JOB = 'keyframes.embed';

/** The retriever of search by image (`image_url`), as `X-Ocular-Retrievers` names it. */
export const IMAGE_RETRIEVER = 'image';
/** The retriever that matches a text query with keyframe pictures through the image model's text encoder. */
export const VISUAL_RETRIEVER = 'visual';

/** Segments read per batch of the job. */
const SEGMENT_BATCH = 16;
/** Keyframes asked of the index per segment wanted: a segment has several, and the best of them stands for it. */
const KEYFRAMES_PER_SEGMENT = 4;
/** The most keyframes one query reads from the index. */
const MAX_KEYFRAME_MATCHES = 2_000;

/**
 * CLIP's cosine between a text and a picture it describes is small: about 0.25-0.35 for a match, 0.1-0.2 for
 * an unrelated pair. The text-to-image relevance maps that range onto 0..1, so it weighs in the fusion like
 * the other retrievers' relevance does.
 */
const TEXT_IMAGE_FLOOR = 0.15;
const TEXT_IMAGE_SPAN = 0.2;

/** The keyframe vector index: `<dataDir>/vectors/keyframe-image`. */
export function keyframeVectors(dataDir: string, embeddings: KeyframeEmbeddingStore): LazyVectorIndex {
  return new LazyVectorIndex(join(dataDir, 'vectors', 'keyframe-image'), embeddings);
}

/**
 * Embeds the keyframes of segments that have none from the model, a batch of segments at a time, until none is
 * left. A keyframe file that is gone or cannot be decoded is skipped (the segment keeps its other frames); the
 * job walks forward by segment, so such a segment is not retried until the next run.
 */
export function createEmbedKeyframesHandler(options: {
  embeddings: KeyframeEmbeddingStore;
  vectors: LazyVectorIndex;
  model: ImageEmbeddingModel;
  blobs: BlobStore;
  log: JobLog;
}): JobHandler {
  const { embeddings, vectors, model, blobs, log } = options;
  return async (_job, { signal, heartbeat }) => {
    let after = 0;
    for (
      let batch = await embeddings.missing(after, SEGMENT_BATCH);
      batch.length > 0;
      batch = await embeddings.missing(after, SEGMENT_BATCH)
    ) {
      for (const segment of batch) {
        after = segment.segmentId;
        const frames: Array<{ timeSeconds: number; vector: Float32Array }> = [];
        for (const keyframe of segment.keyframes) {
          signal.throwIfAborted();
          try {
            const data = await blobs.read(segment.videoId, keyframe.file);
            const [vector] = await model.embedImages([data], signal);
            if (vector !== undefined) frames.push({ timeSeconds: keyframe.timeSeconds, vector });
          } catch (error) {
            if (signal.aborted || isAbortError(error)) throw error;
            log.warn('a keyframe could not be embedded', {
              videoId: segment.videoId,
              file: keyframe.file,
              error: (error as Error).message,
            });
          }
        }
        if (frames.length === 0) continue;
        const ids = await embeddings.save(segment, frames);
        const index = await vectors.open(frames[0]!.vector.length);
        ids.forEach((id, position) => index?.add(segment.owner, { id, vector: frames[position]!.vector, group: segment.videoId }));
        heartbeat();
      }
    }
  };
}

/**
 * The segments whose keyframes are nearest `query` among the owner's (narrowed to `video_ids` inside the index,
 * then to the scope's other filters), each scored by its best keyframe, best first.
 */
async function nearestSegments(
  options: { embeddings: KeyframeEmbeddingStore; vectors: LazyVectorIndex; inScope: ScopeFilter },
  query: Float32Array,
  request: Parameters<SegmentRetriever['retrieve']>[0],
  relevance: (cosine: number) => number,
): Promise<RetrievedSegment[]> {
  const { embeddings, vectors, inScope } = options;
  const { scope, limit } = request;
  const index = await vectors.open();
  if (index === undefined) return []; // nothing embedded yet
  if (query.length !== index.dimensions) return [];
  const k = Math.min(MAX_KEYFRAME_MATCHES, limit * KEYFRAMES_PER_SEGMENT);
  const matches = await index.search(query, k, { owner: scope.owner, groups: scope.videoIds });
  const found = await embeddings.lookup(
    scope.owner,
    matches.map((match) => match.id),
  );
  // An embedding whose segment went away (a deleted video) is dropped from the index as it is met.
  for (const match of matches) if (!found.has(match.id)) index.remove(scope.owner, match.id);
  const narrowed = scope.groupIds !== undefined || scope.from !== undefined || scope.to !== undefined;
  const allowed = narrowed ? await inScope(scope, [...new Set([...found.values()].map((entry) => entry.segmentId))]) : undefined;
  const hits: RetrievedSegment[] = [];
  const seen = new Set<number>();
  for (const match of matches) {
    const entry = found.get(match.id);
    if (entry === undefined || seen.has(entry.segmentId) || (allowed !== undefined && !allowed.has(entry.segmentId))) continue;
    seen.add(entry.segmentId);
    hits.push({ segmentId: entry.segmentId, score: match.score, relevance: relevance(match.score) });
    if (hits.length >= limit) break;
  }
  return hits;
}

const clamp = (value: number): number => Math.min(1, Math.max(0, value));

/** Search by image: the query picture's embedding against the keyframes'; relevance is the cosine, clamped. */
export function createImageRetriever(options: {
  embeddings: KeyframeEmbeddingStore;
  vectors: LazyVectorIndex;
  model: ImageEmbeddingModel;
  inScope: ScopeFilter;
}): SegmentRetriever {
  return {
    name: IMAGE_RETRIEVER,
    input: 'image',
    async retrieve(request) {
      if (request.image === undefined) return [];
      const [query] = await options.model.embedImages([request.image], request.signal);
      return query === undefined ? [] : nearestSegments(options, query, request, clamp);
    },
  };
}

/** Text to image: the query's words through the model's text encoder, against the keyframes. */
export function createVisualRetriever(options: {
  embeddings: KeyframeEmbeddingStore;
  vectors: LazyVectorIndex;
  model: ImageEmbeddingModel;
  inScope: ScopeFilter;
}): SegmentRetriever {
  return {
    name: VISUAL_RETRIEVER,
    async retrieve(request) {
      if (request.text === '') return [];
      const [query] = await options.model.embedTexts([request.text], request.signal);
      return query === undefined
        ? []
        : nearestSegments(options, query, request, (cosine) => clamp((cosine - TEXT_IMAGE_FLOOR) / TEXT_IMAGE_SPAN));
    },
  };
}
