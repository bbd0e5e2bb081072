import type { Selectable } from 'kysely';
import type { MediaKind } from '../spec/messages.ts';
import { countRows, type SqlDatabase } from './sql.ts';
import type { AssetsTable } from './tables.ts';
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

type AssetRow = Selectable<AssetsTable>;

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
  readonly #database: SqlDatabase;

  constructor(database: SqlDatabase) {
    this.#database = database;
  }

  async insert(asset: NewAsset): Promise<AssetRecord> {
    await this.#database.db
      .insertInto('assets')
      .values({
        key: asset.key,
        owner: asset.owner,
        kind: asset.kind,
        media_type: asset.mediaType,
        size_bytes: asset.sizeBytes,
        width: asset.width,
        height: asset.height,
        duration_seconds: asset.durationSeconds,
        filename: asset.filename,
        created_at: Date.now(),
      })
      .execute();
    return (await this.getByKey(asset.key))!;
  }

  async get(owner: string, key: string): Promise<AssetRecord | undefined> {
    const row = await this.#database.db
      .selectFrom('assets')
      .selectAll()
      .where('owner', '=', owner)
      .where('key', '=', key)
      .executeTakeFirst();
    return row && toRecord(row);
  }

  /** Any owner's asset: for the signed file route, where the signature is the credential. */
  async getByKey(key: string): Promise<AssetRecord | undefined> {
    const row = await this.#database.db.selectFrom('assets').selectAll().where('key', '=', key).executeTakeFirst();
    return row && toRecord(row);
  }

  async has(key: string): Promise<boolean> {
    return (await this.#database.db.selectFrom('assets').select('key').where('key', '=', key).executeTakeFirst()) !== undefined;
  }

  async list(owner: string, limit: number, offset: number): Promise<Page<AssetRecord>> {
    const { db } = this.#database;
    const rows = await db
      .selectFrom('assets')
      .selectAll()
      .where('owner', '=', owner)
      .orderBy('created_at')
      .orderBy('rowid')
      .limit(limit)
      .offset(offset)
      .execute();
    return { items: rows.map(toRecord), total: await countRows(db.selectFrom('assets').where('owner', '=', owner)) };
  }

  async delete(owner: string, key: string): Promise<boolean> {
    const result = await this.#database.db.deleteFrom('assets').where('owner', '=', owner).where('key', '=', key).executeTakeFirst();
    return result.numDeletedRows > 0n;
  }
}
