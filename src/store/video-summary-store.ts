import type { Db } from './database.ts';

export interface VideoSummary {
  videoId: string;
  summary: string;
  /** The model that wrote it. */
  model: string;
  createdAt: Date;
}

interface SummaryRow {
  video_id: string;
  summary: string;
  model: string;
  created_at: number;
}

/**
 * Whole-video summaries for video QA's global questions ("what is this video about"), one per video. Rows go
 * with their video (foreign key, ON DELETE CASCADE); callers check ownership through the video first.
 */
export class VideoSummaryStore {
  readonly #statements;

  constructor(db: Db) {
    this.#statements = {
      get: db.prepare<[string], SummaryRow>('SELECT * FROM video_summaries WHERE video_id = ?'),
      put: db.prepare(
        `INSERT INTO video_summaries (video_id, summary, model, created_at) VALUES (?, ?, ?, ?)
         ON CONFLICT (video_id) DO UPDATE SET summary = excluded.summary, model = excluded.model, created_at = excluded.created_at`,
      ),
      remove: db.prepare('DELETE FROM video_summaries WHERE video_id = ?'),
    };
  }

  get(videoId: string): VideoSummary | undefined {
    const row = this.#statements.get.get(videoId);
    return row && { videoId: row.video_id, summary: row.summary, model: row.model, createdAt: new Date(row.created_at) };
  }

  /** Writes (or replaces) the video's summary; false when the video no longer exists. */
  put(videoId: string, summary: string, model: string): boolean {
    try {
      this.#statements.put.run(videoId, summary, model, Date.now());
      return true;
    } catch (error) {
      if ((error as { code?: unknown }).code === 'SQLITE_CONSTRAINT_FOREIGNKEY') return false;
      throw error;
    }
  }

  remove(videoId: string): void {
    this.#statements.remove.run(videoId);
  }
}
