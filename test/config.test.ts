import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ModelRegistry } from '../src/chat/model-registry.ts';
import { ConfigError, loadConfigFile, parseConfig, substituteEnvironment } from '../src/config/load-config.ts';
import { resolveServerSettings, type ServeFlags } from '../src/config/settings.ts';
import { PROVIDERS } from '../src/providers/index.ts';
import { createLogger } from '../src/server/logger.ts';
import { startServer } from '../src/server/serve.ts';
import { OFFLINE_ANALYZER_CATALOG } from './helpers/ocular.ts';

/** Runs `action`, asserts it throws a ConfigError and returns its message (field paths are the contract). */
function configErrorOf(action: () => unknown): string {
  let thrown: unknown;
  try {
    action();
  } catch (error) {
    thrown = error;
  }
  expect(thrown, 'expected a ConfigError to be thrown').toBeInstanceOf(ConfigError);
  return (thrown as ConfigError).message;
}

const localModel = { id: 'local', provider: 'openai-compatible', model: 'qwen', baseUrl: 'http://127.0.0.1:11434/v1' };

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'ocular-config-test-'));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

function writeConfig(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

describe('environment substitution', () => {
  it('replaces ${VAR} and ${VAR:-default} in nested strings and arrays', () => {
    const raw = {
      models: [{ ...localModel, apiKey: '${UPSTREAM_KEY}', headers: { 'x-team': 'team-${TEAM:-blue}', 'x-both': '${A}/${B:-b}' } }],
      $schema: '${SCHEMA:-./schema.json}',
    };
    const config = parseConfig(raw, { UPSTREAM_KEY: 'sk-123', A: 'a' });
    const model = config.models[0] as Record<string, unknown>;
    expect(model.apiKey).toBe('sk-123');
    expect(model.headers).toEqual({ 'x-team': 'team-blue', 'x-both': 'a/b' });
    expect(config.$schema).toBe('./schema.json');

    expect(substituteEnvironment({ list: ['${X}', ['${Y:-y}', 3, null, true]] }, { X: 'x' })).toEqual({
      list: ['x', ['y', 3, null, true]],
    });
  });

  it('prefers a set variable over the default and treats an empty one as unset', () => {
    expect(substituteEnvironment('${TEAM:-blue}', { TEAM: 'red' })).toBe('red');
    expect(substituteEnvironment('${TEAM:-blue}', { TEAM: '' })).toBe('blue');
    expect(substituteEnvironment('${TEAM:-}', {})).toBe('');
  });

  it('fails on an unset variable, naming the field path', () => {
    const message = configErrorOf(() => parseConfig({ models: [{ ...localModel, apiKey: '${UPSTREAM_KEY}' }] }, {}));
    expect(message).toContain('models[0].apiKey');
    expect(message).toContain('UPSTREAM_KEY');

    const nested = configErrorOf(() =>
      parseConfig({ models: [localModel, { ...localModel, id: 'b', headers: { x: 'v-${MISSING}' } }] }, {}),
    );
    expect(nested).toContain('models[1].headers.x');
  });

  it('fails on an unset variable with an empty value, naming the field path', () => {
    expect(configErrorOf(() => parseConfig({ models: [{ ...localModel, apiKey: '${KEY}' }] }, { KEY: '' }))).toContain('models[0].apiKey');
  });

  it('substitutes in a config file and names the file and the field when a variable is missing', () => {
    const path = writeConfig('env.json', JSON.stringify({ models: [{ ...localModel, apiKey: '${UPSTREAM_KEY}' }] }));
    expect((loadConfigFile(path, { UPSTREAM_KEY: 'k' }).models[0] as Record<string, unknown>).apiKey).toBe('k');
    const message = configErrorOf(() => loadConfigFile(path, {}));
    expect(message).toContain(path);
    expect(message).toContain('models[0].apiKey');
  });
});

describe('config file validation', () => {
  it('keeps blobs in folders unless blobs names an S3 bucket, whose settings it checks', () => {
    expect(parseConfig({}, {}).blobs).toEqual({ kind: 'fs' });
    expect(parseConfig({ blobs: { kind: 's3', bucket: 'ocular-media' } }, {}).blobs).toEqual({
      kind: 's3',
      bucket: 'ocular-media',
      prefix: '',
      region: 'us-east-1',
      forcePathStyle: false,
      redirect: false,
      partSizeMiB: 8,
    });
    const s3 = { kind: 's3', bucket: 'ocular-media' };
    expect(configErrorOf(() => parseConfig({ blobs: { kind: 's3' } }, {}))).toContain('blobs.bucket');
    expect(configErrorOf(() => parseConfig({ blobs: { ...s3, bucket: 'Has_Capitals' } }, {}))).toContain('blobs.bucket');
    expect(configErrorOf(() => parseConfig({ blobs: { ...s3, prefix: 'no-slash' } }, {}))).toContain('blobs.prefix');
    expect(configErrorOf(() => parseConfig({ blobs: { ...s3, prefix: '../up/' } }, {}))).toContain('blobs.prefix');
    expect(configErrorOf(() => parseConfig({ blobs: { ...s3, endpoint: 'ftp://minio:9000' } }, {}))).toContain('blobs.endpoint');
    expect(configErrorOf(() => parseConfig({ blobs: { ...s3, partSizeMiB: 4 } }, {}))).toContain('blobs.partSizeMiB');
    expect(configErrorOf(() => parseConfig({ blobs: { ...s3, secret: 'x' } }, {}))).toContain('blobs');
    expect(configErrorOf(() => parseConfig({ blobs: { kind: 'gcs' } }, {}))).toContain('blobs');
  });

  it('keeps jobs in SQLite unless the queue names a Redis, whose url it checks', () => {
    expect(parseConfig({}, {}).queue).toEqual({ kind: 'database' });
    expect(parseConfig({ queue: { kind: 'redis', url: 'redis://cache:6379/2' } }, {}).queue).toEqual({
      kind: 'redis',
      url: 'redis://cache:6379/2',
      prefix: 'ocular',
    });
    expect(configErrorOf(() => parseConfig({ queue: { kind: 'redis' } }, {}))).toContain('queue.url');
    expect(configErrorOf(() => parseConfig({ queue: { kind: 'redis', url: 'http://cache:6379' } }, {}))).toContain('queue.url');
    expect(configErrorOf(() => parseConfig({ queue: { kind: 'redis', url: 'redis://cache', prefix: 'a:b' } }, {}))).toContain(
      'queue.prefix',
    );
    expect(configErrorOf(() => parseConfig({ queue: { kind: 'kafka' } }, {}))).toContain('queue');
  });

  it('rejects a file that is not JSON, naming the file', () => {
    const path = writeConfig('broken.json', '{ "models": [ }');
    const message = configErrorOf(() => loadConfigFile(path, {}));
    expect(message).toContain(path);
    expect(message).toMatch(/not valid JSON/);
  });

  it('rejects a missing file, naming the file', () => {
    const path = join(dir, 'does-not-exist.json');
    expect(configErrorOf(() => loadConfigFile(path, {}))).toContain(path);
  });

  it('rejects unknown top-level fields (strict)', () => {
    expect(configErrorOf(() => parseConfig({ model: [localModel] }, {}))).toMatch(/model/);
    const message = configErrorOf(() => parseConfig({ models: [], defaultModle: 'x' }, {}));
    expect(message).toContain('defaultModle');
  });

  it('rejects unknown fields in limits, naming limits', () => {
    expect(configErrorOf(() => parseConfig({ limits: { maxMedia: 3 } }, {}))).toContain('limits');
    expect(configErrorOf(() => parseConfig({ limits: { maxMessages: 0 } }, {}))).toContain('limits.maxMessages');
  });

  it('names the entry of a model with a bad id or no provider', () => {
    expect(configErrorOf(() => parseConfig({ models: [localModel, { ...localModel, id: 'has space' }] }, {}))).toContain('models[1].id');
    expect(configErrorOf(() => parseConfig({ models: [{ id: 'x' }] }, {}))).toContain('models[0].provider');
  });

  it('rejects duplicate model ids, naming the second entry', () => {
    const message = configErrorOf(() => parseConfig({ models: [localModel, { ...localModel, model: 'other' }] }, {}));
    expect(message).toContain('models[1].id');
    expect(message).toContain('local');
  });

  it('rejects an alias to an unknown model id', () => {
    expect(configErrorOf(() => parseConfig({ models: [localModel], aliases: { fast: 'nope' } }, {}))).toContain('aliases.fast');
  });

  it('rejects an alias that shadows a model id', () => {
    const second = { ...localModel, id: 'second' };
    expect(configErrorOf(() => parseConfig({ models: [localModel, second], aliases: { local: 'second' } }, {}))).toContain('aliases.local');
  });

  it('rejects an unknown defaultModel but accepts an id or an alias', () => {
    expect(configErrorOf(() => parseConfig({ models: [localModel], defaultModel: 'nope' }, {}))).toContain('defaultModel');
    expect(parseConfig({ models: [localModel], defaultModel: 'local' }, {}).defaultModel).toBe('local');
    expect(parseConfig({ models: [localModel], aliases: { fast: 'local' }, defaultModel: 'fast' }, {}).defaultModel).toBe('fast');
  });

  it('fills limits with their defaults, also around a partial limits object', () => {
    const defaults = {
      maxMediaPerTurn: 6,
      maxRequestBytes: 52_428_800,
      requestBodyTimeoutMs: 120_000,
      maxOutputTokens: 32_768,
      maxMessages: 1000,
      maxUploadBytes: 2 ** 31,
      maxConcurrentUploads: 8,
    };
    const empty = parseConfig({}, {});
    expect(empty.limits).toEqual(defaults);
    expect(empty.models).toEqual([]);
    expect(empty.aliases).toEqual({});
    // The defaults for a missing `limits` and for an empty one must agree.
    expect(parseConfig({ limits: {} }, {}).limits).toEqual(defaults);
    expect(parseConfig({ limits: { maxMessages: 5 } }, {}).limits).toEqual({ ...defaults, maxMessages: 5 });
    expect(parseConfig({ limits: { maxMediaPerTurn: 2 } }, {}).limits).toEqual({ ...defaults, maxMediaPerTurn: 2 });
  });

  it('validates indexing and vision settings, naming the field', () => {
    const indexing = parseConfig({}, {}).indexing;
    expect(indexing).toMatchObject({
      concurrency: 1,
      minSegmentSeconds: 5,
      maxSegmentSeconds: 15,
      ocr: { enabled: true },
      objects: { enabled: true },
    });
    expect(configErrorOf(() => parseConfig({ indexing: { minSegmentSeconds: 10, maxSegmentSeconds: 15 } }, {}))).toMatch(
      /indexing\.maxSegmentSeconds/,
    );
    expect(configErrorOf(() => parseConfig({ indexing: { ocr: { enabled: 'yes' } } }, {}))).toMatch(/indexing\.ocr\.enabled/);
    expect(configErrorOf(() => parseConfig({ indexing: { concurrency: 0 } }, {}))).toMatch(/indexing\.concurrency/);
    expect(configErrorOf(() => parseConfig({ vision: { webhookSecret: 'short' } }, {}))).toMatch(/vision\.webhookSecret/);
    expect(configErrorOf(() => parseConfig({ vision: { publicBaseUrl: 'https://example.com/ocular' } }, {}))).toMatch(
      /vision\.publicBaseUrl/,
    );
    expect(configErrorOf(() => parseConfig({ vision: { publicBaseUrl: 'ftp://example.com' } }, {}))).toMatch(/vision\.publicBaseUrl/);
    expect(parseConfig({ vision: { publicBaseUrl: 'https://ocular.example.com/' } }, {}).vision.publicBaseUrl).toBe(
      'https://ocular.example.com',
    );
    expect(configErrorOf(() => parseConfig({ limits: { maxUploadBytes: 10 } }, {}))).toMatch(/limits\.maxUploadBytes/);
  });

  it('returns a deeply frozen config', () => {
    const config = parseConfig({ models: [{ ...localModel, headers: { a: 'b' } }], aliases: { fast: 'local' } }, {});
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.models)).toBe(true);
    expect(Object.isFrozen(config.models[0])).toBe(true);
    expect(Object.isFrozen((config.models[0] as Record<string, unknown>).headers)).toBe(true);
    expect(Object.isFrozen(config.limits)).toBe(true);
    expect(Object.isFrozen(config.aliases)).toBe(true);
    expect(() => {
      (config.limits as { maxMessages: number }).maxMessages = 1;
    }).toThrow(TypeError);
  });
});

