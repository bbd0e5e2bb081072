import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { sendEvents, startFakeUpstream, type FakeUpstream } from './helpers/fake-upstream.ts';
import { startFakeHub, testBytes, type FakeHub } from './models/fake-hub.ts';

const BIN = fileURLToPath(new URL('../bin/ocular.js', import.meta.url));
const KEY = 'ocu_cli_test_key_0123456789';

interface Spawned {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  /** Resolves with the exit code (or the signal's name) once the process has ended. */
  exited: Promise<number | string>;
}

const children: ChildProcess[] = [];
const cleanups: Array<() => unknown> = [];

afterEach(async () => {
  for (const child of children.splice(0)) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A hub URL where nothing listens: a server started with no config must not reach the real Hugging Face hub. */
const UNREACHABLE_HUB = `http://127.0.0.1:${await freePort()}`;

/**
 * The parent's environment without any OCULAR_* or HF_* setting, so only what a test passes reaches the CLI; model
 * downloads go to a loopback port where nothing listens (the network is never used).
 */
function baseEnvironment(): NodeJS.ProcessEnv {
  const inherited = Object.entries(process.env).filter(([name]) => !name.startsWith('OCULAR_') && !name.startsWith('HF_'));
  return { ...Object.fromEntries(inherited), HF_ENDPOINT: UNREACHABLE_HUB };
}

function temporaryDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'ocular-cli-test-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Runs `node bin/ocular.js ...args` in `cwd` (a temp dir, so no ./ocular.config.json or ./data is picked up). */
function ocular(args: string[], options: { cwd: string; env?: Record<string, string> }): Spawned {
  const child = spawn(process.execPath, [BIN, ...args], { cwd: options.cwd, env: { ...baseEnvironment(), ...options.env }, stdio: 'pipe' });
  children.push(child);
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exited = new Promise<number | string>((resolve) => child.once('close', (code, signal) => resolve(code ?? signal ?? -1)));
  return { child, stdout: () => stdout, stderr: () => stderr, exited };
}

/** Runs a command to completion. */
async function run(args: string[], options: { cwd: string; env?: Record<string, string> }) {
  const spawned = ocular(args, options);
  const code = await spawned.exited;
  return { code, stdout: spawned.stdout(), stderr: spawned.stderr() };
}

interface LogLine {
  level: string;
  message: string;
  [field: string]: unknown;
}

function logLines(stderr: string): LogLine[] {
  return stderr
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as LogLine);
}

/** Waits for a JSON log line with `message` on stderr; fails early if the process exits first. */
async function waitForLog(spawned: Spawned, message: string, timeoutMs = 8_000): Promise<LogLine> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = logLines(spawned.stderr()).find((line) => line.message === message);
    if (found) return found;
    if (spawned.child.exitCode !== null)
      throw new Error(`ocular exited with ${spawned.child.exitCode} before logging "${message}":\n${spawned.stderr()}`);
    if (Date.now() > deadline) throw new Error(`no "${message}" log line within ${timeoutMs} ms:\n${spawned.stderr()}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

interface ListedKey {
  id: string;
  name: string;
  prefix: string;
  createdAt: string;
  revokedAt: string | null;
}

describe('ocular keys', () => {
  it('creates, lists (without the secret) and revokes keys', async () => {
    const cwd = temporaryDir();
    const data = join(cwd, 'data-dir');

    const created = await run(['keys', 'create', '--name', 'x', '--data', data], { cwd });
    expect(created.code).toBe(0);
    const key = created.stdout.trim();
    expect(key).toMatch(/^ocu_[\w-]{20,}$/);

    const listed = await run(['keys', 'list', '--json', '--data', data], { cwd });
    expect(listed.code).toBe(0);
    expect(listed.stdout).not.toContain(key);
    const keys = JSON.parse(listed.stdout) as ListedKey[];
    expect(keys).toHaveLength(1);
    const [entry] = keys as [ListedKey];
    expect(entry).toMatchObject({ name: 'x', revokedAt: null });
    expect(key.startsWith(entry.prefix)).toBe(true);
    expect(entry.prefix.length).toBeLessThan(key.length / 2);

    const revoked = await run(['keys', 'revoke', entry.id, '--data', data], { cwd });
    expect(revoked.code).toBe(0);
    const after = JSON.parse((await run(['keys', 'list', '--json', '--data', data], { cwd })).stdout) as ListedKey[];
    expect(after[0]?.revokedAt).not.toBeNull();

    // Revoking again, or an id that never existed, is an error.
    const again = await run(['keys', 'revoke', entry.id, '--data', data], { cwd });
    expect(again.code).toBe(1);
    const unknown = await run(['keys', 'revoke', 'key_does_not_exist', '--data', data], { cwd });
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('key_does_not_exist');
  });

  it('creates keys that share an owner, and refuses a bad owner', async () => {
    const cwd = temporaryDir();
    const data = join(cwd, 'data-dir');
    expect((await run(['keys', 'create', '--name', 'a', '--owner', 'team-1', '--data', data], { cwd })).code).toBe(0);
    expect((await run(['keys', 'create', '--name', 'b', '--owner', 'team-1', '--data', data], { cwd })).code).toBe(0);
    expect((await run(['keys', 'create', '--name', 'c', '--data', data], { cwd })).code).toBe(0);
    const keys = JSON.parse((await run(['keys', 'list', '--json', '--data', data], { cwd })).stdout) as Array<
      ListedKey & { owner: string }
    >;
    expect(keys.map((key) => key.owner)).toEqual(['team-1', 'team-1', keys[2]!.id]);
    const bad = await run(['keys', 'create', '--owner', 'no spaces please', '--data', data], { cwd });
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/--owner/);
  });

  it('uses OCULAR_DATA_DIR when --data is not given', async () => {
    const cwd = temporaryDir();
    const data = join(cwd, 'from-env');
    const created = await run(['keys', 'create', '--name', 'env-key'], { cwd, env: { OCULAR_DATA_DIR: data } });
    expect(created.code).toBe(0);
    expect(existsSync(join(data, 'ocular.db'))).toBe(true);
    expect(existsSync(join(cwd, 'data'))).toBe(false);
    const keys = JSON.parse((await run(['keys', 'list', '--json', '--data', data], { cwd })).stdout) as ListedKey[];
    expect(keys.map((key) => key.name)).toEqual(['env-key']);
  });
});

describe('ocular serve', () => {
  it('finishes an in-flight stream on SIGTERM, refuses new connections, then exits 0', async () => {
    const deltas = Array.from({ length: 10 }, (_, index) => `part${index} `);
    const upstream: FakeUpstream = await startFakeUpstream(async (request, response) => {
      if (request.url !== '/v1/chat/completions') return void response.writeHead(404).end();
      const chunk = (delta: Record<string, unknown>, finish: string | null) => ({
        id: 'chatcmpl-1',
        object: 'chat.completion.chunk',
        created: 0,
        model: 'slow',
        choices: [{ index: 0, delta, finish_reason: finish }],
      });
      await sendEvents(
        response,
        [...deltas.map((text) => ({ data: chunk({ content: text }, null) })), { data: chunk({}, 'stop') }, { data: '[DONE]' }],
        100,
      );
    });
    cleanups.push(() => upstream.close());

    const cwd = temporaryDir();
    const config = join(cwd, 'config.json');
    writeFileSync(
      config,
      JSON.stringify({ models: [{ id: 'slow', provider: 'openai-compatible', baseUrl: `${upstream.url}/v1`, model: 'slow' }] }),
    );
    const server = ocular(['serve', '--port', '0', '--data', join(cwd, 'data'), '--config', config], {
      cwd,
      env: { OCULAR_API_KEYS: KEY },
    });
    const { url } = (await waitForLog(server, 'ocular is listening')) as LogLine & { url: string };
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);

    const response = await fetch(`${url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}` },
      body: JSON.stringify({ model: 'slow', stream: true, messages: [{ role: 'user', content: 'hi' }] }),
    });
    expect(response.status).toBe(200);
    const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
    let text = '';
    while (!text.includes('part0')) {
      const next = await reader.read();
      if (next.done) throw new Error(`stream ended early: ${text}`);
      text += next.value;
    }

    server.child.kill('SIGTERM');
    await waitForLog(server, 'shutting down: finishing in-flight requests');
    // The listener is closed: a new connection is refused while the stream goes on.
    await expect(fetch(`${url}/healthz`)).rejects.toThrow();

    for (let next = await reader.read(); !next.done; next = await reader.read()) text += next.value;
    const payloads = text
      .split('\n')
      .filter((line) => line.startsWith('data:'))
      .map((line) => line.slice(5).trim());
    expect(payloads.at(-1)).toBe('[DONE]');
    const content = payloads
      .slice(0, -1)
      .map((payload) => JSON.parse(payload) as { choices: Array<{ delta?: { content?: string }; finish_reason?: string | null }> })
      .map((chunk) => chunk.choices[0]?.delta?.content ?? '')
      .join('');
    expect(content).toBe(deltas.join(''));
    expect(text).toContain('"finish_reason":"stop"');

    expect(await server.exited).toBe(0);
    expect(logLines(server.stderr()).map((line) => line.message)).toContain('stopped');
  });

  it('exits 1 naming the field when the config file is invalid', async () => {
    const cwd = temporaryDir();
    const unknownField = join(cwd, 'unknown-field.json');
    writeFileSync(unknownField, JSON.stringify({ modelz: [] }));
    const first = await run(['serve', '--port', '0', '--data', join(cwd, 'data'), '--config', unknownField], {
      cwd,
      env: { OCULAR_API_KEYS: KEY },
    });
    expect(first.code).toBe(1);
    // A one-line message for the operator, not a stack trace.
    expect(first.stderr).toMatch(/^ocular: .*modelz/m);
    expect(first.stderr).not.toMatch(/^\s+at /m);

    const missingUrl = join(cwd, 'missing-url.json');
    writeFileSync(missingUrl, JSON.stringify({ models: [{ id: 'a', provider: 'openai-compatible', model: 'm' }] }));
    const second = await run(['serve', '--port', '0', '--data', join(cwd, 'data'), '--config', missingUrl], {
      cwd,
      env: { OCULAR_API_KEYS: KEY },
    });
    expect(second.code).toBe(1);
    expect(second.stderr).toMatch(/^ocular: .*models\[0\]\.baseUrl/m);
    expect(second.stderr).not.toMatch(/^\s+at /m);
  });

  it('exits 1 for --no-auth on 0.0.0.0', async () => {
    const cwd = temporaryDir();
    const result = await run(['serve', '--no-auth', '--host', '0.0.0.0', '--port', '0', '--data', join(cwd, 'data')], { cwd });
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^ocular: .*--no-auth/m);
    expect(existsSync(join(cwd, 'data'))).toBe(false);
  });

  it('exits 1 for a bad port', async () => {
    const cwd = temporaryDir();
    const result = await run(['serve', '--port', '99999', '--data', join(cwd, 'data')], { cwd });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('--port');
  });

  it('honours OCULAR_PORT and OCULAR_DATA_DIR, and prints a bootstrap key on first start', async () => {
    const cwd = temporaryDir();
    const data = join(cwd, 'env-data');
    const port = await freePort();
    const server = ocular(['serve'], { cwd, env: { OCULAR_PORT: String(port), OCULAR_DATA_DIR: data } });
    const listening = await waitForLog(server, 'ocular is listening');
    expect(listening.url).toBe(`http://127.0.0.1:${port}`);
    expect(listening.dataDir).toBe(data);
    expect(existsSync(join(data, 'ocular.db'))).toBe(true);
    expect(existsSync(join(cwd, 'data'))).toBe(false);

    const health = await fetch(`http://127.0.0.1:${port}/healthz`);
    expect(health.status).toBe(200);

    // No key was configured: the first start creates one and prints it on stdout.
    await expect.poll(() => server.stdout(), { timeout: 5_000 }).toMatch(/ocu_[\w-]+/);
    const key = server.stdout().match(/ocu_[\w-]+/)?.[0];
    expect(existsSync(join(data, 'bootstrap-key'))).toBe(true);
    expect((await fetch(`http://127.0.0.1:${port}/v1/models`, { headers: { 'x-api-key': key! } })).status).toBe(200);

    server.child.kill('SIGTERM');
    expect(await server.exited).toBe(0);
  });
});

