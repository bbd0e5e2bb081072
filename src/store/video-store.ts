import type { Db } from './database.ts';

export type IndexingStatus = 'pending' | 'indexing' | 'indexed' | 'failed';

export const INDEXING_STATUSES: readonly IndexingStatus[] = ['pending', 'indexing', 'indexed', 'failed'];

/** The group every owner has without creating it; uploads go there when they name none. */
export const DEFAULT_GROUP_ID = 'default';

/** What probing the uploaded file found. */
export interface VideoMetadata {
  durationSeconds: number;
  width: number;
  height: number;
  avgFps: number;
  codec: string;
  sizeBytes: number;
  hasAudio: boolean;
  /** Whether `thumbnail.jpg` exists in the video's blob folder. */
  hasThumbnail: boolean;
  /** The container's media type, sniffed from the bytes (`video/mp4`, `video/webm`...). */
  mediaType?: string;
}

export interface GroupRecord {
  owner: string;
  id: string;
  name: string;
  metadata: string;
  webhookUrl: string | null;
  webhookSecret: string | null;
  createdAt: Date;
  updatedAt: Date;
}

export interface VideoRecord {
  id: string;
  owner: string;
  groupId: string;
  name: string;
  status: IndexingStatus;
  /** 0..1 */
  progress: number;
  /** The indexing stage running now, or the last one reached. */
  stage: string | null;
  /** Why indexing failed, for people. */
  error: string | null;
  indexRequested: boolean;
  thumbnails: boolean;
  indexingType: string | null;
  /** Null while the upload could not be probed. */
  metadata: VideoMetadata | null;
  /** The indexer's saved plan (segments, keyframes, audio findings), so a resumed job skips finished work. */
  plan: string | null;
  /** ISO 8601, as the client sent it. */
  startTimestamp: string | null;
  webhookUrl: string | null;
  webhookSecret: string | null;
  jobId: string | null;
  createdAt: Date;
  updatedAt: Date;
}

export interface SegmentKeyframe {
  timeSeconds: number;
  /** File name inside the video's blob folder. */
  file: string;
}

export interface SegmentObject {
  label: string;
  /** The most instances seen in one keyframe of the segment. */
  count: number;
  /** The best confidence over the segment's keyframes. */
  score: number;
}

export interface SegmentLabel {
  label: string;
  score: number;
}

export interface SegmentRecord {
  videoId: string;
  /** Position in the video's segment plan, from 0. */
  seq: number;
  startSeconds: number;
  endSeconds: number;
  keyframes: SegmentKeyframe[];
  ocrText: string;
  objects: SegmentObject[];
  labels: SegmentLabel[];
  transcript: string;
  /** Speech ranges inside the segment, in seconds from the start of the video. */
  speech: Array<{ startSeconds: number; endSeconds: number }>;
  /** Null when no voice activity detector ran. */
  hasSpeech: boolean | null;
  caption: string;
  /** File name inside the video's blob folder. */
  thumbnail: string | null;
}

export interface Page<T> {
  items: T[];
  total: number;
}

interface GroupRow {
  owner: string;
  id: string;
  name: string;
  metadata: string;
  webhook_url: string | null;
  webhook_secret: string | null;
  created_at: number;
  updated_at: number;
}

interface VideoRow {
  id: string;
  owner: string;
  group_id: string;
  name: string;
  status: IndexingStatus;
  progress: number;
  stage: string | null;
  error: string | null;
  index_requested: number;
  thumbnails: number;
  indexing_type: string | null;
  metadata: string;
  plan: string | null;
  start_timestamp: string | null;
  webhook_url: string | null;
  webhook_secret: string | null;
  job_id: string | null;
  created_at: number;
  updated_at: number;
}

interface SegmentRow {
  video_id: string;
  seq: number;
  start_seconds: number;
  end_seconds: number;
  keyframes: string;
  ocr_text: string;
  objects: string;
  labels: string;
  transcript: string;
  speech: string;
  has_speech: number | null;
  caption: string;
  thumbnail: string | null;
}

