import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from '../../src/config/load-config.ts';
import { resolveHubSettings, resolveLocalModelSettings, type LocalModelSettings } from '../../src/config/settings.ts';
import { CATALOG, DEFAULT_CATALOG_MODEL, findCatalogModel } from '../../src/models/catalog.ts';
import { planLocalModels } from '../../src/models/local-models.ts';
import { ModelReferenceError, resolveModelReference } from '../../src/models/model-source.ts';
import { listModels, removeModel } from '../../src/models/model-store.ts';

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function temporaryDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'ocular-local-models-'));
  dirs.push(dir);
  return dir;
}

const hub = { endpoint: 'http://127.0.0.1:1', token: undefined };
const settings = (overrides: Partial<LocalModelSettings> = {}): LocalModelSettings => ({
  modelPath: undefined,
  mmprojPath: undefined,
  preload: false,
  useDefaultModel: false,
  hub,
  ...overrides,
});

describe('catalog', () => {
  it('has unique names, a default entry, .gguf files, and sha256 digests that are 64 hex digits or left out', () => {
    const names = CATALOG.map((entry) => entry.name);
    expect(new Set(names).size).toBe(names.length);
    expect(findCatalogModel(DEFAULT_CATALOG_MODEL)).toBeDefined();
    for (const entry of CATALOG) {
      expect(entry.repo).toMatch(/^[\w.-]+\/[\w.-]+$/);
      // A vision model has its projector; an embedding model has none, and says how it pools.
      expect(entry.embedding === undefined).toBe(entry.mmproj !== undefined);
      for (const file of [entry.model, ...(entry.mmproj ? [entry.mmproj] : [])]) {
        expect(file.file).toMatch(/\.gguf$/i);
        if (file.size !== undefined) expect(file.size).toBeGreaterThan(1_000_000);
        if (file.sha256 !== undefined) expect(file.sha256).toMatch(/^[0-9a-f]{64}$/);
      }
    }
  });
});

describe('resolveModelReference', () => {
  it('resolves catalog names to both files and owner/repo:file to one', () => {
    const catalog = resolveModelReference('smolvlm2-500m');
    expect(catalog.folder).toEqual(['smolvlm2-500m']);
    expect(catalog.files.map((file) => file.role)).toEqual(['model', 'mmproj']);
    expect(catalog.files[0]?.sha256).toMatch(/^[0-9a-f]{64}$/);
    const single = resolveModelReference('someone/Some-GGUF:q4/model.gguf');
    expect(single).toMatchObject({
      folder: ['someone', 'Some-GGUF'],
      files: [{ role: 'model', repo: 'someone/Some-GGUF', file: 'q4/model.gguf' }],
    });
  });

  it('rejects unknown names and paths that would leave the models folder', () => {
    for (const reference of ['no-such-model', '../x:y.gguf', 'a/b:../../etc/passwd', 'a/b/c:file.gguf', 'a/..:f.gguf', 'a/b:']) {
      expect(() => resolveModelReference(reference), reference).toThrow(ModelReferenceError);
    }
  });
});

