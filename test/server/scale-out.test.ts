// Scale-out end to end: two API processes and two workers (`ocular serve --role api|worker`, separate Node
// processes) on one PostgreSQL database, one Redis queue and one S3 bucket (s3rver), each process with a data
// directory of its own, so nothing passes through a shared file system. A video uploaded through one API process
// is followed through the other's event stream; the worker indexing it is killed with SIGKILL mid-way; the other
// worker takes the job over; the video ends indexed with every segment of its plan once; search and QA answer the
// same from both API processes, and a URL one signed downloads (with ranges) from the other.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, expect, it } from 'vitest';
import { VideoStore, type SegmentRecord } from '../../src/store/video-store.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/databases.ts';
import { sendJson, type RecordedRequest } from '../helpers/fake-upstream.ts';
import { makeVideo, removeMediaFixtures } from '../helpers/media-fixtures.ts';
import { captionOnlyIndexing, completion, startOpenAiUpstream } from '../helpers/openai-upstream.ts';
import { deleteKeys, TEST_REDIS_URL, testKeyPrefix } from '../helpers/redis.ts';
import { startTestS3, type TestS3 } from '../helpers/s3.ts';
import { S3Blobs } from '../../src/store/object-store.ts';

const KEY = 'ocu_scale_out_test_key_0123456789';
const BIN = fileURLToPath(new URL('../../bin/ocular.js', import.meta.url));
/** Each caption takes this long upstream, so the kill lands while segments are still being written. */
const CAPTION_DELAY_MS = 1_500;

const dataDir = mkdtempSync(join(tmpdir(), 'ocular-scale-out-'));
const prefix = testKeyPrefix();
const children: ChildProcess[] = [];
let database: TestDatabase | undefined;
let upstream: Awaited<ReturnType<typeof startOpenAiUpstream>> | undefined;
let s3: TestS3 | undefined;

afterAll(async () => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  await upstream?.close();
  await database?.drop();
  await deleteKeys(prefix);
  await s3?.close();
  rmSync(dataDir, { recursive: true, force: true });
  removeMediaFixtures();
});

interface Child {
  process: ChildProcess;
  url: string;
  exited: Promise<void>;
  dataDir: string;
}

