// The chat endpoints (`POST /v1/chat`, `/v1/chat/completions`, `/openai/v1/chat/completions`), served straight on
// Node's request and response ahead of the Hono app. They are the gateway's hot path: going through Hono's
// adapter, context, middleware chain and Response object cost ~60 us of latency per request at one connection
// and a third of the throughput (bench/gateway-overhead.ts), more than everything Ocular itself does there.
// What every request needs (request id, auth, error answers, abort signals) is shared with the app (edge.ts).
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ChatService } from '../chat/chat-service.ts';
import type { Limits } from '../config/schema.ts';
import type { Usage } from '../spec/messages.ts';
import type { StreamPart } from '../spec/stream-parts.ts';
import type { ServerMetrics } from './metrics.ts';
import type { RateLimits } from './rate-limits.ts';
import type { ResearchAgent, ResearchStep } from '../research/research-agent.ts';
import { OcularError, validationError } from '../spec/errors.ts';
import { PARALLEL_ATTEMPTS, researchChunks, researchRequestSchema, toResearchResponse } from './wire/research.ts';
import { randomUUID } from 'node:crypto';
import type { OpenAiChatRequest } from './wire/openai-chat.ts';
import type { ApiKeyVerifier } from '../store/api-keys.ts';
import { authenticate, errorReply, MethodNotAllowedError, REQUEST_ID_HEADER, requestIdFrom, type RequestSignals } from './edge.ts';
import { parseBody } from './errors.ts';
import type { Logger } from './logger.ts';
import type { EventEncoder } from './wire/common.ts';
import { nodeHeader, readJsonBody } from './read-body.ts';
import { createOpenAiStreamEncoder, fromOpenAiRequest, openAiChatRequestSchema, toOpenAiResponse } from './wire/openai-chat.ts';
import { createRekaStreamEncoder, fromRekaRequest, rekaChatRequestSchema, toRekaResponse } from './wire/reka-chat.ts';

/** `max_tokens` when a request gives none (Reka's documented default). */
export const DEFAULT_MAX_TOKENS = 1024;

export interface ChatRouteDependencies {
  chat: ChatService;
  /** Absent when the server runs with `--no-auth`. */
  verifier: ApiKeyVerifier | undefined;
  limits: Limits;
  logger: Logger;
  signals: RequestSignals;
  /** Absent when `metrics.enabled` is false. */
  metrics?: ServerMetrics | undefined;
  /** Absent when no limit is configured. */
  rateLimits?: RateLimits | undefined;
  /** Research models, answered on the OpenAI routes. */
  research?: ResearchAgent | undefined;
}

/** A route's answer: a JSON body (with the tokens it cost), or stream parts sent as server-sent events. */
type ChatReply =
  | { json: unknown; usage: Usage }
  | { parts: ReadableStream<StreamPart>; encoder: EventEncoder }
  /** SSE frames already encoded (a research model's steps and answer), and what they cost once done. */
  | { frames: ReadableStream<string>; usage: Promise<Usage> };

type ChatRoute = (body: unknown, signal: AbortSignal) => Promise<ChatReply>;

