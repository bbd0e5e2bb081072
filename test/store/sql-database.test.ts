import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'kysely';
import { shareSecretFile } from '../../src/store/shared-secrets.ts';
import { loadOrCreateSigningSecret, SIGNING_KEY_FILE } from '../../src/vision/signed-urls.ts';
import { loadOrCreateWebhookSecret, WEBHOOK_SECRET_FILE } from '../../src/vision/webhooks.ts';
import { afterEach, describe, expect, it } from 'vitest';
import { SchemaBehindError } from '../../src/store/database.ts';
import { isUniqueViolation, migratePostgres } from '../../src/store/sql.ts';
import { createTestDatabase, DIALECTS, type TestDatabase } from '../helpers/databases.ts';

describe.each(DIALECTS)('the metadata database on %s', (dialect) => {
  let test: TestDatabase | undefined;
  afterEach(async () => {
    await test?.drop();
    test = undefined;
  });

  it('creates every table at the latest schema version, and opening again changes nothing', async () => {
    test = await createTestDatabase(dialect);
    const first = await test.open();
    expect(await first.schemaVersion()).toBe(first.latestSchemaVersion);
    await first.db
      .insertInto('api_keys')
      .values({ id: 'k1', name: 'n', prefix: 'p', hash: 'h', owner: 'o', created_at: 1_700_000_000_123 })
      .execute();
    const second = await test.open();
    expect(await second.schemaVersion()).toBe(second.latestSchemaVersion);
    const row = await second.db.selectFrom('api_keys').selectAll().executeTakeFirstOrThrow();
    // Milliseconds come back as numbers on both (PostgreSQL's BIGINT included).
    expect(row.created_at).toBe(1_700_000_000_123);
    const { count } = await second.db
      .selectFrom('api_keys')
      .select((eb) => eb.fn.countAll<number>().as('count'))
      .executeTakeFirstOrThrow();
    expect(Number(count)).toBe(1);
  });

  it('tells a unique violation apart from other errors', async () => {
    test = await createTestDatabase(dialect);
    const database = await test.open();
    const key = { id: 'k1', name: 'n', prefix: 'p', hash: 'h', owner: 'o', created_at: 1 };
    await database.db.insertInto('api_keys').values(key).execute();
    const error = await database.db
      .insertInto('api_keys')
      .values(key)
      .execute()
      .catch((caught: unknown) => caught);
    expect(isUniqueViolation(error)).toBe(true);
    expect(isUniqueViolation(new Error('other'))).toBe(false);
  });

  it('keeps a row id that orders rows by insertion', async () => {
    test = await createTestDatabase(dialect);
    const database = await test.open();
    for (const id of ['b', 'a', 'c']) {
      await database.db.insertInto('memories').values({ id, owner: 'o', text: id, conversation_id: null, created_at: 5 }).execute();
    }
    const rows = await database.db.selectFrom('memories').select(['id', 'rowid']).orderBy('rowid').execute();
    expect(rows.map((row) => row.id)).toEqual(['b', 'a', 'c']);
  });
});

describe('PostgreSQL migrations', () => {
  let test: TestDatabase | undefined;
  afterEach(async () => {
    await test?.drop();
    test = undefined;
  });

  it('migrate once when several processes start at the same time on a new database', async () => {
    test = await createTestDatabase('postgres');
    const opened = await Promise.all([test.open(), test.open(), test.open()]);
    for (const database of opened) expect(await database.schemaVersion()).toBe(database.latestSchemaVersion);
  });

  it('refuse a schema that is behind when started without migrating, and name the command that fixes it', async () => {
    test = await createTestDatabase('postgres');
    const partial = await test.open({ migrate: false }).catch((error: unknown) => error);
    expect(partial).toBeInstanceOf(SchemaBehindError);
    expect((partial as Error).message).toMatch(/ocular migrate/);
    const database = await test.open();
    await migratePostgres(database.db);
    expect(await database.schemaVersion()).toBe(database.latestSchemaVersion);
  });

  it('match segments by word and by trigram with the search columns', async () => {
    test = await createTestDatabase('postgres');
    const { db } = await test.open();
    await db.insertInto('video_groups').values({ owner: 'o', id: 'g', name: 'g', created_at: 1, updated_at: 1 }).execute();
    await db
      .insertInto('videos')
      .values({
        id: 'v',
        owner: 'o',
        group_id: 'g',
        name: 'v',
        status: 'indexed',
        index_requested: 1,
        thumbnails: 0,
        metadata: '{}',
        created_at: 1,
        updated_at: 1,
      })
      .execute();
    const segment = {
      video_id: 'v',
      start_seconds: 0,
      end_seconds: 5,
      keyframes: '[]',
      objects: '[]',
      labels: '[]',
      speech: '[]',
      has_speech: null,
      thumbnail: null,
      label_names: '',
      object_names: '',
    };
    await db
      .insertInto('video_segments')
      .values([
        { ...segment, seq: 0, caption: 'a red bicycle by the river', ocr_text: '', transcript: '' },
        { ...segment, seq: 1, caption: 'a kitchen', ocr_text: 'QUARTERLY REPORT', transcript: 'welcome everyone' },
      ])
      .execute();
    const words = await sql<{
      seq: number;
    }>`SELECT seq FROM video_segments WHERE search_words @@ plainto_tsquery('simple', 'bicycle river')`.execute(db);
    expect(words.rows.map((row) => row.seq)).toEqual([0]);
    const typo = await sql<{ seq: number }>`SELECT seq FROM video_segments WHERE search_text ILIKE ${'%quarterly rep%'}`.execute(db);
    expect(typo.rows.map((row) => row.seq)).toEqual([1]);
    await db.deleteFrom('videos').where('id', '=', 'v').execute();
    expect(await db.selectFrom('video_segments').selectAll().execute()).toEqual([]);
  });
});

describe('secrets shared through the database', () => {
  it('give a second data dir on the same database the first one’s signing key and webhook secret', async () => {
    const test = await createTestDatabase('postgres');
    const dirs = [mkdtempSync(join(tmpdir(), 'ocular-a-')), mkdtempSync(join(tmpdir(), 'ocular-b-'))];
    try {
      const database = await test.open();
      for (const dir of dirs) {
        await shareSecretFile(database, dir, SIGNING_KEY_FILE, () => loadOrCreateSigningSecret(dir));
        await shareSecretFile(database, dir, WEBHOOK_SECRET_FILE, () => loadOrCreateWebhookSecret(dir, undefined));
      }
      expect(loadOrCreateSigningSecret(dirs[1]!).equals(loadOrCreateSigningSecret(dirs[0]!))).toBe(true);
      expect(loadOrCreateWebhookSecret(dirs[1]!, undefined)).toBe(loadOrCreateWebhookSecret(dirs[0]!, undefined));
      expect(loadOrCreateSigningSecret(dirs[0]!)).toHaveLength(32);
    } finally {
      await test.drop();
      for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
    }
  });
});
