import { sql, type Selectable } from 'kysely';
import { countRows, type SqlDatabase } from './sql.ts';
import type { ImagesTable } from './tables.ts';
import type { IndexingStatus, Page } from './video-store.ts';

/** An object the detector found in an image, its box in relative coordinates (0..1), top-left origin. */
export interface ImageDetection {
  label: string;
  /** 0..1 */
  score: number;
  box: { x: number; y: number; width: number; height: number };
}

export interface ImageLabelRecord {
  label: string;
  score: number;
}

/** What indexing found in an image. */
export interface ImageFindings {
  caption: string;
  ocrText: string;
  detections: ImageDetection[];
  labels: ImageLabelRecord[];
}

export interface ImageRecord extends ImageFindings {
  id: string;
  owner: string;
  /** The client's file name, or `image-<n>` when it sent none. */
  name: string;
  /** The stored (normalised) image's type. */
  mediaType: 'image/jpeg' | 'image/png';
  width: number;
  height: number;
  sizeBytes: number;
  /** The client's own metadata for the image, a JSON object. */
  metadata: Record<string, unknown>;
  status: IndexingStatus;
  indexRequested: boolean;
  error: string | null;
  jobId: string | null;
  createdAt: Date;
  updatedAt: Date;
}

export type NewImage = Pick<
  ImageRecord,
  'id' | 'owner' | 'name' | 'mediaType' | 'width' | 'height' | 'sizeBytes' | 'metadata' | 'status' | 'indexRequested'
>;

/** An image a full-text query matched, with the text it was matched on. */
export interface ImageTextMatch {
  imageId: string;
  /** The database's rank (FTS5 bm25 on SQLite; on PostgreSQL, how many of the pieces it holds, negated): lower is better. */
  rank: number;
  /** Caption, on-screen text, object names and label names, separated by white space. */
  text: string;
}

type ImageRow = Selectable<ImagesTable>;

/**
 * Candidates read from the trigram index per query at most, newest first: keeps a query of a piece found in
 * every image flat in cost; the fuzzy judging after it ranks them.
 */
const MAX_SCANNED_MATCHES = 5_000;

function toRecord(row: ImageRow): ImageRecord {
  return {
    id: row.id,
    owner: row.owner,
    name: row.name,
    mediaType: row.media_type === 'image/png' ? 'image/png' : 'image/jpeg',
    width: row.width,
    height: row.height,
    sizeBytes: row.size_bytes,
    metadata: JSON.parse(row.metadata) as Record<string, unknown>,
    status: row.status,
    indexRequested: row.index_requested === 1,
    error: row.error,
    jobId: row.job_id,
    caption: row.caption,
    ocrText: row.ocr_text,
    detections: JSON.parse(row.detections) as ImageDetection[],
    labels: JSON.parse(row.labels) as ImageLabelRecord[],
    createdAt: new Date(row.created_at),
    updatedAt: new Date(row.updated_at),
  };
}

/** A LIKE pattern holding `piece` anywhere (the pattern characters escaped). */
function containing(piece: string): string {
  return `%${piece.replace(/[\\%_]/g, (character) => `\\${character}`)}%`;
}

/**
 * Rows of the image library and the trigram index over what indexing found in them (FTS5 on SQLite, pg_trgm on
 * PostgreSQL); the owner is in every lookup.
 */
export class ImageStore {
  readonly #database: SqlDatabase;

  constructor(database: SqlDatabase) {
    this.#database = database;
  }

  /** Inserts the images of one upload together: all of them or none. */
  async insertImages(images: readonly NewImage[]): Promise<void> {
    if (images.length === 0) return;
    const now = Date.now();
    await this.#database.db
      .insertInto('images')
      .values(
        images.map((image) => ({
          id: image.id,
          owner: image.owner,
          name: image.name,
          media_type: image.mediaType,
          width: image.width,
          height: image.height,
          size_bytes: image.sizeBytes,
          metadata: JSON.stringify(image.metadata),
          status: image.status,
          index_requested: image.indexRequested ? 1 : 0,
          error: null,
          job_id: null,
          created_at: now,
          updated_at: now,
        })),
      )
      .execute();
  }

  async get(owner: string, id: string): Promise<ImageRecord | undefined> {
    const row = await this.#database.db.selectFrom('images').selectAll().where('owner', '=', owner).where('id', '=', id).executeTakeFirst();
    return row && toRecord(row);
  }

  async getById(id: string): Promise<ImageRecord | undefined> {
    const row = await this.#database.db.selectFrom('images').selectAll().where('id', '=', id).executeTakeFirst();
    return row && toRecord(row);
  }

