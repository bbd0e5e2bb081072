import { z } from 'zod';
import { ERROR_STATUS } from '../spec/errors.ts';
import { MCP_PATH } from '../mcp/http-route.ts';
import { listImagesQuerySchema, searchImagesSchema } from './wire/images.ts';
import { openAiChatRequestSchema } from './wire/openai-chat.ts';
import { rekaChatRequestSchema } from './wire/reka-chat.ts';
import { createClipSchema, listClipsQuerySchema } from './wire/clips.ts';
import { qaChatRequestSchema, quicktagFieldsSchema } from './wire/qa.ts';
import {
  createConversationSchema,
  exportQuerySchema,
  featuresQuerySchema,
  featuresRequestSchema,
  pageQuerySchema,
} from './wire/conversations.ts';
import { openAiAudioFieldsSchema, speechRequestSchema } from './wire/speech.ts';
import {
  createGroupSchema,
  deleteGroupQuerySchema,
  listGroupsQuerySchema,
  listSegmentsQuerySchema,
  listVideosQuerySchema,
  searchVideosSchema,
  updateGroupSchema,
  uploadFieldsSchema,
} from './wire/vision.ts';

/** How a route is reached: an API key (the default), a signed URL, or nothing. */
export type RouteAccess = 'key' | 'signed' | 'public';

/** One operation of the API reference. Requests are described by the zod schemas the routes validate with. */
export interface OperationSpec {
  summary: string;
  tag: string;
  description?: string;
  /** @default 'key' */
  access?: RouteAccess;
  /** A JSON body, validated by this schema. */
  body?: z.ZodType;
  /** A multipart/form-data body: its text fields' schema and its file parts. */
  multipart?: { fields: z.ZodType; files: readonly string[] };
  /** Query parameters, validated by this schema (an object schema). */
  query?: z.ZodType;
  /** The success answer: its status, media type and what it holds. */
  success: { status: number; contentType: string; description: string };
  /** The body may ask for an SSE stream (`stream: true`). */
  streams?: boolean;
  /** Error statuses this operation answers beyond 401/400/500. */
  errors?: readonly number[];
}

const json = (description: string, status = 200) => ({ status, contentType: 'application/json', description });
const file = (contentType: string, description: string) => ({ status: 200, contentType, description });

/** An empty object: the route takes no query parameters or body. */
export const NO_INPUT = z.strictObject({});

/** `param` values of the error envelope, as `errorEnvelope` writes them. */
export const errorEnvelopeSchema = z.object({
  error: z.object({
    type: z.enum(Object.keys(ERROR_STATUS) as [keyof typeof ERROR_STATUS, ...Array<keyof typeof ERROR_STATUS>]),
    message: z.string(),
    param: z.string().nullable().optional(),
  }),
});

const signedQuery = z.strictObject({
  expires: z.string().describe('Unix seconds after which the URL stops working'),
  signature: z.string().describe('HMAC of the path and expiry'),
});

/**
 * Every route the server registers, keyed `METHOD /path` with Hono's path syntax (`:id`, `:seq{regex}`). A route
 * without an entry here is listed in /openapi.json as undocumented, and test/server/openapi.test.ts fails.
 */
