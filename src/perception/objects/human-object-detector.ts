/**
 * The embedded `human` object detector: the CenterNet COCO-80 model that ships with `@vladmandic/human`, run
 * in this process on TensorFlow.js's WebAssembly backend (Human's `node-wasm` build), with every other Human
 * model turned off.
 */
import { createRequire } from 'node:module';
import { dirname, join, sep } from 'node:path';
import { pathToFileURL } from 'node:url';
import type * as tfjs from '@tensorflow/tfjs-core';
import type { Config, Human, Result } from '@vladmandic/human';
import sharp from 'sharp';
import { OcularError } from '../../spec/errors.ts';
import type { AnalyzerImage, DetectedObject, ObjectDetector, RelativeBox } from '../analyzers.ts';
import { ModelLifecycle, TaskQueue } from '../model-lifecycle.ts';
import { routeFileModels } from './route-file-models.ts';

export interface HumanObjectDetectorOptions {
  /** Objects scored below this (0..1) are left out. @default 0.4 */
  minScore?: number | undefined;
  /** The most objects returned for one image, best first. @default 20 */
  maxObjects?: number | undefined;
  /** Called once the model is loaded, with how long that took (for logs and tests). */
  onLoad?: ((info: { milliseconds: number }) => void) | undefined;
}

const DEFAULT_MIN_SCORE = 0.4;
const DEFAULT_MAX_OBJECTS = 20;
/**
 * CenterNet's input is 512x512 (`centernet.json`'s signature), and Human squeezes any image to that size with
 * a bilinear resize, ignoring the aspect ratio. Doing that squeeze with sharp instead resamples better and
 * hands tfjs a tensor under a third the size of a 720p frame; the boxes come back relative either way.
 */
const MODEL_SIDE = 512;
/** Boxes of any two classes overlapping more than this keep only the better one (Human's NMS is class-blind). */
const IOU_THRESHOLD = 0.4;

const require = createRequire(import.meta.url);

/**
 * Where Human's pieces are. Its `exports` map names its builds without a leading `./`, so Node reads those keys
 * as conditions and exports no subpath: `@vladmandic/human/dist/human.node-wasm.js` does not resolve. The main
 * entry (`dist/human.node.js`, the tfjs-node build, which needs a native binding we do not install) does, and
 * the wasm build and the models sit beside it.
 */
function locateHuman(): { wasmBuild: string; modelDirectory: string; wasmDirectory: string } {
  const distDirectory = dirname(require.resolve('@vladmandic/human'));
  return {
    wasmBuild: join(distDirectory, 'human.node-wasm.js'),
    modelDirectory: `${pathToFileURL(join(distDirectory, '..', 'models')).href}/`,
    // tfjs-backend-wasm reads its .wasm files from this prefix with `fs` under Node: a path, not a URL.
    wasmDirectory: dirname(require.resolve('@tensorflow/tfjs-backend-wasm')) + sep,
  };
}

/** Human's config with only object detection on; `object` thresholds are set per call. */
function humanConfig(paths: ReturnType<typeof locateHuman>): Partial<Config> {
  return {
    backend: 'wasm',
    wasmPath: paths.wasmDirectory,
    wasmPlatformFetch: false,
    modelBasePath: paths.modelDirectory,
    debug: false,
    // Models run one after another; there is only one here anyway.
    async: false,
    warmup: 'none',
    cacheModels: false,
    // 0 turns off Human's frame cache, which would otherwise hand back the previous image's objects when two
    // images look alike (it was made for consecutive video frames, and keyframes of different videos can match).
    cacheSensitivity: 0,
    filter: { enabled: false },
    face: { enabled: false },
    body: { enabled: false },
    hand: { enabled: false },
    gesture: { enabled: false },
    segmentation: { enabled: false },
    object: { enabled: true, modelPath: 'centernet.json', iouThreshold: IOU_THRESHOLD, skipFrames: 0, skipTime: 0 },
  };
}

/**
 * Human keeps its loaded models, its tfjs backend and its frame cache in module state, shared by every `Human`
 * in the process: a second instance would get the first one's CenterNet model, disposed or not. So there is one
 * engine per process, shared by all detectors: loaded by the first that needs it, disposed when the last one
 * holding it closes.
 */
const engine: {
  human: Promise<Human> | undefined;
  /** Detectors that hold the engine: their load of it has not failed, and they have not closed. */
  holders: number;
  /** Settles when the engine last disposed is gone. */
  released: Promise<void>;
} = { human: undefined, holders: 0, released: Promise.resolve() };

/** Detections of all detectors run one at a time: they share one engine, and tfjs-wasm runs on the JS thread anyway. */
const detections = new TaskQueue();

type OnLoad = HumanObjectDetectorOptions['onLoad'];

/** The shared engine, counting the caller as a holder until it calls `releaseEngine` (or the load fails). */
function acquireEngine(onLoad: OnLoad): Promise<Human> {
  const human = (engine.human ??= openEngine(onLoad));
  engine.holders += 1;
  human.catch(() => {
    // A failed load holds nothing, and the next call loads anew.
    engine.holders -= 1;
    if (engine.human === human) engine.human = undefined;
  });
  return human;
}

