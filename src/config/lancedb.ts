/**
 * LanceDB's Rust logger reads `LANCEDB_LOG` once, when its native module loads, and then prints its `WARN` lines
 * (a table created for the first time, ...) straight to stderr, past Ocular's own logger. Unless the user chose
 * a level, it is set to errors only before the module is first imported: every import of LanceDB goes through
 * `loadLanceDb`.
 */
export const LANCEDB_LOG_DEFAULT = 'error';

export function quietLanceDbLogs(env: NodeJS.ProcessEnv = process.env): void {
  if (env.LANCEDB_LOG === undefined || env.LANCEDB_LOG.trim() === '') env.LANCEDB_LOG = LANCEDB_LOG_DEFAULT;
}

export type LanceDb = typeof import('@lancedb/lancedb');

let loaded: Promise<LanceDb> | undefined;

/** The `@lancedb/lancedb` module, imported on first use with its log level set (see above). */
export function loadLanceDb(): Promise<LanceDb> {
  if (loaded === undefined) {
    quietLanceDbLogs();
    loaded = import('@lancedb/lancedb');
    loaded.catch(() => (loaded = undefined));
  }
  return loaded;
}
