import { randomUUID } from 'node:crypto';
import { mkdir, rm } from 'node:fs/promises';
import { basename } from 'node:path';
import type { IncomingMessage } from 'node:http';
import type { Context, Hono } from 'hono';
import { isOcularError, OcularError, validationError } from '../spec/errors.ts';
import { isVideoId, SOURCE_FILE, THUMBNAIL_FILE, type BlobStore } from '../store/blob-store.ts';
import type { VideoRecord } from '../store/video-store.ts';
import type { UrlSigner } from '../vision/signed-urls.ts';
import { deletedEvent, type IndexingEvent, type UploadSource, type VideoLibrary } from '../vision/video-library.ts';
import { imageSearchUnavailable, type VideoSearch } from '../vision/video-search.ts';
import type { QueryImageLoader } from '../vision/query-image.ts';
import { KEYFRAMES_DIR } from '../vision/indexing/index-video.ts';
import { parseBody } from './errors.ts';
import { readJson, type BodyLimits } from './read-body.ts';
import type { UploadGate } from './upload-gate.ts';
import { fileResponse } from './file-response.ts';
import { streamProgress } from './progress-stream.ts';
import { receiveMultipartUpload } from './multipart-upload.ts';
import {
  createGroupSchema,
  deleteGroupQuerySchema,
  listGroupsQuerySchema,
  listSegmentsQuerySchema,
  listVideosQuerySchema,
  searchVideosSchema,
  toWireEvent,
  toWireGroup,
  toWireSearchHit,
  toWireSegment,
  toWireVideo,
  updateGroupSchema,
  UPLOAD_FIELD_NAMES,
  uploadFieldsSchema,
} from './wire/vision.ts';

export interface VisionRouteDependencies {
  library: VideoLibrary;
  search: VideoSearch;
  blobs: BlobStore;
  signer: UrlSigner;
  /** Seconds a signed URL stays valid. */
  urlTtlSeconds: number;
  /** The origin signed URLs are built on; absent, each request's own. */
  publicBaseUrl?: string | undefined;
  maxUploadBytes: number;
  /** Where multipart uploads stream to before they become a video (same file system as the blobs). */
  incomingDir: string;
  /** Fetches and decodes the picture of a search by image (`image_url`). */
  loadQueryImage?: QueryImageLoader | undefined;
}

type VisionEnv = { Variables: { requestId: string; owner: string } };
/** What the app gives every route: the request's abort signal and the limits on JSON bodies. */
export interface RequestEdge {
  /** Aborted when the client goes away before the response is complete, or on shutdown. */
  requestSignal(c: Context): AbortSignal;
  bodyLimits: BodyLimits;
  /** The bound on multipart uploads in progress, shared by every route that takes one. */
  uploads: UploadGate;
}

/** Names the retrievers a search ran (`lexical`; `lexical, semantic` once embeddings are configured). */
export const RETRIEVERS_HEADER = 'X-Ocular-Retrievers';

/** Absolute signed URLs: on `vision.publicBaseUrl` when set, else the origin the client reached this server on. */
function signedUrl(c: Context, deps: VisionRouteDependencies, path: string): string {
  const origin = deps.publicBaseUrl ?? new URL(c.req.url).origin;
  return origin + deps.signer.sign(path, new Date(Date.now() + deps.urlTtlSeconds * 1000));
}

function videoId(c: Context): string {
  const id = c.req.param('id') ?? '';
  // Anything that is not a UUID cannot name a video: 404 without touching the database or the disk.
  if (!isVideoId(id)) throw new OcularError('not_found_error', `no video with id "${id}"`);
  return id;
}

function parseQuery<Schema extends Parameters<typeof parseBody>[0]>(schema: Schema, c: Context) {
  return parseBody(schema, c.req.query());
}

/**
 * Signed blob routes: the signature is the credential (a browser's <video> element sends no API key), so
 * these are registered before the API-key middleware.
 */
