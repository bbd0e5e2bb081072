import { ConfigError } from '../config/load-config.ts';
import type { MediaSettings } from '../config/schema.ts';
import type { WorkerQueue } from '../jobs/job-queue.ts';
import { JobRunner, type JobRunnerOptions } from '../jobs/job-runner.ts';
import { createMediaFetcher } from '../media/fetch-media.ts';
import { createClipModel, inspectClipFolder, type ImageEmbeddingModel } from '../perception/clip/clip-model.ts';
import type { BlobStore } from '../store/blob-store.ts';
import type { SqlDatabase } from '../store/sql.ts';
import { ImageEmbeddingStore, KeyframeEmbeddingStore } from '../store/image-embeddings.ts';
import type { ImageBlobStore } from '../store/image-blob-store.ts';
import type { ImageStore } from '../store/image-store.ts';
import type { ImageLibrary } from '../vision/image-library.ts';
import {
  createEmbedImagesHandler,
  createImageRetrievers,
  EMBED_IMAGES_JOB,
  ImageSearch,
  imageVectors,
  type ImageEmbeddingParts,
} from '../vision/image-search.ts';
import type { Embed } from '../vision/semantic-search.ts';
import type { SegmentSearchStore } from '../store/segment-search.ts';
import {
  createEmbedKeyframesHandler,
  createImageRetriever,
  createVisualRetriever,
  EMBED_KEYFRAMES_JOB,
  keyframeVectors,
} from '../vision/image-embeddings.ts';
import { createQueryImageLoader } from '../vision/query-image.ts';
import type { Logger } from './logger.ts';

/**
 * Image embeddings, when `indexing.imageEmbeddingModel` names a CLIP folder (checked here, so a wrong path
 * stops the boot): the keyframe embedding job (queued at start for videos indexed before, and after each video
 * is indexed), the search-by-image and text-to-image retrievers, and the loader of query pictures.
 * Undefined without one.
 */
export function createImageEmbeddingSearch(options: {
  database: SqlDatabase;
  dataDir: string;
  modelPath: string | undefined;
  media: MediaSettings;
  jobs: WorkerQueue;
  segments: SegmentSearchStore;
  blobs: BlobStore;
  logger: Logger;
  onSettled?: JobRunnerOptions['onSettled'];
}) {
  const { database, dataDir, modelPath, media, jobs, segments, blobs, logger, onSettled } = options;
  if (modelPath === undefined) return undefined;
  let model;
  try {
    model = createClipModel(inspectClipFolder(modelPath));
  } catch (error) {
    throw new ConfigError(`invalid config: indexing.imageEmbeddingModel: ${(error as Error).message}`);
  }
  // Vectors of another model cannot be compared with this one's.
  const keyframes = new KeyframeEmbeddingStore(database, model.id);
  const vectors = keyframeVectors(dataDir, keyframes);
  const runner = new JobRunner({ queue: jobs, log: logger, onSettled, concurrency: 1 }).handle(
    EMBED_KEYFRAMES_JOB,
    createEmbedKeyframesHandler({ embeddings: keyframes, vectors, model, blobs, log: logger }),
  );
  const fetcher = createMediaFetcher({ ...media, allowHosts: media.allowHosts });
  const inScope = (scope: Parameters<SegmentSearchStore['inScope']>[0], ids: readonly number[]) => segments.inScope(scope, ids);
  // One live job at a time: it runs until no indexed segment lacks keyframe embeddings.
  const queue = (): void =>
    void jobs
      .enqueue(EMBED_KEYFRAMES_JOB, {}, { key: EMBED_KEYFRAMES_JOB, maxAttempts: 5 })
      .catch((error: unknown) => logger.warn('could not queue a job', { kind: EMBED_KEYFRAMES_JOB, error: String(error) }));
  return {
    model,
    retrievers: [
      createVisualRetriever({ embeddings: keyframes, vectors, model, inScope }),
      createImageRetriever({ embeddings: keyframes, vectors, model, inScope }),
    ],
    loadQueryImage: createQueryImageLoader({
      fetcher,
      maxBytes: media.maxBytes,
      maxSide: media.maxImageSide,
      maxPixels: media.maxImagePixels,
    }),
    queue,
    async start(): Promise<void> {
      const dropped = await keyframes.dropOtherModels();
      if (dropped > 0) logger.warn('the image embedding model changed: keyframes are embedded again', { dropped });
      runner.start();
      queue();
    },
    async stop(): Promise<void> {
      await runner.stop();
      await vectors.close();
    },
    /** After every job that uses the model (the image library's too) has stopped. */
    async close(): Promise<void> {
      await Promise.all([model.close(), fetcher.close()]);
    },
  };
}

/**
 * Search of the image library: word matches, plus the embedding retrievers of the configured models (the CLIP
 * model of `indexing.imageEmbeddingModel`, the text model of `indexing.embeddingModel`), whose embeddings the
 * `images.embed` job makes (queued at start and after each image is indexed).
 */
export function createImageLibrarySearch(options: {
  database: SqlDatabase;
  dataDir: string;
  jobs: WorkerQueue;
  library: ImageLibrary;
  store: ImageStore;
  blobs: ImageBlobStore;
  clip: ImageEmbeddingModel | undefined;
  text: { embed: Embed; modelId: string } | undefined;
  logger: Logger;
  onSettled?: JobRunnerOptions['onSettled'];
}) {
  const { database, dataDir, jobs, library, store, blobs, clip, text, logger, onSettled } = options;
  const parts: ImageEmbeddingParts = {};
  if (clip !== undefined) {
    const embeddings = new ImageEmbeddingStore(database, 'picture', clip.id);
    parts.pictures = { embeddings, vectors: imageVectors(dataDir, embeddings, 'picture'), model: clip };
  }
  if (text !== undefined) {
    const embeddings = new ImageEmbeddingStore(database, 'text', text.modelId);
    parts.texts = { embeddings, vectors: imageVectors(dataDir, embeddings, 'text'), embed: text.embed };
  }
  const search = new ImageSearch({ library, store, retrievers: createImageRetrievers(parts) });
  if (parts.pictures === undefined && parts.texts === undefined) {
    return {
      search,
      queue: (): void => undefined,
      start: async (): Promise<void> => undefined,
      stop: async (): Promise<void> => undefined,
    };
  }
  const runner = new JobRunner({ queue: jobs, log: logger, onSettled, concurrency: 1 }).handle(
    EMBED_IMAGES_JOB,
    createEmbedImagesHandler({ ...parts, blobs, log: logger }),
  );
  // One live job at a time: it runs until no indexed image lacks an embedding.
  const queue = (): void =>
    void jobs
      .enqueue(EMBED_IMAGES_JOB, {}, { key: EMBED_IMAGES_JOB, maxAttempts: 5 })
      .catch((error: unknown) => logger.warn('could not queue a job', { kind: EMBED_IMAGES_JOB, error: String(error) }));
  return {
    search,
    queue,
    async start(): Promise<void> {
      const pictures = await parts.pictures?.embeddings.dropOtherModels();
      if (pictures) logger.warn('the image embedding model changed: library images are embedded again', { dropped: pictures });
      const texts = await parts.texts?.embeddings.dropOtherModels();
      if (texts) logger.warn('the embedding model changed: library image texts are embedded again', { dropped: texts });
      runner.start();
      queue();
    },
    async stop(): Promise<void> {
      await runner.stop();
      await Promise.all([parts.pictures?.vectors.close(), parts.texts?.vectors.close()]);
    },
  };
}
