import { createHash } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { extractPdf, type ExtractPdfOptions } from '../../src/media/pdf.ts';
import { Scratch } from '../../src/media/scratch.ts';
import { OcularError, isAbortError } from '../../src/spec/errors.ts';

const label = 'messages.1.content.0';
const options: ExtractPdfOptions = { maxPages: 50, renderPages: 0, maxSide: 800, label };

interface TestPage {
  /** The page's content stream; `/F1` is Helvetica, one of the 14 standard fonts (not embedded, so pdf.js needs its font data). */
  stream: string;
  /** The text extractPdf should give for it. */
  text: string;
}

/** A page with one line of 24pt text per entry, 30pt apart, from the top left. */
function linesPage(...lines: string[]): TestPage {
  const shows = lines.map((line, index) => `${index === 0 ? '' : '0 -30 Td '}(${line.replace(/[()\\]/g, '\\$&')}) Tj`);
  return { stream: `BT /F1 24 Tf 72 700 Td\n${shows.join('\n')}\nET`, text: lines.join('\n') };
}

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

  it('refuses garbage behind a %PDF header as unsupported media', async () => {
    const path = await writePdf(`%PDF-1.7\n${'garbage, not a PDF body \u0000\u00ff '.repeat(200)}\n%%EOF\n`);
    const error = await refusal(extractPdf(path, options));
    expect(error.type).toBe('unsupported_media_type');
    expect(error.status).toBe(415);
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

interface Encryption {
  userPassword: string;
  ownerPassword: string;
}

/**
 * Writes a PDF with one US Letter page per entry of `pages`, with a correct xref table. With `encryption`, the file uses the Standard security handler, revision 2 (40-bit RC4,
 * PDF 1.7 section 7.6.3): the content streams are really encrypted, so a reader needs the right key.
 */
function buildPdf(pages: TestPage[], encryption?: Encryption): Buffer {
  const fileId = createHash('md5').update(JSON.stringify(pages)).digest();
  const security = encryption === undefined ? undefined : standardSecurity(encryption, fileId);
  const objects: Buffer[] = [];
  const add = (body: Buffer | string): number => objects.push(Buffer.isBuffer(body) ? body : Buffer.from(body, 'latin1'));
  const stream = (number: number, dictionary: string, data: Buffer): Buffer => {
    const bytes = security === undefined ? data : rc4(objectKey(security.key, number), data);
    return Buffer.concat([
      Buffer.from(`<< ${dictionary} /Length ${bytes.length} >>\nstream\n`, 'latin1'),
      bytes,
      Buffer.from('\nendstream'),
    ]);
  };

  add('<< /Type /Catalog /Pages 2 0 R >>');
  add(''); // the page tree, filled in once the kids are numbered
  const font = add('<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>');
  const kids: number[] = [];
  for (const page of pages) {
    const contents = add('');
    objects[contents - 1] = stream(contents, '', Buffer.from(page.stream, 'latin1'));
    kids.push(
      add(`<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 ${font} 0 R >> >> /Contents ${contents} 0 R >>`),
    );
  }
  objects[1] = Buffer.from(`<< /Type /Pages /Kids [${kids.map((kid) => `${kid} 0 R`).join(' ')}] /Count ${kids.length} >>`, 'latin1');
  const encrypt =
    security === undefined
      ? undefined
      : add(
          `<< /Filter /Standard /V 1 /R 2 /O <${security.owner.toString('hex')}> /U <${security.user.toString('hex')}> /P ${security.permissions} >>`,
        );

  const chunks: Buffer[] = [Buffer.from('%PDF-1.4\n%\xe2\xe3\xcf\xd3\n', 'latin1')];
  let length = chunks[0]!.length;
  const offsets: number[] = [];
  objects.forEach((body, index) => {
    offsets.push(length);
    const chunk = Buffer.concat([Buffer.from(`${index + 1} 0 obj\n`), body, Buffer.from('\nendobj\n')]);
    chunks.push(chunk);
    length += chunk.length;
  });
  const xref = [
    'xref',
    `0 ${objects.length + 1}`,
    '0000000000 65535 f ',
    ...offsets.map((offset) => `${String(offset).padStart(10, '0')} 00000 n `),
  ];
  const trailer = [
    `/Size ${objects.length + 1}`,
    '/Root 1 0 R',
    `/ID [<${fileId.toString('hex')}> <${fileId.toString('hex')}>]`,
    ...(encrypt === undefined ? [] : [`/Encrypt ${encrypt} 0 R`]),
  ];
  chunks.push(Buffer.from(`${xref.join('\n')}\ntrailer\n<< ${trailer.join(' ')} >>\nstartxref\n${length}\n%%EOF\n`, 'latin1'));
  return Buffer.concat(chunks);
}

const PASSWORD_PAD = Buffer.from('28bf4e5e4e758a4164004e56fffa01082e2e00b6d0683e802f0ca9fe6453697a', 'hex');
const padPassword = (password: string): Buffer => Buffer.concat([Buffer.from(password, 'latin1'), PASSWORD_PAD]).subarray(0, 32);
const md5 = (...parts: Buffer[]): Buffer => createHash('md5').update(Buffer.concat(parts)).digest();

/** Algorithms 2, 3 and 4 of the Standard security handler, revision 2. */
function standardSecurity({ userPassword, ownerPassword }: Encryption, fileId: Buffer) {
  const permissions = -44; // print, copy and modify forbidden; the reserved bits set as the spec requires
  const owner = rc4(md5(padPassword(ownerPassword)).subarray(0, 5), padPassword(userPassword));
  const permissionBytes = Buffer.alloc(4);
  permissionBytes.writeInt32LE(permissions);
  const key = md5(padPassword(userPassword), owner, permissionBytes, fileId).subarray(0, 5);
  return { key, owner, user: rc4(key, PASSWORD_PAD), permissions };
}

/** Algorithm 1: the per-object key, for generation 0. */
function objectKey(key: Buffer, number: number): Buffer {
  return md5(key, Buffer.from([number & 0xff, (number >> 8) & 0xff, (number >> 16) & 0xff, 0, 0])).subarray(0, key.length + 5);
}

function rc4(key: Buffer, data: Buffer): Buffer {
  const state = Array.from({ length: 256 }, (_, index) => index);
  for (let i = 0, j = 0; i < 256; i += 1) {
    j = (j + state[i]! + key[i % key.length]!) & 0xff;
    [state[i], state[j]] = [state[j]!, state[i]!];
  }
  const out = Buffer.alloc(data.length);
  for (let n = 0, i = 0, j = 0; n < data.length; n += 1) {
    i = (i + 1) & 0xff;
    j = (j + state[i]!) & 0xff;
    [state[i], state[j]] = [state[j]!, state[i]!];
    out[n] = data[n]! ^ state[(state[i]! + state[j]!) & 0xff]!;
  }
  return out;
}
