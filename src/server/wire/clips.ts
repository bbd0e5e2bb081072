import { z } from 'zod';
import type { ClipOutputRecord, ClipRecord } from '../../store/clip-store.ts';
import type { ClipEvent, NewClipRequest } from '../../vision/clips.ts';

/** Longest clip, and longest compilation, in seconds. */
export const MAX_CLIP_SECONDS = 600;
/** Videos one request may name. */
export const MAX_CLIP_VIDEOS = 10;

const seconds = (most: number) => z.number().min(0).max(most);

const httpUrl = z
  .string()
  .trim()
  .min(1)
  .max(8192)
  .refine((value) => {
    try {
      const url = new URL(value);
      return url.protocol === 'http:' || url.protocol === 'https:';
    } catch {
      return false;
    }
  }, 'use an http or https URL');

const generationConfigSchema = z
  .strictObject({
    /** `moments`: one clip per moment; `compilation`: moments joined into one video. @default moments */
    template: z.enum(['moments', 'compilation']).nullish(),
    /** Outputs to make. @default 1 */
    num_generations: z.int().min(1).max(3).nullish(),
    /** @default 0 */
    min_duration_seconds: seconds(MAX_CLIP_SECONDS).nullish(),
    /** @default 30 */
    max_duration_seconds: z.number().min(1).max(MAX_CLIP_SECONDS).nullish(),
    /** Seconds from the start of each video before which nothing is taken. */
    source_start_time: seconds(7 * 86_400).nullish(),
    /** Seconds from the start of each video after which nothing is taken. */
    source_end_time: seconds(7 * 86_400).nullish(),
  })
  .refine((config) => (config.min_duration_seconds ?? 0) <= (config.max_duration_seconds ?? 30), {
    message: 'min_duration_seconds is greater than max_duration_seconds',
    path: ['min_duration_seconds'],
  })
  .refine(
    (config) => config.source_start_time == null || config.source_end_time == null || config.source_start_time < config.source_end_time,
    {
      message: 'source_start_time must be before source_end_time',
      path: ['source_end_time'],
    },
  );

const renderingConfigSchema = z.strictObject({
  /** Burn the transcript in as subtitles. @default false */
  subtitles: z.boolean().nullish(),
  /** @default the source's */
  aspect_ratio: z.enum(['16:9', '9:16', '1:1']).nullish(),
  /** Output height in pixels. @default the source's */
  resolution: z.int().min(240).max(1080).nullish(),
  /** Ocular's own: how the frame reaches another aspect ratio, `crop` (fill) or `pad` (bars). @default crop */
  fit: z.enum(['crop', 'pad']).nullish(),
});

/** `POST /v1/clips` (Reka Vision clip generation). Optional fields may be null, as Python clients send unset ones. */
export const createClipSchema = z
  .strictObject({
    video_urls: z.array(httpUrl).max(MAX_CLIP_VIDEOS).nullish(),
    video_ids: z.array(z.string().trim().min(1).max(128)).max(MAX_CLIP_VIDEOS).nullish(),
    prompt: z.string().trim().min(1, 'expected a non-empty prompt').max(2_000),
    generation_config: generationConfigSchema.nullish(),
    rendering_config: renderingConfigSchema.nullish(),
  })
  .refine((body) => (body.video_urls?.length ?? 0) > 0 !== (body.video_ids?.length ?? 0) > 0, {
    message: 'send exactly one of video_urls or video_ids, with at least one entry',
    path: ['video_ids'],
  })
  .transform((body): NewClipRequest => {
    const generation = body.generation_config ?? {};
    const rendering = body.rendering_config ?? {};
    return {
      prompt: body.prompt,
      videoIds: body.video_ids ?? undefined,
      videoUrls: body.video_urls ?? undefined,
      generation: {
        template: generation.template ?? 'moments',
        numGenerations: generation.num_generations ?? 1,
        minDurationSeconds: generation.min_duration_seconds ?? 0,
        maxDurationSeconds: generation.max_duration_seconds ?? 30,
        sourceStartSeconds: generation.source_start_time ?? null,
        sourceEndSeconds: generation.source_end_time ?? null,
      },
      rendering: {
        subtitles: rendering.subtitles ?? false,
        aspectRatio: rendering.aspect_ratio ?? null,
        resolution: rendering.resolution ?? null,
        fit: rendering.fit ?? 'crop',
      },
    };
  });

export const listClipsQuerySchema = z.strictObject({
  limit: z.coerce.number().int().min(1).max(100).default(20),
  offset: z.coerce.number().int().min(0).max(1_000_000_000).default(0),
});

/** Signed URL of each rendered output, by its index, built by the route. */
export type OutputUrls = (output: ClipOutputRecord) => string;

/** A clip request as Reka's `GET /v1/clips/{id}` answers it, plus Ocular's progress fields. */
export function toWireClip(clip: ClipRecord, urlOf: OutputUrls) {
  const { request } = clip;
  return {
    id: clip.id,
    status: clip.status,
    created_at: clip.createdAt.toISOString(),
    updated_at: clip.updatedAt.toISOString(),
    prompt: request.prompt,
    video_urls: request.videoUrls,
    video_ids: request.videoIds,
    generation_config: {
      template: request.generation.template,
      num_generations: request.generation.numGenerations,
      min_duration_seconds: request.generation.minDurationSeconds,
      max_duration_seconds: request.generation.maxDurationSeconds,
      source_start_time: request.generation.sourceStartSeconds,
      source_end_time: request.generation.sourceEndSeconds,
    },
    rendering_config: {
      subtitles: request.rendering.subtitles,
      aspect_ratio: request.rendering.aspectRatio,
      resolution: request.rendering.resolution,
      fit: request.rendering.fit,
    },
    progress: clip.progress,
    stage: clip.stage,
    ...(clip.error === null ? {} : { error_message: clip.error }),
    output: [...clip.outputs]
      .sort((a, b) => a.index - b.index)
      .map((output) => ({
        url: urlOf(output),
        title: output.title,
        start: output.pieces[0]!.startSeconds,
        end: output.pieces.at(-1)!.endSeconds,
        duration: output.durationSeconds,
        video_id: output.pieces[0]!.videoId,
        moments: output.pieces.map((piece) => ({ video_id: piece.videoId, start: piece.startSeconds, end: piece.endSeconds })),
      })),
  };
}

export function toWireClipEvent(event: ClipEvent) {
  return {
    id: event.clipId,
    status: event.status,
    stage: event.stage,
    progress: event.progress,
    percent: Math.round(event.progress * 1000) / 10,
    ...(event.error === null ? {} : { error_message: event.error }),
  };
}
