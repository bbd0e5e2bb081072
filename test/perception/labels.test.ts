import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as ort from 'onnxruntime-node';
import sharp from 'sharp';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import type { AnalyzerImage, ImageLabel, ImageLabeler } from '../../src/perception/analyzers.ts';
import { createMobileNetLabeler, type MobileNetLabelerOptions } from '../../src/perception/labels/mobilenet-labeler.ts';
import { isAbortError } from '../../src/spec/errors.ts';
import { expectOcularError } from '../helpers/rejections.ts';

const MODEL_DIR = fileURLToPath(new URL('../../../shared/models/mobilenetv2-int8/', import.meta.url));
const MODEL_PATH = join(MODEL_DIR, 'mobilenetv2-12-int8.onnx');
const LABELS_PATH = join(MODEL_DIR, 'imagenet-simple-labels.json');
const hasModel = existsSync(MODEL_PATH) && existsSync(LABELS_PATH);

/**
 * A real photo-like positive case that ships with a dependency (read in place, never copied): a screenshot of
 * a web page from @vladmandic/human's README assets, which ImageNet's "website" class describes.
 */
const SCREENSHOT = fileURLToPath(new URL('../../node_modules/@vladmandic/human/assets/screenshot-facedetect.jpg', import.meta.url));

const labelers: ImageLabeler[] = [];
function labeler(options: Partial<MobileNetLabelerOptions> = {}): ImageLabeler {
  const created = createMobileNetLabeler({ modelPath: MODEL_PATH, labelsPath: LABELS_PATH, ...options });
  labelers.push(created);
  return created;
}

const scratchDirs: string[] = [];
function scratch(): string {
  const dir = mkdtempSync(join(tmpdir(), 'ocular-labels-'));
  scratchDirs.push(dir);
  return dir;
}

afterEach(async () => {
  vi.restoreAllMocks();
  await Promise.all(labelers.splice(0).map((created) => created.close()));
});
afterAll(() => {
  for (const dir of scratchDirs) rmSync(dir, { recursive: true, force: true });
});

/** A 320x240 picture with structure: a diagonal colour gradient with a dark disc in the middle. */
async function generatedImage(format: 'png' | 'jpeg' = 'png'): Promise<AnalyzerImage> {
  const [width, height] = [320, 240];
  const pixels = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y += 1) {
    for (let x = 0; x < width; x += 1) {
      const inDisc = (x - 160) ** 2 + (y - 120) ** 2 < 60 ** 2;
      const offset = (y * width + x) * 3;
      pixels[offset] = inDisc ? 30 : (x * 255) / width;
      pixels[offset + 1] = inDisc ? 30 : (y * 255) / height;
      pixels[offset + 2] = inDisc ? 30 : 128;
    }
  }
  const data = await sharp(pixels, { raw: { width, height, channels: 3 } })
    [format]()
    .toBuffer();
  return { data, width, height };
}

function expectWellFormed(labels: ImageLabel[], topK: number, minScore: number): void {
  expect(labels.length).toBeLessThanOrEqual(topK);
  for (const { label, score } of labels) {
    expect(label).toMatch(/\S/);
    expect(score).toBeGreaterThanOrEqual(minScore);
    expect(score).toBeLessThanOrEqual(1);
  }
  expect(labels.map((entry) => entry.score)).toEqual([...labels.map((entry) => entry.score)].sort((a, b) => b - a));
  expect(new Set(labels.map((entry) => entry.label)).size).toBe(labels.length);
  expect(labels.reduce((sum, entry) => sum + entry.score, 0)).toBeLessThanOrEqual(1 + 1e-6);
}

describe('createMobileNetLabeler', () => {
  it('rejects out-of-range options when built', () => {
    expect(() => createMobileNetLabeler({ modelPath: MODEL_PATH, labelsPath: LABELS_PATH, topK: 0 })).toThrow(RangeError);
    expect(() => createMobileNetLabeler({ modelPath: MODEL_PATH, labelsPath: LABELS_PATH, minScore: 2 })).toThrow(RangeError);
  });

  it('rejects with unavailable_error naming the path when the model or the labels file is missing', async () => {
    const image = await generatedImage();
    const dir = scratch();
    writeFileSync(join(dir, 'labels.json'), JSON.stringify(['a', 'b']));
    const missingModel = join(dir, 'missing.onnx');
    const error = await expectOcularError(labeler({ modelPath: missingModel, labelsPath: join(dir, 'labels.json') }).label(image));
    expect(error.type).toBe('unavailable_error');
    expect(error.message).toContain(missingModel);
    expect(error.message).toContain('ocular models pull mobilenetv2');

    const missingLabels = join(dir, 'missing.json');
    const labelsError = await expectOcularError(labeler({ modelPath: missingModel, labelsPath: missingLabels }).label(image));
    expect(labelsError.type).toBe('unavailable_error');
    expect(labelsError.message).toContain(missingLabels);
  });

  it('rejects a labels file that is not a list of names, and a model file that is not a model', async () => {
    const image = await generatedImage();
    const dir = scratch();
    writeFileSync(join(dir, 'object.json'), JSON.stringify({ 0: 'tench' }));
    writeFileSync(join(dir, 'labels.json'), JSON.stringify(['a', 'b']));
    writeFileSync(join(dir, 'model.onnx'), 'not a model');
    const labelsError = await expectOcularError(
      labeler({ modelPath: join(dir, 'model.onnx'), labelsPath: join(dir, 'object.json') }).label(image),
    );
    expect(labelsError.message).toContain(join(dir, 'object.json'));
    const modelError = await expectOcularError(
      labeler({ modelPath: join(dir, 'model.onnx'), labelsPath: join(dir, 'labels.json') }).label(image),
    );
    expect(modelError.type).toBe('unavailable_error');
    expect(modelError.message).toContain(join(dir, 'model.onnx'));
  });
});

