import { createHash } from 'node:crypto';
import pg from 'pg';
import { openSqlDatabase, type SqlDatabase, type StorageSettings } from '../../src/store/sql.ts';
import { TEST_POSTGRES_URL } from './databases.ts';

/**
 * `OCULAR_TEST_STORAGE=postgres` runs every server the tests start on PostgreSQL instead of SQLite
 * (`npm run test:postgres`): each data dir gets a database of its own, named after the test run and the data dir
 * (a test that restarts a server on the same data dir finds its rows again), dropped when the run ends.
 */
export const TEST_STORAGE = process.env.OCULAR_TEST_STORAGE === 'postgres' ? 'postgres' : 'sqlite';

/** Set by the global set-up (vitest.setup.ts): names this run's databases so its teardown drops exactly those. */
const RUN = process.env.OCULAR_TEST_RUN ?? 'solo';

export function databaseNameFor(dataDir: string): string {
  return `ocular_t_${RUN}_${createHash('sha256').update(dataDir).digest('hex').slice(0, 16)}`;
}

export function runDatabasePattern(run: string): string {
  return `ocular_t_${run}_%`;
}

async function admin<T>(work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: TEST_POSTGRES_URL });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

/** The storage settings for a server on `dataDir` in this run's mode (creating its PostgreSQL database). */
export async function testStorageFor(dataDir: string): Promise<StorageSettings | undefined> {
  if (TEST_STORAGE === 'sqlite') return undefined;
  const name = databaseNameFor(dataDir);
  await admin(async (client) => {
    await client.query(`CREATE DATABASE ${name}`).catch((error: { code?: string }) => {
      if (error.code !== '42P04') throw error; // it exists: a restart on the same data dir
    });
  });
  const url = new URL(TEST_POSTGRES_URL);
  url.pathname = `/${name}`;
  return { database: 'postgres', url: url.toString(), poolSize: 4 };
}

/** Drops the database a server on `dataDir` used. */
export async function dropTestStorageFor(dataDir: string): Promise<void> {
  if (TEST_STORAGE === 'sqlite') return;
  await admin((client) => client.query(`DROP DATABASE IF EXISTS ${databaseNameFor(dataDir)} WITH (FORCE)`));
}

/** Drops every database of run `run` (the global teardown). */
export async function dropRunDatabases(run: string): Promise<void> {
  await admin(async (client) => {
    const { rows } = await client.query<{ datname: string }>('SELECT datname FROM pg_database WHERE datname LIKE $1', [
      runDatabasePattern(run),
    ]);
    for (const { datname } of rows) await client.query(`DROP DATABASE IF EXISTS ${datname} WITH (FORCE)`);
  });
}

/**
 * Opens the database of the server on `dataDir` in this run's mode (its SQLite file, or its PostgreSQL database),
 * for a test that seeds or inspects rows while the server runs or after it stopped; close it after.
 */
export async function openDataDirDatabase(dataDir: string): Promise<SqlDatabase> {
  return openSqlDatabase((await testStorageFor(dataDir)) ?? { database: 'sqlite' }, { dataDir });
}

/** Runs `use` on the database of the server on `dataDir`, closing it after. */
export async function withDataDirDatabase<T>(dataDir: string, use: (database: SqlDatabase) => Promise<T> | T): Promise<T> {
  const database = await openDataDirDatabase(dataDir);
  try {
    return await use(database);
  } finally {
    await database.close();
  }
}
