import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Hono, type Context } from 'hono';
import { getPath } from 'hono/utils/url';
import type { ChatService } from '../chat/chat-service.ts';
import type { Limits } from '../config/schema.ts';
import { OcularError } from '../spec/errors.ts';
import { NO_AUTH_OWNER, type ApiKeyVerifier } from '../store/api-keys.ts';
import { errorEnvelope, parseBody } from './errors.ts';
import { readJson, requestHeader } from './read-body.ts';
import type { Logger } from './logger.ts';
import { registerVisionBlobRoutes, registerVisionRoutes, type VisionRouteDependencies } from './vision-routes.ts';
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
  /** The video library; its routes are absent without it. */
  vision?: VisionRouteDependencies | undefined;
}

/** `max_tokens` when a request gives none (Reka's documented default). */
export const DEFAULT_MAX_TOKENS = 1024;

/** What @hono/node-server passes as `c.env`: Node's own request and response. Absent under `app.request()`. */
type NodeBindings = { incoming?: IncomingMessage; outgoing?: ServerResponse } | undefined;

type Env = { Variables: { requestId: string; owner: string } };

function collapseSlashes(path: string): string {
  return path.includes('//') ? path.replace(/\/{2,}/g, '/') : path;
}

const REQUEST_ID = /^[\w.:-]{1,128}$/;

function presentedKey(c: Context): string | undefined {
  const header = requestHeader(c, 'x-api-key');
  if (header) return header.trim();
  const authorization = requestHeader(c, 'authorization');
  if (authorization?.toLowerCase().startsWith('bearer ')) return authorization.slice(7).trim();
  return undefined;
}

const SSE_HEADERS = { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', 'x-accel-buffering': 'no' };

export function createApp(deps: AppDependencies): Hono<Env> {
  const { chat, verifier, limits, logger } = deps;
  // Collapse `//` in paths: the Reka SDK joins a base URL ending in `/` with `/chat`.
  const app = new Hono<Env>({ getPath: (request) => collapseSlashes(getPath(request)) });
  const shutdownSignal = deps.shutdownSignal ?? new AbortController().signal;

  app.use(async (c, next) => {
    const incoming = requestHeader(c, 'x-request-id');
    const requestId = incoming !== undefined && REQUEST_ID.test(incoming) ? incoming : randomUUID();
    c.set('requestId', requestId);
    // Straight onto Node's response when there is one: `c.header()` builds a fetch Headers object per response.
    const outgoing = (c.env as NodeBindings)?.outgoing;
    if (outgoing) outgoing.setHeader('X-Request-ID', requestId);
    else c.header('X-Request-ID', requestId);
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
    // A body left unread (too large, too slow): the connection cannot carry another request after it.
    if (mapped.type === 'payload_too_large' || mapped.closeConnection) c.header('Connection', 'close');
    if ((mapped.type === 'rate_limit_error' || mapped.type === 'unavailable_error') && mapped.retryAfterSeconds !== undefined)
      c.header('Retry-After', String(Math.ceil(mapped.retryAfterSeconds)));
    return c.json(errorEnvelope(mapped), mapped.status as 400);
  });

  app.notFound((c) => c.json(errorEnvelope(new OcularError('not_found_error', `no route for ${c.req.method} ${c.req.path}`)), 404));

  app.get('/healthz', (c) => c.json({ status: 'ok' }));
  if (deps.vision) registerVisionBlobRoutes(app, deps.vision);

  if (verifier) {
    app.use(async (c, next) => {
      const key = presentedKey(c);
      if (key === undefined || key === '') {
        throw new OcularError('authentication_error', 'missing API key: send it as "X-Api-Key: KEY" or "Authorization: Bearer KEY"');
      }
      const owner = verifier.verify(key);
      if (owner === undefined) throw new OcularError('authentication_error', 'invalid API key');
      c.set('owner', owner);
      await next();
    });
  } else {
    app.use(async (c, next) => {
      c.set('owner', NO_AUTH_OWNER);
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
    const body = parseBody(rekaChatRequestSchema, await readJson(c, limits));
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
    const body = parseBody(openAiChatRequestSchema, await readJson(c, limits));
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

  if (deps.vision) registerVisionRoutes(app, deps.vision, { requestSignal, bodyLimits: limits });

  return app;
}
