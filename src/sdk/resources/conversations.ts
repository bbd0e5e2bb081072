// Written against src/server/wire/conversations.ts: the "Chat with Image" API (`/api/assets`, `/api/conversations`,
// `POST /api/features`, `/api/memory`). Its requests use camelCase names, as its clients send them.
import { statusOfType } from '../chat-stream.ts';
import type { Ocular, RequestOptions } from '../client.ts';
import { APIUserAbortError, makeStatusError, OcularError } from '../errors.ts';
import { parseServerSentEvents } from '../sse.ts';
import type { PageParams } from '../types.ts';
import { baseName, iterate, multipartBody, type Uploadable, type UploadProgress } from '../uploads.ts';

export interface Asset {
  key: string;
  kind: string;
  mime_type: string;
  size: number;
  width: number | null;
  height: number | null;
  duration_seconds: number | null;
  filename: string | null;
  created_at: string;
  /** A signed URL of the file (no key needed; it expires at `url_expires_at`). */
  url: string;
  url_expires_at: string;
}

export interface AssetUploadParams {
  /** A path (Node; streamed from disk), a Blob or File, or a stream (sent once, never retried). */
  file: Uploadable;
  /** @default the path's or File's name, else `asset` */
  fileName?: string | undefined;
  onProgress?: ((progress: UploadProgress) => void) | undefined;
}

export interface Usage {
  input_tokens: number;
  output_tokens: number;
}

export interface Conversation {
  uuid: string;
  type: 'CHAT_WITH_IMAGE';
  title: string | null;
  model: string | null;
  created_at: string;
  updated_at: string;
  turn_count: number;
  usage: Usage;
}

export interface WebSource {
  index: number;
  title: string;
  url: string;
}

export interface AssistantMessage {
  id: string;
  role: 'assistant';
  content: string;
  model: string;
  finish_reason: string;
  usage: Usage;
  latency_ms: number;
  sources: WebSource[];
  created_at: string;
}

export interface UserMessage {
  id: string;
  role: 'user';
  content: string;
  imageList: string[];
  created_at: string;
}

export interface ConversationWithMessages extends Conversation {
  messages: Array<UserMessage | AssistantMessage>;
}

export interface ConversationCreateParams {
  title?: string | null | undefined;
  model?: string | null | undefined;
}

export interface ConversationSendParams {
  /** Omit (or null) to start a new conversation. */
  conversationId?: string | null | undefined;
  prompt: string;
  /** Keys of assets from `client.assets.upload`, shown to the model with this turn. */
  imageList?: string[] | undefined;
  model?: string | null | undefined;
  webSearch?: boolean | undefined;
  /** Result pages read for a web search (1-10). @default 3 */
  numOfSite?: number | undefined;
  /** Words kept from each page. @default 300 */
  maxWord?: number | undefined;
}

export interface ConversationSendResponse {
  conversationId: string;
  title: string | null;
  message: AssistantMessage;
}

export interface ConversationStreamResult {
  conversationId: string;
  messageId: string;
  model: string;
  text: string;
  finish_reason: string;
  usage: Usage;
}

export interface Memory {
  id: string;
  text: string;
  conversation_id: string | null;
  created_at: string;
}

const body = (params: ConversationSendParams) => ({
  type: 'CHAT_WITH_IMAGE' as const,
  model: params.model ?? null,
  conversationId: params.conversationId ?? null,
  promptObject: {
    prompt: params.prompt,
    imageList: params.imageList ?? [],
    ...(params.webSearch === undefined ? {} : { webSearch: params.webSearch }),
    ...(params.numOfSite === undefined ? {} : { numOfSite: params.numOfSite }),
    ...(params.maxWord === undefined ? {} : { maxWord: params.maxWord }),
  },
});

/** Server-side conversations about images (and other assets), each turn one `POST /api/features`. */
export class Conversations {
  readonly #client: Ocular;

  constructor(client: Ocular) {
    this.#client = client;
  }

