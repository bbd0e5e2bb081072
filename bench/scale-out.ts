// Scale-out: Ocular as several processes on PostgreSQL + Redis (the job queue) + one blob store.
// 1. Indexing throughput with 1, 2 and 4 workers (`ocular serve --role worker`, one job at a time each) behind one
//    `--role api` process: the same short generated videos are uploaded to the api process at once and the wall
//    time until every one is indexed is measured (each worker indexes a short video first, untimed, so model
//    loading is not counted). Prints videos per minute, the speed-up over one worker and how busy the machine's
//    CPUs were; target: near-linear until the CPUs run out, i.e. 2 workers at least 0.85 of the speed-up the CPUs
//    leave room for (1 / the share one worker keeps busy, at most 2), and 4 workers no slower than 0.9x 2 (more
//    workers than cores must not collapse throughput).
//    The 2-worker run is repeated with the blobs in an S3 bucket (s3rver on loopback, in this process) and a data
//    directory per process, so every video and keyframe goes through the store; target: within 1.3x the wall
//    time of the run on a shared folder.
// 2. `GET /v1/videos/{id}` under load (autocannon, 16 connections) on one server with SQLite and one with
//    PostgreSQL, in the same run: p50/p99 latency and requests per second; target: PostgreSQL's p99 within 3x
//    SQLite's (a network round trip per query instead of an in-process read).
// Needs the PostgreSQL (127.0.0.1:5432) and Redis (127.0.0.1:6379) every project machine runs. Loopback only.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, openAsBlob, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import autocannon from 'autocannon';
import { Redis } from 'ioredis';
import pg from 'pg';
import { createFfmpegContext } from '../src/media/binaries.ts';
import { startTestS3 } from '../test/helpers/s3.ts';
import { startOcularServe, type ServeHandle } from './ocular-serve.ts';
import { BENCH_CACHE_DIR, percentile, printTable, verdict } from './report.ts';

const run = promisify(execFile);
const KEY = 'ocu_bench_scale_out_0123456789abcdef';
const POSTGRES = process.env.OCULAR_BENCH_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const REDIS = process.env.OCULAR_BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';
const VIDEOS = 8;
const VIDEO_SECONDS = 20;
const WORKER_COUNTS = [1, 2, 4] as const;
const LOAD_SECONDS = 8;
const LOAD_CONNECTIONS = 16;
/** Light analyzers, so the figure is about spreading work over workers rather than one model's speed. */
const INDEXING = { objects: { enabled: false }, vad: { enabled: false }, labels: { enabled: false } };

async function benchVideo(seconds = VIDEO_SECONDS): Promise<string> {
  mkdirSync(BENCH_CACHE_DIR, { recursive: true });
  const path = join(BENCH_CACHE_DIR, `scale-out-${seconds}s.mp4`);
  if (existsSync(path)) return path;
  const { ffmpeg } = createFfmpegContext().binaries;
  await run(ffmpeg, [
    ...['-nostdin', '-hide_banner', '-loglevel', 'error', '-y'],
    ...['-f', 'lavfi', '-i', `testsrc2=size=640x360:rate=25:duration=${seconds}`],
    ...['-f', 'lavfi', '-i', `sine=frequency=440:duration=${seconds}`],
    ...['-c:v', 'libx264', '-preset', 'veryfast', '-pix_fmt', 'yuv420p', '-c:a', 'aac', '-shortest', path],
  ]);
  return path;
}

async function createDatabase(): Promise<{ url: string; drop(): Promise<void> }> {
  const name = `ocular_bench_${randomBytes(5).toString('hex')}`;
  const admin = new pg.Client({ connectionString: POSTGRES });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = new URL(POSTGRES);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    drop: async () => {
      const client = new pg.Client({ connectionString: POSTGRES });
      await client.connect();
      await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await client.end();
    },
  };
}

async function dropRedisPrefix(prefix: string): Promise<void> {
  const redis = new Redis(REDIS);
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
    cursor = next;
    if (keys.length > 0) await redis.del(...keys);
  } while (cursor !== '0');
  redis.disconnect();
}

const headers = { 'x-api-key': KEY };

async function upload(url: string, path: string, name: string): Promise<string> {
  const body = new FormData();
  body.set('video_name', name);
  body.set('index', 'true');
  body.set('file', await openAsBlob(path, { type: 'video/mp4' }), `${name}.mp4`);
  const response = await fetch(`${url}/v1/videos/upload`, { method: 'POST', headers, body });
  if (!response.ok) throw new Error(`upload: ${response.status} ${await response.text()}`);
  return ((await response.json()) as { video_id: string }).video_id;
}

