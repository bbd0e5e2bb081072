import { z } from 'zod';
import { INDEXING_STATUSES, type GroupRecord, type SegmentRecord, type VideoRecord } from '../../store/video-store.ts';
import type { IndexingEvent } from '../../vision/video-library.ts';
import type { VideoSearchHit } from '../../vision/video-search.ts';

// ---- requests ----

const booleanField = z
  .string()
  .trim()
  .toLowerCase()
  .refine((value) => ['true', 'false', '1', '0', 'yes', 'no'].includes(value), 'use true or false')
  .transform((value) => value === 'true' || value === '1' || value === 'yes');

const isoTimestamp = z
  .string()
  .trim()
  .refine((value) => z.iso.datetime({ local: true, offset: true }).safeParse(value).success || z.iso.date().safeParse(value).success, {
    message: 'use an ISO 8601 date-time such as 2025-04-12T19:05:45 or 2025-04-12T19:05:45Z',
  });

const webhookUrl = z
  .string()
  .trim()
  .max(2048)
  .refine((value) => {
    try {
      const url = new URL(value);
      return url.protocol === 'http:' || url.protocol === 'https:';
    } catch {
      return false;
    }
  }, 'use an http or https URL');

const webhookSecret = z.string().min(16, 'use at least 16 characters').max(256);

/** The form fields of `POST /v1/videos/upload` (all arrive as strings). */
export const uploadFieldsSchema = z
  .strictObject({
    video_name: z.string().trim().min(1, 'video_name is required').max(512),
    /** Reka's API treats it as optional; an upload is indexed unless told otherwise. */
    index: booleanField.default(true),
    enable_thumbnails: booleanField.optional(),
    group_id: z.string().trim().min(1).max(128).optional(),
    video_url: z.string().trim().min(1).max(8192).optional(),
    video_start_absolute_timestamp: isoTimestamp.optional(),
    video_absolute_start_timestamp: isoTimestamp.optional(),
    webhook_url: webhookUrl.optional(),
    webhook_secret: webhookSecret.optional(),
  })
  .refine((fields) => !(fields.video_start_absolute_timestamp && fields.video_absolute_start_timestamp), {
    message: 'send video_start_absolute_timestamp or its alias video_absolute_start_timestamp, not both',
    path: ['video_absolute_start_timestamp'],
  });

export const UPLOAD_FIELD_NAMES = [
  'video_name',
  'index',
  'enable_thumbnails',
  'group_id',
  'video_url',
  'video_start_absolute_timestamp',
  'video_absolute_start_timestamp',
  'webhook_url',
  'webhook_secret',
  'file',
] as const;

/** Group metadata: free text or a JSON object, at most 500 characters once serialised. */
const groupMetadata = z
  .union([z.string(), z.record(z.string(), z.unknown())])
  .transform((value) => (typeof value === 'string' ? value : JSON.stringify(value)))
  .refine((value) => value.length <= 500, 'metadata is limited to 500 characters');

export const createGroupSchema = z.strictObject({
  name: z.string().trim().min(1).max(256),
  metadata: groupMetadata.optional(),
  webhook_url: webhookUrl.optional(),
  webhook_secret: webhookSecret.optional(),
});

export const updateGroupSchema = z
  .strictObject({
    name: z.string().trim().min(1).max(256).optional(),
    metadata: groupMetadata.optional(),
    webhook_url: webhookUrl.nullable().optional(),
    webhook_secret: webhookSecret.nullable().optional(),
  })
  .refine((patch) => Object.keys(patch).length > 0, 'send at least one of name, metadata, webhook_url, webhook_secret');

const pageSchema = {
  limit: z.coerce.number().int().min(1).max(100).default(20),
  offset: z.coerce.number().int().min(0).max(1_000_000_000).default(0),
};

export const listVideosQuerySchema = z.strictObject({
  ...pageSchema,
  group_id: z.string().min(1).max(128).optional(),
  indexing_status: z.enum(INDEXING_STATUSES).optional(),
});

export const listGroupsQuerySchema = z.strictObject(pageSchema);

export const deleteGroupQuerySchema = z.strictObject({ force: booleanField.optional() });

export const listSegmentsQuerySchema = z.strictObject(pageSchema);

/** Instant of an ISO 8601 value the way SQLite reads it (segment-search.ts): a time without an offset is UTC. */
function toEpochMs(value: string): number {
  if (/^\d{4}-\d{2}-\d{2}$/.test(value)) return Date.parse(`${value}T00:00:00Z`);
  return Date.parse(/(?:[zZ]|[+-]\d{2}:?\d{2})$/.test(value) ? value : `${value}Z`);
}

const idList = (most: number) => z.array(z.string().trim().min(1).max(128)).max(most);

/**
 * `POST /v1/videos/search` (Reka Vision). Optional fields may be null, as Python clients send unset ones; an
 * empty id list is the same as none (search everything the caller has).
 */
