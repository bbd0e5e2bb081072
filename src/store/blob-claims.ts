import { randomUUID } from 'node:crypto';
import type { SqlDatabase } from './sql.ts';

/** How often a process refreshes the claims it holds. */
export const CLAIM_HEARTBEAT_MS = 30_000;
/** A claim not refreshed for this long belongs to a process that stopped: its blobs are up for recovery. */
export const CLAIM_STALE_MS = 120_000;
/** The most abandoned claims one recovery pass takes. */
const RECOVERY_BATCH = 100;

export interface BlobClaimOptions {
  heartbeatMs?: number | undefined;
  staleMs?: number | undefined;
}

/** One claim this process holds. */
export interface BlobClaim {
  /** The work is done (its row is in place, or gone with its blobs): the claim goes. */
  release(): Promise<void>;
  /** The work failed: recovery looks at what it left at once, rather than after the claim goes stale. */
  abandon(): Promise<void>;
}

/** What a store without claims (folders, which only this machine writes) hands out. */
export const NO_CLAIM: BlobClaim = { release: async () => undefined, abandon: async () => undefined };

/**
 * Claims on blobs in a store every process shares (an S3 bucket), kept in the database: a process claims an
 * object's blobs (`video:<id>`) before it writes or removes them, and drops the claim once the row that owns them
 * is in place, or gone with them. A process that dies holding a claim stops refreshing it, so any process finds
 * what its work left within `CLAIM_STALE_MS`, without listing the store, and removes the blobs no row owns.
 *
 * One instance per kind of object (`video`, `image`, `asset`); every instance of a process refreshes its own.
 */
export class BlobClaims {
  readonly #database: SqlDatabase;
  readonly #kind: string;
  readonly #holder = randomUUID();
  readonly #heartbeatMs: number;
  readonly #staleMs: number;
  /** The claims this instance holds, with how many pieces of work hold each. */
  readonly #held = new Map<string, number>();
  #heartbeat: NodeJS.Timeout | undefined;

  constructor(database: SqlDatabase, kind: string, options: BlobClaimOptions = {}) {
    this.#database = database;
    this.#kind = kind;
    this.#heartbeatMs = options.heartbeatMs ?? CLAIM_HEARTBEAT_MS;
    this.#staleMs = options.staleMs ?? CLAIM_STALE_MS;
  }

  /** Claims the blobs of `id`, refreshed until released (claiming one this instance holds just counts it). */
  async claim(id: string): Promise<BlobClaim> {
    const name = this.#name(id);
    const holders = this.#held.get(name) ?? 0;
    this.#held.set(name, holders + 1);
    if (holders === 0) {
      const now = Date.now();
      try {
        await this.#database.db
          .insertInto('blob_claims')
          .values({ name, holder: this.#holder, heartbeat_at: now })
          .onConflict((conflict) => conflict.column('name').doUpdateSet({ holder: this.#holder, heartbeat_at: now }))
          .execute();
      } catch (error) {
        this.#held.delete(name);
        throw error;
      }
    }
    this.#beat();
    let left = false;
    const leave = (failed: boolean) => {
      if (left) return Promise.resolve();
      left = true;
      return this.#leave(name, failed);
    };
    return { release: () => leave(false), abandon: () => leave(true) };
  }

  /** Runs `work` holding the claim on `id`'s blobs: released when it ends, abandoned when it throws. */
  async hold<T>(id: string, work: () => Promise<T>): Promise<T> {
    const claim = await this.claim(id);
    try {
      const result = await work();
      await claim.release();
      return result;
    } catch (error) {
      await claim.abandon();
      throw error;
    }
  }

  /**
   * Takes this kind's claims their processes abandoned (up to a batch) and runs `recover` on each id, holding its
   * claim, which goes once `recover` ends; one that throws is tried again later. Returns how many were recovered.
   */
  async recoverAbandoned(recover: (id: string) => Promise<void>): Promise<number> {
    const db = this.#database.db;
    const stale = await db
      .selectFrom('blob_claims')
      .select(['name', 'heartbeat_at'])
      .where('name', 'like', `${this.#kind}:%`)
      .where('heartbeat_at', '<', Date.now() - this.#staleMs)
      .orderBy('heartbeat_at')
      .limit(RECOVERY_BATCH)
      .execute();
    let recovered = 0;
    for (const { name, heartbeat_at } of stale) {
      if (this.#held.has(name)) continue;
      // Taken only if nobody refreshed or took it since it was read: one process recovers each.
      const taken = await db
        .updateTable('blob_claims')
        .set({ holder: this.#holder, heartbeat_at: Date.now() })
        .where('name', '=', name)
        .where('heartbeat_at', '=', heartbeat_at)
        .executeTakeFirst();
      if (Number(taken.numUpdatedRows) !== 1) continue;
      this.#held.set(name, 1);
      this.#beat();
      let failed = false;
      try {
        await recover(name.slice(this.#kind.length + 1));
        recovered += 1;
      } catch {
        failed = true;
      }
      await this.#leave(name, failed);
    }
    return recovered;
  }

  /**
   * `recoverAbandoned` as the blob stores use it: the blobs of each abandoned id that `owned` does not claim for
   * a row (or as not an id of this kind) go through `remove`. Returns how many ids' blobs went.
   */
  async removeAbandoned(owned: (id: string) => boolean | Promise<boolean>, remove: (id: string) => Promise<void>): Promise<number> {
    let removed = 0;
    await this.recoverAbandoned(async (id) => {
      if (await owned(id)) return;
      await remove(id);
      removed += 1;
    });
    return removed;
  }

  /** Stops refreshing: claims still held go stale, for recovery to find. */
  close(): void {
    clearInterval(this.#heartbeat);
    this.#heartbeat = undefined;
  }

  #name(id: string): string {
    return `${this.#kind}:${id}`;
  }

  async #leave(name: string, failed: boolean): Promise<void> {
    const holders = (this.#held.get(name) ?? 1) - 1;
    if (holders > 0) {
      this.#held.set(name, holders);
      return;
    }
    this.#held.delete(name);
    if (this.#held.size === 0) this.close();
    const db = this.#database.db;
    // A database that cannot be reached leaves the claim to go stale: recovery finds it then.
    const done = failed
      ? db.updateTable('blob_claims').set({ heartbeat_at: 0 }).where('name', '=', name).where('holder', '=', this.#holder)
      : db.deleteFrom('blob_claims').where('name', '=', name).where('holder', '=', this.#holder);
    await done.execute().catch(() => undefined);
  }

  /** Refreshes every claim this instance holds while it holds any. */
  #beat(): void {
    if (this.#heartbeat !== undefined) return;
    this.#heartbeat = setInterval(() => {
      const names = [...this.#held.keys()];
      if (names.length === 0) return;
      void this.#database.db
        .updateTable('blob_claims')
        .set({ heartbeat_at: Date.now() })
        .where('holder', '=', this.#holder)
        .where('name', 'in', names)
        .execute()
        .catch(() => undefined);
    }, this.#heartbeatMs);
    this.#heartbeat.unref();
  }
}