  async has(id: string): Promise<boolean> {
    return (await this.#database.db.selectFrom('images').select('id').where('id', '=', id).executeTakeFirst()) !== undefined;
  }

  /** The owner's images, oldest first (and in the order sent, within one upload). */
  async list(owner: string, limit: number, offset: number): Promise<Page<ImageRecord>> {
    const { db } = this.#database;
    const rows = await db
      .selectFrom('images')
      .selectAll()
      .where('owner', '=', owner)
      .orderBy('created_at')
      .orderBy('rowid')
      .limit(limit)
      .offset(offset)
      .execute();
    return { items: rows.map(toRecord), total: await countRows(db.selectFrom('images').where('owner', '=', owner)) };
  }

  async delete(owner: string, id: string): Promise<boolean> {
    const result = await this.#database.db.deleteFrom('images').where('owner', '=', owner).where('id', '=', id).executeTakeFirst();
    return result.numDeletedRows > 0n;
  }

  /** False when the image is gone. */
  async setStatus(id: string, status: IndexingStatus, error: string | null = null): Promise<boolean> {
    const result = await this.#database.db
      .updateTable('images')
      .set({ status, error, updated_at: Date.now() })
      .where('id', '=', id)
      .executeTakeFirst();
    return result.numUpdatedRows > 0n;
  }

  async setJob(id: string, jobId: string): Promise<void> {
    await this.#database.db.updateTable('images').set({ job_id: jobId, updated_at: Date.now() }).where('id', '=', id).execute();
  }

  /** Writes what indexing found and marks the image indexed (searchable at once). False when the image is gone. */
  async saveFindings(id: string, findings: ImageFindings): Promise<boolean> {
    const result = await this.#database.db
      .updateTable('images')
      .set({
        status: 'indexed',
        error: null,
        caption: findings.caption,
        ocr_text: findings.ocrText,
        detections: JSON.stringify(findings.detections),
        object_names: [...new Set(findings.detections.map((detection) => detection.label))].join('\n'),
        labels: JSON.stringify(findings.labels),
        label_names: findings.labels.map((label) => label.label).join('\n'),
        updated_at: Date.now(),
      })
      .where('id', '=', id)
      .executeTakeFirst();
    return result.numUpdatedRows > 0n;
  }

  /**
   * The owner's images holding any of these substrings (case-insensitively), best first, at most `limit`. The
   * index decides which rows are visited (newest first, owner checked on the way, at most MAX_SCANNED_MATCHES);
   * they are ranked after, and only the ranked ones have their text read.
   */
  async matchTrigrams(owner: string, pieces: readonly string[], limit: number): Promise<ImageTextMatch[]> {
    if (pieces.length === 0) return [];
    if (this.#database.dialect === 'sqlite') {
      const query = pieces.map((piece) => `"${piece.replaceAll('"', '""')}"`).join(' OR ');
      const { rows } = await sql<{ id: string; rank: number; text: string }>`
        WITH scanned AS (
          SELECT f.rowid AS row_id, bm25(images_trigram, 1.0, 2.0, 1.0, 1.0) AS rank
          FROM images_trigram f JOIN images i ON i.rowid = f.rowid
          WHERE images_trigram MATCH ${query} AND i.owner = ${owner}
          ORDER BY f.rowid DESC LIMIT ${sql.lit(MAX_SCANNED_MATCHES)}
        ),
        ranked AS (SELECT row_id, rank FROM scanned ORDER BY rank LIMIT ${limit})
        SELECT i.id, r.rank, i.caption || char(10) || i.ocr_text || char(10) || i.object_names || char(10) || i.label_names AS text
        FROM ranked r JOIN images i ON i.rowid = r.row_id
        ORDER BY r.rank`.execute(this.#database.db);
      return rows.map((row) => ({ imageId: row.id, rank: row.rank, text: row.text }));
    }
    const tests = pieces.map((piece) => sql`i.search_text ILIKE ${containing(piece)}`);
    const held = sql.join(
      tests.map((test) => sql`(${test})::int`),
      sql` + `,
    );
    const { rows } = await sql<{ id: string; rank: number; text: string }>`
      WITH scanned AS (
        SELECT i.rowid AS row_id, -(${held}) AS rank
        FROM images i
        WHERE (${sql.join(tests, sql` OR `)}) AND i.owner = ${owner}
        ORDER BY i.rowid DESC LIMIT ${sql.lit(MAX_SCANNED_MATCHES)}
      ),
      ranked AS (SELECT row_id, rank FROM scanned ORDER BY rank LIMIT ${limit})
      SELECT i.id, r.rank, i.search_text AS text
      FROM ranked r JOIN images i ON i.rowid = r.row_id
      ORDER BY r.rank, r.row_id DESC`.execute(this.#database.db);
    return rows.map((row) => ({ imageId: row.id, rank: row.rank, text: row.text }));
  }

  /** Images waiting for or in the middle of indexing (to re-queue after a crash). */
  async unfinished(): Promise<ImageRecord[]> {
    const rows = await this.#database.db
      .selectFrom('images')
      .selectAll()
      .where('index_requested', '=', 1)
      .where('status', 'in', ['pending', 'indexing'])
      .execute();
    return rows.map(toRecord);
  }
}
