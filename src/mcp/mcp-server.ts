import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import {
  CallToolRequestSchema,
  ErrorCode,
  ListToolsRequestSchema,
  McpError,
  type CallToolResult,
  type Tool,
} from '@modelcontextprotocol/sdk/types.js';
import { OCULAR_VERSION } from '../config/settings.ts';
import type { Logger } from '../server/logger.ts';
import { OcularError } from '../spec/errors.ts';
import { toolInputJsonSchema, type OcularTool, type ToolContext } from './tools.ts';

export const MCP_SERVER_INFO = { name: 'ocular', version: OCULAR_VERSION } as const;

/** A tool's answer: the JSON as text (for clients that only show text) and as structured content. */
export function toolResult(value: Record<string, unknown>): CallToolResult {
  return { content: [{ type: 'text', text: JSON.stringify(value, null, 2) }], structuredContent: value };
}

/** A failure the caller can act on, as a tool error (not a protocol error): the model sees it and can retry. */
export function toolError(error: { type: string; message: string; param?: string | undefined }): CallToolResult {
  const wire = { type: error.type, message: error.message, ...(error.param === undefined ? {} : { param: error.param }) };
  return {
    isError: true,
    content: [{ type: 'text', text: `${error.type}: ${error.message}${error.param === undefined ? '' : ` (${error.param})`}` }],
    structuredContent: { error: wire },
  };
}

/** The JSON-RPC listing of tools, computed once: it depends on configuration only. */
export function listTools(tools: readonly OcularTool[]): Tool[] {
  return tools.map((tool) => ({
    name: tool.name,
    title: tool.title,
    description: tool.description,
    inputSchema: toolInputJsonSchema(tool),
    annotations: { title: tool.title, readOnlyHint: tool.readOnly, destructiveHint: tool.name.startsWith('delete_'), openWorldHint: false },
  }));
}

/**
 * An MCP server bound to one caller (owner, origin): one per HTTP request in stateless mode. Tool failures that
 * are Ocular's errors come back as tool errors with the HTTP API's `type`; anything else is logged and reported
 * as a server error without its details.
 */
export function createMcpServer(tools: readonly OcularTool[], listing: readonly Tool[], context: ToolContext, logger: Logger): Server {
  const server = new Server(MCP_SERVER_INFO, { capabilities: { tools: { listChanged: false } } });
  const byName = new Map(tools.map((tool) => [tool.name, tool]));
  server.setRequestHandler(ListToolsRequestSchema, () => ({ tools: [...listing] }));
  server.setRequestHandler(CallToolRequestSchema, async (request, extra) => {
    const tool = byName.get(request.params.name);
    if (tool === undefined) throw new McpError(ErrorCode.InvalidParams, `unknown tool "${request.params.name}"`);
    const signal = AbortSignal.any([context.signal, extra.signal]);
    try {
      return toolResult(await tool.run(request.params.arguments ?? {}, { ...context, signal }));
    } catch (error) {
      if (error instanceof OcularError && error.type !== 'server_error') return toolError(error);
      logger.error('MCP tool failed', { tool: tool.name, error: String(error), stack: (error as Error).stack });
      return toolError({ type: 'server_error', message: 'internal server error' });
    }
  });
  return server;
}
