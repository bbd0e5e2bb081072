import type { Selectable, Updateable } from 'kysely';
import { countRows, type SqlDatabase } from './sql.ts';
import type { VideoGroupsTable, VideoSegmentsTable, VideosTable } from './tables.ts';

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

type GroupRow = Selectable<VideoGroupsTable>;
type VideoRow = Selectable<VideosTable>;
type SegmentRow = Selectable<VideoSegmentsTable>;

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

export interface ListVideosFilter {
  groupId?: string | undefined;
  status?: IndexingStatus | undefined;
  limit: number;
  offset: number;
}

/**
 * The video library's metadata: groups, videos and their indexed segments, each read and written under its
 * owner, so no query can reach another owner's rows. Blobs live in the blob store, keyed by video id.
 */
export class VideoStore {
  readonly #database: SqlDatabase;

  constructor(database: SqlDatabase) {
    this.#database = database;
  }

  // ---- groups ----

  /** Creates the owner's default group on first use. */
  async ensureDefaultGroup(owner: string): Promise<void> {
    const now = Date.now();
    await this.#database.db
      .insertInto('video_groups')
      .values({
        owner,
        id: DEFAULT_GROUP_ID,
        name: DEFAULT_GROUP_ID,
        metadata: '',
        webhook_url: null,
        webhook_secret: null,
        created_at: now,
        updated_at: now,
      })
      .onConflict((conflict) => conflict.columns(['owner', 'id']).doNothing())
      .execute();
  }

  async createGroup(group: NewGroup): Promise<GroupRecord> {
    const now = Date.now();
    await this.#database.db
      .insertInto('video_groups')
      .values({
        owner: group.owner,
        id: group.id,
        name: group.name,
        metadata: group.metadata,
        webhook_url: group.webhookUrl ?? null,
        webhook_secret: group.webhookSecret ?? null,
        created_at: now,
        updated_at: now,
      })
      .execute();
    return (await this.getGroup(group.owner, group.id))!;
  }

  async getGroup(owner: string, id: string): Promise<GroupRecord | undefined> {
    if (id === DEFAULT_GROUP_ID) await this.ensureDefaultGroup(owner);
    const row = await this.#database.db
      .selectFrom('video_groups')
      .selectAll()
      .where('owner', '=', owner)
      .where('id', '=', id)
      .executeTakeFirst();
    return row && toGroup(row);
  }

  async listGroups(owner: string, limit: number, offset: number): Promise<Page<GroupRecord>> {
    await this.ensureDefaultGroup(owner);
    const { db } = this.#database;
    const rows = await db
      .selectFrom('video_groups')
      .selectAll()
      .where('owner', '=', owner)
      .orderBy('created_at')
      .orderBy('id')
      .limit(limit)
      .offset(offset)
      .execute();
    return { items: rows.map(toGroup), total: await countRows(db.selectFrom('video_groups').where('owner', '=', owner)) };
  }

  async updateGroup(owner: string, id: string, patch: GroupPatch): Promise<GroupRecord | undefined> {
    const result = await this.#database.db
      .updateTable('video_groups')
      .set({
        name: patch.name,
        metadata: patch.metadata,
        webhook_url: patch.webhookUrl,
        webhook_secret: patch.webhookSecret,
        updated_at: Date.now(),
      })
      .where('owner', '=', owner)
      .where('id', '=', id)
      .executeTakeFirst();
    return result.numUpdatedRows > 0n ? this.getGroup(owner, id) : undefined;
  }

  async videoIdsInGroup(owner: string, groupId: string): Promise<string[]> {
    const rows = await this.#database.db
      .selectFrom('videos')
      .select('id')
      .where('owner', '=', owner)
      .where('group_id', '=', groupId)
      .execute();
    return rows.map((row) => row.id);
  }

  /** Deletes the group row; its videos must be gone first (foreign key). */
  async deleteGroup(owner: string, id: string): Promise<boolean> {
    const result = await this.#database.db.deleteFrom('video_groups').where('owner', '=', owner).where('id', '=', id).executeTakeFirst();
    return result.numDeletedRows > 0n;
  }

  // ---- videos ----

  async insertVideo(video: NewVideo): Promise<VideoRecord> {
    const now = Date.now();
    await this.#database.db
      .insertInto('videos')
      .values({
        id: video.id,
        owner: video.owner,
        group_id: video.groupId,
        name: video.name,
        status: video.status,
        progress: 0,
        stage: null,
        error: video.error ?? null,
        index_requested: video.indexRequested ? 1 : 0,
        thumbnails: video.thumbnails ? 1 : 0,
        indexing_type: video.indexingType ?? null,
        metadata: video.metadata === null ? '' : JSON.stringify(video.metadata),
        plan: null,
        start_timestamp: video.startTimestamp,
        webhook_url: video.webhookUrl,
        webhook_secret: video.webhookSecret,
        job_id: null,
        created_at: now,
        updated_at: now,
      })
      .execute();
    return (await this.getVideoById(video.id))!;
  }

  async getVideo(owner: string, id: string): Promise<VideoRecord | undefined> {
    const row = await this.#database.db.selectFrom('videos').selectAll().where('owner', '=', owner).where('id', '=', id).executeTakeFirst();
    return row && toVideo(row);
  }

