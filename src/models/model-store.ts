import { existsSync, readdirSync, rmdirSync, statSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { dirname, join, relative, sep } from 'node:path';
import { CATALOG, DEFAULT_CATALOG_MODEL } from './catalog.ts';
import { checkRepo, localFilePath, ModelReferenceError, resolveModelReference, type ModelSource } from './model-source.ts';

export interface StoredFile {
  file: string;
  path: string;
  /** Size when complete, when known (the catalog's, or the file's own once present). */
  size: number | undefined;
  present: boolean;
  /** Bytes of an unfinished download (`.part`), if there is one. */
  partialBytes: number | undefined;
}

export interface StoredModel {
  /** What `ocular models pull` / `rm` take: a catalog name or `owner/repo:file`. */
  name: string;
  repo: string;
  inCatalog: boolean;
  isDefault: boolean;
  status: 'present' | 'partial' | 'missing';
  files: StoredFile[];
}

const fileSize = (path: string): number | undefined => {
  try {
    return statSync(path).size;
  } catch {
    return undefined;
  }
};

function describe(modelsDir: string, source: ModelSource): StoredModel {
  const files = source.files.map((file): StoredFile => {
    const path = localFilePath(modelsDir, source, file);
    const present = existsSync(path);
    return { file: file.file, path, size: present ? fileSize(path) : file.size, present, partialBytes: fileSize(`${path}.part`) };
  });
  const status = files.every((file) => file.present)
    ? 'present'
    : files.some((file) => file.present || file.partialBytes !== undefined)
      ? 'partial'
      : 'missing';
  return {
    name: source.name,
    repo: source.files[0]!.repo,
    inCatalog: source.catalog !== undefined,
    isDefault: source.name === DEFAULT_CATALOG_MODEL,
    status,
    files,
  };
}

/** Files under a folder, as paths relative to it with `/` separators; `.part` and `.lock` files are left out. */
function walk(root: string): string[] {
  if (!existsSync(root)) return [];
  return readdirSync(root, { withFileTypes: true, recursive: true })
    .filter((entry) => entry.isFile() && !/\.(?:part|lock)$/.test(entry.name))
    .map((entry) => relative(root, join(entry.parentPath, entry.name)).split(sep).join('/'));
}

/** Every catalog model (present or not), then any other file pulled as `owner/repo:file`. */
export function listModels(modelsDir: string): StoredModel[] {
  const catalogNames = new Set(CATALOG.map((entry) => entry.name));
  const listed = CATALOG.map((entry) => describe(modelsDir, resolveModelReference(entry.name)));
  const owners = existsSync(modelsDir)
    ? readdirSync(modelsDir, { withFileTypes: true }).filter((entry) => entry.isDirectory() && !catalogNames.has(entry.name))
    : [];
  for (const owner of owners) {
    for (const repo of readdirSync(join(modelsDir, owner.name), { withFileTypes: true }).filter((entry) => entry.isDirectory())) {
      for (const file of walk(join(modelsDir, owner.name, repo.name))) {
        try {
          listed.push(describe(modelsDir, resolveModelReference(`${owner.name}/${repo.name}:${file}`)));
        } catch (error) {
          if (!(error instanceof ModelReferenceError)) throw error; // a stray file with an odd name: not ours
        }
      }
    }
  }
  return listed;
}

/** Deletes empty folders from `path` up to (not including) `root`. */
function pruneEmpty(path: string, root: string): void {
  for (let dir = path; dir.startsWith(root + sep); dir = dirname(dir)) {
    try {
      rmdirSync(dir);
    } catch {
      return; // not empty (or already gone)
    }
  }
}

/**
 * Removes a pulled model: a catalog name, `owner/repo:file`, or `owner/repo` (every file pulled from it),
 * unfinished downloads included. Returns what was removed (empty when there was nothing).
 */
export async function removeModel(modelsDir: string, reference: string): Promise<string[]> {
  let targets: string[];
  if (!reference.includes(':') && reference.split('/').length === 2) {
    targets = [join(modelsDir, ...checkRepo(reference))];
  } else {
    const source = resolveModelReference(reference);
    targets = source.catalog
      ? [join(modelsDir, ...source.folder)]
      : source.files.flatMap((file) => {
          const path = localFilePath(modelsDir, source, file);
          return [path, `${path}.part`, `${path}.lock`];
        });
  }
  const removed = targets.filter((path) => existsSync(path));
  for (const path of removed) await rm(path, { recursive: true, force: true });
  for (const path of removed) pruneEmpty(dirname(path), modelsDir);
  return removed;
}
