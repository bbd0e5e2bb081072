import type { IncomingHttpHeaders } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { createParser, type EventSourceMessage } from 'eventsource-parser';
import { Pool, type Dispatcher } from 'undici';
import { isAbortError, OcularError } from '../spec/errors.ts';
import { mapNetworkError, mapUpstreamStatus } from './map-upstream-error.ts';

export interface HttpClientOptions {
  /** Provider name, used in error messages. */
  provider: string;
  /** Base URL; request paths are appended to it (`https://host/v1` + `/chat/completions`). */
  baseUrl: string;
  /** Headers sent on every request (auth, versions). */
  headers?: Readonly<Record<string, string>> | undefined;
  /** Milliseconds to wait for response headers, and between body chunks. @default 600000 */
  timeoutMs?: number | undefined;
  /** Retries on 408/409/429/5xx and network errors, before any response byte is used. @default 2 */
  maxRetries?: number | undefined;
  /** Upper bound of connections kept open to the upstream (one per streamed answer in flight). @default 1024 */
  maxConnections?: number | undefined;
  /** Largest non-streamed response read from the upstream; a larger one fails as upstream_error. @default 64 MiB */
  maxResponseBytes?: number | undefined;
}

/**
 * Enough that a normal load never queues: every streamed answer holds a connection for as long as it streams (256,
 * the old fixed value, made the 1,000th of 1,000 concurrent 10 s streams wait 30 s for a free one).
 */
const DEFAULT_MAX_CONNECTIONS = 1024;

/** Of an upstream's error response, only this much is read: its message is cut to 500 characters anyway. */
const MAX_ERROR_BODY_BYTES = 64 * 1024;

const MAX_BACKOFF_MS = 8_000;
const MAX_RETRY_AFTER_SECONDS = 30;

/** Exponential backoff with full jitter; a short `Retry-After` from the upstream wins. */
export function computeBackoffMs(attempt: number, retryAfterSeconds: number | undefined): number {
  if (retryAfterSeconds !== undefined && retryAfterSeconds <= MAX_RETRY_AFTER_SECONDS) return retryAfterSeconds * 1000;
  const ceiling = Math.min(MAX_BACKOFF_MS, 250 * 2 ** attempt);
  return ceiling / 2 + Math.random() * (ceiling / 2);
}

/**
 * A pooled JSON-over-HTTP client for one upstream, built once per configured model. Retries happen only
 * before a response is handed to the caller, so a streamed answer is never restarted.
 */
export class HttpClient {
  readonly #provider: string;
  /** Path of the base URL (`/v1`), prefixed to every request path. */
  readonly #basePath: string;
  readonly #maxRetries: number;
  readonly #maxResponseBytes: number;
  readonly #pool: Pool;
  readonly #jsonHeaders: Record<string, string>;
  readonly #streamHeaders: Record<string, string>;

  constructor(options: HttpClientOptions) {
    this.#provider = options.provider;
    const base = new URL(options.baseUrl);
    this.#basePath = base.pathname.replace(/\/+$/, '');
    const headers = { 'content-type': 'application/json', 'user-agent': 'ocular/0.1', ...options.headers };
    this.#jsonHeaders = { ...headers, accept: 'application/json' };
    this.#streamHeaders = { ...headers, accept: 'text/event-stream' };
    this.#maxRetries = options.maxRetries ?? 2;
    this.#maxResponseBytes = options.maxResponseBytes ?? 64 * 1024 * 1024;
    const timeoutMs = options.timeoutMs ?? 600_000;
    // One upstream origin per client: a Pool skips the Agent's per-request origin parsing and lookup.
    this.#pool = new Pool(base.origin, {
      connections: options.maxConnections ?? DEFAULT_MAX_CONNECTIONS,
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
      keepAliveTimeout: 30_000,
    });
  }

  /** POSTs JSON and returns the parsed JSON response (validate it with a schema). */
  async postJson(path: string, body: unknown, signal: AbortSignal): Promise<unknown> {
    const payload = JSON.stringify(body);
    const response = await this.#withRetries(signal, async () => {
      const answer = await exchange(
        this.#pool,
        { path: this.#basePath + path, method: 'POST', headers: this.#jsonHeaders, body: payload },
        signal,
        this.#maxResponseBytes,
      );
      if (isSuccess(answer.statusCode)) return answer;
      throw this.#statusError(answer.statusCode, answer.body.toString('utf8'), answer.headers);
    });
    try {
      return JSON.parse(response.body.toString('utf8'));
    } catch (error) {
      throw new OcularError('upstream_error', `${this.#provider} upstream sent a body that is not JSON`, { cause: error });
    }
  }

  /** POSTs JSON and returns the response's server-sent events. */
  async postEventStream(path: string, body: unknown, signal: AbortSignal): Promise<ReadableStream<EventSourceMessage>> {
    const payload = JSON.stringify(body);
    return this.#withRetries(signal, async () => {
      const opened = await openEventStream(
        this.#pool,
        { path: this.#basePath + path, method: 'POST', headers: this.#streamHeaders, body: payload },
        signal,
      );
      if ('events' in opened) return opened.events;
      throw this.#statusError(opened.statusCode, opened.body.toString('utf8'), opened.headers);
    });
  }

  async close(): Promise<void> {
    await this.#pool.close();
  }

  #statusError(statusCode: number, text: string, headers: IncomingHttpHeaders): OcularError {
    const retryAfter = headers['retry-after'];
    return mapUpstreamStatus(this.#provider, statusCode, text, Array.isArray(retryAfter) ? retryAfter[0] : retryAfter);
  }

  /** Runs `attempt` until it succeeds, fails for good, or the retries run out; waits with backoff in between. */
  async #withRetries<Result>(signal: AbortSignal, attempt: () => Promise<Result>): Promise<Result> {
    for (let attempts = 0; ; attempts++) {
      let failure: OcularError;
      try {
        return await attempt();
      } catch (error) {
        if (isAbortError(error) || signal.aborted) throw error;
        failure = error instanceof OcularError ? error : mapNetworkError(this.#provider, error);
      }
      if (!failure.retryable || attempts >= this.#maxRetries) throw failure;
      await sleep(computeBackoffMs(attempts, failure.retryAfterSeconds), undefined, { signal });
    }
  }
}

