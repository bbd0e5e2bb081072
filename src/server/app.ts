import type { IncomingMessage, ServerResponse } from 'node:http';
import { Hono, type Context } from 'hono';
import { getPath } from 'hono/utils/url';
import type { ChatService } from '../chat/chat-service.ts';
import type { Limits } from '../config/schema.ts';
import { OcularError } from '../spec/errors.ts';
import type { ApiKeyVerifier } from '../store/api-keys.ts';
import { CHAT_PATHS, routePath } from './chat-routes.ts';
import { OCULAR_VERSION } from '../config/settings.ts';
import { renderDocsPage, DOCS_PAGE_CSP } from './docs-page.ts';
import { buildOpenApiDocument } from './openapi.ts';
import { authenticate, errorReply, MethodNotAllowedError, REQUEST_ID_HEADER, requestIdFrom, type RequestSignals } from './edge.ts';
import { requestHeader } from './read-body.ts';
import type { Logger } from './logger.ts';
import { registerImageBlobRoutes, registerImageRoutes, type ImageRouteDependencies } from './image-routes.ts';
import { registerVisionBlobRoutes, registerVisionRoutes, type VisionRouteDependencies } from './vision-routes.ts';
import { registerMcpRoute } from '../mcp/http-route.ts';
import { UploadGate } from './upload-gate.ts';
import type { ServerMetrics } from './metrics.ts';
import type { RateLimits } from './rate-limits.ts';
import type { ResearchAgent } from '../research/research-agent.ts';

/** One dependency `/readyz` checks: resolves when it works, rejects saying what is wrong. */
export interface ReadinessCheck {
  name: string;
  check(): Promise<void> | void;
}

/** How long one readiness check may take before it counts as failed. */
const READINESS_TIMEOUT_MS = 2_000;
import { registerSpeechRoutes, type SpeechRouteDependencies } from './speech-routes.ts';
import { DEFAULT_MAX_TOKENS } from './chat-routes.ts';
import { registerConversationBlobRoutes, registerConversationRoutes, type ConversationRouteDependencies } from './conversation-routes.ts';
import { registerQaRoutes, type QaRouteDependencies } from './qa-routes.ts';
import { registerClipBlobRoutes, registerClipRoutes, type ClipRouteDependencies } from './clip-routes.ts';
import { registerWebRoutes, type WebRouteDependencies } from './web-routes.ts';

export interface AppDependencies {
  chat: ChatService;
  /** Absent when the server runs with `--no-auth`. */
  verifier: ApiKeyVerifier | undefined;
  limits: Limits;
  logger: Logger;
  /** Abort signals of requests in flight (aborted by a client that goes away, and on shutdown). */
  signals: RequestSignals;
  /** The video library; its routes are absent without it. */
  vision?: VisionRouteDependencies | undefined;
  /** The image library; its routes are absent without it. */
  images?: ImageRouteDependencies | undefined;
  /** The Speech API (transcription, translation, speech). */
  speech?: SpeechRouteDependencies | undefined;
  /** Conversations with image assets (`/api/...`); their routes are absent without them. */
  conversations?: ConversationRouteDependencies | undefined;
  /** Video QA and quicktag; their routes are absent without them. */
  qa?: QaRouteDependencies | undefined;
  /** Clip generation; its routes are absent without it. */
  clips?: ClipRouteDependencies | undefined;
  /** Absent when `metrics.enabled` is false. */
  metrics?: { registry: ServerMetrics; public: boolean } | undefined;
  /** Absent when no limit is configured. */
  rateLimits?: RateLimits | undefined;
  /** Research models, listed with the chat models. */
  research?: ResearchAgent | undefined;
  /** What `/readyz` checks (the database, the job queue, the blob folders, Redis when used). */
  readiness?: readonly ReadinessCheck[] | undefined;
  /** A worker process's app: /healthz, /readyz and /metrics only. */
  operationsOnly?: boolean | undefined;
  /** The web playground at `/`; absent without it. */
  web?: WebRouteDependencies | undefined;
}