  async create(params: ConversationCreateParams = {}, options: RequestOptions = {}): Promise<Conversation> {
    const answer = await this.#client.request<{ conversation: Conversation }>({
      ...options,
      method: 'POST',
      path: '/api/conversations',
      body: { type: 'CHAT_WITH_IMAGE', ...params },
    });
    return answer.conversation;
  }

  list(
    params: PageParams = {},
    options: RequestOptions = {},
  ): Promise<{ conversations: Conversation[]; total: number; limit: number; offset: number }> {
    return this.#client.request({ ...options, method: 'GET', path: '/api/conversations', query: { ...params } });
  }

  /** A conversation with its messages. */
  async get(id: string, options: RequestOptions = {}): Promise<ConversationWithMessages> {
    const answer = await this.#client.request<{ conversation: ConversationWithMessages }>({
      ...options,
      method: 'GET',
      path: `/api/conversations/${encodeURIComponent(id)}`,
    });
    return answer.conversation;
  }

  delete(id: string, options: RequestOptions = {}): Promise<{ uuid: string; deleted: true }> {
    return this.#client.request({ ...options, method: 'DELETE', path: `/api/conversations/${encodeURIComponent(id)}` });
  }

  /** The conversation as a Markdown document (the default), or as JSON with its messages. */
  export(id: string, params: { format: 'json' }, options?: RequestOptions): Promise<ConversationWithMessages>;
  export(id: string, params?: { format?: 'markdown' }, options?: RequestOptions): Promise<string>;
  async export(
    id: string,
    params: { format?: 'markdown' | 'json' } = {},
    options: RequestOptions = {},
  ): Promise<string | ConversationWithMessages> {
    const format = params.format ?? 'markdown';
    const path = `/api/conversations/${encodeURIComponent(id)}/export`;
    if (format === 'json') {
      const answer = await this.#client.request<{ conversation: ConversationWithMessages }>({
        ...options,
        method: 'GET',
        path,
        query: { format },
      });
      return answer.conversation;
    }
    const { response, requestSignal, done } = await this.#client.send({ ...options, method: 'GET', path, query: { format } });
    try {
      return await response.text();
    } catch (error) {
      throw this.#client.readError(error, options.signal, requestSignal);
    } finally {
      done();
    }
  }

  /** One turn, answered whole; without `conversationId` it starts a conversation. */
  send(params: ConversationSendParams, options: RequestOptions = {}): Promise<ConversationSendResponse> {
    return this.#client.request({ ...options, method: 'POST', path: '/api/features', body: body(params) });
  }

  /** One turn, streamed: an async iterable of text deltas; `abort()` stops it; `finalResult()` has the ids and usage. */
  async sendStream(params: ConversationSendParams, options: RequestOptions = {}): Promise<ConversationStream> {
    const controller = new AbortController();
    if (options.signal?.aborted) controller.abort();
    options.signal?.addEventListener('abort', () => controller.abort(), { once: true });
    const { response, requestSignal, done } = await this.#client.send({
      ...options,
      signal: controller.signal,
      method: 'POST',
      path: '/api/features',
      query: { isStreaming: 'true' },
      body: body(params),
      headers: { accept: 'text/event-stream', ...options.headers },
    });
    return new ConversationStream(this.#client, response, controller, requestSignal, done);
  }
}

/** A streamed turn: `start` (ids), `delta` events (yielded as text), then `done` (usage) or `error`. */
export class ConversationStream implements AsyncIterable<string> {
  readonly controller: AbortController;
  readonly #client: Ocular;
  readonly #response: Response;
  readonly #requestSignal: AbortSignal;
  readonly #done: () => void;
  #consumed = false;
  #text = '';
  #final: Omit<ConversationStreamResult, 'text'> | undefined;
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

  /** The conversation this turn belongs to (a new one when none was given). */
  get conversationId(): string | undefined {
    return this.#response.headers.get('x-conversation-id') ?? undefined;
  }