describe('ocular models', () => {
  async function hub(token?: string): Promise<FakeHub> {
    const started = await startFakeHub(token === undefined ? {} : { token });
    cleanups.push(() => started.close());
    return started;
  }

  it('pulls a file with HF_TOKEN, resuming after a cut connection and verifying it; lists and removes it', async () => {
    const server = await hub('hf_cli_token');
    const content = testBytes(250_000, 51);
    server.add('test-org/tiny-GGUF', 'tiny.gguf', { content, cuts: 1 });
    const cwd = temporaryDir();
    const data = join(cwd, 'data');
    const env = { HF_ENDPOINT: server.url, HF_TOKEN: 'hf_cli_token' };

    const denied = await run(['models', 'pull', 'test-org/tiny-GGUF:tiny.gguf', '--data', data], { cwd, env: { HF_ENDPOINT: server.url } });
    expect(denied.code).toBe(1);
    expect(denied.stderr).toMatch(/^ocular: .*HF_TOKEN/m);

    const pulled = await run(['models', 'pull', 'test-org/tiny-GGUF:tiny.gguf', '--data', data], { cwd, env });
    expect(pulled.code).toBe(0);
    const path = join(data, 'models', 'test-org', 'tiny-GGUF', 'tiny.gguf');
    expect(pulled.stdout.trim()).toBe(path);
    expect(readFileSync(path).equals(content)).toBe(true);
    expect(pulled.stderr).toContain("verified against the hub's X-Linked-Etag");
    expect(pulled.stderr).toMatch(/^tiny\.gguf 100% \(250\.0 kB of 250\.0 kB\)/m); // progress, as lines when not on a terminal
    expect(server.requests.some((request) => request.range !== undefined)).toBe(true); // it resumed
    expect(readdirSync(join(data, 'models', 'test-org', 'tiny-GGUF'))).toEqual(['tiny.gguf']);

    const listed = await run(['models', 'list', '--json', '--data', data], { cwd });
    expect(listed.code).toBe(0);
    const models = JSON.parse(listed.stdout) as Array<{ name: string; status: string; isDefault: boolean }>;
    expect(models.find((model) => model.name === 'test-org/tiny-GGUF:tiny.gguf')?.status).toBe('present');
    expect(models.find((model) => model.isDefault)?.status).toBe('missing');
    const table = await run(['models', 'list', '--data', data], { cwd });
    expect(table.stdout).toMatch(/^test-org\/tiny-GGUF:tiny\.gguf\s+present\s+250\.0 kB/m);

    const removed = await run(['models', 'rm', 'test-org/tiny-GGUF:tiny.gguf', '--data', data], { cwd });
    expect(removed.code).toBe(0);
    expect(existsSync(path)).toBe(false);
    const again = await run(['models', 'rm', 'test-org/tiny-GGUF:tiny.gguf', '--data', data], { cwd });
    expect(again.code).toBe(1);
  });

  it('pulls a catalog embedding model by name, verified against the hub, and lists it', async () => {
    const server = await hub();
    const content = testBytes(120_000, 53);
    server.add('CompendiumLabs/bge-small-en-v1.5-gguf', 'bge-small-en-v1.5-q8_0.gguf', { content });
    const cwd = temporaryDir();
    const data = join(cwd, 'data');
    const pulled = await run(['models', 'pull', 'bge-small-en-v1.5', '--data', data], { cwd, env: { HF_ENDPOINT: server.url } });
    expect(pulled.code, pulled.stderr).toBe(0);
    const path = join(data, 'models', 'bge-small-en-v1.5', 'bge-small-en-v1.5-q8_0.gguf');
    expect(readFileSync(path).equals(content)).toBe(true);
    expect(pulled.stderr).toContain("verified against the hub's X-Linked-Etag");
    const listed = JSON.parse((await run(['models', 'list', '--json', '--data', data], { cwd })).stdout) as Array<{
      name: string;
      status: string;
    }>;
    expect(listed.find((model) => model.name === 'bge-small-en-v1.5')?.status).toBe('present');
    expect(listed.find((model) => model.name === 'nomic-embed-text-v1.5')?.status).toBe('missing');
  });

  it('fails on a checksum mismatch, leaving neither the file nor a .part', async () => {
    const server = await hub();
    server.add('test-org/tiny-GGUF', 'bad.gguf', { content: testBytes(50_000, 52), etag: 'f'.repeat(64) });
    const cwd = temporaryDir();
    const data = join(cwd, 'data');
    const result = await run(['models', 'pull', 'test-org/tiny-GGUF:bad.gguf', '--data', data], { cwd, env: { HF_ENDPOINT: server.url } });
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^ocular: .*sha256/m);
    expect(readdirSync(join(data, 'models', 'test-org', 'tiny-GGUF'))).toEqual([]);
  });

  it('removes pulled analyzer weights by name', async () => {
    const cwd = temporaryDir();
    const data = join(cwd, 'data');
    const nothing = await run(['models', 'rm', 'silero-vad', '--data', data], { cwd });
    expect(nothing.code).toBe(1);
    mkdirSync(join(data, 'models', 'silero-vad'), { recursive: true });
    writeFileSync(join(data, 'models', 'silero-vad', 'silero_vad.onnx.part'), 'partial');
    const listed = JSON.parse((await run(['models', 'list', '--json', '--data', data], { cwd })).stdout) as Array<{
      name: string;
      status: string;
    }>;
    expect(listed.find((model) => model.name === 'silero-vad')?.status).toBe('partial');
    expect(listed.find((model) => model.name === 'mobilenetv2')?.status).toBe('missing');
    const removed = await run(['models', 'rm', 'silero-vad', '--data', data], { cwd });
    expect(removed.code).toBe(0);
    expect(existsSync(join(data, 'models', 'silero-vad'))).toBe(false);
  });

  it('rejects unknown names and bad references with a one-line message', async () => {
    const cwd = temporaryDir();
    for (const reference of ['no-such-model', '../../etc:passwd']) {
      const result = await run(['models', 'pull', reference, '--data', join(cwd, 'data')], { cwd });
      expect(result.code).toBe(1);
      expect(result.stderr).toMatch(/^ocular: /m);
      expect(result.stderr).not.toMatch(/^\s+at /m);
    }
  });
});

