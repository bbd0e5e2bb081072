// Written against the wire format of src/server/wire/clips.ts (`POST/GET /v1/clips`, `GET/DELETE /v1/clips/{id}`,
// `GET /v1/clips/{id}/events`).
import type { Ocular, RequestOptions } from '../client.ts';
import { APIConnectionError, APITimeoutError, ClipGenerationError } from '../errors.ts';
import { sleep } from '../sleep.ts';
import { parseServerSentEvents } from '../sse.ts';
import type { Deleted, Page, PageParams } from '../types.ts';
import { iterate } from '../uploads.ts';

export type ClipStatus = 'queued' | 'processing' | 'completed' | 'failed';

export interface ClipGenerationConfig {
  /** `moments`: one clip per moment; `compilation`: moments joined into one video. @default moments */
  template?: 'moments' | 'compilation' | null | undefined;
  /** Outputs to make, 1 to 3. @default 1 */
  num_generations?: number | null | undefined;
  /** @default 0 */
  min_duration_seconds?: number | null | undefined;
  /** At most 600. @default 30 */
  max_duration_seconds?: number | null | undefined;
  source_start_time?: number | null | undefined;
  source_end_time?: number | null | undefined;
}

export interface ClipRenderingConfig {
  /** Burn the transcript in as subtitles. @default false */
  subtitles?: boolean | null | undefined;
  aspect_ratio?: '16:9' | '9:16' | '1:1' | null | undefined;
  /** Output height in pixels, 240 to 1080. @default the source's */
  resolution?: number | null | undefined;
  /** How the frame reaches another aspect ratio. @default crop */
  fit?: 'crop' | 'pad' | null | undefined;
}

export interface ClipCreateParams {
  /** Videos of the caller's library (up to 10); or `video_urls`, which the server fetches first. Exactly one. */
  video_ids?: string[] | undefined;
  video_urls?: string[] | undefined;
  /** What to cut out, in words. */
  prompt: string;
  generation_config?: ClipGenerationConfig | undefined;
  rendering_config?: ClipRenderingConfig | undefined;
}

export interface ClipMoment {
  video_id: string;
  start: number;
  end: number;
}

export interface ClipOutput {
  /** A signed URL of the rendered MP4. */
  url: string;
  title: string;
  start: number;
  end: number;
  duration: number;
  video_id: string;
  moments: ClipMoment[];
}

export interface Clip {
  id: string;
  status: ClipStatus;
  created_at: string;
  updated_at: string;
  prompt: string;
  video_urls: string[] | null | undefined;
  video_ids: string[] | null | undefined;
  generation_config: Required<{ [K in keyof ClipGenerationConfig]: NonNullable<ClipGenerationConfig[K]> | null }>;
  rendering_config: Required<{ [K in keyof ClipRenderingConfig]: NonNullable<ClipRenderingConfig[K]> | null }>;
  /** 0 to 1. */
  progress: number;
  stage: string | null;
  error_message?: string | undefined;
  output: ClipOutput[];
}

/** One event of `GET /v1/clips/{id}/events`. */
export interface ClipProgressEvent {
  id: string;
  status: ClipStatus;
  stage: string | null;
  progress: number;
  percent: number;
  error_message?: string | undefined;
}

export interface WaitUntilDoneOptions {
  /** Called with each progress event. */
  onProgress?: ((event: ClipProgressEvent) => void) | undefined;
  signal?: AbortSignal | undefined;
  /** Milliseconds to wait in all before an `APITimeoutError`. @default no limit */
  timeout?: number | undefined;
}

const RECONNECT_DELAY_MS = 1_000;

/** Short videos cut from the library by a prompt (`/v1/clips`): a durable job, followed over its events stream. */
export class Clips {
  readonly #client: Ocular;

  constructor(client: Ocular) {
    this.#client = client;
  }

  /** Queues a clip request; it is answered at once with status `queued`. */
  create(params: ClipCreateParams, options: RequestOptions = {}): Promise<Clip> {
    return this.#client.request({ ...options, method: 'POST', path: '/v1/clips', body: params });
  }

  get(id: string, options: RequestOptions = {}): Promise<Clip> {
    return this.#client.request({ ...options, method: 'GET', path: `/v1/clips/${encodeURIComponent(id)}` });
  }

  /** The caller's clips, newest first. */
  async list(params: PageParams = {}, options: RequestOptions = {}): Promise<Page<Clip>> {
    return this.#client.request({ ...options, method: 'GET', path: '/v1/clips', query: { limit: params.limit, offset: params.offset } });
  }

  /** Deletes a clip (cancelling it while it runs) and its rendered outputs. */
  delete(id: string, options: RequestOptions = {}): Promise<Deleted> {
    return this.#client.request({ ...options, method: 'DELETE', path: `/v1/clips/${encodeURIComponent(id)}` });
  }

  /**
   * Follows the clip's events stream until it has completed (resolving with the clip, its outputs' URLs signed)
   * or failed (rejecting with `ClipGenerationError`). A stream that breaks is followed again.
   */
  async waitUntilDone(id: string, options: WaitUntilDoneOptions = {}): Promise<Clip> {
    const deadline = options.timeout === undefined ? Infinity : Date.now() + options.timeout;
    const path = `/v1/clips/${encodeURIComponent(id)}/events`;
    for (;;) {
      const left = deadline - Date.now();
      if (left <= 0) throw new APITimeoutError(`clip ${id} was not done within ${options.timeout} ms`);
      let last: ClipProgressEvent | undefined;
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
            const data = JSON.parse(event.data) as ClipProgressEvent;
            last = data;
            options.onProgress?.(data);
            if (event.event === 'done') break;
          }
        }
      } catch (caught) {
        const error = this.#client.readError(caught, options.signal, requestSignal);
        if (!(error instanceof APIConnectionError) || error instanceof APITimeoutError) throw error;
        last = undefined;
      } finally {
        done();
      }
      if (last?.status === 'completed') return this.get(id, { signal: options.signal });
      if (last?.status === 'failed') {
        throw new ClipGenerationError(`clip ${id} failed: ${last.error_message ?? 'unknown error'}`, last.stage);
      }
      await sleep(Math.min(RECONNECT_DELAY_MS, Math.max(0, deadline - Date.now())), options.signal);
    }
  }
}
