// `ocular mcp`: the stdio MCP server a client starts as a process, relaying to a running Ocular. Driven by the MCP
// SDK's own stdio client, which starts the real CLI.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeVideo, removeMediaFixtures } from '../helpers/media-fixtures.ts';
import { startOcular, type TestOcular } from '../helpers/ocular.ts';

const CLI = fileURLToPath(new URL('../../bin/ocular.js', import.meta.url));
const KEY = 'ocu_mcp_stdio_owner_0123456789ab';

let ocular: TestOcular;
let client: Client;

function bridgeEnvironment(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(process.env)) if (value !== undefined && !name.startsWith('OCULAR_')) env[name] = value;
  return env;
}

async function call(name: string, args: Record<string, unknown>): Promise<CallToolResult> {
  return (await client.callTool({ name, arguments: args })) as CallToolResult;
}

beforeAll(async () => {
  ocular = await startOcular({}, { envApiKeys: [KEY] });
  client = new Client({ name: 'ocular-test', version: '1.0.0' });
  await client.connect(
    new StdioClientTransport({
      command: process.execPath,
      args: [CLI, 'mcp', '--url', ocular.url, '--api-key', KEY],
      env: bridgeEnvironment(),
      stderr: 'pipe',
    }),
  );
}, 60_000);

afterAll(async () => {
  await client?.close();
  await ocular?.close();
  removeMediaFixtures();
});

describe('ocular mcp (stdio)', () => {
  it("lists the server's tools and its own upload_video_file", async () => {
    const names = (await client.listTools()).tools.map((tool) => tool.name);
    expect(names).toEqual(expect.arrayContaining(['search_videos', 'get_video', 'chat', 'upload_video', 'upload_video_file']));
  });

  it('uploads a local file, which the server then lists under the caller', async () => {
    const path = await makeVideo({ seconds: 1 });
    const uploaded = await call('upload_video_file', { path, video_name: 'from stdio', index: false });
    expect(uploaded.isError).toBeFalsy();
    const video = uploaded.structuredContent as { video_id: string; video_name: string; indexing_status: string };
    expect(video).toMatchObject({ video_name: 'from stdio', indexing_status: 'pending' });
    const got = await call('get_video', { video_id: video.video_id });
    expect(got.structuredContent).toMatchObject({ video_id: video.video_id, video_name: 'from stdio' });
    const listed = await fetch(`${ocular.url}/v1/videos`, { headers: { 'x-api-key': KEY } });
    expect(((await listed.json()) as { results: Array<{ video_id: string }> }).results.map((v) => v.video_id)).toContain(video.video_id);
  });

  it('reports bad uploads as tool errors', async () => {
    const missing = await call('upload_video_file', { path: '/nonexistent/ocular-video.mp4' });
    expect(missing.isError).toBe(true);
    expect(missing.structuredContent).toMatchObject({ error: { type: 'not_found_error' } });
    const directory = await call('upload_video_file', { path: '/tmp' });
    expect(directory.structuredContent).toMatchObject({ error: { type: 'validation_error' } });
    const notVideo = await call('upload_video_file', { path: CLI, index: false });
    expect(notVideo.isError).toBe(true);
    expect((notVideo.structuredContent as { error: { type: string } }).error.type).toMatch(/^(unsupported_media_type|validation_error)$/);
    const wrongArgs = await call('upload_video_file', { file: 'x' });
    expect(wrongArgs.structuredContent).toMatchObject({ error: { type: 'validation_error' } });
  });

  it('relays tool errors from the server', async () => {
    const result = await call('search_videos', { query: '' });
    expect(result.structuredContent).toMatchObject({ error: { type: 'validation_error' } });
  });

  it('exits non-zero with a message when the key is refused', async () => {
    const child = spawn(process.execPath, [CLI, 'mcp', '--url', ocular.url, '--api-key', 'ocu_wrong_key_000000000000000'], {
      env: bridgeEnvironment(),
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    expect(code).toBe(1);
    expect(stderr).toContain('ocular:');
  });

  it('ends when its client closes stdin', async () => {
    const child = spawn(process.execPath, [CLI, 'mcp', '--url', ocular.url, '--api-key', KEY], { env: bridgeEnvironment(), stdio: 'pipe' });
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    child.stdin.end();
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    expect(code).toBe(0);
  }, 20_000);
});