describe('ModelRegistry with the real providers', () => {
  it('builds the configured models and their aliases', async () => {
    const config = parseConfig({ models: [localModel], aliases: { fast: 'local' } }, {});
    const registry = new ModelRegistry(config, PROVIDERS);
    try {
      expect(registry.names).toEqual(['local', 'fast']);
      expect(registry.defaultModel).toBe('local');
      expect(registry.resolve('fast').model.provider).toBe('openai-compatible');
    } finally {
      await registry.close();
    }
  });

  it('rejects an unknown provider, naming models[i].provider', () => {
    const config = parseConfig({ models: [localModel, { id: 'x', provider: 'no-such-provider', model: 'm' }] }, {});
    const message = configErrorOf(() => new ModelRegistry(config, PROVIDERS));
    expect(message).toContain('models[1].provider');
    expect(message).toContain('no-such-provider');
  });

  it('rejects an openai-compatible entry without baseUrl, naming models[i].baseUrl', () => {
    const { baseUrl: _omitted, ...withoutUrl } = localModel;
    const config = parseConfig(
      {
        models: [
          { ...localModel, id: 'first' },
          { ...withoutUrl, id: 'second' },
        ],
      },
      {},
    );
    expect(configErrorOf(() => new ModelRegistry(config, PROVIDERS))).toContain('models[1].baseUrl');
  });

  it('rejects a bad or non-http baseUrl, naming models[i].baseUrl', () => {
    for (const baseUrl of ['not a url', 'ftp://example.com/v1']) {
      const config = parseConfig({ models: [{ ...localModel, baseUrl }] }, {});
      expect(configErrorOf(() => new ModelRegistry(config, PROVIDERS))).toContain('models[0].baseUrl');
    }
  });

  it('rejects fields the provider does not know, naming them', () => {
    const config = parseConfig({ models: [{ ...localModel, temprature: 1 }] }, {});
    expect(configErrorOf(() => new ModelRegistry(config, PROVIDERS))).toMatch(/models\[0\].*temprature/);
  });
});

