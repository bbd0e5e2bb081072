import { APITimeoutError, OcularError } from '../errors.ts';
import { sleep } from '../sleep.ts';
import type { Ocular, RequestOptions } from '../client.ts';
import type { Deleted, Page, PageParams } from '../types.ts';

export interface ClipCreateParams {
  /** Videos of the caller's library; or `video_urls`, which the server fetches, stores and indexes first. */
  video_ids?: string[] | undefined;
  video_urls?: string[] | undefined;
  prompt: string;
  generation_config?:
    | {
        template?: 'moments' | 'compilation' | undefined;
        num_generations?: number | undefined;
        min_duration_seconds?: number | undefined;
        max_duration_seconds?: number | undefined;
        source_start_time?: number | undefined;
        source_end_time?: number | undefined;
      }
    | undefined;
  rendering_config?:
    { subtitles?: boolean | undefined; aspect_ratio?: '16:9' | '9:16' | '1:1' | undefined; resolution?: number | undefined } | undefined;
}

export interface ClipOutput {
  /** A signed URL of the rendered MP4 (Range requests work). */
  url: string;
  start: number;
  end: number;
  title: string;
  [key: string]: unknown;
}

export interface Clip {
  id: string;
  status: 'queued' | 'processing' | 'completed' | 'failed';
  prompt: string;
  progress?: number;
  stage?: string | null;
  output?: ClipOutput[];
  error_message?: string | null;
  [key: string]: unknown;
}

export interface WaitUntilDoneOptions {
  onProgress?: ((clip: Clip) => void) | undefined;
  signal?: AbortSignal | undefined;
  /** Milliseconds. @default no limit */
  timeout?: number | undefined;
  /** Milliseconds between looks. @default 1000 */
  interval?: number | undefined;
}

/** Clip generation (`/v1/clips`): a durable job per request. */
export class Clips {
  readonly #client: Ocular;

  constructor(client: Ocular) {
    this.#client = client;
  }

  create(params: ClipCreateParams, options: RequestOptions = {}): Promise<Clip> {
    return this.#client.request({ ...options, method: 'POST', path: '/v1/clips', body: params });
  }

  get(id: string, options: RequestOptions = {}): Promise<Clip> {
    return this.#client.request({ ...options, method: 'GET', path: `/v1/clips/${encodeURIComponent(id)}` });
  }

  list(params: PageParams = {}, options: RequestOptions = {}): Promise<Page<Clip>> {
    return this.#client.request({ ...options, method: 'GET', path: '/v1/clips', query: { ...params } });
  }

  delete(id: string, options: RequestOptions = {}): Promise<Deleted & { id: string }> {
    return this.#client.request({ ...options, method: 'DELETE', path: `/v1/clips/${encodeURIComponent(id)}` });
  }

  /** Resolves with the completed clip; rejects when the job failed, on `timeout`, or when `signal` aborts. */
  async waitUntilDone(id: string, options: WaitUntilDoneOptions = {}): Promise<Clip> {
    const deadline = options.timeout === undefined ? Infinity : Date.now() + options.timeout;
    for (;;) {
      const clip = await this.get(id, { signal: options.signal });
      options.onProgress?.(clip);
      if (clip.status === 'completed') return clip;
      if (clip.status === 'failed')
        throw new OcularError(`clip ${id} failed: ${clip.error_message ?? 'unknown error'}`, { type: 'clip_failed' });
      if (Date.now() >= deadline) throw new APITimeoutError(`clip ${id} was not done within ${options.timeout} ms`);
      await sleep(Math.min(options.interval ?? 1_000, Math.max(0, deadline - Date.now())), options.signal);
    }
  }
}
