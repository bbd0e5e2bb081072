// What every request goes through at the HTTP edge, whichever way it is served (the Hono app, or the chat
// routes served straight on Node's request and response, chat-routes.ts): its request id, its API key, the
// signal that tells handlers the client has gone, and the one shape of an error answer.
import { randomUUID } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
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

const HOW_TO_SEND_KEY = 'send "Authorization: Bearer KEY" or "X-Api-Key: KEY"';

/**
 * The key the request presents. An Authorization header without the Bearer scheme is refused saying so: a bare
 * `Authorization: KEY` is a common slip that "missing API key" would make puzzling. Neither answer quotes the
 * header back, since what came may well be the key itself.
 */
function presentedKey(header: HeaderReader): string | undefined {
  // `API-KEY` is what "Chat with Image" API clients send (/api/features).
  const apiKey = header('x-api-key') ?? header('api-key');
  if (apiKey) return apiKey.trim();
  const authorization = header('authorization')?.trim();
  if (!authorization) return undefined;
  const space = authorization.search(/\s/);
  if (space === -1) {
    throw new OcularError('authentication_error', `the Authorization header has no scheme: ${HOW_TO_SEND_KEY}`);
  }
  if (authorization.slice(0, space).toLowerCase() !== 'bearer') {
    throw new OcularError(
      'authentication_error',
      `the Authorization header's scheme is not Bearer, the only one accepted: ${HOW_TO_SEND_KEY}`,
    );
  }
  return authorization.slice(space + 1).trim();
}

/** The owner of the request's API key; 401 `authentication_error` when it has none or a wrong one. */
export function authenticate(verifier: ApiKeyVerifier | undefined, header: HeaderReader): string {
  if (!verifier) return NO_AUTH_OWNER;
  const key = presentedKey(header);
  if (key === undefined || key === '') {
    throw new OcularError('authentication_error', `missing API key: ${HOW_TO_SEND_KEY}`);
  }
  const owner = verifier.verify(key);
  if (owner === undefined) throw new OcularError('authentication_error', 'invalid API key');
  return owner;
}

/** A request whose path exists with other methods only: 405 with an `Allow` header listing them. */
export class MethodNotAllowedError extends OcularError {
  readonly allow: readonly string[];

  constructor(method: string, path: string, allow: readonly string[]) {
    super('method_not_allowed', `${path} does not take ${method}; it takes ${allow.join(', ')}`);
    this.allow = allow;
  }
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
  if (mapped instanceof MethodNotAllowedError) headers.Allow = mapped.allow.join(', ');
  // A body left unread (too large, too slow): the connection cannot carry another request after it.
  if (mapped.type === 'payload_too_large' || mapped.closeConnection) headers.Connection = 'close';
  if ((mapped.type === 'rate_limit_error' || mapped.type === 'unavailable_error') && mapped.retryAfterSeconds !== undefined) {
    headers['Retry-After'] = String(Math.ceil(mapped.retryAfterSeconds));
  }
  return { status: mapped.status, headers, body: errorEnvelope(mapped) };
}

/**
 * Abort signals for requests in flight: aborted when the client's connection closes, and all of them when a
 * graceful shutdown runs out of patience. One signal per connection, shared by the requests it carries: an
 * AbortSignal per request cost ~10 us of latency and a tenth of the throughput (bench/gateway-overhead.ts), and
 * a request's answer cannot outlive its connection anyway. Consumers remove their listeners when done (a
 * kept-alive connection carries many requests).
 */
export class RequestSignals {
  readonly shutdown: AbortSignal;
  readonly #byConnection = new WeakMap<Socket, AbortController>();
  readonly #open = new Set<AbortController>();

  constructor(shutdown: AbortSignal) {
    this.shutdown = shutdown;
    shutdown.addEventListener(
      'abort',
      () => {
        for (const controller of this.#open) controller.abort(shutdown.reason);
      },
      { once: true },
    );
  }

  /** The signal of the connection `outgoing` answers on (already aborted when that connection is gone). */
  forResponse(outgoing: ServerResponse): AbortSignal {
    const socket = outgoing.socket;
    if (!socket || socket.destroyed) return AbortSignal.abort();
    const known = this.#byConnection.get(socket);
    if (known) return known.signal;
    const controller = new AbortController();
    this.#byConnection.set(socket, controller);
    if (this.shutdown.aborted) controller.abort(this.shutdown.reason);
    else {
      this.#open.add(controller);
      socket.once('close', () => {
        this.#open.delete(controller);
        controller.abort();
      });
    }
    return controller.signal;
  }
}
