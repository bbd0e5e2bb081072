import { existsSync } from 'node:fs';
import type { HubSettings } from '../config/settings.ts';
import { downloadFile, type DownloadProgress, type DownloadResult } from './download-file.ts';
import { hubFileUrl } from './hub.ts';
import { localFilePath, type ModelSource, type RemoteFile } from './model-source.ts';

export interface PullProgress extends DownloadProgress {
  file: RemoteFile;
  /** 0-based position of `file` among the source's files. */
  index: number;
  count: number;
}

export interface PullOptions {
  /** `<data>/models` */
  modelsDir: string;
  hub: HubSettings;
  signal?: AbortSignal | undefined;
  /** Called when a file starts downloading (files already in place are skipped silently). */
  onFile?: ((file: RemoteFile, index: number, count: number, url: string) => void) | undefined;
  onProgress?: ((progress: PullProgress) => void) | undefined;
  stallTimeoutMs?: number | undefined;
}

export interface PulledFile {
  file: RemoteFile;
  path: string;
  /** Absent when the file was already in place. */
  download: DownloadResult | undefined;
}

/** The source's files that are not in place yet. */
export function missingFiles(modelsDir: string, source: ModelSource): RemoteFile[] {
  return source.files.filter((file) => !existsSync(localFilePath(modelsDir, source, file)));
}

/**
 * How to get the model without a download from here: the exact files and where they go, or a local GGUF. The
 * server's 503s and logs and `ocular models pull` give the same words.
 */
export function handPlacementHint(source: ModelSource, modelsDir: string, hub: Pick<HubSettings, 'endpoint'>): string {
  const files = missingFiles(modelsDir, source).map(
    (file) => `${hubFileUrl(hub, file.repo, file.file)} to ${localFilePath(modelsDir, source, file)}`,
  );
  return (
    `To add it by hand, download ${files.join(' and ')} (or run \`ocular models pull ${source.name}\` where there is ` +
    'network), or start the server with --model-path PATH [--mmproj-path PATH] to serve a local GGUF'
  );
}

/** Downloads every file of `source` that is not in place yet, one after another (each resumable and verified). */
export async function pullModel(source: ModelSource, options: PullOptions): Promise<PulledFile[]> {
  const pulled: PulledFile[] = [];
  for (const [index, file] of source.files.entries()) {
    const path = localFilePath(options.modelsDir, source, file);
    if (existsSync(path)) {
      pulled.push({ file, path, download: undefined });
      continue;
    }
    const url = hubFileUrl(options.hub, file.repo, file.file);
    options.onFile?.(file, index, source.files.length, url);
    const download = await downloadFile({
      url,
      destination: path,
      token: options.hub.token,
      sha256: file.sha256,
      size: file.size,
      signal: options.signal,
      stallTimeoutMs: options.stallTimeoutMs,
      onProgress: (progress) => options.onProgress?.({ ...progress, file, index, count: source.files.length }),
    });
    pulled.push({ file, path, download });
  }
  return pulled;
}