describe('planLocalModels', () => {
  const llama = (entry: Record<string, unknown>) => ({ provider: 'llama', ...entry });

  it('adds the catalog default as "local" when there is no config file', () => {
    const modelsDir = temporaryDir();
    const plan = planLocalModels(parseConfig({}, {}), { provider: 'llama', modelsDir, settings: settings({ useDefaultModel: true }) });
    const source = resolveModelReference(DEFAULT_CATALOG_MODEL);
    expect(plan.config.models).toEqual([
      {
        id: 'local',
        provider: 'llama',
        model: DEFAULT_CATALOG_MODEL,
        modelPath: join(modelsDir, DEFAULT_CATALOG_MODEL, source.files[0]!.file),
        mmprojPath: join(modelsDir, DEFAULT_CATALOG_MODEL, source.files[1]!.file),
      },
    ]);
    expect(plan.pending.map((pending) => [pending.source.name, pending.ids])).toEqual([[DEFAULT_CATALOG_MODEL, ['local']]]);
  });

  it('adds nothing without the engine settings (tests, embedders) or when the config has models', () => {
    const config = parseConfig({ models: [{ id: 'x', provider: 'openai-compatible', model: 'm', baseUrl: 'http://127.0.0.1:1/v1' }] }, {});
    expect(
      planLocalModels(parseConfig({}, {}), { provider: 'llama', modelsDir: temporaryDir(), settings: undefined }).config.models,
    ).toEqual([]);
    expect(planLocalModels(config, { provider: 'llama', modelsDir: temporaryDir(), settings: settings() }).config.models).toEqual(
      config.models,
    );
  });

  it('serves --model-path as the default model "local", with no download, next to the configured models', () => {
    const config = parseConfig({ defaultModel: 'x', models: [{ id: 'x', provider: 'openai-compatible', model: 'm' }] }, {});
    const plan = planLocalModels(config, {
      provider: 'llama',
      modelsDir: temporaryDir(),
      settings: settings({ modelPath: '/models/a.gguf', mmprojPath: '/models/mmproj-a.gguf', useDefaultModel: false }),
    });
    expect(plan.config.models.at(-1)).toEqual({
      id: 'local',
      provider: 'llama',
      modelPath: '/models/a.gguf',
      mmprojPath: '/models/mmproj-a.gguf',
    });
    expect(plan.config.defaultModel).toBe('local');
    expect(plan.pending).toEqual([]);
    const taken = parseConfig({ models: [llama({ id: 'local', modelPath: '/x.gguf' })] }, {});
    expect(() =>
      planLocalModels(taken, { provider: 'llama', modelsDir: temporaryDir(), settings: settings({ modelPath: '/a.gguf' }) }),
    ).toThrow(ConfigError);
  });

  it('fills in paths for catalog and owner/repo:file entries, shares one pull between entries, and sets preload on llama entries only', () => {
    const modelsDir = temporaryDir();
    const config = parseConfig(
      {
        models: [
          llama({ id: 'a', model: 'smolvlm2-256m' }),
          llama({ id: 'b', model: 'smolvlm2-256m', contextSize: 2048 }),
          llama({ id: 'c', model: 'someone/Tiny-GGUF:tiny.gguf' }),
          llama({ id: 'd', model: 'display name', modelPath: '/own/file.gguf' }),
          { id: 'e', provider: 'openai-compatible', model: 'smolvlm2-256m' },
        ],
      },
      {},
    );
    const plan = planLocalModels(config, { provider: 'llama', modelsDir, settings: settings({ preload: true }) });
    const [a, b, c, d, e] = plan.config.models;
    expect(a).toMatchObject({ modelPath: join(modelsDir, 'smolvlm2-256m', 'SmolVLM2-256M-Video-Instruct-Q8_0.gguf'), preload: true });
    expect(b).toMatchObject({
      contextSize: 2048,
      mmprojPath: join(modelsDir, 'smolvlm2-256m', 'mmproj-SmolVLM2-256M-Video-Instruct-Q8_0.gguf'),
    });
    expect(c).toMatchObject({ modelPath: join(modelsDir, 'someone', 'Tiny-GGUF', 'tiny.gguf') });
    expect(c).not.toHaveProperty('mmprojPath');
    expect(d).toEqual({ id: 'd', provider: 'llama', model: 'display name', modelPath: '/own/file.gguf', preload: true });
    expect(e).toEqual({ id: 'e', provider: 'openai-compatible', model: 'smolvlm2-256m' });
    expect(plan.pending.map((pending) => [pending.source.name, pending.ids])).toEqual([
      ['smolvlm2-256m', ['a', 'b']],
      ['someone/Tiny-GGUF:tiny.gguf', ['c']],
    ]);
  });

  it('has nothing pending once the files are in place, and names the entry when its model is unknown', () => {
    const modelsDir = temporaryDir();
    mkdirSync(join(modelsDir, 'someone', 'Tiny-GGUF'), { recursive: true });
    writeFileSync(join(modelsDir, 'someone', 'Tiny-GGUF', 'tiny.gguf'), 'x');
    const present = parseConfig({ models: [llama({ id: 'c', model: 'someone/Tiny-GGUF:tiny.gguf' })] }, {});
    expect(planLocalModels(present, { provider: 'llama', modelsDir, settings: undefined }).pending).toEqual([]);
    const unknown = parseConfig({ models: [llama({ id: 'z', model: 'not-in-catalog' })] }, {});
    expect(() => planLocalModels(unknown, { provider: 'llama', modelsDir, settings: undefined })).toThrow(/models\[0\]\.model/);
  });
});

