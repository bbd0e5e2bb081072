import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { SqliteJobQueue, type Job, type JobStatus } from '../../src/jobs/job-queue.ts';
import { JobRunner, PermanentJobError, type JobRunnerOptions } from '../../src/jobs/job-runner.ts';
import { openDatabase, type Db } from '../../src/store/database.ts';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'ocular-jobs-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function openQueue(dataDir = tempDir()): { db: Db; queue: SqliteJobQueue; dataDir: string } {
  const db = openDatabase(dataDir);
  cleanups.push(() => db.close());
  return { db, queue: new SqliteJobQueue(db), dataDir };
}

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
async function waitFor<T>(what: string, check: () => T | undefined | false, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

const statusOf = (queue: SqliteJobQueue, id: string): JobStatus | undefined => queue.get(id)?.status;
const waitForStatus = (queue: SqliteJobQueue, id: string, status: JobStatus, timeoutMs?: number): Promise<Job> =>
  waitFor(`job ${id} to be ${status} (it is ${statusOf(queue, id)})`, () => queue.get(id)?.status === status && queue.get(id), timeoutMs);

/** A promise with its resolve function, to hold handlers at a point. */
function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
}

const untilAborted = (signal: AbortSignal): Promise<never> =>
  new Promise((_, reject) => {
    if (signal.aborted) reject(signal.reason);
    signal.addEventListener('abort', () => reject(signal.reason), { once: true });
  });

describe('SqliteJobQueue', () => {
  it('enqueues, gets and lists jobs; claims the oldest runnable job of the given kinds only', () => {
    const { queue } = openQueue();
    const first = queue.enqueue('index-video', { videoId: 'v1', options: [1, 2] });
    expect(first).toMatchObject({ kind: 'index-video', key: null, status: 'queued', attempts: 0, maxAttempts: 3, progress: 0 });
    expect(first.error).toBeUndefined();
    const later = queue.enqueue('index-video', { videoId: 'v2' }, { runAt: new Date(Date.now() + 60_000) });
    const other = queue.enqueue('thumbnail', 'x', { maxAttempts: 1 });
    expect(queue.get(first.id)).toEqual(first);
    expect(queue.get('job_missing')).toBeUndefined();

    expect(queue.list({ limit: 10, offset: 0 }).map((job) => job.id)).toEqual([other.id, later.id, first.id]);
    expect(queue.list({ kind: 'index-video', limit: 10, offset: 0 }).map((job) => job.id)).toEqual([later.id, first.id]);
    expect(queue.list({ kind: 'index-video', limit: 1, offset: 1 }).map((job) => job.id)).toEqual([first.id]);

    const claimed = queue.claim('worker-a', ['index-video'], 1000);
    expect(claimed).toMatchObject({ id: first.id, status: 'running', attempts: 1, payload: { videoId: 'v1', options: [1, 2] } });
    // `later` is not due yet and `thumbnail` is not a kind asked for.
    expect(queue.claim('worker-a', ['index-video'], 1000)).toBeUndefined();
    expect(queue.list({ status: 'running', limit: 10, offset: 0 }).map((job) => job.id)).toEqual([first.id]);
    expect(queue.complete(first.id, 'worker-b')).toBe(false); // not the lease holder
    expect(queue.complete(first.id, 'worker-a')).toBe(true);
    expect(queue.get(first.id)).toMatchObject({ status: 'succeeded', progress: 1 });
  });

  it('rejects what is not a job', () => {
    const { queue } = openQueue();
    expect(() => queue.enqueue('', {})).toThrow(expect.objectContaining({ type: 'validation_error', param: 'kind' }));
    expect(() => queue.enqueue('k', {}, { maxAttempts: 0 })).toThrow(expect.objectContaining({ type: 'validation_error' }));
    expect(() => queue.enqueue('k', undefined as never)).toThrow(expect.objectContaining({ type: 'validation_error', param: 'payload' }));
  });

  it('keeps one live job per idempotency key', () => {
    const { queue } = openQueue();
    const first = queue.enqueue('index-video', { videoId: 'v1' }, { key: 'video:v1' });
    const again = queue.enqueue('index-video', { videoId: 'v1', retry: true }, { key: 'video:v1' });
    expect(again.id).toBe(first.id);
    expect(again.payload).toEqual({ videoId: 'v1' });
    expect(queue.enqueue('index-video', { videoId: 'v2' }, { key: 'video:v2' }).id).not.toBe(first.id);
    expect(queue.list({ limit: 10, offset: 0 })).toHaveLength(2);

    // Still live while running; once finished, the key is free again.
    queue.claim('worker', ['index-video'], 1000);
    expect(queue.enqueue('index-video', {}, { key: 'video:v1' }).id).toBe(first.id);
    queue.complete(first.id, 'worker');
    const fresh = queue.enqueue('index-video', { videoId: 'v1' }, { key: 'video:v1' });
    expect(fresh.id).not.toBe(first.id);
    expect(fresh.status).toBe('queued');
  });
});

