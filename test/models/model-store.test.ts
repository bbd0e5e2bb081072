import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ANALYZER_CATALOG, type AnalyzerModel } from '../../src/models/analyzer-catalog.ts';
import { CATALOG, findCatalogModel } from '../../src/models/catalog.ts';
import { ModelReferenceError, resolveModelReference, resolvePullReference } from '../../src/models/model-source.ts';
import { listModels, verifyStoredModels, type StoredFile } from '../../src/models/model-store.ts';
import { listAnalyzerModels } from '../../src/models/pull-analyzer-model.ts';
import { sha256Of, testBytes } from './fake-hub.ts';

const cleanups: Array<() => unknown> = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0).reverse()) cleanup();
});

function temporaryDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'ocular-model-store-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

describe('stored models against the catalog', () => {
  const content = testBytes(4_000, 7);
  /** Three one-file analyzers whose catalog entry this test controls: the file on disk is right, corrupt, or cut short. */
  const catalog: AnalyzerModel[] = ['good', 'corrupt', 'short'].map((name) => ({
    name,
    title: name,
    repo: 'test-org/test',
    license: 'MIT',
    files: [{ role: 'model', file: 'model.onnx', url: 'http://127.0.0.1:9/model.onnx', size: content.length, sha256: sha256Of(content) }],
  }));

  function place(modelsDir: string, name: string, bytes: Buffer): void {
    mkdirSync(join(modelsDir, name), { recursive: true });
    writeFileSync(join(modelsDir, name, 'model.onnx'), bytes);
  }

  it('flags a wrong size at once, and a wrong sha256 once verified', async () => {
    const modelsDir = temporaryDir();
    place(modelsDir, 'good', content);
    place(modelsDir, 'corrupt', Buffer.from(content).fill(0, 0, 1));
    place(modelsDir, 'short', content.subarray(0, 1_000));

    const listed = listAnalyzerModels(modelsDir, catalog);
    expect(listed.map((model) => model.status)).toEqual(['present', 'present', 'wrong-size']);
    expect(listed[2]!.files[0]).toMatchObject({ size: 4_000, sizeOnDisk: 1_000, problem: 'wrong-size' });

    const hashed: StoredFile[] = [];
    const verified = await verifyStoredModels(listed, { onFile: (file) => hashed.push(file) });
    expect(verified.map((model) => model.status)).toEqual(['present', 'corrupt', 'wrong-size']);
    expect(verified.map((model) => model.files[0]!.verified)).toEqual([true, false, false]);
    // A file already known to be wrong is not read again.
    expect(hashed.map((file) => file.path)).toEqual([join(modelsDir, 'good', 'model.onnx'), join(modelsDir, 'corrupt', 'model.onnx')]);
  });

  it('leaves a file with no catalog checksum unverified, and missing files alone', async () => {
    const modelsDir = temporaryDir();
    const withoutSha = catalog.map((model) => ({ ...model, files: model.files.map((file) => ({ ...file, sha256: undefined! })) }));
    place(modelsDir, 'good', content);
    const verified = await verifyStoredModels(listAnalyzerModels(modelsDir, withoutSha));
    expect(verified.map((model) => model.status)).toEqual(['present', 'missing', 'missing']);
    expect(verified[0]!.files[0]!.verified).toBe(false);
  });

  it('checks a GGUF placed by hand against the catalog size', () => {
    const modelsDir = temporaryDir();
    const entry = findCatalogModel('smolvlm2-500m')!;
    mkdirSync(join(modelsDir, entry.name), { recursive: true });
    writeFileSync(join(modelsDir, entry.name, entry.model.file), 'not a model');
    const model = listModels(modelsDir).find((listed) => listed.name === entry.name)!;
    expect(model.status).toBe('wrong-size');
    expect(model.files.map((file) => file.problem)).toEqual(['wrong-size', undefined]);
  });
});

describe('resolvePullReference', () => {
  it('takes analyzer names besides model references', () => {
    expect(resolvePullReference('silero-vad').analyzer?.name).toBe('silero-vad');
    expect(resolvePullReference('smolvlm2-500m').source).toEqual(resolveModelReference('smolvlm2-500m'));
  });

  it('names both kinds for an unknown name, where a config entry is offered only models', () => {
    const error = (() => {
      try {
        resolvePullReference('nonexistent');
      } catch (caught) {
        return caught;
      }
    })();
    expect(error).toBeInstanceOf(ModelReferenceError);
    for (const { name } of [...CATALOG, ...ANALYZER_CATALOG]) expect((error as Error).message).toContain(name);
    expect(() => resolveModelReference('nonexistent')).toThrow(ModelReferenceError);
  });
});
