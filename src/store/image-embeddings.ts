import type { Statement } from 'better-sqlite3';
import type { Db } from './database.ts';
import type { VectorEntry, VectorSource, VectorSummary } from './vector-index.ts';

/** A segment of an indexed video whose keyframes have no embedding from the model yet. */
export interface SegmentKeyframes {
  segmentId: number;
  owner: string;
  videoId: string;
  /** As saved by indexing: files relative to the video's folder. */
  keyframes: Array<{ timeSeconds: number; file: string }>;
}

/** Where a stored keyframe embedding points. */
export interface EmbeddedKeyframe {
  id: number;
  segmentId: number;
  videoId: string;
  timeSeconds: number;
}

function toBytes(vector: Float32Array): Buffer {
  return Buffer.from(vector.buffer, vector.byteOffset, vector.byteLength);
}

function toVector(bytes: Buffer): Float32Array {
  // Copied: a Buffer from SQLite may not be 4-byte aligned for a Float32Array view.
  const copy = new Uint8Array(bytes);
  return new Float32Array(copy.buffer, 0, copy.byteLength / 4);
}

interface SummaryRow {
  count: number;
  max_id: number | null;
  id_sum: number;
}

const toSummary = (row: SummaryRow): VectorSummary => ({ count: row.count, maxId: row.max_id ?? 0, idSum: row.id_sum });

/**
 * CLIP embeddings of video keyframes (one per keyframe of a segment), for one image embedding model at a time:
 * the truth the keyframe vector index follows (`VectorSource`). Rows go with their segment (triggers).
 */
