import { writeFile } from 'node:fs/promises';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { extractPdf, type ExtractPdfOptions } from '../../src/media/pdf.ts';
import { Scratch } from '../../src/media/scratch.ts';
import { OcularError, isAbortError } from '../../src/spec/errors.ts';
import { buildPdf, linesPage, type TestPage } from '../helpers/pdf-writer.ts';

const label = 'messages.1.content.0';
const options: ExtractPdfOptions = { maxPages: 50, renderPages: 0, maxSide: 800, label };

const PAGES: TestPage[] = [
  linesPage('Page one: the quick brown fox', 'jumps over the lazy dog'),
  linesPage('Page two: Ocular reads PDFs', 'second line of page two', 'third line of page two'),
  {
    // Two separately positioned pieces on one baseline, then two paragraphs of 12pt text.
    stream: [
      'BT /F1 24 Tf 72 700 Td (Page three:) Tj ET',
      'BT /F1 24 Tf 300 700 Td (last) Tj ET',
      'BT /F1 12 Tf 72 600 Td (Paragraph one) Tj 0 -14 Td (goes on here.) Tj 0 -40 Td (Paragraph two.) Tj ET',
    ].join('\n'),
    text: 'Page three: last\n\nParagraph one\ngoes on here.\n\nParagraph two.',
  },
];
const EXPECTED_TEXT = PAGES.map((page) => page.text);

let scratch: Scratch;
beforeAll(async () => {
  scratch = await Scratch.create();
});
afterAll(async () => {
  await scratch.dispose();
});

async function writePdf(bytes: Buffer | string): Promise<string> {
  const path = scratch.path('.pdf');
  await writeFile(path, bytes);
  return path;
}

async function refusal(promise: Promise<unknown>): Promise<OcularError> {
  const error = await promise.then(
    () => undefined,
    (thrown: unknown) => thrown,
  );
  expect(error).toBeInstanceOf(OcularError);
  expect((error as OcularError).param).toBe(label);
  return error as OcularError;
}

