import { randomBytes } from 'node:crypto';
import { Job as BullJob, Queue, UnrecoverableError, Worker, type JobState, type JobType } from 'bullmq';
import { Redis } from 'ioredis';
import { validationError } from '../spec/errors.ts';
import {
  checkEnqueue,
  newJobId,
  type EnqueueOptions,
  type Job,
  type JobEvent,
  type JobStatus,
  type JsonValue,
  type LeaseState,
  type ListJobsOptions,
  type WorkerQueue,
} from './job-queue.ts';

export interface BullmqJobQueueOptions {
  /** `redis://[user:password@]host:port[/db]` */
  url: string;
  /** Prefix of every Redis key the queue writes. @default ocular */
  prefix?: string | undefined;
  /**
   * Listing by status reads every id in that state and sorts them while there are at most this many; past it, it
   * walks the enqueue index newest first and stops once the page is full. @default 5000
   */
  listScanThreshold?: number | undefined;
}

type BullmqJob = BullJob<JsonValue, unknown, string>;

/** BullMQ states that mean "not started yet", and the states each of our statuses covers. */
const STATES_OF: Record<Exclude<JobStatus, 'cancelled'>, JobType[]> = {
  queued: ['wait', 'prioritized', 'delayed'],
  running: ['active'],
  succeeded: ['completed'],
  failed: ['failed'],
};

function statusOf(state: JobState | 'unknown', cancelRequested: boolean): JobStatus | undefined {
  switch (state) {
    case 'waiting':
    case 'prioritized':
    case 'delayed':
    case 'waiting-children':
      return 'queued';
    case 'active':
      return 'running';
    case 'completed':
      return 'succeeded';
    case 'failed':
      return cancelRequested ? 'cancelled' : 'failed';
    default:
      return undefined;
  }
}

/** Kinds become BullMQ queue names, which end up inside Redis keys: `:` would break them. */
const KIND_PATTERN = /^[\w.-]+$/;

/** Extends the lease when `owner` still holds it; tells whether a cancellation was asked. */
const RENEW_SCRIPT = `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  redis.call('SREM', KEYS[2], ARGV[3])
  return {1, redis.call('SISMEMBER', KEYS[3], ARGV[3])}
end
return {0, 0}`;

/**
 * Asks for a running job's cancellation only while it is still active: a job that finished (or failed) between
 * the caller's read and this call keeps its own outcome instead of being reported cancelled.
 */
const REQUEST_CANCEL_SCRIPT = `
if redis.call('LPOS', KEYS[1], ARGV[1]) then
  redis.call('SADD', KEYS[2], ARGV[1])
  return 1
end
return 0`;

const PROGRESS_SCRIPT = `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('HSET', KEYS[2], 'progress', ARGV[2])
  return 1
end
return 0`;

/**
 * Takes over the active jobs whose lock expired (their worker stopped renewing it) or whose lock holder is one of
 * the dead owners, by locking them under `ARGV[2]` so exactly one recoverer moves each of them on. BullMQ's own
 * stalled checker is not used: it needs two passes a stall interval apart and fails jobs by stall count, where
 * Ocular's rule is "back to the queue with attempts kept, failed when that was the last attempt, cancelled when
 * that was asked", decided at once.
 */
const TAKE_EXPIRED_SCRIPT = `
local dead = {}
for i = 4, #ARGV do dead[ARGV[i]] = true end
local taken = {}
for _, id in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  local lockKey = ARGV[1] .. id .. ':lock'
  local owner = redis.call('GET', lockKey)
  if (not owner) or dead[owner] then
    redis.call('SET', lockKey, ARGV[2], 'PX', ARGV[3])
    table.insert(taken, id)
  end
end
return taken`;

const RECOVERY_LOCK_MS = 30_000;
const DEFAULT_LIST_SCAN_THRESHOLD = 5_000;
/** Ids of the enqueue index read per step when a listing walks it. */
const INDEX_PAGE = 500;
const KIND_CACHE_SIZE = 10_000;
const CONNECT_WAIT_MS = 2_000;
const CLAIM_TIMEOUT_MS = 10_000;

