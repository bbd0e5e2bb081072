import { randomUUID } from 'node:crypto';
import { normalizeImage } from '../media/image.ts';
import { sniffFile } from '../media/sniff.ts';
import type { JobQueue } from '../jobs/job-queue.ts';
import { OcularError, validationError } from '../spec/errors.ts';
import type { BlobClaim } from '../store/blob-claims.ts';
import type { ImageBlobStore } from '../store/image-blob-store.ts';
import type { BlobSource } from '../store/object-store.ts';
import type { ImageRecord, ImageStore, NewImage } from '../store/image-store.ts';
import type { Page } from '../store/video-store.ts';
import { createFuzzyJudge, prepareWords, queryWords, toTrigramPieces, wordCoverage } from './text-match.ts';

/** The job kind that indexes one image; its payload is `{ imageId }`. */
export const INDEX_IMAGE_JOB = 'image.index';

/** An uploaded file, already on disk. */
export interface ImageUploadFile {
  path: string;
  size: number;
  /** The client's file name. */
  filename: string | undefined;
}

/** What the client asked for one image of an upload. */
export interface ImageUploadRequest {
  index: boolean;
  metadata: Record<string, unknown>;
}

export interface ImageLibraryOptions {
  store: ImageStore;
  blobs: ImageBlobStore;
  jobs: JobQueue;
  /** Attempts an indexing job gets. */
  maxAttempts: number;
  /** Longest side an image is stored at; larger ones are downscaled. */
  maxSide: number;
  /** Most pixels an upload may decode to (decompression-bomb guard). */
  maxPixels: number;
}

export interface ImageSearchRequest {
  owner: string;
  query: string;
  maxResults: number;
  /** Results scoring below it (0..1) are left out. */
  threshold: number;
}

export interface ImageSearchHit {
  image: ImageRecord;
  /** 0..1: the share of the query's words found in the image's text, typos and OCR slips allowed for less. */
  score: number;
}

/** Images judged per query: the best of the trigram index's matches. */
const SEARCH_CANDIDATES = 500;
/**
 * The least relevance an image needs to be listed: a trigram match can share only a fragment with the query,
 * and a tenth of a word in common is not a result.
 */
const MIN_RELEVANCE = 0.5;

function notFound(id: string): OcularError {
  return new OcularError('not_found_error', `no image with id "${id}"`);
}

/**
 * The image library, always on behalf of one owner: uploads (sniffed, normalised, stored all or none), their
 * indexing as durable jobs (`INDEX_IMAGE_JOB`, index-image.ts), and lexical search over what indexing found.
 */
export class ImageLibrary {
  readonly #store: ImageStore;
  readonly #blobs: ImageBlobStore;
  readonly #jobs: JobQueue;
  readonly #options: ImageLibraryOptions;

  constructor(options: ImageLibraryOptions) {
    this.#store = options.store;
    this.#blobs = options.blobs;
    this.#jobs = options.jobs;
    this.#options = options;
  }

