import { existsSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TEST_POSTGRES_URL } from './helpers/databases.ts';
import { startOcular, type TestOcular } from './helpers/ocular.ts';
import { storageDependentTests } from './helpers/storage-dependents.ts';
import { databaseNameFor, TEST_STORAGE } from './helpers/storage-mode.ts';

// `npm test` runs this file in both projects: it checks that each one really puts its servers where it says.
describe(`the ${TEST_STORAGE} run of the suite`, () => {
  let server: TestOcular;
  beforeAll(async () => {
    server = await startOcular({});
  });
  afterAll(() => server?.close());

  it('starts its servers on that database', async () => {
    expect(TEST_STORAGE).toBe(process.env.OCULAR_TEST_STORAGE === 'postgres' ? 'postgres' : 'sqlite');
    const client = new pg.Client({ connectionString: TEST_POSTGRES_URL });
    await client.connect();
    try {
      const { rowCount } = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [databaseNameFor(server.dataDir)]);
      expect(rowCount).toBe(TEST_STORAGE === 'postgres' ? 1 : 0);
    } finally {
      await client.end();
    }
    expect(existsSync(join(server.dataDir, 'ocular.db'))).toBe(TEST_STORAGE === 'sqlite');
    expect(await server.withDatabase(async (database) => database.dialect)).toBe(TEST_STORAGE);
  });
});

describe('storageDependentTests', () => {
  const root = resolve(import.meta.dirname);
  const files = storageDependentTests(root).map((file) => relative(root, file));

  it('names the files whose servers follow the storage mode, through the helpers they import', () => {
    expect(files).toContain('storage-mode.test.ts');
    expect(files).toContain('server/vision-videos.test.ts'); // through helpers/ocular.ts
    expect(files).toContain('server/vision-crash.test.ts'); // imports the storage-mode helper itself
  });

  it('leaves out the files that do not depend on it', () => {
    expect(files).not.toContain('media/sniff.test.ts');
    expect(files).not.toContain('store/sql-database.test.ts'); // runs both dialects itself
  });
});
