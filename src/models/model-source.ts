import { join } from 'node:path';
import { ANALYZER_CATALOG, findAnalyzerModel, type AnalyzerModel } from './analyzer-catalog.ts';
import { CATALOG, findCatalogModel, type CatalogModel } from './catalog.ts';

/** One file to fetch from a Hugging Face repository, with what is known about it beforehand. */
export interface RemoteFile {
  role: 'model' | 'mmproj';
  repo: string;
  /** Path inside the repository. */
  file: string;
  /** From the catalog; undefined for files named on the command line. */
  size: number | undefined;
  sha256: string | undefined;
}

/** What `ocular models pull <reference>` fetches, and where it lands under `<data>/models`. */
export interface ModelSource {
  /** The reference as the user wrote it: a catalog name or `owner/repo:file`. */
  name: string;
  /** Folder under the models directory, as path segments: `[name]` for the catalog, `[owner, repo]` otherwise. */
  folder: string[];
  files: RemoteFile[];
  catalog: CatalogModel | undefined;
}

export class ModelReferenceError extends Error {
  override name = 'ModelReferenceError';
}

// Hugging Face repository names: letters, digits, `-`, `_`, `.`; never `..` (a path traversal here).
const SEGMENT = /^(?!\.{1,2}$)[\w.-]+$/;

/** The repository's path segments (`[owner, name]`); throws for anything else. */
export function checkRepo(repo: string): string[] {
  const segments = repo.split('/');
  if (segments.length !== 2 || !segments.every((segment) => SEGMENT.test(segment))) {
    throw new ModelReferenceError(`"${repo}" is not a Hugging Face repository name (owner/name)`);
  }
  return segments;
}

function checkFile(file: string): void {
  if (file === '' || !file.split('/').every((segment) => SEGMENT.test(segment))) {
    throw new ModelReferenceError(`"${file}" is not a file path inside a repository`);
  }
}

/** Resolves `smolvlm2-500m` (catalog) or `owner/repo:path/file.gguf` (any single file on the hub). */
export function resolveModelReference(reference: string): ModelSource {
  return resolve(reference, false);
}

/** What `ocular models pull` fetches: an analyzer's weights, or a model (`resolveModelReference`). */
export type PullReference = { analyzer: AnalyzerModel; source?: undefined } | { analyzer?: undefined; source: ModelSource };

/** Like `resolveModelReference`, but analyzer names count too (and an unknown name's error lists them). */
export function resolvePullReference(reference: string): PullReference {
  const analyzer = findAnalyzerModel(reference);
  return analyzer ? { analyzer } : { source: resolve(reference, true) };
}

function resolve(reference: string, withAnalyzers: boolean): ModelSource {
  const catalog = findCatalogModel(reference);
  if (catalog) {
    return {
      name: catalog.name,
      folder: [catalog.name],
      catalog,
      files: [
        { role: 'model', repo: catalog.repo, ...catalog.model },
        ...(catalog.mmproj === undefined ? [] : [{ role: 'mmproj' as const, repo: catalog.repo, ...catalog.mmproj }]),
      ],
    };
  }
  const separator = reference.indexOf(':');
  if (separator === -1) {
    const known = CATALOG.map((entry) => entry.name).join(', ');
    // Analyzer weights are not models a config entry can name, so only `models pull` offers them.
    const analyzers = withAnalyzers ? `, an analyzer (${ANALYZER_CATALOG.map((entry) => entry.name).join(', ')})` : '';
    throw new ModelReferenceError(`unknown model "${reference}": use a catalog name (${known})${analyzers} or owner/repo:file.gguf`);
  }
  const repo = reference.slice(0, separator);
  const file = reference.slice(separator + 1);
  const folder = checkRepo(repo);
  checkFile(file);
  return { name: reference, folder, catalog: undefined, files: [{ role: 'model', repo, file, size: undefined, sha256: undefined }] };
}

/** Where a source's files live once pulled. */
export interface LocalModelPaths {
  modelPath: string;
  mmprojPath: string | undefined;
}

export function localFilePath(modelsDir: string, source: ModelSource, file: RemoteFile): string {
  return join(modelsDir, ...source.folder, ...file.file.split('/'));
}

export function localModelPaths(modelsDir: string, source: ModelSource): LocalModelPaths {
  const path = (role: RemoteFile['role']) => {
    const file = source.files.find((candidate) => candidate.role === role);
    return file === undefined ? undefined : localFilePath(modelsDir, source, file);
  };
  return { modelPath: path('model')!, mmprojPath: path('mmproj') };
}
