import { mkdir, rm } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import { join } from 'node:path';
import type { Context, Hono } from 'hono';
import type { ChatService } from '../chat/chat-service.ts';
import type { ModelRegistry } from '../chat/model-registry.ts';
import { ConfigError } from '../config/load-config.ts';
import type { ServerSettings } from '../config/settings.ts';
import { AssetLibrary, ASSET_KEY } from '../conversations/assets.ts';
import { ConversationService, type TurnRequest } from '../conversations/conversation-service.ts';
import { createWebSearch } from '../conversations/web-search.ts';
import { createFfmpegContext } from '../media/binaries.ts';
import { OcularError, validationError } from '../spec/errors.ts';
import type { StreamPart } from '../spec/stream-parts.ts';
import { AssetStore, type AssetRecord } from '../store/asset-store.ts';
import { ConversationStore } from '../store/conversation-store.ts';
import type { SqlDatabase } from '../store/sql.ts';
import { BlobClaims } from '../store/blob-claims.ts';
import { ImageBlobStore } from '../store/image-blob-store.ts';
import type { S3Blobs } from '../store/object-store.ts';
import { createUrlSigner, loadOrCreateSigningSecret, type UrlSigner } from '../vision/signed-urls.ts';
import { errorEnvelope, parseBody } from './errors.ts';
import { fileResponse } from './file-response.ts';
import { receiveMultipartUpload } from './multipart-upload.ts';
import { readJson } from './read-body.ts';
import type { RequestEdge } from './vision-routes.ts';
import {
  createConversationSchema,
  DEFAULT_MAX_WORD,
  DEFAULT_NUM_OF_SITE,
  exportQuerySchema,
  featuresQuerySchema,
  featuresRequestSchema,
  pageQuerySchema,
  toMarkdown,
  toWireAnswer,
  toWireAsset,
  toWireConversation,
  toWireMemory,
  toWireMessages,
} from './wire/conversations.ts';
import { sseFrame } from './wire/common.ts';

export interface ConversationRouteDependencies {
  conversations: ConversationService;
  assets: AssetLibrary;
  signer: UrlSigner;
  /** Seconds a signed asset URL stays valid (`vision.urlTtlSeconds`). */
  urlTtlSeconds: number;
  /** The origin signed URLs are built on; absent, each request's own. */
  publicBaseUrl?: string | undefined;
  /** Largest asset file accepted (`media.maxBytes`). */
  maxAssetBytes: number;
}

