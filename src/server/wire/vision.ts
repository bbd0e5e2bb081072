import { z } from 'zod';
import { INDEXING_STATUSES, type GroupRecord, type VideoRecord } from '../../store/video-store.ts';
import type { IndexingEvent } from '../../vision/video-library.ts';

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