const isSuccess = (statusCode: number): boolean => statusCode >= 200 && statusCode < 300;

/** The start of an upstream's error response: enough for its message, however much it sends. */
class ErrorBody {
  readonly #chunks: Buffer[] = [];
  #size = 0;

  push(chunk: Buffer): void {
    if (this.#size >= MAX_ERROR_BODY_BYTES) return;
    this.#size += chunk.length;
    this.#chunks.push(chunk);
  }

  bytes(): Buffer {
    return Buffer.concat(this.#chunks);
  }
}

/** Ties a dispatched request to `signal`: an abort ends it with the signal's reason. `release` once it is over. */
function linkAbort(signal: AbortSignal): { started(controller: Dispatcher.DispatchController): void; release(): void } {
  let controller: Dispatcher.DispatchController | undefined;
  const onAbort = (): void => controller?.abort(signal.reason as Error);
  signal.addEventListener('abort', onAbort, { once: true });
  return {
    started(started) {
      controller = started;
      if (signal.aborted) started.abort(signal.reason as Error);
    },
    release: () => signal.removeEventListener('abort', onAbort),
  };
}

interface BufferedResponse {
  statusCode: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

/**
 * One request whose whole response body is collected in memory. Cheaper per call than `request()`, which wraps
 * every body in a stream (measured in bench/gateway-overhead.ts: the JSON path's share of Ocular's CPU time).
 * An abort of `signal` ends the exchange with the signal's reason; a 2xx body over `maxBytes` fails it (of any
 * other status, the first MAX_ERROR_BODY_BYTES are kept).
 */
function exchange(
  dispatcher: Dispatcher,
  options: Dispatcher.DispatchOptions,
  signal: AbortSignal,
  maxBytes: number,
): Promise<BufferedResponse> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) {
      reject(signal.reason);
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let statusCode = 0;
    let headers: IncomingHttpHeaders = {};
    let failure: ErrorBody | undefined;
    const link = linkAbort(signal);
    dispatcher.dispatch(options, {
      onRequestStart: link.started,
      onResponseStart(_controller, status, responseHeaders) {
        statusCode = status;
        headers = responseHeaders;
        if (!isSuccess(status)) failure = new ErrorBody();
      },
      onResponseData(controller, chunk) {
        if (failure) return failure.push(chunk);
        size += chunk.length;
        if (size > maxBytes) {
          controller.abort(new OcularError('upstream_error', `the upstream's response is larger than ${maxBytes} bytes`));
          return;
        }
        chunks.push(chunk);
      },
      onResponseEnd() {
        link.release();
        const body = failure ? failure.bytes() : chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
        resolve({ statusCode, headers, body });
      },
      onResponseError(_controller, error) {
        link.release();
        reject(signal.aborted ? signal.reason : error);
      },
    });
  });
}

/** The longest event (or unfinished line) an upstream may send before its stream is cut: 16 MiB. */
const MAX_EVENT_CHARS = 16 * 1024 * 1024;
/**
 * Bytes an upstream may stream without completing one event. The parser drops lines that cannot be SSE fields
 * without buffering them, so an upstream sending endless non-SSE bytes would otherwise hold the request forever.
 */
const MAX_BYTES_WITHOUT_EVENT = MAX_EVENT_CHARS + 64 * 1024;

