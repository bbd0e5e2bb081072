import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';

export type Db = Database.Database;

/** Schema steps, applied in order; `PRAGMA user_version` records how many have run. Never edit a shipped step. */
const MIGRATIONS: readonly string[] = [
  `CREATE TABLE api_keys (
     id TEXT PRIMARY KEY,
     name TEXT NOT NULL,
     prefix TEXT NOT NULL,
     hash TEXT NOT NULL UNIQUE,
     created_at INTEGER NOT NULL,
     revoked_at INTEGER
   ) STRICT;`,
  // The durable job queue (src/jobs). `key` makes enqueueing idempotent while a job with it is live; a running
  // job belongs to `lease_owner` until `lease_expires_at`, after which it is taken to have died with its process.
  `CREATE TABLE jobs (
     id TEXT PRIMARY KEY,
     kind TEXT NOT NULL,
     key TEXT,
     payload TEXT NOT NULL,
     status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
     attempts INTEGER NOT NULL DEFAULT 0,
     max_attempts INTEGER NOT NULL,
     progress REAL NOT NULL DEFAULT 0,
     error TEXT,
     run_at INTEGER NOT NULL,
     lease_owner TEXT,
     lease_expires_at INTEGER,
     cancel_requested INTEGER NOT NULL DEFAULT 0,
     created_at INTEGER NOT NULL,
     updated_at INTEGER NOT NULL
   ) STRICT;
   CREATE INDEX jobs_status_run_at ON jobs (status, run_at);
   CREATE UNIQUE INDEX jobs_live_key ON jobs (key) WHERE key IS NOT NULL AND status IN ('queued', 'running');
   CREATE INDEX jobs_kind_created ON jobs (kind, created_at);`,
];

export function migrate(db: Db): void {
  const current = db.pragma('user_version', { simple: true }) as number;
  if (current > MIGRATIONS.length) {
    throw new Error(`the database schema (version ${current}) is newer than this Ocular (version ${MIGRATIONS.length}); upgrade Ocular`);
  }
  const apply = db.transaction(() => {
    for (let version = current; version < MIGRATIONS.length; version++) {
      db.exec(MIGRATIONS[version]!);
      db.pragma(`user_version = ${version + 1}`);
    }
  });
  apply.immediate();
}

/** Opens (creating if needed) `<dataDir>/ocular.db` in WAL mode and brings its schema up to date. */
export function openDatabase(dataDir: string): Db {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const db = new Database(join(dataDir, 'ocular.db'));
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.pragma('busy_timeout = 5000');
  db.pragma('foreign_keys = ON');
  migrate(db);
  return db;
}
