import { hash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Db } from './database.ts';

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

/** Keys stored hashed in SQLite; the plain key is only ever returned once, by `create`. */
export class ApiKeyStore {
  readonly #insert;
  readonly #list;
  readonly #revoke;
  readonly #activeHashes;
  readonly #dataVersion;

  constructor(db: Db) {
    this.#insert = db.prepare('INSERT INTO api_keys (id, name, prefix, owner, hash, created_at) VALUES (?, ?, ?, ?, ?, ?)');
    this.#list = db.prepare<[], ApiKeyRow>('SELECT id, name, prefix, owner, created_at, revoked_at FROM api_keys ORDER BY created_at, id');
    this.#revoke = db.prepare('UPDATE api_keys SET revoked_at = ? WHERE (id = ? OR prefix = ?) AND revoked_at IS NULL');
    this.#activeHashes = db.prepare<[], { hash: string; owner: string }>(
      'SELECT hash, coalesce(owner, id) AS owner FROM api_keys WHERE revoked_at IS NULL',
    );
    // Prepared once: it runs on every authenticated request.
    this.#dataVersion = db.prepare<[], number>('PRAGMA data_version').pluck();
  }

  /** @param owner whose library the key opens; @default the key's own id */
  create(name: string, owner?: string): { key: string; info: ApiKeyInfo } {
    if (owner !== undefined && !isValidOwner(owner)) throw new RangeError('an owner is 1-128 letters, digits, or . _ @ : -');
    const key = generateApiKey();
    const id = `key_${randomBytes(8).toString('hex')}`;
    const prefix = key.slice(0, KEY_PREFIX.length + 6);
    const createdAt = Date.now();
    this.#insert.run(id, name, prefix, owner ?? null, hashApiKey(key).toString('hex'), createdAt);
    return { key, info: { id, name, prefix, owner: owner ?? id, createdAt: new Date(createdAt), revokedAt: null } };
  }

  list(): ApiKeyInfo[] {
    return this.#list.all().map(toInfo);
  }

  /** Revokes by id or by the listed prefix; false when no active key matched. */
  revoke(idOrPrefix: string): boolean {
    return this.#revoke.run(Date.now(), idOrPrefix, idOrPrefix).changes > 0;
  }

  activeKeys(): KnownKey[] {
    return this.#activeHashes.all().map((row) => ({ hash: Buffer.from(row.hash, 'hex'), owner: row.owner }));
  }

  /** Changes whenever another connection (the `ocular keys` CLI) commits to the database. */
  dataVersion(): number {
    return this.#dataVersion.get()!;
  }
}

/**
 * Checks presented keys against the environment's keys and the stored ones. Stored keys are re-read when the
 * database changed; whether it changed is asked at most every `recheckMs` (the question costs a SQLite read
 * lock, a measurable share of a request), so a key revoked from the CLI stops working within that time.
 */
export class ApiKeyVerifier {
  readonly #store: ApiKeyStore;
  readonly #envKeys: KnownKey[];
  #storedKeys: KnownKey[];
  #seenVersion: number;

  readonly #recheckMs: number;
  #checkedAt = 0;

  /** @param recheckMs how often to look for keys created or revoked by other processes. @default 250 */
  constructor(store: ApiKeyStore, envKeys: readonly string[], recheckMs = 250) {
    this.#store = store;
    this.#recheckMs = recheckMs;
    this.#envKeys = envKeys.map((key) => ({ hash: hashApiKey(key), owner: environmentKeyOwner(key) }));
    this.#seenVersion = store.dataVersion();
    this.#storedKeys = store.activeKeys();
  }

  /** Refreshes after writes made through this process's own connection (data_version only sees others'). */
  refresh(): void {
    this.#seenVersion = this.#store.dataVersion();
    this.#storedKeys = this.#store.activeKeys();
  }

  get keyCount(): number {
    return this.#envKeys.length + this.#storedKeys.length;
  }

  /** The key's owner, or undefined when the key is not valid. */
  verify(key: string): string | undefined {
    const now = performance.now();
    if (now - this.#checkedAt >= this.#recheckMs) {
      this.#checkedAt = now;
      if (this.#store.dataVersion() !== this.#seenVersion) this.refresh();
    }
    const presented = hashApiKey(key);
    // Compare against every key, without stopping early, in constant time per comparison.
    let owner: string | undefined;
    for (const candidate of this.#envKeys) if (timingSafeEqual(presented, candidate.hash)) owner = candidate.owner;
    for (const candidate of this.#storedKeys) if (timingSafeEqual(presented, candidate.hash)) owner = candidate.owner;
    return owner;
  }
}
