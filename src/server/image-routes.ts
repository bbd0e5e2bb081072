import { mkdir, rm } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import type { Context, Hono } from 'hono';
import { OcularError, validationError } from '../spec/errors.ts';
import { isImageId } from '../store/image-blob-store.ts';
import type { ImageRecord } from '../store/image-store.ts';
import type { ImageLibrary, ImageUploadRequest } from '../vision/image-library.ts';
import type { UrlSigner } from '../vision/signed-urls.ts';
import type { ImageSearch } from '../vision/image-search.ts';
import type { QueryImageLoader } from '../vision/query-image.ts';
import { imageSearchUnavailable } from '../vision/video-search.ts';
import { parseBody } from './errors.ts';
import { fileResponse } from './file-response.ts';
import { receiveMultipartUpload } from './multipart-upload.ts';
import { readJson } from './read-body.ts';
import { RETRIEVERS_HEADER, type RequestEdge } from './vision-routes.ts';
import {
  IMAGE_UPLOAD_FIELD_NAMES,
  imageUploadMetadataSchema,
  listImagesQuerySchema,
  MAX_IMAGES_PER_UPLOAD,
  searchImagesSchema,
  toWireImage,
  toWireImageMetadata,
} from './wire/images.ts';

export interface ImageRouteDependencies {
  library: ImageLibrary;
  signer: UrlSigner;
  /** Seconds a signed URL stays valid. */
  urlTtlSeconds: number;
  /** The origin signed URLs are built on; absent, each request's own. */
  publicBaseUrl?: string | undefined;
  /** Largest file accepted per image (`media.maxBytes`). */
  maxImageBytes: number;
  /** Where multipart uploads stream to before they are normalised. */
  incomingDir: string;
  /** Word matches fused with the configured embedding retrievers. */
  search: ImageSearch;
  /** Fetches and decodes the picture of a search by image (`image_url`). */
  loadQueryImage?: QueryImageLoader | undefined;
}

type ImageEnv = { Variables: { requestId: string; owner: string } };
function imageId(c: Context): string {
  const id = c.req.param('id') ?? '';
  // Anything that is not a UUID cannot name an image: 404 without touching the database or the disk.
  if (!isImageId(id)) throw new OcularError('not_found_error', `no image with id "${id}"`);
  return id;
}

/** The `metadata` form field: one request per image, or every image indexed with no metadata when it is absent. */
function uploadRequests(field: string | undefined, count: number): ImageUploadRequest[] {
  if (field === undefined) return Array.from({ length: count }, () => ({ index: true, metadata: {} }));
  let parsed: unknown;
  try {
    parsed = JSON.parse(field);
  } catch {
    throw validationError(
      'metadata: expected a JSON object such as {"requests":[{"indexing_config":{"index":true},"metadata":{}}]}',
      'metadata',
    );
  }
  const { requests } = parseBody(imageUploadMetadataSchema, parsed);
  if (requests.length !== count) {
    throw validationError(`metadata: ${requests.length} request(s) for ${count} image(s); send one per image, in order`, 'metadata');
  }
  return requests.map((request) => ({ index: request.indexing_config?.index ?? true, metadata: request.metadata ?? {} }));
}

/** The signed image file route: the signature is the credential, so it is registered before the API-key middleware. */
export function registerImageBlobRoutes(app: Hono<ImageEnv>, deps: ImageRouteDependencies): void {
  app.on(['GET', 'HEAD'], '/v1/images/:id/file', async (c) => {
    const verdict = deps.signer.verify(new URL(c.req.url).pathname, {
      expires: c.req.query('expires'),
      signature: c.req.query('signature'),
    });
    if (verdict === 'expired')
      throw new OcularError('permission_error', 'this signed URL has expired; fetch the image again for a fresh one');
    if (verdict !== 'ok') throw new OcularError('permission_error', 'this URL is not validly signed');
    const id = imageId(c);
    const contentType = await deps.library.mediaType(id);
    if (contentType === undefined) throw new OcularError('not_found_error', `no image with id "${id}"`);
    return fileResponse(deps.library.blobSource(id), c.req.raw, { contentType, cacheControl: 'private, max-age=3600' });
  });
}