describe('JobRunner', () => {
  it('runs a job to success with its payload', async () => {
    const { queue } = openQueue();
    const seen: unknown[] = [];
    startRunner({ queue }, { echo: async (job) => void seen.push(job.payload) });
    const job = queue.enqueue('echo', { hello: 'world' });
    const done = await waitForStatus(queue, job.id, 'succeeded');
    expect(seen).toEqual([{ hello: 'world' }]);
    expect(done).toMatchObject({ attempts: 1, progress: 1 });
  });

  it('wakes up on an enqueue in the same process without waiting for the poll', async () => {
    const { queue } = openQueue();
    startRunner({ queue, pollMs: 60_000 }, { echo: async () => {} });
    const job = queue.enqueue('echo', null);
    await waitForStatus(queue, job.id, 'succeeded', 1000);
  });

  it('retries a failing job with exponential backoff, then fails it with the last error', async () => {
    const { queue } = openQueue();
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
    const job = queue.enqueue('flaky', {}, { maxAttempts: 3 });
    const afterFirst = await waitFor('the first failure', () => {
      const current = queue.get(job.id)!;
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
    const { queue } = openQueue();
    const job = queue.enqueue('work', {}, { maxAttempts: 5 });
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
    const { queue } = openQueue();
    let ran = 0;
    const job = queue.enqueue('work', {}, { runAt: new Date(Date.now() + 200) });
    expect(queue.cancel(job.id)?.status).toBe('cancelled');
    startRunner({ queue }, { work: async () => void ran++ });
    await sleep(300);
    expect(ran).toBe(0);
    expect(statusOf(queue, job.id)).toBe('cancelled');
    expect(queue.cancel('job_missing')).toBeUndefined();
  });

  it('cancels a running job through its signal', async () => {
    const { queue } = openQueue();
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
    const job = queue.enqueue('work', {});
    await started.promise;
    expect(queue.cancel(job.id)?.status).toBe('running');
    const cancelled = await waitForStatus(queue, job.id, 'cancelled', 2000);
    expect(reason).toMatchObject({ name: 'AbortError' });
    expect(cancelled.attempts).toBe(1);
  });

  it('notices a cancellation made by another process at its next heartbeat', async () => {
    const { queue, db, dataDir } = openQueue();
    const otherProcess = openQueue(dataDir).queue; // another connection: no in-process event reaches the runner
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
    const job = queue.enqueue('work', {});
    await started.promise;
    otherProcess.cancel(job.id);
    await waitForStatus(queue, job.id, 'cancelled', 2000);
    expect(db.prepare('SELECT cancel_requested FROM jobs WHERE id = ?').pluck().get(job.id)).toBe(1);
  });

  it('runs at most `concurrency` jobs at once', async () => {
    const { queue } = openQueue();
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
    const jobs = Array.from({ length: 5 }, (_, index) => queue.enqueue('work', { index }));
    await waitFor('two jobs running', () => active === 2);
    await sleep(100); // room for a third claim, if the bound were broken
    expect(runner.activeCount).toBe(2);
    expect(queue.list({ status: 'running', limit: 10, offset: 0 })).toHaveLength(2);
    release.open();
    for (const job of jobs) await waitForStatus(queue, job.id, 'succeeded');
    expect(peak).toBe(2);
  });

  it('saves reported progress while the job runs', async () => {
    const { queue } = openQueue();
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
    const job = queue.enqueue('work', {});
    await waitFor('progress 0.5', () => queue.get(job.id)?.progress === 0.5);
    expect(statusOf(queue, job.id)).toBe('running');
    release.open();
    expect((await waitForStatus(queue, job.id, 'succeeded')).progress).toBe(1);
  });

  it('stop() aborts running jobs and leaves them queued for the next start', async () => {
    const { queue } = openQueue();
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
    const job = queue.enqueue('work', {});
    await started.promise;
    await runner.stop();
    expect(aborted).toBe(true);
    // The interrupted attempt is given back: stopping is not failing.
    expect(queue.get(job.id)).toMatchObject({ status: 'queued', attempts: 0, progress: 0.3 });
    expect(queue.get(job.id)?.error).toBeUndefined();

    startRunner({ queue }, { work: async () => {} });
    expect((await waitForStatus(queue, job.id, 'succeeded')).attempts).toBe(1);
  });

  it('puts a job whose lease expired (its worker died) back in the queue, attempts kept', async () => {
    const { queue } = openQueue();
    const job = queue.enqueue('work', { n: 1 });
    expect(queue.claim('dead-worker', ['work'], 50)?.id).toBe(job.id); // a worker that will never renew
    expect(queue.recoverExpired()).toBe(0); // the lease still holds
    await sleep(80);
    const runs: number[] = [];
    startRunner({ queue }, { work: async (current) => void runs.push(current.attempts) });
    const done = await waitForStatus(queue, job.id, 'succeeded');
    expect(runs).toEqual([2]);
    expect(done.attempts).toBe(2);
    expect(queue.complete(job.id, 'dead-worker')).toBe(false); // a late write from the dead worker is ignored
  });

  it('fails a job whose worker died on its last attempt instead of running it again', async () => {
    const { queue } = openQueue();
    const job = queue.enqueue('work', {}, { maxAttempts: 1 });
    queue.claim('dead-worker', ['work'], 1);
    await sleep(10);
    expect(queue.recoverExpired()).toBe(1);
    expect(queue.get(job.id)).toMatchObject({ status: 'failed', attempts: 1, error: expect.stringContaining('lease expired') });
  });

  it('takes back at once the jobs of a worker on this host whose process is gone, not those of live ones', async () => {
    const { queue } = openQueue();
    const exited = spawn(process.execPath, ['-e', '']);
    await new Promise((resolve) => exited.once('exit', resolve));
    const deadOwner = `${hostname()}:${exited.pid}:0a1b2c3d`;
    const liveOwner = `${hostname()}:${process.ppid}:0a1b2c3d`;
    const remoteOwner = `another-host:${exited.pid}:0a1b2c3d`;
    const jobs = [deadOwner, liveOwner, remoteOwner].map((owner) => {
      const job = queue.enqueue('work', { owner });
      expect(queue.claim(owner, ['work'], 60_000)?.id).toBe(job.id); // leases far from expiring
      return job;
    });
    const runs: string[] = [];
    startRunner({ queue }, { work: async (current) => void runs.push((current.payload as { owner: string }).owner) });
    await waitForStatus(queue, jobs[0]!.id, 'succeeded');
    await sleep(100);
    expect(runs).toEqual([deadOwner]);
    expect(statusOf(queue, jobs[1]!.id)).toBe('running');
    expect(statusOf(queue, jobs[2]!.id)).toBe('running');
  });

  it('heartbeats keep a long job from being taken by another worker', async () => {
    const { queue, dataDir } = openQueue();
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
    startRunner({ queue: openQueue(dataDir).queue, leaseMs: 250, recoverMs: 20, owner: 'rival' }, { work: async () => void runs++ });
    const job = queue.enqueue('work', {});
    await waitFor('the job to start', () => runs === 1);
    await sleep(750); // three lease lengths
    expect(runs).toBe(1);
    release.open();
    expect((await waitForStatus(queue, job.id, 'succeeded')).attempts).toBe(1);
  });

  it('a job survives kill -9 of its worker and resumes, each step done exactly once', { timeout: 30_000 }, async () => {
    const steps = 10;
    const { db, queue, dataDir } = openQueue();
    const job = queue.enqueue('crash-test', { steps });
    const children: ChildProcess[] = [];
    cleanups.push(() => children.forEach((child) => child.exitCode === null && child.signalCode === null && child.kill('SIGKILL')));
    let stderr = '';
    const startWorker = (): { child: ChildProcess; exited: Promise<number | null> } => {
      const child = spawn(process.execPath, ['test/jobs/crash-worker.ts', dataDir, job.id], {
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
    const atKill = queue.get(job.id)!;
    expect(atKill.status).toBe('running'); // its lease is still held by the dead process
    const doneAtKill = stepCount();
    expect(doneAtKill).toBeLessThan(steps);
    expect(atKill.progress).toBeGreaterThan(0);

    const second = startWorker();
    const code = await Promise.race([second.exited, sleep(20_000).then(() => 'timeout' as const)]);
    expect(code, `the second worker's stderr: ${stderr}`).toBe(0);

    const done = queue.get(job.id)!;
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
