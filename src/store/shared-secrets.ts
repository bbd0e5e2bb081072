import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { SqlDatabase } from './sql.ts';

/**
 * Makes a secret kept in a file of the data dir (the URL signing key, the webhook secret) the same in every
 * process that shares the database: the first process to start stores its file's secret in `server_secrets`, and
 * every other process, on any machine, takes that one and writes it over its own file. So a URL signed by one API
 * process is accepted by another, and every worker signs webhooks alike. On one machine nothing changes: the
 * file's secret is the one stored.
 *
 * @param ensureFile creates the file when missing (the module's own loadOrCreate function) and returns it
 */
export async function shareSecretFile(database: SqlDatabase, dataDir: string, name: string, ensureFile: () => unknown): Promise<void> {
  ensureFile();
  const path = join(dataDir, name);
  const local = readFileSync(path);
  await database.db
    .insertInto('server_secrets')
    .values({ name, value: local, created_at: Date.now() })
    .onConflict((conflict) => conflict.column('name').doNothing())
    .execute();
  const stored = await database.db.selectFrom('server_secrets').select('value').where('name', '=', name).executeTakeFirstOrThrow();
  const value = Buffer.from(stored.value);
  if (!value.equals(local)) writeFileSync(path, value, { mode: 0o600 });
}
