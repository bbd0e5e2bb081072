import { APIConnectionError, APITimeoutError, APIUserAbortError, makeStatusError, OcularError } from './errors.ts';
import { Chat } from './resources/chat.ts';
import { sleep } from './sleep.ts';
import { Clips } from './resources/clips.ts';
import { Assets, Conversations, MemoryResource } from './resources/conversations.ts';
import { Images } from './resources/images.ts';
import { Models } from './resources/models.ts';
import { Qa } from './resources/qa.ts';
import { Speech } from './resources/speech.ts';
import { Videos } from './resources/videos.ts';

/** The platform's `fetch`, or one with its signature (undici's, a test double's). */
export type Fetch = (input: string, init: RequestInit) => Promise<Response>;

export interface ClientOptions {
  /** Sent as `Authorization: Bearer`. @default process.env.OCULAR_API_KEY */
  apiKey?: string | undefined;
  /** The server, e.g. `http://127.0.0.1:8080`. @default process.env.OCULAR_BASE_URL, else http://127.0.0.1:8080 */
  baseURL?: string | undefined;
  /** Milliseconds one attempt may take before it is abandoned (and retried). @default 600000 (10 minutes) */
  timeout?: number | undefined;
  /** Retries after a connection error, a timeout, or a 408/409/429/5xx answer. @default 2 */
  maxRetries?: number | undefined;
  /** The fetch to use. @default globalThis.fetch */
  fetch?: Fetch | undefined;
  /** Headers sent with every request. */
  defaultHeaders?: Record<string, string> | undefined;
}

/** Per-call options, taken by every method as its last argument. */
export interface RequestOptions {
  /** Aborts the call (it then rejects with `APIUserAbortError`). */
  signal?: AbortSignal | undefined;
  timeout?: number | undefined;
  maxRetries?: number | undefined;
  headers?: Record<string, string> | undefined;
}

/** A request as the resources describe it to the client. */
export interface APIRequest extends RequestOptions {
  method: 'GET' | 'POST' | 'PATCH' | 'DELETE';
  path: string;
  query?: Record<string, string | number | boolean | null | undefined> | undefined;
  /** Sent as JSON. */
  body?: unknown;
  /**
   * A body of another kind (a multipart upload), built afresh for each attempt; `retryable: false` when it can be
   * sent once only (a caller's stream).
   */
  rawBody?: { make(): { body: BodyInit; headers: Record<string, string> }; retryable: boolean } | undefined;
}

export const DEFAULT_BASE_URL = 'http://127.0.0.1:8080';
const DEFAULT_TIMEOUT_MS = 10 * 60 * 1000;
const DEFAULT_MAX_RETRIES = 2;
/** Longest `Retry-After` honoured; a server asking for more gets the usual backoff instead. */
const MAX_RETRY_AFTER_MS = 60_000;
const INITIAL_RETRY_DELAY_MS = 500;
const MAX_RETRY_DELAY_MS = 8_000;

/** OCULAR_* settings where there is a process environment (Node, Deno, Bun); nothing in a browser. */
function readEnvironment(name: string): string | undefined {
  // The SDK runs in browsers too, where there is no `process`: look it up rather than name it.
  const environment = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env;
  const value = environment?.[name]?.trim();
  return value === '' ? undefined : value;
}

/** Whether a failed answer is worth repeating: the server's `x-should-retry` decides, else its status. */
function shouldRetry(response: Response): boolean {
  const hint = response.headers.get('x-should-retry');
  if (hint === 'true') return true;
  if (hint === 'false') return false;
  return response.status === 408 || response.status === 409 || response.status === 429 || response.status >= 500;
}

/** The wait a server asked for (`retry-after-ms`, `retry-after` in seconds or as an HTTP date), if sensible. */
export function retryAfterMs(headers: Headers | undefined, now = Date.now()): number | undefined {
  if (!headers) return undefined;
  const milliseconds = Number.parseFloat(headers.get('retry-after-ms') ?? '');
  let wait: number | undefined = Number.isFinite(milliseconds) ? milliseconds : undefined;
  const header = headers.get('retry-after');
  if (wait === undefined && header !== null) {
    const seconds = Number.parseFloat(header);
    wait = Number.isFinite(seconds) ? seconds * 1000 : Date.parse(header) - now;
    if (Number.isNaN(wait)) wait = undefined;
  }
  return wait !== undefined && wait >= 0 && wait <= MAX_RETRY_AFTER_MS ? wait : undefined;
}

