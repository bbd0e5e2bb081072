import type { Statement } from 'better-sqlite3';
import type { Db } from './database.ts';
import type { VectorEntry, VectorSource, VectorSummary } from './vector-index.ts';

/** A segment of an indexed video that has no embedding yet, with the text to embed. */
export interface SegmentToEmbed {
  segmentId: number;
  owner: string;
  videoId: string;
  /** Caption, on-screen text, object and label names and transcript, newline-separated. */
  text: string;
}

/** Where a stored embedding points. */
export interface EmbeddedSegment {
  /** The embedding's own id (the vector index's key). */
  id: number;
  segmentId: number;
  videoId: string;
}

const SEGMENT_TEXT = `s.caption || char(10) || s.ocr_text || char(10) || s.object_names || char(10) || s.label_names || char(10) || s.transcript`;

interface EmbeddingRow {
  id: number;
  video_id: string;
  vector: Buffer;
}

/**
 * The text embeddings of video segments (migration 5), kept for one embedding model at a time: the database is
 * the truth the vector index follows (`VectorSource`), so a lost index write or a deleted index is rebuilt from
 * here. Vectors are stored as little-endian float32 bytes.
 */
export class SegmentEmbeddingStore implements VectorSource {
  readonly #db: Db;
  readonly #model: string;
  readonly #statements: {
    missing: Statement<[string, number], { segment_id: number; owner: string; video_id: string; text: string }>;
    insert: Statement<[{ segmentId: number; owner: string; videoId: string; model: string; vector: Buffer }], { id: number }>;
    deleteForSegment: Statement<[number]>;
    summary: Statement<[string, string], { count: number; max_id: number | null; id_sum: number }>;
    rows: Statement<[string, string], EmbeddingRow>;
    lookup: Statement<[string, string], { id: number; segment_id: number; video_id: string }>;
    dimensions: Statement<[string], Buffer>;
    dropOtherModels: Statement<[string]>;
  };

  /** @param model the embedding model in use: rows made by another one are left out everywhere. */
  constructor(db: Db, model: string) {
    this.#db = db;
    this.#model = model;
    this.#statements = {
      // Segments of indexed videos only: a video still being indexed gets its segments embedded once it is done.
      missing: db.prepare(
        `SELECT s.rowid AS segment_id, v.owner, s.video_id, ${SEGMENT_TEXT} AS text
         FROM video_segments s JOIN videos v ON v.id = s.video_id
         WHERE v.status = 'indexed'
           AND NOT EXISTS (SELECT 1 FROM segment_embeddings e WHERE e.segment_id = s.rowid AND e.model = ?)
         ORDER BY s.rowid LIMIT ?`,
      ),
      insert: db.prepare(
        `INSERT INTO segment_embeddings (segment_id, owner, video_id, model, vector)
         SELECT @segmentId, @owner, @videoId, @model, @vector WHERE EXISTS (SELECT 1 FROM video_segments s WHERE s.rowid = @segmentId)
         RETURNING id`,
      ),
      deleteForSegment: db.prepare('DELETE FROM segment_embeddings WHERE segment_id = ?'),
      summary: db.prepare(
        'SELECT count(*) AS count, max(id) AS max_id, total(id) AS id_sum FROM segment_embeddings WHERE owner = ? AND model = ?',
      ),
      rows: db.prepare('SELECT id, video_id, vector FROM segment_embeddings WHERE owner = ? AND model = ? ORDER BY id'),
      lookup: db.prepare(
        `SELECT id, segment_id, video_id FROM segment_embeddings WHERE id IN (SELECT value FROM json_each(?)) AND owner = ?`,
      ),
      dimensions: db.prepare<[string], Buffer>('SELECT vector FROM segment_embeddings WHERE model = ? LIMIT 1').pluck(),
      dropOtherModels: db.prepare('DELETE FROM segment_embeddings WHERE model != ?'),
    };
  }

  /** Up to `limit` segments of indexed videos without an embedding from this model, oldest first. */
  missing(limit: number): SegmentToEmbed[] {
    return this.#statements.missing
      .all(this.#model, limit)
      .map((row) => ({ segmentId: row.segment_id, owner: row.owner, videoId: row.video_id, text: row.text }));
  }

  /**
   * Saves a segment's embedding; returns its id, or undefined when the segment was deleted (or its text
   * changed, which removes the old embedding) meanwhile, so no row outlives its segment.
   */
  save(segment: SegmentToEmbed, vector: Float32Array): number | undefined {
    const bytes = Buffer.from(vector.buffer, vector.byteOffset, vector.byteLength);
    const row = this.#db.transaction(() => {
      this.#statements.deleteForSegment.run(segment.segmentId);
      return this.#statements.insert.get({
        segmentId: segment.segmentId,
        owner: segment.owner,
        videoId: segment.videoId,
        model: this.#model,
        vector: bytes,
      });
    })();
    return row?.id;
  }

  /** Where each embedding points, for ids of this owner that still exist. */
  lookup(owner: string, ids: readonly number[]): Map<number, EmbeddedSegment> {
    if (ids.length === 0) return new Map();
    return new Map(
      this.#statements.lookup
        .all(JSON.stringify(ids), owner)
        .map((row) => [row.id, { id: row.id, segmentId: row.segment_id, videoId: row.video_id }]),
    );
  }

  /** The length of this model's vectors, once one is stored. */
  dimensions(): number | undefined {
    const vector = this.#statements.dimensions.get(this.#model);
    return vector === undefined ? undefined : vector.byteLength / 4;
  }

  /** Removes the embeddings of other models (the configured model changed: they cannot be compared with its). */
  dropOtherModels(): number {
    return this.#statements.dropOtherModels.run(this.#model).changes;
  }

  summary(owner: string): VectorSummary {
    const row = this.#statements.summary.get(owner, this.#model)!;
    return { count: row.count, maxId: row.max_id ?? 0, idSum: row.id_sum };
  }

  *rows(owner: string): Iterable<VectorEntry> {
    for (const row of this.#statements.rows.iterate(owner, this.#model)) {
      yield { id: row.id, group: row.video_id, vector: toVector(row.vector) };
    }
  }
}

function toVector(bytes: Buffer): Float32Array {
  // Copied: a Buffer from SQLite may not be 4-byte aligned for a Float32Array view.
  const copy = new Uint8Array(bytes);
  return new Float32Array(copy.buffer, 0, copy.byteLength / 4);
}