describe('resolveServerSettings', () => {
  /** Always names a config file, so a stray ./ocular.config.json in the working directory cannot leak in. */
  const configPath = () => writeConfig('settings.json', '{}');

  it('uses defaults when neither flags nor environment say anything', () => {
    const settings = resolveServerSettings({ config: configPath() }, {});
    expect(settings.host).toBe('127.0.0.1');
    expect(settings.port).toBe(8080);
    expect(settings.dataDir).toBe(resolve('./data'));
    expect(settings.envApiKeys).toEqual([]);
    expect(settings.auth).toBe(true);
    expect(settings.config.models).toEqual([]);
  });

  it('takes the environment over defaults', () => {
    const path = configPath();
    const settings = resolveServerSettings(
      {},
      { OCULAR_HOST: '::1', OCULAR_PORT: '9000', OCULAR_DATA_DIR: '/tmp/ocular-env', OCULAR_CONFIG: path },
    );
    expect(settings).toMatchObject({ host: '::1', port: 9000, dataDir: '/tmp/ocular-env', configPath: resolve(path) });
  });

  it('takes flags over the environment', () => {
    const flagConfig = writeConfig('flag.json', JSON.stringify({ models: [localModel] }));
    const envConfig = writeConfig('env-only.json', '{}');
    const flags: ServeFlags = { host: '127.0.0.2', port: '7000', data: '/tmp/ocular-flag', config: flagConfig };
    const env = { OCULAR_HOST: '::1', OCULAR_PORT: '9000', OCULAR_DATA_DIR: '/tmp/ocular-env', OCULAR_CONFIG: envConfig };
    const settings = resolveServerSettings(flags, env);
    expect(settings).toMatchObject({ host: '127.0.0.2', port: 7000, dataDir: '/tmp/ocular-flag', configPath: resolve(flagConfig) });
    expect(settings.config.models.map((model) => model.id)).toEqual(['local']);
  });

  it('accepts port 0 (any free port) and rejects what is not a port, naming the setting', () => {
    expect(resolveServerSettings({ port: '0', config: configPath() }, {}).port).toBe(0);
    for (const port of ['70000', '-1', 'http', '80.5']) {
      expect(configErrorOf(() => resolveServerSettings({ port, config: configPath() }, {}))).toContain('--port');
    }
    expect(configErrorOf(() => resolveServerSettings({ config: configPath() }, { OCULAR_PORT: 'eighty' }))).toContain('OCULAR_PORT');
  });

  it('reports config file errors with the field path', () => {
    const path = writeConfig('bad-field.json', JSON.stringify({ models: [localModel], aliases: { fast: 'missing' } }));
    expect(configErrorOf(() => resolveServerSettings({ config: path }, {}))).toContain('aliases.fast');
  });

  it('splits OCULAR_API_KEYS on commas, trimming and dropping empty entries', () => {
    const settings = resolveServerSettings({ config: configPath() }, { OCULAR_API_KEYS: ' key-a , key-b,,key-c ,' });
    expect(settings.envApiKeys).toEqual(['key-a', 'key-b', 'key-c']);
    expect(resolveServerSettings({ config: configPath() }, { OCULAR_API_KEYS: '' }).envApiKeys).toEqual([]);
  });

  it('refuses --no-auth on a non-loopback host', () => {
    for (const host of ['0.0.0.0', '::', '192.168.1.10']) {
      expect(configErrorOf(() => resolveServerSettings({ auth: false, host, config: configPath() }, {}))).toContain('--no-auth');
    }
    // The environment equivalents are refused just the same.
    expect(
      configErrorOf(() => resolveServerSettings({ config: configPath() }, { OCULAR_NO_AUTH: 'true', OCULAR_HOST: '0.0.0.0' })),
    ).toContain('--no-auth');
  });

  it('allows --no-auth on loopback hosts', () => {
    for (const host of ['127.0.0.1', '::1', 'localhost']) {
      expect(resolveServerSettings({ auth: false, host, config: configPath() }, {}).auth).toBe(false);
    }
    expect(resolveServerSettings({ config: configPath() }, { OCULAR_NO_AUTH: '1' }).auth).toBe(false);
  });

  it('lets an explicit --auth flag win over OCULAR_NO_AUTH', () => {
    expect(resolveServerSettings({ auth: true, host: '0.0.0.0', config: configPath() }, { OCULAR_NO_AUTH: '1' }).auth).toBe(true);
  });

  it('treats empty OCULAR_* variables as unset rather than binding every interface', () => {
    const settings = resolveServerSettings({ config: configPath() }, { OCULAR_HOST: '', OCULAR_PORT: '', OCULAR_DATA_DIR: '' });
    expect(settings.host).toBe('127.0.0.1');
    expect(settings.port).toBe(8080);
    expect(settings.dataDir).toBe(resolve('./data'));
    expect(configErrorOf(() => resolveServerSettings({ host: '', config: configPath() }, {}))).toContain('--host');
  });

  it('validates the log level, naming OCULAR_LOG_LEVEL', () => {
    expect(resolveServerSettings({ config: configPath() }, {}).logLevel).toBe('info');
    expect(resolveServerSettings({ config: configPath() }, { OCULAR_LOG_LEVEL: 'debug' }).logLevel).toBe('debug');
    expect(configErrorOf(() => resolveServerSettings({ config: configPath() }, { OCULAR_LOG_LEVEL: 'verbose' }))).toContain(
      'OCULAR_LOG_LEVEL',
    );
  });
});

