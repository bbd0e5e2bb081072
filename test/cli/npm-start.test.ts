import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { writeTinyLlamaGguf } from '../helpers/gguf-writer.ts';
import { useOcularCli } from './ocular-cli.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const cli = useOcularCli();

/** Pids of the processes whose command line names `marker` (the test's own temp folder): what is left running. */
function processesNaming(marker: string): number[] {
  const listing = execFileSync('ps', ['-eo', 'pid=,args='], { encoding: 'utf8' });
  return listing
    .split('\n')
    .filter((line) => line.includes(marker))
    .map((line) => Number.parseInt(line.trim(), 10))
    .filter((pid) => pid !== process.pid);
}

const started: string[] = [];
afterEach(() => {
  // A failed test must not leave a server behind: end what this test started (found by its temp folder).
  for (const marker of started.splice(0)) {
    for (const pid of processesNaming(marker)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
});

/** Whether something accepts connections on the loopback port. */
function isListening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

async function waitFor(condition: () => boolean | Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await condition()) return true;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return condition();
}

/**
 * `npm start` as a first-time user runs it in the repository: a tiny GGUF instead of the default model download,
 * and no analyzer weights to pull, so nothing leaves the machine. Resolves once the server listens.
 */
async function npmStart(): Promise<{ npm: ChildProcess; port: number; marker: string; exited: Promise<unknown>; output: () => string }> {
  const dir = cli.temporaryDir();
  started.push(dir);
  const model = writeTinyLlamaGguf(join(dir, 'tiny.gguf'));
  const config = join(dir, 'ocular.config.json');
  writeFileSync(config, JSON.stringify({ indexing: { vad: { enabled: false }, labels: { enabled: false } } }));
  const args = ['start', '--', '--port', '0', '--no-auth', '--data', join(dir, 'data'), '--config', config, '--model-path', model];
  const npm = spawn('npm', args, { cwd: ROOT, env: await cli.environment({ OCULAR_LOG_LEVEL: 'info' }), stdio: 'pipe' });
  let output = '';
  npm.stdout!.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  npm.stderr!.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  const exited = new Promise((resolve) => npm.once('exit', resolve));
  const listening = await waitFor(() => /"message":"ocular is listening"/.test(output), 15_000);
  expect(listening, output).toBe(true);
  const url = /"url":"(http:\/\/[^"]+)"/.exec(output)![1]!;
  return { npm, port: Number(new URL(url).port), marker: dir, exited, output: () => output };
}

describe('npm start', () => {
  it.each(['SIGTERM', 'SIGINT'] as const)('stops the server when npm gets %s', async (signal) => {
    const { npm, port, marker, exited, output } = await npmStart();
    expect(await isListening(port)).toBe(true);
    // The server itself, not only npm, must be running under the marker: the check below could not fail otherwise.
    expect(processesNaming(marker).length).toBeGreaterThanOrEqual(2);

    npm.kill(signal);
    await exited;

    expect(await isListening(port), output()).toBe(false);
    expect(processesNaming(marker)).toEqual([]);
    // A graceful stop, not a kill (the server writes to the same pipe, which may still hold its last line).
    expect(await waitFor(() => output().includes('"message":"stopped"'), 2_000), output()).toBe(true);
  });

  it('stops the server when npm is killed outright (the server follows its parent out)', async () => {
    const { npm, port, marker, exited } = await npmStart();
    npm.kill('SIGKILL');
    await exited;

    expect(await waitFor(async () => !(await isListening(port)), 5_000)).toBe(true);
    expect(await waitFor(() => processesNaming(marker).length === 0, 5_000)).toBe(true);
  });
});
