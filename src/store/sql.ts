import { Kysely, PostgresDialect, SqliteDialect, sql, type SelectQueryBuilder, type Transaction } from 'kysely';
import pg from 'pg';
import { openDatabase, schemaVersion as sqliteSchemaVersion, SCHEMA_VERSION, SchemaBehindError, type Db } from './database.ts';
import { POSTGRES_MIGRATIONS } from './postgres-schema.ts';
import type { Tables } from './tables.ts';

export type SqlDialectName = 'sqlite' | 'postgres';

/** Where the metadata lives (config `storage`). */
export interface StorageSettings {
  database: SqlDialectName;
  /** PostgreSQL connection string (`postgres://user:password@host:5432/db`); unused for SQLite. */
  url?: string | undefined;
  /** Connections this process keeps open to PostgreSQL. @default 10 */
  poolSize?: number | undefined;
}

/**
 * The metadata database every store works through: one typed query layer (Kysely) over SQLite (embedded, the
 * default: `<dataDir>/ocular.db`) or PostgreSQL (shared by many API processes and workers).
 */
export interface SqlDatabase {
  readonly dialect: SqlDialectName;
  readonly db: Kysely<Tables>;
  /**
   * SQLite only: the better-sqlite3 connection under `db`. Code that still uses it directly runs inside whatever
   * Kysely transaction is open on it; prefer `db`.
   */
  readonly sqlite: Db | undefined;
  /** PostgreSQL only: the connection pool under `db` (for LISTEN/NOTIFY). */
  readonly pool: pg.Pool | undefined;
  /** The number of schema steps applied. */
  schemaVersion(): Promise<number>;
  /** The number of schema steps this Ocular has for this dialect. */
  readonly latestSchemaVersion: number;
  close(): Promise<void>;
}

export type SqlExecutor = Kysely<Tables> | Transaction<Tables>;

/** PostgreSQL's BIGINT columns hold milliseconds and counts, well inside a double's exact range: read them as numbers. */
const POSTGRES_TYPES = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') => {
    if (oid === pg.types.builtins.INT8 && format !== 'binary') return (value: string) => Number(value);
    return pg.types.getTypeParser(oid, format);
  }) as typeof pg.types.getTypeParser,
};

/**
 * Opens the metadata database and brings its schema up to date, unless `migrate` is false: then a schema that is
 * behind is refused (`SchemaBehindError`), for deployments that migrate as a separate step (`ocular migrate`).
 */
/** The query layer over an open SQLite handle (closing it closes the handle). */
export function sqliteDatabase(handle: Db): SqlDatabase {
  const db = new Kysely<Tables>({ dialect: new SqliteDialect({ database: handle }) });
  return {
    dialect: 'sqlite',
    db,
    sqlite: handle,
    pool: undefined,
    latestSchemaVersion: SCHEMA_VERSION,
    schemaVersion: async () => sqliteSchemaVersion(handle),
    close: () => db.destroy(),
  };
}

export async function openSqlDatabase(
  storage: StorageSettings,
  options: { dataDir: string; migrate?: boolean | undefined },
): Promise<SqlDatabase> {
  if (storage.database === 'sqlite') return sqliteDatabase(openDatabase(options.dataDir, { migrate: options.migrate ?? true }));
  if (!storage.url) throw new Error('storage.url is required when storage.database is "postgres"');
  const pool = new pg.Pool({ connectionString: storage.url, max: storage.poolSize ?? 10, types: POSTGRES_TYPES });
  // An idle connection that the server drops (a restart, a failover) must not crash the process; the pool
  // replaces it on the next query.
  pool.on('error', () => {});
  const db = new Kysely<Tables>({ dialect: new PostgresDialect({ pool }) });
  const database: SqlDatabase = {
    dialect: 'postgres',
    db,
    sqlite: undefined,
    pool,
    latestSchemaVersion: POSTGRES_MIGRATIONS.length,
    schemaVersion: () => postgresSchemaVersion(db),
    close: () => db.destroy(),
  };
  try {
    if (options.migrate === false) {
      const current = await database.schemaVersion();
      if (current < POSTGRES_MIGRATIONS.length) throw new SchemaBehindError(current, POSTGRES_MIGRATIONS.length);
    }
    await migratePostgres(db);
  } catch (error) {
    await db.destroy();
    throw error;
  }
  return database;
}

async function postgresSchemaVersion(db: Kysely<Tables>): Promise<number> {
  const { rows } = await sql<{ version: number }>`SELECT version FROM ocular_schema`.execute(db).catch((error: unknown) => {
    if ((error as { code?: string }).code === '42P01') return { rows: [] }; // no table yet: a new database
    throw error;
  });
  return rows[0]?.version ?? 0;
}

/**
 * Applies the PostgreSQL schema steps not yet applied, each in its transaction, under an advisory lock: when many
 * processes start at once against a new database, one migrates and the others wait, then find nothing to do.
 */
export async function migratePostgres(db: Kysely<Tables>, target = POSTGRES_MIGRATIONS.length): Promise<void> {
  await db.transaction().execute(async (trx) => {
    await sql`SELECT pg_advisory_xact_lock(hashtext('ocular_schema'))`.execute(trx);
    await sql`CREATE TABLE IF NOT EXISTS ocular_schema (version INTEGER NOT NULL)`.execute(trx);
    const { rows } = await sql<{ version: number }>`SELECT version FROM ocular_schema`.execute(trx);
    if (rows.length === 0) await sql`INSERT INTO ocular_schema (version) VALUES (0)`.execute(trx);
    const current = rows[0]?.version ?? 0;
    if (current > POSTGRES_MIGRATIONS.length) {
      throw new Error(
        `the database schema (version ${current}) is newer than this Ocular (version ${POSTGRES_MIGRATIONS.length}); upgrade Ocular`,
      );
    }
    for (let version = current; version < Math.min(target, POSTGRES_MIGRATIONS.length); version++) {
      await sql.raw(POSTGRES_MIGRATIONS[version]!).execute(trx);
      await sql`UPDATE ocular_schema SET version = ${version + 1}`.execute(trx);
    }
  });
}

/** The number of rows a query (`db.selectFrom(table).where(...)`) matches, as a number on both databases. */
export async function countRows(query: SelectQueryBuilder<Tables, keyof Tables, object>): Promise<number> {
  const row = await query.select((eb) => eb.fn.countAll().as('count')).executeTakeFirstOrThrow();
  return Number(row.count);
}

/** True for a unique-constraint violation on either database. */
export function isUniqueViolation(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return code === '23505' || code === 'SQLITE_CONSTRAINT_UNIQUE' || code === 'SQLITE_CONSTRAINT_PRIMARYKEY';
}

/** True for a foreign-key violation on either database. */
export function isForeignKeyViolation(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return code === '23503' || code === 'SQLITE_CONSTRAINT_FOREIGNKEY';
}