describe('local model settings', () => {
  it('reads --model-path / OCULAR_MODEL_PATH (which must exist), --preload / OCULAR_PRELOAD, HF_ENDPOINT and HF_TOKEN', () => {
    const dir = temporaryDir();
    const model = join(dir, 'model.gguf');
    writeFileSync(model, 'gguf');
    expect(resolveLocalModelSettings({}, { OCULAR_MODEL_PATH: model, OCULAR_PRELOAD: '1', HF_TOKEN: 'hf_x' }, false)).toEqual({
      modelPath: model,
      mmprojPath: undefined,
      preload: true,
      useDefaultModel: true,
      hub: { endpoint: 'https://huggingface.co', token: 'hf_x' },
    });
    expect(resolveLocalModelSettings({ preload: false }, { OCULAR_PRELOAD: 'true' }, true)).toMatchObject({
      preload: false,
      useDefaultModel: false,
    });
    expect(() => resolveLocalModelSettings({ modelPath: join(dir, 'missing.gguf') }, {}, false)).toThrow(/--model-path.*no file/);
    expect(() => resolveLocalModelSettings({ mmprojPath: model }, {}, false)).toThrow(/--mmproj-path/);
    expect(resolveHubSettings({ HF_ENDPOINT: 'http://mirror.local:8080/' }).endpoint).toBe('http://mirror.local:8080');
    expect(() => resolveHubSettings({ HF_ENDPOINT: 'ftp://x' })).toThrow(/HF_ENDPOINT/);
    expect(() => resolveHubSettings({ HF_ENDPOINT: 'not a url' })).toThrow(/HF_ENDPOINT/);
  });
});

describe('model store', () => {
  it('lists catalog models with their state and other pulled files, and removes them', async () => {
    const modelsDir = temporaryDir();
    const source = resolveModelReference('smolvlm2-256m');
    mkdirSync(join(modelsDir, 'smolvlm2-256m'), { recursive: true });
    // Both unfinished (a complete file of the wrong size would list as `wrong-size`: see model-store.test.ts).
    writeFileSync(join(modelsDir, 'smolvlm2-256m', `${source.files[0]!.file}.part`), 'weights');
    writeFileSync(join(modelsDir, 'smolvlm2-256m', `${source.files[1]!.file}.part`), 'half');
    mkdirSync(join(modelsDir, 'someone', 'Tiny-GGUF'), { recursive: true });
    writeFileSync(join(modelsDir, 'someone', 'Tiny-GGUF', 'tiny.gguf'), 'tiny');

    const listed = listModels(modelsDir);
    expect(listed.find((model) => model.name === 'smolvlm2-256m')).toMatchObject({ status: 'partial', inCatalog: true });
    expect(listed.find((model) => model.name === 'smolvlm2-256m')?.files[1]).toMatchObject({ present: false, partialBytes: 4 });
    expect(listed.find((model) => model.name === DEFAULT_CATALOG_MODEL)).toMatchObject({ status: 'missing', isDefault: true });
    expect(listed.find((model) => model.name === 'someone/Tiny-GGUF:tiny.gguf')).toMatchObject({ status: 'present', inCatalog: false });

    expect(await removeModel(modelsDir, 'smolvlm2-256m')).toEqual([join(modelsDir, 'smolvlm2-256m')]);
    expect(await removeModel(modelsDir, 'someone/Tiny-GGUF:tiny.gguf')).toEqual([join(modelsDir, 'someone', 'Tiny-GGUF', 'tiny.gguf')]);
    expect(listModels(modelsDir).filter((model) => model.status !== 'missing')).toEqual([]);
    expect(await removeModel(modelsDir, 'smolvlm2-256m')).toEqual([]);
    await expect(removeModel(modelsDir, '../..')).rejects.toThrow(ModelReferenceError);
  });
});