const SSE_HEADERS = { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', 'x-accel-buffering': 'no' };

/** The chat routes (POST), served on Node's request and response ahead of the Hono app. */
export const CHAT_PATHS = {
  reka: '/v1/chat',
  openAi: '/v1/chat/completions',
  /** For the `openai` SDK with `baseURL: …/openai/v1`. */
  openAiPrefixed: '/openai/v1/chat/completions',
} as const;

function routes(chat: ChatService, research: ResearchAgent | undefined): ReadonlyMap<string, ChatRoute> {
  const reka: ChatRoute = async (json, signal) => {
    const body = parseBody(rekaChatRequestSchema, json);
    const request = fromRekaRequest(body, DEFAULT_MAX_TOKENS);
    if (!body.stream) {
      const result = await chat.generate(request, signal);
      return { json: toRekaResponse(result), usage: result.usage };
    }
    const { id, modelName, parts } = await chat.stream(request, signal);
    return { parts, encoder: createRekaStreamEncoder(id, modelName) };
  };
  const openAi: ChatRoute = async (json, signal) => {
    const body = parseBody(openAiChatRequestSchema, json);
    if (research?.has(body.model)) return researchReply(research, body, signal);
    const request = fromOpenAiRequest(body, DEFAULT_MAX_TOKENS);
    if (!body.stream) {
      const result = await chat.generate(request, signal);
      return { json: toOpenAiResponse(result), usage: result.usage };
    }
    const { id, modelName, parts } = await chat.stream(request, signal);
    return { parts, encoder: createOpenAiStreamEncoder(id, modelName, body.stream_options?.include_usage ?? false) };
  };
  return new Map([
    [CHAT_PATHS.reka, reka],
    [CHAT_PATHS.openAi, openAi],
    [CHAT_PATHS.openAiPrefixed, openAi],
  ]);
}

/** A Chat Completions request to a research model: the agent answers, streaming its steps when asked. */
async function researchReply(research: ResearchAgent, body: OpenAiChatRequest, signal: AbortSignal): Promise<ChatReply> {
  // Validated under its own name, so errors point at `research.web_search...`.
  const options = parseBody(researchRequestSchema, { research: (body as { research?: unknown }).research }).research ?? {};
  if (body.tools?.length) throw validationError('a research model brings its own tools; leave tools out', 'tools');
  if (body.response_format !== undefined) {
    throw validationError('response_format is not available on research models', 'response_format');
  }
  const mode = options.parallel_thinking?.mode ?? 'none';
  if (mode !== 'none' && body.stream)
    throw validationError('parallel_thinking cannot be streamed; leave stream unset', 'research.parallel_thinking');
  const chatRequest = fromOpenAiRequest(body, DEFAULT_MAX_TOKENS);
  const request = {
    messages: chatRequest.messages,
    maxTokens: chatRequest.maxTokens,
    temperature: chatRequest.temperature,
    webSearch: {
      maxUses: options.web_search?.max_uses,
      allowedDomains: options.web_search?.allowed_domains,
      blockedDomains: options.web_search?.blocked_domains,
    },
    attempts: PARALLEL_ATTEMPTS[mode],
  };
  const id = randomUUID();
  const model = body.model!;
  if (!body.stream) {
    const result = await research.run(model, request, signal);
    return { json: toResearchResponse(id, model, result), usage: result.usage };
  }
  const chunks = researchChunks(id, model);
  const cancelled = new AbortController();
  let resolveUsage!: (usage: Awaited<ReturnType<ResearchAgent['run']>>['usage']) => void;
  let rejectUsage!: (error: unknown) => void;
  const usage = new Promise<Awaited<ReturnType<ResearchAgent['run']>>['usage']>((resolve, reject) => {
    resolveUsage = resolve;
    rejectUsage = reject;
  });
  const frames = new ReadableStream<string>({
    start(controller) {
      controller.enqueue(chunks.opening);
      const onStep = (step: ResearchStep): void => controller.enqueue(chunks.step(step));
      research.run(model, request, AbortSignal.any([signal, cancelled.signal]), onStep).then(
        (result) => {
          controller.enqueue(chunks.answer(result, body.stream_options?.include_usage ?? false));
          controller.close();
          resolveUsage(result.usage);
        },
        (error: unknown) => {
          if (!cancelled.signal.aborted) {
            controller.enqueue(chunks.error(error instanceof OcularError ? error : new OcularError('server_error', 'the research failed')));
            controller.close();
          }
          rejectUsage(error);
        },
      );
    },
    cancel() {
      cancelled.abort();
    },
  });
  return { frames, usage };
}

/** The request's path without its query, `//` collapsed (the Reka SDK joins a base URL ending in `/` with `/chat`). */
export function routePath(url: string): string {
  const query = url.indexOf('?');
  const path = query === -1 ? url : url.slice(0, query);
  return path.includes('//') ? path.replace(/\/{2,}/g, '/') : path;
}

function sendJson(outgoing: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  outgoing.writeHead(status, { ...headers, 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  outgoing.end(text);
}

/** Resolves once the response can take more, or is gone; leaves no listener behind (a stream may wait often). */
function drained(outgoing: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      outgoing.off('drain', done).off('close', done);
      resolve();
    };
    outgoing.once('drain', done).once('close', done);
  });
}

/**
 * Writes the events of `parts` as they come, waiting for the socket to drain; a client that goes away cancels
 * the stream. The encoder's opening event leaves at once, before the first part is read.
 */
