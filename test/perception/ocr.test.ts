import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AnalyzerImage, TextReader } from '../../src/perception/analyzers.ts';
import { createPaddleTextReader } from '../../src/perception/ocr/paddle-text-reader.ts';
import { isAbortError, isOcularError } from '../../src/spec/errors.ts';

interface SvgText {
  text: string;
  x: number;
  /** The baseline. */
  y: number;
  size: number;
}

/** Black sans-serif text on white (or on nothing, `transparent`), rendered by sharp at test time. */
async function textImage(
  width: number,
  height: number,
  texts: SvgText[],
  format: 'jpeg' | 'png' = 'jpeg',
  background = 'white',
): Promise<AnalyzerImage> {
  const elements = texts
    .map(
      (t) => `<text x="${t.x}" y="${t.y}" font-family="sans-serif" font-weight="bold" font-size="${t.size}" fill="black">${t.text}</text>`,
    )
    .join('');
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}"><rect width="100%" height="100%" fill="${background}"/>${elements}</svg>`;
  const image = sharp(Buffer.from(svg));
  const data = format === 'jpeg' ? await image.jpeg({ quality: 90 }).toBuffer() : await image.png().toBuffer();
  return { data, width, height };
}

/** Box edges land within a few pixels of the glyphs: 0.02 is 26 px of 1280. */
function expectNear(actual: number, expected: number, tolerance = 0.02): void {
  expect(Math.abs(actual - expected), `${actual} is not near ${expected}`).toBeLessThanOrEqual(tolerance);
}

/** The model often leaves out the space between words; compare without whitespace. */
const squeeze = (text: string): string => text.replace(/\s+/g, '');

describe('paddle text reader', () => {
  let reader: TextReader;
  const loads: number[] = [];

  beforeAll(() => {
    reader = createPaddleTextReader({ onLoad: ({ milliseconds }) => loads.push(milliseconds) });
  });

  afterAll(async () => {
    await reader.close();
  });

  it('loads its models once for concurrent first reads, and reads large text on a 720p frame', async () => {
    const frame = await textImage(1280, 720, [{ text: 'OCULAR 2026', x: 100, y: 300, size: 120 }]);
    const results = await Promise.all([reader.read(frame), reader.read(frame)]);
    expect(loads).toHaveLength(1);
    for (const result of results) {
      expect(result.lines).toHaveLength(1);
      const [line] = result.lines;
      expect(squeeze(line!.text)).toBe('OCULAR2026');
      expect(result.text).toBe(line!.text);
      expect(line!.confidence).toBeGreaterThanOrEqual(0.5);
      expect(line!.confidence).toBeLessThanOrEqual(1);
      // The glyphs span x 100..~1010 (the right end depends on the font fontconfig picks) and y ~213..300 of 1280x720.
      expectNear(line!.box.x, 100 / 1280);
      expectNear(line!.box.y, 213 / 720);
      expect(line!.box.x + line!.box.width).toBeGreaterThan(850 / 1280);
      expect(line!.box.x + line!.box.width).toBeLessThan(1200 / 1280);
      expectNear(line!.box.y + line!.box.height, 300 / 720);
    }
  });

  it('gives lines top to bottom, with boxes relative to the image however much it was downscaled', async () => {
    // 2560x1440 is downscaled to 960x540 before detection; the boxes must still be fractions of the original.
    const frame = await textImage(2560, 1440, [
      { text: 'LOWER LINE 42', x: 1000, y: 1200, size: 140 },
      { text: 'UPPER TITLE', x: 200, y: 400, size: 200 },
    ]);
    const result = await reader.read(frame);
    expect(result.lines.map((line) => squeeze(line.text))).toEqual(['UPPERTITLE', 'LOWERLINE42']);
    expect(result.text.split('\n').map(squeeze)).toEqual(['UPPERTITLE', 'LOWERLINE42']);
    const [upper, lower] = result.lines;
    expectNear(upper!.box.x, 200 / 2560);
    expectNear(upper!.box.y + upper!.box.height, 400 / 1440);
    expectNear(lower!.box.x, 1000 / 2560);
    expectNear(lower!.box.y + lower!.box.height, 1200 / 1440);
  });

  it('reads black text on a transparent PNG (flattened onto white)', async () => {
    const image = await textImage(800, 300, [{ text: 'HELLO', x: 60, y: 200, size: 140 }], 'png', 'none');
    const result = await reader.read(image);
    expect(squeeze(result.text)).toBe('HELLO');
  });

  it('finds no lines in a blank frame', async () => {
    const blank = await textImage(1280, 720, []);
    expect(await reader.read(blank)).toEqual({ text: '', lines: [] });
  });

  it('rejects bytes that are not an image with unsupported_media_type', async () => {
    const corrupt: AnalyzerImage = { data: Buffer.from('this is not a jpeg, only some text'), width: 1280, height: 720 };
    const error: unknown = await reader.read(corrupt).catch((caught: unknown) => caught);
    expect(isOcularError(error) && error.type).toBe('unsupported_media_type');
  });

  it('honours an aborted signal before doing any work, and keeps reading afterwards', async () => {
    const frame = await textImage(640, 360, [{ text: 'ABORT', x: 40, y: 200, size: 120 }]);
    const error: unknown = await reader.read(frame, AbortSignal.abort()).catch((caught: unknown) => caught);
    expect(isAbortError(error)).toBe(true);
    expect(squeeze((await reader.read(frame)).text)).toBe('ABORT');
  });

  it('lets a waiting read leave the line when its signal aborts', async () => {
    const frame = await textImage(1280, 720, [{ text: 'WAIT', x: 100, y: 300, size: 120 }]);
    const controller = new AbortController();
    const running = reader.read(frame);
    const waiting = reader.read(frame, controller.signal);
    controller.abort();
    const error: unknown = await waiting.catch((caught: unknown) => caught);
    expect(isAbortError(error)).toBe(true);
    expect(squeeze((await running).text)).toBe('WAIT');
  });

  it('refuses options out of range', () => {
    expect(() => createPaddleTextReader({ minConfidence: 1.5 })).toThrow(RangeError);
    expect(() => createPaddleTextReader({ maxSide: 0 })).toThrow(RangeError);
    expect(() => createPaddleTextReader({ threads: 0 })).toThrow(RangeError);
  });

  it('turns reads away with unavailable_error once closed', async () => {
    const closing = createPaddleTextReader();
    const frame = await textImage(640, 360, [{ text: 'CLOSED', x: 40, y: 200, size: 100 }]);
    await closing.close();
    await closing.close();
    const error: unknown = await closing.read(frame).catch((caught: unknown) => caught);
    expect(isOcularError(error) && error.type).toBe('unavailable_error');
  });
});
