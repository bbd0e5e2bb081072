/**
 * Ocular's one error model. Every failure a client can see is an `OcularError` with a stable `type`;
 * the HTTP edge maps it to `{"error":{"type","message","param"}}` and the status below.
 */
export const ERROR_STATUS = {
  validation_error: 400,
  authentication_error: 401,
  permission_error: 403,
  not_found_error: 404,
  /** The path exists but not with this method; the answer's `Allow` header lists the ones it takes. */
  method_not_allowed: 405,
  /** The request conflicts with the current state (a group that still holds videos, without `force`). */
  conflict_error: 409,
  payload_too_large: 413,
  unsupported_media_type: 415,
  rate_limit_error: 429,
  server_error: 500,
  upstream_error: 502,
  /** The model exists but cannot answer yet (its weights are still downloading or loading). */
  unavailable_error: 503,
  timeout_error: 504,
} as const;

export type ErrorType = keyof typeof ERROR_STATUS;

export interface OcularErrorOptions {
  /** The request field the error is about, as a dotted path (`messages.0.content`). */
  param?: string | undefined;
  cause?: unknown;
  /** Whether repeating the same call may succeed (upstream 408/429/5xx, network failures). */
  retryable?: boolean;
  /** Seconds the upstream asked us to wait, kept so a 429 can pass `Retry-After` on. */
  retryAfterSeconds?: number | undefined;
  /** The request was left partly unread: the connection cannot carry another request after the answer. */
  closeConnection?: boolean;
}

export class OcularError extends Error {
  readonly type: ErrorType;
  readonly status: number;
  readonly param: string | undefined;
  readonly retryable: boolean;
  readonly retryAfterSeconds: number | undefined;
  readonly closeConnection: boolean;

  constructor(type: ErrorType, message: string, options: OcularErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'OcularError';
    this.type = type;
    this.status = ERROR_STATUS[type];
    this.param = options.param;
    this.retryable = options.retryable ?? false;
    this.retryAfterSeconds = options.retryAfterSeconds;
    this.closeConnection = options.closeConnection ?? false;
  }
}

export function validationError(message: string, param?: string): OcularError {
  return new OcularError('validation_error', message, { param });
}

export function isOcularError(error: unknown): error is OcularError {
  return error instanceof OcularError;
}

/** True for the error an aborted fetch, stream or timer throws (DOMException or Node's AbortError). */
export function isAbortError(error: unknown): boolean {
  return error instanceof Error && (error.name === 'AbortError' || (error as { code?: unknown }).code === 'ABORT_ERR');
}
