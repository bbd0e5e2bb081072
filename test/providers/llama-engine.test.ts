import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { StreamPart } from '../../src/spec/stream-parts.ts';
import { createLlamaModel, settingsSchema, type LlamaLanguageModel } from '../../src/providers/llama/index.ts';
import { closedPort, useOcularCli } from '../cli/ocular-cli.ts';
import { writeTinyWhisperModel } from '../helpers/ggml-whisper-writer.ts';
import { writeTinyLlamaGguf } from '../helpers/gguf-writer.ts';
import { makeAudio, removeMediaFixtures } from '../helpers/media-fixtures.ts';

let dir: string;
let modelPath: string;
const models: LlamaLanguageModel[] = [];
const cli = useOcularCli();

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'ocular-llama-engine-test-'));
  modelPath = writeTinyLlamaGguf(join(dir, 'tiny.gguf'), { endless: true, asciiOnly: true });
});

afterEach(async () => {
  await Promise.all(models.splice(0).map((model) => model.close()));
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
  removeMediaFixtures();
});

/** The pids of this process's children running llama.cpp: the engine processes. */
function enginePids(): number[] {
  return execFileSync('ps', ['-o', 'pid=,args=', '--ppid', String(process.pid)], { encoding: 'utf8' })
    .split('\n')
    .filter((line) => line.includes('llama.node'))
    .map((line) => Number.parseInt(line.trim(), 10));
}

const ask = {
  maxTokens: 4000,
  temperature: 0.8,
  seed: 3,
  messages: [{ role: 'user' as const, content: [{ type: 'text' as const, text: 'Hi' }] }],
};

describe.skipIf(process.platform !== 'linux')('the llama engine process', () => {
  it('fails the running request when it crashes, and the next request loads the model again', async () => {
    const model = createLlamaModel(settingsSchema.parse({ id: 'tiny', provider: 'llama', modelPath, contextSize: 4096, idleUnloadMs: 0 }));
    models.push(model);
    const reader = (await model.stream(ask, new AbortController().signal)).getReader();
    expect((await reader.read()).value).toMatchObject({ type: 'text-delta' });
    const [pid, ...others] = enginePids();
    expect(others).toEqual([]);

    process.kill(pid!, 'SIGKILL');
    let last: StreamPart | undefined;
    for (let next = await reader.read(); !next.done; next = await reader.read()) last = next.value;

    expect(last).toMatchObject({ type: 'error', error: { type: 'server_error' } });
    expect(model.loadState).toBe('unloaded');
    const again = await model.generate({ ...ask, maxTokens: 3 }, new AbortController().signal);
    expect(again.usage.outputTokens).toBe(3);
    expect(model.loadCount).toBe(2);
    expect(enginePids()).not.toContain(pid);
  });

  it('ends with the model: none is left after close', async () => {
    const model = createLlamaModel(settingsSchema.parse({ id: 'tiny', provider: 'llama', modelPath, contextSize: 4096 }));
    models.push(model);
    await model.load();
    expect(enginePids()).toHaveLength(1);
    await model.close();
    expect(enginePids()).toEqual([]);
  });
});

describe('nativeLog', () => {
  it("writes llama.cpp's log lines to stderr as JSON lines when on", async () => {
    const provider = new URL('../../src/providers/llama/index.ts', import.meta.url).href;
    const script = `
      const { createLlamaModel, settingsSchema } = await import(${JSON.stringify(provider)});
      const model = createLlamaModel(settingsSchema.parse({ id: 'tiny', provider: 'llama', modelPath: ${JSON.stringify(modelPath)}, nativeLog: true }));
      await model.generate({ maxTokens: 2, messages: [{ role: 'user', content: [{ type: 'text', text: 'Hi' }] }] }, new AbortController().signal);
      await model.close();`;
    const { stdout, stderr } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script]);
    expect(stdout).toBe('');
    const lines = stderr.split('\n').filter((line) => line !== '');
    const entries = lines.map((line) => JSON.parse(line) as { level: string; message: string; text: string });
    expect(entries.length).toBeGreaterThan(10);
    expect(entries.every((entry) => entry.level === 'debug' && entry.message === 'llama.cpp')).toBe(true);
    expect(entries.some((entry) => entry.text.startsWith('llama_model_loader:'))).toBe(true);
  });
});

describe('ocular serve --log-level warn with embedded llama.cpp and whisper.cpp models', () => {
  it('writes only JSON lines to stderr, and nothing to stdout, while loading and running both', async () => {
    const cwd = cli.temporaryDir();
    const whisperPath = join(cwd, 'tiny-whisper.bin');
    writeTinyWhisperModel(whisperPath);
    const config = join(cwd, 'ocular.config.json');
    writeFileSync(
      config,
      JSON.stringify({
        transcriber: { provider: 'whisper', modelPath: whisperPath },
        indexing: { vad: { enabled: false }, labels: { enabled: false } },
      }),
    );
    const port = await closedPort();
    const server = await cli.ocular(
      [
        'serve',
        '--port',
        String(port),
        '--no-auth',
        '--log-level',
        'warn',
        '--data',
        join(cwd, 'data'),
        '--config',
        config,
        '--model-path',
        modelPath,
      ],
      { cwd },
    );
    const url = `http://127.0.0.1:${port}`;
    const deadline = Date.now() + 15_000;
    while (
      !(await fetch(`${url}/healthz`).then(
        (response) => response.ok,
        () => false,
      ))
    ) {
      expect(Date.now(), server.stderr()).toBeLessThan(deadline);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }

    // Audio for a model without an audio projector goes through the transcriber: both engines load and run.
    const audio = readFileSync(await makeAudio({ seconds: 2, format: 'wav', sampleRate: 16_000, channels: 1 })).toString('base64');
    const response = await fetch(`${url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        model: 'local',
        max_tokens: 8,
        messages: [
          {
            role: 'user',
            content: [
              { type: 'text', text: 'What is said?' },
              { type: 'input_audio', input_audio: { data: audio, format: 'wav' } },
            ],
          },
        ],
      }),
    });
    expect(response.status, await response.clone().text()).toBe(200);
    expect(((await response.json()) as { usage: { completion_tokens: number } }).usage.completion_tokens).toBeGreaterThan(0);

    server.child.kill('SIGTERM');
    expect(await server.exited).toBe(0);
    const lines = server
      .stderr()
      .split('\n')
      .filter((line) => line !== '');
    expect(lines.length).toBeGreaterThan(0); // the --no-auth warning at least
    for (const line of lines) expect(() => JSON.parse(line), line).not.toThrow();
    expect(server.stdout()).toBe('');
  }, 60_000);
});
