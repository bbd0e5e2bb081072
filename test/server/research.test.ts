// The Research API: a research model on the OpenAI chat routes, driven by the `openai` SDK, with a chat model
// scripted at a local OpenAI-compatible server, a local SearXNG-style search backend and local pages.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import OpenAI from 'openai';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { hostMatches } from '../../src/research/research-agent.ts';
import type { RecordedRequest } from '../helpers/fake-upstream.ts';
import { sendJson } from '../helpers/fake-upstream.ts';
import { startOcular, type TestOcular } from '../helpers/ocular.ts';
import { completion, startOpenAiUpstream } from '../helpers/openai-upstream.ts';

type UpstreamMessage = { role: string; content: string | null; tool_calls?: unknown[] };

let upstream: Awaited<ReturnType<typeof startOpenAiUpstream>>;
let web: Server;
let webPort: number;
let ocular: TestOcular;
let bare: TestOcular;
const searches: string[] = [];
const pagesRead: string[] = [];

const page = (path: string) => `http://127.0.0.1:${webPort}${path}`;

function toolCall(id: string, name: string, args: unknown) {
  return { id, type: 'function', function: { name, arguments: JSON.stringify(args) } };
}

/**
 * The scripted chat model: a page question is answered from the page; otherwise it searches first, then reads the
 * first source, then answers citing it; a synthesis request combines.
 */
function script(request: RecordedRequest, options: { readUrl?: string } = {}) {
  const messages = (request.body as { messages: UpstreamMessage[] }).messages;
  const system = messages[0]?.content ?? '';
  if (system.startsWith('Answer the question from the page text only')) return completion('Its wingspan is three metres.');
  if (system.includes('Several researchers answered independently'))
    return completion('Combined: the quartz falcon spans three metres [1].');
  const toolResults = messages.filter((message) => message.role === 'tool').length;
  if (toolResults === 0)
    return completion(null, {
      toolCalls: [toolCall('call_1', 'search_web', { query: 'quartz falcon wingspan' })],
      finishReason: 'tool_calls',
    });
  if (toolResults === 1) {
    return completion('Reading the first result.', {
      toolCalls: [toolCall('call_2', 'analyze', { url: options.readUrl ?? page('/falcon'), question: 'How wide is its wingspan?' })],
      finishReason: 'tool_calls',
    });
  }
  return completion('The quartz falcon has a wingspan of three metres [1]. It nests on cliffs [2].');
}

beforeAll(async () => {
  web = createServer((request, response) => {
    const url = new URL(request.url ?? '/', 'http://x');
    if (url.pathname === '/search') {
      searches.push(url.searchParams.get('q') ?? '');
      return sendJson(response, 200, {
        results: [
          { url: page('/falcon'), title: 'The quartz falcon', content: 'A falcon of the high desert.' },
          { url: `http://other.example.test/cliffs`, title: 'Cliffs', content: 'Falcons nest on cliffs.' },
        ],
      });
    }
    pagesRead.push(url.pathname);
    if (url.pathname === '/hang') return; // never answers
    if (url.pathname === '/huge') {
      // Over search.maxPageBytes: the fetcher stops reading and the page counts as unreadable.
      response.writeHead(200, { 'content-type': 'text/html' });
      return void response.end(`<html><body><p>${'falcon '.repeat(400_000)}</p></body></html>`);
    }
    response.writeHead(200, { 'content-type': 'text/html' });
    response.end(
      `<html><head><title>The quartz falcon</title></head><body><article><h1>The quartz falcon</h1><p>${'The quartz falcon is a bird of the high desert with a wingspan of three metres. '.repeat(5)}</p></article></body></html>`,
    );
  });
  await new Promise<void>((resolve) => web.listen(0, '127.0.0.1', resolve));
  webPort = (web.address() as AddressInfo).port;
  upstream = await startOpenAiUpstream();
  const base = {
    models: [{ id: 'planner', provider: 'openai-compatible', baseUrl: `${upstream.url}/v1`, model: 'm', maxRetries: 0 }],
    research: [{ id: 'research', model: 'planner', maxSteps: 5, maxSeconds: 20, maxPages: 3 }],
    media: { allowHosts: [`127.0.0.1:${webPort}`] },
  };
  ocular = await startOcular({
    ...base,
    search: { provider: `http://127.0.0.1:${webPort}/search?q={query}&format=json`, timeoutMs: 1_000 },
  });
  bare = await startOcular(base);
});

afterAll(async () => {
  await Promise.all([ocular?.close(), bare?.close(), upstream?.close()]);
  web.closeAllConnections();
  await new Promise<void>((resolve) => web.close(() => resolve()));
});