  get messageId(): string | undefined {
    return this.#response.headers.get('x-message-id') ?? undefined;
  }

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
    const stream = this.#response.body;
    try {
      if (!stream) return;
      for await (const event of parseServerSentEvents(iterate(stream))) {
        if (event.event === 'error') throw this.#streamError(event.data);
        if (event.event !== 'delta' && event.event !== 'done') continue;
        let data: unknown;
        try {
          data = JSON.parse(event.data);
        } catch {
          throw new OcularError('the stream sent an event that is not JSON', { type: 'invalid_response' });
        }
        if (event.event === 'done') {
          this.#final = data as Omit<ConversationStreamResult, 'text'>;
          break;
        }
        const delta = (data as { text?: string }).text ?? '';
        this.#text += delta;
        if (delta !== '') yield delta;
      }
    } catch (error) {
      if (this.controller.signal.aborted) return;
      this.#failure = this.#client.readError(error, undefined, this.#requestSignal);
      throw this.#failure;
    } finally {
      this.#done();
      if (this.#final === undefined) this.controller.abort();
      this.#settle();
    }
  }

  /** The whole turn once the stream has ended: ids, model, text, finish reason and usage. */
  async finalResult(): Promise<ConversationStreamResult> {
    if (!this.#consumed) {
      for await (const _delta of this) {
        // read to the end
      }
    } else await this.#settled;
    if (this.#failure) throw this.#failure;
    if (this.#final === undefined) throw new APIUserAbortError('the stream was aborted before it ended');
    return { ...this.#final, text: this.#text };
  }

  #streamError(data: string): OcularError {
    let parsed: unknown = data;
    try {
      parsed = JSON.parse(data);
    } catch {
      // not JSON: the text is the message
    }
    const type = (parsed as { error?: { type?: string } })?.error?.type;
    return makeStatusError(statusOfType(type), parsed, new Headers(this.#response.headers));
  }
}

/** Files for conversations (`/api/assets`): images, and other media the model takes. */
export class Assets {
  readonly #client: Ocular;

  constructor(client: Ocular) {
    this.#client = client;
  }

  async upload(params: AssetUploadParams, options: RequestOptions = {}): Promise<Asset> {
    const fileName =
      params.fileName ??
      (typeof params.file === 'string'
        ? baseName(params.file)
        : typeof File !== 'undefined' && params.file instanceof File
          ? params.file.name
          : 'asset');
    const contentType =
      typeof Blob !== 'undefined' && params.file instanceof Blob && params.file.type ? params.file.type : 'application/octet-stream';
    const rawBody = await multipartBody([], [{ field: 'asset', file: params.file, fileName, contentType }], params.onProgress);
    const answer = await this.#client.request<{ asset: Asset }>({ ...options, method: 'POST', path: '/api/assets', rawBody });
    return answer.asset;
  }

  async get(key: string, options: RequestOptions = {}): Promise<Asset> {
    const answer = await this.#client.request<{ asset: Asset }>({
      ...options,
      method: 'GET',
      path: `/api/assets/${encodeURIComponent(key)}`,
    });
    return answer.asset;
  }

  list(params: PageParams = {}, options: RequestOptions = {}): Promise<{ assets: Asset[]; total: number; limit: number; offset: number }> {
    return this.#client.request({ ...options, method: 'GET', path: '/api/assets', query: { ...params } });
  }

  delete(key: string, options: RequestOptions = {}): Promise<{ key: string; deleted: true }> {
    return this.#client.request({ ...options, method: 'DELETE', path: `/api/assets/${encodeURIComponent(key)}` });
  }
}

/** What the server remembers about the caller across conversations (`/api/memory`). */
export class MemoryResource {
  readonly #client: Ocular;

  constructor(client: Ocular) {
    this.#client = client;
  }

  list(
    params: PageParams = {},
    options: RequestOptions = {},
  ): Promise<{ enabled: boolean; memories: Memory[]; total: number; limit: number; offset: number }> {
    return this.#client.request({ ...options, method: 'GET', path: '/api/memory', query: { ...params } });
  }

  /** Forgets one memory, or (without an id) all of them. */
  delete(id?: string, options: RequestOptions = {}): Promise<{ id?: string; deleted: true | number }> {
    const path = id === undefined ? '/api/memory' : `/api/memory/${encodeURIComponent(id)}`;
    return this.#client.request({ ...options, method: 'DELETE', path });
  }
}
