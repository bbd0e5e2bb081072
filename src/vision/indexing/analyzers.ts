import { existsSync } from 'node:fs';
import type { IndexingSettings } from '../../config/schema.ts';
import { analyzerModelPaths } from '../../models/analyzer-catalog.ts';
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

/**
 * Builds the analyzers the config turns on, each in its own worker thread (started, and its weights loaded, on
 * first use): they keep the HTTP server's event loop free, and OCR and object detection run on separate cores.
 * Analyzers whose weights the model manager pulls are skipped, with a warning saying how to get them, when their
 * files are absent.
 */
export function createIndexingAnalyzers(
  settings: IndexingSettings,
  modelsDir: string,
  shared: { transcriber?: Transcriber | undefined; captioner?: Captioner | undefined },
  log: AnalyzerSetupLog,
): IndexingAnalyzers {
  const analyzers: IndexingAnalyzers = {};
  if (settings.ocr.enabled) analyzers.textReader = createWorkerTextReader();
  if (settings.objects.enabled) analyzers.objectDetector = createWorkerObjectDetector();
  if (settings.vad.enabled) {
    const modelPath = settings.vad.modelPath ?? analyzerModelPaths(modelsDir, 'silero-vad').modelPath;
    if (existsSync(modelPath)) analyzers.vad = createWorkerVad({ modelPath, threshold: settings.vad.threshold });
    else log.warn('voice activity detection is off: its model is missing', { path: modelPath, fix: 'ocular models pull silero-vad' });
  }
  if (settings.labels.enabled) {
    const pulled = analyzerModelPaths(modelsDir, 'mobilenetv2');
    const modelPath = settings.labels.modelPath ?? pulled.modelPath;
    const labelsPath = settings.labels.labelsPath ?? pulled.labelsPath;
    if (existsSync(modelPath) && existsSync(labelsPath)) analyzers.labeler = createWorkerImageLabeler({ modelPath, labelsPath });
    else log.warn('scene labels are off: the model is missing', { path: modelPath, fix: 'ocular models pull mobilenetv2' });
  }
  if (settings.speech.enabled && shared.transcriber) analyzers.transcriber = shared.transcriber;
  if (shared.captioner) analyzers.captioner = shared.captioner;
  return analyzers;
}

/** Frees every analyzer's weights. */
export async function closeIndexingAnalyzers(analyzers: IndexingAnalyzers): Promise<void> {
  await Promise.all([analyzers.textReader?.close(), analyzers.objectDetector?.close(), analyzers.labeler?.close(), analyzers.vad?.close()]);
}