/**
 * The job queue on Redis, through BullMQ, for API processes and workers on several machines.
 *
 * One BullMQ queue per job kind (the kind is the queue name): a worker asks only for the kinds it has handlers
 * for, and BullMQ hands out jobs queue by queue, so with one shared queue a worker would pull jobs it cannot run.
 * Leases are BullMQ job locks (the lock value is the lease owner), retries go through BullMQ's delayed set with
 * the runner's backoff, idempotency keys are BullMQ deduplication ids (kept while the job is queued or running;
 * scoped to the kind, and every key Ocular uses names its kind anyway).
 *
 * Beside BullMQ's keys, under `<prefix>:@ocular:`: the index of all jobs in enqueue order (for listing newest
 * first), each job's kind, the jobs whose cancellation was asked, and cancelled jobs, which leave BullMQ (a
 * queued job is removed so nothing can run it) and are kept as a record.
 */
export class BullmqJobQueue implements WorkerQueue {
  readonly #prefix: string;
  /** Commands and queues; fails commands while Redis is unreachable instead of holding them. */
  readonly #redis: Redis;
  /** Workers' connection: BullMQ requires one that retries forever. */
  readonly #workerRedis: Redis;
  readonly #queues = new Map<string, Queue<JsonValue, unknown, string>>();
  readonly #workers = new Map<string, Worker<JsonValue, unknown, string>>();
  readonly #kindOf = new Map<string, string>();
  readonly #listeners = new Set<(event: JobEvent) => void>();
  #claimCursor = 0;
  readonly #listScanThreshold: number;

  constructor(options: BullmqJobQueueOptions) {
    this.#prefix = options.prefix ?? 'ocular';
    this.#listScanThreshold = options.listScanThreshold ?? DEFAULT_LIST_SCAN_THRESHOLD;
    this.#redis = new Redis(options.url, { maxRetriesPerRequest: 3 });
    this.#workerRedis = new Redis(options.url, { maxRetriesPerRequest: null });
    // Errors reach callers through rejected commands; without a listener ioredis would also log each reconnect.
    this.#redis.on('error', () => {});
    this.#workerRedis.on('error', () => {});
  }

