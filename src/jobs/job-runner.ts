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
  /** Progress writes, chained so they land in order and before the outcome is recorded. */
  writes: Promise<void>;
  /** Set while a lease renewal is in flight, so slow renewals do not pile up. */
  renewing: boolean;
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
  /** The claim loop in flight (claims are async: one loop at a time keeps the concurrency bound). */
  #filling: Promise<void> | undefined;
  #fillAgain = false;
  #recovering = false;
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
    this.#timers = [setInterval(() => this.#fill(), this.#pollMs), setInterval(() => void this.#recover(), this.#recoverMs)];
    // Recover first so that jobs of dead workers are runnable by the first claims.
    void this.#recover().finally(() => this.#fill());
  }

  /** Aborts the running jobs, waits for their handlers to return, and leaves those jobs queued for the next start. */
  async stop(): Promise<void> {
    if (!this.#started) return;
    this.#started = false;
    for (const timer of this.#timers) clearInterval(timer);
    this.#timers = [];
    this.#unsubscribe?.();
    this.#unsubscribe = undefined;
    await this.#filling; // a claim in flight may still start a job, which is aborted below
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
  async #deadLocalOwners(): Promise<string[]> {
    const host = hostname();
    return (await this.#queue.runningOwners()).filter((owner) => {
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

  async #recover(): Promise<void> {
    if (this.#recovering) return;
    this.#recovering = true;
    try {
      const recovered = await this.#queue.recoverExpired(await this.#deadLocalOwners());
      if (recovered > 0) {
        this.#log.warn('jobs whose worker stopped renewing its lease went back to the queue', { count: recovered });
        this.#fill();
      }
    } catch (error) {
      this.#log.warn('could not recover expired jobs', { error: String(error) });
    } finally {
      this.#recovering = false;
    }
  }

  /** Claims jobs until the concurrency bound is reached or none is runnable; a call during a claim loop reruns it. */
  #fill(): void {
    if (this.#filling !== undefined) {
      this.#fillAgain = true;
      return;
    }
    this.#filling = this.#claimLoop().finally(() => (this.#filling = undefined));
  }

  async #claimLoop(): Promise<void> {
    const kinds = [...this.#handlers.keys()];
    do {
      this.#fillAgain = false;
      while (this.#started && this.#running.size < this.#concurrency && kinds.length > 0) {
        let job: Job | undefined;
        try {
          job = await this.#queue.claim(this.owner, kinds, this.#leaseMs);
        } catch (error) {
          this.#log.warn('could not claim a job', { error: String(error) });
          return;
        }
        if (job === undefined) break;
        this.#launch(job);
      }
    } while (this.#fillAgain && this.#started);
  }

  #launch(job: Job): void {
    const running: Running = { job, controller: new AbortController(), cause: undefined, writes: Promise.resolve(), renewing: false };
    this.#running.set(job.id, running);
    // Stopped while the claim was in flight: the job starts aborted and is given back at once.
    if (!this.#started) this.#abort(running, 'stopping');
    const settled = this.#execute(running).finally(() => {
      this.#running.delete(job.id);
      this.#settled.delete(settled);
      this.#fill();
    });
    this.#settled.add(settled);
  }

  async #heartbeat(running: Running): Promise<void> {
    if (running.renewing) return;
    running.renewing = true;
    try {
      const lease = await this.#queue.renewLease(running.job.id, this.owner, this.#leaseMs);
      if (!lease.held) this.#abort(running, 'lease-lost');
      else if (lease.cancelRequested) this.#abort(running, 'cancelled');
    } catch (error) {
      this.#log.warn('could not renew a job lease', { job: running.job.id, error: String(error) });
    } finally {
      running.renewing = false;
    }
  }

  async #execute(running: Running): Promise<void> {
    const { job, controller } = running;
    const handler = this.#handlers.get(job.kind)!;
    const timer = setInterval(() => void this.#heartbeat(running), this.#heartbeatMs);
    const context: JobContext = {
      signal: controller.signal,
      reportProgress: (progress) => {
        running.writes = running.writes.then(async () => {
          try {
            if (!(await this.#queue.setProgress(job.id, this.owner, progress))) this.#abort(running, 'lease-lost');
          } catch (error) {
            this.#log.warn('could not save job progress', { job: job.id, error: String(error) });
          }
        });
      },
      heartbeat: () => void this.#heartbeat(running),
    };
    let failure: unknown;
    let failed = false;
    const started = performance.now();
    try {
      if (controller.signal.aborted) throw controller.signal.reason;
      await handler(job, context);
    } catch (error) {
      failed = true;
      failure = error;
    } finally {
      clearInterval(timer);
      await running.writes;
    }
    const outcome =
      running.cause === 'cancelled' ? 'cancelled' : running.cause !== undefined ? 'released' : failed ? 'failed' : 'completed';
    this.#onSettled?.(job.kind, outcome, (performance.now() - started) / 1000);
    try {
      await this.#record(running, failed, failure);
    } catch (error) {
      // The lease will expire and the job run again: handlers are resumable.
      this.#log.warn('could not record a job outcome', { job: job.id, error: String(error) });
    }
  }

  async #record(running: Running, failed: boolean, failure: unknown): Promise<void> {
    const { job } = running;
    switch (running.cause) {
      case 'cancelled':
        await this.#queue.finishCancelled(job.id, this.owner);
        return;
      case 'stopping':
        await this.#queue.release(job.id, this.owner);
        return;
      case 'lease-lost':
        return; // another worker has it, or it went back to the queue
      case undefined:
        break;
    }
    if (!failed) {
      await this.#queue.complete(job.id, this.owner);
      return;
    }
    const message = failure instanceof Error ? failure.message : String(failure);
    // `job.attempts` already counts this attempt (claims increment it).
    const delay = Math.min(this.#backoffMaxMs, this.#backoffBaseMs * 2 ** (job.attempts - 1));
    const retryAt = !(failure instanceof PermanentJobError) && job.attempts < job.maxAttempts ? new Date(Date.now() + delay) : undefined;
    await this.#queue.fail(job.id, this.owner, message, retryAt);
    if (retryAt !== undefined) this.#log.warn('a job failed and will be retried', { job: job.id, kind: job.kind, error: message });
    else this.#log.warn('a job failed for good', { job: job.id, kind: job.kind, attempts: job.attempts, error: message });
  }
}
