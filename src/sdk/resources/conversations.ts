import type { Ocular, RequestOptions } from '../client.ts';
import type { PageParams } from '../types.ts';
import { baseName, multipartBody, type Uploadable, type UploadProgress } from '../uploads.ts';

export interface Asset {
  key: string;
  mime_type: string;
  size: number;
  width?: number | null;
  height?: number | null;
  created_at: string;
  [key: string]: unknown;
}

export interface Conversation {
  uuid: string;
  title: string | null;
  model: string | null;
  [key: string]: unknown;
}

export interface SendParams {
  prompt: string;
  /** Keys of uploaded assets shown to the model with this turn. */
  imageList?: string[] | undefined;
  /** Null or absent: a new conversation. */
  conversationId?: string | null | undefined;
  model?: string | undefined;
  webSearch?: boolean | undefined;
  numOfSite?: number | undefined;
  maxWord?: number | undefined;
}

/** Assets: files uploaded once and referred to by key in conversation turns (`/api/assets`). */
export class Assets {
  readonly #client: Ocular;

  constructor(client: Ocular) {
    this.#client = client;
  }

  async upload(
    params: {
      file: Uploadable;
      fileName?: string | undefined;
      contentType?: string | undefined;
      onProgress?: ((progress: UploadProgress) => void) | undefined;
    },
    options: RequestOptions = {},
  ): Promise<Asset> {
    const fileName = params.fileName ?? (typeof params.file === 'string' ? baseName(params.file) : 'asset');
    const body = await multipartBody(
      [],
      [{ field: 'asset', file: params.file, fileName, contentType: params.contentType ?? 'application/octet-stream' }],
      params.onProgress,
    );
    const answer = await this.#client.request<{ asset: Asset }>({ ...options, method: 'POST', path: '/api/assets', rawBody: body });
    return answer.asset;
  }

  async get(key: string, options: RequestOptions = {}): Promise<Asset> {
    return (await this.#client.request<{ asset: Asset }>({ ...options, method: 'GET', path: `/api/assets/${encodeURIComponent(key)}` }))
      .asset;
  }

  list(params: PageParams = {}, options: RequestOptions = {}): Promise<unknown> {
    return this.#client.request({ ...options, method: 'GET', path: '/api/assets', query: { ...params } });
  }

  delete(key: string, options: RequestOptions = {}): Promise<unknown> {
    return this.#client.request({ ...options, method: 'DELETE', path: `/api/assets/${encodeURIComponent(key)}` });
  }
}

/** Server-side conversations with image assets (the "Chat with Image" API: `/api/conversations`, `/api/features`). */
export class Conversations {
  readonly #client: Ocular;

  constructor(client: Ocular) {
    this.#client = client;
  }

  async create(
    params: { title?: string | undefined; model?: string | undefined } = {},
    options: RequestOptions = {},
  ): Promise<Conversation> {
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

  /** The conversation with its messages. */
  async get(uuid: string, options: RequestOptions = {}): Promise<Conversation & { messages: unknown[] }> {
    const answer = await this.#client.request<{ conversation: Conversation & { messages: unknown[] } }>({
      ...options,
      method: 'GET',
      path: `/api/conversations/${encodeURIComponent(uuid)}`,
    });
    return answer.conversation;
  }

  delete(uuid: string, options: RequestOptions = {}): Promise<unknown> {
    return this.#client.request({ ...options, method: 'DELETE', path: `/api/conversations/${encodeURIComponent(uuid)}` });
  }

  /** `GET /api/conversations/{uuid}/export` as JSON. */
  export(uuid: string, options: RequestOptions = {}): Promise<unknown> {
    return this.#client.request({
      ...options,
      method: 'GET',
      path: `/api/conversations/${encodeURIComponent(uuid)}/export`,
      query: { format: 'json' },
    });
  }

  /** One turn (`POST /api/features`): the answer and the conversation id (a new one when none was given). */
  send(params: SendParams, options: RequestOptions = {}): Promise<{ conversationId: string; [key: string]: unknown }> {
    const { model, conversationId, ...promptObject } = params;
    return this.#client.request({
      ...options,
      method: 'POST',
      path: '/api/features',
      body: { type: 'CHAT_WITH_IMAGE', model, conversationId: conversationId ?? null, promptObject },
    });
  }
}
