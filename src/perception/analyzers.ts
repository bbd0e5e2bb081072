/**
 * What the offline analyzers used by video indexing look like from outside. Each one is built once at boot,
 * loads its weights lazily on first use (and only once, even under concurrent first calls), honours `signal`
 * between steps, and frees its weights in `close()`.
 */

/** An encoded image (JPEG or PNG): a keyframe cut from a video, or an uploaded image. */
export interface AnalyzerImage {
  data: Buffer;
  width: number;
  height: number;
}

/** A box in relative coordinates (0..1 of the image's width and height), top-left origin. */
export interface RelativeBox {
  x: number;
  y: number;
  width: number;
  height: number;
}

export interface TextLine {
  text: string;
  /** 0..1 */
  confidence: number;
  box: RelativeBox;
}

export interface ReadText {
  /** The lines in reading order (top to bottom, then left to right), joined with `\n`. */
  text: string;
  lines: TextLine[];
}

/** On-screen text (OCR). */
export interface TextReader {
  readonly name: string;
  read(image: AnalyzerImage, signal?: AbortSignal): Promise<ReadText>;
  close(): Promise<void>;
}

export interface DetectedObject {
  /** A COCO class name in plain English (`person`, `car`, `traffic light`). */
  label: string;
  /** 0..1 */
  score: number;
  box: RelativeBox;
}

/** Objects (and people) in an image. */
export interface ObjectDetector {
  readonly name: string;
  detect(image: AnalyzerImage, signal?: AbortSignal): Promise<DetectedObject[]>;
  close(): Promise<void>;
}

export interface ImageLabel {
  /** A class name in plain English (`bald eagle`, `seashore`). */
  label: string;
  /** 0..1 (softmax probability) */
  score: number;
}

/** Whole-image labels (scene or subject classification), best first. */
export interface ImageLabeler {
  readonly name: string;
  label(image: AnalyzerImage, signal?: AbortSignal): Promise<ImageLabel[]>;
  close(): Promise<void>;
}

export interface SpeechRange {
  startSeconds: number;
  endSeconds: number;
}

/** Voice activity: the ranges of an audio track where someone speaks. */
export interface VoiceActivityDetector {
  readonly name: string;
  /** @param samples 16 kHz mono PCM in -1..1 */
  detect(samples: Float32Array, signal?: AbortSignal): Promise<SpeechRange[]>;
  close(): Promise<void>;
}
