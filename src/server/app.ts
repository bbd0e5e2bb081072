import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Hono, type Context } from 'hono';
import { getPath } from 'hono/utils/url';
import type { ChatService } from '../chat/chat-service.ts';
import type { Limits } from '../config/schema.ts';
import { OcularError, validationError } from '../spec/errors.ts';
import type { ApiKeyVerifier } from '../store/api-keys.ts';
import { errorEnvelope, parseBody } from './errors.ts';
import type { Logger } from './logger.ts';
import { createOpenAiStreamEncoder, fromOpenAiRequest, openAiChatRequestSchema, toOpenAiResponse } from './wire/openai-chat.ts';
import { createRekaStreamEncoder, fromRekaRequest, rekaChatRequestSchema, toRekaResponse } from './wire/reka-chat.ts';

export interface AppDependencies {
  chat: ChatService;
  /** Absent when the server runs with `--no-auth`. */
  verifier: ApiKeyVerifier | undefined;
  limits: Limits;
  logger: Logger;
  /** Aborted when a graceful shutdown runs out of patience: in-flight upstream calls end, streams close. */
  shutdownSignal?: AbortSignal | undefined;
}

/** `max_tokens` when a request gives none (Reka's documented default). */
export const DEFAULT_MAX_TOKENS = 1024;

/** What @hono/node-server passes as `c.env`: Node's own request and response. Absent under `app.request()`. */
type NodeBindings = { incoming?: IncomingMessage; outgoing?: ServerResponse } | undefined;

type Env = { Variables: { requestId: string } };

function collapseSlashes(path: string): string {
  return path.includes('//') ? path.replace(/\/{2,}/g, '/') : path;
}

const REQUEST_ID = /^[\w.:-]{1,128}$/;

function presentedKey(c: Context): string | undefined {
  const header = c.req.header('x-api-key');
  if (header) return header.trim();
  const authorization = c.req.header('authorization');
  if (authorization?.toLowerCase().startsWith('bearer ')) return authorization.slice(7).trim();
  return undefined;
}

const JSON_LIKE_TYPES = /^\s*(?:application\/(?:[\w.+-]+\+)?json|text\/plain|application\/x-www-form-urlencoded)\s*(?:;|$)/i;

function payloadTooLarge(maxBytes: number): OcularError {
  return new OcularError('payload_too_large', `the request body is larger than ${maxBytes} bytes (limits.maxRequestBytes)`);
}

