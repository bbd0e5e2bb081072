import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { TEST_BLOBS } from '../helpers/blob-mode.ts';
import { SqlJobQueue } from '../../src/jobs/job-queue.ts';
import { openDataDirDatabase } from '../helpers/storage-mode.ts';
import { makeVideo, removeMediaFixtures } from '../helpers/media-fixtures.ts';
import { startOcular } from '../helpers/ocular.ts';

const dataDir = mkdtempSync(join(tmpdir(), 'ocular-recovery-'));

afterAll(() => {
  rmSync(dataDir, { recursive: true, force: true });
  removeMediaFixtures();
});

// Folders only: in a shared S3 store, a crash's leftovers are found through their claims (s3-blobs.test.ts).
it.skipIf(TEST_BLOBS === 's3')(
  'after an unclean stop, removes half-received uploads and orphan folders, and settles videos whose job ended',
  async () => {
    const config = { indexing: { objects: { enabled: false } } };
    const first = await startOcular(config, { dataDir });
    const body = new FormData();
    body.set('video_name', 'kept');
    body.set('index', 'false');
    body.set('file', new Blob([new Uint8Array(await readFile(await makeVideo({ seconds: 4 })))], { type: 'video/mp4' }), 'kept.mp4');
    const kept = (await (
      await fetch(`${first.url}/v1/videos/upload`, { method: 'POST', headers: { 'x-api-key': first.key }, body })
    ).json()) as {
      video_id: string;
    };
    await first.close();

    // What a crash could leave: a partial upload, a folder whose row was never written, and a video still marked
    // indexing whose job failed when its worker died on the last attempt.
    const videos = join(dataDir, 'videos');
    mkdirSync(join(videos, '.incoming'), { recursive: true });
    writeFileSync(join(videos, '.incoming', 'partial.upload'), 'half of a video');
    const orphan = join(videos, randomUUID());
    mkdirSync(orphan);
    writeFileSync(join(orphan, 'source'), 'bytes without a row');
    const database = await openDataDirDatabase(dataDir);
    const jobs = new SqlJobQueue(database);
    const job = await jobs.enqueue('video.index', { videoId: kept.video_id }, { maxAttempts: 1 });
    await jobs.claim('gone-worker', ['video.index'], 1);
    await new Promise((resolve) => setTimeout(resolve, 5));
    await jobs.recoverExpired();
    expect((await jobs.get(job.id))?.status).toBe('failed');
    await database.db
      .updateTable('videos')
      .set({ status: 'indexing', index_requested: 1, job_id: job.id })
      .where('id', '=', kept.video_id)
      .execute();
    await database.close();

    const second = await startOcular(config, { dataDir });
    try {
      expect(existsSync(join(videos, '.incoming', 'partial.upload'))).toBe(false);
      expect(existsSync(orphan)).toBe(false);
      expect(existsSync(join(videos, kept.video_id, 'source'))).toBe(true);
      const video = (await (await second.get(`/v1/videos/${kept.video_id}`)).json()) as { indexing_status: string; error?: string };
      expect(video.indexing_status).toBe('failed');
      expect(video.error).toMatch(/lease expired/);
    } finally {
      await second.close();
    }
  },
  60_000,
);
