// MCP over streamable HTTP at /mcp, driven by the MCP SDK's own client: the tools call the same services as the
// HTTP API, as the caller's owner.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { environmentKeyOwner } from '../../src/store/api-keys.ts';
import { VideoStore } from '../../src/store/video-store.ts';
import { insertIndexedVideo } from '../helpers/library-fixtures.ts';
import { startOcular, type TestOcular } from '../helpers/ocular.ts';
import { completion, startOpenAiUpstream } from '../helpers/openai-upstream.ts';
import { sendJson } from '../helpers/fake-upstream.ts';

const KEY_A = 'ocu_mcp_owner_a_0123456789abcd';
const KEY_B = 'ocu_mcp_owner_b_0123456789abcd';

let ocular: TestOcular;
let upstream: Awaited<ReturnType<typeof startOpenAiUpstream>>;
const clients: Client[] = [];

async function connect(key: string | undefined): Promise<Client> {
  const transport = new StreamableHTTPClientTransport(new URL('/mcp', ocular.url), {
    requestInit: { headers: key === undefined ? {} : { 'x-api-key': key } },
  });
  const client = new Client({ name: 'ocular-test', version: '1.0.0' });
  await client.connect(transport);
  clients.push(client);
  return client;
}

function insertVideo(key: string, texts: readonly string[], name = 'synthetic'): Promise<string> {
  return ocular.withDatabase((database) =>
    insertIndexedVideo(
      new VideoStore(database),
      environmentKeyOwner(key),
      texts.map((text) => ({ ocrText: text, caption: text === '' ? '' : `On-screen text: ${text}` })),
      { name },
    ),
  );
}

async function call(client: Client, name: string, args: Record<string, unknown>): Promise<CallToolResult> {
  return (await client.callTool({ name, arguments: args })) as CallToolResult;
}

function errorType(result: CallToolResult): string | undefined {
  expect(result.isError).toBe(true);
  return (result.structuredContent as { error?: { type?: string } } | undefined)?.error?.type;
}

beforeAll(async () => {
  upstream = await startOpenAiUpstream();
  ocular = await startOcular(
    {
      defaultModel: 'flash',
      models: [{ id: 'flash', provider: 'openai-compatible', baseUrl: `${upstream.url}/v1`, model: 'upstream-model', maxRetries: 0 }],
      indexing: { objects: { enabled: false }, labels: { enabled: false }, vad: { enabled: false } },
    },
    { envApiKeys: [KEY_A, KEY_B] },
  );
}, 60_000);

afterAll(async () => {
  await Promise.all(clients.map((client) => client.close()));
  await ocular?.close();
  await upstream?.close();
});

