import type { IncomingHttpHeaders } from 'node:http';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { EventSourceParserStream, type EventSourceMessage } from 'eventsource-parser/stream';
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
  /** Upper bound of connections kept open to the upstream. @default 256 */
  maxConnections?: number | undefined;
}

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
    const timeoutMs = options.timeoutMs ?? 600_000;
    // One upstream origin per client: a Pool skips the Agent's per-request origin parsing and lookup.
    this.#pool = new Pool(base.origin, {
      connections: options.maxConnections ?? 256,
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
      );
      if (answer.statusCode >= 200 && answer.statusCode < 300) return answer;
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
    const response = await this.#withRetries(signal, async () => {
      const answer = await this.#pool.request({
        path: this.#basePath + path,
        method: 'POST',
        headers: this.#streamHeaders,
        body: payload,
        signal,
      });
      if (answer.statusCode >= 200 && answer.statusCode < 300) return answer;
      throw this.#statusError(answer.statusCode, await answer.body.text(), answer.headers);
    });
    return (Readable.toWeb(response.body) as ReadableStream<Uint8Array>)
      .pipeThrough(new TextDecoderStream() as unknown as TransformStream<Uint8Array, string>)
      .pipeThrough(new EventSourceParserStream());
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

interface BufferedResponse {
  statusCode: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

/**
 * One request whose whole response body is collected in memory. Cheaper per call than `request()`, which wraps
 * every body in a stream (measured in bench/gateway-overhead.ts: the JSON path's share of Ocular's CPU time).
 * An abort of `signal` ends the exchange with the signal's reason.
 */
function exchange(dispatcher: Dispatcher, options: Dispatcher.DispatchOptions, signal: AbortSignal): Promise<BufferedResponse> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) {
      reject(signal.reason);
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let statusCode = 0;
    let headers: IncomingHttpHeaders = {};
    let controller: Dispatcher.DispatchController | undefined;
    const onAbort = (): void => controller?.abort(signal.reason as Error);
    const settle = (): void => signal.removeEventListener('abort', onAbort);
    signal.addEventListener('abort', onAbort, { once: true });
    dispatcher.dispatch(options, {
      onRequestStart(started) {
        controller = started;
        if (signal.aborted) started.abort(signal.reason as Error);
      },
      onResponseStart(_controller, status, responseHeaders) {
        statusCode = status;
        headers = responseHeaders;
      },
      onResponseData(_controller, chunk) {
        chunks.push(chunk);
        size += chunk.length;
      },
      onResponseEnd() {
        settle();
        resolve({ statusCode, headers, body: chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size) });
      },
      onResponseError(_controller, error) {
        settle();
        reject(signal.aborted ? signal.reason : error);
      },
    });
  });
}

/** Parses one SSE `data` payload as JSON; a malformed event is an upstream error, not a crash. */
export function parseEventJson(provider: string, event: EventSourceMessage): unknown {
  try {
    return JSON.parse(event.data);
  } catch (error) {
    throw new OcularError('upstream_error', `${provider} upstream sent a malformed stream event`, { cause: error });
  }
}
