import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { BullmqJobQueue } from '../../src/jobs/bullmq-queue.ts';
import { SqlJobQueue, type Job, type JobStatus, type WorkerQueue } from '../../src/jobs/job-queue.ts';
import { JobRunner, PermanentJobError, type JobRunnerOptions } from '../../src/jobs/job-runner.ts';
import { openDatabase, type Db } from '../../src/store/database.ts';
import { createTestDatabase } from '../helpers/databases.ts';
import { deleteKeys, TEST_REDIS_URL as REDIS_URL, testKeyPrefix } from '../helpers/redis.ts';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'ocular-jobs-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * One queue implementation under test. `open` gives a queue, with `db` (where the crash test records its steps)
 * and `connect()`, another handle on the same queue as a second process would have it (no in-process events).
 */
interface Backend {
  name: string;
  open(): Promise<{ db: Db; queue: WorkerQueue; dataDir: string; connect(): Promise<WorkerQueue>; crashArgs: string[] }>;
}

const backends: Backend[] = [
  ...(['sqlite', 'postgres'] as const).map((dialect): Backend => ({
    name: `SqlJobQueue on ${dialect}`,
    async open() {
      const target = await createTestDatabase(dialect, tempDir());
      cleanups.push(() => target.drop());
      const connect = async (): Promise<SqlJobQueue> => new SqlJobQueue(await target.open());
      // Where the crash test records its steps (each process opens the file itself).
      const db = openDatabase(target.dataDir);
      cleanups.push(() => db.close());
      const crashArgs = dialect === 'postgres' ? ['postgres', target.storage.url!] : ['sqlite'];
      return { db, queue: await connect(), dataDir: target.dataDir, connect, crashArgs };
    },
  })),
  {
    name: 'BullmqJobQueue',
    async open() {
      const dataDir = tempDir();
      const prefix = testKeyPrefix();
      cleanups.push(() => deleteKeys(prefix));
      const connect = async (): Promise<BullmqJobQueue> => {
        const queue = new BullmqJobQueue({ url: REDIS_URL, prefix });
        cleanups.push(() => queue.close());
        return queue;
      };
      const db = openDatabase(dataDir);
      cleanups.push(() => db.close());
      return { db, queue: await connect(), dataDir, connect, crashArgs: ['redis', REDIS_URL, prefix] };
    },
  },
];

/** Runner warnings (failed attempts, recoveries) are expected here; the assertions look at job state instead. */
const quietLog = { warn: (): void => {} };
function startRunner(options: Omit<JobRunnerOptions, 'log'>, handlers: Record<string, Parameters<JobRunner['handle']>[1]>): JobRunner {
  const runner = new JobRunner({
    pollMs: 20,
    backoffBaseMs: 10,
    leaseMs: 2000,
    log: quietLog,
    ...options,
  });
  for (const [kind, handler] of Object.entries(handlers)) runner.handle(kind, handler);
  runner.start();
  cleanups.push(() => runner.stop());
  return runner;
}

