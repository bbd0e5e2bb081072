import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { openSqlDatabase, type SqlDatabase, type SqlDialectName, type StorageSettings } from '../../src/store/sql.ts';

/**
 * The PostgreSQL server every developer and CI machine runs (trust auth). Tests make a database of their own on it
 * and drop it after. `OCULAR_TEST_POSTGRES_URL` points them at another server.
 */
export const TEST_POSTGRES_URL = process.env.OCULAR_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

/** Both dialects, for `describe.each(DIALECTS)`: every store test runs on SQLite and on PostgreSQL. */
export const DIALECTS: readonly SqlDialectName[] = ['sqlite', 'postgres'];

/** A throwaway database, and the storage settings that reach it (for a server under test). */
export interface TestDatabase {
  storage: StorageSettings;
  /** Where SQLite's file lives (a temp folder; also usable as the server's data dir). */
  dataDir: string;
  /** Opens (and migrates) a connection; each one is closed by `drop`. */
  open(options?: { migrate?: boolean }): Promise<SqlDatabase>;
  /** Closes what `open` opened and removes the database. */
  drop(): Promise<void>;
}

function withDatabase(url: string, name: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${name}`;
  return parsed.toString();
}

async function admin<T>(run: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: TEST_POSTGRES_URL });
  await client.connect();
  try {
    return await run(client);
  } finally {
    await client.end();
  }
}

/** Creates an empty database of `dialect` (a new PostgreSQL database, or a new temp folder for SQLite). */
export async function createTestDatabase(dialect: SqlDialectName, dataDir?: string): Promise<TestDatabase> {
  const ownDir = dataDir === undefined;
  const dir = dataDir ?? mkdtempSync(join(tmpdir(), 'ocular-db-'));
  const opened: SqlDatabase[] = [];
  let storage: StorageSettings = { database: 'sqlite' };
  let name: string | undefined;
  if (dialect === 'postgres') {
    name = `ocular_test_${randomBytes(6).toString('hex')}`;
    await admin((client) => client.query(`CREATE DATABASE ${name}`));
    storage = { database: 'postgres', url: withDatabase(TEST_POSTGRES_URL, name), poolSize: 4 };
  }
  return {
    storage,
    dataDir: dir,
    open: async (options = {}) => {
      const database = await openSqlDatabase(storage, { dataDir: dir, migrate: options.migrate });
      opened.push(database);
      return database;
    },
    drop: async () => {
      await Promise.all(opened.splice(0).map((database) => database.close()));
      if (name !== undefined) await admin((client) => client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`));
      if (ownDir) rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Opens a migrated database of `dialect`; `close` drops it. For store tests: `const db = await openTestDatabase(d)`. */
export async function openTestDatabase(dialect: SqlDialectName): Promise<SqlDatabase & { drop(): Promise<void> }> {
  const test = await createTestDatabase(dialect);
  const database = await test.open();
  return { ...database, close: test.drop, drop: test.drop };
}
