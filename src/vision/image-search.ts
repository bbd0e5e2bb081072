/**
 * Search of the image library: the word matches of ImageLibrary.search, fused (reciprocal rank fusion, as video
 * search) with embedding retrievers when models are configured: the picture embeddings (CLIP) against the query
 * text's CLIP embedding (`visual`) or against a query picture (`image`, search by image), and the text
 * embeddings of each image's caption and on-screen text against the query's (`semantic`, with
 * `indexing.embeddingModel`). Embeddings are made by the durable `images.embed` job after an image is indexed,
 * and at start for images indexed before a model was configured.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { JobHandler, JobLog } from '../jobs/job-runner.ts';
import type { ImageEmbeddingModel } from '../perception/clip/clip-model.ts';
import { isAbortError } from '../spec/errors.ts';
import type { ImageBlobStore } from '../store/image-blob-store.ts';
import type { ImageEmbeddingStore } from '../store/image-embeddings.ts';
import type { ImageStore } from '../store/image-store.ts';
import type { ImageLibrary, ImageSearchHit } from './image-library.ts';
import { LazyVectorIndex } from '../store/vector-index.ts';
import { IMAGE_RETRIEVER, VISUAL_RETRIEVER } from './image-embeddings.ts';
import { embeddingText, type Embed } from './semantic-search.ts';
import { fuseRankings, imageSearchUnavailable } from './video-search.ts';

/** The durable job that embeds indexed library images lacking an embedding. */
export const EMBED_IMAGES_JOB = 'images.embed';

/** What an image retriever is asked for. */
export interface ImageRetrievalRequest {
  owner: string;
  /** The query's words; empty for a search by image. */
  text: string;
  /** The query picture (normalised), for retrievers whose `input` is `image`. */
  image?: Buffer | undefined;
  limit: number;
  signal: AbortSignal;
}

/** One way of ranking the owner's images for a query. */
export interface ImageRetriever {
  /** Listed in the `X-Ocular-Retrievers` response header. */
  readonly name: string;
  /** @default 'text' */
  readonly input?: 'text' | 'image';
  /** Best first; relevance 0..1 on the retriever's own scale. */
  retrieve(request: ImageRetrievalRequest): Promise<Array<{ imageId: string; relevance: number }>>;
}

export interface ImageSearchOutcome {
  hits: ImageSearchHit[];
  retrievers: string[];
}

/** Images each retriever may return: bounds the work per query. */
const CANDIDATES = 500;
/** Images per batch of the embedding job. */
const EMBED_BATCH = 16;
/** See image-embeddings.ts: CLIP's text-picture cosine range mapped onto 0..1. */
const TEXT_IMAGE_FLOOR = 0.15;
const TEXT_IMAGE_SPAN = 0.2;

const clamp = (value: number): number => Math.min(1, Math.max(0, value));

/** The lexical retriever's name, as for video search. */
const LEXICAL = 'lexical';

/** Image search: the library's word matches plus the embedding retrievers, fused. */
export class ImageSearch {
  readonly #library: ImageLibrary;
  readonly #store: ImageStore;
  readonly #retrievers: readonly ImageRetriever[];

  constructor(options: { library: ImageLibrary; store: ImageStore; retrievers: readonly ImageRetriever[] }) {
    this.#library = options.library;
    this.#store = options.store;
    this.#retrievers = options.retrievers;
  }

  /** Whether a search by image can run (an image embedding model is configured). */
  get searchesByImage(): boolean {
    return this.#retrievers.some((retriever) => retriever.input === 'image');
  }

  async search(
    request: { owner: string; query?: string | undefined; image?: Buffer | undefined; maxResults: number; threshold: number },
    signal: AbortSignal,
  ): Promise<ImageSearchOutcome> {
    const { owner } = request;
    const input = request.image === undefined ? 'text' : 'image';
    const retrievers = this.#retrievers.filter((retriever) => (retriever.input ?? 'text') === input);
    if (input === 'image' && retrievers.length === 0) throw imageSearchUnavailable();
    const rankings: Array<{ name: string; hits: Array<{ imageId: string; relevance: number }> }> = [];
    if (input === 'text') {
      const lexical = await this.#library.search({ owner, query: request.query ?? '', maxResults: CANDIDATES, threshold: 0 });
      rankings.push({ name: LEXICAL, hits: lexical.map((hit) => ({ imageId: hit.image.id, relevance: hit.score })) });
    }
    for (const retriever of retrievers) {
      signal.throwIfAborted();
      const hits = await retriever.retrieve({ owner, text: request.query ?? '', image: request.image, limit: CANDIDATES, signal });
      rankings.push({ name: retriever.name, hits });
    }
    // Fused on numbers: each image id gets one.
    const keys = new Map<string, number>();
    const key = (imageId: string): number => {
      let value = keys.get(imageId);
      if (value === undefined) keys.set(imageId, (value = keys.size));
      return value;
    };
    const fused = fuseRankings(
      rankings.map(({ hits }) => ({
        weight: 1,
        hits: hits.map((hit) => ({ segmentId: key(hit.imageId), score: hit.relevance, relevance: hit.relevance })),
      })),
    );
    const ids = [...keys.keys()];
    const ranked = [...fused].filter(([, score]) => score > 0 && score >= request.threshold).sort((a, b) => b[1] - a[1] || a[0] - b[0]);
    const hits: ImageSearchHit[] = [];
    for (const [index, score] of ranked) {
      if (hits.length >= request.maxResults) break;
      const image = await this.#store.get(owner, ids[index]!);
      if (image?.status === 'indexed') hits.push({ image, score: Math.round(score * 10_000) / 10_000 });
    }
    return { hits, retrievers: rankings.map((ranking) => ranking.name) };
  }
}

