import { WebStandardStreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/webStandardStreamableHttp.js';
import type { Context, Hono } from 'hono';
import type { Logger } from '../server/logger.ts';
import { readJson } from '../server/read-body.ts';
import type { RequestEdge } from '../server/vision-routes.ts';
import { createMcpServer, listTools } from './mcp-server.ts';
import { createOcularTools, type McpDependencies } from './tools.ts';

type McpEnv = { Variables: { requestId: string; owner: string } };

/** Where the MCP endpoint is served (streamable HTTP). */
export const MCP_PATH = '/mcp';

/**
 * MCP over streamable HTTP, stateless: each POST carries its own JSON-RPC messages and is answered with JSON, so
 * any API process can take any request, and the caller is whoever the request's API key says. GET (a
 * server-initiated event stream) and DELETE (ending a session) have nothing to do without sessions: 405.
 */
export function registerMcpRoute(
  app: Hono<McpEnv>,
  deps: McpDependencies,
  edge: RequestEdge,
  options: { logger: Logger; publicBaseUrl?: string | undefined },
): void {
  const tools = createOcularTools(deps);
  const listing = listTools(tools);
  // No sessionIdGenerator: stateless mode.
  app.post(MCP_PATH, async (c: Context<McpEnv>) => {
    const body = await readJson(c, edge.bodyLimits);
    const origin = options.publicBaseUrl ?? new URL(c.req.url).origin;
    const server = createMcpServer(tools, listing, { owner: c.get('owner'), origin, signal: edge.requestSignal(c) }, options.logger);
    const transport = new WebStandardStreamableHTTPServerTransport({ enableJsonResponse: true });
    await server.connect(transport);
    try {
      return await transport.handleRequest(c.req.raw, { parsedBody: body });
    } finally {
      void server.close();
    }
  });
}
