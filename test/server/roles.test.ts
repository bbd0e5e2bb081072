// Process roles on one data directory: an `api` process that serves HTTP and runs no job, a `worker` that runs the
// jobs and answers only health, readiness and metrics; and `ocular migrate` / `--no-migrate`.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { POSTGRES_MIGRATIONS } from '../../src/store/postgres-schema.ts';
import { createTestDatabase } from '../helpers/databases.ts';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { SCHEMA_VERSION } from '../../src/store/database.ts';
import { makeVideo, removeMediaFixtures } from '../helpers/media-fixtures.ts';

const KEY = 'ocu_roles_test_key_0123456789ab';
const BIN = fileURLToPath(new URL('../../bin/ocular.js', import.meta.url));
const run = promisify(execFile);
const dirs: string[] = [];
const children: ChildProcess[] = [];

afterAll(() => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  removeMediaFixtures();
});

function dataDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'ocular-roles-'));
  dirs.push(dir);
  writeFileSync(
    join(dir, 'config.json'),
    JSON.stringify({ indexing: { objects: { enabled: false }, vad: { enabled: false }, labels: { enabled: false } } }),
  );
  return dir;
}

const environment = (): NodeJS.ProcessEnv => {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) if (!name.startsWith('OCULAR_')) env[name] = value;
  return { ...env, OCULAR_API_KEYS: KEY, OCULAR_LOG_LEVEL: 'info' };
};

/** `ocular serve` as its own process; resolves with its URL once it listens. */
async function serve(dir: string, ...flags: string[]): Promise<{ child: ChildProcess; url: string; log: () => string }> {
  const child = spawn(process.execPath, [BIN, 'serve', '--port', '0', '--data', dir, '--config', join(dir, 'config.json'), ...flags], {
    env: environment(),
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  children.push(child);
  let log = '';
  const lines = createInterface({ input: child.stderr! });
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no start in 30 s: ${log}`)), 30_000);
    lines.on('line', (line) => {
      log += `${line}\n`;
      if (!line.includes('ocular is listening')) return;
      clearTimeout(timer);
      resolve((JSON.parse(line) as { url: string }).url);
    });
    child.once('exit', (code) => reject(new Error(`exited with ${code}: ${log}`)));
  });
  return { child, url, log: () => log };
}

async function video(url: string, id: string): Promise<{ indexing_status: string }> {
  return (await (await fetch(`${url}/v1/videos/${id}`, { headers: { 'x-api-key': KEY } })).json()) as { indexing_status: string };
}

describe('ocular migrate and --no-migrate', () => {
  it('migrates a new data directory, says when it is up to date, and serve --no-migrate refuses an old schema', async () => {
    const dir = dataDir();
    const refused = await run(process.execPath, [BIN, 'serve', '--no-migrate', '--port', '0', '--data', dir], { env: environment() }).catch(
      (error: { code: number; stderr: string }) => error,
    );
    expect((refused as { code: number }).code).toBe(1);
    expect((refused as { stderr: string }).stderr).toContain('ocular migrate');

    const first = await run(process.execPath, [BIN, 'migrate', '--data', dir], { env: environment() });
    expect(first.stdout).toBe(`${join(dir, 'ocular.db')}: schema migrated from version 0 to ${SCHEMA_VERSION}\n`);
    const again = await run(process.execPath, [BIN, 'migrate', '--data', dir], { env: environment() });
    expect(again.stdout).toBe(`${join(dir, 'ocular.db')}: schema is at version ${SCHEMA_VERSION} (up to date)\n`);
    const started = await serve(dir, '--no-migrate');
    expect((await fetch(`${started.url}/healthz`)).status).toBe(200);
    started.child.kill('SIGTERM');
  });
});

describe('ocular migrate on PostgreSQL', () => {
  it('migrates the database the config names, once, and serve --no-migrate refuses it before', async () => {
    const test = await createTestDatabase('postgres');
    try {
      const dir = dataDir();
      writeFileSync(join(dir, 'config.json'), JSON.stringify({ storage: test.storage }));
      const config = ['--data', dir, '--config', join(dir, 'config.json')];
      const refused = await run(process.execPath, [BIN, 'serve', '--no-migrate', '--port', '0', ...config], { env: environment() }).catch(
        (error: { code: number; stderr: string }) => error,
      );
      expect((refused as { stderr: string }).stderr).toContain('ocular migrate');
      const first = await run(process.execPath, [BIN, 'migrate', ...config], { env: environment() });
      expect(first.stdout).toBe(`PostgreSQL: schema migrated from version 0 to ${POSTGRES_MIGRATIONS.length}\n`);
      const again = await run(process.execPath, [BIN, 'migrate', ...config], { env: environment() });
      expect(again.stdout).toBe(`PostgreSQL: schema is at version ${POSTGRES_MIGRATIONS.length} (up to date)\n`);
    } finally {
      await test.drop();
    }
  });
});

describe('--role api and --role worker on one data directory', () => {
  it(
    'the api process takes the upload, the worker indexes it, and the api process streams the progress',
    { timeout: 120_000 },
    async () => {
      const dir = dataDir();
      const api = await serve(dir, '--role', 'api');
      const body = new FormData();
      body.set('video_name', 'roles');
      body.set('index', 'true');
      body.set('file', new Blob([new Uint8Array(await readFile(await makeVideo({ seconds: 4 })))], { type: 'video/mp4' }), 'roles.mp4');
      const uploaded = await fetch(`${api.url}/v1/videos/upload`, { method: 'POST', headers: { 'x-api-key': KEY }, body });
      expect(uploaded.status).toBe(200);
      const { video_id: id } = (await uploaded.json()) as { video_id: string };

      // The api process runs no job: the video stays queued.
      await new Promise((resolve) => setTimeout(resolve, 2_000));
      expect((await video(api.url, id)).indexing_status).toBe('pending');

      // Follow the api process's event stream while a worker (another process) does the work.
      const events = fetch(`${api.url}/v1/videos/${id}/events`, { headers: { 'x-api-key': KEY } }).then((response) => response.text());
      const worker = await serve(dir, '--role', 'worker');
      expect((await fetch(`${worker.url}/healthz`)).status).toBe(200);
      expect((await fetch(`${worker.url}/readyz`)).status).toBe(200);
      expect((await fetch(`${worker.url}/v1/videos`, { headers: { 'x-api-key': KEY } })).status).toBe(404);
      expect((await fetch(`${worker.url}/v1/chat`, { method: 'POST', headers: { 'x-api-key': KEY } })).status).toBe(404);

      const text = await events;
      const done = /event: done\ndata: (.+)\n/.exec(text);
      expect(done, text).not.toBeNull();
      expect(JSON.parse(done![1]!)).toMatchObject({ video_id: id, indexing_status: 'indexed' });
      expect(text.match(/event: progress/g)!.length).toBeGreaterThan(1);
      expect((await video(api.url, id)).indexing_status).toBe('indexed');
      api.child.kill('SIGTERM');
      worker.child.kill('SIGTERM');
    },
  );

  it('refuses an unknown role', async () => {
    const failed = await run(process.execPath, [BIN, 'serve', '--role', 'chef', '--port', '0', '--data', dataDir()], {
      env: environment(),
    }).catch((error: { code: number }) => error);
    expect((failed as { code: number }).code).toBe(1);
  });
});
