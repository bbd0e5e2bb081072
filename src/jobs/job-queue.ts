import { randomBytes } from 'node:crypto';
import { validationError } from '../spec/errors.ts';
import { sql, type UpdateObject } from 'kysely';
import { isUniqueViolation, type SqlDatabase } from '../store/sql.ts';
import type { Tables } from '../store/tables.ts';

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

const JOB_COLUMNS = [
  'id',
  'kind',
  'key',
  'payload',
  'status',
  'attempts',
  'max_attempts',
  'progress',
  'error',
  'run_at',
  'created_at',
  'updated_at',
] as const;
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

/**
 * The job queue in Ocular's metadata database (the `jobs` table, SQLite or PostgreSQL), which every process that
 * shares the database shares: a claim is one atomic UPDATE of the oldest runnable row (on PostgreSQL with
 * `FOR UPDATE SKIP LOCKED`, so concurrent workers never wait for each other), and every change to a running job
 * names its lease owner.
 */
export class SqlJobQueue implements WorkerQueue {
  readonly #database: SqlDatabase;
  readonly #listeners = new Set<(event: JobEvent) => void>();

  constructor(database: SqlDatabase) {
    this.#database = database;
  }

  async enqueue(kind: string, payload: JsonValue, options: EnqueueOptions = {}): Promise<Job> {
    const { maxAttempts, encoded, now, runAt, key } = checkEnqueue(kind, payload, options);
    const { db } = this.#database;
    // The partial unique index on live keys decides between two enqueues racing with the same key.
    for (let attempt = 0; ; attempt++) {
      if (key !== null) {
        const live = await this.#select().where('key', '=', key).where('status', 'in', ['queued', 'running']).executeTakeFirst();
        if (live !== undefined) return toJob(live);
      }
      const id = newJobId();
      try {
        await db
          .insertInto('jobs')
          .values({
            id,
            kind,
            key,
            payload: encoded,
            status: 'queued',
            max_attempts: maxAttempts,
            run_at: runAt,
            created_at: now,
            updated_at: now,
          })
          .execute();
      } catch (error) {
        if (key !== null && isUniqueViolation(error) && attempt < 3) continue;
        throw error;
      }
      const job = (await this.#read(id))!;
      this.#emit({ type: 'enqueued', job });
      return job;
    }
  }

  async get(id: string): Promise<Job | undefined> {
    return this.#read(id);
  }

  async #read(id: string): Promise<Job | undefined> {
    const row = await this.#select().where('id', '=', id).executeTakeFirst();
    return row === undefined ? undefined : toJob(row);
  }