/** Collects Node's request body, failing as soon as it passes `maxBytes` (the rest is left unread). */
function readIncoming(incoming: IncomingMessage, maxBytes: number): Promise<Buffer> {
  const cutShort = (): OcularError => validationError('the client closed the connection before sending the whole body');
  if (incoming.readableEnded) return Promise.resolve(Buffer.alloc(0));
  if (incoming.destroyed) return Promise.reject(cutShort());
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const settle = (error: unknown, body?: Buffer): void => {
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
    const onEnd = (): void => settle(undefined, Buffer.concat(chunks, size));
    const onClose = (): void => settle(cutShort());
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

/**
 * The body is read from Node's request when there is one: going through `c.req` builds a fetch Request
 * (headers copy, web stream over the socket, abort controller) per request, which was about a third of
 * Ocular's CPU time per request in bench/gateway-overhead.ts.
 */
async function readJson(c: Context, maxBytes: number): Promise<unknown> {
  const type = c.req.header('content-type');
  // JSON is read whatever the declared type, except types that say the body is something else:
  // `curl -d` labels JSON as form data, and rejecting that only trips people up.
  if (type !== undefined && !JSON_LIKE_TYPES.test(type)) {
    throw new OcularError('unsupported_media_type', `request bodies must be application/json, not ${type}`);
  }
  const declared = c.req.header('content-length');
  if (declared !== undefined && Number(declared) > maxBytes) throw payloadTooLarge(maxBytes);
  const incoming = (c.env as NodeBindings)?.incoming;
  const text = (incoming ? await readIncoming(incoming, maxBytes) : await readRequestBody(c.req.raw, maxBytes)).toString('utf8');
  if (text.trim() === '') throw validationError('the request body is empty; send a JSON object');
  try {
    return JSON.parse(text);
  } catch (error) {
    throw validationError(`the request body is not valid JSON: ${(error as Error).message}`);
  }
}

const SSE_HEADERS = { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', 'x-accel-buffering': 'no' };

export function createApp(deps: AppDependencies): Hono<Env> {
  const { chat, verifier, limits, logger } = deps;
  // Collapse `//` in paths: the Reka SDK joins a base URL ending in `/` with `/chat`.
  const app = new Hono<Env>({ getPath: (request) => collapseSlashes(getPath(request)) });
  const shutdownSignal = deps.shutdownSignal ?? new AbortController().signal;

  app.use(async (c, next) => {
    const incoming = c.req.header('x-request-id');
    const requestId = incoming !== undefined && REQUEST_ID.test(incoming) ? incoming : randomUUID();
    c.set('requestId', requestId);
    c.header('X-Request-ID', requestId);
    const started = performance.now();
    await next();
    logger.info('request', {
      requestId,
      method: c.req.method,
      path: c.req.path,
      status: c.res.status,
      ms: Math.round((performance.now() - started) * 100) / 100,
    });
  });

  app.onError((error, c) => {
    const mapped = error instanceof OcularError ? error : new OcularError('server_error', 'internal server error', { cause: error });
    if (mapped.type === 'server_error')
      logger.error('unhandled error', { requestId: c.get('requestId'), error: String(error), stack: (error as Error).stack });
    // An oversized body is left unread: the connection cannot carry another request after it.
    if (mapped.type === 'payload_too_large') c.header('Connection', 'close');
    if ((mapped.type === 'rate_limit_error' || mapped.type === 'unavailable_error') && mapped.retryAfterSeconds !== undefined)
      c.header('Retry-After', String(Math.ceil(mapped.retryAfterSeconds)));
    return c.json(errorEnvelope(mapped), mapped.status as 400);
  });

  app.notFound((c) => c.json(errorEnvelope(new OcularError('not_found_error', `no route for ${c.req.method} ${c.req.path}`)), 404));

  app.get('/healthz', (c) => c.json({ status: 'ok' }));

  if (verifier) {
    app.use(async (c, next) => {
      const key = presentedKey(c);
      if (key === undefined || key === '') {
        throw new OcularError('authentication_error', 'missing API key: send it as "X-Api-Key: KEY" or "Authorization: Bearer KEY"');
      }
      if (!verifier.verify(key)) throw new OcularError('authentication_error', 'invalid API key');
      await next();
    });
  }

  // In-flight requests' controllers, all aborted by one listener when shutdown runs out of patience.
  const inFlight = new Set<AbortController>();
  shutdownSignal.addEventListener(
    'abort',
    () => {
      for (const controller of inFlight) controller.abort(shutdownSignal.reason);
    },
    { once: true },
  );

  /** Aborted when the client goes away before the response is complete, or on shutdown. */
  const requestSignal = (c: Context): AbortSignal => {
    const outgoing = (c.env as NodeBindings)?.outgoing;
    if (!outgoing) return AbortSignal.any([c.req.raw.signal, shutdownSignal]);
    // Watched on Node's response: `c.req.raw.signal` would build a fetch Request per request just for it.
    const controller = new AbortController();
    if (shutdownSignal.aborted) controller.abort(shutdownSignal.reason);
    else if (outgoing.closed) controller.abort();
    else {
      inFlight.add(controller);
      outgoing.once('close', () => {
        inFlight.delete(controller);
        if (!outgoing.writableFinished) controller.abort();
      });
    }
    return controller.signal;
  };

  // ---- Reka Chat API v1 ----

  app.get('/v1/models', (c) => c.json(chat.modelNames.map((id) => ({ id }))));

  app.post('/v1/chat', async (c) => {
    const body = parseBody(rekaChatRequestSchema, await readJson(c, limits.maxRequestBytes));
    const request = fromRekaRequest(body, DEFAULT_MAX_TOKENS);
    const signal = requestSignal(c);
    if (!body.stream) return c.json(toRekaResponse(await chat.generate(request, signal)));
    const { id, modelName, parts } = await chat.stream(request, signal);
    return c.body(parts.pipeThrough(createRekaStreamEncoder(id, modelName)).pipeThrough(new TextEncoderStream()), 200, SSE_HEADERS);
  });

  // ---- OpenAI Chat Completions ----

  const listOpenAiModels = (c: Context) =>
    c.json({ object: 'list', data: chat.modelNames.map((id) => ({ id, object: 'model', created: 0, owned_by: 'ocular' })) });

  const openAiChat = async (c: Context) => {
    const body = parseBody(openAiChatRequestSchema, await readJson(c, limits.maxRequestBytes));
    const request = fromOpenAiRequest(body, DEFAULT_MAX_TOKENS);
    const signal = requestSignal(c);
    if (!body.stream) return c.json(toOpenAiResponse(await chat.generate(request, signal)));
    const { id, modelName, parts } = await chat.stream(request, signal);
    const encoder = createOpenAiStreamEncoder(id, modelName, body.stream_options?.include_usage ?? false);
    return c.body(parts.pipeThrough(encoder).pipeThrough(new TextEncoderStream()), 200, SSE_HEADERS);
  };

  app.get('/openai/v1/models', listOpenAiModels);
  app.get('/openai/v1/models/:id{.+}', (c) => {
    const id = c.req.param('id');
    if (!chat.modelNames.includes(id)) throw new OcularError('not_found_error', `unknown model "${id}"`, { param: 'model' });
    return c.json({ id, object: 'model', created: 0, owned_by: 'ocular' });
  });
  app.post('/openai/v1/chat/completions', openAiChat);
  app.post('/v1/chat/completions', openAiChat);

  return app;
}
