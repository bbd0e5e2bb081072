import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Db } from './database.ts';

export interface ApiKeyInfo {
  id: string;
  name: string;
  /** The first characters of the key, to recognise it in lists. */
  prefix: string;
  createdAt: Date;
  revokedAt: Date | null;
}

interface ApiKeyRow {
  id: string;
  name: string;
  prefix: string;
  created_at: number;
  revoked_at: number | null;
}

const KEY_PREFIX = 'ocu_';

/** API keys are 32 random bytes, so a fast hash is enough: there is nothing to brute-force. */
export function hashApiKey(key: string): Buffer {
  return createHash('sha256').update(key).digest();
}

export function generateApiKey(): string {
  return KEY_PREFIX + randomBytes(32).toString('base64url');
}

function toInfo(row: ApiKeyRow): ApiKeyInfo {
  return {
    id: row.id,
    name: row.name,
    prefix: row.prefix,
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
    this.#insert = db.prepare('INSERT INTO api_keys (id, name, prefix, hash, created_at) VALUES (?, ?, ?, ?, ?)');
    this.#list = db.prepare<[], ApiKeyRow>('SELECT id, name, prefix, created_at, revoked_at FROM api_keys ORDER BY created_at, id');
    this.#revoke = db.prepare('UPDATE api_keys SET revoked_at = ? WHERE (id = ? OR prefix = ?) AND revoked_at IS NULL');
    this.#activeHashes = db.prepare<[], { hash: string }>('SELECT hash FROM api_keys WHERE revoked_at IS NULL');
    // Prepared once: it runs on every authenticated request.
    this.#dataVersion = db.prepare<[], number>('PRAGMA data_version').pluck();
  }

  create(name: string): { key: string; info: ApiKeyInfo } {
    const key = generateApiKey();
    const id = `key_${randomBytes(8).toString('hex')}`;
    const prefix = key.slice(0, KEY_PREFIX.length + 6);
    const createdAt = Date.now();
    this.#insert.run(id, name, prefix, hashApiKey(key).toString('hex'), createdAt);
    return { key, info: { id, name, prefix, createdAt: new Date(createdAt), revokedAt: null } };
  }

  list(): ApiKeyInfo[] {
    return this.#list.all().map(toInfo);
  }

  /** Revokes by id or by the listed prefix; false when no active key matched. */
  revoke(idOrPrefix: string): boolean {
    return this.#revoke.run(Date.now(), idOrPrefix, idOrPrefix).changes > 0;
  }

  activeHashes(): Buffer[] {
    return this.#activeHashes.all().map((row) => Buffer.from(row.hash, 'hex'));
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
  readonly #envHashes: Buffer[];
  #storedHashes: Buffer[];
  #seenVersion: number;

  readonly #recheckMs: number;
  #checkedAt = 0;

  /** @param recheckMs how often to look for keys created or revoked by other processes. @default 250 */
  constructor(store: ApiKeyStore, envKeys: readonly string[], recheckMs = 250) {
    this.#store = store;
    this.#recheckMs = recheckMs;
    this.#envHashes = envKeys.map(hashApiKey);
    this.#seenVersion = store.dataVersion();
    this.#storedHashes = store.activeHashes();
  }

  /** Refreshes after writes made through this process's own connection (data_version only sees others'). */
  refresh(): void {
    this.#seenVersion = this.#store.dataVersion();
    this.#storedHashes = this.#store.activeHashes();
  }

  get keyCount(): number {
    return this.#envHashes.length + this.#storedHashes.length;
  }

  verify(key: string): boolean {
    const now = performance.now();
    if (now - this.#checkedAt >= this.#recheckMs) {
      this.#checkedAt = now;
      if (this.#store.dataVersion() !== this.#seenVersion) this.refresh();
    }
    const presented = hashApiKey(key);
    // Compare against every key, without stopping early, in constant time per comparison.
    let match = false;
    for (const candidate of this.#envHashes) match = timingSafeEqual(presented, candidate) || match;
    for (const candidate of this.#storedHashes) match = timingSafeEqual(presented, candidate) || match;
    return match;
  }
}