/** Polls until `check` returns a value other than undefined/false; throws after `timeoutMs`. */
async function waitFor<T>(
  what: string | (() => Promise<string>),
  check: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs = 5000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${typeof what === 'string' ? what : await what()}`);
    await sleep(10);
  }
}

const statusOf = async (queue: WorkerQueue, id: string): Promise<JobStatus | undefined> => (await queue.get(id))?.status;
const waitForStatus = (queue: WorkerQueue, id: string, status: JobStatus, timeoutMs?: number): Promise<Job> =>
  waitFor(
    async () => `job ${id} to be ${status} (it is ${await statusOf(queue, id)})`,
    async () => {
      const job = await queue.get(id);
      return job?.status === status && job;
    },
    timeoutMs,
  );

/** A promise with its resolve function, to hold handlers at a point. */
function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
}

const sortCounts = (counts: Array<{ kind: string; status: JobStatus; count: number }>) =>
  [...counts].sort((a, b) => a.kind.localeCompare(b.kind) || a.status.localeCompare(b.status));

const untilAborted = (signal: AbortSignal): Promise<never> =>
  new Promise((_, reject) => {
    if (signal.aborted) reject(signal.reason);
    signal.addEventListener('abort', () => reject(signal.reason), { once: true });
  });

describe.each(backends)('$name', ({ open: openQueue }) => {
  it('enqueues, gets and lists jobs; claims the oldest runnable job of the given kinds only', async () => {
    const { queue } = await openQueue();
    const first = await queue.enqueue('index-video', { videoId: 'v1', options: [1, 2] });
    expect(first).toMatchObject({ kind: 'index-video', key: null, status: 'queued', attempts: 0, maxAttempts: 3, progress: 0 });
    expect(first.error).toBeUndefined();
    const later = await queue.enqueue('index-video', { videoId: 'v2' }, { runAt: new Date(Date.now() + 60_000) });
    const other = await queue.enqueue('thumbnail', 'x', { maxAttempts: 1 });
    expect(await queue.get(first.id)).toEqual(first);
    expect(await queue.get('job_missing')).toBeUndefined();

    const ids = async (options: Parameters<WorkerQueue['list']>[0]): Promise<string[]> => (await queue.list(options)).map((job) => job.id);
    expect(await ids({ limit: 10, offset: 0 })).toEqual([other.id, later.id, first.id]);
    expect(await ids({ kind: 'index-video', limit: 10, offset: 0 })).toEqual([later.id, first.id]);
    expect(await ids({ kind: 'index-video', limit: 1, offset: 1 })).toEqual([first.id]);
    expect(await ids({ status: 'queued', limit: 10, offset: 0 })).toEqual([other.id, later.id, first.id]);
    expect(await ids({ status: 'queued', limit: 1, offset: 1 })).toEqual([later.id]);
    expect(sortCounts(await queue.counts())).toEqual([
      { kind: 'index-video', status: 'queued', count: 2 },
      { kind: 'thumbnail', status: 'queued', count: 1 },
    ]);

    const claimed = await queue.claim('worker-a', ['index-video'], 1000);
    expect(claimed).toMatchObject({ id: first.id, status: 'running', attempts: 1, payload: { videoId: 'v1', options: [1, 2] } });
    // `later` is not due yet and `thumbnail` is not a kind asked for.
    expect(await queue.claim('worker-a', ['index-video'], 1000)).toBeUndefined();
    expect(await ids({ status: 'running', limit: 10, offset: 0 })).toEqual([first.id]);
    expect(await queue.complete(first.id, 'worker-b')).toBe(false); // not the lease holder
    expect(await queue.complete(first.id, 'worker-a')).toBe(true);
    expect(await queue.get(first.id)).toMatchObject({ status: 'succeeded', progress: 1 });
    expect(await ids({ status: 'succeeded', limit: 10, offset: 0 })).toEqual([first.id]);
    expect(await ids({ kind: 'thumbnail', status: 'succeeded', limit: 10, offset: 0 })).toEqual([]);
    expect(sortCounts(await queue.counts())).toEqual([
      { kind: 'index-video', status: 'queued', count: 1 },
      { kind: 'index-video', status: 'succeeded', count: 1 },
      { kind: 'thumbnail', status: 'queued', count: 1 },
    ]);
    await queue.ping();
  });

  it('rejects what is not a job', async () => {
    const { queue } = await openQueue();
    await expect(queue.enqueue('', {})).rejects.toThrow(expect.objectContaining({ type: 'validation_error', param: 'kind' }));
    await expect(queue.enqueue('k', {}, { maxAttempts: 0 })).rejects.toThrow(expect.objectContaining({ type: 'validation_error' }));
    await expect(queue.enqueue('k', undefined as never)).rejects.toThrow(
      expect.objectContaining({ type: 'validation_error', param: 'payload' }),
    );
  });

  it('keeps one live job per idempotency key', async () => {
    const { queue } = await openQueue();
    const first = await queue.enqueue('index-video', { videoId: 'v1' }, { key: 'video:v1' });
    expect(first.key).toBe('video:v1');
    const again = await queue.enqueue('index-video', { videoId: 'v1', retry: true }, { key: 'video:v1' });
    expect(again.id).toBe(first.id);
    expect(again.payload).toEqual({ videoId: 'v1' });
    expect((await queue.enqueue('index-video', { videoId: 'v2' }, { key: 'video:v2' })).id).not.toBe(first.id);
    expect(await queue.list({ limit: 10, offset: 0 })).toHaveLength(2);

    // Still live while running; once finished, the key is free again.
    await queue.claim('worker', ['index-video'], 1000);
    expect((await queue.enqueue('index-video', {}, { key: 'video:v1' })).id).toBe(first.id);
    await queue.complete(first.id, 'worker');
    const fresh = await queue.enqueue('index-video', { videoId: 'v1' }, { key: 'video:v1' });
    expect(fresh.id).not.toBe(first.id);
    expect(fresh.status).toBe('queued');
    // A cancelled job frees its key as well.
    expect((await queue.cancel(fresh.id))?.status).toBe('cancelled');
    expect((await queue.enqueue('index-video', {}, { key: 'video:v1' })).id).not.toBe(fresh.id);
    expect(await queue.list({ status: 'cancelled', limit: 10, offset: 0 })).toMatchObject([{ id: fresh.id, status: 'cancelled' }]);
  });
});

describe.each(backends)('JobRunner on $name', ({ open: openQueue }) => {
  it('runs a job to success with its payload', async () => {
    const { queue } = await openQueue();
    const seen: unknown[] = [];
    startRunner({ queue }, { echo: async (job) => void seen.push(job.payload) });
    const job = await queue.enqueue('echo', { hello: 'world' });
    const done = await waitForStatus(queue, job.id, 'succeeded');
    expect(seen).toEqual([{ hello: 'world' }]);
    expect(done).toMatchObject({ attempts: 1, progress: 1 });
  });

  it('wakes up on an enqueue in the same process without waiting for the poll', async () => {
    const { queue } = await openQueue();
    startRunner({ queue, pollMs: 60_000 }, { echo: async () => {} });
    const job = await queue.enqueue('echo', null);
    await waitForStatus(queue, job.id, 'succeeded', 1000);
  });

  it('retries a failing job with exponential backoff, then fails it with the last error', async () => {
    const { queue } = await openQueue();
    const calls: number[] = [];
    startRunner(
      { queue, backoffBaseMs: 40 },
      {
        flaky: async (job) => {
          calls.push(Date.now());
          throw new Error(`boom ${job.attempts}`);
        },
      },
    );
    const job = await queue.enqueue('flaky', {}, { maxAttempts: 3 });
    const afterFirst = await waitFor('the first failure', async () => {
      const current = (await queue.get(job.id))!;
      return current.status === 'queued' && current.attempts === 1 && current;
    });
    expect(afterFirst.error).toBe('boom 1');
    expect(afterFirst.runAt.getTime()).toBeGreaterThan(afterFirst.updatedAt.getTime());

    const failed = await waitForStatus(queue, job.id, 'failed');
    expect(failed).toMatchObject({ attempts: 3, error: 'boom 3' });
    expect(calls).toHaveLength(3);
    // Backoff 40 ms then 80 ms (timers may fire a millisecond early).
    expect(calls[1]! - calls[0]!).toBeGreaterThanOrEqual(38);
    expect(calls[2]! - calls[1]!).toBeGreaterThanOrEqual(78);
    await sleep(150);
    expect(calls).toHaveLength(3);
  });

  it('fails a job at once, attempts left or not, when its handler throws PermanentJobError', async () => {
    const { queue } = await openQueue();
    const job = await queue.enqueue('work', {}, { maxAttempts: 5 });
    let runs = 0;
    startRunner(
      { queue },
      {
        work: async () => {
          runs += 1;
          throw new PermanentJobError('the input can never work');
        },
      },
    );
    const failed = await waitForStatus(queue, job.id, 'failed');
    expect(failed).toMatchObject({ attempts: 1, error: 'the input can never work' });
    await sleep(100);
    expect(runs).toBe(1);
  });

  it('cancels a queued job before it runs', async () => {
    const { queue } = await openQueue();
    let ran = 0;
    const job = await queue.enqueue('work', {}, { runAt: new Date(Date.now() + 200) });
    expect((await queue.cancel(job.id))?.status).toBe('cancelled');
    startRunner({ queue }, { work: async () => void ran++ });
    await sleep(300);
    expect(ran).toBe(0);
    expect(await statusOf(queue, job.id)).toBe('cancelled');
    expect(await queue.cancel('job_missing')).toBeUndefined();
  });

  it('cancels a running job through its signal', async () => {
    const { queue } = await openQueue();
    const started = gate();
    let reason: unknown;
    startRunner(
      { queue },
      {
        work: async (_job, { signal }) => {
          started.open();
          await untilAborted(signal).catch((error: unknown) => {
            reason = error;
            throw error;
          });
        },
      },
    );
    const job = await queue.enqueue('work', {});
    await started.promise;
    expect((await queue.cancel(job.id))?.status).toBe('running');
    const cancelled = await waitForStatus(queue, job.id, 'cancelled', 2000);
    expect(reason).toMatchObject({ name: 'AbortError' });
    expect(cancelled.attempts).toBe(1);
  });

  it('notices a cancellation made by another process at its next heartbeat', async () => {
    const { queue, connect } = await openQueue();
    const otherProcess = await connect(); // another connection: no in-process event reaches the runner
    const started = gate();
    startRunner(
      { queue, leaseMs: 300, heartbeatMs: 30 },
      {
        work: async (_job, { signal }) => {
          started.open();
          await untilAborted(signal);
        },
      },
    );
    const job = await queue.enqueue('work', {});
    await started.promise;
    expect((await otherProcess.cancel(job.id))?.status).toBe('running');
    await waitForStatus(otherProcess, job.id, 'cancelled', 2000);
  });

  it('runs at most `concurrency` jobs at once', async () => {
    const { queue } = await openQueue();
    const release = gate();
    let active = 0;
    let peak = 0;
    const runner = startRunner(
      { queue, concurrency: 2 },
      {
        work: async (_job, { signal }) => {
          active++;
          peak = Math.max(peak, active);
          await Promise.race([release.promise, untilAborted(signal)]).finally(() => active--);
        },
      },
    );
    const jobs = await Promise.all(Array.from({ length: 5 }, (_, index) => queue.enqueue('work', { index })));
    await waitFor('two jobs running', () => active === 2);
    await sleep(100); // room for a third claim, if the bound were broken
    expect(runner.activeCount).toBe(2);
    expect(await queue.list({ status: 'running', limit: 10, offset: 0 })).toHaveLength(2);
    release.open();
    for (const job of jobs) await waitForStatus(queue, job.id, 'succeeded');
    expect(peak).toBe(2);
  });

  it('saves reported progress while the job runs', async () => {
    const { queue } = await openQueue();
    const release = gate();
    startRunner(
      { queue },
      {
        work: async (_job, { signal, reportProgress }) => {
          reportProgress(0.25);
          reportProgress(0.5);
          await Promise.race([release.promise, untilAborted(signal)]);
        },
      },
    );
    const job = await queue.enqueue('work', {});
    await waitFor('progress 0.5', async () => (await queue.get(job.id))?.progress === 0.5);
    expect(await statusOf(queue, job.id)).toBe('running');
    release.open();
    expect((await waitForStatus(queue, job.id, 'succeeded')).progress).toBe(1);
  });

  it('stop() aborts running jobs and leaves them queued for the next start', async () => {
    const { queue } = await openQueue();
    const started = gate();
    let aborted = false;
    const runner = startRunner(
      { queue },
      {
        work: async (_job, { signal, reportProgress }) => {
          reportProgress(0.3);
          started.open();
          await untilAborted(signal).catch((error: unknown) => {
            aborted = true;
            throw error;
          });
        },
      },
    );
    const job = await queue.enqueue('work', {});
    await started.promise;
    await runner.stop();
    expect(aborted).toBe(true);
    // The interrupted attempt is given back: stopping is not failing.
    expect(await queue.get(job.id)).toMatchObject({ status: 'queued', attempts: 0, progress: 0.3 });
    expect((await queue.get(job.id))?.error).toBeUndefined();

    startRunner({ queue }, { work: async () => {} });
    expect((await waitForStatus(queue, job.id, 'succeeded')).attempts).toBe(1);
  });

  it('puts a job whose lease expired (its worker died) back in the queue, attempts kept', async () => {
    const { queue } = await openQueue();
    const job = await queue.enqueue('work', { n: 1 });
    expect((await queue.claim('dead-worker', ['work'], 50))?.id).toBe(job.id); // a worker that will never renew
    expect(await queue.recoverExpired()).toBe(0); // the lease still holds
    await sleep(80);
    const runs: number[] = [];
    startRunner({ queue }, { work: async (current) => void runs.push(current.attempts) });
    const done = await waitForStatus(queue, job.id, 'succeeded');
    expect(runs).toEqual([2]);
    expect(done.attempts).toBe(2);
    expect(await queue.complete(job.id, 'dead-worker')).toBe(false); // a late write from the dead worker is ignored
  });

  it('fails a job whose worker died on its last attempt instead of running it again', async () => {
    const { queue } = await openQueue();
    const job = await queue.enqueue('work', {}, { maxAttempts: 1 });
    await queue.claim('dead-worker', ['work'], 1);
    await sleep(10);
    expect(await queue.recoverExpired()).toBe(1);
    expect(await queue.get(job.id)).toMatchObject({ status: 'failed', attempts: 1, error: expect.stringContaining('lease expired') });
  });

  it('takes back at once the jobs of a worker on this host whose process is gone, not those of live ones', async () => {
    const { queue } = await openQueue();
    const exited = spawn(process.execPath, ['-e', '']);
    await new Promise((resolve) => exited.once('exit', resolve));
    const deadOwner = `${hostname()}:${exited.pid}:0a1b2c3d`;
    const liveOwner = `${hostname()}:${process.ppid}:0a1b2c3d`;
    const remoteOwner = `another-host:${exited.pid}:0a1b2c3d`;
    const jobs: Job[] = [];
    for (const owner of [deadOwner, liveOwner, remoteOwner]) {
      const job = await queue.enqueue('work', { owner });
      expect((await queue.claim(owner, ['work'], 60_000))?.id).toBe(job.id); // leases far from expiring
      jobs.push(job);
    }
    expect((await queue.runningOwners()).sort()).toEqual([deadOwner, liveOwner, remoteOwner].sort());
    const runs: string[] = [];
    startRunner({ queue }, { work: async (current) => void runs.push((current.payload as { owner: string }).owner) });
    await waitForStatus(queue, jobs[0]!.id, 'succeeded');
    await sleep(100);
    expect(runs).toEqual([deadOwner]);
    expect(await statusOf(queue, jobs[1]!.id)).toBe('running');
    expect(await statusOf(queue, jobs[2]!.id)).toBe('running');
  });

  it('heartbeats keep a long job from being taken by another worker', async () => {
    const { queue, connect } = await openQueue();
    let runs = 0;
    const release = gate();
    startRunner(
      { queue, leaseMs: 250, heartbeatMs: 30 },
      {
        work: async (_job, { signal }) => {
          runs++;
          await Promise.race([release.promise, untilAborted(signal)]);
        },
      },
    );
    // A second worker on its own connection, recovering expired leases often and eager for work.
    startRunner({ queue: await connect(), leaseMs: 250, recoverMs: 20, owner: 'rival' }, { work: async () => void runs++ });
    const job = await queue.enqueue('work', {});
    await waitFor('the job to start', () => runs === 1);
    await sleep(750); // three lease lengths
    expect(runs).toBe(1);
    release.open();
    expect((await waitForStatus(queue, job.id, 'succeeded')).attempts).toBe(1);
  });

  it('a job survives kill -9 of its worker and resumes, each step done exactly once', { timeout: 30_000 }, async () => {
    const steps = 10;
    const { db, queue, dataDir, crashArgs } = await openQueue();
    const job = await queue.enqueue('crash-test', { steps });
    const children: ChildProcess[] = [];
    cleanups.push(() => children.forEach((child) => child.exitCode === null && child.signalCode === null && child.kill('SIGKILL')));
    let stderr = '';
    const startWorker = (): { child: ChildProcess; exited: Promise<number | null> } => {
      const child = spawn(process.execPath, ['test/jobs/crash-worker.ts', dataDir, job.id, ...crashArgs], {
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      children.push(child);
      child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
      return { child, exited };
    };
    const stepCount = (): number =>
      db.prepare("SELECT count(*) FROM sqlite_master WHERE name = 'steps'").pluck().get() === 0
        ? 0
        : (db.prepare('SELECT count(*) FROM steps').pluck().get() as number);

    const first = startWorker();
    await waitFor('the first worker to do 3 steps', () => stepCount() >= 3, 15_000);
    first.child.kill('SIGKILL');
    await first.exited;
    const atKill = (await queue.get(job.id))!;
    expect(atKill.status).toBe('running'); // its lease is still held by the dead process
    const doneAtKill = stepCount();
    expect(doneAtKill).toBeLessThan(steps);
    expect(atKill.progress).toBeGreaterThan(0);

    const second = startWorker();
    const code = await Promise.race([second.exited, sleep(20_000).then(() => 'timeout' as const)]);
    expect(code, `the second worker's stderr: ${stderr}`).toBe(0);

    const done = (await queue.get(job.id))!;
    expect(done).toMatchObject({ status: 'succeeded', attempts: 2, progress: 1 });
    const rows = db.prepare<[], { step: number; pid: number }>('SELECT step, pid FROM steps ORDER BY rowid').all();
    expect(rows.map((row) => row.step)).toEqual(Array.from({ length: steps }, (_, index) => index));
    const pids = [first.child.pid, second.child.pid];
    expect(rows.slice(0, doneAtKill).every((row) => row.pid === pids[0])).toBe(true);
    expect(rows.slice(doneAtKill).every((row) => row.pid === pids[1])).toBe(true);
    // The second run started where the first one stopped.
    const runs = db.prepare('SELECT pid, first_step FROM runs ORDER BY rowid').all();
    expect(runs).toEqual([
      { pid: pids[0], first_step: 0 },
      { pid: pids[1], first_step: doneAtKill },
    ]);
  });
});

