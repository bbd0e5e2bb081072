import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BlobClaims } from '../../src/store/blob-claims.ts';
import type { SqlDatabase } from '../../src/store/sql.ts';
import { DIALECTS, openTestDatabase } from '../helpers/databases.ts';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe.each(DIALECTS)('blob claims on %s', (dialect) => {
  let database: SqlDatabase & { drop(): Promise<void> };
  const instances: BlobClaims[] = [];
  /** A process's claims on one kind of blob (each instance is its own holder, as each process is). */
  const aProcess = (kind = 'video', staleMs = 300) => {
    const claims = new BlobClaims(database, kind, { heartbeatMs: 50, staleMs });
    instances.push(claims);
    return claims;
  };
  const rows = () => database.db.selectFrom('blob_claims').select(['name', 'heartbeat_at']).orderBy('name').execute();

  beforeEach(async () => {
    database = await openTestDatabase(dialect);
  });
  afterEach(async () => {
    for (const claims of instances.splice(0)) claims.close();
    await database.drop();
  });

  it('keeps a claim fresh while its work runs, so recovery leaves it alone, and drops it when the work ends', async () => {
    const uploader = aProcess();
    const recoverer = aProcess();
    const seen: string[] = [];
    const work = uploader.hold('v1', async () => {
      await sleep(800); // well past the 300 ms a claim goes stale in, refreshed every 50 ms
      expect(await recoverer.recoverAbandoned(async (id) => void seen.push(id))).toBe(0);
      expect((await rows()).map((row) => row.name)).toEqual(['video:v1']);
      return 'stored';
    });
    expect(await work).toBe('stored');
    expect(seen).toEqual([]);
    expect(await rows()).toEqual([]);
  });

  it('lets exactly one process recover a claim whose process stopped refreshing it', async () => {
    const dead = aProcess();
    await dead.claim('v2');
    dead.close(); // killed: no release, no more refreshes
    expect(await aProcess().recoverAbandoned(async () => undefined)).toBe(0); // not stale yet
    await sleep(400);

    const seen: string[] = [];
    const recover = async (id: string) => {
      seen.push(id);
      await sleep(50);
    };
    const counts = await Promise.all([aProcess().recoverAbandoned(recover), aProcess().recoverAbandoned(recover)]);
    expect(counts.sort()).toEqual([0, 1]);
    expect(seen).toEqual(['v2']);
    expect(await rows()).toEqual([]);
  });

  it('hands the claim of failed work to recovery at once', async () => {
    const uploader = aProcess('video', 60_000);
    await expect(
      uploader.hold('v3', async () => {
        throw new Error('the upload was refused');
      }),
    ).rejects.toThrow('refused');
    const seen: string[] = [];
    expect(await aProcess('video', 60_000).recoverAbandoned(async (id) => void seen.push(id))).toBe(1);
    expect(seen).toEqual(['v3']);
  });

  it('leaves a claim whose recovery failed for a later pass', async () => {
    const uploader = aProcess('video', 60_000);
    await uploader.hold('v4', async () => Promise.reject(new Error('refused'))).catch(() => undefined);
    const recoverer = aProcess('video', 60_000);
    expect(
      await recoverer.recoverAbandoned(async () => {
        throw new Error('the store is down');
      }),
    ).toBe(0);
    expect((await rows()).map((row) => row.name)).toEqual(['video:v4']);
    expect(await recoverer.recoverAbandoned(async () => undefined)).toBe(1);
    expect(await rows()).toEqual([]);
  });

  it('holds a claim once however many pieces of work in a process hold it, until the last lets go', async () => {
    const claims = aProcess();
    const outer = await claims.claim('v5');
    await claims.hold('v5', async () => undefined);
    expect((await rows()).map((row) => row.name)).toEqual(['video:v5']);
    await outer.release();
    await outer.release(); // twice is once
    expect(await rows()).toEqual([]);
  });

  it('recovers only its own kind of blob', async () => {
    const images = aProcess('image', 60_000);
    await images.hold('i1', async () => Promise.reject(new Error('refused'))).catch(() => undefined);
    expect(await aProcess('video', 60_000).recoverAbandoned(async () => undefined)).toBe(0);
    expect(await aProcess('image', 60_000).recoverAbandoned(async () => undefined)).toBe(1);
  });
});
