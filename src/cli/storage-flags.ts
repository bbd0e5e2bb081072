import { existsSync } from 'node:fs';
import { parseConfigFile, readConfigFile } from '../config/load-config.ts';
import { DEFAULT_CONFIG_PATH, resolveDataDir } from '../config/settings.ts';
import type { StorageSettings } from '../store/sql.ts';

/** Where an admin command (`ocular migrate`, `ocular keys`) finds the metadata: the data dir and the config's `storage`. */
export interface StorageTarget {
  dataDir: string;
  storage: StorageSettings;
}

/**
 * Resolves `--data` and `--config` the way `ocular serve` does (OCULAR_DATA_DIR, OCULAR_CONFIG, then
 * ./ocular.config.json), so an admin command reaches the database the server uses, SQLite or PostgreSQL.
 */
export function resolveStorageTarget(
  flags: { data?: string | undefined; config?: string | undefined },
  env: Readonly<Record<string, string | undefined>>,
): StorageTarget {
  const dataDir = resolveDataDir(flags.data, env);
  const explicit = flags.config ?? (env.OCULAR_CONFIG === '' ? undefined : env.OCULAR_CONFIG);
  const path = explicit ?? (existsSync(DEFAULT_CONFIG_PATH) ? DEFAULT_CONFIG_PATH : undefined);
  if (path === undefined) return { dataDir, storage: { database: 'sqlite' } };
  return { dataDir, storage: parseConfigFile(path, readConfigFile(path), env).storage };
}