describe('MCP over streamable HTTP', () => {
  it('lists every tool with a JSON Schema of its arguments', async () => {
    const client = await connect(KEY_A);
    expect(client.getServerVersion()?.name).toBe('ocular');
    const { tools } = await client.listTools();
    const names = tools.map((tool) => tool.name).sort();
    expect(names).toEqual(
      expect.arrayContaining([
        'chat',
        'delete_video',
        'get_image',
        'get_indexing_status',
        'get_video',
        'list_models',
        'list_videos',
        'search_images',
        'search_videos',
        'upload_video',
        'ask_video',
        'create_clip',
        'get_clip',
      ]),
    );
    const search = tools.find((tool) => tool.name === 'search_videos')!;
    expect(search.inputSchema.properties).toHaveProperty('query');
    expect(search.inputSchema.properties).toHaveProperty('image_url');
    expect(search.annotations?.readOnlyHint).toBe(true);
    expect(tools.find((tool) => tool.name === 'delete_video')!.annotations?.destructiveHint).toBe(true);
  });

  it("searches the caller's videos and only theirs, with signed URLs that play the range", async () => {
    const mine = await insertVideo(KEY_A, ['', 'CRIMSON HERON', ''], 'mine');
    await insertVideo(KEY_B, ['CRIMSON HERON'], 'theirs');
    const client = await connect(KEY_A);
    const result = await call(client, 'search_videos', { query: 'crimson heron', max_results: 5 });
    expect(result.isError).toBeFalsy();
    const found = result.structuredContent as { results: Array<{ video_id: string; start_timestamp: number; s3_presigned_url: string }> };
    expect(found.results.map((hit) => hit.video_id)).toEqual([mine]);
    expect(found.results[0]!.start_timestamp).toBe(5);
    const url = new URL(found.results[0]!.s3_presigned_url);
    expect(url.origin).toBe(ocular.url);
    expect(url.searchParams.get('signature')).toBeTruthy();
    expect(url.hash).toBe('#t=5.000,10.000');
    // The text content carries the same JSON, for clients that only show text.
    const text = (result.content as Array<{ type: string; text: string }>)[0]!.text;
    expect(JSON.parse(text)).toEqual(found);
  });

  it("gets, lists and deletes videos as the caller; another owner's video is not found", async () => {
    const mine = await insertVideo(KEY_A, ['AMBER LYNX']);
    const theirs = await insertVideo(KEY_B, ['AMBER LYNX']);
    const client = await connect(KEY_A);
    const got = await call(client, 'get_video', { video_id: mine });
    expect((got.structuredContent as { video_id: string; indexing_status: string }).indexing_status).toBe('indexed');
    expect(errorType(await call(client, 'get_video', { video_id: theirs }))).toBe('not_found_error');
    expect(errorType(await call(client, 'delete_video', { video_id: theirs }))).toBe('not_found_error');
    expect(errorType(await call(client, 'get_video', { video_id: 'not-a-uuid' }))).toBe('not_found_error');

    const status = await call(client, 'get_indexing_status', { video_id: mine });
    expect(status.structuredContent).toMatchObject({ video_id: mine, indexing_status: 'indexed', percent: expect.any(Number) });

    const page = await call(client, 'list_videos', { limit: 1 });
    const listed = page.structuredContent as { results: Array<{ video_id: string }>; total: number; limit: number };
    expect(listed.results).toHaveLength(1);
    expect(listed.total).toBeGreaterThanOrEqual(2);

    expect((await call(client, 'delete_video', { video_id: mine })).structuredContent).toEqual({ video_id: mine, deleted: true });
    expect(errorType(await call(client, 'get_video', { video_id: mine }))).toBe('not_found_error');
    // Owner B still has theirs.
    const other = await connect(KEY_B);
    expect((await call(other, 'get_video', { video_id: theirs })).isError).toBeFalsy();
  });

  it("validates arguments with the HTTP API's schemas", async () => {
    const client = await connect(KEY_A);
    expect(errorType(await call(client, 'search_videos', { query: '' }))).toBe('validation_error');
    expect(errorType(await call(client, 'search_videos', { query: 'x', max_results: 1000 }))).toBe('validation_error');
    expect(errorType(await call(client, 'search_videos', { query: 'x', surprise: true }))).toBe('validation_error');
    expect(errorType(await call(client, 'list_videos', { limit: 0 }))).toBe('validation_error');
    expect(errorType(await call(client, 'upload_video', { video_name: 'no url' }))).toBe('validation_error');
    expect(errorType(await call(client, 'chat', { messages: 'hello' }))).toBe('validation_error');
    expect(errorType(await call(client, 'chat', { messages: [{ role: 'user', content: 'hi' }], model: 'nope' }))).toBe('not_found_error');
    await expect(client.callTool({ name: 'no_such_tool', arguments: {} })).rejects.toThrow(/unknown tool/);
  });

  it('refuses to fetch a video from a private address', async () => {
    const client = await connect(KEY_A);
    const result = await call(client, 'upload_video', { video_url: 'http://10.1.2.3/movie.mp4', video_name: 'private' });
    expect(['permission_error', 'validation_error']).toContain(errorType(result));
    expect((await call(client, 'list_videos', {})).structuredContent).not.toMatchObject({
      results: expect.arrayContaining([expect.objectContaining({ video_name: 'private' })]),
    });
  });

  it('chats through the configured model', async () => {
    upstream.behave((_request, response) => sendJson(response, 200, completion('The answer is 42.')));
    const client = await connect(KEY_A);
    const result = await call(client, 'chat', { messages: [{ role: 'user', content: 'What is six times seven?' }] });
    expect(result.isError).toBeFalsy();
    expect(result.structuredContent).toMatchObject({
      model: 'flash',
      responses: [{ message: { role: 'assistant', content: 'The answer is 42.' } }],
    });
    const sent = upstream.requests.at(-1)!.body as { messages: Array<{ content: unknown }> };
    expect(JSON.stringify(sent.messages)).toContain('six times seven');
    expect(errorType(await call(client, 'chat', { messages: [{ role: 'user', content: 'hi' }], stream: true }))).toBe('validation_error');
  });

  it("asks about one of the caller's videos", async () => {
    const video = await insertVideo(KEY_A, ['', 'the VIOLET KESTREL lands', ''], 'birds');
    const theirs = await insertVideo(KEY_B, ['VIOLET KESTREL'], 'theirs');
    upstream.behave((_request, response) => sendJson(response, 200, completion('It lands at [00:05].')));
    const client = await connect(KEY_A);
    const result = await call(client, 'ask_video', {
      video_id: video,
      messages: [{ role: 'user', content: 'When does the violet kestrel land?' }],
    });
    expect(result.isError).toBeFalsy();
    expect(result.structuredContent).toEqual({ video_id: video, chat_response: 'It lands at [00:05].', status: 'success' });
    expect(JSON.stringify(upstream.requests.at(-1)!.body)).toContain('VIOLET KESTREL');
    expect(errorType(await call(client, 'ask_video', { video_id: theirs, messages: [{ role: 'user', content: 'hi' }] }))).toBe(
      'not_found_error',
    );
    expect(errorType(await call(client, 'ask_video', { video_id: video, messages: [] }))).toBe('validation_error');
  });

  it('starts a clip job and reads it back, for the caller only', async () => {
    const video = await insertVideo(KEY_A, ['ORANGE TAPIR', '', ''], 'tapirs');
    const theirs = await insertVideo(KEY_B, ['ORANGE TAPIR'], 'theirs');
    const client = await connect(KEY_A);
    const created = await call(client, 'create_clip', {
      video_ids: [video],
      prompt: 'the orange tapir',
      generation_config: { max_duration_seconds: 5 },
    });
    expect(created.isError).toBeFalsy();
    const clip = created.structuredContent as { id: string; status: string; prompt: string };
    expect(clip).toMatchObject({ prompt: 'the orange tapir' });
    expect(['queued', 'processing', 'failed', 'completed']).toContain(clip.status);
    const got = await call(client, 'get_clip', { clip_id: clip.id });
    expect(got.structuredContent).toMatchObject({ id: clip.id, prompt: 'the orange tapir' });
    expect(errorType(await call(await connect(KEY_B), 'get_clip', { clip_id: clip.id }))).toBe('not_found_error');
    expect(errorType(await call(client, 'create_clip', { video_ids: [theirs], prompt: 'x' }))).toBe('not_found_error');
    expect(
      errorType(await call(client, 'create_clip', { video_ids: [video], prompt: 'x', generation_config: { num_generations: 9 } })),
    ).toBe('validation_error');
  });

  it('lists the configured models', async () => {
    const client = await connect(KEY_A);
    expect((await call(client, 'list_models', {})).structuredContent).toEqual({ models: [{ id: 'flash' }] });
  });

  it('needs an API key, and takes POST only', async () => {
    await expect(connect(undefined)).rejects.toThrow();
    const anonymous = await fetch(`${ocular.url}/mcp`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
    });
    expect(anonymous.status).toBe(401);
    expect(((await anonymous.json()) as { error: { type: string } }).error.type).toBe('authentication_error');
    const get = await fetch(`${ocular.url}/mcp`, { headers: { 'x-api-key': KEY_A } });
    expect(get.status).toBe(405);
    const malformed = await fetch(`${ocular.url}/mcp`, {
      method: 'POST',
      headers: { 'x-api-key': KEY_A, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: '{"jsonrpc":',
    });
    expect(malformed.status).toBe(400);
  });
});
