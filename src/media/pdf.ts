import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join, sep } from 'node:path';
import { getDocument, VerbosityLevel, type PDFDocumentProxy, type PDFPageProxy } from 'pdfjs-dist/legacy/build/pdf.mjs';
import { OcularError, isAbortError } from '../spec/errors.ts';

export interface ExtractPdfOptions {
  /** Pages whose text is extracted, counted from the first (for example 50). */
  maxPages: number;
  /** Leading pages rendered to PNG for models that see images; 0 renders none. */
  renderPages: number;
  /** The longest side of a rendered page, in pixels. */
  maxSide: number;
  /** The request field the PDF came from, as a dotted path (`messages.0.content.1`), for errors. */
  label: string;
}

export interface PdfPageText {
  /** 1-based page number. */
  number: number;
  /** The page's text: one line per line of the page, a blank line between paragraphs, trimmed. */
  text: string;
}

export interface PdfPageImage {
  /** 1-based page number. */
  page: number;
  png: Buffer;
}

export interface PdfContent {
  /** Pages in the document, including those beyond `maxPages`. */
  pageCount: number;
  pages: PdfPageText[];
  images: PdfPageImage[];
}

/**
 * pdf.js reads its auxiliary data (standard fonts, CMaps for CJK text, ICC profiles, the JPEG 2000/JBIG2
 * decoders) from these folders with `fs` in Node. Giving them as local paths keeps it from ever fetching
 * anything. Without `standardFontDataUrl` the 14 standard fonts (Helvetica, Times, ...) come out in whatever
 * font the canvas finds, or not at all.
 * The folders must end with a separator; pdf.js concatenates file names onto them.
 */
const PDFJS_ROOT = dirname(createRequire(import.meta.url).resolve('pdfjs-dist/package.json'));
const pdfjsFolder = (name: string): string => join(PDFJS_ROOT, name) + sep;
const PDFJS_DATA = {
  standardFontDataUrl: pdfjsFolder('standard_fonts'),
  cMapUrl: pdfjsFolder('cmaps'),
  cMapPacked: true,
  iccUrl: pdfjsFolder('iccs'),
  wasmUrl: pdfjsFolder('wasm'),
};

/** Upscaling beyond this (288 dpi) adds pixels, not legibility, for a small page. */
const MAX_RENDER_SCALE = 4;
/** Images embedded in a page larger than this many pixels are skipped when rendering (pdf.js `maxImageSize`). */
const MAX_EMBEDDED_IMAGE_PIXELS = 100_000_000;

/**
 * Extracts the text of a PDF's first `maxPages` pages and renders its first `renderPages` pages to PNG.
 * Throws `validation_error` (400) for a password-protected PDF and for one pdf.js cannot parse (the media issue
 * asks for a 400 with a clear message for both). pdf.js runs on the calling thread (Node has no web workers), so a huge PDF keeps the event loop busy
 * between its awaits; the page caps bound that work, and `signal` stops it between steps.
 */
export async function extractPdf(path: string, options: ExtractPdfOptions, signal?: AbortSignal): Promise<PdfContent> {
  const { maxPages, renderPages, maxSide, label } = options;
  requireInteger('maxPages', maxPages, 0);
  requireInteger('renderPages', renderPages, 0);
  requireInteger('maxSide', maxSide, 1);
  signal?.throwIfAborted();

  const data = new Uint8Array(await readFile(path));
  signal?.throwIfAborted();
  const loadingTask = getDocument({
    data,
    ...PDFJS_DATA,
    // No @font-face or system fonts: glyphs are drawn as paths (pdf.js 6 no longer compiles PostScript functions
    // with `new Function`, so there is no eval to turn off).
    disableFontFace: true,
    useSystemFonts: false,
    enableXfa: false,
    maxImageSize: MAX_EMBEDDED_IMAGE_PIXELS,
    verbosity: VerbosityLevel.ERRORS,
  });
  const abort = (): void => void loadingTask.destroy();
  signal?.addEventListener('abort', abort, { once: true });
  try {
    const document = await loadingTask.promise;
    const pageCount = document.numPages;
    const pages: PdfPageText[] = [];
    const images: PdfPageImage[] = [];
    for (let number = 1; number <= Math.min(pageCount, Math.max(maxPages, renderPages)); number += 1) {
      signal?.throwIfAborted();
      const page = await document.getPage(number);
      try {
        if (number <= maxPages) pages.push({ number, text: await extractPageText(page) });
        if (number <= renderPages) {
          signal?.throwIfAborted();
          images.push({ page: number, png: await renderPage(document, page, maxSide) });
        }
      } finally {
        page.cleanup();
      }
    }
    return { pageCount, pages, images };
  } catch (error) {
    if (signal?.aborted) throw signal.reason;
    throw pdfError(error, label);
  } finally {
    signal?.removeEventListener('abort', abort);
    await loadingTask.destroy();
  }
}