/** Exponential backoff with jitter: 0.5 s, 1 s, 2 s ... at most 8 s, each up to a quarter shorter. */
function backoffMs(retriesDone: number): number {
  const delay = Math.min(INITIAL_RETRY_DELAY_MS * 2 ** retriesDone, MAX_RETRY_DELAY_MS);
  return delay * (1 - Math.random() * 0.25);
}

/**
 * The Ocular client: one per server and key. Resources (`chat`, `models`, `videos`, `images`, `qa`) hang off it and
 * send their requests through `request`, which adds the key, retries and timeouts, and turns failures into
 * typed errors.
 *
 * ```ts
 * const client = new Ocular({ apiKey: 'ocu_...', baseURL: 'http://127.0.0.1:8080' });
 * const reply = await client.chat.create({ messages: [{ role: 'user', content: 'Hello' }] });
 * ```
 */
export class Ocular {
  readonly apiKey: string | undefined;
  readonly baseURL: string;
  readonly timeout: number;
  readonly maxRetries: number;
  readonly #fetch: Fetch;
  readonly #defaultHeaders: Record<string, string>;

  readonly chat: Chat;
  readonly models: Models;
  readonly videos: Videos;
  readonly images: Images;
  readonly qa: Qa;
  readonly clips: Clips;
  readonly speech: Speech;
  readonly conversations: Conversations;
  readonly assets: Assets;
  readonly memory: MemoryResource;

  constructor(options: ClientOptions = {}) {
    this.apiKey = options.apiKey ?? readEnvironment('OCULAR_API_KEY');
    this.baseURL = (options.baseURL ?? readEnvironment('OCULAR_BASE_URL') ?? DEFAULT_BASE_URL).replace(/\/+$/, '');
    this.timeout = options.timeout ?? DEFAULT_TIMEOUT_MS;
    this.maxRetries = options.maxRetries ?? DEFAULT_MAX_RETRIES;
    const platformFetch = (globalThis as { fetch?: Fetch }).fetch;
    const chosen = options.fetch ?? platformFetch?.bind(globalThis);
    if (!chosen) throw new OcularError('no fetch: pass `fetch` to new Ocular() on a platform without one', { type: 'configuration_error' });
    this.#fetch = chosen;
    this.#defaultHeaders = options.defaultHeaders ?? {};
    this.chat = new Chat(this);
    this.models = new Models(this);
    this.videos = new Videos(this);
    this.images = new Images(this);
    this.qa = new Qa(this);
    this.clips = new Clips(this);
    this.speech = new Speech(this);
    this.conversations = new Conversations(this);
    this.assets = new Assets(this);
    this.memory = new MemoryResource(this);
  }

  /** The URL of `path` on this server, with `query`'s defined values. */
  buildURL(path: string, query?: APIRequest['query']): string {
    const url = new URL(this.baseURL + path);
    for (const [name, value] of Object.entries(query ?? {})) {
      if (value !== undefined && value !== null) url.searchParams.set(name, String(value));
    }
    return url.toString();
  }

  /** Sends a request and parses its JSON answer. */
  async request<Result>(request: APIRequest): Promise<Result> {
    const { response, requestSignal, done } = await this.send(request);
    try {
      const text = await response.text();
      return (text === '' ? undefined : JSON.parse(text)) as Result;
    } catch (error) {
      throw this.#failure(error, request.signal, requestSignal);
    } finally {
      done();
    }
  }

