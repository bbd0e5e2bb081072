import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { BackgroundPull, type ModelAvailability, type PullLog } from '../../src/models/background-pull.ts';
import { resolveModelReference } from '../../src/models/model-source.ts';
import { PendingModel } from '../../src/models/pending-model.ts';
import { OcularError } from '../../src/spec/errors.ts';
import type { GenerateResult, LanguageModel, ProviderRequest } from '../../src/spec/provider.ts';
import { startFakeHub, testBytes } from './fake-hub.ts';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function temporaryDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'ocular-pending-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const capabilities = { image: true, video: false, audio: false, pdf: false, tools: false };
const request: ProviderRequest = { maxTokens: 16, messages: [{ role: 'user', content: [{ type: 'text', text: 'hi' }] }] };

function fakeModel(text: string): LanguageModel & { closed: boolean } {
  const result: GenerateResult = { text, toolCalls: [], finishReason: 'stop', usage: { inputTokens: 1, outputTokens: 1 } };
  return {
    provider: 'fake',
    upstreamModel: 'built-model',
    capabilities: { ...capabilities, tools: true },
    closed: false,
    generate: async () => result,
    stream: async () =>
      new ReadableStream({
        start(controller) {
          controller.enqueue({ type: 'text-delta', text });
          controller.enqueue({ type: 'finish', finishReason: 'stop', usage: result.usage });
          controller.close();
        },
      }),
    async close() {
      this.closed = true;
    },
  };
}

async function rejection(promise: Promise<unknown>): Promise<OcularError> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(OcularError);
  return error as OcularError;
}

function silentLog(): PullLog & { lines: Array<{ message: string; fields?: Record<string, unknown> }> } {
  const lines: Array<{ message: string; fields?: Record<string, unknown> }> = [];
  const push = (message: string, fields?: Record<string, unknown>) => void lines.push({ message, ...(fields ? { fields } : {}) });
  return { lines, info: push, warn: push };
}

describe('PendingModel', () => {
  it('answers unavailable_error with Retry-After until ready, then builds the real model once and delegates to it', async () => {
    let availability: ModelAvailability = { ready: false, message: 'downloading: 42% (4.2 MB of 10.0 MB)', retryAfterSeconds: 7 };
    let builds = 0;
    const real = fakeModel('from the real model');
    const pending = new PendingModel({
      id: 'local',
      provider: 'llama',
      upstreamModel: 'smolvlm2-500m',
      capabilities,
      availability: () => availability,
      create: () => {
        builds += 1;
        return real;
      },
    });
    expect(pending.capabilities).toEqual(capabilities);
    const error = await rejection(pending.generate(request, new AbortController().signal));
    expect(error).toMatchObject({ type: 'unavailable_error', status: 503, retryAfterSeconds: 7, retryable: true });
    expect(error.message).toContain('42% (4.2 MB of 10.0 MB)');
    expect((await rejection(pending.stream(request, new AbortController().signal))).type).toBe('unavailable_error');
    expect(builds).toBe(0);

    availability = { ready: true };
    const [first, second] = await Promise.all([
      pending.generate(request, new AbortController().signal),
      pending.generate(request, new AbortController().signal),
    ]);
    expect(first.text).toBe('from the real model');
    expect(second.text).toBe('from the real model');
    expect(builds).toBe(1);
    expect(pending.capabilities.tools).toBe(true); // the built model's, from now on
    expect(pending.upstreamModel).toBe('built-model');
    const reader = (await pending.stream(request, new AbortController().signal)).getReader();
    expect((await reader.read()).value).toEqual({ type: 'text-delta', text: 'from the real model' });
    await pending.close();
    expect(real.closed).toBe(true);
  });

  it('does not cache a failed build: the next request tries again', async () => {
    let attempts = 0;
    const pending = new PendingModel({
      id: 'local',
      provider: 'llama',
      upstreamModel: 'x',
      availability: () => ({ ready: true }),
      create: () => {
        attempts += 1;
        if (attempts === 1) throw new Error('bad GGUF magic');
        return fakeModel('second time');
      },
    });
    // Without a guess at what the model will take, everything is accepted until it is built.
    expect(pending.capabilities).toEqual({ image: true, video: true, audio: true, pdf: true, tools: true });
    const error = await rejection(pending.generate(request, new AbortController().signal));
    expect(error.type).toBe('server_error');
    expect(error.message).toContain('bad GGUF magic');
    expect((await pending.generate(request, new AbortController().signal)).text).toBe('second time');
  });
});

