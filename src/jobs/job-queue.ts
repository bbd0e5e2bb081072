import { randomBytes } from 'node:crypto';
import { validationError } from '../spec/errors.ts';
import type { Db } from '../store/database.ts';

export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

export type JobStatus = 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled';

export const JOB_STATUSES: readonly JobStatus[] = ['queued', 'running', 'succeeded', 'failed', 'cancelled'];

export interface Job {
  id: string;
  kind: string;
  /** The idempotency key it was enqueued with, or null. */
  key: string | null;
  payload: JsonValue;
  status: JobStatus;
  /** Attempts started so far (a run cut short by `JobRunner.stop()` is given back). */
  attempts: number;
  maxAttempts: number;
  /** 0..1, as last reported by the handler. */
  progress: number;
  /** The last failure's message. */
  error?: string;
  /** Not claimed before this time (set in the future for a retry's backoff). */
  runAt: Date;
  createdAt: Date;
  updatedAt: Date;
}

export interface EnqueueOptions {
  /** While a job with this key is queued or running, enqueueing again returns that job instead of a new one. */
  key?: string | undefined;
  /** Attempts before the job fails for good. @default 3 */
  maxAttempts?: number | undefined;
  /** Not run before this time. @default now */
  runAt?: Date | undefined;
}

export interface ListJobsOptions {
  kind?: string | undefined;
  status?: JobStatus | undefined;
  limit: number;
  offset: number;
}

/** What services see: the part of a job queue that a Redis + BullMQ implementation would offer as well. */
export interface JobQueue {
  enqueue(kind: string, payload: JsonValue, options?: EnqueueOptions): Promise<Job>;
  get(id: string): Promise<Job | undefined>;
  /**
   * A queued job becomes cancelled at once; a running one is asked to stop (its handler's signal is aborted)
   * and ends cancelled. Finished jobs are left as they are. Undefined when there is no such job.
   */
  cancel(id: string): Promise<Job | undefined>;
  /** Newest first. */
  list(options: ListJobsOptions): Promise<Job[]>;
  /** How many jobs there are of each kind in each status (queue depth, for metrics and readiness). */
  counts(): Promise<Array<{ kind: string; status: JobStatus; count: number }>>;
  /** Throws when the queue's store cannot be reached (readiness checks). */
  ping(): Promise<void>;
  /** Releases what the queue holds open (connections); the queue is unusable afterwards. */
  close(): Promise<void>;
}

export type JobEvent = { type: 'enqueued'; job: Job } | { type: 'cancel-requested'; id: string };

/** Whether a worker still holds a job's lease, and whether someone asked for the job to be cancelled. */
export interface LeaseState {
  held: boolean;
  cancelRequested: boolean;
}

/**
 * What workers (`JobRunner`) need on top of `JobQueue`. Every call that changes a running job names its lease
 * owner and does nothing when that owner no longer holds the lease (it expired and the job went to another worker).
 */
export interface WorkerQueue extends JobQueue {
  /** Takes the oldest runnable job of one of `kinds`, marking it running under `owner` for `leaseMs`. */
  claim(owner: string, kinds: readonly string[], leaseMs: number): Promise<Job | undefined>;
  renewLease(id: string, owner: string, leaseMs: number): Promise<LeaseState>;
  setProgress(id: string, owner: string, progress: number): Promise<boolean>;
  complete(id: string, owner: string): Promise<boolean>;
  /** Back to queued until `retryAt` when given and attempts remain, else failed (cancelled when that was asked). */
  fail(id: string, owner: string, message: string, retryAt: Date | undefined): Promise<boolean>;
  /** Ends a running job as cancelled. */
  finishCancelled(id: string, owner: string): Promise<boolean>;
  /** Back to queued, runnable now, with the attempt given back (the worker is shutting down, not failing). */
  release(id: string, owner: string): Promise<boolean>;
  /**
   * Jobs whose lease expired (their process died) go back to queued with their attempts kept; a job that had
   * used its last attempt fails, one whose cancellation was asked ends cancelled. Jobs leased to one of
   * `deadOwners` (workers known to have died) are recovered the same way without waiting for their leases to
   * expire. Returns how many changed.
   */
  recoverExpired(deadOwners?: readonly string[]): Promise<number>;
  /** The lease owners of running jobs. */
  runningOwners(): Promise<string[]>;
  /** In-process notifications (wake-ups on enqueue, cancellations); returns the unsubscribe function. */
  subscribe(listener: (event: JobEvent) => void): () => void;
}