export function registerVisionBlobRoutes(app: Hono<VisionEnv>, deps: VisionRouteDependencies): void {
  const { signer, blobs } = deps;
  const verifySignature = (c: Context): void => {
    const path = new URL(c.req.url).pathname;
    const verdict = signer.verify(path, { expires: c.req.query('expires'), signature: c.req.query('signature') });
    if (verdict === 'expired')
      throw new OcularError('permission_error', 'this signed URL has expired; fetch the video again for a fresh one');
    if (verdict !== 'ok') throw new OcularError('permission_error', 'this URL is not validly signed');
  };
  const serveSigned = (file: 'source' | 'thumbnail') => async (c: Context) => {
    verifySignature(c);
    const id = videoId(c);
    const contentType = file === 'source' ? await deps.library.sourceMediaType(id) : 'image/jpeg';
    if (contentType === undefined) throw new OcularError('not_found_error', `no video with id "${id}"`);
    const target = blobs.source(id, file === 'source' ? SOURCE_FILE : THUMBNAIL_FILE);
    return fileResponse(target, c.req.raw, { contentType, cacheControl: 'private, max-age=3600' });
  };
  app.on(['GET', 'HEAD'], '/v1/videos/:id/file', serveSigned('source'));
  app.on(['GET', 'HEAD'], '/v1/videos/:id/thumbnail', serveSigned('thumbnail'));
  // A segment's picture and its keyframes, which indexing wrote into the video's folder.
  const servePicture = (c: Context, file: string | undefined): Promise<Response> => {
    if (file === undefined) throw new OcularError('not_found_error', 'no such segment');
    return fileResponse(blobs.source(c.req.param('id')!, file), c.req.raw, {
      contentType: 'image/jpeg',
      cacheControl: 'private, max-age=3600',
    });
  };
  app.on(['GET', 'HEAD'], '/v1/videos/:id/segments/:seq{[0-9]{1,9}}/thumbnail', async (c) => {
    verifySignature(c);
    return servePicture(c, await deps.library.segmentPicture(videoId(c), Number(c.req.param('seq'))));
  });
  app.on(['GET', 'HEAD'], `/v1/videos/:id/keyframes/:name{keyframe-[0-9]{1,12}\\.jpg}`, (c) => {
    verifySignature(c);
    videoId(c);
    return servePicture(c, `${KEYFRAMES_DIR}/${c.req.param('name')}`);
  });
}

/**
 * `POST /v1/videos/search` for `owner`, as the route and the MCP tool answer it: the body validated, a query
 * image (`image_url`) fetched when an image model can use it, and each hit with signed URLs on `origin`.
 */
export async function searchVideos(deps: VisionRouteDependencies, owner: string, body: unknown, origin: string, signal: AbortSignal) {
  const { imageUrl, ...request } = parseBody(searchVideosSchema, body);
  let image: Buffer | undefined;
  if (imageUrl !== undefined) {
    // Refused before anything is fetched when nothing could search with the picture.
    if (!deps.search.searchesByImage || deps.loadQueryImage === undefined) throw imageSearchUnavailable();
    image = await deps.loadQueryImage(imageUrl, 'image_url', signal);
  }
  const outcome = await deps.search.search({ owner, ...request, image }, signal);
  const sign = (path: string): string => origin + deps.signer.sign(path, new Date(Date.now() + deps.urlTtlSeconds * 1000));
  // One signature per video, however many of its ranges are listed; the fragment is outside the signature.
  const videoUrls = new Map<string, string>();
  const results = outcome.hits.map((hit) => {
    let video = videoUrls.get(hit.videoId);
    if (video === undefined) {
      video = sign(`/v1/videos/${hit.videoId}/file`);
      videoUrls.set(hit.videoId, video);
    }
    return toWireSearchHit(hit, {
      video: `${video}#t=${hit.startSeconds.toFixed(3)},${hit.endSeconds.toFixed(3)}`,
      thumbnail: sign(`/v1/videos/${hit.videoId}/segments/${hit.bestSeq}/thumbnail`),
    });
  });
  return { results, total_results: outcome.total, retrievers: outcome.retrievers };
}

