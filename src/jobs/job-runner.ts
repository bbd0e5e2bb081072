import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { Job, JobEvent, WorkerQueue } from './job-queue.ts';

export interface JobContext {
  /** Aborted when the job is cancelled, when the runner stops, or when this worker lost the job's lease. */
  signal: AbortSignal;
  /** Saves progress (clamped to 0..1) on the job. */
  reportProgress(progress: number): void;
  /** Renews the lease now (the runner also does it on a timer, which a long synchronous step would hold up). */
  heartbeat(): void;
}

/**
 * Runs one job. A throw is a failed attempt (retried with backoff while attempts remain). A job may run more than
 * once (a retry, a crash, a stop), so a handler should be resumable: skip the work its earlier runs recorded.
 */
export type JobHandler = (job: Job, context: JobContext) => Promise<void>;

/** Thrown by a handler for a failure that retrying cannot fix: the job fails at once, attempts left or not. */
export class PermanentJobError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'PermanentJobError';
  }
}

/** The part of the server's logger this module uses. */
export interface JobLog {
  warn(message: string, fields?: Record<string, unknown>): void;
}

export interface JobRunnerOptions {
  queue: WorkerQueue;
  log: JobLog;
  /** Jobs run at once by this runner. @default 1 */
  concurrency?: number | undefined;
  /** How long a claimed job stays this worker's without a heartbeat. @default 30000 */
  leaseMs?: number | undefined;
  /** Milliseconds between automatic lease renewals. @default leaseMs / 3 */
  heartbeatMs?: number | undefined;
  /** How often to look for runnable jobs (enqueues from this process wake the runner at once). @default 500 */
  pollMs?: number | undefined;
  /** How often to put jobs whose lease expired back in the queue. @default leaseMs / 2 */
  recoverMs?: number | undefined;
  /** The wait before the first retry; it doubles with each further attempt. @default 1000 */
  backoffBaseMs?: number | undefined;
  /** The longest wait before a retry. @default 300000 */
  backoffMaxMs?: number | undefined;
  /** Names this worker in lease columns. @default `<host>:<pid>:<random>` */
  owner?: string | undefined;
  /** Told how each run ended and how long it took (for metrics). */
  onSettled?: ((kind: string, outcome: 'completed' | 'failed' | 'cancelled' | 'released', seconds: number) => void) | undefined;
}

type AbortCause = 'cancelled' | 'stopping' | 'lease-lost';

interface Running {
  job: Job;
  controller: AbortController;
  cause: AbortCause | undefined;
}

function abortReason(cause: AbortCause): Error {
  const error = new Error(`the job was interrupted (${cause})`);
  error.name = 'AbortError';
  return error;
}

/**
 * In-process workers over a `WorkerQueue`: claims jobs of the kinds it has handlers for, at most `concurrency` at
 * a time, keeps their leases alive, and records each outcome.
 */
export class JobRunner {
  readonly owner: string;
  readonly #queue: WorkerQueue;
  readonly #log: JobLog;
  readonly #handlers = new Map<string, JobHandler>();
  readonly #concurrency: number;
  readonly #leaseMs: number;
  readonly #heartbeatMs: number;
  readonly #pollMs: number;
  readonly #recoverMs: number;
  readonly #backoffBaseMs: number;
  readonly #backoffMaxMs: number;
  readonly #onSettled: JobRunnerOptions['onSettled'];
  readonly #running = new Map<string, Running>();
  readonly #settled = new Set<Promise<void>>();
  #started = false;
  #timers: NodeJS.Timeout[] = [];
  #unsubscribe: (() => void) | undefined;

