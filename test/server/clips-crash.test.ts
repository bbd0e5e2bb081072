// Crash safety of clip jobs, as vision-crash.test.ts does for indexing: the server runs as a child process, is
// killed with SIGKILL while a clip job is rendering (one output done, the next one half rendered), and is
// started again on the same data directory. The job must resume: keep the recorded output, drop the half
// render, render the rest and complete.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, expect, it } from 'vitest';
import { ClipStore, type ClipRecord } from '../../src/store/clip-store.ts';
import { sql } from 'kysely';
import { VideoStore } from '../../src/store/video-store.ts';
import { probeMedia } from '../../src/media/video.ts';
import { ffmpegContext, makeVideo, removeMediaFixtures } from '../helpers/media-fixtures.ts';
import { openDataDirDatabase, testStorageFor, withDataDirDatabase } from '../helpers/storage-mode.ts';

const KEY = 'ocu_clip_crash_test_key_012345';
const BIN = fileURLToPath(new URL('../../bin/ocular.js', import.meta.url));
const dataDir = mkdtempSync(join(tmpdir(), 'ocular-clip-crash-'));
const children: ChildProcess[] = [];

afterAll(() => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  rmSync(dataDir, { recursive: true, force: true });
  removeMediaFixtures();
});

async function startChild(): Promise<{ child: ChildProcess; url: string }> {
  const configPath = join(dataDir, 'ocular.config.json');
  const storage = await testStorageFor(dataDir);
  writeFileSync(
    configPath,
    JSON.stringify({
      ...(storage === undefined ? {} : { storage }),
      indexing: { objects: { enabled: false }, vad: { enabled: false }, labels: { enabled: false } },
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

async function readClip(id: string): Promise<ClipRecord | undefined> {
  const database = await openDataDirDatabase(dataDir);
  try {
    return await new ClipStore(database).getById(id);
  } finally {
    await database.close();
  }
}

async function until<T>(what: string, check: () => Promise<T | undefined>, timeoutMs: number, everyMs = 20): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}

it('resumes a clip job after kill -9 mid-render and completes it', { timeout: 240_000 }, async () => {
  const first = await startChild();
  const form = new FormData();
  form.set('video_name', 'crash');
  form.set('index', 'false');
  form.set(
    'file',
    new Blob([new Uint8Array(await readFile(await makeVideo({ seconds: 90, width: 640, height: 360 })))], { type: 'video/mp4' }),
    'c.mp4',
  );
  const uploaded = await fetch(`${first.url}/v1/videos/upload`, { method: 'POST', headers: { 'x-api-key': KEY }, body: form });
  expect(uploaded.status).toBe(200);
  const { video_id: videoId } = (await uploaded.json()) as { video_id: string };
  // Index rows written straight in: "scene" every other 15 s, so the search returns three separate moments.
  await withDataDirDatabase(dataDir, async (database) => {
    const store = new VideoStore(database);
    for (let seq = 0; seq < 6; seq++) {
      const text = seq % 2 === 0 ? `scene number ${seq}` : 'pause';
      await store.saveSegment({
        videoId,
        seq,
        startSeconds: seq * 15,
        endSeconds: (seq + 1) * 15,
        keyframes: [],
        ocrText: text,
        objects: [],
        labels: [],
        transcript: `words spoken during ${text} `.repeat(6),
        speech: [],
        hasSpeech: null,
        caption: text,
        thumbnail: null,
      });
    }
    await store.updateVideo(videoId, { status: 'indexed', stage: 'done', progress: 1 });
  });

  const created = await fetch(`${first.url}/v1/clips`, {
    method: 'POST',
    headers: { 'x-api-key': KEY, 'content-type': 'application/json' },
    body: JSON.stringify({
      video_ids: [videoId],
      prompt: 'scene',
      generation_config: { num_generations: 3, min_duration_seconds: 25, max_duration_seconds: 25 },
      rendering_config: { aspect_ratio: '9:16', resolution: 480, subtitles: true },
    }),
  });
  expect(created.status).toBe(200);
  const { id } = (await created.json()) as { id: string };

  // Kill it once the first output is recorded and the second is being rendered.
  const atKill = await until(
    'an output recorded and the next one rendering',
    async () => {
      const clip = await readClip(id);
      return clip && clip.outputs.length >= 1 && clip.outputs.length < 3 && clip.stage === 'rendering' ? clip : undefined;
    },
    150_000,
  );
  first.child.kill('SIGKILL');
  await new Promise((resolve) => first.child.once('exit', resolve));
  const afterKill = (await readClip(id))!;
  expect(afterKill.status).toBe('processing');
  expect(afterKill.outputs.length).toBeLessThan(3);
  const kept = afterKill.outputs[0]!;
  const keptPath = join(dataDir, 'clips', id, kept.file);
  const keptMtime = statSync(keptPath).mtimeMs;
  expect(atKill.plan).toHaveLength(3);

  const second = await startChild();
  const done = await until(
    'the clip to finish after the restart',
    async () => {
      const clip = await readClip(id);
      return clip?.status === 'completed' || clip?.status === 'failed' ? clip : undefined;
    },
    150_000,
    200,
  );
  expect(done.status, done.error ?? '').toBe('completed');
  expect(done.outputs.map((output) => output.index).sort()).toEqual([0, 1, 2]);
  // The same plan, and the output finished before the crash was not rendered again.
  expect(done.plan).toEqual(atKill.plan);
  expect(statSync(keptPath).mtimeMs).toBe(keptMtime);
  // Only the three outputs are left in the folder: the killed render's scratch files are gone.
  expect(readdirSync(join(dataDir, 'clips', id)).sort()).toEqual(['output-0.mp4', 'output-1.mp4', 'output-2.mp4']);
  for (const output of done.outputs) {
    const probe = await probeMedia(join(dataDir, 'clips', id, output.file), ffmpegContext);
    expect(probe.video).toMatchObject({ width: 270, height: 480 });
    expect(probe.durationSeconds).toBeGreaterThan(24.8);
    expect(probe.durationSeconds).toBeLessThan(25.2);
  }
  const { rows: jobs } = await withDataDirDatabase(dataDir, (database) =>
    sql<{ attempts: number; status: string }>`SELECT attempts, status FROM jobs WHERE key = ${`clip:${id}`}`.execute(database.db),
  );
  expect(jobs[0]).toMatchObject({ attempts: 2, status: 'succeeded' });

  const wire = (await (await fetch(`${second.url}/v1/clips/${id}`, { headers: { 'x-api-key': KEY } })).json()) as {
    status: string;
    output: unknown[];
  };
  expect(wire.status).toBe('completed');
  expect(wire.output).toHaveLength(3);
  second.child.kill('SIGTERM');
  await new Promise((resolve) => second.child.once('exit', resolve));
});