export const OPERATIONS: Readonly<Record<string, OperationSpec>> = {
  'GET /healthz': { summary: 'Liveness', tag: 'Operations', access: 'public', query: NO_INPUT, success: json('`{"status":"ok"}`') },
  'GET /readyz': {
    summary: 'Readiness: the database, job queue, blob folders (and Redis when used) answer',
    tag: 'Operations',
    access: 'public',
    query: NO_INPUT,
    success: json('`{"status":"ready","checks":{"database":{"status":"ok"},…}}`; 503 with `not_ready` when one fails'),
  },
  'GET /metrics': {
    summary: 'Prometheus metrics (needs a key unless `metrics.public`)',
    tag: 'Operations',
    query: NO_INPUT,
    success: file('text/plain; version=0.0.4', 'The exposition text'),
  },
  'GET /openapi.json': {
    summary: 'This API reference (OpenAPI 3.1)',
    tag: 'Operations',
    access: 'public',
    query: NO_INPUT,
    success: json('The document'),
  },
  'GET /docs': {
    summary: 'This API reference, as a page',
    tag: 'Operations',
    access: 'public',
    query: NO_INPUT,
    success: file('text/html', 'The page'),
  },

  // ---- the web playground (pages, not API) ----
  'GET /': { summary: 'The web playground', tag: 'Playground', access: 'public', query: NO_INPUT, success: file('text/html', 'The page') },
  'GET /assets/:name{[A-Za-z0-9][A-Za-z0-9._-]{0,199}}': {
    summary: "The playground's scripts and styles",
    tag: 'Playground',
    access: 'public',
    query: NO_INPUT,
    success: file('*/*', 'The file'),
    errors: [404],
  },
  'GET /:name{favicon\\.svg}': {
    summary: "The playground's icon",
    tag: 'Playground',
    access: 'public',
    query: NO_INPUT,
    success: file('image/svg+xml', 'The icon'),
  },

  // ---- chat ----
  'POST /v1/chat': {
    summary: 'Chat (Reka format)',
    tag: 'Chat',
    description:
      'Multi-turn chat whose messages carry text, images, video, audio and PDFs. `stream: true` answers with SSE events, each repeating the text so far.',
    body: rekaChatRequestSchema,
    streams: true,
    success: json('`{"id","model","responses":[{"finish_reason","message"}],"usage"}`'),
    errors: [404, 413, 415, 429, 502, 503, 504],
  },
  'POST /v1/chat/completions': {
    summary: 'Chat Completions (OpenAI format)',
    tag: 'Chat',
    body: openAiChatRequestSchema,
    streams: true,
    success: json('A `chat.completion` object; with `stream: true`, `chat.completion.chunk` SSE events ending with `[DONE]`'),
    errors: [404, 413, 415, 429, 502, 503, 504],
  },
  'POST /openai/v1/chat/completions': {
    summary: 'Chat Completions (OpenAI format, for the `openai` SDK with baseURL …/openai/v1)',
    tag: 'Chat',
    body: openAiChatRequestSchema,
    streams: true,
    success: json('As `POST /v1/chat/completions`'),
    errors: [404, 413, 415, 429, 502, 503, 504],
  },
  'GET /v1/models': { summary: 'Models (Reka format)', tag: 'Chat', query: NO_INPUT, success: json('`[{"id"}]`') },
  'GET /openai/v1/models': {
    summary: 'Models (OpenAI format)',
    tag: 'Chat',
    query: NO_INPUT,
    success: json('`{"object":"list","data":[{"id","object":"model"}]}`'),
  },
  'GET /openai/v1/models/:id{.+}': {
    summary: 'One model (OpenAI format)',
    tag: 'Chat',
    query: NO_INPUT,
    success: json('`{"id","object":"model"}`'),
    errors: [404],
  },

  // ---- video library ----
  'POST /v1/videos/upload': {
    summary: 'Upload a video (a file part, or `video_url`)',
    tag: 'Videos',
    multipart: { fields: uploadFieldsSchema, files: ['file'] },
    success: json('The video, `indexing_status` pending or indexing'),
    errors: [413, 415, 429],
  },
  'GET /v1/videos': {
    summary: 'List videos',
    tag: 'Videos',
    query: listVideosQuerySchema,
    success: json('`{"results":[video],"total","limit","offset"}`'),
  },
  'GET /v1/videos/:id': {
    summary: 'Get a video',
    tag: 'Videos',
    query: NO_INPUT,
    success: json('The video, with signed `url`'),
    errors: [404],
  },
  'DELETE /v1/videos/:id': {
    summary: 'Delete a video, its index and files',
    tag: 'Videos',
    query: NO_INPUT,
    success: json('`{"video_id","deleted":true}`'),
    errors: [404],
  },
  'GET /v1/videos/:id/segments': {
    summary: "A video's indexed segments",
    tag: 'Videos',
    query: listSegmentsQuerySchema,
    success: json('`{"results":[segment],"total","limit","offset"}`'),
    errors: [404],
  },
  'GET /v1/videos/:id/events': {
    summary: 'Indexing progress (SSE)',
    tag: 'Videos',
    query: NO_INPUT,
    success: file('text/event-stream', '`progress` events, then `done`'),
    errors: [404],
  },
  'POST /v1/videos/search': {
    summary: 'Search moments in videos',
    tag: 'Videos',
    body: searchVideosSchema,
    success: json(
      '`{"results":[{"video_chunk_id","video_id","video_title","score","start_timestamp","end_timestamp",…}],"total_results"}`; header X-Ocular-Retrievers',
    ),
    errors: [404],
  },
  'POST /v1/videos/groups': { summary: 'Create a group', tag: 'Video groups', body: createGroupSchema, success: json('The group', 201) },
  'GET /v1/videos/groups': {
    summary: 'List groups',
    tag: 'Video groups',
    query: listGroupsQuerySchema,
    success: json('`{"results":[group],"total","limit","offset"}`'),
  },
  'GET /v1/videos/groups/:groupId': {
    summary: 'Get a group',
    tag: 'Video groups',
    query: NO_INPUT,
    success: json('The group'),
    errors: [404],
  },
  'PATCH /v1/videos/groups/:groupId': {
    summary: 'Update a group',
    tag: 'Video groups',
    body: updateGroupSchema,
    success: json('The group'),
    errors: [404],
  },
  'DELETE /v1/videos/groups/:groupId': {
    summary: 'Delete a group (`force` deletes its videos)',
    tag: 'Video groups',
    query: deleteGroupQuerySchema,
    success: json('`{"group_id","deleted":true}`'),
    errors: [404, 409],
  },
  'GET /v1/videos/:id/file': {
    summary: 'The video file (signed URL; Range)',
    tag: 'Videos',
    access: 'signed',
    query: signedQuery,
    success: file('video/*', 'The bytes'),
    errors: [403, 404, 416],
  },
  'GET /v1/videos/:id/thumbnail': {
    summary: "The video's thumbnail (signed URL)",
    tag: 'Videos',
    access: 'signed',
    query: signedQuery,
    success: file('image/jpeg', 'The picture'),
    errors: [403, 404],
  },
  'GET /v1/videos/:id/segments/:seq{[0-9]{1,9}}/thumbnail': {
    summary: "A segment's picture (signed URL)",
    tag: 'Videos',
    access: 'signed',
    query: signedQuery,
    success: file('image/jpeg', 'The picture'),
    errors: [403, 404],
  },
  'GET /v1/videos/:id/keyframes/:name{keyframe-[0-9]{1,12}\\.jpg}': {
    summary: 'A keyframe (signed URL)',
    tag: 'Videos',
    access: 'signed',
    query: signedQuery,
    success: file('image/jpeg', 'The picture'),
    errors: [403, 404],
  },

  // ---- video QA and tagging ----
  'POST /v1/qa/chat': {
    summary: 'Ask about a video (by `video_id`, or `video_url`, which is stored and indexed first)',
    tag: 'Video QA',
    body: qaChatRequestSchema,
    streams: true,
    success: json('`{"chat_response","status"}`; with `stream`, SSE events with the text so far, then one with `status`'),
    errors: [404, 409, 413, 415, 502, 503],
  },
  ...Object.fromEntries(
    (['/qa/quicktag', '/v1/qa/quicktag'] as const).map((path) => [
      `POST ${path}`,
      {
        summary: 'Tag a short video (< 30 s) with metadata fields, or the fields of a JSON Schema you send',
        tag: 'Video QA',
        multipart: { fields: quicktagFieldsSchema, files: ['video'] },
        success: json('The tags, valid against the schema'),
        errors: [413, 415, 429, 502],
      } satisfies OperationSpec,
    ]),
  ),

  // ---- clips ----
  'POST /v1/clips': {
    summary: 'Generate clips from videos (a durable job)',
    tag: 'Clips',
    body: createClipSchema,
    success: json('The clip request, `status` queued'),
    errors: [404, 409, 415, 429],
  },
  'GET /v1/clips': {
    summary: 'List clip requests',
    tag: 'Clips',
    query: listClipsQuerySchema,
    success: json('`{"results":[clip],"total","limit","offset"}`'),
  },
  'GET /v1/clips/:id': {
    summary: 'A clip request: status, progress, `output` [{url, start, end, title}]',
    tag: 'Clips',
    query: NO_INPUT,
    success: json('The clip request'),
    errors: [404],
  },
  'DELETE /v1/clips/:id': {
    summary: 'Delete a clip request (cancels its job, removes its files)',
    tag: 'Clips',
    query: NO_INPUT,
    success: json('`{"id","deleted":true}`'),
    errors: [404],
  },
  'GET /v1/clips/:id/events': {
    summary: 'Clip progress (SSE)',
    tag: 'Clips',
    query: NO_INPUT,
    success: file('text/event-stream', '`progress` events, then `done`'),
    errors: [404],
  },
  'GET /v1/clips/:id/outputs/:file{[0-9]{1,2}\\.mp4}': {
    summary: 'A rendered clip (signed URL; Range)',
    tag: 'Clips',
    access: 'signed',
    query: signedQuery,
    success: file('video/mp4', 'The clip'),
    errors: [403, 404, 416],
  },

  // ---- images ----
  'POST /v1/images/upload': {
    summary: 'Upload images',
    tag: 'Images',
    multipart: {
      fields: z.strictObject({
        metadata: z.string().optional().describe('JSON: {"requests":[{"indexing_config":{"index":true},"metadata":{}}]}'),
      }),
      files: ['images'],
    },
    success: json('`{"results":[image]}`'),
    errors: [413, 415, 429],
  },
  'GET /v1/images': {
    summary: 'List images',
    tag: 'Images',
    query: listImagesQuerySchema,
    success: json('`{"results":[image],"total","limit","offset"}`'),
  },
  'GET /v1/images/:id': { summary: 'Get an image', tag: 'Images', query: NO_INPUT, success: json('The image'), errors: [404] },
  'DELETE /v1/images/:id': {
    summary: 'Delete an image',
    tag: 'Images',
    query: NO_INPUT,
    success: json('`{"image_id","deleted":true}`'),
    errors: [404],
  },
  'POST /v1/images/search': {
    summary: 'Search images',
    tag: 'Images',
    body: searchImagesSchema,
    success: json('`{"results":[{"image_id","image_url","score","image_metadata"}]}`'),
  },
  'GET /v1/images/:id/file': {
    summary: 'The image file (signed URL)',
    tag: 'Images',
    access: 'signed',
    query: signedQuery,
    success: file('image/*', 'The bytes'),
    errors: [403, 404],
  },

  // ---- conversations (the "Chat with Image" format) ----
  'POST /api/assets': {
    summary: 'Upload an asset (image, PDF, audio or short video)',
    tag: 'Conversations',
    multipart: { fields: NO_INPUT, files: ['asset'] },
    success: json('`{"asset":{"key","mime_type","size","width","height","created_at"}}`'),
    errors: [413, 415, 429],
  },
  'GET /api/assets': { summary: 'List assets', tag: 'Conversations', query: pageQuerySchema, success: json('A page of assets') },
  'GET /api/assets/:key': {
    summary: 'Get an asset (metadata and signed URL)',
    tag: 'Conversations',
    query: NO_INPUT,
    success: json('`{"asset"}`'),
    errors: [404],
  },
  'DELETE /api/assets/:key': {
    summary: 'Delete an asset',
    tag: 'Conversations',
    query: NO_INPUT,
    success: json('`{"key","deleted":true}`'),
    errors: [404],
  },
  'GET /api/assets/:key/file': {
    summary: 'The asset file (signed URL)',
    tag: 'Conversations',
    access: 'signed',
    query: signedQuery,
    success: file('*/*', 'The bytes'),
    errors: [403, 404],
  },
  'POST /api/conversations': {
    summary: 'Start a conversation',
    tag: 'Conversations',
    body: createConversationSchema,
    success: json('The conversation, with `uuid`', 201),
    errors: [404],
  },
  'GET /api/conversations': {
    summary: 'List conversations',
    tag: 'Conversations',
    query: pageQuerySchema,
    success: json('A page of conversations'),
  },
  'GET /api/conversations/:uuid': {
    summary: 'A conversation with its messages',
    tag: 'Conversations',
    query: NO_INPUT,
    success: json('The conversation and `messages`'),
    errors: [404],
  },
  'GET /api/conversations/:uuid/export': {
    summary: 'Export a conversation (Markdown or JSON)',
    tag: 'Conversations',
    query: exportQuerySchema,
    success: json('JSON, or text/markdown'),
    errors: [404],
  },
  'DELETE /api/conversations/:uuid': {
    summary: 'Delete a conversation',
    tag: 'Conversations',
    query: NO_INPUT,
    success: json('`{"uuid","deleted":true}`'),
    errors: [404],
  },
  'POST /api/features': {
    summary: 'Send a prompt in a conversation (CHAT_WITH_IMAGE); `?isStreaming=true` streams',
    tag: 'Conversations',
    body: featuresRequestSchema,
    query: featuresQuerySchema,
    streams: true,
    success: json('`{"conversationId","message"}`; streaming: plain text chunks, or SSE (`start`, `delta`, `done`) per Accept'),
    errors: [404, 413, 415, 502, 503],
  },
  'GET /api/memory': {
    summary: 'Long-term memory notes',
    tag: 'Conversations',
    query: pageQuerySchema,
    success: json('`{"enabled","memories":[…],"total"}`'),
  },
  'DELETE /api/memory': { summary: 'Erase every memory note', tag: 'Conversations', query: NO_INPUT, success: json('`{"deleted"}`') },
  'DELETE /api/memory/:id': {
    summary: 'Erase one memory note',
    tag: 'Conversations',
    query: NO_INPUT,
    success: json('`{"id","deleted":true}`'),
    errors: [404],
  },
  'GET /api/models': { summary: 'Configured models with capabilities', tag: 'Conversations', query: NO_INPUT, success: json('The models') },

  // ---- speech ----
  'POST /v1/transcription_or_translation': {
    summary: 'Transcribe speech, optionally translate it and speak the translation (Reka Speech)',
    tag: 'Speech',
    body: speechRequestSchema,
    success: json('`{"transcript","transcript_translation_with_timestamp":[{"start","end","transcript"}],"translation"?,"audio_base64"?}`'),
    errors: [413, 415, 502],
  },
  ...Object.fromEntries(
    (
      ['/v1/audio/transcriptions', '/openai/v1/audio/transcriptions', '/v1/audio/translations', '/openai/v1/audio/translations'] as const
    ).map((path) => [
      `POST ${path}`,
      {
        summary: path.endsWith('translations') ? 'Translate speech into English (OpenAI format)' : 'Transcribe speech (OpenAI format)',
        tag: 'Speech',
        multipart: { fields: openAiAudioFieldsSchema, files: ['file'] },
        success: json('`{"text"}`, or text, srt, vtt or verbose_json per `response_format`'),
        errors: [413, 415, 502],
      } satisfies OperationSpec,
    ]),
  ),

  // ---- MCP ----
  [`POST ${MCP_PATH}`]: {
    summary: 'Model Context Protocol (streamable HTTP, stateless)',
    tag: 'MCP',
    description: 'JSON-RPC 2.0 messages of MCP (initialize, tools/list, tools/call). Send `Accept: application/json, text/event-stream`.',
    body: z.looseObject({
      jsonrpc: z.literal('2.0'),
      method: z.string(),
      id: z.union([z.string(), z.number()]).optional(),
      params: z.unknown().optional(),
    }),
    success: json('JSON-RPC responses'),
    errors: [406],
  },
};