async function waitIndexed(url: string, ids: readonly string[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const pending = new Set(ids);
  while (pending.size > 0) {
    if (Date.now() > deadline) throw new Error(`${pending.size} videos not indexed within ${timeoutMs / 1000} s`);
    for (const id of [...pending]) {
      const video = (await (await fetch(`${url}/v1/videos/${id}`, { headers })).json()) as {
        indexing_status: string;
        indexing_error?: string;
      };
      if (video.indexing_status === 'failed') throw new Error(`video ${id} failed: ${video.indexing_error}`);
      if (video.indexing_status === 'indexed') pending.delete(id);
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

/** CPU time of the whole machine so far: busy and total, over every core, in ms. */
function cpuTimes(): { busy: number; total: number } {
  let busy = 0;
  let total = 0;
  for (const { times } of cpus()) {
    busy += times.user + times.nice + times.sys + times.irq;
    total += times.user + times.nice + times.sys + times.irq + times.idle;
  }
  return { busy, total };
}

interface IndexingRun {
  seconds: number;
  /** The share of the machine's CPU time that was busy while the timed videos were indexed (0..1). */
  busy: number;
}

/**
 * One deployment: an api process and `workers` worker processes on a fresh database and queue prefix; with `s3`,
 * blobs in a bucket of a local S3 server and a data directory per process. Each worker first indexes a 2 s
 * video (one each, untimed), so model loading is not counted; then the timed videos are uploaded at once.
 */
async function indexingRun(path: string, warmUp: string, workers: number, s3 = false): Promise<IndexingRun> {
  const database = await createDatabase();
  const prefix = `ocular-bench-${randomBytes(4).toString('hex')}`;
  const dataDir = mkdtempSync(join(tmpdir(), 'ocular-bench-scale-'));
  const store = s3 ? await startTestS3() : undefined;
  const config = {
    storage: { database: 'postgres', url: database.url },
    queue: { kind: 'redis', url: REDIS, prefix },
    indexing: { ...INDEXING, concurrency: 1 },
    ...(store === undefined ? {} : { blobs: { ...store.settings, partSizeMiB: 8 } }),
  };
  const dirOf = (name: string): string => (store === undefined ? dataDir : join(dataDir, name));
  const processes: ServeHandle[] = [];
  try {
    const api = await startOcularServe(dirOf('api'), KEY, config, ['--role', 'api']);
    processes.push(api);
    for (let index = 0; index < workers; index++) {
      processes.push(await startOcularServe(dirOf(`worker-${index}`), KEY, config, ['--role', 'worker']));
    }
    const warm = await Promise.all(Array.from({ length: workers }, (_, index) => upload(api.url, warmUp, `warm-${index}`)));
    await waitIndexed(api.url, warm, 5 * 60_000);
    const before = cpuTimes();
    const started = performance.now();
    const ids = await Promise.all(Array.from({ length: VIDEOS }, (_, index) => upload(api.url, path, `bench-${index}`)));
    await waitIndexed(api.url, ids, 20 * 60_000);
    const seconds = (performance.now() - started) / 1000;
    const after = cpuTimes();
    return { seconds, busy: (after.busy - before.busy) / Math.max(1, after.total - before.total) };
  } finally {
    await Promise.all(processes.map((process) => process.stop()));
    await database.drop();
    await dropRedisPrefix(prefix);
    await store?.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

async function loadRun(url: string, id: string): Promise<{ p50: number; p99: number; rps: number }> {
  const latencies: number[] = [];
  const instance = autocannon({
    url: `${url}/v1/videos/${id}`,
    headers,
    connections: LOAD_CONNECTIONS,
    duration: LOAD_SECONDS,
    timeout: 10,
  });
  instance.on('response', (_client, _status, _bytes, responseTime) => latencies.push(responseTime));
  const result = await instance;
  if (result.non2xx > 0 || result.errors > 0) throw new Error(`load: ${result.non2xx} non-2xx, ${result.errors} errors`);
  latencies.sort((a, b) => a - b);
  return { p50: percentile(latencies, 50), p99: percentile(latencies, 99), rps: latencies.length / result.duration };
}

async function videoLoad(path: string): Promise<Record<'SQLite' | 'PostgreSQL', { p50: number; p99: number; rps: number }>> {
  const database = await createDatabase();
  const dirs = [mkdtempSync(join(tmpdir(), 'ocular-bench-sqlite-')), mkdtempSync(join(tmpdir(), 'ocular-bench-pg-'))];
  const servers: ServeHandle[] = [];
  try {
    const results = {} as Record<'SQLite' | 'PostgreSQL', { p50: number; p99: number; rps: number }>;
    const setups = [
      ['SQLite', dirs[0]!, { indexing: INDEXING }],
      ['PostgreSQL', dirs[1]!, { indexing: INDEXING, storage: { database: 'postgres', url: database.url } }],
    ] as const;
    for (const [name, dir, config] of setups) {
      const server = await startOcularServe(dir, KEY, config);
      servers.push(server);
      const id = await upload(server.url, path, name);
      await loadRun(server.url, id); // warm-up
      results[name] = await loadRun(server.url, id);
      await server.stop();
    }
    return results;
  } finally {
    await Promise.all(servers.map((server) => server.stop()));
    await database.drop();
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  }
}

export async function runScaleOut(): Promise<void> {
  const path = await benchVideo();
  const warmUp = await benchVideo(2);
  const runs: Record<number, IndexingRun> = {};
  for (const workers of WORKER_COUNTS) runs[workers] = await indexingRun(path, warmUp, workers);
  const perMinute = (workers: number): number => (VIDEOS / runs[workers]!.seconds) * 60;
  const twoOverOne = perMinute(2) / perMinute(1);
  const fourOverTwo = perMinute(4) / perMinute(2);
  // Near-linear until the CPUs run out: one worker that keeps a share `busy` of the machine busy leaves room for
  // at most 1 / busy times its throughput, however many workers are added.
  const ceiling = Math.min(2, 1 / runs[1]!.busy);
  console.log(
    `\nIndexing throughput, ${VIDEOS} videos of ${VIDEO_SECONDS} s, api process + N warmed-up workers on PostgreSQL + Redis, ` +
      `${cpus().length} cores`,
  );
  printTable([
    ['workers', 'wall s', 'videos/min', 'vs 1 worker', 'CPU busy'],
    ...WORKER_COUNTS.map((workers) => [
      String(workers),
      runs[workers]!.seconds.toFixed(1),
      perMinute(workers).toFixed(1),
      `${(perMinute(workers) / perMinute(1)).toFixed(2)}x`,
      `${(runs[workers]!.busy * 100).toFixed(0)}%`,
    ]),
  ]);
  console.log(
    `2 workers vs 1: ${twoOverOne.toFixed(2)}x; the CPUs allow ${ceiling.toFixed(2)}x (one worker keeps ` +
      `${(runs[1]!.busy * 100).toFixed(0)}% of them busy); target >= 0.85 of that ${verdict(twoOverOne >= 0.85 * ceiling)}`,
  );
  console.log(
    `4 workers vs 2: ${fourOverTwo.toFixed(2)}x (target >= 0.9x: more workers than CPUs must not collapse throughput) ${verdict(fourOverTwo >= 0.9)}`,
  );
  const onS3 = (await indexingRun(path, warmUp, 2, true)).seconds;
  const s3OverFs = onS3 / runs[2]!.seconds;
  console.log(
    `2 workers with blobs on S3 (s3rver): ${onS3.toFixed(1)} s, ${s3OverFs.toFixed(2)}x the shared folder's wall time ` +
      `(target <= 1.3x) ${verdict(s3OverFs <= 1.3)}`,
  );

  const load = await videoLoad(path);
  const ratio = load.PostgreSQL.p99 / load.SQLite.p99;
  console.log(`\nGET /v1/videos/{id}, ${LOAD_CONNECTIONS} connections for ${LOAD_SECONDS} s`);
  printTable([
    ['database', 'p50 ms', 'p99 ms', 'req/s'],
    ...(['SQLite', 'PostgreSQL'] as const).map((name) => [
      name,
      load[name].p50.toFixed(1),
      load[name].p99.toFixed(1),
      load[name].rps.toFixed(0),
    ]),
  ]);
  console.log(`PostgreSQL p99 / SQLite p99: ${ratio.toFixed(2)}x (target <= 3x) ${verdict(ratio <= 3)}`);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await runScaleOut();
