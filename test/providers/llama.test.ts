import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { isOcularError, type OcularError } from '../../src/spec/errors.ts';
import type { PromptMessage } from '../../src/spec/messages.ts';
import type { ProviderRequest } from '../../src/spec/provider.ts';
import type { StreamPart } from '../../src/spec/stream-parts.ts';
import { formatPlainPrompt, toLlamaSeed, convertMessages } from '../../src/providers/llama/convert-request.ts';
import type { OutputPlan } from '../../src/providers/llama/convert-response.ts';
import { partialStopLength, TokenStreamConverter } from '../../src/providers/llama/convert-stream.ts';
import { describeLoadFailure } from '../../src/providers/llama/errors.ts';
import { createLlamaModel, llama, settingsSchema, type LlamaLanguageModel } from '../../src/providers/llama/index.ts';
import { writeTinyLlamaGguf, writeTinyMmprojGguf } from '../helpers/gguf-writer.ts';

/** A ChatML template with tool support in the shape of Qwen2.5's (llama.cpp recognises its `<tool_call>` format). */
const CHATML_TOOLS_TEMPLATE = `{%- if messages[0].content == 'raise' %}{{ raise_exception('this template refuses "raise"') }}{% endif -%}
{%- if tools %}<|im_start|>system
You may call functions. Signatures within <tools></tools>:
<tools>{% for tool in tools %}
{{ tool | tojson }}{% endfor %}
</tools>
Return calls as <tool_call>
{"name": <function-name>, "arguments": <args-json-object>}
</tool_call><|im_end|>
{% endif %}
{%- for message in messages %}
{%- if message.role == 'user' or message.role == 'system' or (message.role == 'assistant' and not message.tool_calls) %}<|im_start|>{{ message.role }}
{{ message.content }}<|im_end|>
{% elif message.role == 'assistant' %}<|im_start|>assistant
{% if message.content %}{{ message.content }}{% endif %}{% for tool_call in message.tool_calls %}{% if tool_call.function is defined %}{% set tool_call = tool_call.function %}{% endif %}
<tool_call>
{"name": "{{ tool_call.name }}", "arguments": {{ tool_call.arguments | tojson }}}
</tool_call>{% endfor %}<|im_end|>
{% elif message.role == 'tool' %}<|im_start|>user
<tool_response>
{{ message.content }}
</tool_response><|im_end|>
{% endif %}
{%- endfor %}
{%- if add_generation_prompt %}<|im_start|>assistant
{% endif %}`;

let dir: string;
/** Never ends on its own and writes ASCII: runs always reach max_tokens. */
let endlessPath: string;
/** The same, with a chat template. */
let templatePath: string;
/** A vision projector for those models. */
let mmprojPath: string;
const models: LlamaLanguageModel[] = [];

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'ocular-llama-test-'));
  endlessPath = writeTinyLlamaGguf(join(dir, 'tiny.gguf'), { endless: true, asciiOnly: true });
  templatePath = writeTinyLlamaGguf(join(dir, 'tiny-chat.gguf'), { endless: true, asciiOnly: true, chatTemplate: CHATML_TOOLS_TEMPLATE });
  mmprojPath = writeTinyMmprojGguf(join(dir, 'tiny-mmproj.gguf'));
});

