/**
 * The SDK's errors. Every failure is an `OcularError`: one the server answered carries its HTTP `status`, the
 * `type` and `param` of Ocular's error envelope (`{"error":{"type","message","param"}}`) and the `X-Request-ID`
 * to quote in a bug report; a failure to reach the server is an `APIConnectionError` (no status).
 */
export class OcularError extends Error {
  /** The HTTP status, when the server answered (for an error sent inside a stream, the status of its type). */
  readonly status: number | undefined;
  /** Ocular's error type (`validation_error`, `not_found_error`, ...), or the SDK's own for failures it detects. */
  readonly type: string;
  /** The request field the error is about, as a dotted path (`messages.0.content`). */
  readonly param: string | undefined;
  /** The server's `X-Request-ID` for the failed request. */
  readonly requestId: string | undefined;
  /** The response's headers, when the server answered. */
  readonly headers: Headers | undefined;

  constructor(
    message: string,
    options: {
      status?: number | undefined;
      type?: string | undefined;
      param?: string | undefined;
      requestId?: string | undefined;
      headers?: Headers | undefined;
      cause?: unknown;
    } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.status = options.status;
    this.type = options.type ?? 'error';
    this.param = options.param;
    this.requestId = options.requestId;
    this.headers = options.headers;
  }
}

/** 400: the request is malformed (a missing or wrong field: see `param`). */
export class BadRequestError extends OcularError {}
/** 401: no API key, or one the server does not know. */
export class AuthenticationError extends OcularError {}
/** 403: the key may not do this (or a signed URL has expired). */
export class PermissionDeniedError extends OcularError {}
/** 404: no such resource for this key's owner. */
export class NotFoundError extends OcularError {}
/** 409: the request conflicts with the resource's state (a group that still holds videos, a video not indexed yet). */
export class ConflictError extends OcularError {}
/** 413: the body or a file is over one of the server's limits. */
export class PayloadTooLargeError extends OcularError {}
/** 422: the request is well-formed but cannot be processed. */
export class UnprocessableEntityError extends OcularError {}
/** 429: too many requests (retried by default, honouring `Retry-After`). */
export class RateLimitError extends OcularError {}
/** 5xx: the server or the model behind it failed (retried by default). */
export class InternalServerError extends OcularError {}

/** The server could not be reached, or the connection broke before an answer came. */
export class APIConnectionError extends OcularError {
  constructor(message = 'connection error', options: { cause?: unknown; type?: string } = {}) {
    super(message, { type: options.type ?? 'connection_error', cause: options.cause });
  }
}

/** No answer within the client's `timeout`. */
export class APITimeoutError extends APIConnectionError {
  constructor(message = 'request timed out') {
    super(message, { type: 'timeout_error' });
  }
}

/** The caller aborted the request (its `signal`, or a stream's `abort()`). */
export class APIUserAbortError extends OcularError {
  constructor(message = 'request was aborted') {
    super(message, { type: 'aborted' });
  }
}

/** `videos.waitUntilIndexed`: the video's indexing failed, or it is not queued for indexing. */
/** A clip request that failed (`waitUntilDone`). */
export class ClipGenerationError extends OcularError {
  /** The stage it failed in, as its events named it. */
  readonly stage: string | null;

  constructor(message: string, stage: string | null) {
    super(message, { type: 'clip_error' });
    this.stage = stage;
  }
}

export class VideoIndexingError extends OcularError {
  /** The video's `indexing_status` at the end: `failed`, or `pending` for a video uploaded with `index: false`. */
  readonly indexingStatus: string;

  constructor(message: string, indexingStatus: string) {
    super(message, { type: 'indexing_error' });
    this.indexingStatus = indexingStatus;
  }
}

/** The error class for an HTTP status. */
export function errorClassFor(status: number): typeof OcularError {
  if (status === 400) return BadRequestError;
  if (status === 401) return AuthenticationError;
  if (status === 403) return PermissionDeniedError;
  if (status === 404) return NotFoundError;
  if (status === 409) return ConflictError;
  if (status === 413) return PayloadTooLargeError;
  if (status === 422) return UnprocessableEntityError;
  if (status === 429) return RateLimitError;
  if (status >= 500) return InternalServerError;
  return OcularError;
}

/** The typed error for a failed response's status and body (Ocular's envelope, or whatever else came). */
export function makeStatusError(status: number, body: unknown, headers: Headers): OcularError {
  const envelope = typeof body === 'object' && body !== null ? (body as { error?: unknown }).error : undefined;
  const error = typeof envelope === 'object' && envelope !== null ? (envelope as Record<string, unknown>) : {};
  const message =
    typeof error.message === 'string'
      ? error.message
      : typeof body === 'string' && body.trim() !== ''
        ? body.trim().slice(0, 500)
        : `HTTP ${status}`;
  const ErrorClass = errorClassFor(status);
  return new ErrorClass(message, {
    status,
    type: typeof error.type === 'string' ? error.type : `http_${status}`,
    param: typeof error.param === 'string' ? error.param : undefined,
    requestId: headers.get('x-request-id') ?? undefined,
    headers,
  });
}
