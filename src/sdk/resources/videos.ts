import type { Ocular, RequestOptions } from '../client.ts';
import { APIConnectionError, APITimeoutError, APIUserAbortError, OcularError, VideoIndexingError } from '../errors.ts';
import { parseServerSentEvents } from '../sse.ts';
import { sleep } from '../sleep.ts';
import type {
  Deleted,
  IndexingEvent,
  Page,
  PageParams,
  Video,
  VideoListParams,
  VideoSearchParams,
  VideoSearchResponse,
  VideoSegment,
} from '../types.ts';
import { baseName, iterate, multipartBody, type Uploadable, type UploadProgress } from '../uploads.ts';
import { VideoGroups } from './video-groups.ts';

export interface VideoUploadParams {
  /** The video: a path (Node; streamed from disk), a Blob or File, or a stream (sent once, never retried). */
  file?: Uploadable | undefined;
  /** Or a URL the server downloads the video from. */
  videoUrl?: string | undefined;
  /** @default the file's or URL's last path segment */
  name?: string | undefined;
  /** The file name sent with `file`. @default the path's or File's name, else `video.mp4` */
  fileName?: string | undefined;
  /** @default `default` */
  groupId?: string | undefined;
  /** Index it for search and QA. @default true */
  index?: boolean | undefined;
  enableThumbnails?: boolean | undefined;
  /** ISO 8601 wall-clock time of the video's first frame, for searches by time. */
  startTimestamp?: string | undefined;
  webhookUrl?: string | undefined;
  webhookSecret?: string | undefined;
  /** Called as the request body is sent. */
  onProgress?: ((progress: UploadProgress) => void) | undefined;
}

export interface WaitUntilIndexedOptions {
  /** Called with each indexing event (status, stage, percent). */
  onProgress?: ((event: IndexingEvent) => void) | undefined;
  signal?: AbortSignal | undefined;
  /** Milliseconds to wait in all; then `APITimeoutError`. @default no limit */
  timeout?: number | undefined;
}

const VIDEO_TYPES: Readonly<Record<string, string>> = {
  mp4: 'video/mp4',
  m4v: 'video/mp4',
  mov: 'video/quicktime',
  webm: 'video/webm',
  mkv: 'video/x-matroska',
  avi: 'video/x-msvideo',
};

/** Pause before reconnecting to a broken event stream. */
const RECONNECT_DELAY_MS = 1_000;

/** The video library: upload, list, get, delete, follow indexing, search; groups under `groups`. */
export class Videos {
  readonly #client: Ocular;
  readonly groups: VideoGroups;

  constructor(client: Ocular) {
    this.#client = client;
    this.groups = new VideoGroups(client);
  }

  /** `POST /v1/videos/upload`: a file (streamed, with progress) or a URL. Indexing starts unless `index: false`. */
  async upload(params: VideoUploadParams, options: RequestOptions = {}): Promise<Video> {
    if ((params.file === undefined) === (params.videoUrl === undefined)) {
      throw new OcularError('pass exactly one of `file` and `videoUrl`', { type: 'validation_error', param: 'file' });
    }
    const fileName =
      params.fileName ??
      (typeof params.file === 'string'
        ? baseName(params.file)
        : typeof File !== 'undefined' && params.file instanceof File
          ? params.file.name
          : 'video.mp4');
    const name = params.name ?? (params.videoUrl !== undefined ? baseName(params.videoUrl) || 'video' : fileName);
    const fields: Array<[string, string]> = [['video_name', name]];
    if (params.videoUrl !== undefined) fields.push(['video_url', params.videoUrl]);
    if (params.groupId !== undefined) fields.push(['group_id', params.groupId]);
    if (params.index !== undefined) fields.push(['index', String(params.index)]);
    if (params.enableThumbnails !== undefined) fields.push(['enable_thumbnails', String(params.enableThumbnails)]);
    if (params.startTimestamp !== undefined) fields.push(['video_start_absolute_timestamp', params.startTimestamp]);
    if (params.webhookUrl !== undefined) fields.push(['webhook_url', params.webhookUrl]);
    if (params.webhookSecret !== undefined) fields.push(['webhook_secret', params.webhookSecret]);
    const blobType = typeof Blob !== 'undefined' && params.file instanceof Blob ? params.file.type : '';
    const contentType = blobType || VIDEO_TYPES[fileName.split('.').pop()?.toLowerCase() ?? ''] || 'application/octet-stream';
    const files = params.file === undefined ? [] : [{ field: 'file', file: params.file, fileName, contentType }];
    const body = await multipartBody(fields, files, params.onProgress);
    return this.#client.request<Video>({ ...options, method: 'POST', path: '/v1/videos/upload', rawBody: body });
  }

