import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';

/** The Redis every developer and CI machine runs; `OCULAR_TEST_REDIS_URL` points the tests at another. */
export const TEST_REDIS_URL = process.env['OCULAR_TEST_REDIS_URL'] ?? 'redis://127.0.0.1:6379';

/** A key prefix of a test's own, for `deleteKeys` to remove after. */
export function testKeyPrefix(): string {
  return `ocular-test-${randomBytes(6).toString('hex')}`;
}

/** Deletes every key under `prefix`. */
export async function deleteKeys(prefix: string): Promise<void> {
  const redis = new Redis(TEST_REDIS_URL);
  try {
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 500);
      if (keys.length > 0) await redis.del(...keys);
      cursor = next;
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
}
