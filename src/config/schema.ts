import { z } from 'zod';

/** Entries of `models`: common fields here; each provider validates the rest with its own schema at boot. */
export const modelEntrySchema = z.looseObject({
  id: z
    .string()
    .min(1)
    .regex(/^[\w.:/@-]+$/, 'use letters, digits and . _ - : / @ only'),
  provider: z.string().min(1),
});

export const limitsSchema = z.strictObject({
  /** Media parts allowed in one user turn. @default 6 */
  maxMediaPerTurn: z.int().min(0).max(1000).default(6),
  /** Largest request body accepted, in bytes. @default 52428800 (50 MiB) */
  maxRequestBytes: z
    .int()
    .min(1024)
    .max(2 ** 31)
    .default(52_428_800),
  /** Milliseconds a JSON request body may take to arrive in full, once its headers are in; slower ones get 400. @default 120000 */
  requestBodyTimeoutMs: z.int().min(100).max(3_600_000).default(120_000),
  /** Largest `max_tokens` a client may ask for. @default 32768 */
  maxOutputTokens: z.int().min(1).max(10_000_000).default(32_768),
  /** Messages allowed in one request. @default 1000 */
  maxMessages: z.int().min(1).max(100_000).default(1000),
  /** Largest video upload (`POST /v1/videos/upload`, file or URL), in bytes; enforced while it streams to disk. @default 2147483648 (2 GiB) */
  maxUploadBytes: z
    .int()
    .min(1024)
    .max(2 ** 40)
    .default(2 ** 31),
  /** Uploads (`POST /v1/videos/upload`) received or fetched at once; more get 429 with Retry-After. @default 8 */
  maxConcurrentUploads: z.int().min(1).max(1000).default(8),
});