async function sendEvents<Item>(
  outgoing: ServerResponse,
  parts: ReadableStream<Item>,
  opening: string,
  encode: (item: Item) => string,
): Promise<void> {
  outgoing.writeHead(200, SSE_HEADERS);
  const reader = parts.getReader();
  const cancel = (): void => void reader.cancel().catch(() => undefined);
  outgoing.once('close', cancel);
  let flushed = false;
  const send = async (text: string): Promise<void> => {
    if (text === '') return;
    if (!outgoing.write(text)) await drained(outgoing);
    else if (!flushed) {
      // Writes in one tick leave together (Node corks the socket until the next tick). Let the first event go
      // out on its own, so the client sees the answer start without waiting for events queued behind it.
      flushed = true;
      await new Promise((resolve) => process.nextTick(resolve));
    }
  };
  try {
    await send(opening);
    for (let next = await reader.read(); !next.done; next = await reader.read()) {
      if (outgoing.destroyed) return;
      await send(encode(next.value));
    }
    outgoing.end();
  } catch (error) {
    outgoing.destroy(error as Error);
  } finally {
    outgoing.off('close', cancel);
    reader.releaseLock();
  }
}

/**
 * A request listener for the chat routes: answers and returns true for a request to one of them (405 for any
 * method but `POST`), returns false for anything else (the caller hands that to the app).
 */
export function createChatRoutes(deps: ChatRouteDependencies): (incoming: IncomingMessage, outgoing: ServerResponse) => boolean {
  const { verifier, limits, logger, signals, metrics, rateLimits } = deps;
  const table = routes(deps.chat, deps.research);
  const setHeaders = (outgoing: ServerResponse) => (headers: Record<string, string>) => {
    for (const [name, value] of Object.entries(headers)) outgoing.setHeader(name, value);
  };

  const serve = async (route: ChatRoute, incoming: IncomingMessage, outgoing: ServerResponse, path: string): Promise<void> => {
    const started = performance.now();
    const requestId = requestIdFrom(nodeHeader(incoming, 'x-request-id'));
    outgoing.setHeader(REQUEST_ID_HEADER, requestId);
    // On 'close', which also comes when the client goes away mid-answer ('finish' would not).
    outgoing.once('close', () =>
      logger.info('request', {
        requestId,
        method: incoming.method,
        path,
        status: outgoing.statusCode,
        ms: Math.round((performance.now() - started) * 100) / 100,
        ...(outgoing.writableFinished ? {} : { completed: false }),
      }),
    );
    if (metrics)
      outgoing.once('close', () => metrics.request(path, incoming.method ?? '', outgoing.statusCode, (performance.now() - started) / 1000));
    try {
      const owner = authenticate(verifier, (name) => nodeHeader(incoming, name));
      if (incoming.method !== 'POST') throw new MethodNotAllowedError(incoming.method ?? '', path, ['POST']);
      let spend: ((usage: Usage) => void) | undefined;
      if (rateLimits) {
        await rateLimits.admitRequest(owner, setHeaders(outgoing));
        await rateLimits.checkTokens(owner, setHeaders(outgoing));
        if (rateLimits.countsTokens) {
          spend = (usage) =>
            void rateLimits
              .spendTokens(owner, usage.inputTokens + usage.outputTokens)
              .catch((error: unknown) => logger.warn('could not count tokens against the quota', { requestId, error: String(error) }));
        }
      }
      const reply = await route(await readJsonBody(incoming, limits), signals.forResponse(outgoing));
      if ('json' in reply) {
        spend?.(reply.usage);
        sendJson(outgoing, 200, reply.json);
      } else {
        const closeStream = metrics?.streamOpened();
        try {
          if ('frames' in reply) {
            // Research: frames written as the agent goes; its tokens are counted when it is done.
            void reply.usage.then(spend, () => undefined);
            await sendEvents(outgoing, reply.frames, '', (frame) => frame);
          } else {
            const { encoder } = reply;
            await sendEvents(outgoing, reply.parts, encoder.opening, (part) => {
              if (part.type === 'finish') spend?.(part.usage);
              return encoder.encode(part);
            });
          }
        } finally {
          closeStream?.();
        }
      }
    } catch (error) {
      if (outgoing.headersSent) {
        outgoing.destroy();
        return;
      }
      const { status, headers, body } = errorReply(error, logger, requestId);
      // Refused before its body was read (bad key, wrong type): close rather than read a body nobody wants.
      if (!incoming.complete) headers.Connection = 'close';
      sendJson(outgoing, status, body, headers);
    }
  };

  return (incoming, outgoing) => {
    const path = routePath(incoming.url ?? '/');
    const route = table.get(path);
    if (!route) return false;
    serve(route, incoming, outgoing, path).catch((error: unknown) => {
      // Only a bug gets here (serve answers every failure itself): never leave the client hanging.
      logger.error('unhandled error', { error: String(error), stack: (error as Error).stack });
      outgoing.destroy();
    });
    return true;
  };
}
