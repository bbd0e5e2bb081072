// Written against the wire format in issue 12 ("Video QA: POST /v1/qa/chat"), built in parallel with this SDK:
// `{ video_id | video_url, messages, model?, wait? }` answered with `{ chat_response, status }`.
import { statusOfType } from '../chat-stream.ts';
import type { Ocular, RequestOptions } from '../client.ts';
import { APIUserAbortError, makeStatusError, OcularError } from '../errors.ts';
import { parseServerSentEvents } from '../sse.ts';
import { iterate } from '../uploads.ts';
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

  /**
   * The answer streamed (`stream: true`): iterate the returned stream for the new text of each event;
   * `abort()` stops it; `finalResponse()` resolves with the whole answer and its `status`.
   */
  async chatStream(params: QaChatParams, options: RequestOptions = {}): Promise<QaChatStream> {
    const controller = new AbortController();
    if (options.signal?.aborted) controller.abort();
    options.signal?.addEventListener('abort', () => controller.abort(), { once: true });
    const { response, requestSignal, done } = await this.#client.send({
      ...options,
      signal: controller.signal,
      method: 'POST',
      path: '/v1/qa/chat',
      body: { ...params, stream: true },
      headers: { accept: 'text/event-stream', ...options.headers },
    });
    return new QaChatStream(this.#client, response, controller, requestSignal, done);
  }
}

/**
 * A streamed video QA answer: an async iterable of text deltas (each event of Reka's QA stream carries the text so
 * far; this yields what is new). Iterable once; `abort()` ends the iteration quietly.
 */
export class QaChatStream implements AsyncIterable<string> {
  readonly controller: AbortController;
  readonly #client: Ocular;
  readonly #response: Response;
  readonly #requestSignal: AbortSignal;
  readonly #done: () => void;
  #consumed = false;
  #text = '';
  #status: string | undefined;
  #failure: OcularError | undefined;
  readonly #settled: Promise<void>;
  #settle: () => void = () => {};

  constructor(client: Ocular, response: Response, controller: AbortController, requestSignal: AbortSignal, done: () => void) {
    this.#client = client;
    this.#response = response;
    this.controller = controller;
    this.#requestSignal = requestSignal;
    this.#done = done;
    this.#settled = new Promise((resolve) => (this.#settle = resolve));
  }

  get requestId(): string | undefined {
    return this.#response.headers.get('x-request-id') ?? undefined;
  }

  /** The answer so far. */
  get text(): string {
    return this.#text;
  }

  abort(): void {
    this.controller.abort();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<string> {
    if (this.#consumed)
      throw new OcularError('this stream has already been read; a stream can be iterated once', { type: 'stream_consumed' });
    this.#consumed = true;
    const body = this.#response.body;
    try {
      if (!body) return;
      for await (const event of parseServerSentEvents(iterate(body))) {
        if (event.event === 'error') throw this.#streamError(event.data);
        let data: Partial<QaChatResponse>;
        try {
          data = JSON.parse(event.data) as Partial<QaChatResponse>;
        } catch {
          throw new OcularError('the stream sent an event that is not JSON', { type: 'invalid_response', requestId: this.requestId });
        }
        const content = data.chat_response ?? '';
        const delta = content.startsWith(this.#text) ? content.slice(this.#text.length) : content;
        this.#text = content;
        if (delta !== '') yield delta;
        if (data.status !== undefined) {
          this.#status = data.status;
          break;
        }
      }
    } catch (error) {
      if (this.controller.signal.aborted) return;
      this.#failure = this.#client.readError(error, undefined, this.#requestSignal);
      throw this.#failure;
    } finally {
      this.#done();
      if (this.#status === undefined) this.controller.abort();
      this.#settle();
    }
  }

  /** The whole answer once the stream has ended (reading the rest if nobody iterates). */
  async finalResponse(): Promise<QaChatResponse> {
    if (!this.#consumed) {
      for await (const _delta of this) {
        // read to the end
      }
    } else await this.#settled;
    if (this.#failure) throw this.#failure;
    if (this.#status === undefined) throw new APIUserAbortError('the stream was aborted before it ended');
    return { chat_response: this.#text, status: this.#status };
  }

  #streamError(data: string): OcularError {
    let body: unknown = data;
    try {
      body = JSON.parse(data);
    } catch {
      // not JSON: the text is the message
    }
    const type = (body as { error?: { type?: string } })?.error?.type;
    return makeStatusError(statusOfType(type), body, new Headers(this.#response.headers));
  }
}