  /** For the indexer, which acts for whoever owns the video. */
  async getVideoById(id: string): Promise<VideoRecord | undefined> {
    const row = await this.#database.db.selectFrom('videos').selectAll().where('id', '=', id).executeTakeFirst();
    return row && toVideo(row);
  }

  /** Oldest first, so offsets stay stable while new uploads arrive. */
  async listVideos(owner: string, filter: ListVideosFilter): Promise<Page<VideoRecord>> {
    let query = this.#database.db.selectFrom('videos').where('owner', '=', owner);
    if (filter.groupId !== undefined) query = query.where('group_id', '=', filter.groupId);
    if (filter.status !== undefined) query = query.where('status', '=', filter.status);
    const rows = await query.selectAll().orderBy('created_at').orderBy('id').limit(filter.limit).offset(filter.offset).execute();
    return { items: rows.map(toVideo), total: await countRows(query) };
  }

  /** False when the video no longer exists (deleted while it was being indexed). */
  async updateVideo(id: string, patch: VideoPatch): Promise<boolean> {
    const values: Updateable<VideosTable> = {
      status: patch.status,
      progress: patch.progress,
      stage: patch.stage,
      error: patch.error,
      metadata: patch.metadata === undefined ? undefined : JSON.stringify(patch.metadata),
      plan: patch.plan,
      job_id: patch.jobId,
      indexing_type: patch.indexingType,
      updated_at: Date.now(),
    };
    const result = await this.#database.db.updateTable('videos').set(values).where('id', '=', id).executeTakeFirst();
    return result.numUpdatedRows > 0n;
  }

  /** Removes the video's row, its segments and their index entries (the blobs are the caller's). */
  async deleteVideo(owner: string, id: string): Promise<boolean> {
    return this.#database.db.transaction().execute(async (trx) => {
      const video = await trx.selectFrom('videos').select('id').where('owner', '=', owner).where('id', '=', id).executeTakeFirst();
      if (video === undefined) return false;
      await trx.deleteFrom('video_segments').where('video_id', '=', id).execute();
      const result = await trx.deleteFrom('videos').where('owner', '=', owner).where('id', '=', id).executeTakeFirst();
      return result.numDeletedRows > 0n;
    });
  }

  // ---- segments ----

  /** Writes a segment, replacing the row an earlier (interrupted) run wrote for the same position. */
  async saveSegment(segment: SegmentRecord): Promise<void> {
    const row = {
      video_id: segment.videoId,
      seq: segment.seq,
      start_seconds: segment.startSeconds,
      end_seconds: segment.endSeconds,
      keyframes: JSON.stringify(segment.keyframes),
      ocr_text: segment.ocrText,
      objects: JSON.stringify(segment.objects),
      object_names: segment.objects.map((object) => object.label).join(' '),
      labels: JSON.stringify(segment.labels),
      label_names: segment.labels.map((label) => label.label).join(' '),
      transcript: segment.transcript,
      speech: JSON.stringify(segment.speech),
      has_speech: segment.hasSpeech === null ? null : segment.hasSpeech ? 1 : 0,
      caption: segment.caption,
      thumbnail: segment.thumbnail,
    };
    const { video_id: _videoId, seq: _seq, ...changes } = row;
    await this.#database.db
      .insertInto('video_segments')
      .values(row)
      .onConflict((conflict) => conflict.columns(['video_id', 'seq']).doUpdateSet(changes))
      .execute();
  }

  async listSegments(videoId: string): Promise<SegmentRecord[]> {
    const rows = await this.#segments(videoId).selectAll().orderBy('seq').execute();
    return rows.map(toSegment);
  }

  /** One page of the video's segments in plan order (the caller has checked the video is the owner's). */
  async pageSegments(videoId: string, limit: number, offset: number): Promise<Page<SegmentRecord>> {
    const rows = await this.#segments(videoId).selectAll().orderBy('seq').limit(limit).offset(offset).execute();
    return { items: rows.map(toSegment), total: await this.countSegments(videoId) };
  }

  async countSegments(videoId: string): Promise<number> {
    return countRows(this.#segments(videoId));
  }

  async getSegment(videoId: string, seq: number): Promise<SegmentRecord | undefined> {
    const row = await this.#segments(videoId).selectAll().where('seq', '=', seq).executeTakeFirst();
    return row && toSegment(row);
  }

  async savedSegmentSeqs(videoId: string): Promise<Set<number>> {
    const rows = await this.#segments(videoId).select('seq').execute();
    return new Set(rows.map((row) => row.seq));
  }

  async deleteSegments(videoId: string): Promise<void> {
    await this.#database.db.deleteFrom('video_segments').where('video_id', '=', videoId).execute();
  }

  /** Videos waiting for or in indexing, for reconciling them with their jobs after a restart. */
  async unfinishedVideos(): Promise<VideoRecord[]> {
    const rows = await this.#database.db
      .selectFrom('videos')
      .selectAll()
      .where('index_requested', '=', 1)
      .where('status', 'in', ['pending', 'indexing'])
      .execute();
    return rows.map(toVideo);
  }

  /** Whether a video row with this id exists (for any owner). */
  async hasVideo(id: string): Promise<boolean> {
    return (await this.#database.db.selectFrom('videos').select('id').where('id', '=', id).executeTakeFirst()) !== undefined;
  }

  #segments(videoId: string) {
    return this.#database.db.selectFrom('video_segments').where('video_id', '=', videoId);
  }
}