export const searchVideosSchema = z
  .strictObject({
    query: z.string().trim().min(1, 'expected a non-empty query').max(2_000).nullish(),
    /** Search by image instead of `query`: an http(s) URL (fetched under the media address policy) or a data: URL. */
    image_url: z.string().min(1, 'expected a non-empty image_url').nullish(), // bounded by limits.maxRequestBytes, and by media.maxBytes once decoded
    /** @default 10 */
    max_results: z.number().int().min(1).max(100).nullish(),
    /** Alias of max_results. */
    limit: z.number().int().min(1).max(100).nullish(),
    /** Results scoring below it (0..1) are left out. @default 0 */
    threshold: z.number().min(0).max(1).nullish(),
    /** Results to skip, for paging. @default 0 */
    offset: z.number().int().min(0).max(100_000).nullish(),
    video_ids: idList(1_000).nullish(),
    group_ids: idList(100).nullish(),
    start_time: isoTimestamp.nullish(),
    end_time: isoTimestamp.nullish(),
  })
  .refine((body) => body.max_results == null || body.limit == null, {
    message: 'send max_results or its alias limit, not both',
    path: ['limit'],
  })
  .refine((body) => (body.query == null) !== (body.image_url == null), {
    message: 'send either query (words) or image_url (a picture), exactly one of them',
    path: ['query'],
  })
  .refine((body) => body.start_time == null || body.end_time == null || toEpochMs(body.start_time) <= toEpochMs(body.end_time), {
    message: 'start_time is after end_time',
    path: ['end_time'],
  })
  .transform((body) => ({
    query: body.query ?? undefined,
    imageUrl: body.image_url ?? undefined,
    maxResults: body.max_results ?? body.limit ?? 10,
    threshold: body.threshold ?? undefined,
    offset: body.offset ?? 0,
    videoIds: body.video_ids?.length ? body.video_ids : undefined,
    groupIds: body.group_ids?.length ? body.group_ids : undefined,
    startTime: body.start_time ?? undefined,
    endTime: body.end_time ?? undefined,
  }));

// ---- responses ----

/** Group metadata goes back as it came: a JSON object when one was sent, else the string. */
function parseGroupMetadata(metadata: string): unknown {
  if (!metadata.startsWith('{')) return metadata;
  try {
    return JSON.parse(metadata) as unknown;
  } catch {
    return metadata;
  }
}

export function toWireGroup(group: GroupRecord) {
  return {
    group_id: group.id,
    name: group.name,
    metadata: parseGroupMetadata(group.metadata),
    webhook_url: group.webhookUrl,
    created_at: group.createdAt.toISOString(),
    updated_at: group.updatedAt.toISOString(),
  };
}

/** Signed URLs for a video's blobs, built by the route (they depend on the request's origin). */
export interface VideoUrls {
  video: string;
  thumbnail: string | null;
}

export function toWireVideo(video: VideoRecord, urls: VideoUrls) {
  const metadata = video.metadata;
  return {
    video_id: video.id,
    video_name: video.name,
    url: urls.video,
    indexing_status: video.status,
    indexing_progress: video.progress,
    indexing_stage: video.stage,
    ...(video.error === null ? {} : { error: video.error }),
    metadata: {
      video_name: video.name,
      duration: metadata?.durationSeconds ?? null,
      width: metadata?.width ?? null,
      height: metadata?.height ?? null,
      avg_fps: metadata?.avgFps ?? null,
      codec: metadata?.codec ?? null,
      size_bytes: metadata?.sizeBytes ?? null,
      has_audio: metadata?.hasAudio ?? null,
      thumbnail: urls.thumbnail,
      video_start_absolute_timestamp: video.startTimestamp,
    },
    indexing_type: video.indexingType,
    group_id: video.groupId,
    enable_thumbnails: video.thumbnails,
    created_at: video.createdAt.toISOString(),
    updated_at: video.updatedAt.toISOString(),
  };
}

/** Signed URLs of one search result, built by the route. */
export interface SearchHitUrls {
  /** The video file with a `#t=start,end` media fragment. */
  video: string;
  /** The picture of the range's best segment. */
  thumbnail: string;
}

/** A Reka Vision search result, plus `thumbnail_url` (Ocular's own). Times are seconds from the video's start. */
export function toWireSearchHit(hit: VideoSearchHit, urls: SearchHitUrls) {
  return {
    video_chunk_id: hit.chunkId,
    video_id: hit.videoId,
    video_title: hit.videoName,
    score: Math.round(hit.score * 10_000) / 10_000,
    start_timestamp: roundSeconds(hit.startSeconds),
    end_timestamp: roundSeconds(hit.endSeconds),
    plain_text_caption: hit.caption,
    plain_text_transcript: hit.transcript,
    s3_presigned_url: urls.video,
    thumbnail_url: urls.thumbnail,
  };
}

/** Signed URLs of one segment's pictures, built by the route. */
export interface SegmentUrls {
  thumbnail: string;
  /** One per keyframe, in the segment's order. */
  keyframes: string[];
}

/** A segment of an indexed video, as `GET /v1/videos/{id}/segments` lists it. */
export function toWireSegment(segment: SegmentRecord, urls: SegmentUrls) {
  return {
    segment_index: segment.seq,
    start_timestamp: roundSeconds(segment.startSeconds),
    end_timestamp: roundSeconds(segment.endSeconds),
    plain_text_caption: segment.caption,
    plain_text_transcript: segment.transcript,
    ocr_text: segment.ocrText,
    objects: segment.objects.map((object) => ({ class_name: object.label, count: object.count, confidence: object.score })),
    labels: segment.labels.map((label) => ({ label: label.label, confidence: label.score })),
    has_speech: segment.hasSpeech,
    thumbnail_url: urls.thumbnail,
    keyframes: segment.keyframes.map((frame, index) => ({ timestamp: roundSeconds(frame.timeSeconds), url: urls.keyframes[index]! })),
  };
}

/** Milliseconds are as fine as a player seeks; more digits are float noise from the segment plan. */
const roundSeconds = (seconds: number): number => Math.round(seconds * 1000) / 1000;

export function toWireEvent(event: IndexingEvent) {
  return {
    video_id: event.videoId,
    indexing_status: event.status,
    stage: event.stage,
    indexing_progress: event.progress,
    percent: Math.round(event.progress * 1000) / 10,
    ...(event.error === null ? {} : { error: event.error }),
  };
}
