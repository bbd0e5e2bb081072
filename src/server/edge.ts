// What every request goes through at the HTTP edge, whichever way it is served (the Hono app, or the chat
// routes served straight on Node's request and response, chat-routes.ts): its request id, its API key, the
// signal that tells handlers the client has gone, and the one shape of an error answer.
import { randomUUID } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import { OcularError } from '../spec/errors.ts';
import { NO_AUTH_OWNER, type ApiKeyVerifier } from '../store/api-keys.ts';
import { errorEnvelope, type ErrorEnvelope } from './errors.ts';
import type { Logger } from './logger.ts';

export const REQUEST_ID_HEADER = 'X-Request-ID';

const REQUEST_ID = /^[\w.:-]{1,128}$/;

/** The client's `X-Request-ID` when it is a sensible token, else a new one. */
export function requestIdFrom(header: string | undefined): string {
  return header !== undefined && REQUEST_ID.test(header) ? header : randomUUID();
}

/** Reads one request header by its lower-case name. */
export type HeaderReader = (name: string) => string | undefined;

function presentedKey(header: HeaderReader): string | undefined {
  const apiKey = header('x-api-key');
  if (apiKey) return apiKey.trim();
  const authorization = header('authorization');
  if (authorization?.toLowerCase().startsWith('bearer ')) return authorization.slice(7).trim();
  return undefined;
}

/** The owner of the request's API key; 401 `authentication_error` when it has none or a wrong one. */
export function authenticate(verifier: ApiKeyVerifier | undefined, header: HeaderReader): string {
  if (!verifier) return NO_AUTH_OWNER;
  const key = presentedKey(header);
  if (key === undefined || key === '') {
    throw new OcularError('authentication_error', 'missing API key: send it as "X-Api-Key: KEY" or "Authorization: Bearer KEY"');
  }
  const owner = verifier.verify(key);
  if (owner === undefined) throw new OcularError('authentication_error', 'invalid API key');
  return owner;
}

export interface ErrorReply {
  status: number;
  headers: Record<string, string>;
  body: ErrorEnvelope;
}

/** The answer to a failed request. Anything that is not an OcularError is a bug: logged, and told apart as 500. */
export function errorReply(error: unknown, logger: Logger, requestId: string): ErrorReply {
  const mapped = error instanceof OcularError ? error : new OcularError('server_error', 'internal server error', { cause: error });
  if (mapped.type === 'server_error') logger.error('unhandled error', { requestId, error: String(error), stack: (error as Error).stack });
  const headers: Record<string, string> = {};
  // A body left unread (too large, too slow): the connection cannot carry another request after it.
  if (mapped.type === 'payload_too_large' || mapped.closeConnection) headers.Connection = 'close';
  if ((mapped.type === 'rate_limit_error' || mapped.type === 'unavailable_error') && mapped.retryAfterSeconds !== undefined) {
    headers['Retry-After'] = String(Math.ceil(mapped.retryAfterSeconds));
  }
  return { status: mapped.status, headers, body: errorEnvelope(mapped) };
}

/**
 * Abort signals for requests in flight: each is aborted when its client goes away before the response is
 * complete, and all of them when a graceful shutdown runs out of patience.
 */
export class RequestSignals {
  readonly shutdown: AbortSignal;
  readonly #inFlight = new Set<AbortController>();

  constructor(shutdown: AbortSignal) {
    this.shutdown = shutdown;
    shutdown.addEventListener(
      'abort',
      () => {
        for (const controller of this.#inFlight) controller.abort(shutdown.reason);
      },
      { once: true },
    );
  }

  /** Watched on Node's response: a fetch Request's own signal would cost a Request object per request. */
  forResponse(outgoing: ServerResponse): AbortSignal {
    const controller = new AbortController();
    if (this.shutdown.aborted) controller.abort(this.shutdown.reason);
    else if (outgoing.closed) controller.abort();
    else {
      this.#inFlight.add(controller);
      outgoing.once('close', () => {
        this.#inFlight.delete(controller);
        if (!outgoing.writableFinished) controller.abort();
      });
    }
    return controller.signal;
  }
}
