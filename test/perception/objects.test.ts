import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AnalyzerImage, DetectedObject, ObjectDetector } from '../../src/perception/analyzers.ts';
import { createHumanObjectDetector } from '../../src/perception/objects/human-object-detector.ts';
import { isAbortError, isOcularError } from '../../src/spec/errors.ts';

const require = createRequire(import.meta.url);
/** The tfjs-core the detector's Human build requires (one module instance per process under Node's require). */
const tf = require('@tensorflow/tfjs-core') as typeof import('@tensorflow/tfjs-core');

/**
 * The repository has no photos and the tests run offline, so the positive case uses a photo that ships inside
 * `@vladmandic/human` (`assets/samples.jpg`, a contact sheet of its demo inputs), read in place. Its third tile
 * (x 326..536, y 0..157 of 1280x1158) is a man in a suit seated behind a table, in the middle of the tile.
 */
const SAMPLES_JPG = join(dirname(require.resolve('@vladmandic/human')), '..', 'assets', 'samples.jpg');
const PERSON_TILE = { left: 326, top: 0, width: 210, height: 157 };

async function personPhoto(greyscale = false): Promise<AnalyzerImage> {
  const tile = sharp(await readFile(SAMPLES_JPG)).extract(PERSON_TILE);
  const data = await (greyscale ? tile.greyscale() : tile).jpeg({ quality: 95 }).toBuffer();
  return { data, width: PERSON_TILE.width, height: PERSON_TILE.height };
}

async function blankFrame(): Promise<AnalyzerImage> {
  const data = await sharp({ create: { width: 1280, height: 720, channels: 3, background: '#ffffff' } })
    .jpeg()
    .toBuffer();
  return { data, width: 1280, height: 720 };
}

function expectPersonInMiddle(objects: DetectedObject[]): void {
  const person = objects.find((object) => object.label === 'person');
  expect(person, JSON.stringify(objects)).toBeDefined();
  expect(person!.score).toBeGreaterThanOrEqual(0.4);
  expect(person!.score).toBeLessThanOrEqual(1);
  const { x, y, width, height } = person!.box;
  for (const value of [x, y, width, height, x + width, y + height]) {
    expect(value).toBeGreaterThanOrEqual(0);
    expect(value).toBeLessThanOrEqual(1);
  }
  // The man sits in the middle of the tile, from its top edge down past the table: about x 0.3..0.9, y 0.05..0.85.
  expect(x).toBeGreaterThan(0.15);
  expect(x).toBeLessThan(0.45);
  expect(y).toBeLessThan(0.2);
  expect(x + width / 2).toBeGreaterThan(0.4);
  expect(x + width / 2).toBeLessThan(0.75);
  expect(height).toBeGreaterThan(0.5);
}

const loadedTensors = (): number => tf.memory().numTensors;

describe('human object detector', () => {
  let detector: ObjectDetector;
  const loads: number[] = [];

  beforeAll(() => {
    detector = createHumanObjectDetector({ onLoad: ({ milliseconds }) => loads.push(milliseconds) });
  });

  afterAll(async () => {
    await detector.close();
  });

  it('loads the model once for concurrent first calls, and finds the person in a photo', async () => {
    const photo = await personPhoto();
    const results = await Promise.all([detector.detect(photo), detector.detect(photo)]);
    expect(loads).toHaveLength(1);
    for (const objects of results) expectPersonInMiddle(objects);
    expect(results[1]).toEqual(results[0]);
    for (const objects of results) {
      const scores = objects.map((object) => object.score);
      expect(scores).toEqual([...scores].sort((a, b) => b - a));
    }
  });

  it('reads greyscale images', async () => {
    expectPersonInMiddle(await detector.detect(await personPhoto(true)));
  });

  it('shares the loaded model with other detectors and applies their own limits', async () => {
    const photo = await personPhoto();
    const all = await detector.detect(photo);
    expect(all.length).toBeGreaterThan(1);
    const otherLoads: number[] = [];
    const top = createHumanObjectDetector({ maxObjects: 1, onLoad: ({ milliseconds }) => otherLoads.push(milliseconds) });
    const strict = createHumanObjectDetector({ minScore: 0.99 });
    try {
      expect(await top.detect(photo)).toEqual([all[0]]);
      expect(await strict.detect(photo)).toEqual([]);
      expect(otherLoads).toHaveLength(0);
      // The other detectors' limits did not stick to the shared engine.
      expect(await detector.detect(photo)).toEqual(all);
    } finally {
      await top.close();
      await strict.close();
    }
    // Closing them leaves the model loaded for the first.
    expectPersonInMiddle(await detector.detect(photo));
  });

  it('finds nothing in a blank 720p frame', async () => {
    expect(await detector.detect(await blankFrame())).toEqual([]);
  });

  it('rejects bytes that are not an image with unsupported_media_type', async () => {
    const corrupt: AnalyzerImage = { data: Buffer.from('not a jpeg at all, just text'), width: 640, height: 360 };
    const error: unknown = await detector.detect(corrupt).catch((caught: unknown) => caught);
    expect(isOcularError(error) && error.type).toBe('unsupported_media_type');
  });

  it('honours an aborted signal before doing any work, and keeps detecting afterwards', async () => {
    const photo = await personPhoto();
    const error: unknown = await detector.detect(photo, AbortSignal.abort()).catch((caught: unknown) => caught);
    expect(isAbortError(error)).toBe(true);
    const controller = new AbortController();
    const running = detector.detect(photo);
    const waiting = detector.detect(photo, controller.signal);
    controller.abort();
    expect(isAbortError(await waiting.catch((caught: unknown) => caught))).toBe(true);
    expectPersonInMiddle(await running);
  });

  it('refuses options out of range', () => {
    expect(() => createHumanObjectDetector({ minScore: -0.1 })).toThrow(RangeError);
    expect(() => createHumanObjectDetector({ maxObjects: 0 })).toThrow(RangeError);
  });

  it('rejects with unavailable_error once closed, frees the model, and a new detector loads it again', async () => {
    const photo = await personPhoto();
    expect(loadedTensors()).toBeGreaterThan(200); // CenterNet's weights
    await detector.close();
    await detector.close();
    const error: unknown = await detector.detect(photo).catch((caught: unknown) => caught);
    expect(isOcularError(error) && error.type).toBe('unavailable_error');
    expect(loadedTensors()).toBeLessThan(50); // a few of Human's own constants stay

    const again: number[] = [];
    const fresh = createHumanObjectDetector({ onLoad: ({ milliseconds }) => again.push(milliseconds) });
    try {
      expectPersonInMiddle(await fresh.detect(photo));
      expect(again).toHaveLength(1);
    } finally {
      await fresh.close();
    }
    expect(loadedTensors()).toBeLessThan(50);
  });
});
