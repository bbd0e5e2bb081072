import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { PostgresChangeFeed, RedisChangeFeed, type ChangeFeed } from '../../src/store/change-feed.ts';
import { TEST_POSTGRES_URL } from '../helpers/databases.ts';

const opened: Array<{ close(): Promise<unknown> }> = [];
afterEach(async () => {
  for (const item of opened.splice(0).reverse()) await item.close();
});

/** Resolves with how many notices `topic` got within `ms`. */
function heard(feed: ChangeFeed, topic: string, ms: number): Promise<number> {
  let count = 0;
  const unsubscribe = feed.subscribe(topic, () => (count += 1));
  return new Promise((resolve) =>
    setTimeout(() => {
      unsubscribe();
      resolve(count);
    }, ms),
  );
}

async function postgresFeed(): Promise<{ feed: PostgresChangeFeed; pool: pg.Pool }> {
  const pool = new pg.Pool({ connectionString: TEST_POSTGRES_URL, max: 2 });
  const feed = await PostgresChangeFeed.open(pool, TEST_POSTGRES_URL);
  opened.push({ close: () => pool.end() }, feed);
  return { feed, pool };
}

describe('change notices through PostgreSQL LISTEN/NOTIFY', () => {
  it('reach every process once, the publishing one included, and only for their topic', async () => {
    const [a, b] = [await postgresFeed(), await postgresFeed()];
    const topic = `video:${randomBytes(4).toString('hex')}`;
    const onA = heard(a.feed, topic, 800);
    const onB = heard(b.feed, topic, 800);
    const other = heard(b.feed, `${topic}-other`, 800);
    a.feed.publish(topic);
    expect(await onA).toBe(1);
    expect(await onB).toBe(1);
    expect(await other).toBe(0);
  });

  it('keep arriving after the listening connection is cut', async () => {
    const [a, b] = [await postgresFeed(), await postgresFeed()];
    const topic = `video:${randomBytes(4).toString('hex')}`;
    // Cut every listening connection of the test database's other sessions except the pools': the feeds reconnect.
    await a.pool.query(
      `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'LISTEN ocular_changes%' AND pid <> pg_backend_pid()`,
    );
    const deadline = Date.now() + 10_000;
    let count = 0;
    const unsubscribe = b.feed.subscribe(topic, () => (count += 1));
    while (count === 0 && Date.now() < deadline) {
      a.feed.publish(topic);
      await new Promise((resolve) => setTimeout(resolve, 300));
    }
    unsubscribe();
    expect(count).toBeGreaterThan(0);
  });
});

describe('change notices through Redis pub/sub', () => {
  it('reach every process sharing the prefix, and no other', async () => {
    const prefix = `ocular-test-${randomBytes(4).toString('hex')}`;
    const a = await RedisChangeFeed.open('redis://127.0.0.1:6379', prefix);
    const b = await RedisChangeFeed.open('redis://127.0.0.1:6379', prefix);
    const stranger = await RedisChangeFeed.open('redis://127.0.0.1:6379', `${prefix}-other`);
    opened.push(a, b, stranger);
    const onB = heard(b, 'clip:1', 500);
    const onStranger = heard(stranger, 'clip:1', 500);
    a.publish('clip:1');
    expect(await onB).toBe(1);
    expect(await onStranger).toBe(0);
  });
});
