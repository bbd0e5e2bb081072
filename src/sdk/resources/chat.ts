import { ChatStream } from '../chat-stream.ts';
import type { Ocular, RequestOptions } from '../client.ts';
import type { ChatCreateParams, ChatResponse } from '../types.ts';

/** `POST /v1/chat` (Reka Chat API): answers from the server's models, with images, video, audio and PDFs. */
export class Chat {
  readonly #client: Ocular;

  constructor(client: Ocular) {
    this.#client = client;
  }

  /** One whole answer. */
  create(params: ChatCreateParams, options: RequestOptions = {}): Promise<ChatResponse> {
    return this.#client.request<ChatResponse>({ ...options, method: 'POST', path: '/v1/chat', body: { ...params, stream: false } });
  }

  /**
   * The answer as it is generated. Resolves once the server has accepted the request (HTTP errors reject here,
   * typed); the stream's own errors are thrown while iterating it.
   */
  async createStream(params: ChatCreateParams, options: RequestOptions = {}): Promise<ChatStream> {
    const controller = new AbortController();
    // The caller's signal aborts the stream as abort() does; the stream's controller is the one signal below.
    if (options.signal?.aborted) controller.abort();
    options.signal?.addEventListener('abort', () => controller.abort(), { once: true });
    const signal = controller.signal;
    const { response, requestSignal, done } = await this.#client.send({
      ...options,
      signal,
      method: 'POST',
      path: '/v1/chat',
      body: { ...params, stream: true },
      headers: { accept: 'text/event-stream', ...options.headers },
    });
    return new ChatStream(this.#client, response, controller, requestSignal, done);
  }
}
