import { availableParallelism } from 'node:os';
import { relative, resolve } from 'node:path';
import { defineConfig } from 'vitest/config';
import { storageDependentTests } from './test/helpers/storage-dependents.ts';

const root = import.meta.dirname;

export default defineConfig({
  test: {
    // Two files run at once on two cores, so a test (or hook) that spawns processes can take twice as long as alone.
    testTimeout: 40_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // Most test time is spent waiting on child processes, servers and databases: at least two files at once, even
    // on a machine with two cores (vitest's default would be one there).
    maxWorkers: Math.max(2, availableParallelism()),
    globalSetup: ['test/global-setup.ts'],
    // `npm test` runs the whole suite on SQLite, and every file whose servers follow the storage mode again on
    // PostgreSQL. `--project sqlite` or `--project postgres` runs one of them.
    projects: [
      { extends: true, test: { name: 'sqlite', include: ['test/**/*.test.ts'] } },
      {
        extends: true,
        test: {
          name: 'postgres',
          include: storageDependentTests(resolve(root, 'test')).map((file) => relative(root, file)),
          env: { OCULAR_TEST_STORAGE: 'postgres' },
        },
      },
    ],
  },
});
