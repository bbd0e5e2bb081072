import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ApiKeyStore } from '../../src/store/api-keys.ts';
import type { SqlDatabase } from '../../src/store/sql.ts';
import { startOcular, TEST_KEY, type TestOcular } from '../helpers/ocular.ts';

const MODEL_ROUTES = ['/v1/models', '/openai/v1/models'] as const;

/** Everything started by a test, closed after it whatever happened. */
const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function start(overrides: Parameters<typeof startOcular>[1] = {}): Promise<TestOcular> {
  const server = await startOcular({}, overrides);
  cleanups.push(() => server.close());
  return server;
}

/** A connection of its own to the server's database, as another process (the CLI, another machine) would have. */
async function openSecondConnection(server: TestOcular): Promise<SqlDatabase> {
  const database = await server.openDatabase();
  cleanups.push(() => database.close());
  return database;
}

function temporaryDataDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'ocular-auth-test-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function expectError(response: Response, status: number, type: string): Promise<void> {
  expect(response.status).toBe(status);
  expect(response.headers.get('content-type')).toMatch(/^application\/json/);
  const body = (await response.json()) as { error: { type: string; message: string } };
  expect(body.error.type).toBe(type);
  expect(typeof body.error.message).toBe('string');
  expect(body.error.message).not.toBe('');
}

const getWith = (server: TestOcular, path: string, headers: Record<string, string> = {}) => fetch(server.url + path, { headers });

describe('authentication over a real listener', () => {
  it('serves /healthz without a key', async () => {
    const server = await start();
    const response = await getWith(server, '/healthz');
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ status: 'ok' });
  });

  it.each(MODEL_ROUTES)('rejects %s without a key or with a wrong key (401 authentication_error)', async (path) => {
    const server = await start();
    await expectError(await getWith(server, path), 401, 'authentication_error');
    await expectError(await getWith(server, path, { 'x-api-key': 'ocu_wrong' }), 401, 'authentication_error');
    await expectError(await getWith(server, path, { authorization: 'Bearer ocu_wrong' }), 401, 'authentication_error');
    await expectError(await getWith(server, path, { authorization: `Basic ${TEST_KEY}` }), 401, 'authentication_error');
    await expectError(await getWith(server, path, { 'x-api-key': '' }), 401, 'authentication_error');
  });

  it.each(['/v1/models', '/v1/chat'])(
    'tells an Authorization header without the Bearer scheme from a missing key on %s (401)',
    async (path) => {
      const server = await start();
      const send = (authorization: string) =>
        fetch(server.url + path, {
          method: path === '/v1/chat' ? 'POST' : 'GET',
          headers: { authorization, 'content-type': 'application/json' },
          ...(path === '/v1/chat' ? { body: '{}' } : {}),
        });
      for (const authorization of [TEST_KEY, `Basic ${TEST_KEY}`, `Token ${TEST_KEY}`]) {
        const response = await send(authorization);
        expect(response.status).toBe(401);
        const { error } = (await response.json()) as { error: { type: string; message: string } };
        expect(error.type).toBe('authentication_error');
        // The point of this answer: it names the scheme, and never echoes what came (it may be the key).
        expect(error.message).toMatch(/scheme/);
        expect(error.message).not.toContain(TEST_KEY);
      }
    },
  );

  it('rejects chat requests without a key before reading the body', async () => {
    const server = await start();
    const response = await fetch(`${server.url}/v1/chat`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    await expectError(response, 401, 'authentication_error');
  });

  it.each(MODEL_ROUTES)('accepts the key on %s as X-Api-Key and as Authorization: Bearer', async (path) => {
    const server = await start();
    expect((await getWith(server, path, { 'x-api-key': TEST_KEY })).status).toBe(200);
    expect((await getWith(server, path, { authorization: `Bearer ${TEST_KEY}` })).status).toBe(200);
    expect((await getWith(server, path, { authorization: `bearer ${TEST_KEY}` })).status).toBe(200);
  });

  it('answers unknown routes with 404 not_found_error once authenticated', async () => {
    const server = await start();
    await expectError(await getWith(server, '/v1/nothing-here', { 'x-api-key': TEST_KEY }), 404, 'not_found_error');
  });
});