/** `POST /v1/images/search` for `owner`, as the route and the MCP tool answer it; signed URLs on `origin`. */
export async function searchImages(deps: ImageRouteDependencies, owner: string, body: unknown, origin: string, signal: AbortSignal) {
  const { imageUrl, ...request } = parseBody(searchImagesSchema, body);
  let image: Buffer | undefined;
  if (imageUrl !== undefined) {
    // Refused before anything is fetched when nothing could search with the picture.
    if (!deps.search.searchesByImage || deps.loadQueryImage === undefined) throw imageSearchUnavailable();
    image = await deps.loadQueryImage(imageUrl, 'image_url', signal);
  }
  const { hits, retrievers } = await deps.search.search({ owner, ...request, image }, signal);
  const results = hits.map((hit) => {
    const wire = toWireImage(hit.image, signedImageUrl(deps, origin, hit.image.id));
    return {
      image_id: wire.image_id,
      image_url: wire.image_url,
      score: hit.score,
      upload_timestamp: wire.upload_timestamp,
      image_metadata: toWireImageMetadata(hit.image),
    };
  });
  return { results, retrievers };
}

/** An image's signed file URL on `origin`. */
export function signedImageUrl(deps: ImageRouteDependencies, origin: string, id: string): string {
  return origin + deps.signer.sign(`/v1/images/${id}/file`, new Date(Date.now() + deps.urlTtlSeconds * 1000));
}

/** The image library API: uploads, images and search, each scoped to the caller's owner. */
export function registerImageRoutes(app: Hono<ImageEnv>, deps: ImageRouteDependencies, edge: RequestEdge): void {
  const { library } = deps;

  /** Absolute signed URLs: on `vision.publicBaseUrl` when set, else the origin the client reached this server on. */
  const wireImage = (c: Context, image: ImageRecord) =>
    toWireImage(image, signedImageUrl(deps, deps.publicBaseUrl ?? new URL(c.req.url).origin, image.id));

  // Each upload holds files on disk and decodes them: bounded with every other upload, before reading anything.
  app.post('/v1/images/upload', (c) =>
    edge.uploads.run(c, async (incoming) => {
      await mkdir(deps.incomingDir, { recursive: true, mode: 0o700 });
      const upload = await receiveMultipartUpload(incoming, {
        directory: deps.incomingDir,
        fileField: 'images',
        maxFiles: MAX_IMAGES_PER_UPLOAD,
        maxFileBytes: deps.maxImageBytes,
        limitName: 'media.maxBytes',
        allowedFields: IMAGE_UPLOAD_FIELD_NAMES,
      });
      try {
        if (upload.files.length === 0) throw validationError('send at least one image as an "images" file part', 'images');
        const requests = uploadRequests(upload.fields.metadata, upload.files.length);
        const images = await library.addImages(c.get('owner'), upload.files, requests);
        return c.json({ results: images.map((image) => wireImage(c, image)) });
      } finally {
        await Promise.all(upload.files.map((file) => rm(file.path, { force: true })));
      }
    }),
  );

  app.post('/v1/images/search', async (c) => {
    const origin = deps.publicBaseUrl ?? new URL(c.req.url).origin;
    const { retrievers, ...answer } = await searchImages(
      deps,
      c.get('owner'),
      await readJson(c, edge.bodyLimits),
      origin,
      edge.requestSignal(c),
    );
    c.header(RETRIEVERS_HEADER, retrievers.join(', '));
    return c.json(answer);
  });

  app.get('/v1/images', async (c) => {
    const query = parseBody(listImagesQuerySchema, c.req.query());
    const page = await library.listImages(c.get('owner'), query.limit, query.offset);
    return c.json({ results: page.items.map((image) => wireImage(c, image)), total: page.total, limit: query.limit, offset: query.offset });
  });

  app.get('/v1/images/:id', async (c) => c.json(wireImage(c, await library.getImage(c.get('owner'), imageId(c)))));

  app.delete('/v1/images/:id', async (c) => {
    const id = imageId(c);
    await library.deleteImage(c.get('owner'), id);
    return c.json({ image_id: id, deleted: true });
  });
}
