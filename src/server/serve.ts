import { chmodSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { getRequestListener } from '@hono/node-server';
import { ChatService } from '../chat/chat-service.ts';
import { ModelRegistry } from '../chat/model-registry.ts';
import { MediaResolver } from '../chat/media-resolver.ts';
import { ConfigError, describeZodError } from '../config/load-config.ts';
import { BOOTSTRAP_KEY_FILE, DEFAULT_HUB_ENDPOINT, type ServerRole, type ServerSettings } from '../config/settings.ts';
import { createFfmpegContext, type FfmpegContext } from '../media/binaries.ts';
import { createMediaFetcher, type MediaFetcher } from '../media/fetch-media.ts';
import { BackgroundPull } from '../models/background-pull.ts';
import { planLocalModels } from '../models/local-models.ts';
import { PendingModel } from '../models/pending-model.ts';
import { createTranscriber, transcriberSettingsSchema, type Transcriber } from '../perception/speech/transcriber.ts';
import { createSynthesizer, synthesizerSettingsSchema, type Synthesizer } from '../perception/speech/synthesizer.ts';
import { SpeechService } from '../speech/speech-service.ts';
import type { ProviderDefinition } from '../provider-utils/provider-definition.ts';
import { OcularError } from '../spec/errors.ts';
import type { LanguageModel } from '../spec/provider.ts';
import { PROVIDERS } from '../providers/index.ts';
import { ApiKeyStore, ApiKeyVerifier } from '../store/api-keys.ts';
import { SchemaBehindError } from '../store/database.ts';
import { openSqlDatabase, type SqlDatabase } from '../store/sql.ts';
import { sql } from 'kysely';
import { BlobClaims } from '../store/blob-claims.ts';
import { BlobStore } from '../store/blob-store.ts';
import { S3Blobs } from '../store/object-store.ts';
import { SegmentSearchStore } from '../store/segment-search.ts';
import { VideoStore } from '../store/video-store.ts';
import { ImageBlobStore } from '../store/image-blob-store.ts';
import { ImageStore } from '../store/image-store.ts';
import { LocalChangeFeed, PostgresChangeFeed, type ChangeFeed } from '../store/change-feed.ts';
import type { WorkerQueue } from '../jobs/job-queue.ts';
import { openJobQueue } from '../jobs/open-job-queue.ts';
import { JobRunner, type JobRunnerOptions } from '../jobs/job-runner.ts';
import { ServerMetrics } from './metrics.ts';
import { RateLimits } from './rate-limits.ts';
import { ResearchAgent } from '../research/research-agent.ts';
import { createWebSearch, HOW_TO_CONFIGURE_SEARCH } from '../conversations/web-search.ts';
import { mkdir, unlink, writeFile } from 'node:fs/promises';
import { createIndexingAnalyzers, type Captioner } from '../vision/indexing/analyzers.ts';
import type { AnalyzerModel } from '../models/analyzer-catalog.ts';
import { createChatCaptioner } from '../vision/indexing/chat-captioner.ts';
import { createIndexVideoHandler } from '../vision/indexing/index-video.ts';
import { createIndexImageHandler } from '../vision/indexing/index-image.ts';
import { ImageLibrary, INDEX_IMAGE_JOB } from '../vision/image-library.ts';
import { createLexicalRetriever } from '../vision/lexical-retrievers.ts';
import { VideoSearch } from '../vision/video-search.ts';
import { createEmbedSegmentsHandler, createSemanticRetriever, EMBED_SEGMENTS_JOB, SegmentVectors } from '../vision/semantic-search.ts';
import { SegmentEmbeddingStore } from '../store/segment-embeddings.ts';
import { createImageEmbeddingSearch, createImageLibrarySearch } from './image-embedding-setup.ts';
import { createUrlSigner, loadOrCreateSigningSecret, SIGNING_KEY_FILE } from '../vision/signed-urls.ts';
import { shareSecretFile } from '../store/shared-secrets.ts';
import { INCOMING_DIR, INDEX_VIDEO_JOB, VideoLibrary } from '../vision/video-library.ts';
import { createWebhookHandler, loadOrCreateWebhookSecret, WEBHOOK_JOB, WEBHOOK_SECRET_FILE, WebhookNotifier } from '../vision/webhooks.ts';
import type { VisionRouteDependencies } from './vision-routes.ts';
import type { ImageRouteDependencies } from './image-routes.ts';
import type { QaRouteDependencies } from './qa-routes.ts';
import { VideoSummaryStore } from '../store/video-summary-store.ts';
import { createVideoSummarizer, type VideoSummarizer } from '../vision/indexing/video-summarizer.ts';
import { Quicktagger } from '../vision/quicktag.ts';
import { VideoQa } from '../vision/video-qa.ts';
import type { ClipRouteDependencies } from './clip-routes.ts';
import { ClipBlobStore, ClipStore } from '../store/clip-store.ts';
import { CLIP_JOB, ClipService } from '../vision/clips.ts';
import { createClipJobHandler } from '../vision/clip-job.ts';
import { createApp, type ReadinessCheck } from './app.ts';
import { createChatRoutes } from './chat-routes.ts';
import { createConversations } from './conversation-routes.ts';
import { DEFAULT_WEB_DIR } from './web-routes.ts';
import { RequestSignals } from './edge.ts';
import type { Logger } from './logger.ts';

export interface RunningServer {
  /** `http://host:port` */
  url: string;
  port: number;
  /** The key created at first start, when there was none (also written to `<data>/bootstrap-key`). */
  bootstrapKey: string | undefined;
  /** Stops accepting, lets in-flight requests finish for up to `graceMs`, then cancels what is left. */
  close(graceMs?: number): Promise<void>;
}

export { BOOTSTRAP_KEY_FILE } from '../config/settings.ts';

/** The provider that runs GGUF files in-process: its entries get their weights from the model manager. */
const LOCAL_PROVIDER = 'llama';

/** What a test may replace. */
export interface ServerDependencies {
  /** @default every built-in provider */
  providers?: ReadonlyMap<string, ProviderDefinition<never>> | undefined;
  /** Waits between retries of a failed background model download. @default 10 s, 30 s, 90 s */
  pullRetryDelaysMs?: readonly number[] | undefined;
  /** Where analyzer weights (voice activity, scene labels) are downloaded from. @default ANALYZER_CATALOG */
  analyzerCatalog?: readonly AnalyzerModel[] | undefined;
  /** The built web playground served at `/`. @default DEFAULT_WEB_DIR (web/dist in the package) */
  webDir?: string | undefined;
}

type ProviderMap = ReadonlyMap<string, ProviderDefinition<never>>;

/**
 * Providers whose `create` answers with a `PendingModel` for entries whose files are still being pulled: the
 * entry is validated at boot like any other, and its real model is built (and preloaded, if asked) once the
 * files are in place.
 */
function deferPendingModels(providers: ProviderMap, pulls: ReadonlyMap<string, BackgroundPull>, logger: Logger): ProviderMap {
  if (pulls.size === 0) return providers;
  const wrap = (name: string, definition: ProviderDefinition<never>): ProviderDefinition<never> => ({
    name: definition.name,
    settingsSchema: definition.settingsSchema,
    defaultCapabilities: definition.defaultCapabilities,
    create: (settings: never) => {
      const entry = settings as { id: string; model?: string };
      const pull = pulls.get(entry.id);
      if (!pull) return definition.create(settings);
      const model = new PendingModel({
        id: entry.id,
        provider: name,
        upstreamModel: entry.model ?? pull.source.name,
        availability: () => pull.availability(),
        create: () => definition.create(settings),
      });
      pull.onReady(() => {
        model.resolve().then(
          () => logger.info('model is ready', { model: entry.id }),
          (error: unknown) => logger.error('model could not be loaded', { model: entry.id, error: (error as Error).message }),
        );
      });
      return model;
    },
  });
  return new Map([...providers].map(([name, definition]) => [name, wrap(name, definition)]));
}

/** Creates a first key when none exists, prints it once and leaves it in `<data>/bootstrap-key` (0600). */
async function ensureBootstrapKey(
  store: ApiKeyStore,
  verifier: ApiKeyVerifier,
  dataDir: string,
  logger: Logger,
): Promise<string | undefined> {
  if (verifier.keyCount > 0) return undefined;
  const { key, info } = await store.create('bootstrap');
  await verifier.refresh();
  const path = join(dataDir, BOOTSTRAP_KEY_FILE);
  writeFileSync(path, `${key}\n`, { mode: 0o600 });
  chmodSync(path, 0o600); // the mode above only applies when the file is new
  logger.warn('created the first API key; it is printed once on stdout and kept in the bootstrap-key file', { id: info.id, file: path });
  return key;
}

/** Everything media processing needs, built once; a bad `media`/`transcriber` setting fails the boot. */
function createMediaResolver(settings: ServerSettings): {
  resolver: MediaResolver;
  transcriber: Transcriber | undefined;
  synthesizer: Synthesizer | undefined;
  close(): Promise<void>;
} {
  const { media, transcriber: transcriberEntry } = settings.config;
  const transcriberSettings = transcriberSettingsSchema.safeParse(transcriberEntry);
  if (!transcriberSettings.success)
    throw new ConfigError(`invalid config: ${describeZodError(transcriberSettings.error, ['transcriber'])}`);
  let fetcher: MediaFetcher;
  let ffmpeg: FfmpegContext;
  try {
    fetcher = createMediaFetcher({ ...media, allowHosts: media.allowHosts });
    ffmpeg = createFfmpegContext({ ...settings.binaries, timeoutMs: media.processTimeoutMs, maxOutputBytes: media.maxBytes });
  } catch (error) {
    throw new ConfigError(`invalid media settings: ${(error as Error).message}`);
  }
  const transcriber = createTranscriber(transcriberSettings.data);
  const synthesizerSettings = synthesizerSettingsSchema.safeParse(settings.config.textToSpeech);
  if (!synthesizerSettings.success)
    throw new ConfigError(`invalid config: ${describeZodError(synthesizerSettings.error, ['textToSpeech'])}`);
  let synthesizer: Synthesizer | undefined;
  try {
    synthesizer = createSynthesizer(synthesizerSettings.data, settings.binaries.searchPath);
  } catch (error) {
    throw new ConfigError((error as Error).message);
  }
  return {
    resolver: new MediaResolver({ settings: media, fetcher, ffmpeg, transcriber }),
    transcriber,
    synthesizer,
    close: async () => {
      await Promise.all([fetcher.close(), transcriber?.close?.(), synthesizer?.close?.()]);
    },
  };
}

/** The research models (`research` in the config), checked at boot: each names a chat model and needs a search backend. */
function createResearch(settings: ServerSettings, models: ModelRegistry, chat: ChatService) {
  const { research, search, media } = settings.config;
  if (research.length === 0) return { agent: undefined, close: async () => {} };
  for (const [index, entry] of research.entries()) {
    if (models.names.includes(entry.id)) {
      throw new ConfigError(`invalid config: research.${index}.id: "${entry.id}" is already a model id in "models"`);
    }
    try {
      models.resolve(entry.model);
    } catch (error) {
      throw new ConfigError(`invalid config: research.${index}.model: ${(error as Error).message}`);
    }
  }
  const webSearch = createWebSearch({ settings: search, allowHosts: media.allowHosts, connectTimeoutMs: media.connectTimeoutMs });
  const agent = new ResearchAgent({ chat, search: webSearch, howToConfigureSearch: HOW_TO_CONFIGURE_SEARCH }, research);
  return { agent, close: async () => webSearch?.close() };
}

/** Longest single ffmpeg run while indexing: a scan decodes the whole video (video-scan.ts adds time per second of video). */
const INDEXING_PROCESS_TIMEOUT_MS = 600_000;
/** Largest decoded soundtrack kept in memory while indexing (16 kHz mono 16-bit: about 9 hours). */
const INDEXING_MAX_AUDIO_BYTES = 1024 * 1024 * 1024;
/** A `video_url` upload may take this long to download. */
const UPLOAD_FETCH_TIMEOUT_MS = 3_600_000;
/** How often videos are checked against their indexing jobs (a job can end without its handler, see VideoLibrary.recover). */
const SETTLE_INTERVAL_MS = 60_000;
/** How often a process that takes uploads looks for blobs another process left when it died (see BlobClaims). */
const ABANDONED_BLOBS_INTERVAL_MS = 60_000;
/** Longest single ffmpeg run while rendering a clip (a 10-minute compilation re-encoded at 1080p on a slow CPU). */
const CLIP_PROCESS_TIMEOUT_MS = 3_600_000;
/** A webhook receiver gets this long to answer. */
const WEBHOOK_TIMEOUT_MS = 10_000;

/**
 * Semantic video search, when `indexing.embeddingModel` names a model that embeds: the embedding job (queued at
 * start for segments indexed before, and after each video is indexed) and the retriever. Undefined without one.
 */
function createSemanticSearch(options: {
  database: SqlDatabase;
  dataDir: string;
  models: ModelRegistry;
  embeddingModel: string | undefined;
  jobs: WorkerQueue;
  segments: SegmentSearchStore;
  logger: Logger;
  onSettled?: JobRunnerOptions['onSettled'];
}) {
  const { database, dataDir, models, embeddingModel, jobs, segments, logger, onSettled } = options;
  if (embeddingModel === undefined) return undefined;
  let model: LanguageModel;
  try {
    model = models.resolve(embeddingModel).model;
  } catch (error) {
    throw new ConfigError(`invalid config: indexing.embeddingModel: ${(error as Error).message}`);
  }
  const embed = model.embed;
  if (embed === undefined) {
    throw new ConfigError(
      `invalid config: indexing.embeddingModel: model "${embeddingModel}" does not embed text (use an openai-compatible ` +
        'model served by an embeddings endpoint, or a llama entry with "embedding": true)',
    );
  }
  // Vectors of another model (the setting or the model behind it changed) cannot be compared with this one's.
  const embeddings = new SegmentEmbeddingStore(database, `${model.provider}:${model.upstreamModel}`);
  const vectors = new SegmentVectors(dataDir, embeddings);
  const runner = new JobRunner({ queue: jobs, log: logger, onSettled, concurrency: 1 }).handle(
    EMBED_SEGMENTS_JOB,
    createEmbedSegmentsHandler({ embeddings, vectors, embed }),
  );
  // One live job at a time: it runs until no indexed segment lacks an embedding.
  const queue = (): void =>
    void jobs
      .enqueue(EMBED_SEGMENTS_JOB, {}, { key: EMBED_SEGMENTS_JOB, maxAttempts: 5 })
      .catch((error: unknown) => logger.warn('could not queue a job', { kind: EMBED_SEGMENTS_JOB, error: String(error) }));
  return {
    embed,
    modelId: `${model.provider}:${model.upstreamModel}`,
    retriever: createSemanticRetriever({ embeddings, vectors, embed, inScope: (scope, ids) => segments.inScope(scope, ids) }),
    queue,
    async start(): Promise<void> {
      const dropped = await embeddings.dropOtherModels();
      if (dropped > 0) logger.warn('the embedding model changed: segments are embedded again', { dropped });
      runner.start();
      queue();
    },
    async stop(): Promise<void> {
      await runner.stop();
      await vectors.close();
    },
  };
}

interface VisionSetup {
  settings: ServerSettings;
  database: SqlDatabase;
  chat: ChatService;
  models: ModelRegistry;
  transcriber: Transcriber | undefined;
  modelsDir: string;
  logger: Logger;
  dependencies: ServerDependencies;
  /** Absent when `metrics.enabled` is false. */
  metrics: ServerMetrics | undefined;
  changes: ChangeFeed;
  /** The S3 store holding blobs, with `blobs.kind` s3; absent: folders under the data directory. */
  remote: S3Blobs | undefined;
}

/** The video library: stores, signed URLs, analyzers, and the workers that index videos and deliver webhooks. */
function createVision({
  settings,
  database,
  chat,
  models,
  transcriber,
  modelsDir,
  logger,
  dependencies,
  metrics,
  changes,
  remote,
}: VisionSetup) {
  const { config, dataDir } = settings;
  const { indexing, media, vision } = config;
  let captioner: Captioner | undefined;
  if (indexing.captionModel !== undefined) {
    try {
      models.resolve(indexing.captionModel);
    } catch (error) {
      throw new ConfigError(`invalid config: indexing.captionModel: ${(error as Error).message}`);
    }
    captioner = createChatCaptioner(chat, indexing.captionModel);
  }
  const binaries = { ...settings.binaries };
  const ffmpeg = createFfmpegContext({ ...binaries, timeoutMs: INDEXING_PROCESS_TIMEOUT_MS, maxOutputBytes: INDEXING_MAX_AUDIO_BYTES });
  const uploadFetcher = createMediaFetcher({
    maxBytes: config.limits.maxUploadBytes,
    connectTimeoutMs: media.connectTimeoutMs,
    timeoutMs: UPLOAD_FETCH_TIMEOUT_MS,
    // A large video may take long in all, but a host that stops sending is given up on like any media host.
    stallTimeoutMs: media.timeoutMs,
    allowHosts: media.allowHosts,
  });
  const webhookFetcher = createMediaFetcher({
    maxBytes: media.maxBytes,
    connectTimeoutMs: media.connectTimeoutMs,
    timeoutMs: WEBHOOK_TIMEOUT_MS,
    allowHosts: media.allowHosts,
    maxRedirects: 0,
  });
  const store = new VideoStore(database);
  const summaries = new VideoSummaryStore(database);
  // QA's whole-video summaries are written by the caption model, once per video, as indexing ends.
  const summarize: VideoSummarizer | undefined =
    indexing.captionModel === undefined ? undefined : createVideoSummarizer(chat, indexing.captionModel, store, summaries);
  const blobs = new BlobStore(join(dataDir, 'videos'), remote?.within('videos'), remote ? new BlobClaims(database, 'video') : undefined);
  const jobs = openJobQueue(settings.config.queue, database);
  metrics?.watchJobs(jobs);
  const library = new VideoLibrary({ store, blobs, jobs, ffmpeg, uploadFetcher, maxAttempts: indexing.maxAttempts, changes });
  const webhooks = new WebhookNotifier({
    jobs,
    defaultSecret: loadOrCreateWebhookSecret(dataDir, vision.webhookSecret),
    maxAttempts: vision.webhookMaxAttempts,
  });
  const analyzerSet = createIndexingAnalyzers(
    indexing,
    modelsDir,
    { transcriber, captioner, catalog: dependencies.analyzerCatalog, pullRetryDelaysMs: dependencies.pullRetryDelaysMs },
    logger,
  );
  const { analyzers } = analyzerSet;
  // Images are indexed with the analyzers keyframes get, by the same workers.
  const imageBlobs = new ImageBlobStore(
    join(dataDir, 'images'),
    remote?.within('images'),
    remote ? new BlobClaims(database, 'image') : undefined,
  );
  const imageStore = new ImageStore(database);
  const images = new ImageLibrary({
    store: imageStore,
    blobs: imageBlobs,
    jobs,
    maxAttempts: indexing.maxAttempts,
    maxSide: media.maxImageSide,
    maxPixels: media.maxImagePixels,
  });
  const indexer = new JobRunner({ queue: jobs, log: logger, onSettled: metrics?.jobSettled, concurrency: indexing.concurrency })
    .handle(
      INDEX_VIDEO_JOB,
      createIndexVideoHandler({
        store,
        blobs,
        library,
        webhooks,
        ffmpeg,
        analyzers,
        settings: indexing,
        log: logger,
        summarize,
        onIndexed: (videoId, timing) => {
          semantic?.queue();
          imageEmbeddings?.queue();
          metrics?.videoIndexed(videoId, timing);
        },
      }),
    )
    .handle(
      INDEX_IMAGE_JOB,
      createIndexImageHandler({ store: imageStore, blobs: imageBlobs, analyzers, log: logger, onIndexed: () => imageSearch.queue() }),
    );
  const deliverer = new JobRunner({ queue: jobs, log: logger, onSettled: metrics?.jobSettled, concurrency: 4 }).handle(
    WEBHOOK_JOB,
    createWebhookHandler(webhookFetcher),
  );
  const segments = new SegmentSearchStore(database);
  const semantic = createSemanticSearch({
    database,
    dataDir,
    models,
    embeddingModel: indexing.embeddingModel,
    jobs,
    segments,
    logger,
    onSettled: metrics?.jobSettled,
  });
  const imageEmbeddings = createImageEmbeddingSearch({
    database,
    dataDir,
    modelPath: indexing.imageEmbeddingModel,
    media,
    jobs,
    segments,
    blobs,
    logger,
    onSettled: metrics?.jobSettled,
  });
  const imageSearch = createImageLibrarySearch({
    database,
    dataDir,
    jobs,
    library: images,
    store: imageStore,
    blobs: imageBlobs,
    clip: imageEmbeddings?.model,
    text: semantic,
    logger,
    onSettled: metrics?.jobSettled,
  });
  const search = new VideoSearch({
    segments,
    videos: store,
    retrievers: [createLexicalRetriever(segments), ...(semantic ? [semantic.retriever] : []), ...(imageEmbeddings?.retrievers ?? [])],
  });
  const signer = createUrlSigner({ secret: loadOrCreateSigningSecret(dataDir) });
  const routes: VisionRouteDependencies = {
    library,
    search,
    blobs,
    signer,
    urlTtlSeconds: vision.urlTtlSeconds,
    publicBaseUrl: vision.publicBaseUrl,
    maxUploadBytes: config.limits.maxUploadBytes,
    incomingDir: join(blobs.root, INCOMING_DIR),
    loadQueryImage: imageEmbeddings?.loadQueryImage,
  };
  const imageRoutes: ImageRouteDependencies = {
    library: images,
    signer,
    urlTtlSeconds: vision.urlTtlSeconds,
    publicBaseUrl: vision.publicBaseUrl,
    maxImageBytes: media.maxBytes,
    incomingDir: imageBlobs.incomingDir,
    search: imageSearch.search,
    loadQueryImage: imageEmbeddings?.loadQueryImage,
  };
  const qaRoutes: QaRouteDependencies = {
    qa: new VideoQa({
      chat,
      library,
      search,
      store,
      summaries,
      blobs,
      settings: {
        maxWaitSeconds: config.qa.maxWaitSeconds,
        maxSegments: config.qa.maxSegments,
        maxMediaPerTurn: config.limits.maxMediaPerTurn,
      },
    }),
    quicktagger: new Quicktagger({
      chat,
      ffmpeg: createFfmpegContext({ ...binaries, timeoutMs: media.processTimeoutMs, maxOutputBytes: media.maxBytes }),
      transcriber,
      frames: config.qa.quicktagFrames,
    }),
    maxQuicktagBytes: media.maxBytes,
    incomingDir: join(blobs.root, INCOMING_DIR),
  };
  if (vision.clipModel !== undefined) {
    try {
      models.resolve(vision.clipModel);
    } catch (error) {
      throw new ConfigError(`invalid config: vision.clipModel: ${(error as Error).message}`);
    }
  }
  const clipStore = new ClipStore(database);
  const clipBlobs = new ClipBlobStore(
    join(dataDir, 'clips'),
    remote?.within('clips'),
    remote ? new BlobClaims(database, 'clip') : undefined,
  );
  const clips = new ClipService({
    store: clipStore,
    blobs: clipBlobs,
    jobs,
    library,
    maxAttempts: indexing.maxAttempts,
    maxConcurrentFetches: config.limits.maxConcurrentUploads,
    changes,
  });
  const clipRunner = new JobRunner({ queue: jobs, log: logger, onSettled: metrics?.jobSettled, concurrency: 1 }).handle(
    CLIP_JOB,
    createClipJobHandler({
      clips,
      store: clipStore,
      blobs: clipBlobs,
      videos: store,
      videoBlobs: blobs,
      search,
      ffmpeg: createFfmpegContext({ ...binaries, timeoutMs: CLIP_PROCESS_TIMEOUT_MS }),
      chat,
      model: vision.clipModel,
      log: logger,
    }),
  );
  const clipRoutes: ClipRouteDependencies = { clips, signer, urlTtlSeconds: vision.urlTtlSeconds, publicBaseUrl: vision.publicBaseUrl };
  let settler: NodeJS.Timeout | undefined;
  return {
    routes,
    imageRoutes,
    qaRoutes,
    clipRoutes,
    jobs,
    blobRoots: [blobs.root, imageBlobs.root, clipBlobs.root],
    /**
     * Starts the workers (which take back jobs a dead process held), then settles what a crash left behind.
     * Runs before the server listens: the sweep removes half-received uploads.
     */
    /**
     * `api`: no job runs here (a worker process takes them), but this process owns uploads, so it sweeps what a
     * crash left half-received. `worker`: the runners, and no sweep of uploads it does not receive. `all`: both.
     */
    async start(role: ServerRole = 'all'): Promise<void> {
      const runsJobs = role !== 'api';
      const receivesUploads = role !== 'worker';
      if (runsJobs) {
        // With a blob store, what a killed run of this worker was working on is in the store (or redone).
        const copies = (await blobs.clearWorkingCopies()) + (await clipBlobs.clearWorkingCopies());
        if (copies > 0) logger.info('removed working copies an earlier run left', { copies });
        indexer.start();
        deliverer.start();
        await semantic?.start();
        await imageEmbeddings?.start();
        await imageSearch.start();
        analyzerSet.startPulls();
        clipRunner.start();
      }
      if (receivesUploads) {
        const { removedFolders, settledVideos } = await library.recover();
        if (removedFolders + settledVideos > 0) {
          logger.warn('recovered the video library after an unclean stop', { removedFolders, settledVideos });
        }
        const { removedBlobs, requeued } = await images.recover();
        if (removedBlobs + requeued > 0) logger.warn('recovered the image library after an unclean stop', { removedBlobs, requeued });
        const { removedFolders: removedClipFolders, settledClips } = await clips.recover();
        if (removedClipFolders + settledClips > 0)
          logger.warn('recovered clips after an unclean stop', { removedClipFolders, settledClips });
      }
      // One pass at a time: a slow database must not stack passes up.
      let settling = false;
      settler = setInterval(() => {
        if (settling) return;
        settling = true;
        void (async () => {
          await clips.settle();
          const settled = await library.settleVideos();
          if (settled > 0) logger.warn('settled videos whose indexing job ended without them', { videos: settled });
        })()
          .catch((error: unknown) => logger.error('settling videos and clips failed', { error: (error as Error).message }))
          .finally(() => {
            settling = false;
          });
      }, SETTLE_INTERVAL_MS);
      settler.unref();
    },
    /** With a blob store: clears what a process that stopped was writing or removing (see BlobClaims). */
    async recoverAbandoned(): Promise<{ videos: number; images: number; clips: number }> {
      return { videos: await library.recoverAbandoned(), images: await images.recoverAbandoned(), clips: await clips.recoverAbandoned() };
    },
    /** Running indexing jobs stop and go back to the queue; the next start resumes them. */
    async close(): Promise<void> {
      clearInterval(settler);
      await Promise.all([
        indexer.stop(),
        deliverer.stop(),
        semantic?.stop(),
        clipRunner.stop(),
        imageEmbeddings?.stop(),
        imageSearch.stop(),
      ]);
      await Promise.all([analyzerSet.close(), uploadFetcher.close(), webhookFetcher.close(), imageEmbeddings?.close()]);
      await jobs.close(); // the Redis connections, with the redis queue
    },
  };
}

export async function startServer(settings: ServerSettings, logger: Logger, dependencies: ServerDependencies = {}): Promise<RunningServer> {
  // Models and media first: a config error must stop the start before anything is written to the data dir.
  const modelsDir = join(settings.dataDir, 'models');
  const plan = planLocalModels(settings.config, { provider: LOCAL_PROVIDER, modelsDir, settings: settings.localModels });
  const pulls = new Map<string, BackgroundPull>();
  for (const { source, ids } of plan.pending) {
    const pull = new BackgroundPull({
      source,
      modelsDir,
      hub: settings.localModels?.hub ?? { endpoint: DEFAULT_HUB_ENDPOINT, token: undefined },
      log: logger,
      retryDelaysMs: dependencies.pullRetryDelaysMs,
    });
    for (const id of ids) pulls.set(id, pull);
  }
  const models = new ModelRegistry(plan.config, deferPendingModels(dependencies.providers ?? PROVIDERS, pulls, logger));
  const media = createMediaResolver(settings);
  let database: SqlDatabase;
  try {
    database = await openSqlDatabase(settings.config.storage, { dataDir: settings.dataDir, migrate: settings.migrate ?? true });
  } catch (error) {
    if (error instanceof SchemaBehindError) throw new ConfigError(error.message);
    throw error;
  }
  // Change notices between processes sharing the database (a worker's progress reaches every API process's
  // event streams at once); one process alone on SQLite tells only itself.
  const remote = settings.config.blobs.kind === 's3' ? new S3Blobs(settings.config.blobs) : undefined;
  try {
    await remote?.check();
  } catch (error) {
    remote!.close();
    await database.close();
    throw new ConfigError(`blobs: the bucket "${remote!.bucket}" cannot be reached: ${(error as Error).message}`);
  }
  const changes: ChangeFeed =
    database.pool !== undefined && settings.config.storage.url !== undefined
      ? await PostgresChangeFeed.open(database.pool, settings.config.storage.url)
      : new LocalChangeFeed();
  await shareSecretFile(database, settings.dataDir, SIGNING_KEY_FILE, () => loadOrCreateSigningSecret(settings.dataDir));
  const configuredWebhookSecret = settings.config.vision.webhookSecret;
  if (configuredWebhookSecret === undefined) {
    await shareSecretFile(database, settings.dataDir, WEBHOOK_SECRET_FILE, () => loadOrCreateWebhookSecret(settings.dataDir, undefined));
  }
  const store = new ApiKeyStore(database);
  const verifier = settings.auth ? await ApiKeyVerifier.create(store, settings.envApiKeys) : undefined;
  const bootstrapKey = verifier ? await ensureBootstrapKey(store, verifier, settings.dataDir, logger) : undefined;
  if (!verifier) logger.warn('authentication is disabled (--no-auth); only loopback clients can reach this server');

  if (models.names.length === 0) {
    logger.warn(
      'no model is configured: chat requests will fail until you add one. Create ocular.config.json with a "models" entry ' +
        '(e.g. {"models":[{"id":"local","provider":"openai-compatible","baseUrl":"http://127.0.0.1:11434/v1","model":"qwen2.5vl"}]}) ' +
        'or pass --config PATH, or serve a local GGUF with --model-path PATH; see README "Models".',
    );
  }
  const metrics = settings.config.metrics.enabled ? new ServerMetrics() : undefined;
  if (metrics && remote) remote.observe(metrics.blobStore);
  const chat = new ChatService(models, settings.config.limits, media.resolver, metrics?.chat);
  const vision = createVision({
    settings,
    database,
    chat,
    models,
    transcriber: media.transcriber,
    modelsDir,
    logger,
    dependencies,
    metrics,
    changes,
    remote,
  });
  const shutdown = new AbortController();
  const signals = new RequestSignals(shutdown.signal);
  const limits = settings.config.limits;
  const speech = {
    speech: new SpeechService({ media: media.resolver, chat, transcriber: media.transcriber, synthesizer: media.synthesizer }),
    maxAudioBytes: settings.config.media.maxBytes,
  };
  const conversations = createConversations({ settings, database, chat, models, remote });
  await conversations.recover();
  const web = { dir: dependencies.webDir ?? DEFAULT_WEB_DIR };
  const rateLimits = RateLimits.create(settings.config.rateLimits);
  const research = createResearch(settings, models, chat);
  const readiness: ReadinessCheck[] = [
    { name: 'database', check: async () => void (await sql`SELECT 1`.execute(database.db)) },
    { name: 'queue', check: () => vision.jobs.ping() },
    {
      name: 'blobs',
      check: async () => {
        // With a store: it answers for this bucket; the local folders still take uploads and working copies.
        await remote?.check();
        for (const root of vision.blobRoots) {
          await mkdir(root, { recursive: true });
          const probe = join(root, `.readyz-${process.pid}`);
          await writeFile(probe, '');
          await unlink(probe);
        }
      },
    },
    ...(rateLimits?.shared ? [{ name: 'redis', check: () => rateLimits.ping() }] : []),
  ];
  const app = createApp({
    chat,
    verifier,
    limits,
    logger,
    signals,
    vision: vision.routes,
    images: vision.imageRoutes,
    speech,
    conversations: conversations.routes,
    qa: vision.qaRoutes,
    clips: vision.clipRoutes,
    web,
    metrics: metrics && { registry: metrics, public: settings.config.metrics.public },
    rateLimits,
    readiness,
    research: research.agent,
    operationsOnly: settings.role === 'worker',
  });
  const chatRoutes =
    settings.role === 'worker'
      ? () => false
      : createChatRoutes({ chat, verifier, limits, logger, signals, metrics, rateLimits, research: research.agent });
  const appListener = getRequestListener(app.fetch);

  await vision.start(settings.role ?? 'all');
  // In a shared blob store, what another process was writing or removing when it died is cleared by whichever
  // process takes uploads finds its claim first, within minutes; no process lists the store.
  const abandonedBlobs = remote && settings.role !== 'worker' ? recoverAbandonedBlobs(vision, conversations, logger) : undefined;
  const server = createServer((incoming, outgoing) => {
    if (!chatRoutes(incoming, outgoing)) void appListener(incoming, outgoing);
  });
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(settings.port, settings.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (error) {
    // Not listening (the port is taken): stop what already runs, so the process can exit.
    clearInterval(abandonedBlobs);
    await vision.close();
    await conversations.close();
    await Promise.all([models.close(), media.close(), rateLimits?.close(), research.close()]);
    verifier?.close();
    await changes.close();
    await database.close();
    throw error;
  }
  // Node's whole-request timeout is off: a 2 GiB upload over a slow link takes longer than any fixed bound. Slow
  // senders are bounded per route instead: JSON bodies within limits.requestBodyTimeoutMs (read-body.ts), uploads must
  // not stall for a minute (multipart-upload.ts), and headers within 30 s (below).
  server.requestTimeout = 0;
  server.headersTimeout = 30_000;
  server.keepAliveTimeout = 5_000;
  const { port } = server.address() as AddressInfo;
  const host = settings.host.includes(':') ? `[${settings.host}]` : settings.host;
  const url = `http://${host}:${port}`;
  logger.info('ocular is listening', { url, dataDir: settings.dataDir, config: settings.configPath ?? null, models: models.names });
  for (const { source, ids } of plan.pending) {
    logger.warn('model files are missing: downloading them in the background; until then the model answers 503', {
      models: ids,
      source: source.name,
      directory: join(modelsDir, ...source.folder),
      hint: 'to use a local GGUF instead, restart with --model-path PATH [--mmproj-path PATH]; `ocular models list` shows what is present',
    });
  }
  const uniquePulls = [...new Set(pulls.values())];
  for (const pull of uniquePulls) pull.start();

  let closing: Promise<void> | undefined;
  const close = (graceMs = 30_000): Promise<void> => {
    closing ??= (async () => {
      logger.info('shutting down: finishing in-flight requests', { graceMs });
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      // Connections become idle as their last response ends; close them then rather than after keep-alive expires.
      server.closeIdleConnections();
      const sweeper = setInterval(() => server.closeIdleConnections(), 50);
      const timer = setTimeout(() => {
        shutdown.abort(new OcularError('server_error', 'the server is shutting down'));
        // Give cancelled streams a moment to write their closing event, then drop whatever remains.
        setTimeout(() => server.closeAllConnections(), 1_000).unref();
      }, graceMs);
      timer.unref();
      await closed;
      clearTimeout(timer);
      clearInterval(sweeper);
      clearInterval(abandonedBlobs);
      await vision.close();
      await conversations.close();
      await Promise.all(uniquePulls.map((pull) => pull.close()));
      await Promise.all([models.close(), media.close(), rateLimits?.close(), research.close()]);
      verifier?.close();
      await changes.close();
      remote?.close();
      await database.close();
      logger.info('stopped');
    })();
    return closing;
  };

  return { url, port, bootstrapKey, close };
}

/** Every `ABANDONED_BLOBS_INTERVAL_MS`, one pass at a time: clears blobs whose claims their processes abandoned. */
function recoverAbandonedBlobs(
  vision: { recoverAbandoned(): Promise<{ videos: number; images: number; clips: number }> },
  conversations: { recoverAbandoned(): Promise<number> },
  logger: Logger,
): NodeJS.Timeout {
  let running = false;
  const timer = setInterval(() => {
    if (running) return;
    running = true;
    void (async () => {
      const { videos, images, clips } = await vision.recoverAbandoned();
      const assets = await conversations.recoverAbandoned();
      if (videos + images + clips + assets > 0) {
        logger.warn('removed blobs a stopped process left in the store', { videos, images, clips, assets });
      }
    })()
      .catch((error: unknown) => logger.error('clearing abandoned blobs failed', { error: (error as Error).message }))
      .finally(() => {
        running = false;
      });
  }, ABANDONED_BLOBS_INTERVAL_MS);
  timer.unref();
  return timer;
}
