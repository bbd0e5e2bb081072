import { z } from 'zod';
import type { ChatService } from '../chat/chat-service.ts';
import { parseBody } from '../server/errors.ts';
import { searchImages, signedImageUrl, type ImageRouteDependencies } from '../server/image-routes.ts';
import { searchVideos, type VisionRouteDependencies } from '../server/vision-routes.ts';
import type { QaRouteDependencies } from '../server/qa-routes.ts';
import { outputPath, type ClipRouteDependencies } from '../server/clip-routes.ts';
import { createClipSchema, toWireClip } from '../server/wire/clips.ts';
import { qaChatRequestSchema, toQaMessages, toQaResponse } from '../server/wire/qa.ts';
import { toWireImage, searchImagesSchema } from '../server/wire/images.ts';
import { fromRekaRequest, rekaChatRequestSchema, toRekaResponse } from '../server/wire/reka-chat.ts';
import { listVideosQuerySchema, searchVideosSchema, toWireEvent, toWireVideo } from '../server/wire/vision.ts';
import { OcularError, validationError } from '../spec/errors.ts';
import { isImageId } from '../store/image-blob-store.ts';
import { isVideoId } from '../store/blob-store.ts';
import type { VideoRecord } from '../store/video-store.ts';

/** The services the MCP tools call: the same ones the HTTP routes call, so a tool and its route agree. */
export interface McpDependencies {
  chat: ChatService;
  /** Absent when the video library is off; its tools are then not listed. */
  vision?: VisionRouteDependencies | undefined;
  /** Absent when the image library is off. */
  images?: ImageRouteDependencies | undefined;
  /** Clip generation; its tools are not listed without it. */
  clips?: ClipRouteDependencies | undefined;
  /** Video QA; its tool is not listed without it. */
  qa?: QaRouteDependencies | undefined;
  /** The default `max_tokens` of a chat call that sets none. */
  defaultMaxTokens: number;
}

/** Who is calling and where the answer's signed URLs point. */
export interface ToolContext {
  owner: string;
  /** The origin signed URLs are built on (`vision.publicBaseUrl`, else the one the client reached). */
  origin: string;
  signal: AbortSignal;
}

export interface OcularTool {
  name: string;
  title: string;
  description: string;
  /** Validates the arguments, as the HTTP route validates its body; its input side is the listed JSON Schema. */
  input: z.ZodType;
  /** The tool only reads (MCP's `readOnlyHint`). */
  readOnly: boolean;
  run(args: unknown, context: ToolContext): Promise<Record<string, unknown>>;
}

const videoIdSchema = z.strictObject({ video_id: z.string().trim().min(1).max(128) });
const imageIdSchema = z.strictObject({ image_id: z.string().trim().min(1).max(128) });

/** `upload_video`'s arguments: the upload form's fields as JSON (booleans are booleans), with a URL to fetch. */
const uploadVideoSchema = z.strictObject({
  video_url: z.string().trim().min(1).max(8192),
  video_name: z.string().trim().min(1).max(512),
  /** @default true */
  index: z.boolean().optional(),
  enable_thumbnails: z.boolean().optional(),
  group_id: z.string().trim().min(1).max(128).optional(),
  video_start_absolute_timestamp: z.string().trim().max(64).optional(),
});

/** The chat tool takes a Reka chat request without `stream`: a tool answers once. */
const chatToolSchema = rekaChatRequestSchema.refine((body) => (body as { stream?: unknown }).stream !== true, {
  message: 'the chat tool answers once; leave stream unset',
  path: ['stream'],
});

function checkedVideoId(id: string): string {
  if (!isVideoId(id)) throw new OcularError('not_found_error', `no video with id "${id}"`, { param: 'video_id' });
  return id;
}

