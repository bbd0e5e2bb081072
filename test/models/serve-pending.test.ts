import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import sharp from 'sharp';
import { z } from 'zod';
import { parseConfig } from '../../src/config/load-config.ts';
import type { LocalModelSettings, ServerSettings } from '../../src/config/settings.ts';
import type { ProviderDefinition } from '../../src/provider-utils/provider-definition.ts';
import { createLogger } from '../../src/server/logger.ts';
import { startServer, type RunningServer } from '../../src/server/serve.ts';
import type { LanguageModel } from '../../src/spec/provider.ts';
import { startFakeHub, testBytes } from './fake-hub.ts';

const KEY = 'ocu_models_test_key_0123456789';
const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A provider that answers with a fixed text, recording the settings it was built with. */
function fakeProvider(name: string, answer: string, built: Array<Record<string, unknown>>): ProviderDefinition<never> {
  const definition = {
    name,
    settingsSchema: z.looseObject({ id: z.string(), provider: z.literal(name), modelPath: z.string().optional() }),
    defaultCapabilities: { image: true, video: false, audio: false, pdf: false, tools: false },
    create: (settings: Record<string, unknown>): LanguageModel => {
      built.push(settings);
      const usage = { inputTokens: 1, outputTokens: 1 };
      return {
        provider: name,
        upstreamModel: String(settings.model ?? name),
        capabilities: definition.defaultCapabilities,
        generate: async () => ({ text: answer, toolCalls: [], finishReason: 'stop', usage }),
        stream: async () =>
          new ReadableStream({
            start(controller) {
              controller.enqueue({ type: 'text-delta', text: answer });
              controller.enqueue({ type: 'finish', finishReason: 'stop', usage });
              controller.close();
            },
          }),
      };
    },
  };
  return definition as unknown as ProviderDefinition<never>;
}

async function start(config: unknown, localModels: LocalModelSettings, built: Array<Record<string, unknown>>): Promise<RunningServer> {
  const dataDir = mkdtempSync(join(tmpdir(), 'ocular-serve-models-'));
  cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
  const settings: ServerSettings = {
    host: '127.0.0.1',
    port: 0,
    dataDir,
    logLevel: 'silent',
    binaries: { searchPath: process.env.PATH ?? '' },
    configPath: undefined,
    envApiKeys: [KEY],
    auth: true,
    config: parseConfig(config, {}),
    localModels,
  };
  const providers = new Map([
    ['llama', fakeProvider('llama', 'answer from the local model', built)],
    ['echo', fakeProvider('echo', 'answer from another model', built)],
  ]);
  const server = await startServer(settings, createLogger('silent'), { providers, pullRetryDelaysMs: [] });
  cleanups.push(() => server.close(1_000));
  return server;
}

const chat = (server: RunningServer, model: string) =>
  fetch(`${server.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}` },
    body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }] }),
  });

interface ErrorBody {
  error: { type: string; message: string };
}

const localModels = (endpoint: string, overrides: Partial<LocalModelSettings> = {}): LocalModelSettings => ({
  modelPath: undefined,
  mmprojPath: undefined,
  preload: false,
  useDefaultModel: false,
  hub: { endpoint, token: undefined },
  ...overrides,
});

