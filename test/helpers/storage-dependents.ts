import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';

/** What makes a test file's servers follow the storage mode: the helper that reads it, or the variable itself. */
const MODE_MARKER = /storage-mode\.ts'|OCULAR_TEST_STORAGE/;
const RELATIVE_IMPORT = /from\s+'(\.{1,2}\/[^']+\.ts)'/g;

/**
 * The test files under `root` whose servers run on the database `OCULAR_TEST_STORAGE` names: those that reach the
 * storage-mode helper through their own imports (followed through the test helpers). The others do not depend on
 * the storage mode (pure units, or tests that pick their databases themselves, such as the dialect-parametrised
 * store and queue tests), so running them a second time on PostgreSQL would test nothing new.
 */
export function storageDependentTests(root: string): string[] {
  const reaches = new Map<string, boolean>();
  const follows = (file: string, path: Set<string>): boolean => {
    const known = reaches.get(file);
    if (known !== undefined) return known;
    if (path.has(file)) return false;
    path.add(file);
    const text = readFileSync(file, 'utf8');
    const found =
      MODE_MARKER.test(text) ||
      [...text.matchAll(RELATIVE_IMPORT)].some(([, specifier]) => {
        const target = resolve(dirname(file), specifier!);
        return target.startsWith(root) && follows(target, path);
      });
    path.delete(file);
    reaches.set(file, found);
    return found;
  };
  return testFiles(root).filter((file) => follows(file, new Set()));
}

function testFiles(folder: string): string[] {
  return readdirSync(folder, { withFileTypes: true }).flatMap((entry) => {
    const path = join(folder, entry.name);
    if (entry.isDirectory()) return testFiles(path);
    return entry.name.endsWith('.test.ts') ? [path] : [];
  });
}
