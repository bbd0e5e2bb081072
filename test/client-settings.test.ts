import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../src/config/load-config.ts';
import { BOOTSTRAP_KEY_FILE, resolveClientSettings } from '../src/config/settings.ts';

const dataDir = mkdtempSync(join(tmpdir(), 'ocular-client-settings-'));
afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

describe('client settings (ocular mcp)', () => {
  it('takes flags before the environment', () => {
    const env = { OCULAR_BASE_URL: 'http://env.example:1', OCULAR_API_KEY: 'env-key' };
    expect(resolveClientSettings({ url: 'https://flag.example/base/', apiKey: 'flag-key' }, env)).toEqual({
      baseUrl: 'https://flag.example/base',
      apiKey: 'flag-key',
    });
    expect(resolveClientSettings({}, env)).toEqual({ baseUrl: 'http://env.example:1', apiKey: 'env-key' });
  });

  it("defaults to the local server's address and its bootstrap key", () => {
    expect(resolveClientSettings({ data: dataDir }, {})).toEqual({ baseUrl: 'http://127.0.0.1:8080', apiKey: undefined });
    writeFileSync(join(dataDir, BOOTSTRAP_KEY_FILE), 'ocu_bootstrap_key\n');
    expect(resolveClientSettings({}, { OCULAR_DATA_DIR: dataDir, OCULAR_PORT: '9090' })).toEqual({
      baseUrl: 'http://127.0.0.1:9090',
      apiKey: 'ocu_bootstrap_key',
    });
  });

  it('refuses what is not an http(s) URL', () => {
    expect(() => resolveClientSettings({ url: 'not a url' }, {})).toThrow(ConfigError);
    expect(() => resolveClientSettings({ url: 'ftp://example.com' }, {})).toThrow(ConfigError);
  });
});