describe('extractPdf', () => {
  it('extracts the text of every page, one line per line', async () => {
    const result = await extractPdf(await writePdf(buildPdf(PAGES)), options);
    expect(result.pageCount).toBe(3);
    expect(result.pages).toEqual(EXPECTED_TEXT.map((text, index) => ({ number: index + 1, text })));
    expect(result.images).toEqual([]);
  });

  it('extracts no more than maxPages pages of text, but counts them all', async () => {
    const result = await extractPdf(await writePdf(buildPdf(PAGES)), { ...options, maxPages: 2 });
    expect(result.pageCount).toBe(3);
    expect(result.pages.map((page) => page.number)).toEqual([1, 2]);
  });

  it('renders the first page to a PNG whose longest side is maxSide, with the text drawn', async () => {
    const result = await extractPdf(await writePdf(buildPdf(PAGES)), { ...options, renderPages: 1 });
    expect(result.images.map((image) => image.page)).toEqual([1]);
    const png = result.images[0]!.png;
    const metadata = await sharp(png).metadata();
    expect(metadata.format).toBe('png');
    // US Letter, 612 x 792 points, scaled by 800 / 792.
    expect(metadata.height).toBe(800);
    expect(metadata.width).toBe(618);

    const { data, info } = await sharp(png).greyscale().raw().toBuffer({ resolveWithObject: true });
    const dark = (top: number, bottom: number): number => {
      let count = 0;
      for (let y = top; y < bottom; y += 1) {
        for (let x = 0; x < info.width; x += 1) if (data[y * info.width + x]! < 128) count += 1;
      }
      return count;
    };
    // White page (not transparent, not black) ...
    expect(data[0]).toBe(255);
    expect(dark(400, 800)).toBe(0);
    // ... with the first line's glyphs drawn near the top (baseline 700pt from the bottom = ~93px from the top).
    expect(dark(60, 100)).toBeGreaterThan(500);
  });

  it('draws the standard fonts from pdf.js font data, not a system fallback: a Helvetica I has no serifs', async () => {
    // Without `standardFontDataUrl` pdf.js falls back to whatever the canvas finds (a serif face here, or nothing).
    const page: TestPage = { stream: 'BT /F1 300 Tf 200 300 Td (I) Tj ET', text: 'I' };
    const result = await extractPdf(await writePdf(buildPdf([page])), { ...options, renderPages: 1, maxSide: 792 });
    const { data, info } = await sharp(result.images[0]!.png).greyscale().raw().toBuffer({ resolveWithObject: true });
    const inkWidths: number[] = [];
    for (let y = 0; y < info.height; y += 1) {
      let left = -1;
      let right = -1;
      for (let x = 0; x < info.width; x += 1) {
        if (data[y * info.width + x]! < 128) {
          if (left < 0) left = x;
          right = x;
        }
      }
      if (left >= 0) inkWidths.push(right - left + 1);
    }
    // A stroke about 0.09 em wide and 0.72 em tall: 27 x 215 pixels at this size.
    expect(inkWidths.length).toBeGreaterThan(200);
    const stem = inkWidths[Math.floor(inkWidths.length / 2)]!;
    expect(stem).toBeGreaterThan(15);
    expect(Math.max(...inkWidths)).toBeLessThan(stem * 1.3);
  });

  it('renders as many pages as asked, even beyond the text cap, and never more than there are', async () => {
    const result = await extractPdf(await writePdf(buildPdf(PAGES)), { ...options, maxPages: 1, renderPages: 5, maxSide: 200 });
    expect(result.pages.map((page) => page.number)).toEqual([1]);
    expect(result.images.map((image) => image.page)).toEqual([1, 2, 3]);
    for (const image of result.images) {
      const metadata = await sharp(image.png).metadata();
      expect(Math.max(metadata.width, metadata.height)).toBe(200);
    }
  });

  it('reads a PDF encrypted with an owner password only (the user password is empty)', async () => {
    const result = await extractPdf(await writePdf(buildPdf(PAGES, { userPassword: '', ownerPassword: 'owner' })), options);
    expect(result.pages.map((page) => page.text)).toEqual(EXPECTED_TEXT);
  });

  it('refuses a password-protected PDF with a validation error', async () => {
    const path = await writePdf(buildPdf(PAGES, { userPassword: 'secret', ownerPassword: 'owner' }));
    const error = await refusal(extractPdf(path, { ...options, renderPages: 1 }));
    expect(error.type).toBe('validation_error');
    expect(error.status).toBe(400);
    expect(error.message).toContain('encrypted');
  });

  it('refuses garbage behind a %PDF header with a 400 saying the PDF is corrupt', async () => {
    const path = await writePdf(`%PDF-1.7\n${'garbage, not a PDF body \u0000\u00ff '.repeat(200)}\n%%EOF\n`);
    const error = await refusal(extractPdf(path, options));
    expect(error.type).toBe('validation_error');
    expect(error.status).toBe(400);
    expect(error.message).toContain('corrupt');
  });

  it('stops when the signal is aborted mid-way', async () => {
    const many = Array.from({ length: 40 }, (_, index) => linesPage(`Page ${index + 1}`));
    const path = await writePdf(buildPdf(many));
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 20);
    const started = performance.now();
    const error = await extractPdf(path, { ...options, renderPages: 40, maxSide: 2000 }, controller.signal).then(
      () => undefined,
      (thrown: unknown) => thrown,
    );
    expect(isAbortError(error)).toBe(true);
    expect(performance.now() - started).toBeLessThan(1000);
  });

  it('does not start when the signal is already aborted', async () => {
    const path = await writePdf(buildPdf(PAGES));
    const controller = new AbortController();
    controller.abort();
    const error = await extractPdf(path, { ...options, renderPages: 3 }, controller.signal).then(
      () => undefined,
      (thrown: unknown) => thrown,
    );
    expect(isAbortError(error)).toBe(true);
  });
});
