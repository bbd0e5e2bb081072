import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { S3Blobs, type S3BlobSettings } from '../../src/store/object-store.ts';

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

/** Runs `use` on the S3 view of a data dir's blobs in this run's mode; undefined in folder mode. */
async function withTestStore<T>(dataDir: string, use: (store: S3Blobs) => Promise<T>): Promise<T | undefined> {
  const settings = testBlobsFor(dataDir);
  if (settings === undefined) return undefined;
  const store = new S3Blobs(settings);
  try {
    return await use(store);
  } finally {
    store.close();
  }
}

/** Whether a server on `dataDir` holds the blob or blob folder `path` (`videos/<id>/source`, `images/<id>`). */
export async function hasTestBlob(dataDir: string, path: string): Promise<boolean> {
  const found = await withTestStore(dataDir, async (store) => (await store.exists(path)) || (await store.list(path)).length > 0);
  return found ?? existsSync(join(dataDir, path));
}

/** Writes a blob where a server on `dataDir` keeps them, as a test fixture (a keyframe, an image). */
export async function writeTestBlob(dataDir: string, path: string, data: Uint8Array): Promise<void> {
  const stored = await withTestStore(dataDir, async (store) => {
    await store.put(path, data);
    return true;
  });
  if (stored) return;
  mkdirSync(dirname(join(dataDir, path)), { recursive: true });
  writeFileSync(join(dataDir, path), data);
}
