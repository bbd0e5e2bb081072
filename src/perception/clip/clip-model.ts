/**
 * A CLIP-style image/text embedding model on onnxruntime-node, read from a folder in the common Hugging Face
 * ONNX export layout (Xenova/clip-vit-base-patch32 and the like):
 *
 * - `onnx/vision_model.onnx`: `pixel_values` [N, 3, H, W] -> `image_embeds` [N, D]
 * - `onnx/text_model.onnx`: `input_ids` [N, L] (and `attention_mask` when it takes one) -> `text_embeds` [N, D]
 * - `tokenizer.json` (and `tokenizer_config.json` when present): the text model's tokenizer
 * - `preprocessor_config.json`: the image size, centre crop, rescale factor and normalisation mean and std
 *
 * Both encoders map into one space: an image and the text that describes it have close vectors, so keyframes
 * can be searched by a picture or by words. Vectors come out L2-normalised, so a dot product is the cosine.
 * The sessions load on first use (ModelLifecycle); `inspectClipFolder` checks the folder at boot.
 */
import { createHash } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import type { InferenceSession } from 'onnxruntime-node';
import sharp, { type OutputInfo } from 'sharp';
import { z } from 'zod';
import { OcularError } from '../../spec/errors.ts';
import { ModelLifecycle } from '../model-lifecycle.ts';
import { openOnnxSession, unavailable as unavailableModel, type OnnxModelIdentity, type OnnxRuntime } from '../onnx-session.ts';

export const CLIP_FILES = {
  vision: join('onnx', 'vision_model.onnx'),
  text: join('onnx', 'text_model.onnx'),
  tokenizer: 'tokenizer.json',
  tokenizerConfig: 'tokenizer_config.json',
  preprocessor: 'preprocessor_config.json',
} as const;

/** What `indexing.imageEmbeddingModel` names: one image/text embedding model. */
export interface ImageEmbeddingModel {
  /** Identifies the weights: embeddings made by another model are not comparable and are made again. */
  readonly id: string;
  /** One unit vector per image (encoded bytes: JPEG, PNG, WebP...). */
  embedImages(images: readonly Buffer[], signal?: AbortSignal): Promise<Float32Array[]>;
  /** One unit vector per text, in the images' space. */
  embedTexts(texts: readonly string[], signal?: AbortSignal): Promise<Float32Array[]>;
  close(): Promise<void>;
}

const sizeSchema = z.union([
  z.number().int().positive(),
  z.looseObject({
    shortest_edge: z.number().int().positive().optional(),
    height: z.number().int().positive().optional(),
    width: z.number().int().positive().optional(),
  }),
]);

const triple = z.tuple([z.number(), z.number(), z.number()]);

const preprocessorSchema = z.looseObject({
  size: sizeSchema.optional(),
  crop_size: sizeSchema.optional(),
  do_resize: z.boolean().optional(),
  do_center_crop: z.boolean().optional(),
  do_rescale: z.boolean().optional(),
  rescale_factor: z.number().positive().optional(),
  do_normalize: z.boolean().optional(),
  image_mean: z.union([triple, z.number()]).optional(),
  image_std: z.union([triple, z.number()]).optional(),
});

/** How an image becomes `pixel_values`, read from `preprocessor_config.json`. */
export interface ClipPreprocessing {
  /** The shortest side after resizing (0: no resize). */
  shortestEdge: number;
  /** The centre crop's size. */
  cropWidth: number;
  cropHeight: number;
  rescale: number;
  mean: readonly [number, number, number];
  std: readonly [number, number, number];
}

/** CLIP's own constants, for a preprocessor config that leaves them out. */
const CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073] as const;
const CLIP_STD = [0.26862954, 0.26130258, 0.27577711] as const;
const CLIP_SIZE = 224;
/** CLIP's text encoder reads 77 tokens (its position embeddings). */
const DEFAULT_MAX_TOKENS = 77;
/** Images encoded per vision model call. */
const IMAGE_BATCH = 8;

