import { stat } from 'node:fs/promises';
import type { InferenceSession } from 'onnxruntime-node';
import { OcularError } from '../spec/errors.ts';

export type OnnxRuntime = typeof import('onnxruntime-node');

/** What an analyzer names in its errors: itself, and how to get its weights. */
export interface OnnxModelIdentity {
  /** e.g. `silero-vad` */
  name: string;
  /** e.g. "download it with `ocular models pull silero-vad`" */
  pullHint: string;
}

export function unavailable(model: OnnxModelIdentity, message: string, cause?: unknown): OcularError {
  return new OcularError('unavailable_error', `${model.name} is not available: ${message}`, { cause });
}

/** Fails with an `unavailable_error` that says what is wrong with `path` and how to get the file. */
export async function checkModelFile(model: OnnxModelIdentity, path: string, what: string): Promise<void> {
  try {
    if (!(await stat(path)).isFile()) throw unavailable(model, `the ${what} path ${path} is not a file; ${model.pullHint}`);
  } catch (error) {
    if (error instanceof OcularError) throw error;
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw unavailable(model, `the ${what} file ${path} does not exist; ${model.pullHint}`, error);
    throw unavailable(model, `the ${what} file ${path} cannot be read (${(error as Error).message})`, error);
  }
}

/**
 * Opens an ONNX model on one CPU thread: indexing runs several analyzers side by side, each in its own worker,
 * and the small models here gain nothing from more threads but synchronisation. The runtime is imported on
 * first use, so building an analyzer at boot costs nothing.
 */
export async function openOnnxSession(
  model: OnnxModelIdentity,
  modelPath: string,
): Promise<{ ort: OnnxRuntime; session: InferenceSession }> {
  await checkModelFile(model, modelPath, 'model');
  let ort: OnnxRuntime;
  try {
    ort = await import('onnxruntime-node');
  } catch (error) {
    throw unavailable(
      model,
      `onnxruntime-node cannot be loaded on ${process.platform}-${process.arch}: ${(error as Error).message}`,
      error,
    );
  }
  try {
    const session = await ort.InferenceSession.create(modelPath, {
      intraOpNumThreads: 1,
      interOpNumThreads: 1,
      executionMode: 'sequential',
      graphOptimizationLevel: 'all',
    });
    return { ort, session };
  } catch (error) {
    throw unavailable(model, `onnxruntime could not load ${modelPath} (${(error as Error).message}); ${model.pullHint}`, error);
  }
}
