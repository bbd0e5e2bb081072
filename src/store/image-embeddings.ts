import { sql } from 'kysely';
import { NEWLINE, pagedRows, toBytes, toSummary, toVector } from './embedding-rows.ts';
import type { SqlDatabase } from './sql.ts';
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

/**
 * CLIP embeddings of video keyframes (one per keyframe of a segment), for one image embedding model at a time:
 * the truth the keyframe vector index follows (`VectorSource`). Rows go with their segment (triggers).
 */
export class KeyframeEmbeddingStore implements VectorSource {
  readonly #database: SqlDatabase;
  readonly #model: string;

  constructor(database: SqlDatabase, model: string) {
    this.#database = database;
    this.#model = model;
  }

  /** Up to `limit` segments of indexed videos after rowid `after` whose keyframes have no embedding, in rowid order. */
  async missing(after: number, limit: number): Promise<SegmentKeyframes[]> {
    const rows = await this.#database.db
      .selectFrom('video_segments as s')
      .innerJoin('videos as v', 'v.id', 's.video_id')
      .select(['s.rowid as segment_id', 'v.owner', 's.video_id', 's.keyframes'])
      .where('v.status', '=', 'indexed')
      .where('s.rowid', '>', after)
      .where((eb) =>
        eb.not(
          eb.exists(
            eb
              .selectFrom('keyframe_embeddings as e')
              .select('e.id')
              .whereRef('e.segment_id', '=', 's.rowid')
              .where('e.model', '=', this.#model),
          ),
        ),
      )
      .orderBy('s.rowid')
      .limit(limit)
      .execute();
    return rows.map((row) => ({
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
  async save(segment: SegmentKeyframes, frames: ReadonlyArray<{ timeSeconds: number; vector: Float32Array }>): Promise<number[]> {
    const { dialect } = this.#database;
    return this.#database.db.transaction().execute(async (trx) => {
      await trx.deleteFrom('keyframe_embeddings').where('segment_id', '=', segment.segmentId).where('model', '=', this.#model).execute();
      // PostgreSQL: the segment cannot be deleted until this commits (its trigger then removes the new rows too).
      let alive = trx.selectFrom('video_segments').select('rowid').where('rowid', '=', segment.segmentId);
      if (dialect === 'postgres') alive = alive.forShare();
      if ((await alive.executeTakeFirst()) === undefined || frames.length === 0) return [];
      const rows = await trx
        .insertInto('keyframe_embeddings')
        .values(
          frames.map((frame) => ({
            segment_id: segment.segmentId,
            owner: segment.owner,
            video_id: segment.videoId,
            time_seconds: frame.timeSeconds,
            model: this.#model,
            vector: toBytes(frame.vector),
          })),
        )
        .returning('id')
        .execute();
      return rows.map((row) => row.id).sort((a, b) => a - b);
    });
  }

  /** Where each embedding points, for ids of this owner that still exist. */
  async lookup(owner: string, ids: readonly number[]): Promise<Map<number, EmbeddedKeyframe>> {
    if (ids.length === 0) return new Map();
    const rows = await this.#database.db
      .selectFrom('keyframe_embeddings')
      .select(['id', 'segment_id', 'video_id', 'time_seconds'])
      .where('id', 'in', [...ids])
      .where('owner', '=', owner)
      .execute();
    return new Map(
      rows.map((row) => [row.id, { id: row.id, segmentId: row.segment_id, videoId: row.video_id, timeSeconds: row.time_seconds }]),
    );
  }

  async dimensions(): Promise<number | undefined> {
    const row = await this.#database.db
      .selectFrom('keyframe_embeddings')
      .select('vector')
      .where('model', '=', this.#model)
      .limit(1)
      .executeTakeFirst();
    return row === undefined ? undefined : row.vector.byteLength / 4;
  }

  /** Removes the embeddings of other models (the configured model changed: they cannot be compared with its). */
  async dropOtherModels(): Promise<number> {
    const result = await this.#database.db.deleteFrom('keyframe_embeddings').where('model', '!=', this.#model).executeTakeFirst();
    return Number(result.numDeletedRows);
  }

  async summary(owner: string): Promise<VectorSummary> {
    const row = await this.#database.db
      .selectFrom('keyframe_embeddings')
      .select((eb) => [eb.fn.countAll().as('count'), eb.fn.max('id').as('max_id'), eb.fn.sum('id').as('id_sum')])
      .where('owner', '=', owner)
      .where('model', '=', this.#model)
      .executeTakeFirst();
    return toSummary(row);
  }

  rows(owner: string, from = 0): AsyncIterable<VectorEntry> {
    return pagedRows(
      from,
      (after, limit) =>
        this.#database.db
          .selectFrom('keyframe_embeddings')
          .select(['id', 'video_id', 'vector'])
          .where('owner', '=', owner)
          .where('model', '=', this.#model)
          .where('id', '>', after)
          .orderBy('id')
          .limit(limit)
          .execute(),
      (row) => ({ id: row.id, group: row.video_id, vector: toVector(row.vector) }),
    );
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
  readonly #database: SqlDatabase;
  readonly #model: string;
  readonly #kind: ImageEmbeddingKind;

  constructor(database: SqlDatabase, kind: ImageEmbeddingKind, model: string) {
    this.#database = database;
    this.#kind = kind;
    this.#model = model;
  }

  /** Up to `limit` indexed images with an id after `after` that lack this kind's embedding, in id order. */
  async missing(after: string, limit: number): Promise<ImageToEmbed[]> {
    const text = sql<string>`i.caption || ${NEWLINE} || i.ocr_text || ${NEWLINE} || i.object_names || ${NEWLINE} || i.label_names`;
    const rows = await this.#database.db
      .selectFrom('images as i')
      .select(['i.id', 'i.owner', text.as('text')])
      .where('i.status', '=', 'indexed')
      .where('i.id', '>', after)
      .where((eb) =>
        eb.not(
          eb.exists(
            eb
              .selectFrom('image_embeddings as e')
              .select('e.id')
              .whereRef('e.image_id', '=', 'i.id')
              .where('e.kind', '=', this.#kind)
              .where('e.model', '=', this.#model),
          ),
        ),
      )
      .orderBy('i.id')
      .limit(limit)
      .execute();
    return rows.map((row) => ({ imageId: row.id, owner: row.owner, text: row.text }));
  }

  /** Saves an image's embedding; its id, or undefined when the image is gone. */
  async save(imageId: string, vector: Float32Array): Promise<number | undefined> {
    const { dialect } = this.#database;
    // A new embedding replaces the old one with a new id (ids are immutable in the vector index).
    return this.#database.db.transaction().execute(async (trx) => {
      await trx.deleteFrom('image_embeddings').where('image_id', '=', imageId).where('kind', '=', this.#kind).execute();
      let image = trx.selectFrom('images').select(['id', 'owner']).where('id', '=', imageId);
      if (dialect === 'postgres') image = image.forShare();
      const found = await image.executeTakeFirst();
      if (found === undefined) return undefined;
      const row = await trx
        .insertInto('image_embeddings')
        .values({ image_id: found.id, owner: found.owner, kind: this.#kind, model: this.#model, vector: toBytes(vector) })
        .returning('id')
        .executeTakeFirstOrThrow();
      return row.id;
    });
  }

  /** The image each embedding is of, for ids of this owner that still exist. */
  async lookup(owner: string, ids: readonly number[]): Promise<Map<number, string>> {
    if (ids.length === 0) return new Map();
    const rows = await this.#database.db
      .selectFrom('image_embeddings')
      .select(['id', 'image_id'])
      .where('id', 'in', [...ids])
      .where('owner', '=', owner)
      .where('kind', '=', this.#kind)
      .execute();
    return new Map(rows.map((row) => [row.id, row.image_id]));
  }

  async dimensions(): Promise<number | undefined> {
    const row = await this.#database.db
      .selectFrom('image_embeddings')
      .select('vector')
      .where('kind', '=', this.#kind)
      .where('model', '=', this.#model)
      .limit(1)
      .executeTakeFirst();
    return row === undefined ? undefined : row.vector.byteLength / 4;
  }

  async dropOtherModels(): Promise<number> {
    const result = await this.#database.db
      .deleteFrom('image_embeddings')
      .where('kind', '=', this.#kind)
      .where('model', '!=', this.#model)
      .executeTakeFirst();
    return Number(result.numDeletedRows);
  }

  async summary(owner: string): Promise<VectorSummary> {
    const row = await this.#database.db
      .selectFrom('image_embeddings')
      .select((eb) => [eb.fn.countAll().as('count'), eb.fn.max('id').as('max_id'), eb.fn.sum('id').as('id_sum')])
      .where('owner', '=', owner)
      .where('kind', '=', this.#kind)
      .where('model', '=', this.#model)
      .executeTakeFirst();
    return toSummary(row);
  }

  rows(owner: string, from = 0): AsyncIterable<VectorEntry> {
    return pagedRows(
      from,
      (after, limit) =>
        this.#database.db
          .selectFrom('image_embeddings')
          .select(['id', 'vector'])
          .where('owner', '=', owner)
          .where('kind', '=', this.#kind)
          .where('model', '=', this.#model)
          .where('id', '>', after)
          .orderBy('id')
          .limit(limit)
          .execute(),
      (row) => ({ id: row.id, vector: toVector(row.vector) }),
    );
  }
}