export class KeyframeEmbeddingStore implements VectorSource {
  readonly #db: Db;
  readonly #model: string;
  readonly #statements: {
    missing: Statement<[number, string, number], { segment_id: number; owner: string; video_id: string; keyframes: string }>;
    insert: Statement<
      [{ segmentId: number; owner: string; videoId: string; timeSeconds: number; model: string; vector: Buffer }],
      { id: number }
    >;
    deleteForSegment: Statement<[number, string]>;
    summary: Statement<[string, string], SummaryRow>;
    rows: Statement<[string, string], { id: number; video_id: string; vector: Buffer }>;
    lookup: Statement<[string, string], { id: number; segment_id: number; video_id: string; time_seconds: number }>;
    dimensions: Statement<[string], Buffer>;
    dropOtherModels: Statement<[string]>;
  };

  constructor(db: Db, model: string) {
    this.#db = db;
    this.#model = model;
    this.#statements = {
      missing: db.prepare(
        `SELECT s.rowid AS segment_id, v.owner, s.video_id, s.keyframes
         FROM video_segments s JOIN videos v ON v.id = s.video_id
         WHERE v.status = 'indexed' AND s.rowid > ?
           AND NOT EXISTS (SELECT 1 FROM keyframe_embeddings e WHERE e.segment_id = s.rowid AND e.model = ?)
         ORDER BY s.rowid LIMIT ?`,
      ),
      insert: db.prepare(
        `INSERT INTO keyframe_embeddings (segment_id, owner, video_id, time_seconds, model, vector)
         SELECT @segmentId, @owner, @videoId, @timeSeconds, @model, @vector
         WHERE EXISTS (SELECT 1 FROM video_segments s WHERE s.rowid = @segmentId)
         RETURNING id`,
      ),
      deleteForSegment: db.prepare('DELETE FROM keyframe_embeddings WHERE segment_id = ? AND model = ?'),
      summary: db.prepare(
        'SELECT count(*) AS count, max(id) AS max_id, total(id) AS id_sum FROM keyframe_embeddings WHERE owner = ? AND model = ?',
      ),
      rows: db.prepare('SELECT id, video_id, vector FROM keyframe_embeddings WHERE owner = ? AND model = ? ORDER BY id'),
      lookup: db.prepare(
        `SELECT id, segment_id, video_id, time_seconds FROM keyframe_embeddings
         WHERE id IN (SELECT value FROM json_each(?)) AND owner = ?`,
      ),
      dimensions: db.prepare<[string], Buffer>('SELECT vector FROM keyframe_embeddings WHERE model = ? LIMIT 1').pluck(),
      dropOtherModels: db.prepare('DELETE FROM keyframe_embeddings WHERE model != ?'),
    };
  }

  /** Up to `limit` segments of indexed videos after rowid `after` whose keyframes have no embedding, in rowid order. */
  missing(after: number, limit: number): SegmentKeyframes[] {
    return this.#statements.missing.all(after, this.#model, limit).map((row) => ({
      segmentId: row.segment_id,
      owner: row.owner,
      videoId: row.video_id,
      keyframes: JSON.parse(row.keyframes) as SegmentKeyframes['keyframes'],
    }));
  }

  /**
   * Saves the embeddings of a segment's keyframes (replacing earlier ones) and returns their ids; none when the
   * segment was deleted meanwhile, so no row outlives its segment.
   */
  save(segment: SegmentKeyframes, frames: ReadonlyArray<{ timeSeconds: number; vector: Float32Array }>): number[] {
    return this.#db.transaction(() => {
      this.#statements.deleteForSegment.run(segment.segmentId, this.#model);
      const ids: number[] = [];
      for (const frame of frames) {
        const row = this.#statements.insert.get({
          segmentId: segment.segmentId,
          owner: segment.owner,
          videoId: segment.videoId,
          timeSeconds: frame.timeSeconds,
          model: this.#model,
          vector: toBytes(frame.vector),
        });
        if (row === undefined) return [];
        ids.push(row.id);
      }
      return ids;
    })();
  }

  /** Where each embedding points, for ids of this owner that still exist. */
  lookup(owner: string, ids: readonly number[]): Map<number, EmbeddedKeyframe> {
    if (ids.length === 0) return new Map();
    return new Map(
      this.#statements.lookup
        .all(JSON.stringify(ids), owner)
        .map((row) => [row.id, { id: row.id, segmentId: row.segment_id, videoId: row.video_id, timeSeconds: row.time_seconds }]),
    );
  }

  dimensions(): number | undefined {
    const vector = this.#statements.dimensions.get(this.#model);
    return vector === undefined ? undefined : vector.byteLength / 4;
  }

  /** Removes the embeddings of other models (the configured model changed: they cannot be compared with its). */
  dropOtherModels(): number {
    return this.#statements.dropOtherModels.run(this.#model).changes;
  }

  summary(owner: string): VectorSummary {
    return toSummary(this.#statements.summary.get(owner, this.#model)!);
  }

  *rows(owner: string): Iterable<VectorEntry> {
    for (const row of this.#statements.rows.iterate(owner, this.#model)) {
      yield { id: row.id, group: row.video_id, vector: toVector(row.vector) };
    }
  }
}

/** What a library image's embedding is of: its picture (CLIP), or its caption and on-screen text (a text model). */
export type ImageEmbeddingKind = 'picture' | 'text';

/** An indexed image without an embedding of a kind, with what to embed. */
export interface ImageToEmbed {
  imageId: string;
  owner: string;
  /** Caption, on-screen text, object and label names, newline-separated (for the text kind). */
  text: string;
}

/**
 * Embeddings of library images of one kind, from one model at a time: the truth that kind's vector index
 * follows. Rows go with their image; text ones also with a change of the image's text (triggers).
 */