  /**
   * Adds the files of one upload: each must be a non-empty image that decodes within the pixel limit, or the
   * whole upload is refused (the error's `param` names the file, `images.<n>`) and nothing is kept. Returns
   * without waiting for indexing.
   */
  async addImages(owner: string, files: readonly ImageUploadFile[], requests: readonly ImageUploadRequest[]): Promise<ImageRecord[]> {
    const emptyAt = files.findIndex((file) => file.size === 0);
    if (emptyAt >= 0) throw validationError(`images.${emptyAt}: the file is empty`, `images.${emptyAt}`);
    const added: NewImage[] = [];
    // Each blob is claimed before it is written, until its row is in (see BlobClaims).
    const claims: BlobClaim[] = [];
    try {
      for (const [index, file] of files.entries()) {
        const label = `images.${index}`;
        // Sniffed before decoding: libvips would also read SVG and its own formats, which are no client images.
        const sniffed = await sniffFile(file.path);
        if (sniffed?.kind !== 'image') {
          const what = sniffed === undefined ? 'not a recognised media format' : sniffed.mediaType;
          throw new OcularError('unsupported_media_type', `${label}: the file is not an image (its bytes are ${what})`, { param: label });
        }
        const normalized = await normalizeImage(file.path, { maxSide: this.#options.maxSide, maxPixels: this.#options.maxPixels, label });
        const id = randomUUID();
        claims.push(await this.#blobs.claim(id));
        await this.#blobs.put(id, normalized.data);
        const request = requests[index] ?? { index: true, metadata: {} };
        added.push({
          id,
          owner,
          name: file.filename ?? `image-${index + 1}`,
          mediaType: normalized.mediaType,
          width: normalized.width,
          height: normalized.height,
          sizeBytes: normalized.data.length,
          metadata: request.metadata,
          status: 'pending',
          indexRequested: request.index,
        });
      }
      await this.#store.insertImages(added);
    } catch (error) {
      await Promise.all(added.map((image) => this.#blobs.remove(image.id))).catch(() => undefined);
      await Promise.all(claims.map((claim) => claim.abandon()));
      throw error;
    }
    await Promise.all(claims.map((claim) => claim.release()));
    for (const image of added) if (image.indexRequested) await this.#queue(image.id);
    const stored = await Promise.all(added.map((image) => this.#store.getById(image.id)));
    return stored.map((image) => image!);
  }

  async #queue(imageId: string): Promise<void> {
    const job = await this.#jobs.enqueue(INDEX_IMAGE_JOB, { imageId }, { key: `image:${imageId}`, maxAttempts: this.#options.maxAttempts });
    await this.#store.setJob(imageId, job.id);
  }

  async getImage(owner: string, id: string): Promise<ImageRecord> {
    const image = await this.#store.get(owner, id);
    if (!image) throw notFound(id);
    return image;
  }

  listImages(owner: string, limit: number, offset: number): Promise<Page<ImageRecord>> {
    return this.#store.list(owner, limit, offset);
  }

  /** Cancels its indexing, then removes its row (and index entries) and its blob. */
  async deleteImage(owner: string, id: string): Promise<void> {
    const image = await this.getImage(owner, id);
    if (image.jobId !== null) await this.#jobs.cancel(image.jobId);
    await this.#blobs.hold(id, async () => {
      await this.#store.delete(owner, id);
      await this.#blobs.remove(id);
    });
  }

  /** The stored image's type, for serving it; undefined when there is no such image. */
  async mediaType(id: string): Promise<string | undefined> {
    return (await this.#store.getById(id))?.mediaType;
  }

  /** Where a download of the image reads from. */
  blobSource(id: string): BlobSource {
    return this.#blobs.source(id);
  }

  /**
   * The owner's indexed images whose text (caption, on-screen text, object and label names) matches the query,
   * best first. The trigram index finds candidates (every query word within its edit allowance, text-match.ts),
   * and each is scored by the share of the query's words it holds, exactly or within a typo or OCR slip.
   */
  async search(request: ImageSearchRequest): Promise<ImageSearchHit[]> {
    const words = queryWords(request.query);
    const pieces = toTrigramPieces(words);
    if (pieces === undefined) return [];
    const judge = createFuzzyJudge(words);
    const matches = await this.#store.matchTrigrams(request.owner, pieces, SEARCH_CANDIDATES);
    const scored = matches.map((match, rank) => {
      const text = prepareWords(match.text);
      return { imageId: match.imageId, rank, score: Math.max(wordCoverage(words, text), judge(text)) };
    });
    const floor = Math.max(MIN_RELEVANCE, request.threshold);
    const hits: ImageSearchHit[] = [];
    for (const candidate of scored.filter((entry) => entry.score >= floor).sort((a, b) => b.score - a.score || a.rank - b.rank)) {
      if (hits.length >= request.maxResults) break;
      const image = await this.#store.get(request.owner, candidate.imageId);
      if (image) hits.push({ image, score: Math.round(candidate.score * 10_000) / 10_000 });
    }
    return hits;
  }

  /**
   * Brings the library back in line after a crash: removes half-received uploads and blobs without a row, and
   * queues again the images whose indexing job ended without them hearing of it.
   */
  /** With a blob store: removes the blobs a process that stopped was writing or removing, when no row owns them. */
  recoverAbandoned(): Promise<number> {
    return this.#blobs.recoverAbandoned((id) => this.#store.has(id));
  }

  async recover(): Promise<{ removedBlobs: number; requeued: number }> {
    const removedBlobs = await this.#blobs.sweep((id) => this.#store.has(id));
    let requeued = 0;
    for (const image of await this.#store.unfinished()) {
      const job = image.jobId === null ? undefined : await this.#jobs.get(image.jobId);
      if (job?.status === 'queued' || job?.status === 'running' || job?.status === 'succeeded') continue;
      if (job?.status === 'failed' || job?.status === 'cancelled') {
        await this.#store.setStatus(image.id, 'failed', job.error ?? 'indexing failed');
      } else {
        await this.#queue(image.id);
      }
      requeued += 1;
    }
    return { removedBlobs, requeued };
  }
}
