import { isForeignKeyViolation, type SqlDatabase } from './sql.ts';

export interface VideoSummary {
  videoId: string;
  summary: string;
  /** The model that wrote it. */
  model: string;
  createdAt: Date;
}

/**
 * Whole-video summaries for video QA's global questions ("what is this video about"), one per video. Rows go
 * with their video (foreign key, ON DELETE CASCADE); callers check ownership through the video first.
 */
export class VideoSummaryStore {
  readonly #database: SqlDatabase;

  constructor(database: SqlDatabase) {
    this.#database = database;
  }

  async get(videoId: string): Promise<VideoSummary | undefined> {
    const row = await this.#database.db.selectFrom('video_summaries').selectAll().where('video_id', '=', videoId).executeTakeFirst();
    return row && { videoId: row.video_id, summary: row.summary, model: row.model, createdAt: new Date(row.created_at) };
  }

  /** Writes (or replaces) the video's summary; false when the video no longer exists. */
  async put(videoId: string, summary: string, model: string): Promise<boolean> {
    try {
      await this.#database.db
        .insertInto('video_summaries')
        .values({ video_id: videoId, summary, model, created_at: Date.now() })
        .onConflict((conflict) =>
          conflict.column('video_id').doUpdateSet((eb) => ({
            summary: eb.ref('excluded.summary'),
            model: eb.ref('excluded.model'),
            created_at: eb.ref('excluded.created_at'),
          })),
        )
        .execute();
      return true;
    } catch (error) {
      if (isForeignKeyViolation(error)) return false;
      throw error;
    }
  }

  async remove(videoId: string): Promise<void> {
    await this.#database.db.deleteFrom('video_summaries').where('video_id', '=', videoId).execute();
  }
}