/** What the folder holds, checked without loading the weights. */
export interface ClipFolder {
  directory: string;
  preprocessing: ClipPreprocessing;
  /** See ImageEmbeddingModel.id */
  id: string;
}

function sizeOf(value: z.infer<typeof sizeSchema> | undefined, fallback: number): { width: number; height: number; shortest: number } {
  if (value === undefined) return { width: fallback, height: fallback, shortest: fallback };
  if (typeof value === 'number') return { width: value, height: value, shortest: value };
  const shortest = value.shortest_edge ?? Math.min(value.height ?? fallback, value.width ?? fallback);
  return { width: value.width ?? shortest, height: value.height ?? shortest, shortest };
}

function toTriple(value: readonly number[] | number | undefined, fallback: readonly [number, number, number]): [number, number, number] {
  if (value === undefined) return [...fallback];
  if (typeof value === 'number') return [value, value, value];
  return [value[0]!, value[1]!, value[2]!];
}

/** Reads `preprocessor_config.json` the way Hugging Face's CLIPImageProcessor does. */
export function parsePreprocessing(config: unknown): ClipPreprocessing {
  const parsed = preprocessorSchema.parse(config);
  const size = sizeOf(parsed.size, CLIP_SIZE);
  const crop =
    parsed.do_center_crop === false ? { width: size.width, height: size.height } : sizeOf(parsed.crop_size ?? parsed.size, CLIP_SIZE);
  const normalize = parsed.do_normalize !== false;
  const std = toTriple(parsed.image_std, CLIP_STD);
  if (std.some((value) => value === 0)) throw new Error('image_std must not hold 0');
  return {
    shortestEdge: parsed.do_resize === false ? 0 : size.shortest,
    cropWidth: crop.width,
    cropHeight: crop.height,
    rescale: parsed.do_rescale === false ? 1 : (parsed.rescale_factor ?? 1 / 255),
    mean: normalize ? toTriple(parsed.image_mean, CLIP_MEAN) : [0, 0, 0],
    std: normalize ? std : [1, 1, 1],
  };
}

/**
 * Checks that `directory` holds a CLIP export (every file present, the preprocessor config readable): the
 * boot calls it so that a wrong path fails the start with a message that says what is missing.
 */
export function inspectClipFolder(directory: string): ClipFolder {
  const root = resolve(directory);
  const layout = `${CLIP_FILES.vision}, ${CLIP_FILES.text}, ${CLIP_FILES.tokenizer} and ${CLIP_FILES.preprocessor}`;
  const sizes: number[] = [];
  for (const file of [CLIP_FILES.vision, CLIP_FILES.text, CLIP_FILES.tokenizer, CLIP_FILES.preprocessor]) {
    const path = join(root, file);
    let isFile = false;
    try {
      const stats = statSync(path);
      isFile = stats.isFile();
      sizes.push(stats.size);
    } catch {
      // reported below
    }
    if (!isFile) {
      throw new Error(
        `${path} is missing: the folder must hold a CLIP model in the Hugging Face ONNX export layout (${layout}), ` +
          'such as a download of Xenova/clip-vit-base-patch32',
      );
    }
  }
  let preprocessing: ClipPreprocessing;
  const preprocessorPath = join(root, CLIP_FILES.preprocessor);
  const text = readFileSync(preprocessorPath, 'utf8');
  try {
    preprocessing = parsePreprocessing(JSON.parse(text));
  } catch (error) {
    throw new Error(`${preprocessorPath} is not a usable image preprocessor config (${(error as Error).message.split('\n')[0]})`);
  }
  const fingerprint = createHash('sha256').update(text).update(sizes.join(',')).digest('hex').slice(0, 12);
  return { directory: root, preprocessing, id: `clip:${basename(root)}:${fingerprint}` };
}

interface Tokenizer {
  encode(text: string): { ids: number[] };
}

interface LoadedClip {
  ort: OnnxRuntime;
  vision: InferenceSession;
  text: InferenceSession;
  tokenizer: Tokenizer;
  maxTokens: number;
  /** Whether the text model takes an `attention_mask` input. */
  textMask: boolean;
  visionInput: string;
}