describe('X-Request-ID', () => {
  it('is on every response: 200, 401 and 404', async () => {
    const server = await start();
    const responses = [
      await getWith(server, '/healthz'),
      await getWith(server, '/v1/models', { 'x-api-key': TEST_KEY }),
      await getWith(server, '/v1/models'),
      await getWith(server, '/nope', { 'x-api-key': TEST_KEY }),
    ];
    expect(responses.map((response) => response.status)).toEqual([200, 200, 401, 404]);
    const ids = responses.map((response) => response.headers.get('x-request-id'));
    for (const id of ids) expect(id).toMatch(/^[\w.:-]{1,128}$/);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it('echoes a valid incoming id, on success and on errors', async () => {
    const server = await start();
    const ok = await getWith(server, '/v1/models', { 'x-api-key': TEST_KEY, 'x-request-id': 'trace-123.abc:def' });
    expect(ok.headers.get('x-request-id')).toBe('trace-123.abc:def');
    const rejected = await getWith(server, '/v1/models', { 'x-request-id': 'trace-456' });
    expect(rejected.status).toBe(401);
    expect(rejected.headers.get('x-request-id')).toBe('trace-456');
  });

  it('replaces an incoming id that is not a plain token', async () => {
    const server = await start();
    for (const bad of ['has spaces in it', 'x'.repeat(129), '<script>']) {
      const response = await getWith(server, '/healthz', { 'x-request-id': bad });
      const id = response.headers.get('x-request-id');
      expect(id).not.toBe(bad);
      expect(id).toMatch(/^[\w.:-]{1,128}$/);
    }
  });
});

/** Running servers look for keys changed by other processes every 250 ms. */
const afterRecheck = () => new Promise((resolve) => setTimeout(resolve, 300));

describe('stored keys', () => {
  it('accept a key created through another connection and reject it once revoked, within the recheck interval', async () => {
    const dataDir = temporaryDataDir();
    const server = await start({ dataDir });
    const store = new ApiKeyStore(await openSecondConnection(server));

    const { key, info } = await store.create('from-another-process');
    expect(key.startsWith('ocu_')).toBe(true);
    await afterRecheck();
    expect((await getWith(server, '/v1/models', { 'x-api-key': key })).status).toBe(200);
    expect((await getWith(server, '/openai/v1/models', { authorization: `Bearer ${key}` })).status).toBe(200);

    expect(await store.revoke(info.id)).toBe(true);
    await afterRecheck();
    await expectError(await getWith(server, '/v1/models', { 'x-api-key': key }), 401, 'authentication_error');
    // The environment key is unaffected.
    expect((await getWith(server, '/v1/models', { 'x-api-key': TEST_KEY })).status).toBe(200);
  });

  it('can be revoked by the listed prefix', async () => {
    const dataDir = temporaryDataDir();
    const server = await start({ dataDir });
    const store = new ApiKeyStore(await openSecondConnection(server));
    const { key, info } = await store.create('by-prefix');
    await afterRecheck();
    expect((await getWith(server, '/v1/models', { 'x-api-key': key })).status).toBe(200);
    expect(await store.revoke(info.prefix)).toBe(true);
    await afterRecheck();
    await expectError(await getWith(server, '/v1/models', { 'x-api-key': key }), 401, 'authentication_error');
  });
});

describe('bootstrap key', () => {
  it('is created once when auth is on and there is no key, saved 0600, and works', async () => {
    const dataDir = temporaryDataDir();
    const first = await startOcular({}, { dataDir, envApiKeys: [] });
    let closed = false;
    cleanups.push(() => (closed ? undefined : first.close()));

    expect(first.bootstrapKey).toBeDefined();
    const key = first.bootstrapKey!;
    const file = join(dataDir, 'bootstrap-key');
    expect(readFileSync(file, 'utf8').trim()).toBe(key);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect((await getWith(first, '/v1/models', { 'x-api-key': key })).status).toBe(200);
    await expectError(await getWith(first, '/v1/models', { 'x-api-key': TEST_KEY }), 401, 'authentication_error');
    await first.close();
    closed = true;

    const second = await start({ dataDir, envApiKeys: [] });
    expect(second.bootstrapKey).toBeUndefined();
    expect(readFileSync(file, 'utf8').trim()).toBe(key);
    expect((await getWith(second, '/v1/models', { 'x-api-key': key })).status).toBe(200);
    const database = await openSecondConnection(second);
    expect((await new ApiKeyStore(database).list()).map((info) => info.name)).toEqual(['bootstrap']);
  });

  it('is not created when the start fails on a bad model config', async () => {
    const dataDir = temporaryDataDir();
    await expect(
      startOcular({ models: [{ id: 'x', provider: 'openai-compatible', model: 'm' }] }, { dataDir, envApiKeys: [] }),
    ).rejects.toThrow(/baseUrl/);
    expect(() => statSync(join(dataDir, 'bootstrap-key'))).toThrow();
  });

  it('is not created when environment keys are configured', async () => {
    const dataDir = temporaryDataDir();
    const server = await start({ dataDir });
    expect(server.bootstrapKey).toBeUndefined();
    expect(() => statSync(join(dataDir, 'bootstrap-key'))).toThrow();
  });

  it('is not created when auth is off', async () => {
    const dataDir = temporaryDataDir();
    const server = await start({ dataDir, envApiKeys: [], auth: false });
    expect(server.bootstrapKey).toBeUndefined();
    expect(() => statSync(join(dataDir, 'bootstrap-key'))).toThrow();
  });
});

describe('auth: false', () => {
  it('serves the API without a key', async () => {
    const server = await start({ auth: false });
    for (const path of MODEL_ROUTES) {
      const response = await getWith(server, path);
      expect(response.status).toBe(200);
      expect(response.headers.get('x-request-id')).toBeTruthy();
    }
    await expectError(await getWith(server, '/v1/unknown'), 404, 'not_found_error');
  });
});