interface JobRow {
  id: string;
  kind: string;
  key: string | null;
  payload: string;
  status: JobStatus;
  attempts: number;
  max_attempts: number;
  progress: number;
  error: string | null;
  run_at: number;
  created_at: number;
  updated_at: number;
}

const COLUMNS = 'id, kind, key, payload, status, attempts, max_attempts, progress, error, run_at, created_at, updated_at';
const DEFAULT_MAX_ATTEMPTS = 3;

function toJob(row: JobRow): Job {
  return {
    id: row.id,
    kind: row.kind,
    key: row.key,
    // Our own column, written by `enqueue` from JSON.stringify: not external input.
    payload: JSON.parse(row.payload) as JsonValue,
    status: row.status,
    attempts: row.attempts,
    maxAttempts: row.max_attempts,
    progress: row.progress,
    ...(row.error === null ? {} : { error: row.error }),
    runAt: new Date(row.run_at),
    createdAt: new Date(row.created_at),
    updatedAt: new Date(row.updated_at),
  };
}

/** What every queue checks before enqueueing; throws a validation error naming the bad field. */
export function checkEnqueue(
  kind: string,
  payload: JsonValue,
  options: EnqueueOptions,
): { maxAttempts: number; encoded: string; now: number; runAt: number; key: string | null } {
  if (kind.length === 0) throw validationError('a job needs a kind', 'kind');
  const maxAttempts = options.maxAttempts ?? DEFAULT_MAX_ATTEMPTS;
  if (!Number.isInteger(maxAttempts) || maxAttempts < 1) throw validationError('maxAttempts must be an integer >= 1', 'maxAttempts');
  const encoded = JSON.stringify(payload) as string | undefined;
  if (encoded === undefined) throw validationError('the payload must be JSON', 'payload');
  const now = Date.now();
  const runAt = options.runAt?.getTime() ?? now;
  if (!Number.isFinite(runAt)) throw validationError('runAt is not a valid date', 'runAt');
  return { maxAttempts, encoded, now, runAt, key: options.key ?? null };
}

/** A new job id: `job_` and 16 hex digits. */
export function newJobId(): string {
  return `job_${randomBytes(8).toString('hex')}`;
}

/** The job queue kept in Ocular's SQLite metadata database; several processes may share the file. */
export class SqliteJobQueue implements WorkerQueue {
  readonly #db: Db;
  readonly #listeners = new Set<(event: JobEvent) => void>();
  readonly #statements;