/** The video library API: uploads, videos, groups and indexing events, each scoped to the caller's owner. */
export function registerVisionRoutes(app: Hono<VisionEnv>, deps: VisionRouteDependencies, edge: RequestEdge): void {
  const { library } = deps;
  const readBody = (c: Context): Promise<unknown> => readJson(c, edge.bodyLimits);

  const { search } = deps;

  const wireVideo = (c: Context, video: VideoRecord) =>
    toWireVideo(video, {
      video: signedUrl(c, deps, `/v1/videos/${video.id}/file`),
      thumbnail: video.metadata?.hasThumbnail ? signedUrl(c, deps, `/v1/videos/${video.id}/thumbnail`) : null,
    });

  // ---- groups (before `/v1/videos/:id`, which would otherwise take `groups` for an id) ----

  app.post('/v1/videos/groups', async (c) => {
    const body = parseBody(createGroupSchema, await readBody(c));
    const group = await library.createGroup(c.get('owner'), {
      name: body.name,
      metadata: body.metadata ?? '',
      webhookUrl: body.webhook_url,
      webhookSecret: body.webhook_secret,
    });
    return c.json(toWireGroup(group), 201);
  });

  app.get('/v1/videos/groups', async (c) => {
    const query = parseQuery(listGroupsQuerySchema, c);
    const page = await library.listGroups(c.get('owner'), query.limit, query.offset);
    return c.json({ results: page.items.map(toWireGroup), total: page.total, limit: query.limit, offset: query.offset });
  });

  app.get('/v1/videos/groups/:groupId', async (c) => c.json(toWireGroup(await library.getGroup(c.get('owner'), c.req.param('groupId')))));

  app.patch('/v1/videos/groups/:groupId', async (c) => {
    const body = parseBody(updateGroupSchema, await readBody(c));
    const group = await library.updateGroup(c.get('owner'), c.req.param('groupId'), {
      name: body.name,
      metadata: body.metadata,
      webhookUrl: body.webhook_url,
      webhookSecret: body.webhook_secret,
    });
    return c.json(toWireGroup(group));
  });

  app.delete('/v1/videos/groups/:groupId', async (c) => {
    const query = parseQuery(deleteGroupQuerySchema, c);
    const groupId = c.req.param('groupId');
    await library.deleteGroup(c.get('owner'), groupId, query.force ?? false);
    return c.json({ group_id: groupId, deleted: true });
  });

  // ---- videos ----

  // Each upload holds a file on disk and maybe a download: bounded with every other upload, before reading anything.
  app.post('/v1/videos/upload', (c) => edge.uploads.run(c, (incoming) => receiveUpload(c, incoming)));

  const receiveUpload = async (c: Context, incoming: IncomingMessage): Promise<Response> => {
    await mkdir(deps.incomingDir, { recursive: true, mode: 0o700 });
    // With a blob store, the file goes up to it while it arrives, under the id the video will have.
    const id = randomUUID();
    // Claimed before the first byte goes up: a crash from here on leaves a claim for recovery (see BlobClaims).
    return deps.blobs.hold(id, async () => {
      const upload = await receiveMultipartUpload(incoming, {
        directory: deps.incomingDir,
        fileField: 'file',
        maxFileBytes: deps.maxUploadBytes,
        limitName: 'limits.maxUploadBytes',
        allowedFields: UPLOAD_FIELD_NAMES,
        mirror: () => deps.blobs.sourceUpload(id),
      });
      let added = false;
      try {
        const fields = parseBody(uploadFieldsSchema, upload.fields);
        const hasFile = upload.file !== undefined;
        const hasUrl = fields.video_url !== undefined;
        if (hasFile === hasUrl) {
          throw validationError('send exactly one of a `file` part or a `video_url` field', hasFile ? 'video_url' : 'file');
        }
        if (upload.file !== undefined && upload.file.size === 0) throw validationError('the uploaded file is empty', 'file');
        const source: UploadSource =
          upload.file !== undefined
            ? { kind: 'file', path: upload.file.path, stored: upload.file.mirrored }
            : { kind: 'url', url: fields.video_url! };
        const video = await library.addVideo(
          c.get('owner'),
          {
            id,
            source,
            name: fields.video_name,
            index: fields.index,
            thumbnails: fields.enable_thumbnails ?? false,
            groupId: fields.group_id ?? 'default',
            startTimestamp: fields.video_start_absolute_timestamp ?? fields.video_absolute_start_timestamp,
            webhookUrl: fields.webhook_url,
            webhookSecret: fields.webhook_secret,
          },
          edge.requestSignal(c),
        );
        added = true;
        return c.json(wireVideo(c, video));
      } finally {
        if (upload.file !== undefined) await rm(upload.file.path, { force: true });
        // A stored upload refused before it became a video (addVideo cleans up after itself).
        if (!added && upload.file?.mirrored) await deps.blobs.removeVideo(id).catch(() => undefined);
      }
    });
  };

  app.post('/v1/videos/search', async (c) => {
    const origin = deps.publicBaseUrl ?? new URL(c.req.url).origin;
    const { retrievers, ...answer } = await searchVideos(deps, c.get('owner'), await readBody(c), origin, edge.requestSignal(c));
    c.header(RETRIEVERS_HEADER, retrievers.join(', '));
    return c.json(answer);
  });

  app.get('/v1/videos', async (c) => {
    const query = parseQuery(listVideosQuerySchema, c);
    const page = await library.listVideos(c.get('owner'), {
      groupId: query.group_id,
      status: query.indexing_status,
      limit: query.limit,
      offset: query.offset,
    });
    return c.json({ results: page.items.map((video) => wireVideo(c, video)), total: page.total, limit: query.limit, offset: query.offset });
  });

  app.get('/v1/videos/:id', async (c) => c.json(wireVideo(c, await library.getVideo(c.get('owner'), videoId(c)))));

  app.get('/v1/videos/:id/segments', async (c) => {
    const id = videoId(c);
    const query = parseQuery(listSegmentsQuerySchema, c);
    const page = await library.listSegments(c.get('owner'), id, query.limit, query.offset);
    const results = page.items.map((segment) =>
      toWireSegment(segment, {
        thumbnail: signedUrl(c, deps, `/v1/videos/${id}/segments/${segment.seq}/thumbnail`),
        keyframes: segment.keyframes.map((frame) => signedUrl(c, deps, `/v1/videos/${id}/keyframes/${basename(frame.file)}`)),
      }),
    );
    return c.json({ results, total: page.total, limit: query.limit, offset: query.offset });
  });

  app.delete('/v1/videos/:id', async (c) => {
    const id = videoId(c);
    await library.deleteVideo(c.get('owner'), id);
    return c.json({ video_id: id, deleted: true });
  });

  app.get('/v1/videos/:id/events', async (c) => {
    const owner = c.get('owner');
    const video = await library.getVideo(owner, videoId(c));
    const ended = (status: string): boolean => status === 'indexed' || status === 'failed';
    let queued = false;
    return streamProgress<IndexingEvent>(c, {
      subscribe: (listener) => library.subscribe(video.id, listener),
      changes: (notice) => library.watch(video.id, notice),
      current: async () => {
        // Deleted since the stream began (here or by another process): the stream ends saying so.
        const current = await library.getVideo(owner, video.id).catch((error: unknown) => {
          if (isOcularError(error) && error.type === 'not_found_error') return undefined;
          throw error;
        });
        if (current === undefined) return deletedEvent(video.id, video.progress);
        queued = current.status === 'pending' && current.indexRequested;
        return { videoId: current.id, status: current.status, stage: current.stage, progress: current.progress, error: current.error };
      },
      // A video that is not being indexed (and is not queued for it) has nothing more to say: `done` follows at
      // once, so a client that waits for it (an already indexed video) is not left hanging.
      follows: (current) => !(ended(current.status) || current.status === 'pending') || queued,
      isLast: (event) => ended(event.status),
      toWire: toWireEvent,
    });
  });
}