type ConversationEnv = { Variables: { requestId: string; owner: string } };
const SSE_HEADERS = { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', 'x-accel-buffering': 'no' };
const TEXT_HEADERS = { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-cache', 'x-accel-buffering': 'no' };

/** Everything the conversation API needs, built from the settings at boot. */
export function createConversations(options: {
  settings: ServerSettings;
  database: SqlDatabase;
  chat: ChatService;
  models: ModelRegistry;
  /** The S3 store holding assets, with `blobs.kind` s3. */
  remote?: S3Blobs | undefined;
}) {
  const { settings, chat, models } = options;
  const { config, dataDir } = settings;
  const { media } = config;
  let webSearch;
  try {
    webSearch = createWebSearch({ settings: config.search, allowHosts: media.allowHosts, connectTimeoutMs: media.connectTimeoutMs });
  } catch (error) {
    throw new ConfigError(`invalid config: search: ${(error as Error).message}`);
  }
  for (const name of Object.keys(config.conversations.modelContextTokens)) {
    try {
      models.resolve(name);
    } catch (error) {
      throw new ConfigError(`invalid config: conversations.modelContextTokens: ${(error as Error).message}`);
    }
  }
  const assets = new AssetLibrary({
    store: new AssetStore(options.database),
    blobs: new ImageBlobStore(
      join(dataDir, 'assets'),
      options.remote?.within('assets'),
      options.remote ? new BlobClaims(options.database, 'asset') : undefined,
    ),
    ffmpeg: createFfmpegContext({ ...settings.binaries, timeoutMs: media.processTimeoutMs, maxOutputBytes: media.maxBytes }),
    maxImageSide: media.maxImageSide,
    maxImagePixels: media.maxImagePixels,
    maxSeconds: config.conversations.maxAssetSeconds,
  });
  const conversations = new ConversationService({
    chat,
    models,
    store: new ConversationStore(options.database),
    assets,
    settings: config.conversations,
    memory: config.memory,
    limits: config.limits,
    webSearch,
  });
  const routes: ConversationRouteDependencies = {
    conversations,
    assets,
    signer: createUrlSigner({ secret: loadOrCreateSigningSecret(dataDir) }),
    urlTtlSeconds: config.vision.urlTtlSeconds,
    publicBaseUrl: config.vision.publicBaseUrl,
    maxAssetBytes: media.maxBytes,
  };
  return {
    routes,
    /** Removes half-received uploads and orphaned files a crash left. */
    recover: () => assets.recover(),
    /** With a blob store: clears what a process that stopped was writing or removing (see BlobClaims). */
    recoverAbandoned: () => assets.recoverAbandoned(),
    close: async () => {
      await webSearch?.close();
    },
  };
}

function assetKey(c: Context): string {
  const key = c.req.param('key') ?? '';
  if (!ASSET_KEY.test(key)) throw new OcularError('not_found_error', `no asset with key "${key}"`);
  return key;
}

/** The signed asset file route: the signature is the credential, so it is registered before the API-key middleware. */
export function registerConversationBlobRoutes(app: Hono<ConversationEnv>, deps: ConversationRouteDependencies): void {
  app.on(['GET', 'HEAD'], '/api/assets/:key/file', async (c) => {
    const verdict = deps.signer.verify(new URL(c.req.url).pathname, {
      expires: c.req.query('expires'),
      signature: c.req.query('signature'),
    });
    if (verdict === 'expired')
      throw new OcularError('permission_error', 'this signed URL has expired; fetch the asset again for a fresh one');
    if (verdict !== 'ok') throw new OcularError('permission_error', 'this URL is not validly signed');
    const key = assetKey(c);
    const asset = await deps.assets.byKey(key);
    if (!asset) throw new OcularError('not_found_error', `no asset with key "${key}"`);
    return fileResponse(deps.assets.source(key), c.req.raw, { contentType: asset.mediaType, cacheControl: 'private, max-age=3600' });
  });
}

/** Text parts as they come, for a client that did not ask for events; the ids are in the response headers. */
function plainTextBody(parts: ReadableStream<StreamPart>): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  const reader = parts.getReader();
  return new ReadableStream<Uint8Array>({
    // Reads until something can be sent: a pull that enqueues nothing would leave the body waiting.
    async pull(controller) {
      for (;;) {
        const next = await reader.read();
        if (next.done) {
          controller.close();
          return;
        }
        const part = next.value;
        if (part.type === 'text-delta') {
          controller.enqueue(encoder.encode(part.text));
          return;
        }
        // An error after the status line has gone out can only be told by cutting the body short.
        if (part.type === 'error') {
          controller.error(part.error);
          return;
        }
      }
    },
    cancel: (reason) => reader.cancel(reason),
  });
}

/** Server-sent events: `start`, then `delta` per piece of text, then `done` (ids, usage) or `error`. */
function eventBody(
  parts: ReadableStream<StreamPart>,
  opening: unknown,
  closing: (part: Extract<StreamPart, { type: 'finish' }>) => unknown,
) {
  const encoder = new TextEncoder();
  const reader = parts.getReader();
  let started = false;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (!started) {
        started = true;
        controller.enqueue(encoder.encode(sseFrame(opening, 'start')));
        return;
      }
      for (;;) {
        const next = await reader.read();
        if (next.done) {
          controller.close();
          return;
        }
        const part = next.value;
        const frame =
          part.type === 'text-delta'
            ? sseFrame({ text: part.text }, 'delta')
            : part.type === 'finish'
              ? sseFrame(closing(part), 'done')
              : part.type === 'error'
                ? sseFrame(errorEnvelope(part.error), 'error')
                : '';
        if (frame !== '') {
          controller.enqueue(encoder.encode(frame));
          return;
        }
      }
    },
    cancel: (reason) => reader.cancel(reason),
  });
}