beforeEach(() => {
  upstream.requests.length = 0;
  searches.length = 0;
  pagesRead.length = 0;
  upstream.behave((request, response) => sendJson(response, 200, script(request)));
});

const client = (server = ocular) => new OpenAI({ apiKey: server.key, baseURL: `${server.url}/openai/v1`, maxRetries: 0 });

type ResearchMessage = {
  content: string;
  reasoning_content: string;
  reasoning_steps: Array<{
    role: string;
    tool_calls?: Array<{ name: string; args: Record<string, string> }>;
    content?: { tool_name: string; tool_output: string | null; tool_error: string | null };
  }>;
  annotations: Array<{ type: string; url_citation: { url: string; title: string; start_index: number; end_index: number } }>;
};

describe('research models', () => {
  it('are listed with the chat models', async () => {
    const ids = (await client().models.list()).data.map((model) => model.id);
    expect(ids).toEqual(expect.arrayContaining(['planner', 'research']));
  });

  it('search, read and answer with citations that point at the cited text', async () => {
    const completion = await client().chat.completions.create({
      model: 'research',
      messages: [{ role: 'user', content: 'How wide is a quartz falcon?' }],
    });
    const message = completion.choices[0]!.message as unknown as ResearchMessage;
    expect(message.content).toBe('The quartz falcon has a wingspan of three metres [1]. It nests on cliffs [2].');
    expect(message.reasoning_steps.map((step) => [step.role, step.tool_calls?.[0]?.name ?? step.content?.tool_name])).toEqual([
      ['assistant', 'search_web'],
      ['tool', 'search_web'],
      ['assistant', 'analyze'],
      ['tool', 'analyze'],
    ]);
    expect(message.reasoning_steps[3]!.content!.tool_output).toContain('three metres');
    expect(searches).toEqual(['quartz falcon wingspan']);
    const [first, second] = message.annotations;
    expect(first!.url_citation.url).toBe(page('/falcon'));
    expect(message.content.slice(first!.url_citation.start_index, first!.url_citation.end_index)).toBe(
      'The quartz falcon has a wingspan of three metres',
    );
    expect(second!.url_citation.url).toBe('http://other.example.test/cliffs');
    expect(message.content.slice(second!.url_citation.start_index, second!.url_citation.end_index)).toBe('It nests on cliffs');
    expect(completion.usage!.prompt_tokens).toBeGreaterThan(0);
    // The chat model got the tools, and the page text for the question about it.
    const first_call = upstream.requests[0]!.body as { tools: Array<{ function: { name: string } }> };
    expect(first_call.tools.map((tool) => tool.function.name)).toEqual(['search_web', 'analyze']);
    expect(JSON.stringify(upstream.requests.map((request) => request.body))).toContain('a wingspan of three metres');
  });

  it('keeps to the allowed domains, and refuses both lists at once', async () => {
    const completion = await client().chat.completions.create({
      model: 'research',
      messages: [{ role: 'user', content: 'How wide is a quartz falcon?' }],
      // @ts-expect-error Ocular's research extras
      research: { web_search: { allowed_domains: ['example.test'] } },
    });
    const message = completion.choices[0]!.message as unknown as ResearchMessage;
    const searchOutput = message.reasoning_steps[1]!.content!.tool_output!;
    expect(searchOutput).toContain('other.example.test');
    expect(searchOutput).not.toContain('127.0.0.1');
    expect(message.reasoning_steps[3]!.content!.tool_error).toMatch(/outside the allowed domains/);
    expect(pagesRead).toEqual([]);
    expect(hostMatches('a.b.example.test', 'example.test')).toBe(true);
    expect(hostMatches('notexample.test', 'example.test')).toBe(false);

    const both = await ocular.post('/v1/chat/completions', {
      model: 'research',
      messages: [{ role: 'user', content: 'x' }],
      research: { web_search: { allowed_domains: ['a.com'], blocked_domains: ['b.com'] } },
    });
    expect(both.status).toBe(400);
    expect(((await both.json()) as { error: { type: string; param: string } }).error).toMatchObject({
      type: 'validation_error',
      param: 'research.web_search.blocked_domains',
    });
  });

  it('stops searching at max_uses', async () => {
    upstream.behave((request, response) => {
      const messages = (request.body as { messages: UpstreamMessage[] }).messages;
      const tools = messages.filter((message) => message.role === 'tool').length;
      const body =
        (request.body as { tool_choice?: string }).tool_choice === 'none'
          ? completion('Done [1].')
          : completion(null, { toolCalls: [toolCall(`call_${tools}`, 'search_web', { query: `q${tools}` })], finishReason: 'tool_calls' });
      sendJson(response, 200, body);
    });
    const completion_ = await client().chat.completions.create({
      model: 'research',
      messages: [{ role: 'user', content: 'x' }],
      // @ts-expect-error Ocular's research extras
      research: { web_search: { max_uses: 2 } },
    });
    const message = completion_.choices[0]!.message as unknown as ResearchMessage;
    expect(searches).toHaveLength(2);
    const errors = message.reasoning_steps.filter((step) => step.content?.tool_error).map((step) => step.content!.tool_error);
    expect(errors[0]).toMatch(/max_uses/);
    // The step bound (maxSteps 5) made it answer.
    expect(message.content).toBe('Done [1].');
    expect((upstream.requests.at(-1)!.body as { tool_choice: string }).tool_choice).toBe('none');
  });

  it('gives up on a page that hangs, and answers', async () => {
    upstream.behave((request, response) => sendJson(response, 200, script(request, { readUrl: page('/hang') })));
    const started = Date.now();
    const completion_ = await client().chat.completions.create({ model: 'research', messages: [{ role: 'user', content: 'x' }] });
    const message = completion_.choices[0]!.message as unknown as ResearchMessage;
    expect(message.reasoning_steps[3]!.content!.tool_error).toMatch(/could not read/);
    expect(message.content).toContain('[1]');
    expect(Date.now() - started).toBeLessThan(15_000);
  });

  it('gives up on a page over the size bound, and answers', async () => {
    upstream.behave((request, response) => sendJson(response, 200, script(request, { readUrl: page('/huge') })));
    const completion_ = await client().chat.completions.create({ model: 'research', messages: [{ role: 'user', content: 'x' }] });
    const message = completion_.choices[0]!.message as unknown as ResearchMessage;
    expect(message.reasoning_steps[3]!.content!.tool_error).toMatch(/could not read/);
    expect(message.content).toContain('[1]');
  });

  it('streams the steps as they happen, then the answer', async () => {
    const stream = await client().chat.completions.create({
      model: 'research',
      stream: true,
      stream_options: { include_usage: true },
      messages: [{ role: 'user', content: 'x' }],
    });
    const steps: string[] = [];
    let content = '';
    let annotations = 0;
    let usage = 0;
    for await (const chunk of stream) {
      const delta = chunk.choices[0]?.delta as (Record<string, unknown> & { content?: string }) | undefined;
      for (const step of (delta?.reasoning_steps as Array<{ role: string }> | undefined) ?? []) steps.push(step.role);
      if (delta?.content) content += delta.content;
      annotations += ((delta?.annotations as unknown[] | undefined) ?? []).length;
      if (chunk.usage) usage = chunk.usage.total_tokens;
    }
    expect(steps).toEqual(['assistant', 'tool', 'assistant', 'tool']);
    expect(content).toContain('[1]');
    expect(annotations).toBe(2);
    expect(usage).toBeGreaterThan(0);
  });

  it('runs parallel attempts and a synthesis, and refuses them with stream', async () => {
    const completion_ = await client().chat.completions.create({
      model: 'research',
      messages: [{ role: 'user', content: 'x' }],
      // @ts-expect-error Ocular's research extras
      research: { parallel_thinking: { mode: 'low' } },
    });
    const message = completion_.choices[0]!.message as unknown as ResearchMessage;
    expect(message.content).toBe('Combined: the quartz falcon spans three metres [1].');
    expect(message.reasoning_steps.filter((step) => step.role === 'assistant' && step.tool_calls?.[0]?.name === 'search_web')).toHaveLength(
      2,
    );
    expect(message.annotations[0]!.url_citation.url).toBe(page('/falcon'));

    const streamed = await ocular.post('/v1/chat/completions', {
      model: 'research',
      stream: true,
      messages: [{ role: 'user', content: 'x' }],
      research: { parallel_thinking: { mode: 'high' } },
    });
    expect(streamed.status).toBe(400);
  });

  it('refuses what it cannot do with 400', async () => {
    const post = (body: Record<string, unknown>, server = ocular) =>
      server.post('/v1/chat/completions', { model: 'research', messages: [{ role: 'user', content: 'x' }], ...body });
    expect((await post({ tools: [{ type: 'function', function: { name: 'f', parameters: {} } }] })).status).toBe(400);
    expect((await post({ research: { web_search: { max_uses: 0 } } })).status).toBe(400);
    expect((await post({ research: { parallel_thinking: { mode: 'extreme' } } })).status).toBe(400);
    expect((await post({ research: { surprise: true } })).status).toBe(400);
    // No search backend configured: 400 saying how to configure one.
    const unconfigured = await post({}, bare);
    expect(unconfigured.status).toBe(400);
    expect(((await unconfigured.json()) as { error: { message: string } }).error.message).toContain('search');
    expect(upstream.requests).toHaveLength(0);
  });
});