/** A route as the server registered it. */
export interface RegisteredRoute {
  method: string;
  path: string;
}

/** `/v1/videos/:id/segments/:seq{[0-9]{1,9}}/x` -> `/v1/videos/{id}/segments/{seq}/x` (a pattern may nest braces). */
export function toOpenApiPath(path: string): { path: string; parameters: string[] } {
  let out = '';
  const parameters: string[] = [];
  for (let index = 0; index < path.length;) {
    if (path[index] !== ':') {
      out += path[index++];
      continue;
    }
    const name = /^:([A-Za-z0-9_]+)/.exec(path.slice(index))![1]!;
    parameters.push(name);
    out += `{${name}}`;
    index += name.length + 1;
    if (path[index] === '{') {
      let depth = 0;
      do {
        if (path[index] === '{') depth += 1;
        else if (path[index] === '}') depth -= 1;
        index += 1;
      } while (depth > 0 && index < path.length);
    }
  }
  return { path: out, parameters };
}

const jsonSchema = (schema: z.ZodType): Record<string, unknown> => {
  const converted = z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;
  delete converted.$schema;
  return converted;
};

const ERROR_DESCRIPTIONS: Readonly<Record<number, string>> = {
  400: 'Invalid request (validation_error)',
  401: 'Missing or invalid API key',
  403: 'Not allowed (an expired or tampered signed URL)',
  404: 'Not found (or not the caller’s)',
  406: 'Not acceptable',
  409: 'Conflicts with the current state',
  413: 'Too large',
  415: 'Unsupported media type',
  416: 'Range not satisfiable',
  429: 'Too many requests (Retry-After)',
  500: 'Server error',
  502: 'The model backend failed',
  503: 'The model is not ready yet (Retry-After)',
  504: 'The model backend timed out',
};