  get(id: string, options: RequestOptions = {}): Promise<Video> {
    return this.#client.request({ ...options, method: 'GET', path: `/v1/videos/${encodeURIComponent(id)}` });
  }

  list(params: VideoListParams = {}, options: RequestOptions = {}): Promise<Page<Video>> {
    return this.#client.request({ ...options, method: 'GET', path: '/v1/videos', query: { ...params } });
  }

  delete(id: string, options: RequestOptions = {}): Promise<Deleted & { video_id: string }> {
    return this.#client.request({ ...options, method: 'DELETE', path: `/v1/videos/${encodeURIComponent(id)}` });
  }

  /** The indexed segments of a video: times, caption, transcript, on-screen text, objects, keyframes. */
  segments(id: string, params: PageParams = {}, options: RequestOptions = {}): Promise<Page<VideoSegment>> {
    return this.#client.request({ ...options, method: 'GET', path: `/v1/videos/${encodeURIComponent(id)}/segments`, query: { ...params } });
  }

  /** `POST /v1/videos/search`: time ranges of the caller's videos that match the query, best first. */
  search(params: VideoSearchParams, options: RequestOptions = {}): Promise<VideoSearchResponse> {
    return this.#client.request({ ...options, method: 'POST', path: '/v1/videos/search', body: params });
  }

  /**
   * Follows a video's indexing over `GET /v1/videos/{id}/events` (server-sent events) and resolves with the
   * indexed video. Rejects with `VideoIndexingError` when indexing fails or the video is not queued for it, and
   * `APITimeoutError` after `timeout`. A broken event stream is reconnected (the server starts with the current
   * state, so nothing is missed).
   */
  async waitUntilIndexed(id: string, options: WaitUntilIndexedOptions = {}): Promise<Video> {
    const deadline = options.timeout === undefined ? Infinity : Date.now() + options.timeout;
    const path = `/v1/videos/${encodeURIComponent(id)}/events`;
    for (;;) {
      const left = deadline - Date.now();
      if (left <= 0) throw new APITimeoutError(`video ${id} was not indexed within ${options.timeout} ms`);
      let last: IndexingEvent | undefined;
      // Failing to connect (after the client's retries) is an error; a stream that breaks once open is followed again.
      const { response, requestSignal, done } = await this.#client.send({
        method: 'GET',
        path,
        signal: options.signal,
        timeout: left,
        headers: { accept: 'text/event-stream' },
      });
      try {
        if (response.body) {
          for await (const event of parseServerSentEvents(iterate(response.body))) {
            if (event.event !== 'progress' && event.event !== 'done') continue;
            const data = JSON.parse(event.data) as IndexingEvent;
            last = data;
            if (event.event === 'progress') options.onProgress?.(data);
            else break;
          }
        }
      } catch (caught) {
        const error = this.#client.readError(caught, options.signal, requestSignal);
        if (!(error instanceof APIConnectionError) || error instanceof APITimeoutError) throw error;
        last = undefined; // the stream broke: follow it again below
      } finally {
        done();
      }
      if (last?.indexing_status === 'indexed') return this.get(id, { signal: options.signal });
      if (last?.indexing_status === 'failed') {
        throw new VideoIndexingError(`indexing video ${id} failed: ${last.error ?? 'unknown error'}`, 'failed');
      }
      if (last?.indexing_status === 'pending') {
        throw new VideoIndexingError(`video ${id} is not queued for indexing (uploaded with index: false?)`, 'pending');
      }
      // The stream ended without a final event (a restart, a proxy): wait a moment and follow it again.
      await sleep(Math.min(RECONNECT_DELAY_MS, Math.max(0, deadline - Date.now())), options.signal);
    }
  }
}