/** The "Chat with Image" API: assets, conversations, features (turns), memory and the model list. */
export function registerConversationRoutes(app: Hono<ConversationEnv>, deps: ConversationRouteDependencies, edge: RequestEdge): void {
  const { conversations, assets } = deps;

  const wireAsset = (c: Context, asset: AssetRecord) => {
    const origin = deps.publicBaseUrl ?? new URL(c.req.url).origin;
    const expiresAt = new Date(Date.now() + deps.urlTtlSeconds * 1000);
    return toWireAsset(asset, origin + deps.signer.sign(`/api/assets/${asset.key}/file`, expiresAt), expiresAt);
  };

  app.post('/api/assets', (c) =>
    edge.uploads.run(c, async (incoming) => {
      await mkdir(assets.incomingDir, { recursive: true, mode: 0o700 });
      const upload = await receiveMultipartUpload(incoming, {
        directory: assets.incomingDir,
        fileField: 'asset',
        maxFileBytes: deps.maxAssetBytes,
        limitName: 'media.maxBytes',
        allowedFields: [],
      });
      try {
        if (!upload.file) throw validationError('send the file as an "asset" file part', 'asset');
        const asset = await assets.add(c.get('owner'), upload.file);
        return c.json({ asset: wireAsset(c, asset) });
      } finally {
        await Promise.all(upload.files.map((file) => rm(file.path, { force: true })));
      }
    }),
  );

  app.get('/api/assets', async (c) => {
    const query = parseBody(pageQuerySchema, c.req.query());
    const page = await assets.list(c.get('owner'), query.limit, query.offset);
    return c.json({
      assets: page.items.map((asset) => wireAsset(c, asset)),
      total: page.total,
      limit: query.limit,
      offset: query.offset,
    });
  });

  app.get('/api/assets/:key', async (c) => c.json({ asset: wireAsset(c, await assets.get(c.get('owner'), assetKey(c))) }));

  app.delete('/api/assets/:key', async (c) => {
    const key = assetKey(c);
    await assets.delete(c.get('owner'), key);
    return c.json({ key, deleted: true });
  });

  app.post('/api/conversations', async (c) => {
    const body = parseBody(createConversationSchema, await readJson(c, edge.bodyLimits));
    const conversation = await conversations.create(c.get('owner'), {
      type: body.type,
      title: body.title ?? undefined,
      model: body.model ?? undefined,
    });
    return c.json({ conversation: toWireConversation(conversation) });
  });

  app.get('/api/conversations', async (c) => {
    const query = parseBody(pageQuerySchema, c.req.query());
    const page = await conversations.list(c.get('owner'), query.limit, query.offset);
    return c.json({ conversations: page.items.map(toWireConversation), total: page.total, limit: query.limit, offset: query.offset });
  });

  const withMessages = async (owner: string, id: string) => {
    const conversation = await conversations.get(owner, id);
    return { ...toWireConversation(conversation), messages: (await conversations.turns(owner, id)).flatMap(toWireMessages) };
  };

  app.get('/api/conversations/:uuid', async (c) => c.json({ conversation: await withMessages(c.get('owner'), c.req.param('uuid')) }));

  app.get('/api/conversations/:uuid/export', async (c) => {
    const { format } = parseBody(exportQuerySchema, c.req.query());
    const owner = c.get('owner');
    const id = c.req.param('uuid');
    const conversation = await conversations.get(owner, id);
    const disposition = (extension: string) => `attachment; filename="conversation-${conversation.id}.${extension}"`;
    if (format === 'json') {
      return c.json({ conversation: await withMessages(owner, id) }, 200, { 'Content-Disposition': disposition('json') });
    }
    return c.body(toMarkdown(conversation, await conversations.turns(owner, id)), 200, {
      'Content-Type': 'text/markdown; charset=utf-8',
      'Content-Disposition': disposition('md'),
    });
  });

  app.delete('/api/conversations/:uuid', async (c) => {
    const id = c.req.param('uuid');
    await conversations.delete(c.get('owner'), id);
    return c.json({ uuid: id, deleted: true });
  });

  app.post('/api/features', async (c) => {
    const query = parseBody(featuresQuerySchema, c.req.query());
    const body = parseBody(featuresRequestSchema, await readJson(c, edge.bodyLimits));
    const prompt = body.promptObject;
    const request: TurnRequest = {
      owner: c.get('owner'),
      conversationId: body.conversationId,
      model: body.model ?? undefined,
      prompt: prompt.prompt,
      assetKeys: prompt.imageList ?? [],
      webSearch: prompt.webSearch ?? false,
      numOfSite: prompt.numOfSite ?? DEFAULT_NUM_OF_SITE,
      maxWord: prompt.maxWord ?? DEFAULT_MAX_WORD,
    };
    const signal = edge.requestSignal(c);
    if (query.isStreaming !== 'true') {
      const { conversation, turn } = await conversations.answer(request, signal);
      return c.json({ conversationId: conversation.id, title: conversation.title, message: toWireAnswer(turn) });
    }
    const stream = await conversations.stream(request, signal);
    const ids = { 'X-Conversation-ID': stream.conversationId, 'X-Message-ID': stream.messageId };
    if (!(c.req.header('accept') ?? '').includes('text/event-stream')) {
      return new Response(plainTextBody(stream.parts), { status: 200, headers: { ...TEXT_HEADERS, ...ids } });
    }
    const body$ = eventBody(
      stream.parts,
      { conversationId: stream.conversationId, messageId: stream.messageId, model: stream.model, sources: stream.sources },
      (finish) => ({
        conversationId: stream.conversationId,
        messageId: stream.messageId,
        model: stream.model,
        finish_reason: finish.finishReason,
        usage: { input_tokens: finish.usage.inputTokens, output_tokens: finish.usage.outputTokens },
      }),
    );
    return new Response(body$, { status: 200, headers: { ...SSE_HEADERS, ...ids } });
  });

  app.get('/api/memory', async (c) => {
    const query = parseBody(pageQuerySchema, c.req.query());
    const page = await conversations.memories(c.get('owner'), query.limit, query.offset);
    return c.json({
      enabled: conversations.memoryEnabled,
      memories: page.items.map(toWireMemory),
      total: page.total,
      limit: query.limit,
      offset: query.offset,
    });
  });

  app.delete('/api/memory', async (c) => c.json({ deleted: await conversations.deleteMemories(c.get('owner')) }));

  app.delete('/api/memory/:id', async (c) => {
    const id = c.req.param('id');
    await conversations.deleteMemory(c.get('owner'), id);
    return c.json({ id, deleted: true });
  });

  app.get('/api/models', (c) =>
    c.json({
      models: conversations.listModels().map((model) => ({
        id: model.id,
        provider: model.provider,
        upstream_model: model.upstreamModel,
        capabilities: model.capabilities,
        context_tokens: model.contextTokens,
      })),
    }),
  );
}