describe('BackgroundPull', () => {
  it('reports download progress while the hub is slow, then becomes ready and lets the PendingModel build', async () => {
    const hub = await startFakeHub();
    cleanups.push(() => hub.close());
    const content = testBytes(60_000, 31);
    hub.add('test-org/tiny-GGUF', 'tiny.gguf', { content, bytesPerSecond: 25_000 });
    const modelsDir = temporaryDir();
    const log = silentLog();
    const pull = new BackgroundPull({
      source: resolveModelReference('test-org/tiny-GGUF:tiny.gguf'),
      modelsDir,
      hub: { endpoint: hub.url, token: undefined },
      log,
      logIntervalMs: 0,
    });
    cleanups.push(() => pull.close());
    let built = 0;
    const pending = new PendingModel({
      id: 'local',
      provider: 'llama',
      upstreamModel: 'tiny',
      capabilities,
      availability: () => pull.availability(),
      create: () => {
        built += 1;
        return fakeModel('ready');
      },
    });
    const readyCalls: number[] = [];
    pull.onReady(() => readyCalls.push(Date.now()));
    expect(pull.availability()).toMatchObject({ ready: false });
    pull.start();

    await expect.poll(() => (pull.availability() as { message?: string }).message ?? '', { timeout: 5_000 }).toMatch(/\d+% \(/);
    const during = await rejection(pending.generate(request, new AbortController().signal));
    expect(during.type).toBe('unavailable_error');
    expect(during.message).toMatch(/tiny\.gguf \(file 1 of 1\) \d+% \([\d.]+ kB of 60\.0 kB\)/);
    expect(during.retryAfterSeconds).toBeGreaterThanOrEqual(1);
    expect(built).toBe(0);

    await expect.poll(() => pull.ready, { timeout: 10_000 }).toBe(true);
    expect(readyCalls).toHaveLength(1);
    expect(readFileSync(join(modelsDir, 'test-org', 'tiny-GGUF', 'tiny.gguf')).equals(content)).toBe(true);
    expect((await pending.generate(request, new AbortController().signal)).text).toBe('ready');
    expect(built).toBe(1);
    expect(log.lines.map((line) => line.message)).toEqual(expect.arrayContaining(['model download progress', 'model files are in place']));
  });

  it('retries a failed download, then says how to place the files by hand, and picks them up once they are', async () => {
    // A port nothing listens on: the connection is refused, as with no network.
    const probe = createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const { port } = probe.address() as AddressInfo;
    await new Promise<void>((resolve) => probe.close(() => resolve()));

    const modelsDir = temporaryDir();
    const source = resolveModelReference('smolvlm2-256m');
    const log = silentLog();
    const pull = new BackgroundPull({
      source,
      modelsDir,
      hub: { endpoint: `http://127.0.0.1:${port}`, token: undefined },
      log,
      retryDelaysMs: [20, 20],
    });
    cleanups.push(() => pull.close());
    pull.start();
    await expect
      .poll(() => (pull.availability() as { message?: string }).message ?? '', { timeout: 5_000 })
      .toContain('could not be downloaded');
    const availability = pull.availability();
    expect(availability).toMatchObject({ ready: false, retryAfterSeconds: 60 });
    const message = (availability as { message: string }).message;
    const modelPath = join(modelsDir, 'smolvlm2-256m', 'SmolVLM2-256M-Video-Instruct-Q8_0.gguf');
    const mmprojPath = join(modelsDir, 'smolvlm2-256m', 'mmproj-SmolVLM2-256M-Video-Instruct-Q8_0.gguf');
    expect(message).toContain(modelPath);
    expect(message).toContain(mmprojPath);
    expect(message).toContain(
      `http://127.0.0.1:${port}/ggml-org/SmolVLM2-256M-Video-Instruct-GGUF/resolve/main/SmolVLM2-256M-Video-Instruct-Q8_0.gguf`,
    );
    expect(message).toContain('--model-path');
    expect(log.lines.filter((line) => line.message === 'model download failed; retrying')).toHaveLength(2);

    mkdirSync(join(modelsDir, 'smolvlm2-256m'), { recursive: true });
    writeFileSync(modelPath, 'placed by hand');
    expect(pull.availability().ready).toBe(false); // the projector is still missing
    writeFileSync(mmprojPath, 'placed by hand');
    expect(pull.availability()).toEqual({ ready: true });
    expect(pull.ready).toBe(true);
  });
});
