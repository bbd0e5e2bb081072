import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach } from 'vitest';

const BIN = fileURLToPath(new URL('../../bin/ocular.js', import.meta.url));

export interface Spawned {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  /** Resolves with the exit code (or the signal's name) once the process has ended. */
  exited: Promise<number | string>;
}

export interface RunOptions {
  cwd: string;
  env?: Record<string, string>;
}

/** A loopback port where nothing listens (just released). */
export async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/**
 * Runs `node bin/ocular.js` as a user would, in a temp folder. The environment drops every OCULAR_* and HF_* setting
 * and points HF_ENDPOINT at `hubEndpoint` (a closed loopback port unless a test gives one), so no command can reach
 * the network. Children and temp folders are removed after each test.
 */
export function useOcularCli() {
  const children: ChildProcess[] = [];
  const cleanups: Array<() => unknown> = [];
  let unreachableHub: string | undefined;

  afterEach(async () => {
    for (const child of children.splice(0)) {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  function temporaryDir(): string {
    const dir = mkdtempSync(join(tmpdir(), 'ocular-cli-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    return dir;
  }

  async function environment(extra: Record<string, string> | undefined): Promise<NodeJS.ProcessEnv> {
    unreachableHub ??= `http://127.0.0.1:${await closedPort()}`;
    const inherited = Object.entries(process.env).filter(([name]) => !name.startsWith('OCULAR_') && !name.startsWith('HF_'));
    return { ...Object.fromEntries(inherited), HF_ENDPOINT: unreachableHub, ...extra };
  }

  async function ocular(args: string[], options: RunOptions): Promise<Spawned> {
    const child = spawn(process.execPath, [BIN, ...args], { cwd: options.cwd, env: await environment(options.env), stdio: 'pipe' });
    children.push(child);
    let stdout = '';
    let stderr = '';
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const exited = new Promise<number | string>((resolve) => child.once('close', (code, signal) => resolve(code ?? signal ?? -1)));
    return { child, stdout: () => stdout, stderr: () => stderr, exited };
  }

  /** Runs a command to completion. */
  async function run(args: string[], options: RunOptions): Promise<{ code: number | string; stdout: string; stderr: string }> {
    const spawned = await ocular(args, options);
    const code = await spawned.exited;
    return { code, stdout: spawned.stdout(), stderr: spawned.stderr() };
  }

  return { temporaryDir, ocular, run, environment };
}

/** A stack trace's frame lines (`    at ...`): a CLI failure must be one readable message, never a trace. */
export const STACK_FRAME = /^\s+at /m;
