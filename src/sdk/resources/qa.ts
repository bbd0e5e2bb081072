// Written against the wire format in issue 12 ("Video QA: POST /v1/qa/chat"), built in parallel with this SDK:
// `{ video_id | video_url, messages, model?, wait? }` answered with `{ chat_response, status }`.
import type { Ocular, RequestOptions } from '../client.ts';
import type { ChatMessage } from '../types.ts';

export interface QaChatParams {
  /** A video of the caller's library; or `video_url`, which the server fetches, stores and indexes first. */
  video_id?: string | undefined;
  video_url?: string | undefined;
  /** The conversation about the video; the last user message is the question. */
  messages: ChatMessage[];
  model?: string | undefined;
  /** Wait (bounded, server-side) for a video still being indexed instead of a 409. */
  wait?: boolean | undefined;
}

export interface QaChatResponse {
  /** The answer, citing times as `[mm:ss]`. */
  chat_response: string;
  status: string;
}

/** Questions about one video, answered from its index (`POST /v1/qa/chat`). */
export class Qa {
  readonly #client: Ocular;

  constructor(client: Ocular) {
    this.#client = client;
  }

  chat(params: QaChatParams, options: RequestOptions = {}): Promise<QaChatResponse> {
    return this.#client.request({ ...options, method: 'POST', path: '/v1/qa/chat', body: { ...params, stream: false } });
  }
}
