import { randomBytes } from 'node:crypto';
import { TEST_BLOBS } from './helpers/blob-mode.ts';
import { startTestS3 } from './helpers/s3.ts';
import { dropRunDatabases } from './helpers/storage-mode.ts';

/**
 * Names this run (its PostgreSQL databases carry the name), starts the S3 server of `npm run test:s3`, and at the
 * end drops what its tests left.
 */
export default async function setup(): Promise<() => Promise<void>> {
  const run = randomBytes(4).toString('hex');
  process.env.OCULAR_TEST_RUN = run;
  const s3 = TEST_BLOBS === 's3' ? await startTestS3() : undefined;
  if (s3) {
    process.env.OCULAR_TEST_S3_URL = s3.url;
    process.env.OCULAR_TEST_S3_BUCKET = s3.settings.bucket;
  }
  return async () => {
    await dropRunDatabases(run); // the postgres project's, and any a test in the sqlite one left
    await s3?.close();
  };
}