/** The vector index of one kind of image embedding: `<dataDir>/vectors/image-<kind>`. */
export function imageVectors(dataDir: string, embeddings: ImageEmbeddingStore, kind: 'picture' | 'text'): LazyVectorIndex {
  return new LazyVectorIndex(join(dataDir, 'vectors', `image-${kind}`), embeddings);
}

/** An embedding kind's retriever: the query embedded, the index asked, ids the owner no longer has dropped. */
function vectorRetriever(options: {
  name: string;
  input: 'text' | 'image';
  embeddings: ImageEmbeddingStore;
  vectors: LazyVectorIndex;
  embedQuery: (request: ImageRetrievalRequest) => Promise<Float32Array | undefined>;
  relevance: (cosine: number) => number;
}): ImageRetriever {
  const { embeddings, vectors } = options;
  return {
    name: options.name,
    input: options.input,
    async retrieve(request) {
      const index = await vectors.open();
      if (index === undefined) return []; // nothing embedded yet
      const query = await options.embedQuery(request);
      if (query === undefined || query.length !== index.dimensions) return [];
      const matches = await index.search(query, request.limit, { owner: request.owner });
      const found = await embeddings.lookup(
        request.owner,
        matches.map((match) => match.id),
      );
      // An embedding whose image went away is dropped from the index as it is met.
      for (const match of matches) if (!found.has(match.id)) index.remove(request.owner, match.id);
      return matches
        .filter((match) => found.has(match.id))
        .map((match) => ({ imageId: found.get(match.id)!, relevance: options.relevance(match.score) }));
    },
  };
}

export interface ImageEmbeddingParts {
  /** CLIP embeddings of the pictures, with the model that makes them. */
  pictures?: { embeddings: ImageEmbeddingStore; vectors: LazyVectorIndex; model: ImageEmbeddingModel } | undefined;
  /** Text embeddings of caption and on-screen text, with the embedding function (`indexing.embeddingModel`). */
  texts?: { embeddings: ImageEmbeddingStore; vectors: LazyVectorIndex; embed: Embed } | undefined;
}

/** The embedding retrievers that the configured models make possible. */
export function createImageRetrievers(parts: ImageEmbeddingParts): ImageRetriever[] {
  const retrievers: ImageRetriever[] = [];
  const { pictures, texts } = parts;
  if (pictures !== undefined) {
    retrievers.push(
      vectorRetriever({
        name: VISUAL_RETRIEVER,
        input: 'text',
        ...pictures,
        embedQuery: async (request) =>
          request.text === '' ? undefined : (await pictures.model.embedTexts([request.text], request.signal))[0],
        relevance: (cosine) => clamp((cosine - TEXT_IMAGE_FLOOR) / TEXT_IMAGE_SPAN),
      }),
    );
  }
  if (texts !== undefined) {
    retrievers.push(
      vectorRetriever({
        name: 'semantic',
        input: 'text',
        ...texts,
        embedQuery: async (request) => (request.text === '' ? undefined : (await texts.embed([request.text], request.signal))[0]),
        relevance: clamp,
      }),
    );
  }
  if (pictures !== undefined) {
    retrievers.push(
      vectorRetriever({
        name: IMAGE_RETRIEVER,
        input: 'image',
        ...pictures,
        embedQuery: async (request) =>
          request.image === undefined ? undefined : (await pictures.model.embedImages([request.image], request.signal))[0],
        relevance: clamp,
      }),
    );
  }
  return retrievers;
}

/**
 * Embeds indexed images that lack an embedding of a configured kind, in batches, until none is left. An image
 * whose picture cannot be read is skipped until the next run (the job walks forward by image id).
 */
export function createEmbedImagesHandler(parts: ImageEmbeddingParts & { blobs: ImageBlobStore; log: JobLog }): JobHandler {
  const { pictures, texts, blobs, log } = parts;
  return async (_job, { signal, heartbeat }) => {
    if (pictures !== undefined) {
      let after = '';
      for (
        let batch = await pictures.embeddings.missing(after, EMBED_BATCH);
        batch.length > 0;
        batch = await pictures.embeddings.missing(after, EMBED_BATCH)
      ) {
        for (const image of batch) {
          after = image.imageId;
          signal.throwIfAborted();
          let vector: Float32Array | undefined;
          try {
            [vector] = await pictures.model.embedImages([await blobs.read(image.imageId)], signal);
          } catch (error) {
            if (signal.aborted || isAbortError(error)) throw error;
            log.warn('an image could not be embedded', { imageId: image.imageId, error: (error as Error).message });
          }
          if (vector === undefined) continue;
          const id = await pictures.embeddings.save(image.imageId, vector);
          if (id !== undefined) (await pictures.vectors.open(vector.length))?.add(image.owner, { id, vector });
        }
        heartbeat();
      }
    }
    if (texts !== undefined) {
      let after = '';
      for (
        let batch = await texts.embeddings.missing(after, EMBED_BATCH);
        batch.length > 0;
        batch = await texts.embeddings.missing(after, EMBED_BATCH)
      ) {
        after = batch[batch.length - 1]!.imageId;
        const vectors = await texts.embed(
          batch.map((image) => embeddingText(image.text)),
          signal,
        );
        for (const [position, image] of batch.entries()) {
          const vector = vectors[position];
          if (vector === undefined) continue;
          const id = await texts.embeddings.save(image.imageId, vector);
          if (id !== undefined) (await texts.vectors.open(vector.length))?.add(image.owner, { id, vector });
        }
        heartbeat();
      }
    }
  };
}
