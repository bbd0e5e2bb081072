import { randomBytes } from 'node:crypto';
import { dropRunDatabases, TEST_STORAGE } from './helpers/storage-mode.ts';

/** Names this run (its PostgreSQL databases carry the name) and, at the end, drops what its tests left. */
export default function setup(): () => Promise<void> {
  const run = randomBytes(4).toString('hex');
  process.env.OCULAR_TEST_RUN = run;
  return async () => {
    if (TEST_STORAGE === 'postgres') await dropRunDatabases(run);
  };
}