function pickOutput(session: InferenceSession, preferred: string): string {
  return session.outputNames.includes(preferred) ? preferred : session.outputNames[0]!;
}

function readJson(path: string): unknown {
  return JSON.parse(readFileSync(path, 'utf8')) as unknown;
}

/** L2-normalised copy (a zero vector stays zero). */
export function normalize(vector: Float32Array): Float32Array {
  let sum = 0;
  for (const value of vector) sum += value * value;
  const norm = Math.sqrt(sum);
  return norm > 0 ? vector.map((value) => value / norm) : vector.slice();
}

class OnnxClipModel implements ImageEmbeddingModel {
  readonly id: string;
  readonly #folder: ClipFolder;
  readonly #identity: OnnxModelIdentity;
  readonly #lifecycle: ModelLifecycle<LoadedClip>;

  constructor(folder: ClipFolder) {
    this.#folder = folder;
    this.id = folder.id;
    this.#identity = {
      name: 'indexing.imageEmbeddingModel',
      pullHint: `point indexing.imageEmbeddingModel at a folder holding a CLIP ONNX export (${CLIP_FILES.vision}, ${CLIP_FILES.text}, ...)`,
    };
    this.#lifecycle = new ModelLifecycle<LoadedClip>({
      name: 'the image embedding model',
      load: () => this.#load(),
      release: async (model) => {
        await Promise.all([model.vision.release(), model.text.release()]);
      },
    });
  }

  async #load(): Promise<LoadedClip> {
    const { directory } = this.#folder;
    let tokenizer: Tokenizer;
    let maxTokens = DEFAULT_MAX_TOKENS;
    try {
      const { Tokenizer } = await import('@huggingface/tokenizers');
      const configPath = join(directory, CLIP_FILES.tokenizerConfig);
      let config: Record<string, unknown> = {};
      try {
        config = readJson(configPath) as Record<string, unknown>;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      }
      const limit = config.model_max_length;
      if (typeof limit === 'number' && Number.isInteger(limit) && limit >= 2 && limit <= 4096) maxTokens = limit;
      tokenizer = new Tokenizer(readJson(join(directory, CLIP_FILES.tokenizer)) as object, config);
    } catch (error) {
      throw unavailableModel(this.#identity, `its tokenizer cannot be read (${(error as Error).message})`, error);
    }
    const { ort, session: vision } = await openOnnxSession(this.#identity, join(directory, CLIP_FILES.vision));
    let text: InferenceSession;
    try {
      ({ session: text } = await openOnnxSession(this.#identity, join(directory, CLIP_FILES.text)));
    } catch (error) {
      await vision.release();
      throw error;
    }
    const visionInput = vision.inputNames.includes('pixel_values') ? 'pixel_values' : vision.inputNames[0];
    if (visionInput === undefined || !text.inputNames.includes('input_ids')) {
      await Promise.all([vision.release(), text.release()]);
      throw unavailableModel(this.#identity, `${directory} does not hold CLIP encoders (pixel_values and input_ids inputs)`);
    }
    return { ort, vision, text, tokenizer, maxTokens, textMask: text.inputNames.includes('attention_mask'), visionInput };
  }

  embedImages(images: readonly Buffer[], signal?: AbortSignal): Promise<Float32Array[]> {
    return this.#lifecycle.use(async (model, stop) => {
      const { cropWidth, cropHeight } = this.#folder.preprocessing;
      const plane = 3 * cropWidth * cropHeight;
      const vectors: Float32Array[] = [];
      for (let start = 0; start < images.length; start += IMAGE_BATCH) {
        const batch = images.slice(start, start + IMAGE_BATCH);
        const pixels = new Float32Array(batch.length * plane);
        for (const [index, image] of batch.entries()) pixels.set(await this.#preprocess(image), index * plane);
        stop.throwIfAborted();
        const input = new model.ort.Tensor('float32', pixels, [batch.length, 3, cropHeight, cropWidth]);
        const outputs = await model.vision.run({ [model.visionInput]: input });
        vectors.push(...this.#rows(outputs[pickOutput(model.vision, 'image_embeds')]!, batch.length));
      }
      return vectors;
    }, signal);
  }

  embedTexts(texts: readonly string[], signal?: AbortSignal): Promise<Float32Array[]> {
    return this.#lifecycle.use(async (model, stop) => {
      const vectors: Float32Array[] = [];
      // One text per call: no padding, whose handling differs between exports.
      for (const text of texts) {
        stop.throwIfAborted();
        let ids = model.tokenizer.encode(text).ids;
        // Too long: the start is kept, and the last token (the end-of-text marker CLIP pools on).
        if (ids.length > model.maxTokens) ids = [...ids.slice(0, model.maxTokens - 1), ids[ids.length - 1]!];
        if (ids.length === 0) ids = [0];
        const feeds: Record<string, InstanceType<OnnxRuntime['Tensor']>> = {
          input_ids: new model.ort.Tensor(
            'int64',
            BigInt64Array.from(ids, (id) => BigInt(id)),
            [1, ids.length],
          ),
        };
        if (model.textMask) feeds.attention_mask = new model.ort.Tensor('int64', new BigInt64Array(ids.length).fill(1n), [1, ids.length]);
        const outputs = await model.text.run(feeds);
        vectors.push(...this.#rows(outputs[pickOutput(model.text, 'text_embeds')]!, 1));
      }
      return vectors;
    }, signal);
  }

  #rows(output: { data: unknown; dims: readonly number[] }, count: number): Float32Array[] {
    const data = output.data as Float32Array;
    const width = data.length / count;
    if (output.dims.length !== 2 || !Number.isInteger(width) || width < 1) {
      throw unavailableModel(this.#identity, `its output has shape [${output.dims.join(', ')}], not [N, D]`);
    }
    return Array.from({ length: count }, (_, row) => normalize(data.slice(row * width, (row + 1) * width)));
  }

  /** Upright, transparency on white, shortest side resized (bicubic, as CLIP), centre crop, normalised planes. */
  async #preprocess(image: Buffer): Promise<Float32Array> {
    const { shortestEdge, cropWidth, cropHeight, rescale, mean, std } = this.#folder.preprocessing;
    let pixels: { data: Buffer; info: OutputInfo };
    try {
      let pipeline = sharp(image, { failOn: 'error', pages: 1 }).rotate().flatten({ background: '#ffffff' });
      if (shortestEdge > 0) pipeline = pipeline.resize(shortestEdge, shortestEdge, { fit: 'outside', kernel: 'cubic' });
      pixels = await pipeline.toColourspace('srgb').raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
    } catch (error) {
      throw new OcularError('unsupported_media_type', `the image cannot be decoded (${(error as Error).message})`, { cause: error });
    }
    const { data, info } = pixels;
    // The centre crop; where the image is smaller than the crop, the rest is black (as a padded crop).
    const left = Math.floor((info.width - cropWidth) / 2);
    const top = Math.floor((info.height - cropHeight) / 2);
    const plane = cropWidth * cropHeight;
    const tensor = new Float32Array(3 * plane);
    for (let y = 0; y < cropHeight; y += 1) {
      for (let x = 0; x < cropWidth; x += 1) {
        const sourceX = left + x;
        const sourceY = top + y;
        const inside = sourceX >= 0 && sourceY >= 0 && sourceX < info.width && sourceY < info.height;
        const source = (sourceY * info.width + sourceX) * info.channels;
        for (let channel = 0; channel < 3; channel += 1) {
          // A greyscale image has one channel: it is R, G and B alike.
          const value = inside ? data[source + Math.min(channel, info.channels - 1)]! * rescale : 0;
          tensor[channel * plane + y * cropWidth + x] = (value - mean[channel]!) / std[channel]!;
        }
      }
    }
    return tensor;
  }

  close(): Promise<void> {
    return this.#lifecycle.close();
  }
}

/** A CLIP model from a checked folder; nothing is loaded until the first embedding. */
export function createClipModel(folder: ClipFolder): ImageEmbeddingModel {
  return new OnnxClipModel(folder);
}
