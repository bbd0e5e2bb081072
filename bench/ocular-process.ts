// Runs Ocular in its own process for the gateway benchmark: one openai-compatible model pointing at the upstream
// given as the first argument, auth on with the key(s) in OCULAR_API_KEYS, logs silent, a throwaway data dir and
// port 0. Prints `{"url":"http://127.0.0.1:PORT"}` on stdout once listening; exits when its stdin closes (the
// parent is gone) or on SIGTERM/SIGINT, so that `node --cpu-prof` gets to write its profile.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../src/config/load-config.ts';
import { readEnvironment, type ServerSettings } from '../src/config/settings.ts';
import { createLogger } from '../src/server/logger.ts';
import { startServer } from '../src/server/serve.ts';

const upstreamUrl = process.argv[2];
if (upstreamUrl === undefined) {
  process.stderr.write('usage: node bench/ocular-process.ts UPSTREAM_URL (and OCULAR_API_KEYS in the environment)\n');
  process.exit(2);
}
const env = readEnvironment();
const envApiKeys = (env.OCULAR_API_KEYS ?? '')
  .split(',')
  .map((key) => key.trim())
  .filter((key) => key !== '');
if (envApiKeys.length === 0) {
  process.stderr.write('ocular-process: OCULAR_API_KEYS must hold the key the benchmark sends\n');
  process.exit(2);
}

const dataDir = mkdtempSync(join(tmpdir(), 'ocular-bench-'));
const settings: ServerSettings = {
  host: '127.0.0.1',
  port: 0,
  logLevel: 'silent',
  binaries: { searchPath: '' },
  dataDir,
  configPath: undefined,
  envApiKeys,
  auth: true,
  // Retries off: a failing upstream should show up as errors in the bench, not as slow requests.
  config: parseConfig(
    { models: [{ id: 'bench', provider: 'openai-compatible', baseUrl: `${upstreamUrl}/v1`, model: 'bench-model', maxRetries: 0 }] },
    {},
  ),
};

const server = await startServer(settings, createLogger('silent'));
process.stdout.write(`${JSON.stringify({ url: server.url })}\n`);

let stopping = false;
const stop = (): void => {
  if (stopping) return;
  stopping = true;
  const exit = (): void => {
    rmSync(dataDir, { recursive: true, force: true });
    process.exit(0);
  };
  setTimeout(exit, 3_000);
  server.close(200).then(exit, exit);
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
process.stdin.on('end', stop);
process.stdin.resume();