/** Lets go of the engine; the last holder disposes it. */
async function releaseEngine(human: Human): Promise<void> {
  engine.holders -= 1;
  if (engine.holders > 0) return;
  engine.human = undefined;
  // Only the detections already in line can be using this engine; later ones wait for `released` to load anew.
  const inLine = detections.idle();
  engine.released = (async () => {
    await inLine;
    human.models.models['centernet']?.dispose();
    human.models.reset();
    // Marks Human's module state as fresh, so the next `Human` loads the model again rather than reusing the
    // disposed one that its CenterNet module still holds.
    human.reset();
  })();
  await engine.released;
}

async function openEngine(onLoad: OnLoad): Promise<Human> {
  await engine.released;
  const started = performance.now();
  let human: Human;
  try {
    const paths = locateHuman();
    // A CommonJS build: `require` also shares one tfjs-core with the tfjs packages it requires.
    const { Human: HumanClass } = require(paths.wasmBuild) as { Human: typeof Human };
    human = new HumanClass(humanConfig(paths));
    routeFileModels(human.tf as typeof tfjs, paths.modelDirectory);
    await human.load();
  } catch (error) {
    throw new OcularError('unavailable_error', `human object detector could not load its model: ${(error as Error).message}`, {
      cause: error,
    });
  }
  // Human logs a failed model load to the console and carries on without the model.
  if (!human.models.models['centernet']) {
    throw new OcularError('unavailable_error', 'human object detector could not load its model (centernet.json); see the log above');
  }
  onLoad?.({ milliseconds: performance.now() - started });
  return human;
}

/**
 * Finds COCO objects (people, vehicles, animals, household things) with CenterNet. The model loads on first use;
 * detections run one at a time, and a caller whose signal aborts while waiting leaves the line at once. A
 * running detection (about 0.2 s, on the JS thread) cannot be interrupted.
 */
export function createHumanObjectDetector(options: HumanObjectDetectorOptions = {}): ObjectDetector {
  return new HumanObjectDetector(options);
}

class HumanObjectDetector implements ObjectDetector {
  readonly name = 'human';
  readonly #minScore: number;
  readonly #maxObjects: number;
  readonly #lifecycle: ModelLifecycle<Human>;

  constructor(options: HumanObjectDetectorOptions) {
    this.#minScore = options.minScore ?? DEFAULT_MIN_SCORE;
    this.#maxObjects = options.maxObjects ?? DEFAULT_MAX_OBJECTS;
    if (!(this.#minScore >= 0 && this.#minScore <= 1)) throw new RangeError(`minScore must be between 0 and 1, got ${this.#minScore}`);
    if (!Number.isInteger(this.#maxObjects) || this.#maxObjects < 1) {
      throw new RangeError(`maxObjects must be a positive integer, got ${this.#maxObjects}`);
    }
    this.#lifecycle = new ModelLifecycle({
      name: 'human object detector',
      load: () => acquireEngine(options.onLoad),
      release: releaseEngine,
      queue: detections,
    });
  }

  detect(image: AnalyzerImage, signal?: AbortSignal): Promise<DetectedObject[]> {
    return this.#lifecycle.use(async (human, stop) => {
      const pixels = await decodeToModelSize(image);
      stop.throwIfAborted();
      const tf = human.tf as typeof tfjs;
      const input = tf.tensor3d(pixels, [MODEL_SIDE, MODEL_SIDE, 3], 'int32');
      let result: Result;
      try {
        result = await human.detect(input, { object: { minConfidence: this.#minScore, maxDetected: this.#maxObjects } });
      } catch (error) {
        throw new OcularError('upstream_error', `Human failed to detect objects: ${(error as Error).message}`, { cause: error });
      } finally {
        input.dispose();
      }
      // Human reports failures in the result rather than by rejecting.
      if (result.error) throw new OcularError('upstream_error', `Human failed to detect objects: ${result.error}`);
      return result.object
        .filter((object) => object.score >= this.#minScore)
        .map((object) => ({ label: object.label, score: Math.min(1, object.score), box: toRelativeBox(object.boxRaw) }))
        .sort((a, b) => b.score - a.score)
        .slice(0, this.#maxObjects);
    }, signal);
  }

  close(): Promise<void> {
    return this.#lifecycle.close();
  }
}

/** The image as MODEL_SIDE x MODEL_SIDE RGB bytes; transparency is flattened onto white, greys become RGB. */
async function decodeToModelSize(image: AnalyzerImage): Promise<Uint8Array> {
  try {
    const { data, info } = await sharp(image.data, { failOn: 'error' })
      .flatten({ background: '#ffffff' })
      .resize(MODEL_SIDE, MODEL_SIDE, { fit: 'fill' })
      .toColourspace('srgb')
      .raw()
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw new Error(`expected 3 colour channels, got ${info.channels}`);
    return data;
  } catch (error) {
    throw new OcularError('unsupported_media_type', `the image cannot be decoded for object detection: ${(error as Error).message}`, {
      cause: error,
    });
  }
}

/** Human's `boxRaw` (`[x, y, width, height]`, relative) clamped to the image. */
function toRelativeBox([x, y, width, height]: [number, number, number, number]): RelativeBox {
  const clamp = (value: number): number => Math.min(1, Math.max(0, value));
  const left = clamp(x);
  const top = clamp(y);
  return { x: left, y: top, width: clamp(x + width) - left, height: clamp(y + height) - top };
}
