// The playground's only way to the server: the same public API every client uses, with the key the user saved.
import { createParser, type EventSourceMessage } from 'eventsource-parser';

const KEY_STORAGE = 'ocular.apiKey';

export function savedKey(): string {
  return localStorage.getItem(KEY_STORAGE) ?? '';
}

export function saveKey(key: string): void {
  if (key === '') localStorage.removeItem(KEY_STORAGE);
  else localStorage.setItem(KEY_STORAGE, key);
}

/** An error envelope `{"error":{"type","message"}}` from the API, or a network failure (status 0). */
export class ApiError extends Error {
  readonly status: number;
  readonly type: string;
  constructor(status: number, type: string, message: string) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.type = type;
  }
}

function headers(json: boolean): Record<string, string> {
  const key = savedKey();
  return { ...(key === '' ? {} : { 'x-api-key': key }), ...(json ? { 'content-type': 'application/json' } : {}) };
}

/** The error a non-2xx response carries, read from its envelope when it has one. */
export function errorFrom(status: number, text: string): ApiError {
  try {
    const body = JSON.parse(text) as { error?: { type?: unknown; message?: unknown } };
    if (body.error && typeof body.error.message === 'string') {
      return new ApiError(status, typeof body.error.type === 'string' ? body.error.type : 'error', body.error.message);
    }
  } catch {
    // not JSON: fall through
  }
  return new ApiError(status, 'error', `HTTP ${status}${text.trim() === '' ? '' : `: ${text.trim().slice(0, 200)}`}`);
}

async function send(method: string, path: string, body: unknown, signal?: AbortSignal): Promise<Response> {
  let response: Response;
  try {
    response = await fetch(path, {
      method,
      headers: headers(body !== undefined),
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      ...(signal === undefined ? {} : { signal }),
    });
  } catch (error) {
    if ((error as Error).name === 'AbortError') throw error;
    throw new ApiError(0, 'network_error', `the server could not be reached (${(error as Error).message})`);
  }
  if (!response.ok) throw errorFrom(response.status, await response.text());
  return response;
}

export async function requestJson<T>(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<T> {
  const response = await send(method, path, body, signal);
  return (await response.json()) as T;
}

/**
 * POSTs `body` and hands each server-sent event to `onEvent` until the stream ends. An `error` event (an error
 * after the stream began) is thrown as an ApiError. Aborting `signal` stops reading.
 */
export async function streamEvents(
  path: string,
  body: unknown,
  onEvent: (message: EventSourceMessage) => void,
  signal: AbortSignal,
): Promise<void> {
  const response = await send('POST', path, body, signal);
  if (response.body === null) return;
  let failure: ApiError | undefined;
  const parser = createParser({
    onEvent: (message) => {
      if (failure !== undefined) return;
      if (message.event === 'error') {
        failure = errorFrom(500, message.data);
        return;
      }
      onEvent(message);
    },
  });
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      parser.feed(value);
      if (failure !== undefined) throw failure;
    }
  } finally {
    reader.releaseLock();
  }
}

export interface UploadHandle {
  done: Promise<unknown>;
  abort(): void;
}

/**
 * A multipart upload through XMLHttpRequest, the one browser API that reports upload progress (fetch does not).
 * `onProgress` gets the fraction sent, 0..1.
 */
export function upload(path: string, form: FormData, onProgress: (fraction: number) => void): UploadHandle {
  const request = new XMLHttpRequest();
  const done = new Promise<unknown>((resolve, reject) => {
    request.open('POST', path);
    for (const [name, value] of Object.entries(headers(false))) request.setRequestHeader(name, value);
    request.upload.addEventListener('progress', (event) => {
      if (event.lengthComputable && event.total > 0) onProgress(event.loaded / event.total);
    });
    request.addEventListener('load', () => {
      if (request.status >= 200 && request.status < 300) {
        try {
          resolve(JSON.parse(request.responseText) as unknown);
        } catch {
          reject(new ApiError(request.status, 'error', 'the server answered with something that is not JSON'));
        }
      } else {
        reject(errorFrom(request.status, request.responseText));
      }
    });
    request.addEventListener('error', () => reject(new ApiError(0, 'network_error', 'the upload failed: the connection was lost')));
    request.addEventListener('abort', () => reject(new DOMException('upload cancelled', 'AbortError')));
    request.send(form);
  });
  return { done, abort: () => request.abort() };
}

/** A message for the page: what went wrong, and what to do when the key is the problem. */
export function describeError(error: unknown): string {
  if (error instanceof ApiError) {
    if (error.status === 401) return `${error.message} — enter a valid API key at the top of the page.`;
    return error.status === 0 ? error.message : `${error.message} (${error.status} ${error.type})`;
  }
  return (error as Error).message ?? String(error);
}
