import type { IncomingMessage } from 'node:http';
import type { Context } from 'hono';
import type { Limits } from '../config/schema.ts';
import { OcularError, validationError } from '../spec/errors.ts';
import type { HeaderReader } from './edge.ts';

/** What @hono/node-server passes as `c.env`: Node's own request and response. Absent under `app.request()`. */
type NodeBindings = { incoming?: IncomingMessage } | undefined;

const JSON_LIKE_TYPES = /^\s*(?:application\/(?:[\w.+-]+\+)?json|text\/plain|application\/x-www-form-urlencoded)\s*(?:;|$)/i;

function payloadTooLarge(maxBytes: number): OcularError {
  return new OcularError('payload_too_large', `the request body is larger than ${maxBytes} bytes (limits.maxRequestBytes)`);
}

/** What bounds a JSON request body. */
export type BodyLimits = Pick<Limits, 'maxRequestBytes' | 'requestBodyTimeoutMs'>;

/**
 * Bodies still arriving, each with the moment it must be complete by. One coarse timer checks them all: a timer
 * per request cost more than the rest of reading a small body (bench/gateway-overhead.ts, one connection).
 */
const arriving = new Map<IncomingMessage, { deadline: number; expire: () => void }>();
let sweeper: NodeJS.Timeout | undefined;
const SWEEP_MS = 100;

function sweep(): void {
  const now = performance.now();
  for (const [incoming, entry] of arriving) {
    if (entry.deadline > now) continue;
    arriving.delete(incoming);
    entry.expire();
  }
  if (arriving.size === 0) {
    clearInterval(sweeper);
    sweeper = undefined;
  }
}

/** Collects Node's request body, failing as soon as it passes `maxRequestBytes` (the rest is left unread). */
function readIncoming(incoming: IncomingMessage, limits: BodyLimits): Promise<Buffer> {
  const { maxRequestBytes: maxBytes, requestBodyTimeoutMs: timeoutMs } = limits;
  const cutShort = (): OcularError => validationError('the client closed the connection before sending the whole body');
  if (incoming.readableEnded) return Promise.resolve(Buffer.alloc(0));
  if (incoming.destroyed) return Promise.reject(cutShort());
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const settle = (error: unknown, body?: Buffer): void => {
      arriving.delete(incoming);
      incoming.off('data', onData).off('end', onEnd).off('error', settle).off('close', onClose);
      if (body) resolve(body);
      else reject(error);
    };
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size <= maxBytes) {
        chunks.push(chunk);
        return;
      }
      incoming.pause();
      settle(payloadTooLarge(maxBytes));
    };
    const onEnd = (): void => settle(undefined, chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
    const onClose = (): void => settle(cutShort());
    const expire = (): void => {
      incoming.pause();
      settle(
        new OcularError('validation_error', `the request body did not arrive within ${timeoutMs} ms (limits.requestBodyTimeoutMs)`, {
          closeConnection: true,
        }),
      );
    };
    arriving.set(incoming, { deadline: performance.now() + timeoutMs, expire });
    sweeper ??= setInterval(sweep, Math.min(SWEEP_MS, timeoutMs)).unref();
    incoming.on('data', onData).once('end', onEnd).once('error', settle).once('close', onClose);
  });
}

/** Collects a fetch Request's body (under `app.request()`), with the same cap. */
async function readRequestBody(request: Request, maxBytes: number): Promise<Buffer> {
  const reader = request.body?.getReader();
  if (!reader) return Buffer.alloc(0);
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return Buffer.concat(chunks, size);
    size += value.byteLength;
    if (size > maxBytes) throw payloadTooLarge(maxBytes);
    chunks.push(value);
  }
}

/** Checks the declared type and length, then parses the collected body as JSON (400 when it is not). */
async function parseJsonBody(header: HeaderReader, limits: BodyLimits, collect: () => Promise<Buffer>): Promise<unknown> {
  const type = header('content-type');
  // JSON is read whatever the declared type, except types that say the body is something else:
  // `curl -d` labels JSON as form data, and rejecting that only trips people up.
  if (type !== undefined && !JSON_LIKE_TYPES.test(type)) {
    throw new OcularError('unsupported_media_type', `request bodies must be application/json, not ${type}`);
  }
  const declared = header('content-length');
  if (declared !== undefined && Number(declared) > limits.maxRequestBytes) throw payloadTooLarge(limits.maxRequestBytes);
  const text = (await collect()).toString('utf8');
  if (text.trim() === '') throw validationError('the request body is empty; send a JSON object');
  try {
    return JSON.parse(text);
  } catch (error) {
    throw validationError(`the request body is not valid JSON: ${(error as Error).message}`);
  }
}

/** A header of Node's request, several values joined as one. */
export function nodeHeader(incoming: IncomingMessage, name: string): string | undefined {
  const value = incoming.headers[name];
  return Array.isArray(value) ? value.join(', ') : value;
}

/** Reads Node's request body as JSON, under the body limits. */
export function readJsonBody(incoming: IncomingMessage, limits: BodyLimits): Promise<unknown> {
  return parseJsonBody(
    (name) => nodeHeader(incoming, name),
    limits,
    () => readIncoming(incoming, limits),
  );
}

/**
 * Reads a Hono request's body as JSON. The body is read from Node's request when there is one: going through
 * `c.req` builds a fetch Request (headers copy, web stream over the socket, abort controller) per request.
 */
export function readJson(c: Context, limits: BodyLimits): Promise<unknown> {
  const incoming = (c.env as NodeBindings)?.incoming;
  if (incoming) return readJsonBody(incoming, limits);
  return parseJsonBody(
    (name) => c.req.header(name),
    limits,
    () => readRequestBody(c.req.raw, limits.maxRequestBytes),
  );
}

/**
 * A request header, from Node's parsed headers when there is a Node request: `c.req.header()` would build a
 * fetch `Headers` object from all of them first, a measurable share of a small request's cost.
 */
export function requestHeader(c: Context, name: string): string | undefined {
  const incoming = (c.env as NodeBindings)?.incoming;
  return incoming ? nodeHeader(incoming, name) : c.req.header(name);
}
