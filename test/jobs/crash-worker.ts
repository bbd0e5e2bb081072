// Child process for the crash test in job-queue.test.ts:
// `node test/jobs/crash-worker.ts DATA_DIR JOB_ID [sqlite | postgres URL | redis URL PREFIX]`.
// Runs the `crash-test` job with a resumable handler and exits once the job has finished. The test kills it with
// SIGKILL mid-job and starts it again. The steps are recorded in DATA_DIR's SQLite database; the queue is that
// database's jobs table, a PostgreSQL database's, or BullMQ's on Redis.
import { setTimeout as sleep } from 'node:timers/promises';
import { JobRunner } from '../../src/jobs/job-runner.ts';
import { BullmqJobQueue } from '../../src/jobs/bullmq-queue.ts';
import { SqlJobQueue, type WorkerQueue } from '../../src/jobs/job-queue.ts';
import { openDatabase } from '../../src/store/database.ts';
import { openSqlDatabase, sqliteDatabase, type SqlDatabase } from '../../src/store/sql.ts';

const CRASH_TEST_STEPS = 10;
const CRASH_TEST_STEP_MS = 100;

const [dataDir, jobId, kind = 'sqlite', url, prefix] = process.argv.slice(2);
if (dataDir === undefined || jobId === undefined) {
  process.stderr.write('usage: crash-worker.ts DATA_DIR JOB_ID\n');
  process.exit(2);
}

const db = openDatabase(dataDir);
// No uniqueness constraint on purpose: a step done twice must show up as two rows.
db.exec(`CREATE TABLE IF NOT EXISTS steps (job_id TEXT NOT NULL, step INTEGER NOT NULL, pid INTEGER NOT NULL);
         CREATE TABLE IF NOT EXISTS runs (job_id TEXT NOT NULL, pid INTEGER NOT NULL, first_step INTEGER NOT NULL);`);
const doneSteps = db.prepare<[string], number>('SELECT step FROM steps WHERE job_id = ?').pluck();
const recordStep = db.prepare('INSERT INTO steps (job_id, step, pid) VALUES (?, ?, ?)');
const recordRun = db.prepare('INSERT INTO runs (job_id, pid, first_step) VALUES (?, ?, ?)');

let database: SqlDatabase | undefined;
let queue: WorkerQueue;
if (kind === 'redis') {
  queue = new BullmqJobQueue({ url: url!, prefix });
} else {
  database = kind === 'postgres' ? await openSqlDatabase({ database: 'postgres', url }, { dataDir }) : sqliteDatabase(db);
  queue = new SqlJobQueue(database);
}
const runner = new JobRunner({
  queue,
  log: { warn: (message, fields) => process.stderr.write(`${message} ${JSON.stringify(fields ?? {})}\n`) },
  leaseMs: 800,
  pollMs: 50,
  recoverMs: 100,
  backoffBaseMs: 10,
});
runner.handle('crash-test', async (job, { signal, reportProgress }) => {
  // Resumable: the steps recorded by an earlier run (one killed mid-job) are skipped, not redone.
  const done = new Set(doneSteps.all(job.id));
  let first = 0;
  while (done.has(first)) first++;
  recordRun.run(job.id, process.pid, first);
  for (let step = 0; step < CRASH_TEST_STEPS; step++) {
    if (done.has(step)) continue;
    await sleep(CRASH_TEST_STEP_MS, undefined, { signal });
    recordStep.run(job.id, step, process.pid);
    reportProgress((step + 1) / CRASH_TEST_STEPS);
  }
});
runner.start();

// Exit once the job is over (bounded, so a broken queue cannot leave the process behind).
const deadline = Date.now() + 15_000;
for (;;) {
  const status = (await queue.get(jobId))?.status;
  if (status === 'succeeded' || status === 'failed' || status === 'cancelled') break;
  if (Date.now() > deadline) {
    process.stderr.write(`crash-worker: job ${jobId} still ${status} after 15 s\n`);
    process.exitCode = 1;
    break;
  }
  await sleep(25);
}
await runner.stop();
await queue.close();
if (database !== undefined) await database.close();
if (db.open) db.close();