/** A vertical gap between baselines above this many font heights starts a new paragraph (a blank line). */
const PARAGRAPH_GAP = 1.8;

/**
 * Joins pdf.js text items into lines. pdf.js itself marks line ends (`hasEOL`) and inserts space items where
 * glyphs are set apart; on top of that a jump in the baseline starts a line (should pdf.js not have marked
 * it) and a jump of more than PARAGRAPH_GAP font heights a paragraph. Reading order is pdf.js's, which is
 * the content stream's: fine for running text, rough for multi-column layouts and tables.
 */
async function extractPageText(page: PDFPageProxy): Promise<string> {
  const content = await page.getTextContent();
  let text = '';
  let previous: { y: number; height: number } | undefined;
  for (const item of content.items) {
    if (!('str' in item)) continue;
    // Whitespace items (pdf.js's inserted spaces) have no height: they are text, not a position.
    if (item.str.trim() !== '') {
      const y = Number(item.transform[5]);
      if (previous !== undefined) {
        const size = Math.max(item.height, previous.height, 1);
        const rise = Math.abs(y - previous.y);
        if (text.endsWith('\n') || rise > size / 2) {
          if (!text.endsWith('\n')) text += '\n';
          if (rise > size * PARAGRAPH_GAP && !text.endsWith('\n\n')) text += '\n';
        }
      }
      previous = { y, height: item.height };
    }
    text += item.str;
    if (item.hasEOL) text += '\n';
  }
  return text
    .split('\n')
    .map((line) => line.trimEnd())
    .join('\n')
    .replace(/\n{3,}/g, '\n\n')
    .trim();
}

/** Renders a page on a white background so that its longest side is `maxSide` (or less for a small page). */
async function renderPage(document: PDFDocumentProxy, page: PDFPageProxy, maxSide: number): Promise<Buffer> {
  const natural = page.getViewport({ scale: 1 });
  const scale = Math.min(maxSide / Math.max(natural.width, natural.height), MAX_RENDER_SCALE);
  const viewport = page.getViewport({ scale });
  const width = Math.max(1, Math.min(maxSide, Math.floor(viewport.width)));
  const height = Math.max(1, Math.min(maxSide, Math.floor(viewport.height)));
  // pdf.js's NodeCanvasFactory creates @napi-rs/canvas canvases (the copy pdf.js itself resolves, whose
  // Path2D and DOMMatrix it installed as globals), so the canvas and the drawing code always match.
  const factory = document.canvasFactory as CanvasFactory;
  const target = factory.create(width, height);
  try {
    await page.render({ canvas: target.canvas, canvasContext: target.context, viewport, background: 'white' }).promise;
    return await target.canvas.encode('png');
  } finally {
    factory.destroy(target);
  }
}

/** pdf.js's canvas factory as used here (its types say `Object`); in Node its canvases are @napi-rs/canvas ones. */
interface CanvasFactory {
  create(width: number, height: number): CanvasAndContext;
  destroy(canvasAndContext: CanvasAndContext): void;
}

interface CanvasAndContext {
  canvas: HTMLCanvasElement & { encode(format: 'png'): Promise<Buffer> };
  context: CanvasRenderingContext2D;
}

function requireInteger(name: string, value: number, min: number): void {
  if (!Number.isInteger(value) || value < min) throw new RangeError(`${name} must be an integer >= ${min}, got ${value}`);
}

function pdfError(error: unknown, label: string): Error {
  if (isAbortError(error)) return error as Error;
  const name = error instanceof Error ? error.name : undefined;
  if (name === 'PasswordException') {
    return new OcularError('validation_error', `${label}: the PDF is encrypted with a password; remove the password and send it again`, {
      param: label,
      cause: error,
    });
  }
  // InvalidPDFException, FormatError, UnknownErrorException and the like: the bytes, not the server, are at fault.
  return new OcularError('validation_error', `${label}: the PDF could not be read; it is corrupt, truncated or not a PDF`, {
    param: label,
    cause: error,
  });
}
