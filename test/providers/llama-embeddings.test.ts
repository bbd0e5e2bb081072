import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createLlamaModel, settingsSchema, type LlamaLanguageModel } from '../../src/providers/llama/index.ts';
import { writeTinyLlamaGguf } from '../helpers/gguf-writer.ts';
import { expectOcularError } from '../helpers/rejections.ts';

/** A real (trained) tiny llama, when ../shared is beside the repository. */
const STORIES = new URL('../../../shared/models/stories260K/stories260K.gguf', import.meta.url).pathname;

let dir: string;
let tinyPath: string;
const models: LlamaLanguageModel[] = [];

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'ocular-llama-embed-'));
  tinyPath = writeTinyLlamaGguf(join(dir, 'tiny.gguf'), { asciiOnly: true });
});

afterEach(async () => {
  await Promise.all(models.splice(0).map((model) => model.close()));
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

function create(overrides: Record<string, unknown> = {}): LlamaLanguageModel {
  const model = createLlamaModel(
    settingsSchema.parse({ id: 'embed', provider: 'llama', modelPath: tinyPath, contextSize: 512, idleUnloadMs: 0, embedding: true, ...overrides }),
  );
  models.push(model);
  return model;
}

const never = new AbortController().signal;
const dot = (a: Float32Array, b: Float32Array): number => a.reduce((sum, value, index) => sum + value * b[index]!, 0);

describe('llama embedding models', () => {
  it('turn each input into a unit vector, the same text into the same vector', async () => {
    const model = create({ pooling: 'mean' });
    const [first, second, again] = await model.embed!(['a red car', 'a quiet lake', 'a red car'], never);
    expect(first!.length).toBeGreaterThan(0);
    expect(second!.length).toBe(first!.length);
    expect(dot(first!, first!)).toBeCloseTo(1, 4);
    expect(dot(second!, second!)).toBeCloseTo(1, 4);
    expect([...again!]).toEqual([...first!]);
    expect(dot(first!, second!)).toBeLessThan(0.99999);
  });

  it('refuse chat requests with 400, and a chat model has no embed', async () => {
    const model = create();
    await expectOcularError(model.generate({ messages: [{ role: 'user', content: [{ type: 'text', text: 'hi' }] }], maxTokens: 4 }, never), 'validation_error');
    await expectOcularError(model.stream({ messages: [{ role: 'user', content: [{ type: 'text', text: 'hi' }] }], maxTokens: 4 }, never), 'validation_error');
    expect(create({ embedding: false }).embed).toBeUndefined();
  });

  it('report a file that is not a model as unavailable', async () => {
    const model = create({ modelPath: join(dir, 'missing.gguf') });
    await expectOcularError(model.embed!(['text'], never), 'unavailable_error');
  });

  it.skipIf(!existsSync(STORIES))('put related sentences of a trained model closer than unrelated ones', async () => {
    const model = create({ modelPath: STORIES, pooling: 'mean' });
    const [cat, dog, noise] = await model.embed!(['Once upon a time there was a cat', 'Once upon a time there was a dog', 'zzz qqq'], never);
    expect(dot(cat!, dog!)).toBeGreaterThan(dot(cat!, noise!));
  });
});