describe('ocular serve with the embedded engine', () => {
  it('exits 1 naming --model-path when the file does not exist', async () => {
    const cwd = temporaryDir();
    const result = await run(['serve', '--port', '0', '--data', join(cwd, 'data'), '--model-path', join(cwd, 'missing.gguf')], { cwd });
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^ocular: --model-path.*no file/m);
    expect(existsSync(join(cwd, 'data'))).toBe(false);
  });

  it('with no config and no network, serves /healthz, logs how to add a model, and answers 503 for the default model', async () => {
    const cwd = temporaryDir();
    const data = join(cwd, 'data');
    const server = ocular(['serve', '--port', '0', '--data', data], { cwd, env: { OCULAR_API_KEYS: KEY } });
    const { url } = (await waitForLog(server, 'ocular is listening')) as LogLine & { url: string };
    expect((await fetch(`${url}/healthz`)).status).toBe(200);
    const missing = await waitForLog(
      server,
      'model files are missing: downloading them in the background; until then the model answers 503',
    );
    expect(missing).toMatchObject({ models: ['local'], source: 'smolvlm2-500m' });
    expect(String(missing.hint)).toContain('--model-path');

    const response = await fetch(`${url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}` },
      body: JSON.stringify({ messages: [{ role: 'user', content: 'hi' }] }),
    });
    expect(response.status).toBe(503);
    expect(response.headers.get('retry-after')).toMatch(/^\d+$/);
    const body = (await response.json()) as { error: { type: string; message: string } };
    expect(body.error.type).toBe('unavailable_error');
    expect(body.error.message).toContain('smolvlm2-500m');

    // The first download attempt fails at once (nothing listens): the log names the exact paths to fill by hand.
    const failed = await waitForLog(server, 'model download failed; retrying');
    expect(failed.model).toBe('smolvlm2-500m');
    const retry = await fetch(`${url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}` },
      body: JSON.stringify({ messages: [{ role: 'user', content: 'hi' }] }),
    });
    const retryBody = (await retry.json()) as { error: { type: string; message: string } };
    expect(retryBody.error.message).toContain(join(data, 'models', 'smolvlm2-500m', 'SmolVLM2-500M-Video-Instruct-Q8_0.gguf'));
    expect(retryBody.error.message).toContain('--model-path');

    server.child.kill('SIGTERM');
    expect(await server.exited).toBe(0);
  });
});
