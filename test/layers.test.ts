import { readdirSync, readFileSync, statSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

/**
 * The architecture's one-way imports (ARCHITECTURE.md "Layers"): a module may import its own layer or a
 * lower one. A new top-level folder under src/ must be given a layer here before it can import anything.
 */
const LAYERS: Readonly<Record<string, number>> = {
  spec: 0,
  config: 0,
  'provider-utils': 1,
  store: 1,
  media: 1,
  jobs: 1,
  models: 1,
  providers: 2,
  perception: 2,
  chat: 3,
  vision: 3,
  conversations: 3,
  speech: 3,
  research: 3,
  server: 4,
  cli: 4,
  mcp: 4,
  web: 4,
};
/** The SDK stands alone: it imports only itself (and no third-party package). */
const STANDALONE = 'sdk';
/** The edges, which talk to a server as clients do (`ocular chat`, the playground), may use the SDK; nothing else may. */
const SDK_USERS = new Set(['server', 'cli', 'mcp', 'web']);

const PROVIDER_FILES = ['convert-request.ts', 'convert-response.ts', 'convert-stream.ts', 'errors.ts', 'index.ts'];

const SRC = fileURLToPath(new URL('../src/', import.meta.url));
const BUILTINS = new Set(builtinModules.flatMap((name) => [name, `node:${name}`]));

function listSourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return listSourceFiles(path);
    return /\.(?:[cm]?ts|tsx|[cm]?js)$/.test(entry.name) ? [path] : [];
  });
}

/**
 * Source with comments that start a line blanked (newlines kept, so line numbers hold), so examples in JSDoc
 * are not taken for imports. Only comments at the start of a line: `'*' + '/*'` inside a string is not one.
 */
function stripComments(text: string): string {
  return text.replace(/^[ \t]*\/\*[\s\S]*?\*\//gm, (comment) => comment.replace(/[^\n]/g, '')).replace(/^[ \t]*\/\/.*$/gm, '');
}

const IMPORT_PATTERNS = [
  /\bfrom\s*['"]([^'"]+)['"]/g, // import ... from '...', export ... from '...'
  /\bimport\s*['"]([^'"]+)['"]/g, // import '...'
  /\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)/g, // import('...')
  /\brequire\s*\(\s*['"]([^'"]+)['"]\s*\)/g,
];

function importSpecifiers(text: string): string[] {
  const code = stripComments(text);
  return IMPORT_PATTERNS.flatMap((pattern) => [...code.matchAll(pattern)].map((match) => match[1]!));
}

interface SourceFile {
  /** Relative to src/, with forward slashes: `server/app.ts`. */
  name: string;
  /** The top-level folder under src/ (`server`), or '' for a file directly in src/. */
  folder: string;
  path: string;
  text: string;
  imports: string[];
}

const topFolder = (relativePath: string): string => (relativePath.includes(sep) ? relativePath.split(sep)[0]! : '');

const FILES: SourceFile[] = listSourceFiles(SRC).map((path) => {
  const text = readFileSync(path, 'utf8');
  const name = relative(SRC, path);
  return { name: name.split(sep).join('/'), folder: topFolder(name), path, text, imports: importSpecifiers(text) };
});

/** Where a relative import lands inside src/, or undefined for a package or a path outside src/. */
function targetFolder(file: SourceFile, specifier: string): string | undefined {
  if (!specifier.startsWith('.')) return undefined;
  const target = relative(SRC, resolve(dirname(file.path), specifier));
  if (target.startsWith('..')) return undefined;
  return topFolder(target);
}

const isPackage = (specifier: string): boolean => !specifier.startsWith('.') && !specifier.startsWith('/');
const layerName = (folder: string): string => (folder === '' ? 'src/ (top level)' : `${folder}/`);

