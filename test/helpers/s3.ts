import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import S3rver from 's3rver';
import type { S3BlobSettings } from '../../src/store/object-store.ts';

export interface TestS3 {
  /** `blobs` settings for a config file: the bucket on this server, path-style, static credentials. */
  settings: S3BlobSettings;
  url: string;
  client: S3Client;
  close(): Promise<void>;
}

/**
 * A local S3-protocol server (s3rver, files in a temporary folder) on a free loopback port, with one bucket
 * made for the caller. `close` stops it and removes its files.
 */
export async function startTestS3(options: { redirect?: boolean; prefix?: string } = {}): Promise<TestS3> {
  const directory = mkdtempSync(join(tmpdir(), 'ocular-s3-'));
  const server = new S3rver({ port: 0, address: '127.0.0.1', silent: true, directory });
  const { port } = await server.run();
  const url = `http://127.0.0.1:${port}`;
  const settings: S3BlobSettings = {
    kind: 's3',
    bucket: `ocular-test-${randomBytes(4).toString('hex')}`,
    prefix: options.prefix ?? '',
    region: 'us-east-1',
    endpoint: url,
    forcePathStyle: true,
    accessKeyId: 'S3RVER',
    secretAccessKey: 'S3RVER',
    redirect: options.redirect ?? false,
    partSizeMiB: 5,
  };
  const client = new S3Client({
    region: settings.region,
    endpoint: url,
    forcePathStyle: true,
    credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
  });
  await client.send(new CreateBucketCommand({ Bucket: settings.bucket }));
  return {
    settings,
    url,
    client,
    async close() {
      client.destroy();
      await server.close();
      rmSync(directory, { recursive: true, force: true });
    },
  };
}
