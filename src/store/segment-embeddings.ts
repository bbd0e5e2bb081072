import { sql } from 'kysely';
import { NEWLINE, pagedRows, toBytes, toSummary, toVector } from './embedding-rows.ts';
import type { SqlDatabase } from './sql.ts';
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

/**
 * The text embeddings of video segments, kept for one embedding model at a time: the database is the truth the
 * vector index follows (`VectorSource`), so a lost index write or a deleted index is rebuilt from here. Rows go
 * with their segment, and with a change of its text (triggers on both databases).
 */
export class SegmentEmbeddingStore implements VectorSource {
  readonly #database: SqlDatabase;
  readonly #model: string;

  /** @param model the embedding model in use: rows made by another one are left out everywhere. */
  constructor(database: SqlDatabase, model: string) {
    this.#database = database;
    this.#model = model;
  }

  /** Up to `limit` segments of indexed videos without an embedding from this model, oldest first. */
  async missing(limit: number): Promise<SegmentToEmbed[]> {
    // Segments of indexed videos only: a video still being indexed gets its segments embedded once it is done.
    const text = sql<string>`s.caption || ${NEWLINE} || s.ocr_text || ${NEWLINE} || s.object_names || ${NEWLINE} || s.label_names || ${NEWLINE} || s.transcript`;
    const rows = await this.#database.db
      .selectFrom('video_segments as s')
      .innerJoin('videos as v', 'v.id', 's.video_id')
      .select(['s.rowid as segment_id', 'v.owner', 's.video_id', text.as('text')])
      .where('v.status', '=', 'indexed')
      .where((eb) =>
        eb.not(
          eb.exists(
            eb
              .selectFrom('segment_embeddings as e')
              .select('e.id')
              .whereRef('e.segment_id', '=', 's.rowid')
              .where('e.model', '=', this.#model),
          ),
        ),
      )
      .orderBy('s.rowid')
      .limit(limit)
      .execute();
    return rows.map((row) => ({ segmentId: row.segment_id, owner: row.owner, videoId: row.video_id, text: row.text }));
  }

  /**
   * Saves a segment's embedding; returns its id, or undefined when the segment was deleted (or its text
   * changed, which removes the old embedding) meanwhile, so no row outlives its segment.
   */
  async save(segment: SegmentToEmbed, vector: Float32Array): Promise<number | undefined> {
    const { dialect } = this.#database;
    return this.#database.db.transaction().execute(async (trx) => {
      await trx.deleteFrom('segment_embeddings').where('segment_id', '=', segment.segmentId).execute();
      // PostgreSQL: the segment cannot be deleted until this commits (its trigger then removes the new row too).
      let alive = trx.selectFrom('video_segments').select('rowid').where('rowid', '=', segment.segmentId);
      if (dialect === 'postgres') alive = alive.forShare();
      if ((await alive.executeTakeFirst()) === undefined) return undefined;
      const row = await trx
        .insertInto('segment_embeddings')
        .values({
          segment_id: segment.segmentId,
          owner: segment.owner,
          video_id: segment.videoId,
          model: this.#model,
          vector: toBytes(vector),
        })
        .returning('id')
        .executeTakeFirstOrThrow();
      return row.id;
    });
  }

  /** Where each embedding points, for ids of this owner that still exist. */
  async lookup(owner: string, ids: readonly number[]): Promise<Map<number, EmbeddedSegment>> {
    if (ids.length === 0) return new Map();
    const rows = await this.#database.db
      .selectFrom('segment_embeddings')
      .select(['id', 'segment_id', 'video_id'])
      .where('id', 'in', [...ids])
      .where('owner', '=', owner)
      .execute();
    return new Map(rows.map((row) => [row.id, { id: row.id, segmentId: row.segment_id, videoId: row.video_id }]));
  }

  /** The length of this model's vectors, once one is stored. */
  async dimensions(): Promise<number | undefined> {
    const row = await this.#database.db
      .selectFrom('segment_embeddings')
      .select('vector')
      .where('model', '=', this.#model)
      .limit(1)
      .executeTakeFirst();
    return row === undefined ? undefined : row.vector.byteLength / 4;
  }

  /** Removes the embeddings of other models (the configured model changed: they cannot be compared with its). */
  async dropOtherModels(): Promise<number> {
    const result = await this.#database.db.deleteFrom('segment_embeddings').where('model', '!=', this.#model).executeTakeFirst();
    return Number(result.numDeletedRows);
  }

  async summary(owner: string): Promise<VectorSummary> {
    const row = await this.#database.db
      .selectFrom('segment_embeddings')
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
          .selectFrom('segment_embeddings')
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