describe('layers', () => {
  it('finds the sources and their imports (the checks below are not vacuous)', () => {
    expect(FILES.length).toBeGreaterThan(20);
    const serve = FILES.find((file) => file.name === 'server/serve.ts');
    expect(serve?.imports).toEqual(expect.arrayContaining(['../chat/model-registry.ts', '../store/database.ts', 'node:fs']));
    expect(importSpecifiers(`const x = await import('./lazy.ts');\nimport './side-effect.ts';\nexport * from "./re-export.ts";`)).toEqual([
      './re-export.ts',
      './side-effect.ts',
      './lazy.ts',
    ]);
  });

  it('puts every folder under src/ in a layer', () => {
    const unknown = [...new Set(FILES.map((file) => file.folder))]
      .filter((folder) => folder !== STANDALONE && !(folder in LAYERS))
      .map((folder) => `${layerName(folder)} has no layer: add it to LAYERS in test/layers.test.ts`);
    expect(unknown).toEqual([]);
  });

  it('imports point down only', () => {
    const violations: string[] = [];
    for (const file of FILES) {
      if (file.folder === STANDALONE) continue;
      const own = LAYERS[file.folder];
      if (own === undefined) continue; // reported by the test above
      for (const specifier of file.imports) {
        const target = targetFolder(file, specifier);
        if (target === undefined || target === file.folder) continue;
        if (target === STANDALONE) {
          if (!SDK_USERS.has(file.folder))
            violations.push(`src/${file.name} imports '${specifier}' from sdk/, which only the edges may use`);
          continue;
        }
        const theirs = LAYERS[target];
        if (theirs === undefined) {
          violations.push(`src/${file.name} imports '${specifier}' from ${layerName(target)}, which is not a layer it may use`);
        } else if (theirs > own) {
          violations.push(
            `src/${file.name} (layer ${own}, ${file.folder}/) imports '${specifier}' from a higher layer (${theirs}, ${target}/)`,
          );
        }
      }
    }
    expect(violations).toEqual([]);
  });

  it('only the edges import sdk/', () => {
    const sdkTarget = (file: SourceFile) => file.imports.some((specifier) => targetFolder(file, specifier) === STANDALONE);
    const users = FILES.filter((file) => file.folder !== STANDALONE && sdkTarget(file)).map((file) => file.folder);
    expect(users.filter((folder) => !SDK_USERS.has(folder))).toEqual([]);
    // The rule is checked on real imports: the CLI's client commands go through the SDK.
    expect(users).toContain('cli');
  });

  it('sdk/ imports only itself', () => {
    const violations: string[] = [];
    for (const file of FILES.filter((candidate) => candidate.folder === STANDALONE)) {
      for (const specifier of file.imports) {
        if (isPackage(specifier) && !BUILTINS.has(specifier)) {
          violations.push(`src/${file.name} imports the package '${specifier}': the SDK has no runtime dependencies`);
        } else if (!isPackage(specifier) && targetFolder(file, specifier) !== STANDALONE) {
          violations.push(`src/${file.name} imports '${specifier}' from outside sdk/`);
        }
      }
    }
    expect(violations).toEqual([]);
  });

  it('spec/ does no I/O: no Node built-ins, no I/O packages', () => {
    const ioPackages = ['better-sqlite3', 'undici', '@hono/node-server', 'hono', 'eventsource-parser', 'commander'];
    const violations = FILES.filter((file) => file.folder === 'spec').flatMap((file) =>
      file.imports
        .filter(
          (specifier) =>
            BUILTINS.has(specifier) ||
            specifier.startsWith('node:') ||
            ioPackages.some((name) => specifier === name || specifier.startsWith(`${name}/`)),
        )
        .map((specifier) => `src/${file.name} imports '${specifier}': spec/ is types and pure code only`),
    );
    expect(violations).toEqual([]);
  });
});

describe('providers', () => {
  it('every folder under src/providers/ has the same file set', () => {
    const providersDir = join(SRC, 'providers');
    const folders = readdirSync(providersDir).filter((entry) => statSync(join(providersDir, entry)).isDirectory());
    expect(folders.length).toBeGreaterThan(0);
    const problems = folders.flatMap((folder) => {
      const files = readdirSync(join(providersDir, folder)).sort();
      const missing = PROVIDER_FILES.filter((file) => !files.includes(file));
      const extra = files.filter((file) => !PROVIDER_FILES.includes(file));
      return [
        ...(missing.length > 0 ? [`src/providers/${folder}/ lacks ${missing.join(', ')}`] : []),
        ...(extra.length > 0 ? [`src/providers/${folder}/ has files outside the provider file set: ${extra.join(', ')}`] : []),
      ];
    });
    expect(problems).toEqual([]);
  });
});

describe('configuration', () => {
  it('no file outside src/config reads process.env', () => {
    const patterns = [/\bprocess\s*\.\s*env\b/, /\bprocess\s*\[\s*['"`]env['"`]\s*\]/, /\{[^}]*\benv\b[^}]*\}\s*=\s*process\b/];
    const violations = FILES.filter((file) => file.folder !== 'config').flatMap((file) =>
      stripComments(file.text)
        .split('\n')
        .flatMap((line, index) =>
          patterns.some((pattern) => pattern.test(line)) ? [`src/${file.name}:${index + 1} reads process.env: ${line.trim()}`] : [],
        ),
    );
    expect(violations).toEqual([]);
  });
});