/** What @hono/node-server passes as `c.env`: Node's own request and response. Absent under `app.request()`. */
type NodeBindings = { incoming?: IncomingMessage; outgoing?: ServerResponse } | undefined;

type Env = { Variables: { requestId: string; owner: string } };

/** Methods a 405 may list; HEAD goes with GET (Hono answers HEAD with the GET route). */
const ROUTE_METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'] as const;

/** The methods some route (not a middleware, which Hono files under ALL) takes at `path`. */
function allowedMethods(app: Hono<Env>, path: string): string[] {
  const allowed = ROUTE_METHODS.filter((method) => app.router.match(method, path)[0].some(([[, route]]) => route.method !== 'ALL'));
  return allowed.includes('GET') ? [...allowed, 'HEAD'] : allowed;
}

/**
 * Every route but the chat ones, which are served ahead of this app on Node's request and response
 * (chat-routes.ts); both share what every request goes through (edge.ts).
 */
export function createApp(deps: AppDependencies): Hono<Env> {
  const { chat, verifier, limits, logger, signals, metrics, rateLimits } = deps;
  // Collapse `//` in paths, as the chat routes do: the Reka SDK joins a base URL ending in `/` with `/path`.
  const app = new Hono<Env>({ getPath: (request) => routePath(getPath(request)) });

  app.use(async (c, next) => {
    const requestId = requestIdFrom(requestHeader(c, 'x-request-id'));
    c.set('requestId', requestId);
    // Straight onto Node's response when there is one: `c.header()` builds a fetch Headers object per response.
    const outgoing = (c.env as NodeBindings)?.outgoing;
    if (outgoing) outgoing.setHeader(REQUEST_ID_HEADER, requestId);
    else c.header(REQUEST_ID_HEADER, requestId);
    const started = performance.now();
    await next();
    if (metrics) {
      // The pattern the request matched (`/v1/videos/:id`), never the raw path: labels stay bounded.
      const route = c.req.matchedRoutes.findLast((candidate) => candidate.method !== 'ALL')?.path ?? 'unmatched';
      const status = c.res.status;
      const record = () => metrics.registry.request(route, c.req.method, status, (performance.now() - started) / 1000);
      // A streamed answer is timed to its last byte when Node's response is at hand.
      if (outgoing && !outgoing.writableFinished) outgoing.once('close', record);
      else record();
    }
    logger.info('request', {
      requestId,
      method: c.req.method,
      path: c.req.path,
      status: c.res.status,
      ms: Math.round((performance.now() - started) * 100) / 100,
    });
  });

  app.onError((error, c) => {
    const { status, headers, body } = errorReply(error, logger, c.get('requestId'));
    return c.json(body, status as 400, headers);
  });

  app.notFound((c) => {
    const allowed = allowedMethods(app, c.req.path);
    const error =
      allowed.length > 0
        ? new MethodNotAllowedError(c.req.method, c.req.path, allowed)
        : new OcularError('not_found_error', `no route for ${c.req.method} ${c.req.path}`);
    const { status, headers, body } = errorReply(error, logger, c.get('requestId'));
    return c.json(body, status as 404, headers);
  });

  app.get('/healthz', (c) => c.json({ status: 'ok' }));

  // Readiness: each dependency answers, within a bound; 503 naming the ones that do not.
  app.get('/readyz', async (c) => {
    const results = await Promise.all(
      (deps.readiness ?? []).map(async ({ name, check }) => {
        let timer: NodeJS.Timeout | undefined;
        try {
          await Promise.race([
            check(),
            new Promise((_, reject) => {
              timer = setTimeout(() => reject(new Error(`no answer within ${READINESS_TIMEOUT_MS} ms`)), READINESS_TIMEOUT_MS);
            }),
          ]);
          return [name, { status: 'ok' }] as const;
        } catch (error) {
          return [name, { status: 'failing', error: (error as Error).message }] as const;
        } finally {
          clearTimeout(timer);
        }
      }),
    );
    const ready = results.every(([, result]) => result.status === 'ok');
    return c.json({ status: ready ? 'ready' : 'not_ready', checks: Object.fromEntries(results) }, ready ? 200 : 503);
  });

  const serveMetrics = async (c: Context) => {
    const { body, contentType } = await metrics!.registry.render();
    return c.body(body, 200, { 'Content-Type': contentType, 'Cache-Control': 'no-store' });
  };
  if (metrics?.public) app.get('/metrics', serveMetrics);
  if (deps.operationsOnly) {
    if (metrics && !metrics.public) {
      app.get('/metrics', (c) => {
        authenticate(verifier, (name) => requestHeader(c, name));
        return serveMetrics(c);
      });
    }
    return app;
  }

  // The API reference: built on first use from the routes registered by then (all of them: registration ends
  // before the server listens), so a route without an entry in OPERATIONS shows up as undocumented.
  let reference: Record<string, unknown> | undefined;
  const openApiDocument = () =>
    (reference ??= buildOpenApiDocument([...Object.values(CHAT_PATHS).map((path) => ({ method: 'POST', path })), ...app.routes], {
      version: OCULAR_VERSION,
    }));
  app.get('/openapi.json', (c) => c.json(openApiDocument()));
  app.get('/docs', (c) => c.html(renderDocsPage(openApiDocument()), 200, { 'Content-Security-Policy': DOCS_PAGE_CSP }));
  if (deps.vision) registerVisionBlobRoutes(app, deps.vision);
  if (deps.images) registerImageBlobRoutes(app, deps.images);
  if (deps.conversations) registerConversationBlobRoutes(app, deps.conversations);
  if (deps.clips) registerClipBlobRoutes(app, deps.clips);
  if (deps.web) registerWebRoutes(app, { publicBaseUrl: deps.vision?.publicBaseUrl, ...deps.web });

  app.use(async (c, next) => {
    const owner = authenticate(verifier, (name) => requestHeader(c, name));
    c.set('owner', owner);
    if (rateLimits) {
      await rateLimits.admitRequest(owner, (headers) => {
        for (const [name, value] of Object.entries(headers)) c.header(name, value);
      });
    }
    await next();
  });

  if (metrics && !metrics.public) app.get('/metrics', serveMetrics);

  /** Aborted when the client goes away before the response is complete, or on shutdown. */
  const requestSignal = (c: Context): AbortSignal => {
    const outgoing = (c.env as NodeBindings)?.outgoing;
    return outgoing ? signals.forResponse(outgoing) : AbortSignal.any([c.req.raw.signal, signals.shutdown]);
  };
  const edge = { requestSignal, bodyLimits: limits, uploads: new UploadGate(limits.maxConcurrentUploads) };

  // ---- model lists (Reka v1 and OpenAI) ----

  const modelNames = (): string[] => [...chat.modelNames, ...(deps.research?.modelNames ?? [])];
  app.get('/v1/models', (c) => c.json(modelNames().map((id) => ({ id }))));

  const listOpenAiModels = (c: Context) =>
    c.json({ object: 'list', data: modelNames().map((id) => ({ id, object: 'model', created: 0, owned_by: 'ocular' })) });

  app.get('/openai/v1/models', listOpenAiModels);
  app.get('/openai/v1/models/:id{.+}', (c) => {
    const id = c.req.param('id');
    if (!modelNames().includes(id)) throw new OcularError('not_found_error', `unknown model "${id}"`, { param: 'model' });
    return c.json({ id, object: 'model', created: 0, owned_by: 'ocular' });
  });

  if (deps.vision) registerVisionRoutes(app, deps.vision, edge);
  if (deps.images) registerImageRoutes(app, deps.images, edge);
  if (deps.speech) registerSpeechRoutes(app, deps.speech, edge);
  registerMcpRoute(
    app,
    { chat, vision: deps.vision, images: deps.images, qa: deps.qa, clips: deps.clips, defaultMaxTokens: DEFAULT_MAX_TOKENS },
    edge,
    { logger, publicBaseUrl: deps.vision?.publicBaseUrl },
  );
  if (deps.conversations) registerConversationRoutes(app, deps.conversations, edge);
  if (deps.qa) registerQaRoutes(app, deps.qa, edge);
  if (deps.clips) registerClipRoutes(app, deps.clips, edge);

  return app;
}