/** Every tool this server offers, given what is configured. */
export function createOcularTools(deps: McpDependencies): OcularTool[] {
  const tools: OcularTool[] = [];
  const { vision, images, chat } = deps;

  tools.push({
    name: 'list_models',
    title: 'List models',
    description: 'The model ids this server answers to; pass one as `model` to the chat tools.',
    input: z.strictObject({}),
    readOnly: true,
    run: async () => ({ models: chat.modelNames.map((id) => ({ id })) }),
  });

  tools.push({
    name: 'chat',
    title: 'Chat',
    description:
      'Ask a model, Reka chat format: {"messages":[{"role":"user","content":[{"type":"text","text":"..."},' +
      '{"type":"image_url","image_url":"https://..."}]}], "model"?: "...", "max_tokens"?: n}. Content may also be a plain string.',
    input: chatToolSchema,
    readOnly: true,
    run: async (args, context) => {
      const body = parseBody(chatToolSchema, args);
      const result = await chat.generate(fromRekaRequest(body, deps.defaultMaxTokens), context.signal);
      return toRekaResponse(result) as Record<string, unknown>;
    },
  });

  if (vision) {
    const sign = (context: ToolContext, path: string): string =>
      context.origin + vision.signer.sign(path, new Date(Date.now() + vision.urlTtlSeconds * 1000));
    const wireVideo = (context: ToolContext, video: VideoRecord) =>
      toWireVideo(video, {
        video: sign(context, `/v1/videos/${video.id}/file`),
        thumbnail: video.metadata?.hasThumbnail ? sign(context, `/v1/videos/${video.id}/thumbnail`) : null,
      });

    tools.push({
      name: 'list_videos',
      title: 'List videos',
      description: "The caller's videos, newest first, with their indexing status; page with limit (1-100) and offset.",
      input: listVideosQuerySchema,
      readOnly: true,
      run: async (args, context) => {
        const query = parseBody(listVideosQuerySchema, args);
        const page = await vision.library.listVideos(context.owner, {
          groupId: query.group_id,
          status: query.indexing_status,
          limit: query.limit,
          offset: query.offset,
        });
        return {
          results: page.items.map((video) => wireVideo(context, video)),
          total: page.total,
          limit: query.limit,
          offset: query.offset,
        };
      },
    });

    tools.push({
      name: 'get_video',
      title: 'Get a video',
      description: "One video's metadata, signed URL and indexing status.",
      input: videoIdSchema,
      readOnly: true,
      run: async (args, context) => {
        const { video_id } = parseBody(videoIdSchema, args);
        return wireVideo(context, await vision.library.getVideo(context.owner, checkedVideoId(video_id)));
      },
    });

    tools.push({
      name: 'get_indexing_status',
      title: 'Indexing status',
      description: "Where a video's indexing stands: status (pending, indexing, indexed, failed), stage and progress (0-1).",
      input: videoIdSchema,
      readOnly: true,
      run: async (args, context) => {
        const { video_id } = parseBody(videoIdSchema, args);
        const video = await vision.library.getVideo(context.owner, checkedVideoId(video_id));
        return toWireEvent({ videoId: video.id, status: video.status, stage: video.stage, progress: video.progress, error: video.error });
      },
    });

    tools.push({
      name: 'upload_video',
      title: 'Add a video by URL',
      description:
        'Fetches a video from an http(s) URL into the library and indexes it (unless index is false). Returns at once; ' +
        'follow indexing with get_indexing_status.',
      input: uploadVideoSchema,
      readOnly: false,
      run: async (args, context) => {
        const fields = parseBody(uploadVideoSchema, args);
        const video = await vision.library.addVideo(
          context.owner,
          {
            source: { kind: 'url', url: fields.video_url },
            name: fields.video_name,
            index: fields.index ?? true,
            thumbnails: fields.enable_thumbnails ?? false,
            groupId: fields.group_id ?? 'default',
            startTimestamp: fields.video_start_absolute_timestamp,
            webhookUrl: undefined,
            webhookSecret: undefined,
          },
          context.signal,
        );
        return wireVideo(context, video);
      },
    });

    tools.push({
      name: 'delete_video',
      title: 'Delete a video',
      description: 'Deletes a video, its index and its files; a running indexing job is cancelled.',
      input: videoIdSchema,
      readOnly: false,
      run: async (args, context) => {
        const { video_id } = parseBody(videoIdSchema, args);
        await vision.library.deleteVideo(context.owner, checkedVideoId(video_id));
        return { video_id, deleted: true };
      },
    });

    tools.push({
      name: 'search_videos',
      title: 'Search videos',
      description:
        "Finds moments in the caller's indexed videos by what is said, shown or written on screen. Each result has the " +
        'video, the time range in seconds, a score in 0-1 and a signed URL that plays the range.',
      input: searchVideosSchema,
      readOnly: true,
      run: async (args, context) => searchVideos(vision, context.owner, args, context.origin, context.signal),
    });
  }

  if (deps.qa) {
    const { qa } = deps.qa;
    // The HTTP body without `stream`: a tool answers once.
    const askSchema = qaChatRequestSchema.refine((body) => body.stream !== true, {
      message: 'ask_video answers once; leave stream unset',
      path: ['stream'],
    });
    tools.push({
      name: 'ask_video',
      title: 'Ask about a video',
      description:
        'Answers questions about one video of the library (video_id) or one fetched from video_url (stored and indexed ' +
        'first; use wait: true to wait for indexing). messages are Reka chat messages: [{"role":"user","content":"What happens at the start?"}]. ' +
        'The answer cites times as [mm:ss].',
      input: askSchema,
      readOnly: false,
      run: async (args, context) => {
        const body = parseBody(askSchema, args);
        const source =
          body.video_id !== undefined
            ? ({ kind: 'id', videoId: body.video_id } as const)
            : ({ kind: 'url', url: body.video_url! } as const);
        const video = await qa.resolveVideo(context.owner, source, context.signal);
        const answer = await qa.answer(
          {
            owner: context.owner,
            videoId: video.id,
            messages: toQaMessages(body),
            model: body.model,
            wait: body.wait,
            maxTokens: body.max_tokens,
            temperature: body.temperature,
          },
          context.signal,
        );
        return { video_id: video.id, ...toQaResponse(answer.text) };
      },
    });
  }

  if (deps.clips) {
    const { clips, signer, urlTtlSeconds } = deps.clips;
    const wireClip = (context: ToolContext, clip: Awaited<ReturnType<typeof clips.get>>) =>
      toWireClip(
        clip,
        (output) => context.origin + signer.sign(outputPath(clip.id, output.index), new Date(Date.now() + urlTtlSeconds * 1000)),
      );
    const clipIdSchema = z.strictObject({ clip_id: z.string().trim().min(1).max(128) });
    tools.push({
      name: 'create_clip',
      title: 'Create clips',
      description:
        'Starts a clip job over video_ids of the library (or video_urls): moments matching the prompt, cut, reframed and ' +
        'optionally subtitled. generation_config {template: moments|compilation, num_generations 1-3, min/max_duration_seconds}, ' +
        'rendering_config {aspect_ratio 16:9|9:16|1:1, resolution, subtitles}. Returns at once; follow it with get_clip.',
      input: createClipSchema,
      readOnly: false,
      run: async (args, context) => wireClip(context, await clips.create(context.owner, parseBody(createClipSchema, args), context.signal)),
    });
    tools.push({
      name: 'get_clip',
      title: 'Get a clip job',
      description:
        "A clip job's status (queued, processing, completed, failed), progress and, once completed, its outputs with signed URLs.",
      input: clipIdSchema,
      readOnly: true,
      run: async (args, context) => wireClip(context, await clips.get(context.owner, parseBody(clipIdSchema, args).clip_id)),
    });
  }

  if (images) {
    const imageUrl = (context: ToolContext, id: string): string => signedImageUrl(images, context.origin, id);

    tools.push({
      name: 'search_images',
      title: 'Search images',
      description: "Finds images in the caller's image library by their text, objects and caption; results carry a signed URL.",
      input: searchImagesSchema,
      readOnly: true,
      run: async (args, context) => searchImages(images, context.owner, args, context.origin, context.signal),
    });

    tools.push({
      name: 'get_image',
      title: 'Get an image',
      description: "One image's metadata, indexing findings and signed URL.",
      input: imageIdSchema,
      readOnly: true,
      run: async (args, context) => {
        const { image_id } = parseBody(imageIdSchema, args);
        if (!isImageId(image_id)) throw new OcularError('not_found_error', `no image with id "${image_id}"`, { param: 'image_id' });
        const image = await images.library.getImage(context.owner, image_id);
        return toWireImage(image, imageUrl(context, image.id));
      },
    });
  }

  const names = new Set<string>();
  for (const tool of tools) {
    if (names.has(tool.name)) throw new Error(`two MCP tools are named ${tool.name}`);
    names.add(tool.name);
  }
  return tools;
}

/** The JSON Schema a client sees for a tool's arguments: what the schema accepts, before its transforms. */
export function toolInputJsonSchema(tool: OcularTool): { type: 'object'; [key: string]: unknown } {
  const schema = z.toJSONSchema(tool.input, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;
  delete schema.$schema;
  if (schema.type !== 'object') throw validationError(`the ${tool.name} tool's arguments are not an object schema`);
  return schema as { type: 'object'; [key: string]: unknown };
}
