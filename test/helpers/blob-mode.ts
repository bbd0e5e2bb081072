import { createHash } from 'node:crypto';
import type { S3BlobSettings } from '../../src/store/object-store.ts';

/**
 * `OCULAR_TEST_BLOBS=s3` runs every server the tests start with its blobs on S3 instead of folders
 * (`npm run test:s3`): the global set-up starts one S3-protocol server (s3rver) with one bucket, and each data dir
 * gets a prefix of its own in it, named after the data dir (a test that restarts a server on the same data dir
 * finds its blobs again).
 */
export const TEST_BLOBS = process.env.OCULAR_TEST_BLOBS === 's3' ? 's3' : 'fs';

/** The blob settings for a server on `dataDir` in this run's mode; undefined for folders. */
export function testBlobsFor(dataDir: string): S3BlobSettings | undefined {
  const endpoint = process.env.OCULAR_TEST_S3_URL;
  const bucket = process.env.OCULAR_TEST_S3_BUCKET;
  if (TEST_BLOBS === 'fs' || endpoint === undefined || bucket === undefined) return undefined;
  return {
    kind: 's3',
    bucket,
    prefix: `${createHash('sha256').update(dataDir).digest('hex').slice(0, 16)}/`,
    region: 'us-east-1',
    endpoint,
    forcePathStyle: true,
    accessKeyId: 'S3RVER',
    secretAccessKey: 'S3RVER',
    redirect: false,
    partSizeMiB: 5,
  };
}
