import type { Ocular } from './client.ts';
import { APIUserAbortError, makeStatusError, OcularError } from './errors.ts';
import { parseServerSentEvents } from './sse.ts';
import type { ChatStreamChunk, ChatStreamResult, ToolCall } from './types.ts';
import { iterate } from './uploads.ts';

/**
 * A streamed chat answer: iterate it for the chunks as they come (`for await (const chunk of stream)`), or
 * `textDeltas()` for just the new text of each; `abort()` stops it (iteration then ends quietly);
 * `finalResult()` resolves with the whole text, finish reason and usage once the stream has ended.
 * A stream can be iterated once.
 */
export class ChatStream implements AsyncIterable<ChatStreamChunk> {
  /** Aborts the underlying request. */
  readonly controller: AbortController;
  readonly #client: Ocular;
  readonly #response: Response;
  readonly #requestSignal: AbortSignal;
  readonly #done: () => void;
  #consumed = false;
  #text = '';
  #id = '';
  #model = '';
  #finishReason: ChatStreamResult['finishReason'] = null;
  #toolCalls: ToolCall[] = [];
  #usage: ChatStreamResult['usage'];
  #ended = false;
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

  /** The server's `X-Request-ID` for this stream. */
  get requestId(): string | undefined {
    return this.#response.headers.get('x-request-id') ?? undefined;
  }

  /** The text received so far. */
  get text(): string {
    return this.#text;
  }

  get aborted(): boolean {
    return this.controller.signal.aborted;
  }

  /** Stops the stream: the request is cancelled and iteration ends. */
  abort(): void {
    this.controller.abort();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<ChatStreamChunk> {
    if (this.#consumed)
      throw new OcularError('this stream has already been read; a stream can be iterated once', { type: 'stream_consumed' });
    this.#consumed = true;
    const body = this.#response.body;
    try {
      if (!body) return;
      for await (const event of parseServerSentEvents(iterate(body))) {
        if (event.event === 'error') throw this.#streamError(event.data);
        if (event.data === '[DONE]') break;
        let chunk: ChatStreamChunk;
        try {
          chunk = JSON.parse(event.data) as ChatStreamChunk;
        } catch {
          throw new OcularError('the stream sent an event that is not JSON', { type: 'invalid_response', requestId: this.requestId });
        }
        this.#absorb(chunk);
        yield chunk;
      }
      this.#ended = true;
    } catch (error) {
      if (this.controller.signal.aborted) return; // abort() ends the iteration quietly
      this.#failure = this.#client.readError(error, undefined, this.#requestSignal);
      throw this.#failure;
    } finally {
      this.#done();
      // Leaving the loop early (break, an exception in the caller's loop body) cancels the request.
      if (!this.#ended) this.controller.abort();
      this.#settle();
    }
  }

  /** The new text of each chunk (Reka's chunks repeat the text so far). */
  async *textDeltas(): AsyncGenerator<string> {
    let previous = '';
    for await (const chunk of this) {
      const content = chunk.responses[0]?.chunk.content ?? '';
      const delta = content.startsWith(previous) ? content.slice(previous.length) : content;
      previous = content;
      if (delta !== '') yield delta;
    }
  }

  /**
   * The whole answer once the stream has ended, reading what is left of it if nobody is iterating. Rejects with
   * `APIUserAbortError` when the stream was aborted, or with the stream's error.
   */
  async finalResult(): Promise<ChatStreamResult> {
    if (!this.#consumed) {
      for await (const _chunk of this) {
        // read to the end
      }
    } else await this.#settled;
    if (this.#failure) throw this.#failure;
    if (!this.#ended) throw new APIUserAbortError('the stream was aborted before it ended');
    return {
      id: this.#id,
      model: this.#model,
      text: this.#text,
      finishReason: this.#finishReason,
      toolCalls: this.#toolCalls,
      usage: this.#usage,
    };
  }

  #absorb(chunk: ChatStreamChunk): void {
    this.#id = chunk.id;
    this.#model = chunk.model;
    const first = chunk.responses[0];
    if (first) {
      this.#text = first.chunk.content;
      if (first.finish_reason !== null) this.#finishReason = first.finish_reason;
      if (first.chunk.tool_calls) this.#toolCalls = first.chunk.tool_calls;
    }
    if (chunk.usage) this.#usage = chunk.usage;
  }

  /** An `event: error` the server sent mid-stream (after the 200), as the typed error for its type. */
  #streamError(data: string): OcularError {
    let body: unknown = data;
    try {
      body = JSON.parse(data);
    } catch {
      // not JSON: the text is the message
    }
    const type = (body as { error?: { type?: string } })?.error?.type;
    const headers = new Headers(this.#response.headers);
    return makeStatusError(statusOfType(type), body, headers);
  }
}

/** Ocular's error types and their statuses (src/spec/errors.ts), for errors that arrive inside a stream. */
const STATUS_OF_TYPE: Readonly<Record<string, number>> = {
  validation_error: 400,
  authentication_error: 401,
  permission_error: 403,
  not_found_error: 404,
  conflict_error: 409,
  payload_too_large: 413,
  unsupported_media_type: 415,
  rate_limit_error: 429,
  server_error: 500,
  upstream_error: 502,
  unavailable_error: 503,
  timeout_error: 504,
};

export function statusOfType(type: string | undefined): number {
  return (type !== undefined ? STATUS_OF_TYPE[type] : undefined) ?? 500;
}
