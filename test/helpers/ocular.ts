import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../../src/config/load-config.ts';
import type { ServerSettings } from '../../src/config/settings.ts';
import { createLogger, type Logger } from '../../src/server/logger.ts';
import { ANALYZER_CATALOG } from '../../src/models/analyzer-catalog.ts';
import { dropTestStorageFor, testStorageFor } from './storage-mode.ts';
import { testBlobsFor } from './blob-mode.ts';
import { openSqlDatabase, type SqlDatabase } from '../../src/store/sql.ts';
import { startServer, type RunningServer, type ServerDependencies } from '../../src/server/serve.ts';

export const TEST_KEY = 'ocu_test_key_0123456789abcdef';

export interface TestOcular extends RunningServer {
  key: string;
  dataDir: string;
  /** Headers that authenticate, plus JSON content type. */
  headers: Record<string, string>;
  post(path: string, body: unknown, headers?: Record<string, string>, signal?: AbortSignal): Promise<Response>;
  get(path: string, headers?: Record<string, string>): Promise<Response>;
  /** Opens the server's own metadata database (SQLite or PostgreSQL), to seed or inspect rows; close it after. */
  openDatabase(): Promise<SqlDatabase>;
  /** Runs `use` on the server's database, closing it after. */
  withDatabase<T>(use: (database: SqlDatabase) => Promise<T> | T): Promise<T>;
}

/** Starts a real Ocular listener on a free loopback port, with a temp data dir and one env API key. */
/**
 * The analyzer catalog with every download URL on a closed loopback port: tests never reach the internet, and
 * a background weights download fails at once.
 */
export const OFFLINE_ANALYZER_CATALOG = ANALYZER_CATALOG.map((model) => ({
  ...model,
  files: model.files.map((file) => ({ ...file, url: `http://127.0.0.1:9/${model.name}/${file.file}` })),
}));

export async function startOcular(
  config: unknown,
  overrides: Partial<ServerSettings> = {},
  dependencies: ServerDependencies = {},
  logger: Logger = createLogger('silent'),
): Promise<TestOcular> {
  const ownDataDir = overrides.dataDir === undefined ? mkdtempSync(join(tmpdir(), 'ocular-test-')) : undefined;
  const dataDir = overrides.dataDir ?? ownDataDir!;
  const parsed = parseConfig(config, {});
  const storage = config !== null && typeof config === 'object' && 'storage' in config ? undefined : await testStorageFor(dataDir);
  const blobs = config !== null && typeof config === 'object' && 'blobs' in config ? undefined : testBlobsFor(dataDir);
  const settings: ServerSettings = {
    host: '127.0.0.1',
    port: 0,
    dataDir,
    logLevel: 'silent',
    binaries: { searchPath: process.env.PATH ?? '' },
    configPath: undefined,
    envApiKeys: [TEST_KEY],
    auth: true,
    config: {
      ...parsed,
      ...(storage === undefined ? {} : { storage: { ...parsed.storage, ...storage, poolSize: storage.poolSize ?? 4 } }),
      ...(blobs === undefined ? {} : { blobs }),
    },
    ...overrides,
  };
  const server = await startServer(settings, logger, { analyzerCatalog: OFFLINE_ANALYZER_CATALOG, ...dependencies });
  const headers = { 'content-type': 'application/json', 'x-api-key': TEST_KEY };
  return {
    ...server,
    key: TEST_KEY,
    dataDir,
    headers,
    post: (path, body, extra = {}, signal) =>
      fetch(server.url + path, {
        method: 'POST',
        headers: { ...headers, ...extra },
        body: typeof body === 'string' ? body : JSON.stringify(body),
        ...(signal ? { signal } : {}),
      }),
    get: (path, extra = {}) => fetch(server.url + path, { headers: { ...headers, ...extra } }),
    openDatabase: () => openSqlDatabase(settings.config.storage, { dataDir }),
    withDatabase: async (use) => {
      const database = await openSqlDatabase(settings.config.storage, { dataDir });
      try {
        return await use(database);
      } finally {
        await database.close();
      }
    },
    close: async (graceMs?: number) => {
      await server.close(graceMs ?? 1_000);
      if (ownDataDir) {
        rmSync(ownDataDir, { recursive: true, force: true });
        if (storage !== undefined) await dropTestStorageFor(ownDataDir);
      }
    },
  };
}

/** Reads an SSE response body into its `data` payloads (raw strings). */
export async function readSseData(response: Response): Promise<string[]> {
  const text = await response.text();
  return text
    .split('\n\n')
    .filter((block) => block.trim() !== '')
    .map((block) =>
      block
        .split('\n')
        .filter((line) => line.startsWith('data:'))
        .map((line) => line.slice(5).trimStart())
        .join('\n'),
    );
}

/** `url` with the first character of its `signature` parameter changed (to another one, whatever it was). */
export function tamperSignature(url: string): string {
  return url.replace(/signature=(.)/, (_, first: string) => `signature=${first === 'A' ? 'B' : 'A'}`);
}