describe.skipIf(!hasModel)('MobileNetV2 on the real model', () => {
  it('returns the top-k labels, best first, as probabilities', async () => {
    const image = await generatedImage();
    const labels = await labeler({ topK: 5, minScore: 0 }).label(image);
    expect(labels).toHaveLength(5);
    expectWellFormed(labels, 5, 0);
    const three = await labeler({ topK: 3, minScore: 0 }).label(image);
    expect(three).toEqual(labels.slice(0, 3));
    const confident = await labeler({ topK: 5, minScore: labels[1]!.score }).label(image);
    expect(confident).toEqual(labels.filter((entry) => entry.score >= labels[1]!.score));
  });

  it.skipIf(!existsSync(SCREENSHOT))('recognises a real image: a web page screenshot is a "website"', async () => {
    const data = readFileSync(SCREENSHOT);
    const labels = await labeler().label({ data, width: 800, height: 600 });
    expectWellFormed(labels, 5, 0.1);
    expect(labels[0]?.label).toBe('website');
    expect(labels[0]!.score).toBeGreaterThan(0.5);
  });

  it('takes JPEG, greyscale, transparent and oddly shaped images', async () => {
    const created = labeler({ minScore: 0, topK: 3 });
    const grey = await sharp({ create: { width: 64, height: 48, channels: 3, background: '#808080' } })
      .greyscale()
      .png()
      .toBuffer();
    const transparent = await sharp({ create: { width: 300, height: 200, channels: 4, background: { r: 0, g: 0, b: 255, alpha: 0.3 } } })
      .png()
      .toBuffer();
    const strip = await sharp({ create: { width: 2000, height: 12, channels: 3, background: '#00ff00' } })
      .jpeg()
      .toBuffer();
    for (const data of [(await generatedImage('jpeg')).data, grey, transparent, strip]) {
      expectWellFormed(await created.label({ data, width: 0, height: 0 }), 3, 0);
    }
  });

  it('rejects bytes that are not an image with unsupported_media_type, and goes on working', async () => {
    const created = labeler({ minScore: 0 });
    const image = await generatedImage('jpeg');
    const corrupt = Buffer.concat([image.data.subarray(0, 200), Buffer.alloc(500, 0x55)]);
    expect((await expectOcularError(created.label({ ...image, data: corrupt }))).type).toBe('unsupported_media_type');
    expect((await expectOcularError(created.label({ ...image, data: Buffer.from('not an image at all') }))).type).toBe(
      'unsupported_media_type',
    );
    expect(await created.label(image)).toHaveLength(5);
  });

  it('loads the model once for concurrent first calls', async () => {
    const create = vi.spyOn(ort.InferenceSession, 'create');
    const created = labeler({ minScore: 0 });
    const image = await generatedImage();
    const results = await Promise.all([created.label(image), created.label(image), created.label(image)]);
    expect(create).toHaveBeenCalledTimes(1);
    expect(results[1]).toEqual(results[0]);
    expect(results[2]).toEqual(results[0]);
  });

  it('honours an aborted signal and refuses work once closed', async () => {
    const created = labeler();
    const image = await generatedImage();
    await expect(created.label(image, AbortSignal.abort())).rejects.toSatisfy(isAbortError);
    await created.label(image);
    await created.close();
    expect((await expectOcularError(created.label(image))).type).toBe('unavailable_error');
  });

  it('labels an image in well under a second once loaded', async () => {
    const data = existsSync(SCREENSHOT) ? readFileSync(SCREENSHOT) : (await generatedImage('jpeg')).data;
    const created = labeler();
    let started = performance.now();
    await created.label({ data, width: 0, height: 0 });
    const first = performance.now() - started;
    started = performance.now();
    const runs = 10;
    for (let run = 0; run < runs; run += 1) await created.label({ data, width: 0, height: 0 });
    const each = (performance.now() - started) / runs;
    console.info(`mobilenetv2: first label (with load) ${first.toFixed(0)} ms, then ${each.toFixed(1)} ms per image`);
    expect(each).toBeLessThan(1_000);
  });
});