  /**
   * Sends a request and returns its successful response with the body unread (a stream). `done` must be called
   * once the body is consumed: it stops the attempt's timeout.
   */
  async send(request: APIRequest): Promise<{ response: Response; requestSignal: AbortSignal; done: () => void }> {
    const maxRetries = request.rawBody && !request.rawBody.retryable ? 0 : (request.maxRetries ?? this.maxRetries);
    const timeout = request.timeout ?? this.timeout;
    const url = this.buildURL(request.path, request.query);
    for (let attempt = 0; ; attempt += 1) {
      if (request.signal?.aborted) throw new APIUserAbortError();
      const controller = new AbortController();
      let timedOut = false;
      // setTimeout fires at once for delays past 2^31 - 1 ms: a longer (or infinite) timeout means none.
      const timer =
        timeout < 2 ** 31
          ? setTimeout(() => {
              timedOut = true;
              controller.abort();
            }, timeout)
          : undefined;
      const onAbort = (): void => controller.abort();
      request.signal?.addEventListener('abort', onAbort, { once: true });
      const done = (): void => {
        clearTimeout(timer);
        request.signal?.removeEventListener('abort', onAbort);
      };
      const retriesLeft = maxRetries - attempt;
      let response: Response;
      try {
        response = await this.#fetch(url, this.#init(request, controller.signal));
      } catch (error) {
        done();
        const failure = request.signal?.aborted
          ? new APIUserAbortError()
          : timedOut
            ? new APITimeoutError(`no answer from ${request.method} ${request.path} within ${timeout} ms`)
            : new APIConnectionError(
                request.rawBody && closedMidBody(error)
                  ? `the server closed the connection while the upload was being sent (${describeCause(error)}); ` +
                      'it does so when a file is over its upload limit or it has too many uploads in progress'
                  : `cannot reach ${this.baseURL}: ${describeCause(error)}`,
                { cause: error },
              );
        if (failure instanceof APIUserAbortError || retriesLeft <= 0) throw failure;
        await sleep(backoffMs(attempt), request.signal);
        continue;
      }
      if (response.ok) {
        // The timer now guards reading the body; `timedOut` turns its abort into APITimeoutError for the reader.
        return {
          response,
          requestSignal: withTimeoutReason(controller.signal, () => timedOut),
          done,
        };
      }
      let body: unknown;
      try {
        const text = await response.text();
        try {
          body = JSON.parse(text);
        } catch {
          body = text;
        }
      } catch {
        body = undefined;
      } finally {
        done();
      }
      if (retriesLeft > 0 && shouldRetry(response)) {
        await sleep(retryAfterMs(response.headers) ?? backoffMs(attempt), request.signal);
        continue;
      }
      throw makeStatusError(response.status, body, response.headers);
    }
  }

  #init(request: APIRequest, signal: AbortSignal): RequestInit {
    const headers: Record<string, string> = { accept: 'application/json', ...this.#defaultHeaders };
    if (this.apiKey !== undefined) headers.authorization = `Bearer ${this.apiKey}`;
    let body: BodyInit | undefined;
    if (request.rawBody) {
      const made = request.rawBody.make();
      body = made.body;
      Object.assign(headers, made.headers);
    } else if (request.body !== undefined) {
      body = JSON.stringify(request.body);
      headers['content-type'] = 'application/json';
    }
    Object.assign(headers, request.headers);
    const init: RequestInit & { duplex?: 'half' } = { method: request.method, headers, signal };
    if (body !== undefined) {
      init.body = body;
      // A streamed body (an upload from disk) needs half-duplex in fetch.
      if (typeof ReadableStream !== 'undefined' && body instanceof ReadableStream) init.duplex = 'half';
    }
    return init;
  }

  /** The typed error for a failure while reading a successful response's body. */
  #failure(error: unknown, userSignal: AbortSignal | undefined, requestSignal: AbortSignal): OcularError {
    if (error instanceof OcularError) return error;
    if (userSignal?.aborted) return new APIUserAbortError();
    if (requestSignal.aborted && (requestSignal as TimedSignal).timedOut?.()) return new APITimeoutError();
    if (error instanceof SyntaxError)
      return new OcularError(`the server's answer is not JSON: ${error.message}`, { type: 'invalid_response' });
    return new APIConnectionError(`the connection broke while reading the answer: ${describeCause(error)}`, { cause: error });
  }

  /** Maps an error met while reading a streamed body to the SDK's errors (used by streams). */
  readError(error: unknown, userSignal: AbortSignal | undefined, requestSignal: AbortSignal): OcularError {
    return this.#failure(error, userSignal, requestSignal);
  }
}

type TimedSignal = AbortSignal & { timedOut?: () => boolean };

function withTimeoutReason(signal: AbortSignal, timedOut: () => boolean): AbortSignal {
  (signal as TimedSignal).timedOut = timedOut;
  return signal;
}

/**
 * A connection the server closed while the request body was still being written. fetch cannot hand over an
 * answer the server sent before reading the whole body (a 413, a 429 with `Connection: close`): all it reports is
 * the broken pipe.
 */
function closedMidBody(error: unknown): boolean {
  let current: unknown = error;
  for (let depth = 0; depth < 5 && current instanceof Error; depth += 1) {
    const code = (current as { code?: string }).code;
    if (code === 'EPIPE' || code === 'ECONNRESET' || code === 'UND_ERR_SOCKET') return true;
    current = current.cause;
  }
  return false;
}

/** The deepest message of an error chain: fetch's `TypeError: fetch failed` hides the useful part in `cause`. */
function describeCause(error: unknown): string {
  let current: unknown = error;
  let message = 'unknown error';
  for (let depth = 0; depth < 5 && current instanceof Error; depth += 1) {
    message = (current as { code?: string }).code ? `${(current as { code?: string }).code}: ${current.message}` : current.message;
    current = current.cause;
  }
  return message;
}