describe('serving a model whose files are still downloading', () => {
  it('answers 503 unavailable_error with progress and Retry-After, serves everything else, then the built model', async () => {
    const hub = await startFakeHub();
    cleanups.push(() => hub.close());
    const content = testBytes(80_000, 41);
    hub.add('test-org/tiny-GGUF', 'tiny.gguf', { content, bytesPerSecond: 25_000 });
    const built: Array<Record<string, unknown>> = [];
    const server = await start(
      {
        models: [
          { id: 'local', provider: 'llama', model: 'test-org/tiny-GGUF:tiny.gguf' },
          { id: 'other', provider: 'echo' },
        ],
      },
      localModels(hub.url, { preload: true }),
      built,
    );

    // Wait until bytes flow, so the message carries a percentage.
    let pending: Response | undefined;
    let body: ErrorBody | undefined;
    for (const deadline = Date.now() + 5_000; Date.now() < deadline; await new Promise((resolve) => setTimeout(resolve, 50))) {
      pending = await chat(server, 'local');
      expect(pending.status).toBe(503);
      body = (await pending.json()) as ErrorBody;
      if (/\d+% \(/.test(body.error.message)) break;
    }
    expect(body?.error.type).toBe('unavailable_error');
    expect(body?.error.message).toMatch(/tiny\.gguf \(file 1 of 1\) \d+% \([\d.]+ kB of 80\.0 kB\)/);
    expect(Number(pending?.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);

    // An image is not refused as unsupported: what the model accepts is only known once it is built.
    const png = await sharp({ create: { width: 8, height: 8, channels: 3, background: 'red' } })
      .png()
      .toBuffer();
    const withImage = await fetch(`${server.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}` },
      body: JSON.stringify({
        model: 'local',
        messages: [
          {
            role: 'user',
            content: [
              { type: 'text', text: 'what is this?' },
              { type: 'image_url', image_url: { url: `data:image/png;base64,${png.toString('base64')}` } },
            ],
          },
        ],
      }),
    });
    expect(withImage.status).toBe(503);
    expect(((await withImage.json()) as ErrorBody).error.type).toBe('unavailable_error');

    // The rest of the server works meanwhile.
    expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
    const listed = await fetch(`${server.url}/v1/models`, { headers: { 'x-api-key': KEY } });
    expect(((await listed.json()) as Array<{ id: string }>).map((model) => model.id)).toEqual(['local', 'other']);
    const other = await chat(server, 'other');
    expect(other.status).toBe(200);
    // Only the model waiting for its files is not built yet.
    expect(built.map((settings) => settings.id)).toEqual(['other']);

    await expect.poll(async () => (await chat(server, 'local')).status, { timeout: 10_000, interval: 200 }).toBe(200);
    const ready = (await (await chat(server, 'local')).json()) as { choices: Array<{ message: { content: string } }> };
    expect(ready.choices[0]?.message.content).toBe('answer from the local model');
    expect(built.map((settings) => settings.id)).toEqual(['other', 'local']);
    expect(built[1]).toMatchObject({
      id: 'local',
      preload: true,
      modelPath: expect.stringMatching(/models\/test-org\/tiny-GGUF\/tiny\.gguf$/),
    });
    expect(readFileSync(built[1]!.modelPath as string).equals(content)).toBe(true);
  });

  it('says how to place the files by hand when the hub cannot be reached', async () => {
    const probe = createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const { port } = probe.address() as AddressInfo;
    await new Promise<void>((resolve) => probe.close(() => resolve()));

    const server = await start({}, localModels(`http://127.0.0.1:${port}`, { useDefaultModel: true }), []);
    expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
    let response: Response | undefined;
    let body: ErrorBody | undefined;
    for (const deadline = Date.now() + 5_000; Date.now() < deadline; await new Promise((resolve) => setTimeout(resolve, 50))) {
      response = await chat(server, 'local');
      body = (await response.json()) as ErrorBody;
      if (body.error.message.includes('could not be downloaded')) break;
    }
    expect(response?.status).toBe(503);
    expect(body?.error.type).toBe('unavailable_error');
    expect(body?.error.message).toMatch(/models\/smolvlm2-500m\/SmolVLM2-500M-Video-Instruct-Q8_0\.gguf/);
    expect(body?.error.message).toMatch(/models\/smolvlm2-500m\/mmproj-SmolVLM2-500M-Video-Instruct-Q8_0\.gguf/);
    expect(body?.error.message).toContain('--model-path');
    expect(response?.headers.get('retry-after')).toBe('60');
  });
});