/**
 * One request whose 2xx response is read as server-sent events, parsed as the bytes arrive into a stream that
 * applies backpressure to the socket; any other status is collected whole, to build the error from. One stream
 * stage instead of four (Node stream to web stream, text decoding, event parsing), which halved what Ocular
 * adds to a streamed answer's first byte.
 */
function openEventStream(
  dispatcher: Dispatcher,
  options: Dispatcher.DispatchOptions,
  signal: AbortSignal,
): Promise<{ events: ReadableStream<EventSourceMessage> } | BufferedResponse> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) {
      reject(signal.reason);
      return;
    }
    let dispatch: Dispatcher.DispatchController | undefined;
    /** Set while the stream is open; cleared once it is closed, errored or cancelled. */
    let events: ReadableStreamDefaultController<EventSourceMessage> | undefined;
    let failure: { statusCode: number; headers: IncomingHttpHeaders; body: ErrorBody } | undefined;
    const decoder = new TextDecoder();
    let bytesWithoutEvent = 0;
    /** Ends the stream with `error`; the rest of the response is not read. */
    const cut = (error: OcularError): void => {
      events?.error(error);
      events = undefined;
      dispatch?.abort(error);
    };
    const parser = createParser({
      onEvent: (event) => {
        bytesWithoutEvent = 0;
        events?.enqueue(event);
      },
      onError: (error) => {
        if (error.type !== 'max-buffer-size-exceeded') return;
        cut(new OcularError('upstream_error', `the upstream sent an event longer than ${MAX_EVENT_CHARS} characters`));
      },
      maxBufferSize: MAX_EVENT_CHARS,
    });
    const link = linkAbort(signal);
    dispatcher.dispatch(options, {
      onRequestStart(started) {
        dispatch = started;
        link.started(started);
      },
      onResponseStart(controller, statusCode, headers) {
        if (!isSuccess(statusCode)) {
          failure = { statusCode, headers, body: new ErrorBody() };
          return;
        }
        const stream = new ReadableStream<EventSourceMessage>({
          start: (streamController) => {
            events = streamController;
          },
          pull: () => controller.resume(),
          cancel: (reason) => {
            events = undefined;
            link.release();
            controller.abort(reason instanceof Error ? reason : new Error('the stream was cancelled'));
          },
        });
        resolve({ events: stream });
      },
      onResponseData(controller, chunk) {
        if (failure) return failure.body.push(chunk);
        if (!events) return;
        parser.feed(decoder.decode(chunk, { stream: true }));
        bytesWithoutEvent += chunk.length;
        if (bytesWithoutEvent > MAX_BYTES_WITHOUT_EVENT) {
          cut(new OcularError('upstream_error', `the upstream sent ${MAX_BYTES_WITHOUT_EVENT} bytes without a server-sent event`));
          return;
        }
        if (events && (events.desiredSize ?? 1) <= 0) controller.pause();
      },
      onResponseEnd() {
        link.release();
        if (failure) {
          resolve({ statusCode: failure.statusCode, headers: failure.headers, body: failure.body.bytes() });
          return;
        }
        if (!events) return;
        parser.feed(decoder.decode());
        parser.reset({ consume: true });
        events?.close();
        events = undefined;
      },
      onResponseError(_controller, error) {
        link.release();
        const reason: unknown = signal.aborted ? signal.reason : error;
        if (!events) {
          reject(reason); // no-op once the stream was handed over
          return;
        }
        events.error(reason);
        events = undefined;
      },
    });
  });
}

/**
 * Reads a streamed response body into memory, at most `maxBytes` of it: past that the body is destroyed (its
 * connection dropped) and `complete` is false. For callers on undici's `request()`, whose `text()` and `json()`
 * read whatever an upstream sends, without end.
 */
export async function readBodyUpTo(body: Dispatcher.ResponseData['body'], maxBytes: number): Promise<{ bytes: Buffer; complete: boolean }> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    const buffer = chunk as Buffer;
    if (size + buffer.length > maxBytes) {
      chunks.push(buffer.subarray(0, maxBytes - size));
      body.on('error', () => undefined).destroy();
      return { bytes: Buffer.concat(chunks), complete: false };
    }
    size += buffer.length;
    chunks.push(buffer);
  }
  return { bytes: Buffer.concat(chunks), complete: true };
}

/** Of an error response read with {@link readBodyUpTo}, this much is enough for its message. */
export const ERROR_BODY_LIMIT = MAX_ERROR_BODY_BYTES;

/** Parses one SSE `data` payload as JSON; a malformed event is an upstream error, not a crash. */
export function parseEventJson(provider: string, event: EventSourceMessage): unknown {
  try {
    return JSON.parse(event.data);
  } catch (error) {
    throw new OcularError('upstream_error', `${provider} upstream sent a malformed stream event`, { cause: error });
  }
}
