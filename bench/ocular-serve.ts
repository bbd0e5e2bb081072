// `ocular serve` as its own process for the video search benchmarks: the real CLI on a given data dir and config,
// auth on with one key, port 0. Resolves once it logs that it is listening; stop() ends it with SIGTERM.
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { readEnvironment } from '../src/config/settings.ts';

const START_MS = 60_000;
const STOP_MS = 10_000;

export interface ServeHandle {
  url: string;
  /** The server's process id (for reading its memory use from /proc). */
  pid: number;
  stop(): Promise<void>;
}

const listeningSchema = z.object({ message: z.literal('ocular is listening'), url: z.url() });

/**
 * Starts `node bin/ocular.js serve --data <dataDir>` with `config` written beside the data as its config file;
 * `args` are more flags (`--role worker`). Processes sharing a data dir each get a config file of their own.
 */
export async function startOcularServe(
  dataDir: string,
  apiKey: string,
  config: unknown,
  args: readonly string[] = [],
): Promise<ServeHandle> {
  const bin = fileURLToPath(new URL('../bin/ocular.js', import.meta.url));
  const configPath = join(dataDir, args.length === 0 ? 'ocular.config.json' : `ocular.config.${process.hrtime.bigint()}.json`);
  mkdirSync(dataDir, { recursive: true });
  writeFileSync(configPath, `${JSON.stringify(config)}\n`);
  const child = spawn(process.execPath, [bin, 'serve', '--host', '127.0.0.1', '--port', '0', '--data', dataDir, ...args], {
    env: { ...readEnvironment(), OCULAR_API_KEYS: apiKey, OCULAR_LOG_LEVEL: 'info', OCULAR_CONFIG: configPath },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), STOP_MS);
    await exited;
    clearTimeout(timer);
  };
  try {
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`ocular serve did not start within ${START_MS} ms`)), START_MS);
      child.once('exit', (code) => reject(new Error(`ocular serve exited with ${code} before it was listening`)));
      const lines = createInterface({ input: child.stderr! });
      lines.on('line', (line) => {
        let parsed: unknown;
        try {
          parsed = JSON.parse(line);
        } catch {
          return;
        }
        const listening = listeningSchema.safeParse(parsed);
        if (!listening.success) return;
        clearTimeout(timer);
        // From here the log (a line per request) is only drained, not parsed, so it costs the bench nothing.
        lines.close();
        child.stderr!.resume();
        resolve(listening.data.url);
      });
    });
    return { url, pid: child.pid!, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}
