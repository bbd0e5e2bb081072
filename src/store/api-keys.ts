import { hash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { SqlDatabase } from './sql.ts';

export interface ApiKeyInfo {
  id: string;
  name: string;
  /** The first characters of the key, to recognise it in lists. */
  prefix: string;
  /**
   * Whose objects (videos, groups) the key sees. Keys created with the same owner share a library; by default
   * a key is its own owner (its id).
   */
  owner: string;
  createdAt: Date;
  revokedAt: Date | null;
}

interface ApiKeyRow {
  id: string;
  name: string;
  prefix: string;
  owner: string | null;
  created_at: number;
  revoked_at: number | null;
}

/** The owner of everything created when the server runs with `--no-auth`. */
export const NO_AUTH_OWNER = 'local';

/** A key from OCULAR_API_KEYS is its own owner, named from its hash so the name never reveals the key. */
export function environmentKeyOwner(key: string): string {
  return `env_${hashApiKey(key).toString('hex').slice(0, 16)}`;
}

const OWNER_PATTERN = /^[\w.@:-]{1,128}$/;

export function isValidOwner(owner: string): boolean {
  return OWNER_PATTERN.test(owner);
}

const KEY_PREFIX = 'ocu_';

interface KnownKey {
  hash: Buffer;
  owner: string;
}

/** API keys are 32 random bytes, so a fast hash is enough: there is nothing to brute-force. */
export function hashApiKey(key: string): Buffer {
  return hash('sha256', key, 'buffer');
}

export function generateApiKey(): string {
  return KEY_PREFIX + randomBytes(32).toString('base64url');
}

function toInfo(row: ApiKeyRow): ApiKeyInfo {
  return {
    id: row.id,
    name: row.name,
    prefix: row.prefix,
    owner: row.owner ?? row.id,
    createdAt: new Date(row.created_at),
    revokedAt: row.revoked_at === null ? null : new Date(row.revoked_at),
  };
}

/** Keys stored hashed in the database; the plain key is only ever returned once, by `create`. */
export class ApiKeyStore {
  readonly #database: SqlDatabase;

  constructor(database: SqlDatabase) {
    this.#database = database;
  }

  /** @param owner whose library the key opens; @default the key's own id */
  async create(name: string, owner?: string): Promise<{ key: string; info: ApiKeyInfo }> {
    if (owner !== undefined && !isValidOwner(owner)) throw new RangeError('an owner is 1-128 letters, digits, or . _ @ : -');
    const key = generateApiKey();
    const id = `key_${randomBytes(8).toString('hex')}`;
    const prefix = key.slice(0, KEY_PREFIX.length + 6);
    const createdAt = Date.now();
    await this.#database.db
      .insertInto('api_keys')
      .values({ id, name, prefix, owner: owner ?? null, hash: hashApiKey(key).toString('hex'), created_at: createdAt })
      .execute();
    return { key, info: { id, name, prefix, owner: owner ?? id, createdAt: new Date(createdAt), revokedAt: null } };
  }

  async list(): Promise<ApiKeyInfo[]> {
    const rows = await this.#database.db
      .selectFrom('api_keys')
      .select(['id', 'name', 'prefix', 'owner', 'created_at', 'revoked_at'])
      .orderBy('created_at')
      .orderBy('id')
      .execute();
    return rows.map(toInfo);
  }

  /** Revokes by id or by the listed prefix; false when no active key matched. */
  async revoke(idOrPrefix: string): Promise<boolean> {
    const result = await this.#database.db
      .updateTable('api_keys')
      .set({ revoked_at: Date.now() })
      .where((eb) => eb.or([eb('id', '=', idOrPrefix), eb('prefix', '=', idOrPrefix)]))
      .where('revoked_at', 'is', null)
      .executeTakeFirst();
    return result.numUpdatedRows > 0n;
  }

  async activeKeys(): Promise<KnownKey[]> {
    const rows = await this.#database.db.selectFrom('api_keys').select(['id', 'hash', 'owner']).where('revoked_at', 'is', null).execute();
    return rows.map((row) => ({ hash: Buffer.from(row.hash, 'hex'), owner: row.owner ?? row.id }));
  }

  /**
   * Changes whenever a key is created or revoked, by any process: the number of keys, of revoked keys, and the
   * latest revocation time. One aggregate over a table of a handful of rows.
   */
  async fingerprint(): Promise<string> {
    const row = await this.#database.db
      .selectFrom('api_keys')
      .select((eb) => [eb.fn.countAll().as('keys'), eb.fn.count('revoked_at').as('revoked'), eb.fn.max('revoked_at').as('latest')])
      .executeTakeFirstOrThrow();
    return `${Number(row.keys)}:${Number(row.revoked)}:${Number(row.latest ?? 0)}`;
  }
}

/**
 * Checks presented keys against the environment's keys and the stored ones, in memory (a request never waits on
 * the database for its key). Every `recheckMs` the stored keys' fingerprint is read in the background, and the
 * keys are read again when it changed, so a key created or revoked by any process (the `ocular keys` CLI, another
 * machine) works, or stops working, within that time.
 */
export class ApiKeyVerifier {
  readonly #store: ApiKeyStore;
  readonly #envKeys: KnownKey[];
  #storedKeys: KnownKey[] = [];
  #seen = '';
  readonly #timer: NodeJS.Timeout;
  #checking = false;

  private constructor(store: ApiKeyStore, envKeys: readonly string[], recheckMs: number) {
    this.#store = store;
    this.#envKeys = envKeys.map((key) => ({ hash: hashApiKey(key), owner: environmentKeyOwner(key) }));
    this.#timer = setInterval(() => void this.#recheck(), recheckMs);
    this.#timer.unref();
  }

  /** @param recheckMs how often to look for keys created or revoked by other processes. @default 250 */
  static async create(store: ApiKeyStore, envKeys: readonly string[], recheckMs = 250): Promise<ApiKeyVerifier> {
    const verifier = new ApiKeyVerifier(store, envKeys, recheckMs);
    try {
      await verifier.refresh();
    } catch (error) {
      verifier.close();
      throw error;
    }
    return verifier;
  }

  async #recheck(): Promise<void> {
    if (this.#checking) return;
    this.#checking = true;
    try {
      if ((await this.#store.fingerprint()) !== this.#seen) await this.refresh();
    } catch {
      // The database is unreachable for now: keep the keys known, and look again at the next tick.
    } finally {
      this.#checking = false;
    }
  }

  /** Reads the stored keys now (after this process created or revoked one). */
  async refresh(): Promise<void> {
    const seen = await this.#store.fingerprint();
    this.#storedKeys = await this.#store.activeKeys();
    this.#seen = seen;
  }

  get keyCount(): number {
    return this.#envKeys.length + this.#storedKeys.length;
  }

  /** The key's owner, or undefined when the key is not valid. */
  verify(key: string): string | undefined {
    const presented = hashApiKey(key);
    // Compare against every key, without stopping early, in constant time per comparison.
    let owner: string | undefined;
    for (const candidate of this.#envKeys) if (timingSafeEqual(presented, candidate.hash)) owner = candidate.owner;
    for (const candidate of this.#storedKeys) if (timingSafeEqual(presented, candidate.hash)) owner = candidate.owner;
    return owner;
  }

  close(): void {
    clearInterval(this.#timer);
  }
}
