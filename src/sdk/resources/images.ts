import type { Ocular, RequestOptions } from '../client.ts';
import type { Deleted, Image, ImageSearchHit, ImageSearchParams, Page, PageParams } from '../types.ts';
import { baseName, multipartBody, type Uploadable, type UploadProgress } from '../uploads.ts';

export interface ImageUploadItem {
  /** A path (Node), a Blob or File, or a stream. */
  file: Uploadable;
  /** @default the path's or File's name, else `image` */
  fileName?: string | undefined;
  /** Whether to index it (caption, on-screen text, objects) for search. @default true */
  index?: boolean | undefined;
  /** Your own metadata, kept with the image (at most 4,000 characters as JSON). */
  metadata?: Record<string, unknown> | undefined;
}

export interface ImageUploadParams {
  /** Up to 16 images. */
  images: ImageUploadItem[];
  onProgress?: ((progress: UploadProgress) => void) | undefined;
}

const MEDIA_TYPES: Readonly<Record<string, string>> = {
  png: 'image/png',
  jpg: 'image/jpeg',
  jpeg: 'image/jpeg',
  webp: 'image/webp',
  gif: 'image/gif',
};

/** The image library: upload, list, get, delete and search images. */
export class Images {
  readonly #client: Ocular;

  constructor(client: Ocular) {
    this.#client = client;
  }

  /** `POST /v1/images/upload`: stores the images (and indexes them unless told not to). */
  async upload(params: ImageUploadParams, options: RequestOptions = {}): Promise<Image[]> {
    const files = params.images.map((item) => {
      const fileName =
        item.fileName ??
        (typeof item.file === 'string'
          ? baseName(item.file)
          : typeof File !== 'undefined' && item.file instanceof File
            ? item.file.name
            : 'image');
      const extension = fileName.split('.').pop()?.toLowerCase() ?? '';
      const contentType =
        typeof Blob !== 'undefined' && item.file instanceof Blob && item.file.type ? item.file.type : MEDIA_TYPES[extension];
      return { field: 'images', file: item.file, fileName, contentType: contentType ?? 'application/octet-stream' };
    });
    const requests = params.images.map((item) => ({
      indexing_config: { index: item.index ?? true },
      ...(item.metadata === undefined ? {} : { metadata: item.metadata }),
    }));
    const body = await multipartBody([['metadata', JSON.stringify({ requests })]], files, params.onProgress);
    const answer = await this.#client.request<{ results: Image[] }>({
      ...options,
      method: 'POST',
      path: '/v1/images/upload',
      rawBody: body,
    });
    return answer.results;
  }

  list(params: PageParams = {}, options: RequestOptions = {}): Promise<Page<Image>> {
    return this.#client.request({ ...options, method: 'GET', path: '/v1/images', query: { ...params } });
  }

  get(id: string, options: RequestOptions = {}): Promise<Image> {
    return this.#client.request({ ...options, method: 'GET', path: `/v1/images/${encodeURIComponent(id)}` });
  }

  delete(id: string, options: RequestOptions = {}): Promise<Deleted & { image_id: string }> {
    return this.#client.request({ ...options, method: 'DELETE', path: `/v1/images/${encodeURIComponent(id)}` });
  }

  /** `POST /v1/images/search`: images whose caption, text or objects match the query. */
  async search(params: ImageSearchParams, options: RequestOptions = {}): Promise<ImageSearchHit[]> {
    const answer = await this.#client.request<{ results: ImageSearchHit[] }>({
      ...options,
      method: 'POST',
      path: '/v1/images/search',
      body: params,
    });
    return answer.results;
  }
}