export class ImageEmbeddingStore implements VectorSource {
  readonly #db: Db;
  readonly #model: string;
  readonly #kind: ImageEmbeddingKind;
  readonly #statements: {
    missing: Statement<[string, string, string, number], { id: string; owner: string; text: string }>;
    insert: Statement<[{ imageId: string; kind: string; model: string; vector: Buffer }], { id: number }>;
    remove: Statement<[string, string]>;
    summary: Statement<[string, string, string], SummaryRow>;
    rows: Statement<[string, string, string], { id: number; vector: Buffer }>;
    lookup: Statement<[string, string, string], { id: number; image_id: string }>;
    dimensions: Statement<[string, string], Buffer>;
    dropOtherModels: Statement<[string, string]>;
  };

  constructor(db: Db, kind: ImageEmbeddingKind, model: string) {
    this.#db = db;
    this.#kind = kind;
    this.#model = model;
    this.#statements = {
      missing: db.prepare(
        `SELECT i.id, i.owner, i.caption || char(10) || i.ocr_text || char(10) || i.object_names || char(10) || i.label_names AS text
         FROM images i
         WHERE i.status = 'indexed' AND i.id > ?
           AND NOT EXISTS (SELECT 1 FROM image_embeddings e WHERE e.image_id = i.id AND e.kind = ? AND e.model = ?)
         ORDER BY i.id LIMIT ?`,
      ),
      insert: db.prepare(
        `INSERT INTO image_embeddings (image_id, owner, kind, model, vector)
         SELECT id, owner, @kind, @model, @vector FROM images WHERE id = @imageId
         RETURNING id`,
      ),
      remove: db.prepare('DELETE FROM image_embeddings WHERE image_id = ? AND kind = ?'),
      summary: db.prepare(
        `SELECT count(*) AS count, max(id) AS max_id, total(id) AS id_sum FROM image_embeddings
         WHERE owner = ? AND kind = ? AND model = ?`,
      ),
      rows: db.prepare('SELECT id, vector FROM image_embeddings WHERE owner = ? AND kind = ? AND model = ? ORDER BY id'),
      lookup: db.prepare(
        'SELECT id, image_id FROM image_embeddings WHERE id IN (SELECT value FROM json_each(?)) AND owner = ? AND kind = ?',
      ),
      dimensions: db.prepare<[string, string], Buffer>('SELECT vector FROM image_embeddings WHERE kind = ? AND model = ? LIMIT 1').pluck(),
      dropOtherModels: db.prepare('DELETE FROM image_embeddings WHERE kind = ? AND model != ?'),
    };
  }

  /** Up to `limit` indexed images with an id after `after` that lack this kind's embedding, in id order. */
  missing(after: string, limit: number): ImageToEmbed[] {
    return this.#statements.missing
      .all(after, this.#kind, this.#model, limit)
      .map((row) => ({ imageId: row.id, owner: row.owner, text: row.text }));
  }

  /** Saves an image's embedding; its id, or undefined when the image is gone. */
  save(imageId: string, vector: Float32Array): number | undefined {
    // A new embedding replaces the old one with a new id (ids are immutable in the vector index).
    return this.#db.transaction(() => {
      this.#statements.remove.run(imageId, this.#kind);
      return this.#statements.insert.get({ imageId, kind: this.#kind, model: this.#model, vector: toBytes(vector) })?.id;
    })();
  }

  /** The image each embedding is of, for ids of this owner that still exist. */
  lookup(owner: string, ids: readonly number[]): Map<number, string> {
    if (ids.length === 0) return new Map();
    return new Map(this.#statements.lookup.all(JSON.stringify(ids), owner, this.#kind).map((row) => [row.id, row.image_id]));
  }

  dimensions(): number | undefined {
    const vector = this.#statements.dimensions.get(this.#kind, this.#model);
    return vector === undefined ? undefined : vector.byteLength / 4;
  }

  dropOtherModels(): number {
    return this.#statements.dropOtherModels.run(this.#kind, this.#model).changes;
  }

  summary(owner: string): VectorSummary {
    return toSummary(this.#statements.summary.get(owner, this.#kind, this.#model)!);
  }

  *rows(owner: string): Iterable<VectorEntry> {
    for (const row of this.#statements.rows.iterate(owner, this.#kind, this.#model)) {
      yield { id: row.id, vector: toVector(row.vector) };
    }
  }
}
