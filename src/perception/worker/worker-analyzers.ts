/**
 * The offline analyzers, each run in a worker thread of its own behind the same interface as in the main thread.
 *
 * What changes for a caller: nothing in the results or errors; a crashed worker (an uncaught exception, its JS heap
 * out of memory, `process.exit` inside it) rejects the calls it had with `unavailable_error` and the next call
 * starts a fresh one. A native crash (a segfault in onnxruntime) still ends the whole process: threads share it.
 *
 * Memory: each worker has its own V8 heap and its own copy of the analyzer's libraries, about 50-60 MB more than
 * the same analyzer in the main thread (measured with PaddleOCR and Human); `close()` gives all of it back, where
 * an analyzer closed in the main thread leaves its libraries (opencv.js, tfjs) loaded.
 */
import type { Worker } from 'node:worker_threads';
import type { ImageLabeler, ObjectDetector, TextReader, VoiceActivityDetector } from '../analyzers.ts';
import type { MobileNetLabelerOptions } from '../labels/mobilenet-labeler.ts';
import type { HumanObjectDetectorOptions } from '../objects/human-object-detector.ts';
import type { PaddleTextReaderOptions } from '../ocr/paddle-text-reader.ts';
import type { SileroVadOptions } from '../vad/silero-vad.ts';
import { AnalyzerWorkerHost } from './analyzer-worker-host.ts';
import type { AnalyzerKind } from './analyzer-kinds.ts';

/** The hosts' workers, by the analyzers made here, so tests can reach the worker underneath. */
const workers = new WeakMap<object, () => Worker | undefined>();

function register<A extends object, K extends AnalyzerKind>(analyzer: A, host: AnalyzerWorkerHost<K>): A {
  workers.set(analyzer, () => host.worker);
  return analyzer;
}

/** `createPaddleTextReader` in a worker thread. Options are checked now, as there; the worker starts on the first read. */
export function createWorkerTextReader(options: PaddleTextReaderOptions = {}): TextReader {
  const host = new AnalyzerWorkerHost('text-reader', options);
  return register({ name: host.name, read: (image, signal) => host.call(image, signal), close: () => host.close() }, host);
}

/**
 * `createHumanObjectDetector` in a worker thread. Human keeps its model in module state, so detectors in the main
 * thread share one engine; each worker detector loads its own.
 */
export function createWorkerObjectDetector(options: HumanObjectDetectorOptions = {}): ObjectDetector {
  const host = new AnalyzerWorkerHost('object-detector', options);
  return register({ name: host.name, detect: (image, signal) => host.call(image, signal), close: () => host.close() }, host);
}

/** `createMobileNetLabeler` in a worker thread. */
export function createWorkerImageLabeler(options: MobileNetLabelerOptions): ImageLabeler {
  const host = new AnalyzerWorkerHost('image-labeler', options);
  return register({ name: host.name, label: (image, signal) => host.call(image, signal), close: () => host.close() }, host);
}

/** `createSileroVad` in a worker thread. The samples are copied to the worker (4 bytes per sample). */
export function createWorkerVad(options: SileroVadOptions): VoiceActivityDetector {
  const host = new AnalyzerWorkerHost('vad', options);
  return register({ name: host.name, detect: (samples, signal) => host.call(samples, signal), close: () => host.close() }, host);
}

/** For tests: the worker thread under an analyzer made here, while one is running. */
export function analyzerWorkerOf(analyzer: object): Worker | undefined {
  return workers.get(analyzer)?.();
}
