import { existsSync } from 'node:fs';
import type { IndexingSettings } from '../../config/schema.ts';
import { AnalyzerBackgroundPull } from '../../models/analyzer-background-pull.ts';
import { ANALYZER_CATALOG, analyzerFilePath, type AnalyzerModel } from '../../models/analyzer-catalog.ts';
import type { AnalyzerImage, ImageLabeler, ObjectDetector, TextReader, VoiceActivityDetector } from '../../perception/analyzers.ts';
import type { Transcriber } from '../../perception/speech/transcriber.ts';
import {
  createWorkerImageLabeler,
  createWorkerObjectDetector,
  createWorkerTextReader,
  createWorkerVad,
} from '../../perception/worker/worker-analyzers.ts';

/** What a caption model is told besides the keyframes. */
export interface CaptionContext {
  /** The factual caption built from the analyzers' findings, as grounding. */
  findings: string;
  startSeconds: number;
  endSeconds: number;
  /** What the images are: the keyframes of a video segment, or one uploaded image. @default 'segment' */
  subject?: 'segment' | 'image' | undefined;
}

/** Writes a short factual caption of a segment from its keyframes (a vision chat model). */
export interface Captioner {
  caption(images: readonly AnalyzerImage[], context: CaptionContext, signal: AbortSignal): Promise<string>;
}

/** The analyzers indexing runs; an absent one is skipped (turned off in config, or its weights are missing). */
export interface IndexingAnalyzers {
  textReader?: TextReader | undefined;
  objectDetector?: ObjectDetector | undefined;
  labeler?: ImageLabeler | undefined;
  vad?: VoiceActivityDetector | undefined;
  transcriber?: Transcriber | undefined;
  captioner?: Captioner | undefined;
}

export interface AnalyzerSetupLog {
  warn(message: string, fields?: Record<string, unknown>): void;
}

export interface AnalyzerSetupOptions {
  transcriber?: Transcriber | undefined;
  captioner?: Captioner | undefined;
  /** Where pulled analyzer weights come from. @default ANALYZER_CATALOG */
  catalog?: readonly AnalyzerModel[] | undefined;
  /** Waits between retries of a failed weights download. @default AnalyzerBackgroundPull's */
  pullRetryDelaysMs?: readonly number[] | undefined;
}

/** The analyzers, the downloads of the weights some of them still wait for, and how to stop both. */
export interface IndexingAnalyzerSet {
  analyzers: IndexingAnalyzers;
  /** Starts downloading missing weights in the background. */
  startPulls(): void;
  /** Stops downloads and frees every analyzer's weights. */
  close(): Promise<void>;
}

/**
 * Builds the analyzers the config turns on, each in its own worker thread (started, and its weights loaded, on
 * first use): they keep the HTTP server's event loop free, and OCR and object detection run on separate cores.
 * Analyzers whose weights the model manager pulls (voice activity, scene labels) are on by default too: missing
 * weights are downloaded in the background, and the analyzer is skipped until they are in place. A `modelPath`
 * in config is used as given (a missing file there turns the analyzer off, with a warning).
 */
export function createIndexingAnalyzers(
  settings: IndexingSettings,
  modelsDir: string,
  options: AnalyzerSetupOptions,
  log: AnalyzerSetupLog & { info(message: string, fields?: Record<string, unknown>): void },
): IndexingAnalyzerSet {
  const analyzers: IndexingAnalyzers = {};
  const pulls: AnalyzerBackgroundPull[] = [];
  const closers: Array<() => Promise<void>> = [];
  const catalogModel = (name: string): AnalyzerModel => (options.catalog ?? ANALYZER_CATALOG).find((model) => model.name === name)!;

  /** `analyzers[key]` is the analyzer while its files exist, else undefined (so indexing skips it). */
  const whenPresent = <K extends 'vad' | 'labeler'>(key: K, analyzer: NonNullable<IndexingAnalyzers[K]>, paths: string[]): void => {
    Object.defineProperty(analyzers, key, {
      enumerable: true,
      get: () => (paths.every((path) => existsSync(path)) ? analyzer : undefined),
    });
    closers.push(() => analyzer.close());
  };
  const pullUnlessPresent = (name: string): void => {
    const pull = new AnalyzerBackgroundPull({ model: catalogModel(name), modelsDir, log, retryDelaysMs: options.pullRetryDelaysMs });
    if (!pull.ready) pulls.push(pull);
  };

  if (settings.ocr.enabled) analyzers.textReader = createWorkerTextReader();
  if (settings.objects.enabled) analyzers.objectDetector = createWorkerObjectDetector();
  if (settings.vad.enabled) {
    const modelPath =
      settings.vad.modelPath ?? analyzerFilePath(modelsDir, catalogModel('silero-vad'), catalogModel('silero-vad').files[0]!);
    if (settings.vad.modelPath !== undefined && !existsSync(modelPath)) {
      log.warn('voice activity detection is off: vad.modelPath does not exist', { path: modelPath });
    } else {
      if (settings.vad.modelPath === undefined) pullUnlessPresent('silero-vad');
      whenPresent('vad', createWorkerVad({ modelPath, threshold: settings.vad.threshold }), [modelPath]);
    }
  }
  if (settings.labels.enabled) {
    const model = catalogModel('mobilenetv2');
    const pulled = (role: string): string =>
      analyzerFilePath(
        modelsDir,
        model,
        model.files.find((file) => file.role === role)!,
      );
    const modelPath = settings.labels.modelPath ?? pulled('model');
    const labelsPath = settings.labels.labelsPath ?? pulled('labels');
    const configured = settings.labels.modelPath !== undefined || settings.labels.labelsPath !== undefined;
    if (configured && !(existsSync(modelPath) && existsSync(labelsPath))) {
      log.warn('scene labels are off: labels.modelPath or labels.labelsPath does not exist', { modelPath, labelsPath });
    } else {
      if (!configured) pullUnlessPresent('mobilenetv2');
      whenPresent('labeler', createWorkerImageLabeler({ modelPath, labelsPath }), [modelPath, labelsPath]);
    }
  }
  if (settings.speech.enabled && options.transcriber) analyzers.transcriber = options.transcriber;
  if (options.captioner) analyzers.captioner = options.captioner;
  return {
    analyzers,
    startPulls: () => {
      for (const pull of pulls) pull.start();
    },
    close: async () => {
      await Promise.all(pulls.map((pull) => pull.close()));
      await Promise.all([analyzers.textReader?.close(), analyzers.objectDetector?.close(), ...closers.map((close) => close())]);
    },
  };
}