describe('BullmqJobQueue listing by status', () => {
  it('walks the enqueue index once a state holds more jobs than the threshold, with the same pages', async () => {
    const prefix = testKeyPrefix();
    cleanups.push(() => deleteKeys(prefix));
    const sorting = new BullmqJobQueue({ url: REDIS_URL, prefix });
    const walking = new BullmqJobQueue({ url: REDIS_URL, prefix, listScanThreshold: 0 });
    cleanups.push(
      () => sorting.close(),
      () => walking.close(),
    );
    const jobs: Job[] = [];
    for (let index = 0; index < 14; index += 1)
      jobs.push(await sorting.enqueue(index % 2 === 0 ? 'even' : 'odd', { index }, { maxAttempts: 1 }));
    // Four succeed, three fail, one runs, two are cancelled (one while running, one queued), the rest wait.
    for (let step = 0; step < 9; step += 1) {
      const claimed = (await sorting.claim('worker', ['even', 'odd'], 60_000))!;
      if (step < 4) await sorting.complete(claimed.id, 'worker');
      else if (step < 7) await sorting.fail(claimed.id, 'worker', 'boom', undefined);
      else if (step === 7) {
        await sorting.cancel(claimed.id);
        await sorting.finishCancelled(claimed.id, 'worker');
      }
    }
    await sorting.cancel(jobs.at(-1)!.id);
    const statuses: JobStatus[] = ['queued', 'running', 'succeeded', 'failed', 'cancelled'];
    const ids = async (queue: BullmqJobQueue, options: Parameters<WorkerQueue['list']>[0]): Promise<string[]> =>
      (await queue.list(options)).map((job) => job.id);
    for (const status of statuses) {
      for (const kind of [undefined, 'even', 'odd']) {
        const all = await ids(sorting, { status, kind, limit: 50, offset: 0 });
        if (kind === undefined) expect(all.length, status).toBeGreaterThan(0);
        expect(await ids(walking, { status, kind, limit: 50, offset: 0 }), `${status} ${kind}`).toEqual(all);
        expect(await ids(walking, { status, kind, limit: 2, offset: 1 }), `${status} ${kind} page`).toEqual(all.slice(1, 3));
      }
    }
    expect((await walking.list({ status: 'succeeded', limit: 50, offset: 0 })).every((job) => job.status === 'succeeded')).toBe(true);
    expect(await ids(walking, { status: 'running', limit: 5, offset: 10 })).toEqual([]);
  });
});
