import { mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Db } from './database.ts';
import { isVideoId } from './blob-store.ts';
import type { Page } from './video-store.ts';

export type ClipStatus = 'queued' | 'processing' | 'completed' | 'failed';

export const CLIP_STATUSES: readonly ClipStatus[] = ['queued', 'processing', 'completed', 'failed'];

/** What the client asked for, validated, as the job reads it back (times in seconds). */
export interface ClipRequest {
  prompt: string;
  /** The library videos the clips are cut from (URLs in the request were added to the library first). */
  videoIds: string[];
  /** The URLs the client sent, echoed back; empty when it sent ids. */
  videoUrls: string[];
  generation: {
    template: 'moments' | 'compilation';
    numGenerations: number;
    minDurationSeconds: number;
    maxDurationSeconds: number;
    sourceStartSeconds: number | null;
    sourceEndSeconds: number | null;
  };
  rendering: {
    subtitles: boolean;
    aspectRatio: '16:9' | '9:16' | '1:1' | null;
    resolution: number | null;
    fit: 'crop' | 'pad';
  };
}

/** One time range of one video inside an output. */
export interface ClipPieceRecord {
  videoId: string;
  startSeconds: number;
  endSeconds: number;
}

/** One planned output: a moment (one piece) or a compilation (several, joined in order). */
export interface ClipMomentRecord {
  title: string;
  pieces: ClipPieceRecord[];
}

/** A rendered output: the plan's entry at `index`, in `file` inside the clip's folder. */
export interface ClipOutputRecord {
  index: number;
  file: string;
  title: string;
  durationSeconds: number;
  pieces: ClipPieceRecord[];
  mode: 'copy' | 'encode';
}

export interface ClipRecord {
  id: string;
  owner: string;
  status: ClipStatus;
  /** The step running now, or the last one reached (`waiting_for_indexing`, `choosing`, `rendering`...). */
  stage: string | null;
  /** 0..1 */
  progress: number;
  error: string | null;
  request: ClipRequest;
  /** The moments chosen, saved so that a resumed job renders the same ones. */
  plan: ClipMomentRecord[] | null;
  outputs: ClipOutputRecord[];
  jobId: string | null;
  createdAt: Date;
  updatedAt: Date;
}

export interface ClipPatch {
  status?: ClipStatus;
  stage?: string | null;
  progress?: number;
  error?: string | null;
  plan?: ClipMomentRecord[];
  outputs?: ClipOutputRecord[];
  jobId?: string;
}

interface ClipRow {
  id: string;
  owner: string;
  status: ClipStatus;
  stage: string | null;
  progress: number;
  error: string | null;
  request: string;
  plan: string | null;
  outputs: string;
  job_id: string | null;
  created_at: number;
  updated_at: number;
}

const PATCH_COLUMNS: Readonly<Record<keyof ClipPatch, string>> = {
  status: 'status',
  stage: 'stage',
  progress: 'progress',
  error: 'error',
  plan: 'plan',
  outputs: 'outputs',
  jobId: 'job_id',
};

const JSON_COLUMNS = new Set<keyof ClipPatch>(['plan', 'outputs']);

function toClip(row: ClipRow): ClipRecord {
  return {
    id: row.id,
    owner: row.owner,
    status: row.status,
    stage: row.stage,
    progress: row.progress,
    error: row.error,
    request: JSON.parse(row.request) as ClipRequest,
    plan: row.plan === null ? null : (JSON.parse(row.plan) as ClipMomentRecord[]),
    outputs: JSON.parse(row.outputs) as ClipOutputRecord[],
    jobId: row.job_id,
    createdAt: new Date(row.created_at),
    updatedAt: new Date(row.updated_at),
  };
}

/** Clip generation jobs and their outputs (`clips` table), each row owned like a video. */
export class ClipStore {
  readonly #db: Db;
  readonly #statements;

