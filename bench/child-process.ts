// Benchmark processes (fake upstreams, proxies, Ocular itself) started as children of the bench, each on its own
// event loop. A child prints `{"url":...}` on its first stdout line once listening, and exits when its stdin
// closes (the bench is gone) or on SIGTERM.
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { readEnvironment } from '../src/config/settings.ts';

const REPO_ROOT = fileURLToPath(new URL('..', import.meta.url));
const CHILD_START_MS = 30_000;
const CHILD_STOP_MS = 5_000;

export interface ChildHandle {
  url: string;
  /** The child's process id (for reading its memory use from /proc). */
  pid: number;
  stop(): Promise<void>;
}

const readySchema = z.object({ url: z.url() });
const liveChildren = new Set<ChildProcess>();
let exitHookInstalled = false;

/** Last resort when this process dies without running its `finally` blocks; children also exit when their stdin closes. */
function killChildrenOnExit(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const child of liveChildren) child.kill('SIGKILL');
  });
}

/** Spawns `node [nodeArgs] script args`, and waits for the `{"url":...}` line it prints when ready. */
export async function startChild(
  name: string,
  script: string,
  args: string[],
  options: { nodeArgs?: string[]; env?: Record<string, string> } = {},
): Promise<ChildHandle> {
  killChildrenOnExit();
  const child = spawn(process.execPath, [...(options.nodeArgs ?? []), join(REPO_ROOT, script), ...args], {
    cwd: REPO_ROOT,
    env: { ...readEnvironment(), ...options.env },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  liveChildren.add(child);
  const exited = new Promise<void>((resolve) => {
    const done = (): void => {
      liveChildren.delete(child);
      resolve();
    };
    child.once('exit', done);
    child.once('error', done); // failed to spawn: there will be no 'exit'
  });

  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), CHILD_STOP_MS);
    await exited;
    clearTimeout(timer);
  };

  try {
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${name} did not start within ${CHILD_START_MS} ms`)), CHILD_START_MS);
      child.once('error', reject);
      child.once('exit', (code, signal) => reject(new Error(`${name} exited before it was ready (code ${code}, signal ${signal})`)));
      createInterface({ input: child.stdout! }).once('line', (line) => {
        clearTimeout(timer);
        let json: unknown;
        try {
          json = JSON.parse(line);
        } catch {
          json = undefined;
        }
        const parsed = readySchema.safeParse(json);
        if (parsed.success) resolve(parsed.data.url);
        else reject(new Error(`${name} printed an unexpected first line: ${line}`));
      });
    });
    return { url, pid: child.pid!, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}
