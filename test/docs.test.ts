import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ModelRegistry } from '../src/chat/model-registry.ts';
import { loadConfigFile, parseConfig } from '../src/config/load-config.ts';
import { transcriberSettingsSchema } from '../src/perception/speech/transcriber.ts';
import { PROVIDERS } from '../src/providers/index.ts';

const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');

describe('README and examples stay true', () => {
  it('the README config example validates and builds every model', async () => {
    const block = /## Models[\s\S]*?```json\n([\s\S]*?)```/.exec(readme)?.[1];
    expect(block).toBeDefined();
    const env = { ANTHROPIC_API_KEY: 'a', GEMINI_API_KEY: 'g', REKA_API_KEY: 'r' };
    const registry = new ModelRegistry(parseConfig(JSON.parse(block!), env), PROVIDERS);
    expect(registry.names).toContain('reka-flash');
    await registry.close();
  });

  it('ocular.config.example.json validates without any environment', async () => {
    const config = loadConfigFile(new URL('../ocular.config.example.json', import.meta.url).pathname, {});
    const registry = new ModelRegistry(config, PROVIDERS);
    expect(registry.defaultModel).toBe('local');
    await registry.close();
  });

  it('the README media settings example validates, transcriber included', () => {
    const block = /## Media[\s\S]*?```json\n([\s\S]*?)```/.exec(readme)?.[1];
    expect(block).toBeDefined();
    const config = parseConfig(JSON.parse(block!), {});
    expect(config.media.allowHosts).toEqual(['minio.internal:9000']);
    expect(transcriberSettingsSchema.parse(config.transcriber)).toMatchObject({ provider: 'openai-compatible' });
  });

  it('the README indexing settings example validates and shows every default', () => {
    const block = /## Video library[\s\S]*?```json\n([\s\S]*?)```/.exec(readme)?.[1];
    expect(block).toBeDefined();
    const shown = parseConfig(JSON.parse(block!), {});
    const defaults = parseConfig({}, {});
    expect(shown.indexing).toEqual(defaults.indexing);
    expect(shown.vision).toEqual(defaults.vision);
    expect(shown.limits.maxUploadBytes).toBe(defaults.limits.maxUploadBytes);
  });

  it('the README shows the two set-up commands', () => {
    expect(readme).toContain('npm install && npm start');
    expect(readme).toContain('npm test');
  });
});
