import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { SqlJobQueue } from '../../src/jobs/job-queue.ts';
import { createMediaFetcher } from '../../src/media/fetch-media.ts';
import { OcularError } from '../../src/spec/errors.ts';
import { BlobStore } from '../../src/store/blob-store.ts';
import { VideoStore } from '../../src/store/video-store.ts';
import { VideoLibrary } from '../../src/vision/video-library.ts';
import type { SqlDatabase } from '../../src/store/sql.ts';
import { dropTestStorageFor, openDataDirDatabase } from '../helpers/storage-mode.ts';
import { ffmpegContext, makeVideo, removeMediaFixtures } from '../helpers/media-fixtures.ts';

const dataDir = mkdtempSync(join(tmpdir(), 'ocular-library-'));
let database: SqlDatabase;
let server: Server;
let port: number;
/** Lets the held-back half of the video go, now or as soon as the request arrives. */
let release: () => void = () => undefined;

beforeAll(async () => {
  const bytes = await readFile(await makeVideo({ seconds: 4 }));
  // Sends half the video, then waits for the test to let it finish.
  let released = false;
  let finish: (() => void) | undefined;
  release = () => {
    released = true;
    finish?.();
  };
  server = createServer((_request, response) => {
    response.writeHead(200, { 'content-type': 'video/mp4', 'content-length': bytes.length });
    response.write(bytes.subarray(0, bytes.length / 2));
    finish = () => response.end(bytes.subarray(bytes.length / 2));
    if (released) finish();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
  database = await openDataDirDatabase(dataDir);
});

afterAll(async () => {
  await database?.close();
  await dropTestStorageFor(dataDir);
  await new Promise<void>((resolve) => server?.close(() => resolve()));
  rmSync(dataDir, { recursive: true, force: true });
  removeMediaFixtures();
});

it('answers 404 for the group, and keeps nothing, when the group is deleted while the upload arrives', async () => {
  const store = new VideoStore(database);
  const blobs = new BlobStore(join(dataDir, 'videos'));
  const fetcher = createMediaFetcher({ maxBytes: 1e9, connectTimeoutMs: 5_000, timeoutMs: 30_000, allowHosts: [`127.0.0.1:${port}`] });
  const library = new VideoLibrary({
    store,
    blobs,
    jobs: new SqlJobQueue(database),
    ffmpeg: ffmpegContext,
    uploadFetcher: fetcher,
    maxAttempts: 3,
  });
  try {
    const group = await library.createGroup('owner-1', { name: 'short-lived', metadata: '' });
    const adding = library.addVideo(
      'owner-1',
      {
        source: { kind: 'url', url: `http://127.0.0.1:${port}/clip.mp4` },
        name: 'racing',
        index: false,
        thumbnails: false,
        groupId: group.id,
        startTimestamp: undefined,
        webhookUrl: undefined,
        webhookSecret: undefined,
      },
      new AbortController().signal,
    );
    adding.catch(() => undefined);
    // Generous: the whole suite shares two cores with this test.
    for (let waited = 0; !(existsSync(blobs.root) && readdirSync(blobs.root).length > 0) && waited < 15_000; waited += 10)
      await new Promise((resolve) => setTimeout(resolve, 10));
    await library.deleteGroup('owner-1', group.id, false); // empty so far: deleted without force
    release();
    const error = await adding.then(
      () => undefined,
      (failure: unknown) => failure,
    );
    expect(error).toBeInstanceOf(OcularError);
    expect(error).toMatchObject({ type: 'not_found_error', param: 'group_id' });
    expect(readdirSync(blobs.root)).toEqual([]);
    expect((await library.listVideos('owner-1', { limit: 10, offset: 0 })).total).toBe(0);
  } finally {
    await fetcher.close();
  }
}, 40_000);