  constructor(options: JobRunnerOptions) {
    this.#queue = options.queue;
    this.#log = options.log;
    this.#concurrency = options.concurrency ?? 1;
    if (!Number.isInteger(this.#concurrency) || this.#concurrency < 1) throw new RangeError('concurrency must be an integer >= 1');
    this.#leaseMs = options.leaseMs ?? 30_000;
    this.#heartbeatMs = options.heartbeatMs ?? Math.max(1, Math.floor(this.#leaseMs / 3));
    this.#pollMs = options.pollMs ?? 500;
    this.#recoverMs = options.recoverMs ?? Math.max(1, Math.floor(this.#leaseMs / 2));
    this.#backoffBaseMs = options.backoffBaseMs ?? 1000;
    this.#backoffMaxMs = options.backoffMaxMs ?? 300_000;
    this.owner = options.owner ?? `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`;
    this.#onSettled = options.onSettled;
  }

  /** Registers the handler for one kind of job; register before `start()`. */
  handle(kind: string, handler: JobHandler): this {
    this.#handlers.set(kind, handler);
    return this;
  }

  /** Jobs running in this runner now. */
  get activeCount(): number {
    return this.#running.size;
  }

  start(): void {
    if (this.#started) return;
    this.#started = true;
    this.#unsubscribe = this.#queue.subscribe((event) => this.#onEvent(event));
    this.#recover();
    this.#timers = [setInterval(() => this.#fill(), this.#pollMs), setInterval(() => this.#recover(), this.#recoverMs)];
    this.#fill();
  }

  /** Aborts the running jobs, waits for their handlers to return, and leaves those jobs queued for the next start. */
  async stop(): Promise<void> {
    if (!this.#started) return;
    this.#started = false;
    for (const timer of this.#timers) clearInterval(timer);
    this.#timers = [];
    this.#unsubscribe?.();
    this.#unsubscribe = undefined;
    for (const running of this.#running.values()) this.#abort(running, 'stopping');
    await Promise.all(this.#settled);
  }

  #onEvent(event: JobEvent): void {
    if (event.type === 'enqueued') {
      if (this.#handlers.has(event.job.kind)) setImmediate(() => this.#fill());
    } else {
      const running = this.#running.get(event.id);
      if (running !== undefined) this.#abort(running, 'cancelled');
    }
  }

  #abort(running: Running, cause: AbortCause): void {
    if (running.cause !== undefined) return;
    running.cause = cause;
    running.controller.abort(abortReason(cause));
  }

  /**
   * Workers on this host whose process is gone (a `kill -9`, a crash): their jobs need not wait for their leases
   * to expire. Owners are `<host>:<pid>:<random>`; an owner on another host, or one this check cannot read, is
   * left to lease expiry.
   */
  #deadLocalOwners(): string[] {
    const host = hostname();
    return this.#queue.runningOwners().filter((owner) => {
      const match = /^(.*):(\d+):[0-9a-f]+$/.exec(owner);
      if (!match || match[1] !== host || owner === this.owner) return false;
      const pid = Number(match[2]);
      if (pid === process.pid) return false;
      try {
        process.kill(pid, 0);
        return false;
      } catch (error) {
        return (error as NodeJS.ErrnoException).code === 'ESRCH';
      }
    });
  }

  #recover(): void {
    try {
      const recovered = this.#queue.recoverExpired(this.#deadLocalOwners());
      if (recovered > 0) {
        this.#log.warn('jobs whose worker stopped renewing its lease went back to the queue', { count: recovered });
        this.#fill();
      }
    } catch (error) {
      this.#log.warn('could not recover expired jobs', { error: String(error) });
    }
  }

  /** Claims jobs until the concurrency bound is reached or none is runnable. Synchronous, so it cannot interleave. */
  #fill(): void {
    const kinds = [...this.#handlers.keys()];
    while (this.#started && this.#running.size < this.#concurrency && kinds.length > 0) {
      let job: Job | undefined;
      try {
        job = this.#queue.claim(this.owner, kinds, this.#leaseMs);
      } catch (error) {
        this.#log.warn('could not claim a job', { error: String(error) });
        return;
      }
      if (job === undefined) return;
      const running: Running = { job, controller: new AbortController(), cause: undefined };
      this.#running.set(job.id, running);
      const settled = this.#execute(running).finally(() => {
        this.#running.delete(job.id);
        this.#settled.delete(settled);
        this.#fill();
      });
      this.#settled.add(settled);
    }
  }

  #heartbeat(running: Running): void {
    try {
      const lease = this.#queue.renewLease(running.job.id, this.owner, this.#leaseMs);
      if (!lease.held) this.#abort(running, 'lease-lost');
      else if (lease.cancelRequested) this.#abort(running, 'cancelled');
    } catch (error) {
      this.#log.warn('could not renew a job lease', { job: running.job.id, error: String(error) });
    }
  }

  async #execute(running: Running): Promise<void> {
    const { job, controller } = running;
    const handler = this.#handlers.get(job.kind)!;
    const timer = setInterval(() => this.#heartbeat(running), this.#heartbeatMs);
    const context: JobContext = {
      signal: controller.signal,
      reportProgress: (progress) => {
        if (!this.#queue.setProgress(job.id, this.owner, progress)) this.#abort(running, 'lease-lost');
      },
      heartbeat: () => this.#heartbeat(running),
    };
    let failure: unknown;
    let failed = false;
    const started = performance.now();
    try {
      await handler(job, context);
    } catch (error) {
      failed = true;
      failure = error;
    } finally {
      clearInterval(timer);
    }
    const outcome =
      running.cause === 'cancelled' ? 'cancelled' : running.cause !== undefined ? 'released' : failed ? 'failed' : 'completed';
    this.#onSettled?.(job.kind, outcome, (performance.now() - started) / 1000);
    try {
      this.#record(running, failed, failure);
    } catch (error) {
      // The lease will expire and the job run again: handlers are resumable.
      this.#log.warn('could not record a job outcome', { job: job.id, error: String(error) });
    }
  }

  #record(running: Running, failed: boolean, failure: unknown): void {
    const { job } = running;
    switch (running.cause) {
      case 'cancelled':
        this.#queue.finishCancelled(job.id, this.owner);
        return;
      case 'stopping':
        this.#queue.release(job.id, this.owner);
        return;
      case 'lease-lost':
        return; // another worker has it, or it went back to the queue
      case undefined:
        break;
    }
    if (!failed) {
      this.#queue.complete(job.id, this.owner);
      return;
    }
    const message = failure instanceof Error ? failure.message : String(failure);
    // `job.attempts` already counts this attempt (claims increment it).
    const delay = Math.min(this.#backoffMaxMs, this.#backoffBaseMs * 2 ** (job.attempts - 1));
    const retryAt = !(failure instanceof PermanentJobError) && job.attempts < job.maxAttempts ? new Date(Date.now() + delay) : undefined;
    this.#queue.fail(job.id, this.owner, message, retryAt);
    if (retryAt !== undefined) this.#log.warn('a job failed and will be retried', { job: job.id, kind: job.kind, error: message });
    else this.#log.warn('a job failed for good', { job: job.id, kind: job.kind, attempts: job.attempts, error: message });
  }
}