describe('a config file without models keeps the default model', () => {
  /** A loopback port nothing listens on: the default model's background download fails at once, offline. */
  async function closedPort(): Promise<number> {
    const probe = createServer();
    await new Promise<void>((done) => probe.listen(0, '127.0.0.1', done));
    const { port } = probe.address() as AddressInfo;
    await new Promise<void>((done) => probe.close(() => done()));
    return port;
  }

  it('serves `local` when the file only sets media; a `models` list of its own (even empty) replaces it', () => {
    const mediaOnly = writeConfig('media-only.json', JSON.stringify({ media: { allowHosts: ['minio.internal:9000'] } }));
    expect(resolveServerSettings({ config: mediaOnly }, {}).localModels?.useDefaultModel).toBe(true);
    expect(resolveServerSettings({ config: writeConfig('no-models.json', '{}') }, {}).localModels?.useDefaultModel).toBe(true);
    const own = writeConfig('own-models.json', JSON.stringify({ models: [localModel] }));
    expect(resolveServerSettings({ config: own }, {}).localModels?.useDefaultModel).toBe(false);
    const none = writeConfig('empty-models.json', JSON.stringify({ models: [] }));
    expect(resolveServerSettings({ config: none }, {}).localModels?.useDefaultModel).toBe(false);
  });

  it('answers chat for the default model over HTTP (503 while its weights download), not 404', async () => {
    const mediaOnly = writeConfig('media-only-http.json', JSON.stringify({ media: { allowHosts: ['minio.internal:9000'] } }));
    const dataDir = mkdtempSync(join(dir, 'data-'));
    const env = { HF_ENDPOINT: `http://127.0.0.1:${await closedPort()}`, OCULAR_API_KEYS: 'ocu_config_test_key_0123456789' };
    const settings = resolveServerSettings({ config: mediaOnly, port: '0', data: dataDir, logLevel: 'silent' }, env);
    const server = await startServer(settings, createLogger('silent'), {
      pullRetryDelaysMs: [],
      analyzerCatalog: OFFLINE_ANALYZER_CATALOG,
    });
    try {
      const headers = { 'content-type': 'application/json', 'x-api-key': 'ocu_config_test_key_0123456789' };
      const models = (await (await fetch(`${server.url}/v1/models`, { headers })).json()) as Array<{ id: string }>;
      expect(models.map((model) => model.id)).toEqual(['local']);
      const response = await fetch(`${server.url}/v1/chat`, {
        method: 'POST',
        headers,
        body: JSON.stringify({ messages: [{ role: 'user', content: 'hi' }] }),
      });
      expect(response.status).toBe(503);
      expect(((await response.json()) as { error: { type: string } }).error.type).toBe('unavailable_error');
    } finally {
      await server.close(1_000);
    }
  });
});