afterEach(async () => {
  await Promise.all(models.splice(0).map((model) => model.close()));
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

function create(overrides: Record<string, unknown> = {}): LlamaLanguageModel {
  const model = createLlamaModel(
    settingsSchema.parse({ id: 'tiny', provider: 'llama', modelPath: endlessPath, contextSize: 4096, idleUnloadMs: 0, ...overrides }),
  );
  models.push(model);
  return model;
}

const signal = (): AbortSignal => new AbortController().signal;

const user = (text: string): PromptMessage => ({ role: 'user', content: [{ type: 'text', text }] });

const request = (overrides: Partial<ProviderRequest> = {}): ProviderRequest => ({
  maxTokens: 24,
  temperature: 0.8,
  seed: 7,
  messages: [user('Tell me a story.')],
  ...overrides,
});

async function collect(stream: ReadableStream<StreamPart>): Promise<StreamPart[]> {
  const parts: StreamPart[] = [];
  const reader = stream.getReader();
  for (let next = await reader.read(); !next.done; next = await reader.read()) parts.push(next.value);
  return parts;
}

const textOf = (parts: StreamPart[]): string => parts.map((part) => (part.type === 'text-delta' ? part.text : '')).join('');

async function rejection(promise: Promise<unknown>): Promise<OcularError> {
  const error = await promise.then(
    () => undefined,
    (reason: unknown) => reason,
  );
  if (!isOcularError(error)) throw new Error(`expected an OcularError, got ${String(error)}`);
  return error;
}

describe('llama settings', () => {
  it('takes a model path, with the catalog name optional', () => {
    const parsed = settingsSchema.parse({ id: 'local', provider: 'llama', modelPath: '/models/qwen.gguf' });
    expect(parsed.model).toBeUndefined();
    const model = create({ modelPath: '/models/Qwen2.5-VL-3B-Q4_K_M.gguf' });
    expect(model.upstreamModel).toBe('Qwen2.5-VL-3B-Q4_K_M');
    expect(create({ model: 'qwen2.5-vl-3b' }).upstreamModel).toBe('qwen2.5-vl-3b');
  });

  it('is strict: unknown fields and remote-only fields are rejected, modelPath is required', () => {
    const base = { id: 'local', provider: 'llama', modelPath: '/m.gguf' };
    expect(settingsSchema.safeParse({ ...base, contextSze: 4096 }).success).toBe(false);
    expect(settingsSchema.safeParse({ ...base, apiKey: 'k' }).success).toBe(false);
    expect(settingsSchema.safeParse({ ...base, baseUrl: 'http://127.0.0.1:1/v1' }).success).toBe(false);
    expect(settingsSchema.safeParse({ id: 'local', provider: 'llama' }).success).toBe(false);
    expect(settingsSchema.safeParse({ ...base, gpuLayers: 'all' }).success).toBe(false);
    expect(settingsSchema.parse({ ...base, gpuLayers: 'auto', parallel: 4, queueSize: 0, idleUnloadMs: 0, preload: true }).gpuLayers).toBe(
      'auto',
    );
  });

  it('accepts images only with a projector, and lets capabilities override', () => {
    expect(create().capabilities).toEqual({ image: false, video: false, audio: false, pdf: false, tools: true });
    expect(create({ mmprojPath: '/m/mmproj.gguf' }).capabilities).toMatchObject({ image: true, audio: false, video: false, pdf: false });
    expect(create({ mmprojPath: '/m/mmproj.gguf', capabilities: { audio: true } }).capabilities).toMatchObject({
      image: true,
      audio: true,
    });
    expect(llama.defaultCapabilities.image).toBe(false);
  });
});

describe('llama provider on a generated model', () => {
  it('loads lazily, once for concurrent first requests', async () => {
    const model = create({ parallel: 2 });
    expect(model.loadState).toBe('unloaded');
    const first = model.generate(request({ seed: 1 }), signal());
    const second = model.generate(request({ seed: 2 }), signal());
    await new Promise((resolve) => setImmediate(resolve));
    expect(model.loadState).toBe('loading');
    const results = await Promise.all([first, second]);
    expect(model.loadState).toBe('loaded');
    expect(model.loadCount).toBe(1);
    for (const result of results) expect(result.usage.outputTokens).toBe(24);
  });

  it('unloads after idleUnloadMs without requests and loads again on the next', async () => {
    const model = create({ idleUnloadMs: 150 });
    await model.generate(request(), signal());
    expect(model.loadState).toBe('loaded');
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(model.loadState).toBe('unloaded');
    await model.generate(request(), signal());
    expect(model.loadCount).toBe(2);
  });

  it('preloads when asked', async () => {
    const model = create({ preload: true });
    expect(model.loadState).toBe('loading');
    await model.load();
    expect(model.loadState).toBe('loaded');
    expect(model.loadCount).toBe(1);
  });

  it('streams one delta per token and ends with finish and usage', async () => {
    const model = create();
    const parts = await collect(await model.stream(request({ maxTokens: 30 }), signal()));
    const deltas = parts.filter((part) => part.type === 'text-delta');
    expect(deltas.length).toBeGreaterThan(10);
    expect(deltas.length).toBeLessThanOrEqual(30);
    const finish = parts.at(-1)!;
    expect(finish).toMatchObject({ type: 'finish', finishReason: 'length', usage: { outputTokens: 30 } });
    expect(finish.type === 'finish' && finish.usage.inputTokens).toBeGreaterThan(5);
    // The same request, generated: the streamed text is the whole answer.
    expect((await model.generate(request({ maxTokens: 30 }), signal())).text).toBe(textOf(parts));
  });

  it('stops at max_tokens with finish "length"', async () => {
    const result = await create().generate(request({ maxTokens: 5 }), signal());
    expect(result.finishReason).toBe('length');
    expect(result.usage.outputTokens).toBe(5);
  });

  it('gives the same text for the same seed, and another for another seed', async () => {
    const model = create();
    const options = { maxTokens: 40, temperature: 0.9 };
    const first = await model.generate(request({ ...options, seed: 11 }), signal());
    const again = await model.generate(request({ ...options, seed: 11 }), signal());
    const other = await model.generate(request({ ...options, seed: 12 }), signal());
    expect(first.text.length).toBeGreaterThan(10);
    expect(again.text).toBe(first.text);
    expect(other.text).not.toBe(first.text);
  });

  it('is greedy at temperature 0 without a seed', async () => {
    const model = create();
    const a = await model.generate(request({ seed: undefined, temperature: 0, maxTokens: 30 }), signal());
    const b = await model.generate(request({ seed: undefined, temperature: 0, maxTokens: 30 }), signal());
    expect(b.text).toBe(a.text);
  });

  it('ends the text before a stop string, generated and streamed', async () => {
    const model = create();
    const full = (await model.generate(request({ maxTokens: 60 }), signal())).text;
    // A stop that starts well inside the answer, of a few characters so it likely spans tokens.
    const at = full.indexOf(full.slice(20, 24));
    const stop = full.slice(at, at + 4);
    const generated = await model.generate(request({ maxTokens: 60, stop: [stop] }), signal());
    expect(generated.text).toBe(full.slice(0, at));
    expect(generated.finishReason).toBe('stop');
    const parts = await collect(await model.stream(request({ maxTokens: 60, stop: [stop] }), signal()));
    expect(textOf(parts)).toBe(full.slice(0, at));
    expect(parts.at(-1)).toMatchObject({ type: 'finish', finishReason: 'stop' });
  });

  it('cancelling a stream stops generation within a token and frees the slot', async () => {
    const model = create({ parallel: 1, queueSize: 4 });
    const expected = await model.generate(request({ maxTokens: 3 }), signal());
    const controller = new AbortController();
    const reader = (await model.stream(request({ maxTokens: 4000 }), controller.signal)).getReader();
    expect((await reader.read()).value).toMatchObject({ type: 'text-delta' });
    const abortedAt = performance.now();
    controller.abort();
    await expect(reader.read()).rejects.toThrow();
    // With one sequence, the next request could only start once llama.cpp stopped the cancelled one.
    const next = await model.generate(request({ maxTokens: 3 }), signal());
    expect(next.usage.outputTokens).toBe(3);
    expect(next.text).toBe(expected.text);
    expect(performance.now() - abortedAt).toBeLessThan(1000);
  });

  it('refuses requests beyond the running and waiting ones with a 429', async () => {
    const model = create({ parallel: 1, queueSize: 1 });
    const running = model.generate(request({ maxTokens: 200 }), signal());
    const waiting = model.generate(request({ maxTokens: 5 }), signal());
    const refused = await rejection(model.generate(request({ maxTokens: 5 }), signal()));
    expect(refused.type).toBe('rate_limit_error');
    expect(refused.status).toBe(429);
    expect(refused.retryAfterSeconds).toBeGreaterThanOrEqual(1);
    await expect(running).resolves.toMatchObject({ finishReason: 'length' });
    await expect(waiting).resolves.toMatchObject({ finishReason: 'length' });
    // Slots free up again.
    await expect(model.generate(request({ maxTokens: 2 }), signal())).resolves.toMatchObject({ finishReason: 'length' });
  });

  it('drops a waiting request from the queue when it is aborted', async () => {
    const model = create({ parallel: 1, queueSize: 1 });
    const running = model.generate(request({ maxTokens: 300 }), signal());
    const controller = new AbortController();
    const waiting = model.generate(request({ maxTokens: 5 }), controller.signal);
    controller.abort();
    await expect(waiting).rejects.toThrow();
    // Its place in the queue is free again.
    await expect(model.generate(request({ maxTokens: 2 }), signal())).resolves.toBeDefined();
    await running;
  });

  it('answers a missing model file with a 503 that says how to get it', async () => {
    const missing = join(dir, 'absent.gguf');
    const error = await rejection(create({ modelPath: missing, model: 'qwen2.5-vl-3b' }).generate(request(), signal()));
    expect(error.type).toBe('unavailable_error');
    expect(error.status).toBe(503);
    expect(error.message).toContain(missing);
    expect(error.message).toContain('ocular models pull qwen2.5-vl-3b');
  });

  it('answers corrupt files with a 503 and keeps the process alive', async () => {
    const valid = readFileSync(endlessPath);
    const cases = {
      'truncated.gguf': valid.subarray(0, valid.length - 4096),
      'header-only.gguf': valid.subarray(0, 2000),
      'garbage.gguf': Buffer.concat([Buffer.from('GGUF'), Buffer.alloc(4000, 0x5a)]),
      'not-a-model.gguf': Buffer.from('<html>404 not found</html>'),
    };
    for (const [name, bytes] of Object.entries(cases)) {
      const path = join(dir, name);
      writeFileSync(path, bytes);
      const error = await rejection(create({ modelPath: path }).generate(request(), signal()));
      expect(error.type, name).toBe('unavailable_error');
      expect(error.message, name).toContain(path);
    }
    // Still here, and a good model still answers.
    await expect(create().generate(request({ maxTokens: 2 }), signal())).resolves.toBeDefined();
  });

  it('answers a missing projector with a 503', async () => {
    const error = await rejection(create({ mmprojPath: join(dir, 'no-mmproj.gguf') }).generate(request(), signal()));
    expect(error.type).toBe('unavailable_error');
    expect(error.message).toContain('no-mmproj.gguf');
  });

  it('refuses media for a model without a projector with a 400 naming the model', async () => {
    const model = create();
    const image: PromptMessage = {
      role: 'user',
      content: [
        { type: 'text', text: 'What is this?' },
        { type: 'media', kind: 'image', mediaType: 'image/png', data: 'iVBORw0KGgo=' },
      ],
    };
    const error = await rejection(model.generate(request({ messages: [image] }), signal()));
    expect(error.type).toBe('validation_error');
    expect(error.status).toBe(400);
    expect(error.message).toContain('"tiny"');
    expect(error.param).toBe('messages.0.content.1');
    expect(model.loadState).toBe('unloaded');
  });

  it('refuses a conversation longer than the context with a 400', async () => {
    const model = create({ contextSize: 256 });
    const error = await rejection(model.generate(request({ messages: [user('a b c d e f g h '.repeat(100))] }), signal()));
    expect(error.type).toBe('validation_error');
    expect(error.param).toBe('messages');
  });

  it('continues a final assistant message: the prompt ends with it and only new text comes back', async () => {
    const model = create();
    const messages: PromptMessage[] = [user('Tell me a story.'), { role: 'assistant', content: 'Once upon a time' }];
    const continued = await model.generate(request({ messages, continuation: true, maxTokens: 10 }), signal());
    expect(continued.finishReason).toBe('length');
    expect(continued.text.startsWith('Once upon a time')).toBe(false);
  });

  it('calls a required tool through the JSON fallback: a tool call, no text, finish tool_call', async () => {
    const model = create();
    const tools = [
      {
        name: 'get_weather',
        description: 'Weather for a city',
        parameters: { type: 'object', properties: { city: { type: 'string', maxLength: 12 } }, required: ['city'] },
      },
      {
        name: 'get_time',
        parameters: { type: 'object', properties: { zone: { type: 'string', enum: ['UTC', 'CET'] } }, required: ['zone'] },
      },
    ];
    const result = await model.generate(request({ tools, toolChoice: { name: 'get_time' }, maxTokens: 200 }), signal());
    expect(result.finishReason).toBe('tool_call');
    expect(result.text).toBe('');
    expect(result.toolCalls).toHaveLength(1);
    expect(result.toolCalls[0]).toMatchObject({ name: 'get_time', id: expect.stringMatching(/^call_/) });
    expect(['UTC', 'CET']).toContain((result.toolCalls[0]!.arguments as { zone: string }).zone);

    const parts = await collect(await model.stream(request({ tools, toolChoice: 'required', maxTokens: 200 }), signal()));
    expect(parts.filter((part) => part.type === 'text-delta')).toEqual([]);
    expect(parts.at(-2)).toMatchObject({ type: 'tool-call', toolCall: { name: expect.stringMatching(/^get_(weather|time)$/) } });
    expect(parts.at(-1)).toMatchObject({ type: 'finish', finishReason: 'tool_call' });
  });

  it('answers a tool schema llama.cpp cannot compile with a 400 instead of crashing', async () => {
    const model = create();
    const tools = [{ name: 'broken', parameters: { type: 'object', properties: { a: { $ref: '#/definitions/missing' } } } }];
    const error = await rejection(model.generate(request({ tools, toolChoice: 'required' }), signal()));
    expect(error.type).toBe('validation_error');
    expect(error.param).toBe('tools');
    await expect(model.generate(request({ maxTokens: 2 }), signal())).resolves.toBeDefined();
  });

  it('holds the answer to a responseFormat JSON Schema through a grammar; a schema it cannot compile leaves it free', async () => {
    const schema = {
      type: 'object',
      properties: { mood: { type: 'string', enum: ['calm', 'tense'] } },
      required: ['mood'],
      additionalProperties: false,
    };
    const responseFormat = { type: 'json_schema' as const, name: 'tags', schema };
    for (const model of [create(), create({ modelPath: templatePath })]) {
      const result = await model.generate(request({ responseFormat, maxTokens: 60 }), signal());
      expect(['calm', 'tense']).toContain((JSON.parse(result.text) as { mood: string }).mood);
    }
    const broken = { type: 'json_schema' as const, name: 'broken', schema: { type: 'object', properties: { a: { $ref: '#/nope' } } } };
    await expect(create().generate(request({ responseFormat: broken, maxTokens: 4 }), signal())).resolves.toBeDefined();
  });

  it('holds a json_object answer to a JSON grammar: it opens an object', async () => {
    const model = create();
    const result = await model.generate(request({ responseFormat: { type: 'json_object' }, maxTokens: 12 }), signal());
    expect(result.text.trimStart()).toMatch(/^\{\s*("|\})/);
    const free = await model.generate(request({ maxTokens: 12 }), signal());
    expect(free.text.trimStart()).not.toMatch(/^\{/);
  });

  it('refuses a tool_choice naming an unknown tool', async () => {
    const tools = [{ name: 'a', parameters: { type: 'object' } }];
    const error = await rejection(create().generate(request({ tools, toolChoice: { name: 'b' } }), signal()));
    expect(error).toMatchObject({ type: 'validation_error', param: 'tool_choice' });
  });

  it('close() ends running streams and refuses new requests', async () => {
    const model = create();
    const reader = (await model.stream(request({ maxTokens: 4000 }), signal())).getReader();
    await reader.read();
    await model.close();
    let last: StreamPart | undefined;
    for (let next = await reader.read(); !next.done; next = await reader.read()) last = next.value;
    expect(last).toMatchObject({ type: 'error', error: { type: 'unavailable_error' } });
    expect(model.loadState).toBe('closed');
    expect((await rejection(model.generate(request(), signal()))).type).toBe('unavailable_error');
  });
});

describe('llama provider with a GGUF chat template', () => {
  const createTemplated = (overrides: Record<string, unknown> = {}) => create({ modelPath: templatePath, ...overrides });

  it('formats with the template: its own errors come back as a 400', async () => {
    const model = createTemplated();
    const error = await rejection(model.generate(request({ messages: [user('raise')] }), signal()));
    expect(error.type).toBe('validation_error');
    expect(error.message).toContain('refuses');
    const result = await model.generate(request({ maxTokens: 12 }), signal());
    expect(result.finishReason).toBe('length');
    expect(result.usage.outputTokens).toBe(12);
  });

  it('streams parsed content that matches the generated text', async () => {
    const model = createTemplated();
    const parts = await collect(await model.stream(request({ maxTokens: 30 }), signal()));
    expect(parts.at(-1)).toMatchObject({ type: 'finish', finishReason: 'length' });
    expect((await model.generate(request({ maxTokens: 30 }), signal())).text).toBe(textOf(parts));
  });

  it('continues a final assistant message inside the assistant turn', async () => {
    const model = createTemplated();
    const messages: PromptMessage[] = [user('Hi'), { role: 'assistant', content: 'Hello' }];
    const result = await model.generate(request({ messages, continuation: true, maxTokens: 8 }), signal());
    expect(result.usage.outputTokens).toBe(8);
  });

  it('answers a tool schema the template path cannot compile with a 400', async () => {
    const tools = [{ name: 'broken', parameters: { type: 'object', properties: { a: { type: 'string', pattern: '([a-' } } } }];
    const error = await rejection(createTemplated().generate(request({ tools }), signal()));
    expect(error).toMatchObject({ type: 'validation_error', param: 'tools' });
  });
});

describe('llama provider with a vision projector', () => {
  const PNG = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==';
  const withMedia = (kind: 'image' | 'audio', mediaType: string, data: string): PromptMessage => ({
    role: 'user',
    content: [
      { type: 'media', kind, mediaType, data },
      { type: 'text', text: 'What is this?' },
    ],
  });

  it('encodes images through the projector: their tokens count as input', async () => {
    const model = create({ mmprojPath });
    expect(model.capabilities.image).toBe(true);
    const textOnly = await model.generate(request({ messages: [user('What is this?')] }), signal());
    const image = await model.generate(request({ messages: [withMedia('image', 'image/png', PNG)] }), signal());
    // 32x32 pixels in 8-pixel patches: 16 image tokens in place of the marker.
    expect(image.usage.inputTokens).toBeGreaterThanOrEqual(textOnly.usage.inputTokens + 10);
    const parts = await collect(await model.stream(request({ messages: [withMedia('image', 'image/png', PNG)] }), signal()));
    expect(parts.at(-1)).toMatchObject({ type: 'finish', finishReason: 'length', usage: { inputTokens: image.usage.inputTokens } });
  });

  it('refuses audio with a 400 when the projector has no audio encoder', async () => {
    const model = create({ mmprojPath, capabilities: { audio: true } });
    const error = await rejection(model.generate(request({ messages: [withMedia('audio', 'audio/wav', 'UklGRg==')] }), signal()));
    expect(error).toMatchObject({ type: 'validation_error', param: 'messages.0.content.0' });
    expect(model.loadState).toBe('loaded');
  });

  it('answers a projector file llama.cpp rejects with a 503', async () => {
    const error = await rejection(create({ mmprojPath: endlessPath }).generate(request(), signal()));
    expect(error.type).toBe('unavailable_error');
    expect(error.message).toContain(endlessPath);
  });
});

describe('llama request conversion', () => {
  it('writes the plain prompt format for models without a chat template', () => {
    const { messages, prefix } = convertMessages(
      [
        { role: 'system', content: 'Be brief.' },
        user('Weather?'),
        { role: 'assistant', content: '', toolCalls: [{ id: 'c1', name: 'get_weather', arguments: { city: 'Paris' } }] },
        { role: 'tool', toolCallId: 'c1', content: 'sunny' },
        { role: 'assistant', content: 'It is' },
      ],
      { continuation: true },
    );
    expect(formatPlainPrompt(messages, prefix)).toBe(
      'System: Be brief.\nUser: Weather?\nAssistant: {"name":"get_weather","arguments":{"city":"Paris"}}\nTool result (c1): sunny\nAssistant: It is',
    );
    expect(formatPlainPrompt(convertMessages([user('Hi')], { continuation: false }).messages, undefined)).toBe('User: Hi\nAssistant:');
  });

  it('puts one marker per media item and passes the media as data URLs', () => {
    const converted = convertMessages(
      [
        {
          role: 'user',
          content: [
            { type: 'media', kind: 'image', mediaType: 'image/png', data: 'AAA=' },
            { type: 'text', text: 'and' },
            { type: 'media', kind: 'audio', mediaType: 'audio/wav', data: 'BBB=' },
          ],
        },
      ],
      { continuation: false, systemAddendum: 'tools here' },
    );
    expect(converted.messages).toEqual([
      { role: 'system', content: 'tools here' },
      { role: 'user', content: '<__media__>\nand\n<__media__>' },
    ]);
    expect(converted.mediaPaths).toEqual(['data:image/png;base64,AAA=', 'data:audio/wav;base64,BBB=']);
  });

  it('maps seeds to llama.cpp 32-bit seeds', () => {
    expect(toLlamaSeed(42)).toBe(42);
    expect(toLlamaSeed(2 ** 32 + 5)).toBe(5);
    expect(toLlamaSeed(2 ** 31)).toBe(-(2 ** 31));
  });

  it('names the reason a load failed from llama.cpp log lines', () => {
    const log = [
      "llama_model_load: error loading model: tensor 'blk.1.ffn_down.weight' data is not within the file bounds, model is corrupted or incomplete",
      'llama_model_load_from_file_impl: failed to load model',
    ].join('\n');
    expect(describeLoadFailure(log, { code: null, signal: 'SIGSEGV' })).toBe(
      "tensor 'blk.1.ffn_down.weight' data is not within the file bounds, model is corrupted or incomplete",
    );
    expect(describeLoadFailure('nothing useful', { code: null, signal: 'SIGSEGV' })).toBe('the loader crashed (SIGSEGV)');
  });
});

describe('llama token stream conversion', () => {
  const plan = (overrides: Partial<OutputPlan> = {}): OutputPlan => ({
    source: 'text',
    stops: [],
    trimStart: false,
    tools: 'none',
    toolNames: [],
    promptTokens: 3,
    ...overrides,
  });
  const result = (text: string, extra: Record<string, unknown> = {}) => ({
    text,
    tokens_predicted: 4,
    stopped_limit: true,
    timings: { prompt_n: 3, cache_n: 0 },
    ...extra,
  });

  it('holds back what may start a stop string split across tokens', () => {
    const converter = new TokenStreamConverter(plan({ stops: ['STOP'] }), () => 'id');
    const sent = ['one S', 'TO', 'x two ST', 'OP three'].flatMap((token) => converter.push({ token }));
    expect(sent.map((part) => (part.type === 'text-delta' ? part.text : '')).join('')).toBe('one STOx two ');
    expect(converter.stopped).toBe(true);
    const end = converter.finish(result('one STOx two STOP three'));
    expect(end).toEqual([{ type: 'finish', finishReason: 'stop', usage: { inputTokens: 3, outputTokens: 4 } }]);
  });

  it('sends text that cannot start a stop string at once', () => {
    const converter = new TokenStreamConverter(plan({ stops: ['\nUser:', '\nSystem:'] }), () => 'id');
    expect(converter.push({ token: 'Hello there' })).toEqual([{ type: 'text-delta', text: 'Hello there' }]);
    expect(converter.push({ token: '.\nUs' })).toEqual([{ type: 'text-delta', text: '.' }]);
    expect(converter.push({ token: 'ually' })).toEqual([{ type: 'text-delta', text: '\nUsually' }]);
    expect(partialStopLength('a\nSys', ['\nUser:', '\nSystem:'])).toBe(4);
    expect(partialStopLength('a\nSyx', ['\nUser:', '\nSystem:'])).toBe(0);
  });

  it('only ever extends what it sent when a chat parser re-reads its output', () => {
    const converter = new TokenStreamConverter(plan({ source: 'content', trimStart: true }), () => 'id');
    const deltas = [
      { token: ' Hi', content: ' Hi' },
      { token: ' <', content: 'Hi' },
      { token: 'b', content: 'Hi <b' },
    ].flatMap((token) => converter.push(token));
    expect(deltas).toEqual([
      { type: 'text-delta', text: 'Hi' },
      { type: 'text-delta', text: ' <b' },
    ]);
    expect(converter.finish(result(' Hi <b>', { content: 'Hi <b>' }))[0]).toEqual({ type: 'text-delta', text: '>' });
  });

  it('holds an answer that may be a fallback tool call and turns it into one', () => {
    const converter = new TokenStreamConverter(plan({ tools: 'json', toolNames: ['f'] }), () => 'call_1');
    expect(['{"name": "f", ', '"arguments": {"x": 1}}'].flatMap((token) => converter.push({ token }))).toEqual([]);
    expect(converter.finish(result('{"name": "f", "arguments": {"x": 1}}'))).toEqual([
      { type: 'tool-call', toolCall: { id: 'call_1', name: 'f', arguments: { x: 1 } } },
      { type: 'finish', finishReason: 'tool_call', usage: { inputTokens: 3, outputTokens: 4 } },
    ]);
    const plain = new TokenStreamConverter(plan({ tools: 'json', toolNames: ['f'] }), () => 'call_1');
    expect(plain.push({ token: 'Sure' })).toEqual([{ type: 'text-delta', text: 'Sure' }]);
  });
});