/** Starts `ocular serve --role <role>` on a free port; resolves once its log says it listens. */
async function serve(role: 'api' | 'worker', configPath: string, name: string): Promise<Child> {
  const child = spawn(
    process.execPath,
    [BIN, 'serve', '--role', role, '--host', '127.0.0.1', '--port', '0', '--data', join(dataDir, name), '--config', configPath],
    { env: { ...process.env, OCULAR_API_KEYS: KEY, OCULAR_LOG_LEVEL: 'info' }, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  children.push(child);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const lines = createInterface({ input: child.stderr! });
  const log: string[] = [];
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the ${role} process did not start in 30 s:\n${log.join('\n')}`)), 30_000);
    lines.on('line', (line) => {
      log.push(line);
      if (!line.includes('ocular is listening')) return;
      clearTimeout(timer);
      resolve((JSON.parse(line) as { url: string }).url);
    });
    child.once('exit', (code) => reject(new Error(`the ${role} process exited with ${code}:\n${log.join('\n')}`)));
  });
  return { process: child, url, exited, dataDir: join(dataDir, name) };
}

async function until<T>(what: string, check: () => Promise<T | undefined>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

const headers = { 'x-api-key': KEY, 'content-type': 'application/json' };

it('indexes on two workers behind two API processes, through a kill -9, with every segment once', { timeout: 240_000 }, async () => {
  database = await createTestDatabase('postgres', dataDir);
  upstream = await startOpenAiUpstream();
  s3 = await startTestS3();
  upstream.behave(async (request: RecordedRequest, response) => {
    const text = JSON.stringify(request.body);
    if (text.includes('questions about one video')) return sendJson(response, 200, completion('A test pattern plays throughout [00:05].'));
    await new Promise((resolve) => setTimeout(resolve, CAPTION_DELAY_MS));
    sendJson(response, 200, completion('A colourful test pattern with a moving counter.'));
  });
  const configPath = join(dataDir, 'ocular.config.json');
  writeFileSync(
    configPath,
    JSON.stringify({
      storage: database.storage,
      queue: { kind: 'redis', url: TEST_REDIS_URL, prefix },
      blobs: s3.settings,
      models: [{ id: 'vision', provider: 'openai-compatible', baseUrl: `${upstream.url}/v1`, model: 'vision', maxRetries: 0 }],
      indexing: captionOnlyIndexing('vision', { minSegmentSeconds: 2, maxSegmentSeconds: 4 }),
    }),
  );
  const [api1, api2, worker1] = await Promise.all([
    serve('api', configPath, 'api1'),
    serve('api', configPath, 'api2'),
    serve('worker', configPath, 'worker1'),
  ]);

  // Upload through one API process ...
  const form = new FormData();
  const videoBytes = await readFile(await makeVideo({ seconds: 60 }));
  form.set('video_name', 'scale-out');
  form.set('index', 'true');
  form.set('file', new Blob([new Uint8Array(videoBytes)], { type: 'video/mp4' }), 'v.mp4');
  const uploaded = await fetch(`${api1.url}/v1/videos/upload`, { method: 'POST', headers: { 'x-api-key': KEY }, body: form });
  expect(uploaded.status).toBe(200);
  const { video_id: videoId } = (await uploaded.json()) as { video_id: string };
  // ... and follow its indexing through the other.
  const events = await fetch(`${api2.url}/v1/videos/${videoId}/events`, { headers: { 'x-api-key': KEY } });
  expect(events.status).toBe(200);
  const streamed = events.text();

  const opened = await database.open();
  const store = new VideoStore(opened);
  // The only worker so far takes the job; a second one joins while it runs.
  await until(
    'the first worker to take the job',
    async () => ((await store.getVideoById(videoId))?.status === 'indexing' ? true : undefined),
    60_000,
  );
  const worker2 = await serve('worker', configPath, 'worker2');
  // Kill the first worker once some segments, not all, are written.
  const atKill = await until(
    'a half-indexed video',
    async () => {
      const saved = await store.countSegments(videoId);
      return saved >= 2 ? saved : undefined;
    },
    90_000,
  );
  worker1.process.kill('SIGKILL');
  await worker1.exited;
  const video = (await store.getVideoById(videoId))!;
  const planned = (JSON.parse(video.plan!) as { segments: unknown[] }).segments.length;
  expect(video.status).toBe('indexing');
  expect(atKill).toBeLessThan(planned);

  // The event stream on the other API process ends with the video indexed, its progress never going back.
  const text = await streamed;
  const progress = [...text.matchAll(/"indexing_progress":([0-9.]+)/g)].map((match) => Number(match[1]));
  expect(progress).toEqual([...progress].sort((a, b) => a - b));
  expect(text).toMatch(/event: done\ndata: .*"indexing_status":"indexed"/);

  // Every segment of the plan once, contiguous from the start.
  const rows: SegmentRecord[] = await store.listSegments(videoId);
  expect(rows.map((row) => row.seq)).toEqual(Array.from({ length: planned }, (_, index) => index));
  expect(rows[0]!.startSeconds).toBe(0);
  for (let index = 1; index < rows.length; index++) expect(rows[index]!.startSeconds).toBeCloseTo(rows[index - 1]!.endSeconds, 6);
  expect(rows.every((row) => row.caption.includes('test pattern'))).toBe(true);
  await opened.close();

  // Search and QA answer from either API process, the same.
  const answers = [];
  for (const api of [api1, api2]) {
    const search = await fetch(`${api.url}/v1/videos/search`, {
      method: 'POST',
      headers,
      body: JSON.stringify({ query: 'colourful test pattern', max_results: 50 }),
    });
    expect(search.status).toBe(200);
    const found = (await search.json()) as { results: Array<{ video_id: string; start_timestamp: number }> };
    expect(found.results.length).toBeGreaterThan(0);
    expect(found.results.every((hit) => hit.video_id === videoId)).toBe(true);
    const qa = await fetch(`${api.url}/v1/qa/chat`, {
      method: 'POST',
      headers,
      body: JSON.stringify({ video_id: videoId, messages: [{ role: 'user', content: 'What is shown?' }] }),
    });
    expect(qa.status).toBe(200);
    answers.push({ search: found.results.map((hit) => hit.start_timestamp), qa: await qa.json() });
  }
  expect(answers[1]).toEqual(answers[0]);
  expect(answers[0]!.qa).toEqual({ chat_response: 'A test pattern plays throughout [00:05].', status: 'success' });

  // The blobs are in the bucket, none is left in any process's data directory, and a URL api1 signed
  // downloads from api2, ranges included.
  const bucket = new S3Blobs(s3.settings).within('videos');
  expect((await bucket.list(videoId)).sort()).toEqual(['keyframes', 'source', 'thumbnail.jpg']);
  expect((await bucket.list(`${videoId}/keyframes`)).length).toBeGreaterThanOrEqual(planned);
  bucket.close();
  // worker1 was killed mid-job: its working copy stays until it starts again, which clears it.
  expect(existsSync(join(worker1.dataDir, 'videos', videoId))).toBe(true);
  const restarted = await serve('worker', configPath, 'worker1');
  for (const child of [api1, api2, worker2, restarted]) expect(existsSync(join(child.dataDir, 'videos', videoId))).toBe(false);
  const { url } = (await (await fetch(`${api1.url}/v1/videos/${videoId}`, { headers })).json()) as { url: string };
  const signed = new URL(url);
  const part = await fetch(`${api2.url}${signed.pathname}${signed.search}`, { headers: { range: 'bytes=1000-1999' } });
  expect(part.status).toBe(206);
  expect(Buffer.from(await part.arrayBuffer()).equals(videoBytes.subarray(1000, 2000))).toBe(true);

  for (const child of [api1, api2, worker2, restarted]) child.process.kill('SIGTERM');
  await Promise.all([api1.exited, api2.exited, worker2.exited, restarted.exited]);
});
