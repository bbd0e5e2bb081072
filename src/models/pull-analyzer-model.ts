import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { ANALYZER_CATALOG, analyzerFilePath, type AnalyzerFile, type AnalyzerModel } from './analyzer-catalog.ts';
import { describeStoredFile, storedStatus, type StoredModel } from './model-store.ts';
import { downloadFile, type DownloadProgress, type DownloadResult } from './download-file.ts';

export interface AnalyzerPullProgress extends DownloadProgress {
  file: AnalyzerFile;
  /** 0-based position of `file` among the model's files. */
  index: number;
  count: number;
}

export interface AnalyzerPullOptions {
  /** `<data>/models` */
  modelsDir: string;
  signal?: AbortSignal | undefined;
  /** Called when a file starts downloading (files already in place are skipped silently). */
  onFile?: ((file: AnalyzerFile, index: number, count: number, url: string) => void) | undefined;
  onProgress?: ((progress: AnalyzerPullProgress) => void) | undefined;
  stallTimeoutMs?: number | undefined;
}

export interface PulledAnalyzerFile {
  file: AnalyzerFile;
  path: string;
  /** Absent when the file was already in place. */
  download: DownloadResult | undefined;
}

/** The model's files that are not in place yet. */
export function missingAnalyzerFiles(modelsDir: string, model: AnalyzerModel): AnalyzerFile[] {
  return model.files.filter((file) => !existsSync(analyzerFilePath(modelsDir, model, file)));
}

/** How to get an analyzer's weights without a download from here; the server's log and `ocular models pull` say it. */
export function analyzerHandPlacementHint(modelsDir: string, model: AnalyzerModel): string {
  const paths = missingAnalyzerFiles(modelsDir, model).map((file) => `${file.url} to ${analyzerFilePath(modelsDir, model, file)}`);
  return `To add it by hand, download ${paths.join(' and ')} (or run \`ocular models pull ${model.name}\` where there is network)`;
}

/**
 * Downloads every file of an analyzer model (`findAnalyzerModel(name)`) that is not in place yet, one after
 * another, each resumable and verified against the catalog's size and sha256 (the same `downloadFile` as
 * `pullModel`). No token is sent: these are public GitHub files.
 */
export async function pullAnalyzerModel(model: AnalyzerModel, options: AnalyzerPullOptions): Promise<PulledAnalyzerFile[]> {
  const pulled: PulledAnalyzerFile[] = [];
  const count = model.files.length;
  for (const [index, file] of model.files.entries()) {
    const path = analyzerFilePath(options.modelsDir, model, file);
    if (existsSync(path)) {
      pulled.push({ file, path, download: undefined });
      continue;
    }
    options.onFile?.(file, index, count, file.url);
    const download = await downloadFile({
      url: file.url,
      destination: path,
      sha256: file.sha256,
      size: file.size,
      signal: options.signal,
      stallTimeoutMs: options.stallTimeoutMs,
      onProgress: (progress) => options.onProgress?.({ ...progress, file, index, count }),
    });
    pulled.push({ file, path, download });
  }
  return pulled;
}

/** Deletes an analyzer model's folder (partial downloads included); the paths removed, empty when nothing was there. */
export async function removeAnalyzerModel(modelsDir: string, model: Pick<AnalyzerModel, 'name'>): Promise<string[]> {
  const dir = join(modelsDir, model.name);
  if (!existsSync(dir)) return [];
  await rm(dir, { recursive: true, force: true });
  return [dir];
}

/** The analyzer catalog as `ocular models list` shows it: each model with what of it is on disk. */
export function listAnalyzerModels(modelsDir: string, catalog: readonly AnalyzerModel[] = ANALYZER_CATALOG): StoredModel[] {
  return catalog.map((model) => {
    const files = model.files.map((file) => describeStoredFile(file.file, analyzerFilePath(modelsDir, model, file), file));
    return { name: model.name, repo: model.repo, inCatalog: true, isDefault: false, status: storedStatus(files), files };
  });
}