const hostPattern = /^(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(?::\d{1,5})?$/;

/** How media parts (image, video, audio, PDF URLs) are fetched and turned into model input. */
export const mediaSchema = z.strictObject({
  /** Hosts (`host` or `host:port`) exempt from the private-address block, for on-prem storage. @default [] */
  allowHosts: z.array(z.string().regex(hostPattern, 'use host or host:port')).default([]),
  /** Largest media item fetched or decoded, in bytes. @default 104857600 (100 MB) */
  maxBytes: z
    .int()
    .min(1024)
    .max(2 ** 34)
    .default(104_857_600),
  /** Milliseconds to connect to a media host. @default 10000 */
  connectTimeoutMs: z.int().min(100).max(600_000).default(10_000),
  /** Milliseconds for a whole media download. @default 60000 */
  timeoutMs: z.int().min(100).max(3_600_000).default(60_000),
  /** Longest image side sent to a model; larger images are downscaled. @default 1568 */
  maxImageSide: z.int().min(32).max(16_384).default(1568),
  /** Largest decoded image, in pixels (decompression-bomb guard). @default 100000000 */
  maxImagePixels: z
    .int()
    .min(1024)
    .max(2 ** 32)
    .default(100_000_000),
  /** Frames sampled from a video for models without video input. @default 16 */
  videoFrames: z.int().min(1).max(256).default(16),
  /** Frame rate used instead when a clip is short enough. @default 1 */
  videoFps: z.number().positive().max(30).default(1),
  /** PDF pages whose text is extracted. @default 50 */
  pdfMaxPages: z.int().min(1).max(10_000).default(50),
  /** PDF pages also rendered as images for image-capable models. @default 4 */
  pdfRenderPages: z.int().min(0).max(100).default(4),
  /** Media items processed at once per request. @default 4 */
  concurrency: z.int().min(1).max(64).default(4),
  /** Milliseconds one ffmpeg/ffprobe run may take. @default 120000 */
  processTimeoutMs: z.int().min(1000).max(3_600_000).default(120_000),
});

/** Speech-to-text for audio (and video soundtracks) sent to models without audio input; the analyzer validates the rest. */
export const transcriberEntrySchema = z.looseObject({ provider: z.string().min(1) });

const analyzerToggleSchema = z.strictObject({ enabled: z.boolean().default(true) });

/** An analyzer whose weights the model manager pulls (`ocular models pull NAME`); `modelPath` points elsewhere. */
const pulledAnalyzerSchema = z.strictObject({
  enabled: z.boolean().default(true),
  /** The ONNX file to use instead of the pulled one. */
  modelPath: z.string().min(1).optional(),
});

/** How uploaded videos are indexed: segmenting, keyframes and the analyzers run on them. */
export const indexingSchema = z
  .strictObject({
    /** Videos indexed at once. @default 1 */
    concurrency: z.int().min(1).max(64).default(1),
    /** Attempts before a video's indexing ends as failed. @default 3 */
    maxAttempts: z.int().min(1).max(100).default(3),
    /** Shortest segment, in seconds (a whole video shorter than this is one segment). @default 5 */
    minSegmentSeconds: z.number().min(1).max(600).default(5),
    /** Longest segment, in seconds. @default 15 */
    maxSegmentSeconds: z.number().min(2).max(3600).default(15),
    /** Seconds between keyframes. @default 2 */
    keyframeIntervalSeconds: z.number().min(0.1).max(60).default(2),
    /** Longest side of a stored keyframe, in pixels. @default 1280 */
    maxKeyframeSide: z.int().min(64).max(4096).default(1280),
    /**
     * Seconds between keyframes read by OCR, besides each segment's first (text usually stays on screen longer
     * than a few seconds). Equal to `keyframeIntervalSeconds` reads every keyframe. @default 4
     */
    ocrIntervalSeconds: z.number().min(0.1).max(600).default(4),
    /** Keyframes per segment given to the object detector and the labeler (spread over the segment). @default 2 */
    objectFramesPerSegment: z.int().min(1).max(100).default(2),
    /** On-screen text (PaddleOCR, shipped in npm). */
    ocr: analyzerToggleSchema.prefault({}),
    /** Objects and people (CenterNet COCO through Human, shipped in npm). */
    objects: analyzerToggleSchema.prefault({}),
    /** Speech ranges (Silero VAD): needs `ocular models pull silero-vad` or `modelPath`. */
    vad: pulledAnalyzerSchema.extend({ threshold: z.number().min(0.05).max(0.95).default(0.5) }).prefault({}),
    /** Scene and subject labels for keyframes (MobileNetV2 ImageNet): needs `ocular models pull mobilenetv2` or `modelPath`. */
    labels: pulledAnalyzerSchema.extend({ labelsPath: z.string().min(1).optional() }).prefault({}),
    /** Transcripts of the soundtrack through the configured `transcriber`. */
    speech: analyzerToggleSchema.prefault({}),
    /**
     * Captions: a model id (or alias) from `models` with image input, asked for a short factual caption of each
     * segment's keyframes. Without one, the caption is a sentence built from the other analyzers' findings.
     */
    captionModel: z.string().min(1).optional(),
    /**
     * Semantic video search: a model id (or alias) from `models` that embeds text (an `openai-compatible` server's
     * `/v1/embeddings`, or a `llama` entry with `embedding: true`). Each indexed segment's text is embedded (videos
     * indexed earlier are embedded by a background job) and searches fuse its nearest segments with the word
     * matches. @default none: search is lexical only
     */
    embeddingModel: z.string().min(1).optional(),
    /**
     * Search by image, and text-to-picture matching: a folder holding a CLIP-style model in the Hugging Face ONNX
     * export layout (`onnx/vision_model.onnx`, `onnx/text_model.onnx`, `tokenizer.json`, `preprocessor_config.json`;
     * e.g. a download of Xenova/clip-vit-base-patch32), run offline on onnxruntime. Keyframes and library images
     * are embedded (earlier ones by a background job). @default none: no search by image
     */
    imageEmbeddingModel: z.string().min(1).optional(),
  })
  .refine((settings) => settings.maxSegmentSeconds >= 2 * settings.minSegmentSeconds, {
    message: 'maxSegmentSeconds must be at least twice minSegmentSeconds, so that long scenes split into segments within both bounds',
    path: ['maxSegmentSeconds'],
  });

/** The video library's settings. */
export const visionSchema = z.strictObject({
  /**
   * The origin clients reach this server at, for signed video and thumbnail URLs (`https://ocular.example.com`
   * behind a reverse proxy). @default the origin of each request (its Host header)
   */
  publicBaseUrl: z
    .url({ protocol: /^https?$/ })
    .refine(
      (value) => new URL(value).pathname === '/' && !new URL(value).search,
      'use an origin such as https://ocular.example.com (no path)',
    )
    .transform((value) => new URL(value).origin)
    .optional(),
  /** Seconds a signed video or thumbnail URL stays valid. @default 3600 */
  urlTtlSeconds: z
    .int()
    .min(10)
    .max(7 * 86_400)
    .default(3600),
  /** Webhook signing secret; per-group and per-upload `webhook_secret` take precedence. @default a random key kept in `<data>/webhook-secret` */
  webhookSecret: z.string().min(16).optional(),
  /** Webhook deliveries attempted before giving up. @default 6 */
  webhookMaxAttempts: z.int().min(1).max(50).default(6),
  /** The model that picks and titles clip moments among the search's candidates (`POST /v1/clips`). @default none: the search ranking decides */
  clipModel: z.string().min(1).optional(),
});

/** Conversations with image assets (`/api/assets`, `/api/conversations`, `/api/features`). */
export const conversationsSchema = z.strictObject({
  /** Tokens of context a model takes, for models not in `modelContextTokens`; history is trimmed to fit. @default 32768 */
  contextTokens: z.int().min(512).max(10_000_000).default(32_768),
  /** Context tokens per model id or alias, overriding `contextTokens`. @default {} */
  modelContextTokens: z.record(z.string().min(1), z.int().min(512).max(10_000_000)).default({}),
  /** Tokens an image (or other media item) is counted as when fitting history into the context. @default 1024 */
  mediaTokens: z.int().min(1).max(1_000_000).default(1024),
  /** Tokens each answer may use (kept free in the context). @default 1024 */
  maxTokens: z.int().min(1).max(1_000_000).default(1024),
  /** Longest prompt accepted, in characters. @default 32000 */
  maxPromptChars: z.int().min(1).max(1_000_000).default(32_000),
  /** Turns a conversation may hold; a turn beyond is refused (start a new conversation). @default 1000 */
  maxTurns: z.int().min(1).max(1_000_000).default(1000),
  /** Longest audio or video asset accepted, in seconds ("short videos"). @default 300 */
  maxAssetSeconds: z.number().min(1).max(86_400).default(300),
});

/**
 * The web search backend for `webSearch: true` (and the Research API): a SearXNG instance (its base URL; `/search`
 * is called with `format=json`), or any URL template with `{query}` that answers SearXNG's JSON shape.
 */
export const searchSchema = z.strictObject({
  /** `https://searx.example.org` or `https://search.example/api?q={query}&format=json`. @default none: web search is off */
  provider: z.url({ protocol: /^https?$/ }).optional(),
  /** Milliseconds for the search call and for each result page. @default 10000 */
  timeoutMs: z.int().min(100).max(600_000).default(10_000),
  /** Largest result page read, in bytes. @default 2097152 */
  maxPageBytes: z
    .int()
    .min(1024)
    .max(2 ** 28)
    .default(2 * 1024 * 1024),
});

/** Long-term memory: notes a model saves about an owner, recalled into later conversations. */
export const memorySchema = z.strictObject({
  /** @default false */
  enabled: z.boolean().default(false),
  /** Notes recalled into a conversation's turn at most. @default 8 */
  maxRecalled: z.int().min(1).max(100).default(8),
  /** Notes kept per owner; the oldest go first. @default 1000 */
  maxNotes: z.int().min(1).max(1_000_000).default(1000),
});

/** Video QA (`POST /v1/qa/chat`) and metadata tagging (`POST /qa/quicktag`). */
export const qaSchema = z.strictObject({
  /** Longest a QA request with `"wait": true` waits for its video's indexing, in seconds. @default 120 */
  maxWaitSeconds: z.int().min(0).max(3600).default(120),
  /** Video segments (excerpts, with one keyframe each for models with image input) sent per question. @default 8 */
  maxSegments: z.int().min(1).max(64).default(8),
  /** Frames sampled from a quicktag video. @default 8 */
  quicktagFrames: z.int().min(1).max(64).default(8),
});

/** `GET /metrics` (Prometheus text format). */
export const metricsSchema = z.strictObject({
  /** @default true */
  enabled: z.boolean().default(true),
  /** Served without an API key (for a scraper on a private network). @default false */
  public: z.boolean().default(false),
});

/**
 * Per-key rate limits and quotas, on every authenticated route. `memory` counts in this process; `redis` shares the
 * counts among every Ocular process that uses the same Redis.
 */
export const rateLimitsSchema = z.strictObject({
  /** Requests per key per minute; unset: no limit. */
  requestsPerMinute: z.int().min(1).max(10_000_000).optional(),
  /** Model tokens (input plus output) per key per UTC day, counted on the chat routes; unset: no quota. */
  tokensPerDay: z.int().min(1).max(1_000_000_000_000).optional(),
  /** @default memory */
  store: z.enum(['memory', 'redis']).default('memory'),
  /** For the redis store. @default redis://127.0.0.1:6379 */
  redisUrl: z.url({ protocol: /^rediss?$/ }).default('redis://127.0.0.1:6379'),
  /** Prefix of the Redis keys, so several deployments can share one Redis. @default ocular:ratelimit */
  redisPrefix: z.string().min(1).max(200).default('ocular:ratelimit'),
});

/**
 * Where the metadata (keys, videos, segments, images, clips, conversations, jobs) lives: `sqlite`, the embedded
 * default (`<dataDir>/ocular.db`, one machine), or `postgres`, shared by every API process and worker.
 */
export const storageSchema = z
  .strictObject({
    /** @default sqlite */
    database: z.enum(['sqlite', 'postgres']).default('sqlite'),
    /** PostgreSQL connection string, `postgres://user:password@host:5432/database`; required for postgres. */
    url: z.url({ protocol: /^postgres(ql)?$/ }).optional(),
    /** Connections each process keeps open to PostgreSQL. @default 10 */
    poolSize: z.int().min(1).max(200).default(10),
  })
  .refine((storage) => storage.database !== 'postgres' || storage.url !== undefined, {
    message: 'storage.url is required when storage.database is "postgres"',
    path: ['url'],
  });

/**
 * Where jobs (indexing, embedding, clips, webhooks) wait and run: `database`, the jobs table of the metadata database
 * (`storage`: SQLite for workers on one machine, PostgreSQL for workers on many), or `redis`, BullMQ queues that API
 * processes and workers on any machine share.
 */
export const queueSchema = z
  .discriminatedUnion('kind', [
    z.strictObject({ kind: z.literal('database') }),
    z.strictObject({
      kind: z.literal('redis'),
      /** Redis connection string, `redis://[user:password@]host:6379[/db]` (`rediss://` for TLS). */
      url: z.url({ protocol: /^rediss?$/ }),
      /** Prefix of every key the queues write, so several deployments can share one Redis. @default ocular */
      prefix: z
        .string()
        .regex(/^[\w.-]+$/, 'use letters, digits and . _ - only')
        .default('ocular'),
    }),
  ])
  .default({ kind: 'database' });

/**
 * Where blobs (uploaded videos, keyframes, thumbnails, images, conversation assets, rendered clips) live: `fs`,
 * folders under the data directory (the embedded default, one machine or a shared file system), or `s3`, one
 * bucket of any S3-compatible store (AWS S3, MinIO, Ceph, R2) that every API process and worker reads. With `s3`
 * the data directory only holds working copies: ffmpeg reads a local copy of a video while it indexes or cuts it.
 */
export const blobsSchema = z
  .discriminatedUnion('kind', [
    z.strictObject({ kind: z.literal('fs') }),
    z.strictObject({
      kind: z.literal('s3'),
      /** The bucket; it must exist. */
      bucket: z.string().regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'not an S3 bucket name'),
      /** Prefix of every key Ocular writes (`ocular/`), so several deployments can share a bucket. @default none */
      prefix: z
        .string()
        .regex(/^(?:(?!\.\.?\/)[\w.-]+\/)*$/, 'use letters, digits and . _ - separated by / and ending with / (no . or .. parts)')
        .default(''),
      /** @default us-east-1 */
      region: z.string().min(1).default('us-east-1'),
      /** The store's URL for anything but AWS (`http://minio:9000`). @default AWS's endpoint for the region */
      endpoint: z.url({ protocol: /^https?$/ }).optional(),
      /** `bucket` in the path rather than the host name, as MinIO and Ceph usually need. @default false */
      forcePathStyle: z.boolean().default(false),
      /** Static credentials; without them the AWS SDK's default chain (environment, profile, instance role) is used. */
      accessKeyId: z.string().min(1).optional(),
      secretAccessKey: z.string().min(1).optional(),
      /**
       * Blob downloads (`/v1/videos/{id}/file`, thumbnails, images, clips, assets) answer with a redirect to a URL
       * the store signed, after Ocular checked its own signature, so the bytes do not pass through Ocular.
       * @default false: Ocular streams them, with Range support
       */
      redirect: z.boolean().default(false),
      /** Size of each part of a multipart upload, in MiB (S3 needs at least 5). @default 8 */
      partSizeMiB: z.int().min(5).max(512).default(8),
    }),
  ])
  .default({ kind: 'fs' });

