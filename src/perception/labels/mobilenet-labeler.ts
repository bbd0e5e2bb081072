/**
 * Whole-image labels from MobileNetV2 (ImageNet-1k, the ONNX Model Zoo's int8 `mobilenetv2-12-int8.onnx`) on
 * onnxruntime-node, with the plain-English class names of `imagenet-simple-labels.json`. Preprocessing is the
 * model's own (torchvision's ImageNet evaluation): shorter side to 256, centre 224x224, RGB scaled to 0..1 and
 * normalised with the ImageNet mean and standard deviation, in NCHW order.
 */
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { InferenceSession } from 'onnxruntime-node';
import sharp, { type OutputInfo } from 'sharp';
import { z } from 'zod';
import { OcularError } from '../../spec/errors.ts';
import type { AnalyzerImage, ImageLabel, ImageLabeler } from '../analyzers.ts';
import { ModelLifecycle } from '../model-lifecycle.ts';
import {
  checkModelFile,
  openOnnxSession,
  unavailable as unavailableModel,
  type OnnxModelIdentity,
  type OnnxRuntime,
} from '../onnx-session.ts';

export interface MobileNetLabelerOptions {
  /** The MobileNetV2 ONNX file (`mobilenetv2-12-int8.onnx`, `ocular models pull mobilenetv2`). */
  modelPath: string;
  /** A JSON array of the 1000 ImageNet class names in class order (`imagenet-simple-labels.json`). */
  labelsPath: string;
  /** The most labels returned. @default 5 */
  topK?: number | undefined;
  /**
   * Labels with a lower softmax probability are left out. ImageNet spreads a photo's probability over close
   * classes (several dog breeds), so a useful label can score well under 0.5. @default 0.1
   */
  minScore?: number | undefined;
}

const RESIZE_SHORTER_SIDE = 256;
const CROP = 224;
const MEAN = [0.485, 0.456, 0.406] as const;
const STD = [0.229, 0.224, 0.225] as const;

const PULL_HINT = 'download it with `ocular models pull mobilenetv2`';

const labelsSchema = z.array(z.string().min(1)).min(2);

const MODEL: OnnxModelIdentity = { name: 'mobilenetv2', pullHint: PULL_HINT };
const unavailable = (message: string, cause?: unknown): OcularError => unavailableModel(MODEL, message, cause);

interface LoadedModel {
  ort: OnnxRuntime;
  session: InferenceSession;
  inputName: string;
  outputName: string;
  labels: readonly string[];
}

/** Checked before onnxruntime sees the path, so a missing file gets an answer that says how to get it. */
async function readLabels(path: string): Promise<string[]> {
  await checkModelFile(MODEL, path, 'labels');
  let parsed: unknown;
  try {
    parsed = JSON.parse(await readFile(path, 'utf8'));
  } catch (error) {
    throw unavailable(`the labels file ${path} is not JSON (${(error as Error).message}); ${PULL_HINT}`, error);
  }
  const labels = labelsSchema.safeParse(parsed);
  if (!labels.success) throw unavailable(`the labels file ${path} is not a JSON array of class names; ${PULL_HINT}`);
  return labels.data;
}

/** The runtime is imported on first use, so building the analyzer at boot costs nothing. */
async function openModel(modelPath: string, labelsPath: string): Promise<LoadedModel> {
  const labels = await readLabels(labelsPath);
  const { ort, session } = await openOnnxSession(MODEL, modelPath);
  const input = session.inputMetadata[0];
  const output = session.outputMetadata[0];
  const inputShape = input?.isTensor ? input.shape : [];
  const classes = output?.isTensor ? output.shape[1] : undefined;
  const problem =
    input === undefined || output === undefined
      ? 'it has no input or no output'
      : inputShape.length !== 4 || inputShape[1] !== 3 || inputShape[2] !== CROP || inputShape[3] !== CROP
        ? `its input is [${inputShape.join(', ')}], not [N, 3, ${CROP}, ${CROP}]`
        : classes !== labels.length
          ? `it has ${String(classes)} classes and ${labelsPath} names ${labels.length}`
          : undefined;
  if (problem !== undefined || input === undefined || output === undefined) {
    await session.release();
    throw unavailable(`${modelPath} is not an ImageNet classifier this labeler can run (${problem}); ${PULL_HINT}`);
  }
  return { ort, session, inputName: input.name, outputName: output.name, labels };
}

/**
 * The image as the model's input: upright (EXIF), first frame, transparency flattened onto white, shorter side
 * scaled to 256 (bilinear with antialiasing, as torchvision's `Resize` on PIL images), centre 224x224 crop,
 * normalised planes R, G, B.
 */