function toGroup(row: GroupRow): GroupRecord {
  return {
    owner: row.owner,
    id: row.id,
    name: row.name,
    metadata: row.metadata,
    webhookUrl: row.webhook_url,
    webhookSecret: row.webhook_secret,
    createdAt: new Date(row.created_at),
    updatedAt: new Date(row.updated_at),
  };
}

function toVideo(row: VideoRow): VideoRecord {
  return {
    id: row.id,
    owner: row.owner,
    groupId: row.group_id,
    name: row.name,
    status: row.status,
    progress: row.progress,
    stage: row.stage,
    error: row.error,
    indexRequested: row.index_requested === 1,
    thumbnails: row.thumbnails === 1,
    indexingType: row.indexing_type,
    metadata: row.metadata === '' ? null : (JSON.parse(row.metadata) as VideoMetadata),
    plan: row.plan,
    startTimestamp: row.start_timestamp,
    webhookUrl: row.webhook_url,
    webhookSecret: row.webhook_secret,
    jobId: row.job_id,
    createdAt: new Date(row.created_at),
    updatedAt: new Date(row.updated_at),
  };
}

function toSegment(row: SegmentRow): SegmentRecord {
  return {
    videoId: row.video_id,
    seq: row.seq,
    startSeconds: row.start_seconds,
    endSeconds: row.end_seconds,
    keyframes: JSON.parse(row.keyframes) as SegmentKeyframe[],
    ocrText: row.ocr_text,
    objects: JSON.parse(row.objects) as SegmentObject[],
    labels: JSON.parse(row.labels) as SegmentLabel[],
    transcript: row.transcript,
    speech: JSON.parse(row.speech) as SegmentRecord['speech'],
    hasSpeech: row.has_speech === null ? null : row.has_speech === 1,
    caption: row.caption,
    thumbnail: row.thumbnail,
  };
}

export interface NewGroup {
  owner: string;
  id: string;
  name: string;
  metadata: string;
  webhookUrl?: string | null | undefined;
  webhookSecret?: string | null | undefined;
}

export interface GroupPatch {
  name?: string | undefined;
  metadata?: string | undefined;
  webhookUrl?: string | null | undefined;
  webhookSecret?: string | null | undefined;
}

export type NewVideo = Omit<VideoRecord, 'progress' | 'stage' | 'error' | 'plan' | 'jobId' | 'createdAt' | 'updatedAt' | 'indexingType'> & {
  error?: string | null;
  indexingType?: string | null;
};

export interface VideoPatch {
  status?: IndexingStatus;
  progress?: number;
  stage?: string | null;
  error?: string | null;
  metadata?: VideoMetadata;
  plan?: string | null;
  jobId?: string | null;
  indexingType?: string | null;
}

const VIDEO_PATCH_COLUMNS: Readonly<Record<keyof VideoPatch, string>> = {
  status: 'status',
  progress: 'progress',
  stage: 'stage',
  error: 'error',
  metadata: 'metadata',
  plan: 'plan',
  jobId: 'job_id',
  indexingType: 'indexing_type',
};

export interface ListVideosFilter {
  groupId?: string | undefined;
  status?: IndexingStatus | undefined;
  limit: number;
  offset: number;
}

export interface SearchHit {
  segment: SegmentRecord;
  videoName: string;
  groupId: string;
  /** bm25 rank: lower is better. */
  rank: number;
}

/**
 * The video library's metadata: groups, videos and their indexed segments, each read and written under its
 * owner, so no query can reach another owner's rows. Blobs live on disk (blob-store.ts), keyed by video id.
 */
export class VideoStore {
  readonly #db: Db;
  readonly #statements;

