/**
 * The analyzers that can run in a worker thread, and how each one's input crosses the thread boundary. Both
 * threads use this table: the host to check options and encode inputs, the worker to build the analyzer and run
 * calls on it.
 */
import type {
  AnalyzerImage,
  DetectedObject,
  ImageLabel,
  ImageLabeler,
  ObjectDetector,
  ReadText,
  SpeechRange,
  TextReader,
  VoiceActivityDetector,
} from '../analyzers.ts';
import { createMobileNetLabeler, type MobileNetLabelerOptions } from '../labels/mobilenet-labeler.ts';
import { createHumanObjectDetector, type HumanObjectDetectorOptions } from '../objects/human-object-detector.ts';
import { createPaddleTextReader, type PaddleTextReaderOptions } from '../ocr/paddle-text-reader.ts';
import { createSileroVad, type SileroVadOptions } from '../vad/silero-vad.ts';

/** An image as it travels to the worker: its bytes in an ArrayBuffer of their own, which is transferred. */
export interface WireImage {
  data: Uint8Array;
  width: number;
  height: number;
}

/** Per kind: the analyzer's options, the interface it implements, and what one call takes and gives. */
export interface AnalyzerKinds {
  'text-reader': { options: PaddleTextReaderOptions; analyzer: TextReader; input: AnalyzerImage; wire: WireImage; output: ReadText };
  'object-detector': {
    options: HumanObjectDetectorOptions;
    analyzer: ObjectDetector;
    input: AnalyzerImage;
    wire: WireImage;
    output: DetectedObject[];
  };
  'image-labeler': {
    options: MobileNetLabelerOptions;
    analyzer: ImageLabeler;
    input: AnalyzerImage;
    wire: WireImage;
    output: ImageLabel[];
  };
  vad: { options: SileroVadOptions; analyzer: VoiceActivityDetector; input: Float32Array; wire: Float32Array; output: SpeechRange[] };
}

export type AnalyzerKind = keyof AnalyzerKinds;

export type LoadListener = (info: { milliseconds: number }) => void;

/** The options that can be cloned to the worker: all but `onLoad`, which the host calls when the worker reports a load. */
export type CloneableOptions<K extends AnalyzerKind> = Omit<AnalyzerKinds[K]['options'], 'onLoad'>;

/** A wire value and the buffers to transfer with it. */
export interface Encoded<W> {
  wire: W;
  transfer: ArrayBuffer[];
}

export interface AnalyzerKindDefinition<K extends AnalyzerKind> {
  /** For error messages, as the in-thread analyzer words them (`paddle text reader is shut down`). */
  title: string;
  /** Builds the analyzer; cheap (every implementation loads its weights on first use). */
  create(options: CloneableOptions<K>, onLoad: LoadListener | undefined): AnalyzerKinds[K]['analyzer'];
  /**
   * Copies the input into buffers of its own. The caller's buffer is never detached (it may be reused), and a
   * Buffer is often a view into a larger pooled ArrayBuffer, which structured cloning would copy whole.
   */
  encode(input: AnalyzerKinds[K]['input']): Encoded<AnalyzerKinds[K]['wire']>;
  decode(wire: AnalyzerKinds[K]['wire']): AnalyzerKinds[K]['input'];
  run(analyzer: AnalyzerKinds[K]['analyzer'], input: AnalyzerKinds[K]['input'], signal: AbortSignal): Promise<AnalyzerKinds[K]['output']>;
}

function encodeImage(image: AnalyzerImage): Encoded<WireImage> {
  // `new Uint8Array(view)` copies into a fresh ArrayBuffer of exactly the view's length.
  const data = new Uint8Array(image.data);
  return { wire: { data, width: image.width, height: image.height }, transfer: [data.buffer] };
}

function decodeImage(wire: WireImage): AnalyzerImage {
  return { data: Buffer.from(wire.data.buffer, wire.data.byteOffset, wire.data.byteLength), width: wire.width, height: wire.height };
}

export const ANALYZER_KINDS: { readonly [K in AnalyzerKind]: AnalyzerKindDefinition<K> } = {
  'text-reader': {
    title: 'paddle text reader',
    create: (options, onLoad) => createPaddleTextReader({ ...options, onLoad }),
    encode: encodeImage,
    decode: decodeImage,
    run: (analyzer, image, signal) => analyzer.read(image, signal),
  },
  'object-detector': {
    title: 'human object detector',
    create: (options, onLoad) => createHumanObjectDetector({ ...options, onLoad }),
    encode: encodeImage,
    decode: decodeImage,
    run: (analyzer, image, signal) => analyzer.detect(image, signal),
  },
  'image-labeler': {
    title: 'mobilenetv2',
    create: (options) => createMobileNetLabeler(options),
    encode: encodeImage,
    decode: decodeImage,
    run: (analyzer, image, signal) => analyzer.label(image, signal),
  },
  vad: {
    title: 'silero-vad',
    create: (options) => createSileroVad(options),
    encode: (samples) => {
      const copy = samples.slice();
      return { wire: copy, transfer: [copy.buffer] };
    },
    decode: (samples) => samples,
    run: (analyzer, samples, signal) => analyzer.detect(samples, signal),
  },
};