  #key(name: string): string {
    return `${this.#prefix}:@ocular:${name}`;
  }

  #queue(kind: string): Queue<JsonValue, unknown, string> {
    let queue = this.#queues.get(kind);
    if (queue === undefined) {
      queue = new Queue(kind, { connection: this.#redis, prefix: this.#prefix });
      queue.on('error', () => {});
      this.#queues.set(kind, queue);
    }
    return queue;
  }

  #worker(kind: string, leaseMs: number): Worker<JsonValue, unknown, string> {
    const name = `${kind}\n${leaseMs}`;
    let worker = this.#workers.get(name);
    if (worker === undefined) {
      // No processor and no run loop: JobRunner claims with getNextJob and renews leases itself.
      worker = new Worker(kind, null, {
        connection: this.#workerRedis,
        prefix: this.#prefix,
        autorun: false,
        lockDuration: leaseMs,
        skipLockRenewal: true,
        skipStalledCheck: true,
      });
      worker.on('error', () => {});
      this.#workers.set(name, worker);
    }
    return worker;
  }

  /** `<prefix>:<kind>:<id>`, BullMQ's hash of a job. */
  #jobKey(kind: string, id: string): string {
    return `${this.#prefix}:${kind}:${id}`;
  }

  async #kinds(): Promise<string[]> {
    return this.#redis.smembers(this.#key('kinds'));
  }

  async #kindOfJob(id: string): Promise<string | undefined> {
    const cached = this.#kindOf.get(id);
    if (cached !== undefined) return cached;
    const kind = await this.#redis.hget(this.#key('job-kind'), id);
    if (kind === null) return undefined;
    this.#rememberKind(id, kind);
    return kind;
  }

  /** A cache of job kinds, for the lease calls of running jobs; bounded, as a server enqueues without end. */
  #rememberKind(id: string, kind: string): void {
    if (this.#kindOf.size >= KIND_CACHE_SIZE) this.#kindOf.delete(this.#kindOf.keys().next().value!);
    this.#kindOf.set(id, kind);
  }

  async enqueue(kind: string, payload: JsonValue, options: EnqueueOptions = {}): Promise<Job> {
    const { maxAttempts, now, runAt, key } = checkEnqueue(kind, payload, options);
    if (!KIND_PATTERN.test(kind)) throw validationError('a job kind is letters, digits and . _ - only', 'kind');
    const id = newJobId();
    // The kind first: a worker may claim the job the moment BullMQ has it, and recovery looks at known kinds only.
    await this.#redis.multi().sadd(this.#key('kinds'), kind).hset(this.#key('job-kind'), id, kind).exec();
    const added = await this.#queue(kind).add(kind, payload, {
      jobId: id,
      attempts: maxAttempts,
      delay: Math.max(0, runAt - now),
      ...(key === null ? {} : { deduplication: { id: key } }),
    });
    if (added.id !== id) {
      // A live job has this key: BullMQ added nothing and named that job.
      await this.#redis.hdel(this.#key('job-kind'), id);
      const live = added.id === undefined ? undefined : await this.get(added.id);
      if (live !== undefined) return live;
      throw new Error(`job ${added.id ?? '?'} holds idempotency key ${key ?? ''} but could not be read`);
    }
    const seq = await this.#redis.incr(this.#key('seq'));
    await this.#redis
      .multi()
      .zadd(this.#key('index'), seq, id)
      .zadd(this.#key(`index:${kind}`), seq, id)
      .exec();
    // As added, not as read back: a worker may have claimed it already, and the caller enqueued a queued job.
    const job = await this.#toJob(added, added.delay > 0 ? 'delayed' : 'waiting');
    if (job === undefined) throw new Error(`job ${id} could not be read as it was enqueued`);
    this.#emit({ type: 'enqueued', job });
    return job;
  }

  async get(id: string): Promise<Job | undefined> {
    const record = await this.#redis.hget(this.#key('cancelled'), id);
    if (record !== null) return parseRecord(record);
    const kind = await this.#kindOfJob(id);
    if (kind === undefined) return undefined;
    // The state before the job's fields: a job seen queued again after a failed attempt is then read with that
    // attempt's error (BullMQ writes the error in the same step that moves the job on).
    const queue = this.#queue(kind);
    const state = await queue.getJobState(id);
    const job = (await BullJob.fromId(queue, id)) as BullmqJob | undefined;
    if (job === undefined) {
      // Cancelled (and removed from BullMQ) between the two reads.
      const late = await this.#redis.hget(this.#key('cancelled'), id);
      return late === null ? undefined : parseRecord(late);
    }
    return this.#toJob(job, state);
  }

  async #toJob(job: BullmqJob, state: JobState | 'unknown'): Promise<Job | undefined> {
    const id = job.id!;
    const [cancelRequested, delayedScore] = await Promise.all([
      state === 'failed' ? this.#redis.sismember(this.#key('cancel'), id) : Promise.resolve(0),
      state === 'delayed' ? this.#redis.zscore(`${this.#prefix}:${job.queueName}:delayed`, id) : Promise.resolve(null),
    ]);
    const status = statusOf(state, cancelRequested === 1);
    if (status === undefined) return undefined;
    // BullMQ's delayed score is `timestamp * 0x1000 + a counter`.
    const runAt = delayedScore === null ? job.timestamp + (job.opts.delay ?? 0) : Math.floor(Number(delayedScore) / 0x1000);
    const updatedAt = Math.max(job.timestamp, job.processedOn ?? 0, job.finishedOn ?? 0);
    return {
      id,
      kind: job.queueName,
      key: job.opts.deduplication?.id ?? null,
      payload: job.data,
      status,
      attempts: job.attemptsStarted,
      maxAttempts: job.opts.attempts ?? 1,
      progress: status === 'succeeded' ? 1 : typeof job.progress === 'number' ? job.progress : 0,
      ...(status !== 'succeeded' && job.failedReason ? { error: job.failedReason } : {}),
      runAt: new Date(runAt),
      createdAt: new Date(job.timestamp),
      updatedAt: new Date(updatedAt),
    };
  }

  async cancel(id: string): Promise<Job | undefined> {
    const current = await this.get(id);
    if (current === undefined) return undefined;
    if (current.status === 'queued') {
      const job = (await BullJob.fromId(this.#queue(current.kind), id)) as BullmqJob | undefined;
      try {
        // BullMQ refuses to remove a locked (running) job: then it is cancelled as a running one below.
        await job?.remove();
        return await this.#recordCancelled({ ...current, status: 'cancelled', updatedAt: new Date() });
      } catch {
        // a worker took it meanwhile
      }
    }
    const now = await this.get(id);
    if (now?.status !== 'running') return now;
    const requested = await this.#redis.eval(REQUEST_CANCEL_SCRIPT, 2, `${this.#prefix}:${now.kind}:active`, this.#key('cancel'), id);
    if (requested === 1) {
      this.#emit({ type: 'cancel-requested', id });
      return now;
    }
    // It ended (or went back to the queue) meanwhile: answer as it is now.
    return this.get(id);
  }

  async #recordCancelled(job: Job): Promise<Job> {
    await this.#redis
      .multi()
      .hset(this.#key('cancelled'), job.id, JSON.stringify(job))
      .zadd(this.#key(`cancelled:${job.kind}`), job.createdAt.getTime(), job.id)
      .srem(this.#key('cancel'), job.id)
      .exec();
    return job;
  }

  async list(options: ListJobsOptions): Promise<Job[]> {
    const { kind, status, limit, offset } = options;
    if (limit <= 0) return [];
    let ids: string[];
    if (status === undefined) {
      ids = await this.#redis.zrevrange(this.#key(kind === undefined ? 'index' : `index:${kind}`), offset, offset + limit - 1);
    } else if ((await this.#countInState(kind === undefined ? await this.#kinds() : [kind], status)) > this.#listScanThreshold) {
      ids = await this.#walkIndex(kind, status, limit, offset);
    } else {
      const kinds = kind === undefined ? await this.#kinds() : [kind];
      let candidates: string[] = [];
      if (status === 'cancelled') {
        for (const each of kinds) candidates.push(...(await this.#redis.zrange(this.#key(`cancelled:${each}`), '0', '-1')));
      } else {
        for (const each of kinds) candidates.push(...(await this.#queue(each).getRanges(STATES_OF[status], 0, -1)));
        if (status === 'failed' && candidates.length > 0) {
          const cancelled = await this.#redis.smismember(this.#key('cancel'), candidates);
          candidates = candidates.filter((_, index) => cancelled[index] !== 1);
        }
      }
      if (candidates.length === 0) return [];
      // Newest first by enqueue order: the index's sequence numbers.
      const scores = await this.#redis.zmscore(this.#key('index'), ...candidates);
      ids = candidates
        .map((id, index) => ({ id, seq: Number(scores[index] ?? 0) }))
        .sort((a, b) => b.seq - a.seq)
        .slice(offset, offset + limit)
        .map((entry) => entry.id);
    }
    const jobs = await Promise.all(ids.map((id) => this.get(id)));
    return jobs.filter((job): job is Job => job !== undefined && (status === undefined || job.status === status));
  }

  /** How many jobs of `kinds` BullMQ (or the cancelled records) hold in the states of `status`. */
  async #countInState(kinds: readonly string[], status: JobStatus): Promise<number> {
    let total = 0;
    for (const kind of kinds) {
      total +=
        status === 'cancelled'
          ? await this.#redis.zcard(this.#key(`cancelled:${kind}`))
          : await this.#queue(kind).getJobCountByTypes(...STATES_OF[status]);
    }
    return total;
  }

  /**
   * Page `offset, limit` of the jobs in `status`, newest first: the enqueue index read a page at a time, each id's
   * status checked, until the page is full or the index ends. Bounded by the page for a common status.
   */
  async #walkIndex(kind: string | undefined, status: JobStatus, limit: number, offset: number): Promise<string[]> {
    const index = this.#key(kind === undefined ? 'index' : `index:${kind}`);
    const found: string[] = [];
    let skip = offset;
    for (let start = 0; found.length < limit; start += INDEX_PAGE) {
      const page = await this.#redis.zrevrange(index, start, start + INDEX_PAGE - 1);
      if (page.length === 0) break;
      const statuses = await Promise.all(page.map((id) => this.#statusOf(id)));
      for (const [position, id] of page.entries()) {
        if (statuses[position] !== status) continue;
        if (skip > 0) skip -= 1;
        else if (found.length < limit) found.push(id);
      }
    }
    return found;
  }

  /** A job's status alone, without reading its fields. */
  async #statusOf(id: string): Promise<JobStatus | undefined> {
    if ((await this.#redis.hexists(this.#key('cancelled'), id)) === 1) return 'cancelled';
    const kind = await this.#kindOfJob(id);
    if (kind === undefined) return undefined;
    const state = await this.#queue(kind).getJobState(id);
    return statusOf(state, state === 'failed' && (await this.#redis.sismember(this.#key('cancel'), id)) === 1);
  }

  async counts(): Promise<Array<{ kind: string; status: JobStatus; count: number }>> {
    const counts: Array<{ kind: string; status: JobStatus; count: number }> = [];
    for (const kind of await this.#kinds()) {
      const bull = await this.#queue(kind).getJobCounts('wait', 'prioritized', 'delayed', 'active', 'completed', 'failed');
      const cancelled = await this.#redis.zcard(this.#key(`cancelled:${kind}`));
      const byStatus: Record<JobStatus, number> = {
        queued: (bull.wait ?? 0) + (bull.prioritized ?? 0) + (bull.delayed ?? 0),
        running: bull.active ?? 0,
        succeeded: bull.completed ?? 0,
        failed: bull.failed ?? 0,
        cancelled,
      };
      for (const [status, count] of Object.entries(byStatus) as Array<[JobStatus, number]>) {
        if (count > 0) counts.push({ kind, status, count });
      }
    }
    return counts;
  }

  async claim(owner: string, kinds: readonly string[], leaseMs: number): Promise<Job | undefined> {
    // BullMQ hands out jobs queue by queue: starting from the next kind each time keeps one kind from starving others.
    const start = this.#claimCursor++ % Math.max(1, kinds.length);
    const order = [...kinds.slice(start), ...kinds.slice(0, start)];
    for (const kind of order) {
      if (!KIND_PATTERN.test(kind)) continue;
      const worker = this.#worker(kind, leaseMs);
      for (;;) {
        const job = await this.#nextJob(worker, owner);
        if (job === undefined) break;
        this.#rememberKind(job.id!, kind);
        // Cancelled while it was being given back to the queue: it ends here instead of running.
        if ((await this.#redis.sismember(this.#key('cancel'), job.id!)) === 1) {
          await this.#endCancelled(job, owner, undefined);
          continue;
        }
        return this.#toJob(job, 'active');
      }
    }
    return undefined;
  }

  /**
   * BullMQ's worker connection retries a command forever (it must, for blocking reads), so a claim sent while Redis
   * is away would hold up `JobRunner.stop()`: claims are refused unless the connection is up, and bounded in time.
   * A claim that times out but lands later leaves a locked job nobody runs; its lease expires and recovery takes it.
   */
  async #nextJob(worker: Worker<JsonValue, unknown, string>, owner: string): Promise<BullmqJob | undefined> {
    if (this.#workerRedis.status !== 'ready') {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => {
          this.#workerRedis.off('ready', onReady);
          reject(new Error(`Redis is not reachable (connection ${this.#workerRedis.status})`));
        }, CONNECT_WAIT_MS);
        const onReady = (): void => {
          clearTimeout(timer);
          resolve();
        };
        this.#workerRedis.once('ready', onReady);
      });
    }
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`Redis did not answer a claim within ${CLAIM_TIMEOUT_MS} ms`)), CLAIM_TIMEOUT_MS);
    });
    try {
      return (await Promise.race([worker.getNextJob(owner, { block: false }), timeout])) as BullmqJob | undefined;
    } finally {
      clearTimeout(timer);
    }
  }

  async renewLease(id: string, owner: string, leaseMs: number): Promise<LeaseState> {
    const kind = await this.#kindOfJob(id);
    if (kind === undefined) return { held: false, cancelRequested: false };
    const [held, cancelRequested] = (await this.#redis.eval(
      RENEW_SCRIPT,
      3,
      `${this.#jobKey(kind, id)}:lock`,
      `${this.#prefix}:${kind}:stalled`,
      this.#key('cancel'),
      owner,
      String(leaseMs),
      id,
    )) as [number, number];
    return { held: held === 1, cancelRequested: cancelRequested === 1 };
  }

  async setProgress(id: string, owner: string, progress: number): Promise<boolean> {
    const kind = await this.#kindOfJob(id);
    if (kind === undefined) return false;
    const clamped = Number.isFinite(progress) ? Math.min(1, Math.max(0, progress)) : 0;
    const key = this.#jobKey(kind, id);
    return (await this.#redis.eval(PROGRESS_SCRIPT, 2, `${key}:lock`, key, owner, JSON.stringify(clamped))) === 1;
  }

  /** The job as its lease holder sees it; undefined when it is gone. */
  async #held(id: string): Promise<BullmqJob | undefined> {
    const kind = await this.#kindOfJob(id);
    if (kind === undefined) return undefined;
    return (await BullJob.fromId(this.#queue(kind), id)) as BullmqJob | undefined;
  }

  async complete(id: string, owner: string): Promise<boolean> {
    const job = await this.#held(id);
    if (job === undefined) return false;
    const completed = await settledUnlessLockLost(job.moveToCompleted(null, owner, false));
    // A cancellation asked too late to stop it is moot now.
    if (completed) await this.#redis.srem(this.#key('cancel'), id);
    return completed;
  }

  async fail(id: string, owner: string, message: string, retryAt: Date | undefined): Promise<boolean> {
    const job = await this.#held(id);
    if (job === undefined) return false;
    if ((await this.#redis.sismember(this.#key('cancel'), id)) === 1) return this.#endCancelled(job, owner, message);
    if (retryAt === undefined) return settledUnlessLockLost(job.moveToFailed(new UnrecoverableError(message), owner, false));
    // The runner chose the wait; BullMQ retries (delayed set, attempts counted) while `attempts` allows.
    job.opts.backoff = { type: 'fixed', delay: Math.max(1, retryAt.getTime() - Date.now()) };
    return settledUnlessLockLost(job.moveToFailed(new Error(message), owner, false));
  }

  async finishCancelled(id: string, owner: string): Promise<boolean> {
    const job = await this.#held(id);
    return job === undefined ? false : this.#endCancelled(job, owner, undefined);
  }

  /** Fails the job under `token`'s lock without a retry, then keeps it as a cancelled record outside BullMQ. */
  async #endCancelled(job: BullmqJob, token: string, message: string | undefined): Promise<boolean> {
    const previousError = job.failedReason;
    if (!(await settledUnlessLockLost(job.moveToFailed(new UnrecoverableError(message ?? 'cancelled'), token, false)))) return false;
    const ended = await this.#toJob(job, 'failed');
    if (ended !== undefined) {
      const error = message ?? (previousError || undefined);
      const { error: _error, ...rest } = ended;
      await this.#recordCancelled({ ...rest, ...(error === undefined ? {} : { error }), status: 'cancelled', updatedAt: new Date() });
    }
    await job.remove().catch(() => {});
    return true;
  }

  async release(id: string, owner: string): Promise<boolean> {
    const job = await this.#held(id);
    if (job === undefined) return false;
    if ((await this.#redis.sismember(this.#key('cancel'), id)) === 1) return this.#endCancelled(job, owner, undefined);
    return this.#giveBack(job, owner);
  }

  /** Back to waiting with the attempt given back: `ats` is BullMQ's count of attempts started. */
  async #giveBack(job: BullmqJob, token: string): Promise<boolean> {
    if (!(await settledUnlessLockLost(job.moveToWait(token)))) return false;
    await this.#redis.hincrby(this.#jobKey(job.queueName, job.id!), 'ats', -1);
    return true;
  }

  async recoverExpired(deadOwners: readonly string[] = []): Promise<number> {
    let changed = 0;
    for (const kind of await this.#kinds()) {
      const token = `recovery:${randomBytes(8).toString('hex')}`;
      const taken = (await this.#redis.eval(
        TAKE_EXPIRED_SCRIPT,
        1,
        `${this.#prefix}:${kind}:active`,
        `${this.#prefix}:${kind}:`,
        token,
        String(RECOVERY_LOCK_MS),
        ...deadOwners,
      )) as string[];
      for (const id of taken) {
        const job = (await BullJob.fromId(this.#queue(kind), id)) as BullmqJob | undefined;
        if (job === undefined) continue;
        let moved: boolean;
        if ((await this.#redis.sismember(this.#key('cancel'), id)) === 1) {
          moved = await this.#endCancelled(job, token, undefined);
        } else if (job.attemptsStarted >= (job.opts.attempts ?? 1)) {
          const error = new UnrecoverableError('the worker running it stopped (lease expired) on its last attempt');
          moved = await settledUnlessLockLost(job.moveToFailed(error, token, false));
        } else {
          // Attempts kept: the run that died counts (unlike a release).
          moved = await settledUnlessLockLost(job.moveToWait(token));
        }
        if (moved) changed += 1;
      }
    }
    return changed;
  }

  async runningOwners(): Promise<string[]> {
    const owners = new Set<string>();
    for (const kind of await this.#kinds()) {
      const active = await this.#redis.lrange(`${this.#prefix}:${kind}:active`, 0, -1);
      if (active.length === 0) continue;
      const locks = await this.#redis.mget(...active.map((id) => `${this.#jobKey(kind, id)}:lock`));
      for (const lock of locks) if (lock !== null && !lock.startsWith('recovery:')) owners.add(lock);
    }
    return [...owners];
  }

  async ping(): Promise<void> {
    await this.#redis.ping();
  }

  async close(): Promise<void> {
    await Promise.all([...this.#workers.values()].map((worker) => worker.close(true)));
    await Promise.all([...this.#queues.values()].map((queue) => queue.close()));
    this.#workers.clear();
    this.#queues.clear();
    await Promise.all([this.#redis.quit().catch(() => {}), this.#workerRedis.quit().catch(() => {})]);
  }

  subscribe(listener: (event: JobEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #emit(event: JobEvent): void {
    for (const listener of this.#listeners) listener(event);
  }
}

/** A cancelled job's record, written by `#recordCancelled` from a `Job`: our own key, not external input. */
function parseRecord(record: string): Job {
  const raw = JSON.parse(record) as Omit<Job, 'runAt' | 'createdAt' | 'updatedAt'> & {
    runAt: string;
    createdAt: string;
    updatedAt: string;
  };
  return { ...raw, runAt: new Date(raw.runAt), createdAt: new Date(raw.createdAt), updatedAt: new Date(raw.updatedAt) };
}

/**
 * Resolves true once BullMQ moved the job, false when it refused because the caller no longer holds the job's
 * lock (it expired and went to another worker) or the job is gone; other errors (Redis down) propagate.
 */
async function settledUnlessLockLost(move: Promise<unknown>): Promise<boolean> {
  try {
    await move;
    return true;
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    if (/lock|Missing key|not in the active state|does not exist/i.test(message)) return false;
    throw error;
  }
}
