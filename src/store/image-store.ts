import type { Statement } from 'better-sqlite3';
import type { Db } from './database.ts';
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
  /** FTS5 bm25: lower (more negative) is better. */
  bm25: number;
  /** Caption, on-screen text, object names and label names, newline-separated. */
  text: string;
}

interface ImageRow {
  id: string;
  owner: string;
  name: string;
  media_type: string;
  width: number;
  height: number;
  size_bytes: number;
  metadata: string;
  status: IndexingStatus;
  index_requested: number;
  error: string | null;
  job_id: string | null;
  caption: string;
  ocr_text: string;
  detections: string;
  labels: string;
  created_at: number;
  updated_at: number;
}

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

/** Rows of the image library and the trigram index over what indexing found in them; owner is in every lookup. */
export class ImageStore {
  readonly #db: Db;
  readonly #insert: Statement;
  readonly #get: Statement<[string, string], ImageRow>;
  readonly #getById: Statement<[string], ImageRow>;
  readonly #list: Statement<[string, number, number], ImageRow>;
  readonly #count: Statement<[string], number>;
  readonly #delete: Statement<[string, string]>;
  readonly #setStatus: Statement<[IndexingStatus, string | null, number, string]>;
  readonly #setJob: Statement<[string, number, string]>;
  readonly #saveFindings: Statement;
  readonly #match: Statement<[string, string, number], { id: string; bm25: number; text: string }>;
  readonly #unfinished: Statement<[], ImageRow>;
  readonly #exists: Statement<[string], number>;

  constructor(db: Db) {
    this.#db = db;
    this.#insert = db.prepare(
      `INSERT INTO images (id, owner, name, media_type, width, height, size_bytes, metadata, status, index_requested, created_at, updated_at)
       VALUES (@id, @owner, @name, @mediaType, @width, @height, @sizeBytes, @metadata, @status, @indexRequested, @now, @now)`,
    );
    this.#get = db.prepare('SELECT * FROM images WHERE owner = ? AND id = ?');
    this.#getById = db.prepare('SELECT * FROM images WHERE id = ?');
    this.#list = db.prepare('SELECT * FROM images WHERE owner = ? ORDER BY created_at, rowid LIMIT ? OFFSET ?');
    this.#count = db.prepare<[string], number>('SELECT count(*) FROM images WHERE owner = ?').pluck();
    this.#delete = db.prepare('DELETE FROM images WHERE owner = ? AND id = ?');
    this.#setStatus = db.prepare('UPDATE images SET status = ?, error = ?, updated_at = ? WHERE id = ?');
    this.#setJob = db.prepare('UPDATE images SET job_id = ?, updated_at = ? WHERE id = ?');
    this.#saveFindings = db.prepare(
      `UPDATE images SET status = 'indexed', error = NULL, caption = @caption, ocr_text = @ocrText, detections = @detections,
         object_names = @objectNames, labels = @labels, label_names = @labelNames, updated_at = @now
       WHERE id = @id`,
    );
    // The trigram index decides which rows are visited (newest first, owner checked on the way); they are ranked
    // by bm25 after, and only the ranked ones have their text read.
    this.#match = db.prepare(
      `WITH scanned AS (
         SELECT f.rowid AS row_id, bm25(images_trigram, 1.0, 2.0, 1.0, 1.0) AS bm25
         FROM images_trigram f JOIN images i ON i.rowid = f.rowid
         WHERE images_trigram MATCH ? AND i.owner = ?
         ORDER BY f.rowid DESC LIMIT ${MAX_SCANNED_MATCHES}
       ),
       ranked AS (SELECT row_id, bm25 FROM scanned ORDER BY bm25 LIMIT ?)
       SELECT i.id, r.bm25, i.caption || char(10) || i.ocr_text || char(10) || i.object_names || char(10) || i.label_names AS text
       FROM ranked r JOIN images i ON i.rowid = r.row_id
       ORDER BY r.bm25`,
    );
    this.#unfinished = db.prepare(`SELECT * FROM images WHERE index_requested = 1 AND status IN ('pending', 'indexing')`);
    this.#exists = db.prepare<[string], number>('SELECT count(*) FROM images WHERE id = ?').pluck();
  }

  /** Inserts the images of one upload together: all of them or none. */
  insertImages(images: readonly NewImage[]): void {
    const now = Date.now();
    this.#db.transaction(() => {
      for (const image of images) {
        this.#insert.run({ ...image, metadata: JSON.stringify(image.metadata), indexRequested: image.indexRequested ? 1 : 0, now });
      }
    })();
  }

  get(owner: string, id: string): ImageRecord | undefined {
    const row = this.#get.get(owner, id);
    return row && toRecord(row);
  }

  getById(id: string): ImageRecord | undefined {
    const row = this.#getById.get(id);
    return row && toRecord(row);
  }

  has(id: string): boolean {
    return this.#exists.get(id)! > 0;
  }

  /** The owner's images, oldest first (and in the order sent, within one upload). */
  list(owner: string, limit: number, offset: number): Page<ImageRecord> {
    return { items: this.#list.all(owner, limit, offset).map(toRecord), total: this.#count.get(owner)! };
  }

  delete(owner: string, id: string): boolean {
    return this.#delete.run(owner, id).changes > 0;
  }

  /** False when the image is gone. */
  setStatus(id: string, status: IndexingStatus, error: string | null = null): boolean {
    return this.#setStatus.run(status, error, Date.now(), id).changes > 0;
  }

  setJob(id: string, jobId: string): void {
    this.#setJob.run(jobId, Date.now(), id);
  }

  /** Writes what indexing found and marks the image indexed (searchable at once). False when the image is gone. */
  saveFindings(id: string, findings: ImageFindings): boolean {
    return (
      this.#saveFindings.run({
        id,
        caption: findings.caption,
        ocrText: findings.ocrText,
        detections: JSON.stringify(findings.detections),
        objectNames: [...new Set(findings.detections.map((detection) => detection.label))].join('\n'),
        labels: JSON.stringify(findings.labels),
        labelNames: findings.labels.map((label) => label.label).join('\n'),
        now: Date.now(),
      }).changes > 0
    );
  }

  /** The owner's images matching an FTS5 query over the trigram index, best bm25 first, at most `limit`. */
  matchTrigrams(owner: string, ftsQuery: string, limit: number): ImageTextMatch[] {
    return this.#match.all(ftsQuery, owner, limit).map((row) => ({ imageId: row.id, bm25: row.bm25, text: row.text }));
  }

  /** Images waiting for or in the middle of indexing (to re-queue after a crash). */
  unfinished(): ImageRecord[] {
    return this.#unfinished.all().map(toRecord);
  }
}