  constructor(db: Db) {
    this.#db = db;
    this.#statements = {
      insert: db.prepare(
        `INSERT INTO clips (id, owner, status, progress, request, outputs, created_at, updated_at)
         VALUES (@id, @owner, 'queued', 0, @request, '[]', @now, @now)`,
      ),
      get: db.prepare<[string, string], ClipRow>('SELECT * FROM clips WHERE owner = ? AND id = ?'),
      getById: db.prepare<[string], ClipRow>('SELECT * FROM clips WHERE id = ?'),
      list: db.prepare<[string, number, number], ClipRow>(
        'SELECT * FROM clips WHERE owner = ? ORDER BY created_at DESC, rowid DESC LIMIT ? OFFSET ?',
      ),
      count: db.prepare<[string], number>('SELECT count(*) FROM clips WHERE owner = ?').pluck(),
      remove: db.prepare('DELETE FROM clips WHERE owner = ? AND id = ?'),
      unfinished: db.prepare<[], ClipRow>(`SELECT * FROM clips WHERE status IN ('queued', 'processing')`),
      countUnfinished: db
        .prepare<[string], number>(`SELECT count(*) FROM clips WHERE owner = ? AND status IN ('queued', 'processing')`)
        .pluck(),
      exists: db.prepare<[string], number>('SELECT count(*) FROM clips WHERE id = ?').pluck(),
    };
  }

  insert(clip: { id: string; owner: string; request: ClipRequest }): ClipRecord {
    this.#statements.insert.run({ id: clip.id, owner: clip.owner, request: JSON.stringify(clip.request), now: Date.now() });
    return this.getById(clip.id)!;
  }

  get(owner: string, id: string): ClipRecord | undefined {
    const row = this.#statements.get.get(owner, id);
    return row === undefined ? undefined : toClip(row);
  }

  getById(id: string): ClipRecord | undefined {
    const row = this.#statements.getById.get(id);
    return row === undefined ? undefined : toClip(row);
  }

  /** Newest first. */
  list(owner: string, limit: number, offset: number): Page<ClipRecord> {
    return { items: this.#statements.list.all(owner, limit, offset).map(toClip), total: this.#statements.count.get(owner) ?? 0 };
  }

  /** False when the clip no longer exists (deleted while its job ran). */
  update(id: string, patch: ClipPatch): boolean {
    const entries = Object.entries(patch).filter(([, value]) => value !== undefined) as Array<[keyof ClipPatch, unknown]>;
    const assignments = entries.map(([key]) => `${PATCH_COLUMNS[key]} = ?`);
    const values = entries.map(([key, value]) => (JSON_COLUMNS.has(key) ? JSON.stringify(value) : value));
    return (
      this.#db.prepare(`UPDATE clips SET ${[...assignments, 'updated_at = ?'].join(', ')} WHERE id = ?`).run(...values, Date.now(), id)
        .changes > 0
    );
  }

  remove(owner: string, id: string): boolean {
    return this.#statements.remove.run(owner, id).changes > 0;
  }

  unfinished(): ClipRecord[] {
    return this.#statements.unfinished.all().map(toClip);
  }

  /** The owner's clips still queued or processing. */
  countUnfinished(owner: string): number {
    return this.#statements.countUnfinished.get(owner) ?? 0;
  }

  has(id: string): boolean {
    return (this.#statements.exists.get(id) ?? 0) > 0;
  }
}

/** Rendered clips on local disk: one folder per clip (`<data>/clips/<id>`) holding its output files. */
export class ClipBlobStore {
  readonly root: string;

  constructor(root: string) {
    this.root = root;
  }

  clipDir(clipId: string): string {
    if (!isVideoId(clipId)) throw new RangeError(`not a clip id: ${clipId}`);
    return join(this.root, clipId);
  }

  async createClipDir(clipId: string): Promise<string> {
    const dir = this.clipDir(clipId);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    return dir;
  }

  /** Output n's file name inside the clip's folder. */
  outputFile(index: number): string {
    if (!Number.isInteger(index) || index < 0) throw new RangeError(`not an output index: ${index}`);
    return `output-${index}.mp4`;
  }

  outputPath(clipId: string, index: number): string {
    return join(this.clipDir(clipId), this.outputFile(index));
  }

  /** Removes what an interrupted render left in the folder: everything but the recorded outputs. */
  async removeLeftovers(clipId: string, keep: readonly string[]): Promise<void> {
    const entries = await readdir(this.clipDir(clipId)).catch(() => []);
    for (const entry of entries) {
      if (!keep.includes(entry)) await rm(join(this.clipDir(clipId), entry), { recursive: true, force: true });
    }
  }

  async removeClip(clipId: string): Promise<void> {
    await rm(this.clipDir(clipId), { recursive: true, force: true, maxRetries: 5, retryDelay: 50 });
  }

  /** Folders of clips the database no longer has (deleted while the server was down, or a crash mid-delete). */
  async orphanFolders(has: (clipId: string) => boolean): Promise<string[]> {
    const entries = await readdir(this.root, { withFileTypes: true }).catch(() => []);
    return entries.filter((entry) => entry.isDirectory() && isVideoId(entry.name) && !has(entry.name)).map((entry) => entry.name);
  }
}
