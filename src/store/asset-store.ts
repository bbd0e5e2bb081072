import type { Statement } from 'better-sqlite3';
import type { MediaKind } from '../spec/messages.ts';
import type { Db } from './database.ts';
import type { Page } from './video-store.ts';

/** A file uploaded once (`POST /api/assets`) and referred to by its key in conversation turns. */
export interface AssetRecord {
  key: string;
  owner: string;
  kind: MediaKind;
  /** The stored file's type (images are normalised to JPEG or PNG). */
  mediaType: string;
  sizeBytes: number;
  /** Images and videos only. */
  width: number | null;
  height: number | null;
  /** Audio and video only. */
  durationSeconds: number | null;
  /** The client's file name. */
  filename: string | null;
  createdAt: Date;
}

export type NewAsset = Omit<AssetRecord, 'createdAt'>;

interface AssetRow {
  key: string;
  owner: string;
  kind: MediaKind;
  media_type: string;
  size_bytes: number;
  width: number | null;
  height: number | null;
  duration_seconds: number | null;
  filename: string | null;
  created_at: number;
}

function toRecord(row: AssetRow): AssetRecord {
  return {
    key: row.key,
    owner: row.owner,
    kind: row.kind,
    mediaType: row.media_type,
    sizeBytes: row.size_bytes,
    width: row.width,
    height: row.height,
    durationSeconds: row.duration_seconds,
    filename: row.filename,
    createdAt: new Date(row.created_at),
  };
}

/** Rows of the conversation assets; the owner is in every lookup a client can reach. */
export class AssetStore {
  readonly #insert: Statement;
  readonly #get: Statement<[string, string], AssetRow>;
  readonly #getById: Statement<[string], AssetRow>;
  readonly #list: Statement<[string, number, number], AssetRow>;
  readonly #count: Statement<[string], number>;
  readonly #delete: Statement<[string, string]>;

  constructor(db: Db) {
    this.#insert = db.prepare(
      `INSERT INTO assets (key, owner, kind, media_type, size_bytes, width, height, duration_seconds, filename, created_at)
       VALUES (@key, @owner, @kind, @mediaType, @sizeBytes, @width, @height, @durationSeconds, @filename, @now)`,
    );
    this.#get = db.prepare('SELECT * FROM assets WHERE owner = ? AND key = ?');
    this.#getById = db.prepare('SELECT * FROM assets WHERE key = ?');
    this.#list = db.prepare('SELECT * FROM assets WHERE owner = ? ORDER BY created_at, rowid LIMIT ? OFFSET ?');
    this.#count = db.prepare<[string], number>('SELECT count(*) FROM assets WHERE owner = ?').pluck();
    this.#delete = db.prepare('DELETE FROM assets WHERE owner = ? AND key = ?');
  }

  insert(asset: NewAsset): AssetRecord {
    this.#insert.run({ ...asset, now: Date.now() });
    return this.getByKey(asset.key)!;
  }

  get(owner: string, key: string): AssetRecord | undefined {
    const row = this.#get.get(owner, key);
    return row && toRecord(row);
  }

  /** Any owner's asset: for the signed file route, where the signature is the credential. */
  getByKey(key: string): AssetRecord | undefined {
    const row = this.#getById.get(key);
    return row && toRecord(row);
  }

  has(key: string): boolean {
    return this.#getById.get(key) !== undefined;
  }

  list(owner: string, limit: number, offset: number): Page<AssetRecord> {
    return { items: this.#list.all(owner, limit, offset).map(toRecord), total: this.#count.get(owner)! };
  }

  delete(owner: string, key: string): boolean {
    return this.#delete.run(owner, key).changes > 0;
  }
}