async function preprocess(image: AnalyzerImage): Promise<Float32Array> {
  let pixels: { data: Buffer; info: OutputInfo };
  try {
    pixels = await sharp(image.data, { failOn: 'error', pages: 1 })
      .rotate()
      .flatten({ background: '#ffffff' })
      .resize(RESIZE_SHORTER_SIDE, RESIZE_SHORTER_SIDE, { fit: 'outside', kernel: 'linear' })
      .toColourspace('srgb')
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
  } catch (error) {
    throw new OcularError('unsupported_media_type', `mobilenetv2: the image cannot be decoded (${(error as Error).message})`, {
      cause: error,
    });
  }
  const { data, info } = pixels;
  const left = Math.floor((info.width - CROP) / 2);
  const top = Math.floor((info.height - CROP) / 2);
  const plane = CROP * CROP;
  const tensor = new Float32Array(3 * plane);
  for (let y = 0; y < CROP; y += 1) {
    for (let x = 0; x < CROP; x += 1) {
      const source = ((top + y) * info.width + left + x) * info.channels;
      const target = y * CROP + x;
      for (let channel = 0; channel < 3; channel += 1) {
        // A greyscale image has one channel: it is R, G and B alike.
        const value = data[source + Math.min(channel, info.channels - 1)]! / 255;
        tensor[channel * plane + target] = (value - MEAN[channel]!) / STD[channel]!;
      }
    }
  }
  return tensor;
}

/** Softmax probabilities of the best `topK` classes at or above `minScore`, best first. */
function pickLabels(logits: Float32Array, labels: readonly string[], topK: number, minScore: number): ImageLabel[] {
  let max = Number.NEGATIVE_INFINITY;
  for (const logit of logits) max = Math.max(max, logit);
  const exponentials = Float64Array.from(logits, (logit) => Math.exp(logit - max));
  const sum = exponentials.reduce((total, value) => total + value, 0);
  const best: ImageLabel[] = [];
  for (const [index, value] of exponentials.entries()) {
    const score = value / sum;
    if (score < minScore || (best.length === topK && score <= best[topK - 1]!.score)) continue;
    const at = best.findIndex((entry) => entry.score < score);
    best.splice(at === -1 ? best.length : at, 0, { label: labels[index]!, score });
    if (best.length > topK) best.pop();
  }
  return best;
}

class MobileNetLabeler implements ImageLabeler {
  readonly name = 'mobilenetv2';
  readonly #modelPath: string;
  readonly #labelsPath: string;
  readonly #topK: number;
  readonly #minScore: number;
  readonly #lifecycle = new ModelLifecycle<LoadedModel>({
    name: 'mobilenetv2',
    load: () => openModel(this.#modelPath, this.#labelsPath),
    release: (model) => model.session.release(),
  });

  constructor(options: MobileNetLabelerOptions) {
    const { topK, minScore } = options;
    if (topK !== undefined && !(Number.isInteger(topK) && topK >= 1 && topK <= 1000)) {
      throw new RangeError(`mobilenetv2: topK must be an integer from 1 to 1000, got ${topK}`);
    }
    if (minScore !== undefined && !(minScore >= 0 && minScore <= 1)) {
      throw new RangeError(`mobilenetv2: minScore must be between 0 and 1, got ${minScore}`);
    }
    this.#modelPath = resolve(options.modelPath);
    this.#labelsPath = resolve(options.labelsPath);
    this.#topK = topK ?? 5;
    this.#minScore = minScore ?? 0.1;
  }

  label(image: AnalyzerImage, signal?: AbortSignal): Promise<ImageLabel[]> {
    // Labelings run side by side: one onnxruntime session takes concurrent runs.
    return this.#lifecycle.use(async (model, stop) => {
      const pixels = await preprocess(image);
      stop.throwIfAborted();
      const input = new model.ort.Tensor('float32', pixels, [1, 3, CROP, CROP]);
      const outputs = await model.session.run({ [model.inputName]: input });
      const logits = outputs[model.outputName]!.data as Float32Array;
      return pickLabels(logits, model.labels, this.#topK, this.#minScore);
    }, signal);
  }

  close(): Promise<void> {
    return this.#lifecycle.close();
  }
}

/** A MobileNetV2 ImageNet labeler. Nothing is loaded until the first `label`. */
export function createMobileNetLabeler(options: MobileNetLabelerOptions): ImageLabeler {
  return new MobileNetLabeler(options);
}
