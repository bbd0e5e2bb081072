import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeTinyLlamaGguf, writeTinyMmprojGguf } from '../helpers/gguf-writer.ts';
import { readSseData, startOcular, type TestOcular } from '../helpers/ocular.ts';

/** llama2.c's stories260K (real weights, English stories); the shared folder is absent in a fresh clone. */
const STORIES = fileURLToPath(new URL('../../../shared/models/stories260K/stories260K.gguf', import.meta.url));
const hasStories = existsSync(STORIES);

const PNG = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==';
const STORY_WORDS = new Set([
  'there',
  'was',
  'a',
  'little',
  'girl',
  'boy',
  'named',
  'she',
  'he',
  'the',
  'and',
  'to',
  'her',
  'his',
  'play',
  'loved',
  'day',
  'one',
  'with',
]);

let dir: string;
let ocular: TestOcular;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ocular-llama-http-'));
  const tiny = writeTinyLlamaGguf(join(dir, 'tiny.gguf'), { endless: true, asciiOnly: true });
  const mmproj = writeTinyMmprojGguf(join(dir, 'tiny-mmproj.gguf'));
  ocular = await startOcular({
    models: [
      { id: 'tiny', provider: 'llama', modelPath: tiny, contextSize: 4096, parallel: 1, queueSize: 0 },
      { id: 'tiny-vision', provider: 'llama', modelPath: tiny, mmprojPath: mmproj, contextSize: 4096 },
      { id: 'absent', provider: 'llama', model: 'qwen2.5-vl-3b', modelPath: join(dir, 'absent.gguf') },
      ...(hasStories ? [{ id: 'stories', provider: 'llama', modelPath: STORIES, contextSize: 2048 }] : []),
    ],
  });
});

afterAll(async () => {
  await ocular?.close();
  rmSync(dir, { recursive: true, force: true });
});

const openAi = (body: Record<string, unknown>, signal?: AbortSignal) => ocular.post('/openai/v1/chat/completions', body, {}, signal);

describe('llama models over HTTP (generated model)', () => {
  it('lists the model and answers a chat', async () => {
    const models = await (await ocular.get('/openai/v1/models')).json();
    expect(models.data.map((model: { id: string }) => model.id)).toContain('tiny');
    const response = await openAi({ model: 'tiny', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 8, seed: 3 });
    expect(response.status).toBe(200);
    const body = await response.json();
    expect(body.choices[0]).toMatchObject({ finish_reason: 'length', message: { role: 'assistant' } });
    expect(body.choices[0].message.content.length).toBeGreaterThan(0);
    expect(body.usage.completion_tokens).toBe(8);
  });

  it('answers a request beyond the running and waiting ones with 429 and Retry-After', async () => {
    const controller = new AbortController();
    const running = await openAi(
      { model: 'tiny', messages: [{ role: 'user', content: 'Go on' }], max_tokens: 4000, stream: true },
      controller.signal,
    );
    expect(running.status).toBe(200);
    const reader = running.body!.getReader();
    await reader.read(); // generating now
    const refused = await openAi({ model: 'tiny', messages: [{ role: 'user', content: 'Me too' }], max_tokens: 4 });
    expect(refused.status).toBe(429);
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect((await refused.json()).error.type).toBe('rate_limit_error');
    controller.abort();
    await reader.read().catch(() => undefined);
    // The cancelled stream gave its slot back.
    await expect
      .poll(async () => (await openAi({ model: 'tiny', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 2 })).status)
      .toBe(200);
  });

  it('answers a model whose file is missing with 503 and how to get it', async () => {
    const response = await openAi({ model: 'absent', messages: [{ role: 'user', content: 'Hi' }] });
    expect(response.status).toBe(503);
    const body = await response.json();
    expect(body.error.type).toBe('unavailable_error');
    expect(body.error.message).toContain('ocular models pull qwen2.5-vl-3b');
  });

  it('sends an image through the media layer and the projector', async () => {
    const ask = (content: unknown) => openAi({ model: 'tiny-vision', messages: [{ role: 'user', content }], max_tokens: 4, seed: 1 });
    const textOnly = await (await ask('What is this?')).json();
    const response = await ask([
      { type: 'text', text: 'What is this?' },
      { type: 'image_url', image_url: { url: `data:image/png;base64,${PNG}` } },
    ]);
    expect(response.status).toBe(200);
    const body = await response.json();
    expect(body.usage.prompt_tokens).toBeGreaterThanOrEqual(textOnly.usage.prompt_tokens + 10);
  });

  it('refuses an image for a model without a projector with 400', async () => {
    const response = await openAi({
      model: 'tiny',
      messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: `data:image/png;base64,${PNG}` } }] }],
    });
    expect(response.status).toBe(400);
    expect((await response.json()).error.type).toBe('validation_error');
  });
});

describe.skipIf(!hasStories)('llama models over HTTP (stories260K)', () => {
  const story = [
    { role: 'user', content: 'Tell me a story.' },
    { role: 'assistant', content: 'Once upon a time' },
  ];

  it('continues "Once upon a time" with English words (Reka format, assistant prefix)', async () => {
    const response = await ocular.post('/v1/chat', { model: 'stories', messages: story, max_tokens: 40, temperature: 0 });
    expect(response.status).toBe(200);
    const text: string = (await response.json()).responses[0].message.content;
    expect(text.startsWith('Once upon a time')).toBe(false);
    const words = text.toLowerCase().match(/[a-z]+/g) ?? [];
    expect(words.filter((word) => STORY_WORDS.has(word)).length).toBeGreaterThanOrEqual(5);
  });

  it('ends the text before a stop string on a real word', async () => {
    const full: string = (await (await openAi({ model: 'stories', messages: story, max_tokens: 40, temperature: 0 })).json()).choices[0]
      .message.content;
    const word = (full.match(/[A-Za-z]{4,}/g) ?? [])[1]!;
    expect(word).toBeDefined();
    const body = await (await openAi({ model: 'stories', messages: story, max_tokens: 40, temperature: 0, stop: [word] })).json();
    expect(body.choices[0].message.content).toBe(full.slice(0, full.indexOf(word)));
    expect(body.choices[0].finish_reason).toBe('stop');
  });

  it('streams in the OpenAI format: deltas, finish reason, usage, [DONE]', async () => {
    const request = { model: 'stories', messages: story, max_tokens: 30, temperature: 0 };
    const whole: string = (await (await openAi(request)).json()).choices[0].message.content;
    const response = await openAi({ ...request, stream: true, stream_options: { include_usage: true } });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toContain('text/event-stream');
    const events = await readSseData(response);
    expect(events.at(-1)).toBe('[DONE]');
    const chunks = events.slice(0, -1).map((data) => JSON.parse(data));
    const deltas = chunks.flatMap((chunk) => chunk.choices.map((choice: { delta: { content?: string } }) => choice.delta.content ?? ''));
    expect(deltas.filter((delta) => delta !== '').length).toBeGreaterThan(5);
    expect(deltas.join('')).toBe(whole);
    expect(chunks.some((chunk) => chunk.choices[0]?.finish_reason === 'length')).toBe(true);
    expect(chunks.at(-1).usage).toMatchObject({ completion_tokens: 30 });
  });
});
