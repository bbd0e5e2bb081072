// Crash safety of indexing: the server runs as a child process (`node bin/ocular.js serve`), is killed with
// SIGKILL while a video is half indexed, and is started again on the same data directory. The job must resume
// and finish with every segment of the plan indexed exactly once.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, expect, it } from 'vitest';
import { sql } from 'kysely';
import { VideoStore } from '../../src/store/video-store.ts';
import { makeVideo, removeMediaFixtures } from '../helpers/media-fixtures.ts';
import { testStorageFor, withDataDirDatabase } from '../helpers/storage-mode.ts';

const KEY = 'ocu_crash_test_key_0123456789';
const BIN = fileURLToPath(new URL('../../bin/ocular.js', import.meta.url));
const dataDir = mkdtempSync(join(tmpdir(), 'ocular-crash-'));
const children: ChildProcess[] = [];

afterAll(() => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  rmSync(dataDir, { recursive: true, force: true });
  removeMediaFixtures();
});

/** Starts `ocular serve` on a free port and resolves with its URL once its log says it listens. */
async function startChild(): Promise<{ child: ChildProcess; url: string }> {
  const configPath = join(dataDir, 'ocular.config.json');
  // Objects off to keep the test short; OCR stays on, so each segment takes real work.
  // VAD and labels off: their weights would be downloaded in the background, and this test stays off the network.
  const storage = await testStorageFor(dataDir);
  writeFileSync(
    configPath,
    JSON.stringify({
      ...(storage === undefined ? {} : { storage }),
      indexing: { objects: { enabled: false }, vad: { enabled: false }, labels: { enabled: false }, ocrIntervalSeconds: 2 },
    }),
  );
  const child = spawn(process.execPath, [BIN, 'serve', '--host', '127.0.0.1', '--port', '0', '--data', dataDir, '--config', configPath], {
    env: { ...process.env, OCULAR_API_KEYS: KEY, OCULAR_LOG_LEVEL: 'info' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  children.push(child);
  const lines = createInterface({ input: child.stderr! });
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the server did not start in 30 s')), 30_000);
    lines.on('line', (line) => {
      if (!line.includes('ocular is listening')) return;
      clearTimeout(timer);
      resolve((JSON.parse(line) as { url: string }).url);
    });
    child.once('exit', (code) => reject(new Error(`the server exited with ${code}`)));
  });
  return { child, url };
}

function readState(videoId: string): Promise<{ saved: number; planned: number | undefined; status: string | undefined }> {
  return withDataDirDatabase(dataDir, async (database) => {
    const store = new VideoStore(database);
    const video = await store.getVideoById(videoId);
    const plan = video?.plan ? (JSON.parse(video.plan) as { segments: unknown[] }) : undefined;
    return { saved: await store.countSegments(videoId), planned: plan?.segments.length, status: video?.status };
  });
}

async function until<T>(what: string, check: () => Promise<T | undefined>, timeoutMs: number, everyMs = 25): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}

it('resumes indexing after kill -9 and indexes every time range exactly once', { timeout: 180_000 }, async () => {
  const first = await startChild();
  const body = new FormData();
  body.set('video_name', 'crash');
  body.set('index', 'true');
  const path = await makeVideo({ seconds: 90, width: 640, height: 360 });
  body.set('file', new Blob([new Uint8Array(await readFile(path))], { type: 'video/mp4' }), 'crash.mp4');
  const response = await fetch(`${first.url}/v1/videos/upload`, { method: 'POST', headers: { 'x-api-key': KEY }, body });
  expect(response.status).toBe(200);
  const { video_id: videoId } = (await response.json()) as { video_id: string };

  // Kill it once some segments, but not all, are saved.
  const atKill = await until(
    'a half-indexed video',
    async () => {
      const state = await readState(videoId);
      return state.saved >= 2 ? state : undefined;
    },
    120_000,
  );
  first.child.kill('SIGKILL');
  await new Promise((resolve) => first.child.once('exit', resolve));
  const afterKill = await readState(videoId);
  expect(afterKill.status).toBe('indexing');
  expect(afterKill.planned).toBeGreaterThan(afterKill.saved);
  expect(afterKill.saved).toBeGreaterThanOrEqual(atKill.saved);

  const second = await startChild();
  const done = await until(
    'indexing to finish after the restart',
    async () => {
      const state = await readState(videoId);
      return state.status === 'indexed' || state.status === 'failed' ? state : undefined;
    },
    150_000,
    200,
  );
  expect(done.status).toBe('indexed');

  await withDataDirDatabase(dataDir, async (database) => {
    const store = new VideoStore(database);
    const rows = await store.listSegments(videoId);
    expect(rows.length).toBe(afterKill.planned);
    // Each position once, the ranges contiguous from 0 to the end, none twice.
    expect(rows.map((row) => row.seq)).toEqual(rows.map((_, index) => index));
    expect(rows[0]!.startSeconds).toBe(0);
    for (let index = 1; index < rows.length; index++) expect(rows[index]!.startSeconds).toBeCloseTo(rows[index - 1]!.endSeconds, 6);
    expect(rows.at(-1)!.endSeconds).toBeCloseTo(90, 0);
    expect(new Set(rows.map((row) => `${row.startSeconds}-${row.endSeconds}`)).size).toBe(rows.length);
    // SQLite's full-text index (a separate table kept by triggers) holds each segment once too: a replaced row's
    // old entry was removed. (PostgreSQL's is a generated column of the row itself.)
    if (database.sqlite !== undefined) {
      const hits = database.sqlite
        .prepare<[string], { seq: number }>(
          `SELECT s.seq FROM video_segments_fts f JOIN video_segments s ON s.rowid = f.rowid
           WHERE video_segments_fts MATCH '"text"' AND s.video_id = ?`,
        )
        .all(videoId);
      expect(hits.length).toBe(rows.filter((row) => /text/i.test(row.caption)).length);
      expect(new Set(hits.map((hit) => hit.seq)).size).toBe(hits.length);
    }
    // The job ran twice: the killed attempt and the resumed one.
    const { rows: jobs } = await sql<{
      attempts: number;
      status: string;
    }>`SELECT attempts, status FROM jobs WHERE key = ${`video:${videoId}`}`.execute(database.db);
    expect(jobs[0]).toMatchObject({ attempts: 2 });
  });

  const video = (await (await fetch(`${second.url}/v1/videos/${videoId}`, { headers: { 'x-api-key': KEY } })).json()) as {
    indexing_status: string;
  };
  expect(video.indexing_status).toBe('indexed');
  second.child.kill('SIGTERM');
  await new Promise((resolve) => second.child.once('exit', resolve));
});