  #select() {
    return this.#database.db.selectFrom('jobs').select(JOB_COLUMNS);
  }

  async cancel(id: string): Promise<Job | undefined> {
    const { db } = this.#database;
    const now = Date.now();
    const cancelled = await db
      .updateTable('jobs')
      .set({ status: 'cancelled', updated_at: now })
      .where('id', '=', id)
      .where('status', '=', 'queued')
      .executeTakeFirst();
    if (cancelled.numUpdatedRows > 0n) return this.#read(id);
    const requested = await db
      .updateTable('jobs')
      .set({ cancel_requested: 1, updated_at: now })
      .where('id', '=', id)
      .where('status', '=', 'running')
      .executeTakeFirst();
    // Read before telling this process's runner: the answer is the job as the request found it (still running).
    const job = await this.#read(id);
    if (requested.numUpdatedRows > 0n) this.#emit({ type: 'cancel-requested', id });
    return job;
  }

  async list(options: ListJobsOptions): Promise<Job[]> {
    let query = this.#select();
    if (options.kind !== undefined) query = query.where('kind', '=', options.kind);
    if (options.status !== undefined) query = query.where('status', '=', options.status);
    const rows = await query.orderBy('created_at', 'desc').orderBy('rowid', 'desc').limit(options.limit).offset(options.offset).execute();
    return rows.map(toJob);
  }

  async claim(owner: string, kinds: readonly string[], leaseMs: number): Promise<Job | undefined> {
    if (kinds.length === 0) return undefined;
    const now = Date.now();
    // One statement: the oldest runnable row is picked and marked in the same step (SQLite: under its write lock;
    // PostgreSQL: rows another worker is claiming are skipped, not waited for).
    const skipLocked = this.#database.dialect === 'postgres' ? sql` FOR UPDATE SKIP LOCKED` : sql``;
    const { rows } = await sql<JobRow>`
      UPDATE jobs SET status = 'running', attempts = attempts + 1, lease_owner = ${owner}, lease_expires_at = ${now + leaseMs},
        updated_at = ${now}
      WHERE id = (
        SELECT id FROM jobs WHERE status = 'queued' AND run_at <= ${now} AND kind IN (${sql.join(kinds.map((kind) => sql`${kind}`))})
        ORDER BY run_at, rowid LIMIT 1${skipLocked}
      ) AND status = 'queued'
      RETURNING ${sql.raw(JOB_COLUMNS.join(', '))}`.execute(this.#database.db);
    return rows[0] === undefined ? undefined : toJob(rows[0]);
  }

  async renewLease(id: string, owner: string, leaseMs: number): Promise<LeaseState> {
    const row = await this.#database.db
      .updateTable('jobs')
      .set({ lease_expires_at: Date.now() + leaseMs })
      .where('id', '=', id)
      .where('lease_owner', '=', owner)
      .where('status', '=', 'running')
      .returning('cancel_requested')
      .executeTakeFirst();
    return row === undefined ? { held: false, cancelRequested: false } : { held: true, cancelRequested: row.cancel_requested !== 0 };
  }

  async setProgress(id: string, owner: string, progress: number): Promise<boolean> {
    const clamped = Number.isFinite(progress) ? Math.min(1, Math.max(0, progress)) : 0;
    return this.#updateHeld(id, owner, { progress: clamped, updated_at: Date.now() });
  }

  async complete(id: string, owner: string): Promise<boolean> {
    return this.#updateHeld(id, owner, {
      status: 'succeeded',
      progress: 1,
      error: null,
      lease_owner: null,
      lease_expires_at: null,
      updated_at: Date.now(),
    });
  }

  async fail(id: string, owner: string, message: string, retryAt: Date | undefined): Promise<boolean> {
    const retry = retryAt === undefined ? sql`` : sql` WHEN attempts < max_attempts THEN 'queued'`;
    return this.#updateHeld(id, owner, {
      status: sql<JobStatus>`CASE WHEN cancel_requested <> 0 THEN 'cancelled'${retry} ELSE 'failed' END`,
      run_at: retryAt?.getTime() ?? sql<number>`run_at`,
      error: message,
      lease_owner: null,
      lease_expires_at: null,
      updated_at: Date.now(),
    });
  }

  async finishCancelled(id: string, owner: string): Promise<boolean> {
    return this.#updateHeld(id, owner, { status: 'cancelled', lease_owner: null, lease_expires_at: null, updated_at: Date.now() });
  }

  async release(id: string, owner: string): Promise<boolean> {
    const now = Date.now();
    const greatest = this.#database.dialect === 'postgres' ? sql<number>`GREATEST(attempts - 1, 0)` : sql<number>`MAX(attempts - 1, 0)`;
    return this.#updateHeld(id, owner, {
      status: sql<JobStatus>`CASE WHEN cancel_requested <> 0 THEN 'cancelled' ELSE 'queued' END`,
      attempts: greatest,
      run_at: now,
      lease_owner: null,
      lease_expires_at: null,
      updated_at: now,
    });
  }

  /** Applies `changes` to a running job while `owner` holds its lease; false when it no longer does. */
  async #updateHeld(id: string, owner: string, changes: UpdateObject<Tables, 'jobs'>): Promise<boolean> {
    const result = await this.#database.db
      .updateTable('jobs')
      .set(changes)
      .where('id', '=', id)
      .where('lease_owner', '=', owner)
      .where('status', '=', 'running')
      .executeTakeFirst();
    return result.numUpdatedRows > 0n;
  }

  async recoverExpired(deadOwners: readonly string[] = []): Promise<number> {
    const now = Date.now();
    const result = await this.#database.db
      .updateTable('jobs')
      .set({
        status: sql<JobStatus>`CASE WHEN cancel_requested <> 0 THEN 'cancelled' WHEN attempts >= max_attempts THEN 'failed' ELSE 'queued' END`,
        error: sql<string | null>`CASE WHEN cancel_requested <> 0 OR attempts < max_attempts THEN error
          ELSE 'the worker running it stopped (lease expired) on its last attempt' END`,
        run_at: now,
        lease_owner: null,
        lease_expires_at: null,
        updated_at: now,
      })
      .where('status', '=', 'running')
      .where((eb) => {
        const expired = eb('lease_expires_at', '<', now);
        return deadOwners.length === 0 ? expired : eb.or([expired, eb('lease_owner', 'in', [...deadOwners])]);
      })
      .executeTakeFirst();
    return Number(result.numUpdatedRows);
  }

  async runningOwners(): Promise<string[]> {
    const rows = await this.#database.db
      .selectFrom('jobs')
      .select('lease_owner')
      .distinct()
      .where('status', '=', 'running')
      .where('lease_owner', 'is not', null)
      .execute();
    return rows.map((row) => row.lease_owner!);
  }

  async counts(): Promise<Array<{ kind: string; status: JobStatus; count: number }>> {
    const rows = await this.#database.db
      .selectFrom('jobs')
      .select((eb) => ['kind', 'status', eb.fn.countAll<number | string>().as('count')])
      .groupBy(['kind', 'status'])
      .execute();
    return rows.map((row) => ({ kind: row.kind, status: row.status, count: Number(row.count) }));
  }

  async ping(): Promise<void> {
    await this.#database.db.selectFrom('jobs').select('id').limit(1).execute();
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
