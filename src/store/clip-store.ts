import { mkdir, readdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Selectable, Updateable } from 'kysely';
import { countRows, type SqlDatabase } from './sql.ts';
import type { ClipsTable } from './tables.ts';
import { isVideoId, removeIdFolders } from './blob-store.ts';
import type { BlobClaims } from './blob-claims.ts';
import { fileSource, type BlobSource, type S3Blobs } from './object-store.ts';
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

type ClipRow = Selectable<ClipsTable>;

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
  readonly #database: SqlDatabase;

  constructor(database: SqlDatabase) {
    this.#database = database;
  }

  async insert(clip: { id: string; owner: string; request: ClipRequest }): Promise<ClipRecord> {
    const now = Date.now();
    await this.#database.db
      .insertInto('clips')
      .values({
        id: clip.id,
        owner: clip.owner,
        status: 'queued',
        progress: 0,
        request: JSON.stringify(clip.request),
        outputs: '[]',
        created_at: now,
        updated_at: now,
      })
      .execute();
    return (await this.getById(clip.id))!;
  }

  async get(owner: string, id: string): Promise<ClipRecord | undefined> {
    const row = await this.#database.db.selectFrom('clips').selectAll().where('owner', '=', owner).where('id', '=', id).executeTakeFirst();
    return row === undefined ? undefined : toClip(row);
  }

  async getById(id: string): Promise<ClipRecord | undefined> {
    const row = await this.#database.db.selectFrom('clips').selectAll().where('id', '=', id).executeTakeFirst();
    return row === undefined ? undefined : toClip(row);
  }

  /** Newest first. */
  async list(owner: string, limit: number, offset: number): Promise<Page<ClipRecord>> {
    const { db } = this.#database;
    const rows = await db
      .selectFrom('clips')
      .selectAll()
      .where('owner', '=', owner)
      .orderBy('created_at', 'desc')
      .orderBy('rowid', 'desc')
      .limit(limit)
      .offset(offset)
      .execute();
    return { items: rows.map(toClip), total: await countRows(db.selectFrom('clips').where('owner', '=', owner)) };
  }

  /** False when the clip no longer exists (deleted while its job ran). */
  async update(id: string, patch: ClipPatch): Promise<boolean> {
    const changes: Updateable<ClipsTable> = { updated_at: Date.now() };
    if (patch.status !== undefined) changes.status = patch.status;
    if (patch.stage !== undefined) changes.stage = patch.stage;
    if (patch.progress !== undefined) changes.progress = patch.progress;
    if (patch.error !== undefined) changes.error = patch.error;
    if (patch.plan !== undefined) changes.plan = JSON.stringify(patch.plan);
    if (patch.outputs !== undefined) changes.outputs = JSON.stringify(patch.outputs);
    if (patch.jobId !== undefined) changes.job_id = patch.jobId;
    const result = await this.#database.db.updateTable('clips').set(changes).where('id', '=', id).executeTakeFirst();
    return result.numUpdatedRows > 0n;
  }

  async remove(owner: string, id: string): Promise<boolean> {
    const result = await this.#database.db.deleteFrom('clips').where('owner', '=', owner).where('id', '=', id).executeTakeFirst();
    return result.numDeletedRows > 0n;
  }

  async unfinished(): Promise<ClipRecord[]> {
    const rows = await this.#database.db.selectFrom('clips').selectAll().where('status', 'in', ['queued', 'processing']).execute();
    return rows.map(toClip);
  }

  /** The owner's clips still queued or processing. */
  countUnfinished(owner: string): Promise<number> {
    return countRows(this.#database.db.selectFrom('clips').where('owner', '=', owner).where('status', 'in', ['queued', 'processing']));
  }

  async has(id: string): Promise<boolean> {
    return (await this.#database.db.selectFrom('clips').select('id').where('id', '=', id).executeTakeFirst()) !== undefined;
  }
}

/** Rendered clips on local disk: one folder per clip (`<data>/clips/<id>`) holding its output files. */
/** Inside a clip's working folder: copies of the videos its render reads (with a blob store). */
const SOURCES_DIR = '.sources';

export class ClipBlobStore {
  readonly root: string;
  readonly remote: S3Blobs | undefined;
  readonly #claims: BlobClaims | undefined;

  /**
   * @param root the folder of every clip's folder (`<data>/clips`): the outputs themselves on the file system;
   * with `remote`, an S3 store holding them, only where renders are made.
   * @param claims with a store: how a process says which clips' blobs it is removing (see BlobStore).
   */
  constructor(root: string, remote?: S3Blobs, claims?: BlobClaims) {
    this.root = root;
    this.remote = remote;
    this.#claims = remote ? claims : undefined;
  }

  /** Runs `work` holding the claim on the clip's blobs (nothing to claim in folders). */
  hold<T>(clipId: string, work: () => Promise<T>): Promise<T> {
    return this.#claims ? this.#claims.hold(clipId, work) : work();
  }

  /** With a store: removes the outputs of abandoned claims whose clip `has` denies. Returns how many clips'. */
  async recoverAbandoned(has: (clipId: string) => Promise<boolean>): Promise<number> {
    if (!this.#claims) return 0;
    return this.#claims.removeAbandoned(
      async (clipId) => !isVideoId(clipId) || (await has(clipId)),
      (clipId) => this.removeClip(clipId),
    );
  }

  /** A folder of this process for copies of the videos a render reads (with a store; removed by `dropLocal`). */
  sourcesDir(clipId: string): string {
    return join(this.clipDir(clipId), SOURCES_DIR);
  }

  /** Makes a finished render output n: moved into the clip's folder, or uploaded to the store. */
  async saveOutput(clipId: string, index: number, file: string): Promise<void> {
    if (this.remote) return this.remote.putFile(`${clipId}/${this.outputFile(index)}`, file, 'video/mp4');
    await rename(file, this.outputPath(clipId, index));
  }

  /** Where a download of output n reads from. */
  outputSource(clipId: string, index: number): BlobSource {
    const file = this.outputFile(index);
    return this.remote ? this.remote.source(`${clipId}/${file}`) : fileSource(join(this.clipDir(clipId), file));
  }

  /** Lets this process's working folder go (with a store; on disk it holds the outputs and stays). */
  async dropLocal(clipId: string): Promise<void> {
    if (this.remote) await rm(this.clipDir(clipId), { recursive: true, force: true, maxRetries: 5, retryDelay: 50 });
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
      if (!keep.includes(entry) && entry !== SOURCES_DIR) await rm(join(this.clipDir(clipId), entry), { recursive: true, force: true });
    }
  }

  /** With a store: removes every working folder here (see `BlobStore.clearWorkingCopies`). */
  async clearWorkingCopies(): Promise<number> {
    return this.remote ? removeIdFolders(this.root) : 0;
  }

  async removeClip(clipId: string): Promise<void> {
    const dir = this.clipDir(clipId); // refuses what is not a clip id
    if (this.remote) await this.remote.remove(clipId);
    await rm(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 });
  }

  /**
   * Folders of clips the database no longer has (deleted while the server was down, or a crash mid-delete). A
   * store is not listed: what a crash left there is found through its claims (`recoverAbandoned`).
   */
  async orphanFolders(has: (clipId: string) => Promise<boolean>): Promise<string[]> {
    if (this.remote) return [];
    const names = (await readdir(this.root, { withFileTypes: true }).catch(() => []))
      .filter((entry) => entry.isDirectory())
      .map((entry) => entry.name);
    const orphans: string[] = [];
    for (const name of names) {
      if (isVideoId(name) && !(await has(name))) orphans.push(name);
    }
    return orphans;
  }
}