function operationObject(key: string, spec: OperationSpec, pathParameters: readonly string[]): Record<string, unknown> {
  const parameters: Array<Record<string, unknown>> = pathParameters.map((name) => ({
    name,
    in: 'path',
    required: true,
    schema: { type: 'string' },
  }));
  if (spec.query) {
    const query = jsonSchema(spec.query) as { properties?: Record<string, unknown>; required?: string[] };
    for (const [name, schema] of Object.entries(query.properties ?? {})) {
      parameters.push({ name, in: 'query', required: query.required?.includes(name) ?? false, schema });
    }
  }
  const operation: Record<string, unknown> = {
    operationId: key.replace(/[^A-Za-z0-9]+/g, '_').replace(/^_|_$/g, ''),
    summary: spec.summary,
    tags: [spec.tag],
    ...(spec.description ? { description: spec.description } : {}),
    ...(parameters.length > 0 ? { parameters } : {}),
  };
  if (spec.body) {
    operation.requestBody = { required: true, content: { 'application/json': { schema: jsonSchema(spec.body) } } };
  } else if (spec.multipart) {
    const fields = jsonSchema(spec.multipart.fields) as { properties?: Record<string, unknown>; required?: string[] };
    const properties = {
      ...fields.properties,
      ...Object.fromEntries(spec.multipart.files.map((name) => [name, { type: 'string', format: 'binary' }])),
    };
    operation.requestBody = {
      required: true,
      content: {
        'multipart/form-data': { schema: { type: 'object', properties, ...(fields.required ? { required: fields.required } : {}) } },
      },
    };
  }
  const content: Record<string, unknown> = {
    [spec.success.contentType]: spec.success.contentType === 'application/json' ? { schema: { type: 'object' } } : {},
  };
  if (spec.streams) content['text/event-stream'] = {};
  const responses: Record<string, unknown> = { [String(spec.success.status)]: { description: spec.success.description, content } };
  const access = spec.access ?? 'key';
  const errors = new Set([
    ...(spec.body || spec.query || spec.multipart ? [400] : []),
    ...(access === 'key' ? [401] : []),
    ...(spec.errors ?? []),
    500,
  ]);
  for (const status of [...errors].sort()) {
    responses[String(status)] = { $ref: `#/components/responses/Error${status}` };
  }
  operation.responses = responses;
  if (access !== 'key') operation.security = [];
  return operation;
}