  constructor(db: Db) {
    this.#db = db;
    this.#statements = {
      insertGroup: db.prepare(
        `INSERT INTO video_groups (owner, id, name, metadata, webhook_url, webhook_secret, created_at, updated_at)
         VALUES (@owner, @id, @name, @metadata, @webhookUrl, @webhookSecret, @now, @now)`,
      ),
      ensureGroup: db.prepare(
        `INSERT INTO video_groups (owner, id, name, metadata, created_at, updated_at) VALUES (?, ?, ?, '', ?, ?)
         ON CONFLICT (owner, id) DO NOTHING`,
      ),
      getGroup: db.prepare<[string, string], GroupRow>('SELECT * FROM video_groups WHERE owner = ? AND id = ?'),
      listGroups: db.prepare<[string, number, number], GroupRow>(
        'SELECT * FROM video_groups WHERE owner = ? ORDER BY created_at, id LIMIT ? OFFSET ?',
      ),
      countGroups: db.prepare<[string], number>('SELECT count(*) FROM video_groups WHERE owner = ?').pluck(),
      deleteGroup: db.prepare('DELETE FROM video_groups WHERE owner = ? AND id = ?'),
      videosInGroup: db.prepare<[string, string], string>('SELECT id FROM videos WHERE owner = ? AND group_id = ?').pluck(),
      insertVideo: db.prepare(
        `INSERT INTO videos (id, owner, group_id, name, status, progress, error, index_requested, thumbnails, indexing_type,
           metadata, start_timestamp, webhook_url, webhook_secret, created_at, updated_at)
         VALUES (@id, @owner, @groupId, @name, @status, 0, @error, @indexRequested, @thumbnails, @indexingType,
           @metadata, @startTimestamp, @webhookUrl, @webhookSecret, @now, @now)`,
      ),
      getVideo: db.prepare<[string, string], VideoRow>('SELECT * FROM videos WHERE owner = ? AND id = ?'),
      getVideoById: db.prepare<[string], VideoRow>('SELECT * FROM videos WHERE id = ?'),
      deleteVideo: db.prepare('DELETE FROM videos WHERE owner = ? AND id = ?'),
      upsertSegment: db.prepare(
        `INSERT INTO video_segments (video_id, seq, start_seconds, end_seconds, keyframes, ocr_text, objects, object_names,
           labels, label_names, transcript, speech, has_speech, caption, thumbnail)
         VALUES (@videoId, @seq, @startSeconds, @endSeconds, @keyframes, @ocrText, @objects, @objectNames,
           @labels, @labelNames, @transcript, @speech, @hasSpeech, @caption, @thumbnail)
         ON CONFLICT (video_id, seq) DO UPDATE SET start_seconds = excluded.start_seconds, end_seconds = excluded.end_seconds,
           keyframes = excluded.keyframes, ocr_text = excluded.ocr_text, objects = excluded.objects,
           object_names = excluded.object_names, labels = excluded.labels, label_names = excluded.label_names,
           transcript = excluded.transcript, speech = excluded.speech, has_speech = excluded.has_speech,
           caption = excluded.caption, thumbnail = excluded.thumbnail`,
      ),
      listSegments: db.prepare<[string], SegmentRow>('SELECT * FROM video_segments WHERE video_id = ? ORDER BY seq'),
      pageSegments: db.prepare<[string, number, number], SegmentRow>(
        'SELECT * FROM video_segments WHERE video_id = ? ORDER BY seq LIMIT ? OFFSET ?',
      ),
      countSegments: db.prepare<[string], number>('SELECT count(*) FROM video_segments WHERE video_id = ?').pluck(),
      getSegment: db.prepare<[string, number], SegmentRow>('SELECT * FROM video_segments WHERE video_id = ? AND seq = ?'),
      segmentSeqs: db.prepare<[string], number>('SELECT seq FROM video_segments WHERE video_id = ?').pluck(),
      deleteSegments: db.prepare('DELETE FROM video_segments WHERE video_id = ?'),
      search: db.prepare<[string, string, number], SegmentRow & { video_name: string; group_id: string; rank: number }>(
        `SELECT s.*, v.name AS video_name, v.group_id AS group_id, f.rank AS rank
         FROM video_segments_fts f
         JOIN video_segments s ON s.rowid = f.rowid
         JOIN videos v ON v.id = s.video_id
         WHERE video_segments_fts MATCH ? AND v.owner = ?
         ORDER BY f.rank LIMIT ?`,
      ),
    };
  }

  // ---- groups ----

  /** Creates the owner's default group on first use. */
  ensureDefaultGroup(owner: string): void {
    const now = Date.now();
    this.#statements.ensureGroup.run(owner, DEFAULT_GROUP_ID, DEFAULT_GROUP_ID, now, now);
  }

  createGroup(group: NewGroup): GroupRecord {
    this.#statements.insertGroup.run({
      ...group,
      webhookUrl: group.webhookUrl ?? null,
      webhookSecret: group.webhookSecret ?? null,
      now: Date.now(),
    });
    return this.getGroup(group.owner, group.id)!;
  }

  getGroup(owner: string, id: string): GroupRecord | undefined {
    if (id === DEFAULT_GROUP_ID) this.ensureDefaultGroup(owner);
    const row = this.#statements.getGroup.get(owner, id);
    return row && toGroup(row);
  }

  listGroups(owner: string, limit: number, offset: number): Page<GroupRecord> {
    this.ensureDefaultGroup(owner);
    return {
      items: this.#statements.listGroups.all(owner, limit, offset).map(toGroup),
      total: this.#statements.countGroups.get(owner)!,
    };
  }

  updateGroup(owner: string, id: string, patch: GroupPatch): GroupRecord | undefined {
    const columns: Array<[string, unknown]> = [];
    if (patch.name !== undefined) columns.push(['name', patch.name]);
    if (patch.metadata !== undefined) columns.push(['metadata', patch.metadata]);
    if (patch.webhookUrl !== undefined) columns.push(['webhook_url', patch.webhookUrl]);
    if (patch.webhookSecret !== undefined) columns.push(['webhook_secret', patch.webhookSecret]);
    columns.push(['updated_at', Date.now()]);
    const assignments = columns.map(([column]) => `${column} = ?`).join(', ');
    const changed = this.#db
      .prepare(`UPDATE video_groups SET ${assignments} WHERE owner = ? AND id = ?`)
      .run(...columns.map(([, value]) => value), owner, id).changes;
    return changed > 0 ? this.getGroup(owner, id) : undefined;
  }

  videoIdsInGroup(owner: string, groupId: string): string[] {
    return this.#statements.videosInGroup.all(owner, groupId);
  }

  /** Deletes the group row; its videos must be gone first (foreign key). */
  deleteGroup(owner: string, id: string): boolean {
    return this.#statements.deleteGroup.run(owner, id).changes > 0;
  }

  // ---- videos ----

  insertVideo(video: NewVideo): VideoRecord {
    this.#statements.insertVideo.run({
      id: video.id,
      owner: video.owner,
      groupId: video.groupId,
      name: video.name,
      status: video.status,
      error: video.error ?? null,
      indexRequested: video.indexRequested ? 1 : 0,
      thumbnails: video.thumbnails ? 1 : 0,
      indexingType: video.indexingType ?? null,
      metadata: video.metadata === null ? '' : JSON.stringify(video.metadata),
      startTimestamp: video.startTimestamp,
      webhookUrl: video.webhookUrl,
      webhookSecret: video.webhookSecret,
      now: Date.now(),
    });
    return this.getVideoById(video.id)!;
  }

  getVideo(owner: string, id: string): VideoRecord | undefined {
    const row = this.#statements.getVideo.get(owner, id);
    return row && toVideo(row);
  }

  /** For the indexer, which acts for whoever owns the video. */
  getVideoById(id: string): VideoRecord | undefined {
    const row = this.#statements.getVideoById.get(id);
    return row && toVideo(row);
  }

  /** Oldest first, so offsets stay stable while new uploads arrive. */
  listVideos(owner: string, filter: ListVideosFilter): Page<VideoRecord> {
    const conditions = ['owner = ?'];
    const values: unknown[] = [owner];
    if (filter.groupId !== undefined) {
      conditions.push('group_id = ?');
      values.push(filter.groupId);
    }
    if (filter.status !== undefined) {
      conditions.push('status = ?');
      values.push(filter.status);
    }
    const where = conditions.join(' AND ');
    const total = this.#db
      .prepare<unknown[], number>(`SELECT count(*) FROM videos WHERE ${where}`)
      .pluck()
      .get(...values)!;
    const rows = this.#db
      .prepare<unknown[], VideoRow>(`SELECT * FROM videos WHERE ${where} ORDER BY created_at, id LIMIT ? OFFSET ?`)
      .all(...values, filter.limit, filter.offset);
    return { items: rows.map(toVideo), total };
  }

  /** False when the video no longer exists (deleted while it was being indexed). */
  updateVideo(id: string, patch: VideoPatch): boolean {
    const entries = Object.entries(patch).filter(([, value]) => value !== undefined) as Array<[keyof VideoPatch, unknown]>;
    const assignments = entries.map(([key]) => `${VIDEO_PATCH_COLUMNS[key]} = ?`);
    const values = entries.map(([key, value]) => (key === 'metadata' ? JSON.stringify(value) : value));
    return (
      this.#db.prepare(`UPDATE videos SET ${[...assignments, 'updated_at = ?'].join(', ')} WHERE id = ?`).run(...values, Date.now(), id)
        .changes > 0
    );
  }

  /** Removes the video's row, its segments and their index entries (the blobs are the caller's). */
  deleteVideo(owner: string, id: string): boolean {
    return this.#db.transaction(() => {
      if (!this.#statements.getVideo.get(owner, id)) return false;
      this.#statements.deleteSegments.run(id);
      return this.#statements.deleteVideo.run(owner, id).changes > 0;
    })();
  }

  // ---- segments ----

  /** Writes a segment, replacing the row an earlier (interrupted) run wrote for the same position. */
  saveSegment(segment: SegmentRecord): void {
    this.#statements.upsertSegment.run({
      videoId: segment.videoId,
      seq: segment.seq,
      startSeconds: segment.startSeconds,
      endSeconds: segment.endSeconds,
      keyframes: JSON.stringify(segment.keyframes),
      ocrText: segment.ocrText,
      objects: JSON.stringify(segment.objects),
      objectNames: segment.objects.map((object) => object.label).join(' '),
      labels: JSON.stringify(segment.labels),
      labelNames: segment.labels.map((label) => label.label).join(' '),
      transcript: segment.transcript,
      speech: JSON.stringify(segment.speech),
      hasSpeech: segment.hasSpeech === null ? null : segment.hasSpeech ? 1 : 0,
      caption: segment.caption,
      thumbnail: segment.thumbnail,
    });
  }

  listSegments(videoId: string): SegmentRecord[] {
    return this.#statements.listSegments.all(videoId).map(toSegment);
  }

  /** One page of the video's segments in plan order (the caller has checked the video is the owner's). */
  pageSegments(videoId: string, limit: number, offset: number): Page<SegmentRecord> {
    return {
      items: this.#statements.pageSegments.all(videoId, limit, offset).map(toSegment),
      total: this.#statements.countSegments.get(videoId)!,
    };
  }

  getSegment(videoId: string, seq: number): SegmentRecord | undefined {
    const row = this.#statements.getSegment.get(videoId, seq);
    return row && toSegment(row);
  }

  savedSegmentSeqs(videoId: string): Set<number> {
    return new Set(this.#statements.segmentSeqs.all(videoId));
  }

  deleteSegments(videoId: string): void {
    this.#statements.deleteSegments.run(videoId);
  }

  /** Videos waiting for or in indexing, for reconciling them with their jobs after a restart. */
  unfinishedVideos(): VideoRecord[] {
    return this.#db
      .prepare<[], VideoRow>(`SELECT * FROM videos WHERE index_requested = 1 AND status IN ('pending', 'indexing')`)
      .all()
      .map(toVideo);
  }

  /** Whether a video row with this id exists (for any owner). */
  hasVideo(id: string): boolean {
    return this.#statements.getVideoById.get(id) !== undefined;
  }

  /** Keyword search over the owner's indexed segments (an FTS5 query), best first. */
  searchSegments(owner: string, query: string, limit: number): SearchHit[] {
    return this.#statements.search.all(query, owner, limit).map((row) => ({
      segment: toSegment(row),
      videoName: row.video_name,
      groupId: row.group_id,
      rank: row.rank,
    }));
  }
}

/** Turns free text into an FTS5 query that matches segments containing all its words (no FTS syntax leaks through). */
export function toFtsQuery(text: string): string | undefined {
  const words = text.match(/[\p{L}\p{N}]+/gu);
  if (!words || words.length === 0) return undefined;
  return words
    .slice(0, 32)
    .map((word) => `"${word}"`)
    .join(' ');
}
