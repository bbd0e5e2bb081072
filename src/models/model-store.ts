import { createHash } from 'node:crypto';
import { createReadStream, existsSync, readdirSync, rmdirSync, statSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { dirname, join, relative, sep } from 'node:path';
import { CATALOG, DEFAULT_CATALOG_MODEL } from './catalog.ts';
import { checkRepo, localFilePath, ModelReferenceError, resolveModelReference, type ModelSource } from './model-source.ts';

export interface StoredFile {
  file: string;
  path: string;
  /** Size when complete, when known (the catalog's, or else the file's own once present). */
  size: number | undefined;
  /** The file's own size, when it is present. */
  sizeOnDisk: number | undefined;
  /** The catalog's sha256, when it has one (what `verifyStoredModels` checks). */
  sha256: string | undefined;
  present: boolean;
  /** Bytes of an unfinished download (`.part`), if there is one. */
  partialBytes: number | undefined;
  /**
   * A present file that is not the catalog's: `wrong-size` is seen from its size alone, `corrupt` (right size,
   * wrong sha256) only once `verifyStoredModels` has hashed it.
   */
  problem: 'wrong-size' | 'corrupt' | undefined;
  /** True once `verifyStoredModels` found the catalog's sha256. */
  verified: boolean;
}

export interface StoredModel {
  /** What `ocular models pull` / `rm` take: a catalog name or `owner/repo:file`. */
  name: string;
  repo: string;
  inCatalog: boolean;
  isDefault: boolean;
  /** `wrong-size` and `corrupt`: some file in place is not the catalog's (see its `problem`). */
  status: 'present' | 'partial' | 'missing' | 'wrong-size' | 'corrupt';
  files: StoredFile[];
}

const fileSize = (path: string): number | undefined => {
  try {
    return statSync(path).size;
  } catch {
    return undefined;
  }
};

/** What is on disk at `path` (and its `.part`), checked against what the catalog expects, where it says. */
export function describeStoredFile(
  file: string,
  path: string,
  expected: { size: number | undefined; sha256: string | undefined },
): StoredFile {
  const sizeOnDisk = fileSize(path);
  const present = sizeOnDisk !== undefined;
  // A file placed by hand is only trusted as far as the catalog allows: a truncated copy or another quantisation
  // would otherwise count as present and fail, much later, inside the model loader.
  const wrongSize = present && expected.size !== undefined && sizeOnDisk !== expected.size;
  return {
    file,
    path,
    size: expected.size ?? sizeOnDisk,
    sizeOnDisk,
    sha256: expected.sha256,
    present,
    partialBytes: fileSize(`${path}.part`),
    problem: wrongSize ? 'wrong-size' : undefined,
    verified: false,
  };
}

/** A model's status from its files': a file that is not the catalog's outweighs what is missing. */
export function storedStatus(files: readonly StoredFile[]): StoredModel['status'] {
  if (files.some((file) => file.problem === 'corrupt')) return 'corrupt';
  if (files.some((file) => file.problem === 'wrong-size')) return 'wrong-size';
  if (files.every((file) => file.present)) return 'present';
  return files.some((file) => file.present || file.partialBytes !== undefined) ? 'partial' : 'missing';
}

function describe(modelsDir: string, source: ModelSource): StoredModel {
  const files = source.files.map((file) => describeStoredFile(file.file, localFilePath(modelsDir, source, file), file));
  return {
    name: source.name,
    repo: source.files[0]!.repo,
    inCatalog: source.catalog !== undefined,
    isDefault: source.name === DEFAULT_CATALOG_MODEL,
    status: storedStatus(files),
    files,
  };
}

async function sha256OfFile(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/**
 * Hashes every present file that has the catalog's size and a catalog sha256 (a few seconds per GB), marking it
 * `verified` or `corrupt`; returns the models with their status updated. Files without a checksum stay as they
 * are (only their size was checked).
 */
export async function verifyStoredModels(
  models: readonly StoredModel[],
  options: { onFile?: ((file: StoredFile) => void) | undefined } = {},
): Promise<StoredModel[]> {
  const verified: StoredModel[] = [];
  for (const model of models) {
    const files: StoredFile[] = [];
    for (const file of model.files) {
      if (!file.present || file.problem !== undefined || file.sha256 === undefined) {
        files.push(file);
        continue;
      }
      options.onFile?.(file);
      const matches = (await sha256OfFile(file.path)) === file.sha256.toLowerCase();
      files.push({ ...file, verified: matches, problem: matches ? undefined : 'corrupt' });
    }
    verified.push({ ...model, files, status: storedStatus(files) });
  }
  return verified;
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