/** A research model (the Research API): a chat model from `models` run as a web-research agent. */
export const researchModelSchema = z.strictObject({
  id: z
    .string()
    .min(1)
    .regex(/^[\w.:/@-]+$/, 'use letters, digits and . _ - : / @ only'),
  /** The chat model (an id or alias from `models`) that plans, reads and answers; it must support tools. */
  model: z.string().min(1),
  /** Model calls per attempt before it must answer. @default 8 */
  maxSteps: z.int().min(1).max(50).default(8),
  /** Seconds of research before it must answer. @default 120 */
  maxSeconds: z.int().min(5).max(3600).default(120),
  /** Pages `analyze` may read per request. @default 10 */
  maxPages: z.int().min(0).max(100).default(10),
});

export const configFileSchema = z.strictObject({
  $schema: z.string().optional(),
  /** Model used when a request names none. @default the first entry of `models` */
  defaultModel: z.string().min(1).optional(),
  models: z.array(modelEntrySchema).default([]),
  /** Extra names for models: alias -> model id. */
  aliases: z.record(z.string().min(1), z.string().min(1)).default({}),
  limits: limitsSchema.prefault({}),
  media: mediaSchema.prefault({}),
  transcriber: transcriberEntrySchema.prefault({ provider: 'none' }),
  /** Speech output (the Speech API's `return_translation_audio`); the backend validates the rest. @default auto */
  textToSpeech: z.looseObject({ provider: z.string().min(1) }).prefault({ provider: 'auto' }),
  indexing: indexingSchema.prefault({}),
  vision: visionSchema.prefault({}),
  conversations: conversationsSchema.prefault({}),
  search: searchSchema.prefault({}),
  memory: memorySchema.prefault({}),
  qa: qaSchema.prefault({}),
  storage: storageSchema.prefault({}),
  queue: queueSchema,
  blobs: blobsSchema,
  metrics: metricsSchema.prefault({}),
  rateLimits: rateLimitsSchema.prefault({}),
  /** Research models, served on the OpenAI chat routes (they need `search.provider`). @default [] */
  research: z.array(researchModelSchema).default([]),
});

export type ConfigFile = z.infer<typeof configFileSchema>;
export type ModelEntry = z.infer<typeof modelEntrySchema>;
export type Limits = z.infer<typeof limitsSchema>;
export type MediaSettings = z.infer<typeof mediaSchema>;
export type IndexingSettings = z.infer<typeof indexingSchema>;
export type VisionSettings = z.infer<typeof visionSchema>;
export type ConversationSettings = z.infer<typeof conversationsSchema>;
export type SearchSettings = z.infer<typeof searchSchema>;
export type MemorySettings = z.infer<typeof memorySchema>;
export type QaSettings = z.infer<typeof qaSchema>;
export type MetricsSettings = z.infer<typeof metricsSchema>;
export type RateLimitSettings = z.infer<typeof rateLimitsSchema>;
export type QueueSettings = z.infer<typeof queueSchema>;
export type BlobSettings = z.infer<typeof blobsSchema>;
