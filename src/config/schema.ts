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
  /** Largest `max_tokens` a client may ask for. @default 32768 */
  maxOutputTokens: z.int().min(1).max(10_000_000).default(32_768),
  /** Messages allowed in one request. @default 1000 */
  maxMessages: z.int().min(1).max(100_000).default(1000),
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
});

export type ConfigFile = z.infer<typeof configFileSchema>;
export type ModelEntry = z.infer<typeof modelEntrySchema>;
export type Limits = z.infer<typeof limitsSchema>;
export type MediaSettings = z.infer<typeof mediaSchema>;