  constructor(db: Db) {
    this.#db = db;
    this.#statements = {
      insert: db.prepare(
        `INSERT INTO jobs (id, kind, key, payload, status, max_attempts, run_at, created_at, updated_at)
         VALUES (?, ?, ?, ?, 'queued', ?, ?, ?, ?)`,
      ),
      get: db.prepare<[string], JobRow>(`SELECT ${COLUMNS} FROM jobs WHERE id = ?`),
      liveByKey: db.prepare<[string], JobRow>(`SELECT ${COLUMNS} FROM jobs WHERE key = ? AND status IN ('queued', 'running')`),
      cancelQueued: db.prepare(`UPDATE jobs SET status = 'cancelled', updated_at = ? WHERE id = ? AND status = 'queued'`),
      requestCancel: db.prepare(`UPDATE jobs SET cancel_requested = 1, updated_at = ? WHERE id = ? AND status = 'running'`),
      list: db.prepare<[{ kind: string | null; status: string | null; limit: number; offset: number }], JobRow>(
        `SELECT ${COLUMNS} FROM jobs WHERE (@kind IS NULL OR kind = @kind) AND (@status IS NULL OR status = @status)
         ORDER BY created_at DESC, rowid DESC LIMIT @limit OFFSET @offset`,
      ),
      // The (status, run_at) index serves this; json_each lets one statement take any number of kinds.
      nextRunnable: db.prepare<[number, string], { id: string }>(
        `SELECT id FROM jobs WHERE status = 'queued' AND run_at <= ? AND kind IN (SELECT value FROM json_each(?))
         ORDER BY run_at, rowid LIMIT 1`,
      ),
      markRunning: db.prepare(
        `UPDATE jobs SET status = 'running', attempts = attempts + 1, lease_owner = ?, lease_expires_at = ?, updated_at = ?
         WHERE id = ? AND status = 'queued'`,
      ),
      renew: db.prepare(
        `UPDATE jobs SET lease_expires_at = ? WHERE id = ? AND lease_owner = ? AND status = 'running'
         RETURNING cancel_requested`,
      ),
      progress: db.prepare(`UPDATE jobs SET progress = ?, updated_at = ? WHERE id = ? AND lease_owner = ? AND status = 'running'`),
      complete: db.prepare(
        `UPDATE jobs SET status = 'succeeded', progress = 1, error = NULL, lease_owner = NULL, lease_expires_at = NULL,
         updated_at = ? WHERE id = ? AND lease_owner = ? AND status = 'running'`,
      ),
      fail: db.prepare(
        `UPDATE jobs SET
           status = CASE WHEN cancel_requested THEN 'cancelled' WHEN @retryAt IS NOT NULL AND attempts < max_attempts THEN 'queued'
                    ELSE 'failed' END,
           run_at = COALESCE(@retryAt, run_at), error = @message, lease_owner = NULL, lease_expires_at = NULL, updated_at = @now
         WHERE id = @id AND lease_owner = @owner AND status = 'running'`,
      ),
      finishCancelled: db.prepare(
        `UPDATE jobs SET status = 'cancelled', lease_owner = NULL, lease_expires_at = NULL, updated_at = ?
         WHERE id = ? AND lease_owner = ? AND status = 'running'`,
      ),
      release: db.prepare(
        `UPDATE jobs SET status = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'queued' END,
           attempts = MAX(attempts - 1, 0), run_at = @now, lease_owner = NULL, lease_expires_at = NULL, updated_at = @now
         WHERE id = @id AND lease_owner = @owner AND status = 'running'`,
      ),
      recover: db.prepare(
        `UPDATE jobs SET
           status = CASE WHEN cancel_requested THEN 'cancelled' WHEN attempts >= max_attempts THEN 'failed' ELSE 'queued' END,
           error = CASE WHEN cancel_requested OR attempts < max_attempts THEN error
                   ELSE 'the worker running it stopped (lease expired) on its last attempt' END,
           run_at = @now, lease_owner = NULL, lease_expires_at = NULL, updated_at = @now
         WHERE status = 'running' AND (lease_expires_at < @now OR lease_owner IN (SELECT value FROM json_each(@dead)))`,
      ),
      runningOwners: db
        .prepare<[], string>(`SELECT DISTINCT lease_owner FROM jobs WHERE status = 'running' AND lease_owner IS NOT NULL`)
        .pluck(),
    };
  }

  async enqueue(kind: string, payload: JsonValue, options: EnqueueOptions = {}): Promise<Job> {
    const { maxAttempts, encoded, now, runAt, key } = checkEnqueue(kind, payload, options);

    // Immediate: the key check and the insert must not interleave with another process's enqueue.
    const insert = this.#db.transaction((): { job: Job; created: boolean } => {
      const live = key === null ? undefined : this.#statements.liveByKey.get(key);
      if (live !== undefined) return { job: toJob(live), created: false };
      const id = newJobId();
      this.#statements.insert.run(id, kind, key, encoded, maxAttempts, runAt, now, now);
      return { job: toJob(this.#statements.get.get(id)!), created: true };
    });
    const { job, created } = insert.immediate();
    if (created) this.#emit({ type: 'enqueued', job });
    return job;
  }

  async get(id: string): Promise<Job | undefined> {
    return this.#read(id);
  }

  #read(id: string): Job | undefined {
    const row = this.#statements.get.get(id);
    return row === undefined ? undefined : toJob(row);
  }

  async cancel(id: string): Promise<Job | undefined> {
    const now = Date.now();
    const requested = this.#db.transaction(() => {
      if (this.#statements.cancelQueued.run(now, id).changes > 0) return false;
      return this.#statements.requestCancel.run(now, id).changes > 0;
    });
    if (requested.immediate()) this.#emit({ type: 'cancel-requested', id });
    return this.#read(id);
  }

  async list(options: ListJobsOptions): Promise<Job[]> {
    return this.#statements.list
      .all({ kind: options.kind ?? null, status: options.status ?? null, limit: options.limit, offset: options.offset })
      .map(toJob);
  }

  async claim(owner: string, kinds: readonly string[], leaseMs: number): Promise<Job | undefined> {
    // BEGIN IMMEDIATE takes the write lock before the SELECT, so two processes cannot claim the same job.
    const claim = this.#db.transaction((): Job | undefined => {
      const now = Date.now();
      const next = this.#statements.nextRunnable.get(now, JSON.stringify(kinds));
      if (next === undefined) return undefined;
      this.#statements.markRunning.run(owner, now + leaseMs, now, next.id);
      return toJob(this.#statements.get.get(next.id)!);
    });
    return claim.immediate();
  }

  async renewLease(id: string, owner: string, leaseMs: number): Promise<LeaseState> {
    const row = this.#statements.renew.get(Date.now() + leaseMs, id, owner) as { cancel_requested: number } | undefined;
    return row === undefined ? { held: false, cancelRequested: false } : { held: true, cancelRequested: row.cancel_requested !== 0 };
  }

  async setProgress(id: string, owner: string, progress: number): Promise<boolean> {
    const clamped = Number.isFinite(progress) ? Math.min(1, Math.max(0, progress)) : 0;
    return this.#statements.progress.run(clamped, Date.now(), id, owner).changes > 0;
  }

  async complete(id: string, owner: string): Promise<boolean> {
    return this.#statements.complete.run(Date.now(), id, owner).changes > 0;
  }

  async fail(id: string, owner: string, message: string, retryAt: Date | undefined): Promise<boolean> {
    return this.#statements.fail.run({ retryAt: retryAt?.getTime() ?? null, message, now: Date.now(), id, owner }).changes > 0;
  }

  async finishCancelled(id: string, owner: string): Promise<boolean> {
    return this.#statements.finishCancelled.run(Date.now(), id, owner).changes > 0;
  }

  async release(id: string, owner: string): Promise<boolean> {
    return this.#statements.release.run({ now: Date.now(), id, owner }).changes > 0;
  }

  async recoverExpired(deadOwners: readonly string[] = []): Promise<number> {
    return this.#statements.recover.run({ now: Date.now(), dead: JSON.stringify(deadOwners) }).changes;
  }

  async runningOwners(): Promise<string[]> {
    return this.#statements.runningOwners.all();
  }

  async counts(): Promise<Array<{ kind: string; status: JobStatus; count: number }>> {
    return this.#db
      .prepare<[], { kind: string; status: JobStatus; count: number }>(
        'SELECT kind, status, count(*) AS count FROM jobs GROUP BY kind, status',
      )
      .all();
  }

  async ping(): Promise<void> {
    this.#db.prepare('SELECT 1 FROM jobs LIMIT 1').get();
  }

  /** The database is the caller's to close. */
  async close(): Promise<void> {}

  subscribe(listener: (event: JobEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #emit(event: JobEvent): void {
    for (const listener of this.#listeners) listener(event);
  }
}
