import { z } from 'zod';
import type { ImageRecord } from '../../store/image-store.ts';
import type { IndexingStatus } from '../../store/video-store.ts';

// ---- requests ----

/** Files one `POST /v1/images/upload` may carry. */
export const MAX_IMAGES_PER_UPLOAD = 16;

/** Largest `metadata` object kept per image, once serialised. */
const MAX_IMAGE_METADATA_CHARS = 4_000;

const imageMetadata = z
  .record(z.string(), z.unknown())
  .refine(
    (value) => JSON.stringify(value).length <= MAX_IMAGE_METADATA_CHARS,
    `metadata is limited to ${MAX_IMAGE_METADATA_CHARS} characters`,
  );

/**
 * The `metadata` form field of an upload (Reka Vision): one request per image, in the order of the `images`
 * parts, each saying whether to index it (@default true) and carrying the client's own metadata for it.
 */
export const imageUploadMetadataSchema = z.strictObject({
  requests: z
    .array(
      z.strictObject({
        indexing_config: z.strictObject({ index: z.boolean().default(true) }).optional(),
        metadata: imageMetadata.optional(),
      }),
    )
    .max(MAX_IMAGES_PER_UPLOAD),
});

export const IMAGE_UPLOAD_FIELD_NAMES = ['metadata'] as const;

export const listImagesQuerySchema = z.strictObject({
  limit: z.coerce.number().int().min(1).max(100).default(20),
  offset: z.coerce.number().int().min(0).max(1_000_000_000).default(0),
});

/** `POST /v1/images/search` (Reka Vision). Optional fields may be null, as Python clients send unset ones. */
export const searchImagesSchema = z
  .strictObject({
    query: z.string().trim().min(1, 'expected a non-empty query').max(2_000).nullish(),
    /** Search by image instead of `query`: an http(s) URL or a data: URL (bounded by limits.maxRequestBytes and media.maxBytes). */
    image_url: z.string().min(1, 'expected a non-empty image_url').nullish(),
    /** @default 10 */
    max_results: z.number().int().min(1).max(100).nullish(),
    /** Results scoring below it (0..1) are left out. @default 0 */
    threshold: z.number().min(0).max(1).nullish(),
  })
  .refine((body) => (body.query == null) !== (body.image_url == null), {
    message: 'send either query (words) or image_url (a picture), exactly one of them',
    path: ['query'],
  })
  .transform((body) => ({
    query: body.query ?? undefined,
    imageUrl: body.image_url ?? undefined,
    maxResults: body.max_results ?? 10,
    threshold: body.threshold ?? 0,
  }));

// ---- responses ----

/** Reka's `indexing_status` numbers: 1 while indexing is queued or running, 2 once indexed; 0 and 3 are Ocular's. */
const STATUS_NUMBERS: Readonly<Record<IndexingStatus, number>> = { pending: 1, indexing: 1, indexed: 2, failed: 3 };

/** What indexing found, as search results and `GET /v1/images/{id}` show it. Boxes: [x_min, y_min, x_max, y_max], 0..1. */
export function toWireImageMetadata(image: ImageRecord) {
  return {
    caption: image.caption,
    ocr_text: image.ocrText,
    detection_metadata: image.detections.map((detection) => ({
      class_name: detection.label,
      confidence: detection.score,
      bounding_box: [
        detection.box.x,
        detection.box.y,
        Math.round((detection.box.x + detection.box.width) * 1000) / 1000,
        Math.round((detection.box.y + detection.box.height) * 1000) / 1000,
      ],
    })),
    labels: image.labels.map((label) => ({ label: label.label, confidence: label.score })),
  };
}

export function toWireImage(image: ImageRecord, url: string) {
  return {
    image_id: image.id,
    image_url: url,
    image_name: image.name,
    /** 0: not indexed (uploaded with index false), 1: queued or indexing, 2: indexed, 3: failed. */
    indexing_status: image.indexRequested ? STATUS_NUMBERS[image.status] : 0,
    status: image.indexRequested ? image.status : 'not_indexed',
    ...(image.error === null ? {} : { error: image.error }),
    upload_timestamp: image.createdAt.getTime() / 1000,
    media_type: image.mediaType,
    width: image.width,
    height: image.height,
    size_bytes: image.sizeBytes,
    metadata: image.metadata,
    image_metadata: toWireImageMetadata(image),
  };
}
