// Rows of the video library written straight through the store, for tests of what reads them (search,
// embeddings): indexing itself is tested on real videos elsewhere.
import { randomUUID } from 'node:crypto';
import type { Job } from '../../src/jobs/job-queue.ts';
import type { JobHandler } from '../../src/jobs/job-runner.ts';
import type { SegmentRecord, VideoStore } from '../../src/store/video-store.ts';

export interface FixtureSegment extends Partial<Omit<SegmentRecord, 'videoId' | 'seq'>> {
  /** Seconds; segments follow one another from 0. @default 5 */
  seconds?: number;
}

export interface FixtureVideo {
  groupId?: string;
  name?: string;
  status?: 'indexed' | 'indexing';
  startTimestamp?: string | null;
}

/** Inserts a video of `owner` (in its default group unless told) with one segment per entry; returns its id. */
export async function insertIndexedVideo(
  store: VideoStore,
  owner: string,
  segments: readonly FixtureSegment[],
  video: FixtureVideo = {},
): Promise<string> {
  const id = randomUUID();
  await store.ensureDefaultGroup(owner);
  await store.insertVideo({
    id,
    owner,
    groupId: video.groupId ?? 'default',
    name: video.name ?? 'synthetic',
    status: video.status ?? 'indexed',
    indexRequested: true,
    thumbnails: false,
    metadata: null,
    startTimestamp: video.startTimestamp ?? null,
    webhookUrl: null,
    webhookSecret: null,
  });
  let start = 0;
  for (const [seq, { seconds = 5, ...fields }] of segments.entries()) {
    await store.saveSegment({
      videoId: id,
      seq,
      startSeconds: start,
      endSeconds: start + seconds,
      keyframes: [],
      ocrText: '',
      objects: [],
      labels: [],
      transcript: '',
      speech: [],
      hasSpeech: null,
      caption: '',
      thumbnail: null,
      ...fields,
    });
    start += seconds;
  }
  return id;
}

/** Runs a job handler once, as a runner would, on a job of `kind` with `payload`. */
export async function runJobOnce(
  handler: JobHandler,
  kind: string,
  payload: Job['payload'],
  signal = new AbortController().signal,
): Promise<void> {
  const now = new Date();
  const job: Job = {
    id: `test-${randomUUID()}`,
    kind,
    key: null,
    payload,
    status: 'running',
    attempts: 1,
    maxAttempts: 3,
    progress: 0,
    runAt: now,
    createdAt: now,
    updatedAt: now,
  };
  await handler(job, { signal, reportProgress: () => undefined, heartbeat: () => undefined });
}
