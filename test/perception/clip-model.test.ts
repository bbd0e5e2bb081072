import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClipModel, inspectClipFolder, parsePreprocessing, type ImageEmbeddingModel } from '../../src/perception/clip/clip-model.ts';
import { writeClipFixture } from '../helpers/clip-model-writer.ts';

const dir = mkdtempSync(join(tmpdir(), 'ocular-clip-model-'));
let model: ImageEmbeddingModel;

const dot = (a: Float32Array, b: Float32Array): number => a.reduce((sum, value, index) => sum + value * b[index]!, 0);
const norm = (a: Float32Array): number => Math.sqrt(dot(a, a));

/** Left half one colour, right half another. */
function halves(left: string, right: string, width = 80, height = 60): Promise<Buffer> {
  return sharp({ create: { width, height, channels: 3, background: left } })
    .composite([{ input: { create: { width: width / 2, height, channels: 3, background: right } }, left: width / 2, top: 0 }])
    .png()
    .toBuffer();
}

beforeAll(() => {
  model = createClipModel(inspectClipFolder(writeClipFixture(join(dir, 'model'))));
});

afterAll(async () => {
  await model.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('the CLIP image/text model', () => {
  it('embeds pictures as unit vectors: the same picture re-encoded lands on it, another does not', async () => {
    const picture = await halves('#d02020', '#2040e0');
    const reencoded = await sharp(picture).resize(160, 120).jpeg({ quality: 70 }).toBuffer();
    const other = await halves('#20c040', '#f0f0f0');
    const [a, b, c] = await model.embedImages([picture, reencoded, other]);
    expect(a).toHaveLength(24);
    for (const vector of [a!, b!, c!]) expect(norm(vector)).toBeCloseTo(1, 5);
    expect(dot(a!, b!)).toBeGreaterThan(0.98);
    expect(dot(a!, c!)).toBeLessThan(0.9);
  });

  it('crops the centre: what lies outside the crop does not matter', async () => {
    // Wide pictures whose centres are alike and whose far edges differ.
    const base = await sharp({ create: { width: 300, height: 60, channels: 3, background: '#808080' } })
      .png()
      .toBuffer();
    const edged = await sharp(base)
      .composite([{ input: { create: { width: 40, height: 60, channels: 3, background: '#ff0000' } }, left: 0, top: 0 }])
      .png()
      .toBuffer();
    const [a, b] = await model.embedImages([base, edged]);
    expect(dot(a!, b!)).toBeGreaterThan(0.999);
  });

  it('embeds texts in the same space, tokenised and cut to the model length', async () => {
    const [short, long, again] = await model.embedTexts(['a red square', `a red square ${'of '.repeat(200)}`, 'A RED SQUARE']);
    expect(short).toHaveLength(24);
    expect(norm(short!)).toBeCloseTo(1, 5);
    expect(norm(long!)).toBeCloseTo(1, 5);
    // The tokenizer lowercases: the same words, the same vector.
    expect(dot(short!, again!)).toBeCloseTo(1, 5);
  });

  it('refuses bytes that are not a picture', async () => {
    await expect(model.embedImages([Buffer.from('not an image at all')])).rejects.toMatchObject({ type: 'unsupported_media_type' });
  });

  it('reads the preprocessor settings of either config style', () => {
    expect(parsePreprocessing({ size: 224, crop_size: 224, image_mean: [0.5, 0.5, 0.5], image_std: [0.5, 0.5, 0.5] })).toEqual({
      shortestEdge: 224,
      cropWidth: 224,
      cropHeight: 224,
      rescale: 1 / 255,
      mean: [0.5, 0.5, 0.5],
      std: [0.5, 0.5, 0.5],
    });
    expect(parsePreprocessing({ size: { shortest_edge: 256 }, crop_size: { height: 192, width: 160 }, do_normalize: false })).toMatchObject(
      {
        shortestEdge: 256,
        cropWidth: 160,
        cropHeight: 192,
        mean: [0, 0, 0],
        std: [1, 1, 1],
      },
    );
    expect(() => parsePreprocessing({ image_std: [0, 1, 1] })).toThrow(/image_std/);
    expect(() => parsePreprocessing({ size: 'big' })).toThrow();
  });

  it('names the missing file of an incomplete folder, and fails a broken model when used', async () => {
    const broken = join(dir, 'broken');
    expect(() => inspectClipFolder(broken)).toThrow(/vision_model\.onnx is missing/);
    writeClipFixture(broken);
    writeFileSync(join(broken, 'onnx', 'text_model.onnx'), 'not a model');
    const bad = createClipModel(inspectClipFolder(broken));
    try {
      await expect(bad.embedTexts(['red'])).rejects.toMatchObject({ type: 'unavailable_error' });
    } finally {
      await bad.close();
    }
  });

  it('is refused once closed', async () => {
    const closing = createClipModel(inspectClipFolder(join(dir, 'model')));
    await closing.embedTexts(['red']);
    await closing.close();
    await expect(closing.embedTexts(['red'])).rejects.toMatchObject({ type: 'unavailable_error' });
  });
});
