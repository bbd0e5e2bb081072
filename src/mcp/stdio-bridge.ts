import { openAsBlob } from 'node:fs';
import { stat } from 'node:fs/promises';
import { basename, resolve } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { CallToolRequestSchema, ListToolsRequestSchema, type CallToolResult, type Tool } from '@modelcontextprotocol/sdk/types.js';
import { fetch, FormData } from 'undici';
import { z } from 'zod';
import { parseBody } from '../server/errors.ts';
import { OcularError } from '../spec/errors.ts';
import { MCP_PATH } from './http-route.ts';
import { MCP_SERVER_INFO, toolError, toolResult } from './mcp-server.ts';

export interface BridgeOptions {
  /** The Ocular server, `http://host:port`. */
  baseUrl: string;
  apiKey: string | undefined;
  /** @default process.stdin / process.stdout */
  stdin?: NodeJS.ReadableStream;
  stdout?: NodeJS.WritableStream;
}

/** Long enough for a chat or a question about a video; a tool that reports progress restarts it. */
const CALL_TIMEOUT_MS = 10 * 60_000;

/** The one tool the bridge answers itself: a file on the client's machine, which the server cannot read. */
const UPLOAD_FILE_TOOL = 'upload_video_file';

const uploadFileSchema = z.strictObject({
  path: z.string().trim().min(1).max(4096),
  /** @default the file's name */
  video_name: z.string().trim().min(1).max(512).optional(),
  /** @default true */
  index: z.boolean().optional(),
  enable_thumbnails: z.boolean().optional(),
  group_id: z.string().trim().min(1).max(128).optional(),
});

const UPLOAD_FILE_LISTING: Tool = {
  name: UPLOAD_FILE_TOOL,
  title: 'Upload a local video file',
  description:
    'Uploads a video file from this machine (an absolute path, or relative to where the MCP server was started) to ' +
    'the library and indexes it (unless index is false). Returns at once; follow indexing with get_indexing_status.',
  inputSchema: (() => {
    const schema = z.toJSONSchema(uploadFileSchema, { io: 'input' }) as Record<string, unknown>;
    delete schema.$schema;
    return schema as Tool['inputSchema'];
  })(),
  annotations: { title: 'Upload a local video file', readOnlyHint: false, openWorldHint: false },
};

const errorEnvelopeSchema = z.looseObject({
  error: z.looseObject({ type: z.string(), message: z.string(), param: z.string().nullish() }),
});

/** Streams the file to `POST /v1/videos/upload`, as the HTTP API's own clients do. */
async function uploadFile(options: BridgeOptions, args: unknown, signal: AbortSignal): Promise<CallToolResult> {
  const fields = parseBody(uploadFileSchema, args);
  const path = resolve(fields.path);
  const info = await stat(path).catch(() => undefined);
  if (info === undefined) throw new OcularError('not_found_error', `no file at ${path}`, { param: 'path' });
  if (!info.isFile()) throw new OcularError('validation_error', `${path} is not a regular file`, { param: 'path' });
  if (info.size === 0) throw new OcularError('validation_error', `${path} is empty`, { param: 'path' });
  const form = new FormData();
  form.set('video_name', fields.video_name ?? basename(path));
  form.set('index', String(fields.index ?? true));
  if (fields.enable_thumbnails !== undefined) form.set('enable_thumbnails', String(fields.enable_thumbnails));
  if (fields.group_id !== undefined) form.set('group_id', fields.group_id);
  form.set('file', await openAsBlob(path), basename(path));
  const response = await fetch(new URL('/v1/videos/upload', options.baseUrl), {
    method: 'POST',
    headers: options.apiKey === undefined ? {} : { 'x-api-key': options.apiKey },
    body: form,
    signal,
  });
  const body: unknown = await response.json().catch(() => undefined);
  if (response.ok && body !== null && typeof body === 'object') return toolResult(body as Record<string, unknown>);
  const envelope = errorEnvelopeSchema.safeParse(body);
  if (envelope.success) {
    const { type, message, param } = envelope.data.error;
    return toolError({ type, message, param: param ?? undefined });
  }
  return toolError({ type: 'upstream_error', message: `the server answered ${response.status} to the upload` });
}

/**
 * `ocular mcp`: an MCP server on stdio for clients that launch their tools as processes. It relays every tool to
 * the Ocular server's `/mcp` endpoint with the caller's API key (one implementation of the tools, one owner
 * model, no second copy of the database or the models), and adds `upload_video_file` for files on this machine.
 * Resolves when stdin closes.
 */
export async function runStdioBridge(options: BridgeOptions): Promise<void> {
  const remote = new Client({ name: 'ocular-mcp-bridge', version: MCP_SERVER_INFO.version });
  const transport = new StreamableHTTPClientTransport(new URL(MCP_PATH, options.baseUrl), {
    requestInit: { headers: options.apiKey === undefined ? {} : { 'x-api-key': options.apiKey } },
    // undici's own fetch: the platform's bundled one can crash the process on a peer that closes mid-body.
    fetch: (url, init) => fetch(url, init as Parameters<typeof fetch>[1]) as unknown as Promise<Response>,
  });
  // Fails here, before stdio is served, when the server is down or the key is refused.
  await remote.connect(transport);
  const remoteTools = (await remote.listTools()).tools;

  const server = new Server(MCP_SERVER_INFO, { capabilities: { tools: { listChanged: false } } });
  server.setRequestHandler(ListToolsRequestSchema, () => ({ tools: [...remoteTools, UPLOAD_FILE_LISTING] }));
  server.setRequestHandler(CallToolRequestSchema, async (request, extra) => {
    if (request.params.name === UPLOAD_FILE_TOOL) {
      try {
        return await uploadFile(options, request.params.arguments ?? {}, extra.signal);
      } catch (error) {
        if (error instanceof OcularError) return toolError(error);
        return toolError({ type: 'upstream_error', message: `the upload failed: ${(error as Error).message}` });
      }
    }
    return (await remote.callTool({ name: request.params.name, arguments: request.params.arguments ?? {} }, undefined, {
      signal: extra.signal,
      timeout: CALL_TIMEOUT_MS,
      resetTimeoutOnProgress: true,
    })) as CallToolResult;
  });

  const stdio = new StdioServerTransport(
    (options.stdin ?? process.stdin) as typeof process.stdin,
    (options.stdout ?? process.stdout) as typeof process.stdout,
  );
  const closed = new Promise<void>((resolveClosed) => {
    server.onclose = () => resolveClosed();
    (options.stdin ?? process.stdin).once('end', () => resolveClosed());
  });
  await server.connect(stdio);
  await closed;
  await Promise.allSettled([server.close(), remote.close()]);
}
