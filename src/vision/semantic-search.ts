/**
 * Semantic video search: text embeddings of segments (made by a durable job once a video is indexed, and for
 * videos indexed before an embedding model was configured), kept in SQLite and in a vector index beside it, and
 * a retriever that embeds the query and asks the index for the nearest segments.
 */
import { join } from 'node:path';
import type { JobHandler } from '../jobs/job-runner.ts';
import type { SegmentEmbeddingStore } from '../store/segment-embeddings.ts';
import type { SegmentScope } from '../store/segment-search.ts';
import { LazyVectorIndex } from '../store/vector-index.ts';
import type { RetrievedSegment, SegmentRetriever } from './video-search.ts';

/** The durable job that embeds every segment of an indexed video that has no embedding yet. */
export const EMBED_SEGMENTS_JOB = 'segments.embed';

/** Turns texts into unit vectors (a model's `embed`). */
export type Embed = (inputs: readonly string[], signal: AbortSignal) => Promise<Float32Array[]>;

/** Segments embedded per model call. */
const EMBED_BATCH = 32;
/**
 * Characters of a segment's text that are embedded: embedding models read 512 tokens or so, and what the
 * segment shows first (caption, on-screen text) matters most.
 */
const MAX_EMBEDDED_CHARS = 2_000;

/** The text embedded for a segment: its searchable text, trimmed; never empty (some servers refuse that). */
export function embeddingText(text: string): string {
  const trimmed = text
    .replace(/\s*\n\s*/g, '\n')
    .trim()
    .slice(0, MAX_EMBEDDED_CHARS);
  return trimmed === '' ? '(no text)' : trimmed;
}

/**
 * The vector index of segment embeddings, opened on first use: its dimensions are those of the first vector
 * stored (or already in the database), which the model decides.
 */
export class SegmentVectors extends LazyVectorIndex {
  /** @param dataDir the index lives in `<dataDir>/vectors/segment-text`. */
  constructor(dataDir: string, embeddings: SegmentEmbeddingStore) {
    super(join(dataDir, 'vectors', 'segment-text'), embeddings);
  }
}

/**
 * Embeds segments that have no embedding yet, in batches, until none is left: the segments of videos indexed
 * since the job was queued are picked up too. Saved rows are the truth; the index follows them (a crash
 * between the two is repaired by the index's sync).
 */
export function createEmbedSegmentsHandler(options: {
  embeddings: SegmentEmbeddingStore;
  vectors: SegmentVectors;
  embed: Embed;
}): JobHandler {
  const { embeddings, vectors, embed } = options;
  return async (_job, { signal, heartbeat }) => {
    for (let batch = await embeddings.missing(EMBED_BATCH); batch.length > 0; batch = await embeddings.missing(EMBED_BATCH)) {
      const vectorsOut = await embed(
        batch.map((segment) => embeddingText(segment.text)),
        signal,
      );
      const index = await vectors.open(vectorsOut[0]?.length);
      for (const [position, segment] of batch.entries()) {
        const vector = vectorsOut[position]!;
        const id = await embeddings.save(segment, vector);
        if (id !== undefined) index?.add(segment.owner, { id, vector, group: segment.videoId });
      }
      heartbeat();
    }
  };
}

/** Keeps from `segmentIds` those inside `scope` (its filters besides owner and videos). */
export type ScopeFilter = (scope: SegmentScope, segmentIds: readonly number[]) => Promise<Set<number>>;

/**
 * Finds segments whose meaning is near the query's: embeds the query, asks the vector index for the owner's
 * nearest segment embeddings (narrowed to `video_ids` inside the index), then applies the scope's other filters.
 * Cosine similarity is its relevance, clamped to 0..1.
 */
export function createSemanticRetriever(options: {
  embeddings: SegmentEmbeddingStore;
  vectors: SegmentVectors;
  embed: Embed;
  inScope: ScopeFilter;
}): SegmentRetriever {
  const { embeddings, vectors, embed, inScope } = options;
  return {
    name: 'semantic',
    async retrieve({ text, scope, limit, signal }): Promise<RetrievedSegment[]> {
      const index = await vectors.open();
      if (index === undefined) return []; // nothing embedded yet
      const [query] = await embed([text], signal);
      if (query === undefined || query.length !== index.dimensions) return [];
      const matches = await index.search(query, limit, { owner: scope.owner, groups: scope.videoIds });
      const found = await embeddings.lookup(
        scope.owner,
        matches.map((match) => match.id),
      );
      // An embedding whose segment went away (a deleted video) is dropped from the index as it is met.
      for (const match of matches) if (!found.has(match.id)) index.remove(scope.owner, match.id);
      const narrowed = scope.groupIds !== undefined || scope.from !== undefined || scope.to !== undefined;
      const allowed = narrowed
        ? await inScope(
            scope,
            [...found.values()].map((entry) => entry.segmentId),
          )
        : undefined;
      const hits: RetrievedSegment[] = [];
      for (const match of matches) {
        const entry = found.get(match.id);
        if (entry === undefined || (allowed !== undefined && !allowed.has(entry.segmentId))) continue;
        hits.push({ segmentId: entry.segmentId, score: match.score, relevance: Math.min(1, Math.max(0, match.score)) });
      }
      return hits;
    },
  };
}