/**
 * The OpenAPI 3.1 document of the routes the server registered, from `OPERATIONS`. A registered route missing
 * there is still listed, marked `x-ocular-undocumented`, so a test (and a reader) sees the gap.
 */
export function buildOpenApiDocument(routes: readonly RegisteredRoute[], options: { version: string }): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  const seen = new Set<string>();
  for (const route of routes) {
    const method = route.method.toUpperCase();
    if (method === 'ALL' || method === 'HEAD' || method === 'OPTIONS') continue;
    const key = `${method} ${route.path}`;
    if (seen.has(key)) continue;
    seen.add(key);
    const { path, parameters } = toOpenApiPath(route.path);
    const spec = OPERATIONS[key];
    (paths[path] ??= {})[method.toLowerCase()] = spec
      ? operationObject(key, spec, parameters)
      : { summary: key, 'x-ocular-undocumented': true, responses: { default: { description: 'Undocumented' } } };
  }
  const errorResponses = Object.fromEntries(
    Object.entries(ERROR_DESCRIPTIONS).map(([status, description]) => [
      `Error${status}`,
      { description, content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } },
    ]),
  );
  return {
    openapi: '3.1.0',
    info: {
      title: 'Ocular API',
      version: options.version,
      description: 'Self-hosted multimodal AI: Reka and OpenAI chat formats, a video and image library with search, and MCP.',
    },
    servers: [{ url: '/' }],
    security: [{ apiKey: [] }, { bearer: [] }],
    paths,
    components: {
      securitySchemes: {
        apiKey: { type: 'apiKey', in: 'header', name: 'X-Api-Key' },
        bearer: { type: 'http', scheme: 'bearer' },
      },
      schemas: { Error: jsonSchema(errorEnvelopeSchema) },
      responses: errorResponses,
    },
  };
}
