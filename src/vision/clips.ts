import { randomUUID } from 'node:crypto';
import { basename } from 'node:path';
import type { JobQueue } from '../jobs/job-queue.ts';
import { OcularError, validationError } from '../spec/errors.ts';
import type { ClipBlobStore, ClipRecord, ClipRequest, ClipStatus, ClipStore } from '../store/clip-store.ts';
import type { BlobSource } from '../store/object-store.ts';
import { isVideoId } from '../store/blob-store.ts';
import type { Page, VideoRecord } from '../store/video-store.ts';
import type { VideoLibrary } from './video-library.ts';
import { LocalChangeFeed, type ChangeFeed } from '../store/change-feed.ts';

/** The job kind that makes one clip request's outputs; its payload is `{ clipId }`. */
export const CLIP_JOB = 'clip.generate';

/** What the clip job reports as it goes, and what `GET /v1/clips/{id}/events` streams. */
export interface ClipEvent {
  clipId: string;
  status: ClipStatus;
  stage: string | null;
  /** 0..1 */
  progress: number;
  error: string | null;
}

export type ClipListener = (event: ClipEvent) => void;

/** A request as the edge validated it: videos by library id or by URL (exactly one of the two lists). */
export interface NewClipRequest extends Omit<ClipRequest, 'videoIds' | 'videoUrls'> {
  videoIds?: readonly string[] | undefined;
  videoUrls?: readonly string[] | undefined;
}

export interface ClipServiceOptions {
  store: ClipStore;
  blobs: ClipBlobStore;
  jobs: JobQueue;
  /** Videos by URL are added (fetched, stored, indexed) through the library, like uploads by URL. */
  library: VideoLibrary;
  /** Attempts a clip job gets. */
  maxAttempts: number;
  /** Clips one owner may have queued or processing at once; more are answered 429. @default MAX_UNFINISHED_PER_OWNER */
  maxUnfinishedPerOwner?: number | undefined;
  /** Requests with `video_urls` downloading at once (they count like uploads); more are answered 429. @default 8 */
  maxConcurrentFetches?: number | undefined;
  /** Tells other processes (API processes streaming a clip's events) that a clip changed. @default this process only */
  changes?: ChangeFeed | undefined;
}

/** The change-feed topic of a clip. */
const clipTopic = (clipId: string): string => `clip:${clipId}`;

/** What event streams on a clip say last when it is deleted (in any process). */
export function deletedClipEvent(clipId: string, progress: number): ClipEvent {
  return { clipId, status: 'failed', stage: 'deleted', progress, error: 'the clip was deleted' };
}

/** Rendering is one job at a time: a deep queue per owner only delays everyone else's clips. */
export const MAX_UNFINISHED_PER_OWNER = 16;

/** What a client turned away by the unfinished-clip bound is told to wait. */
const RETRY_AFTER_SECONDS = 30;

/** How long deleting a clip waits for its running job to notice the cancellation (ffmpeg is killed at once). */
const JOB_STOP_WAIT_MS = 10_000;

function notFound(id: string): OcularError {
  return new OcularError('not_found_error', `no clip with id "${id}"`);
}

/** A name for a video added by URL: the last path segment, else the host. */
function nameFromUrl(url: string): string {
  try {
    const parsed = new URL(url);
    const last = decodeURIComponent(basename(parsed.pathname));
    return (last === '' || last === '/' ? parsed.hostname : last).slice(0, 512);
  } catch {
    return 'video';
  }
}

/**
 * Clip generation on behalf of one owner: requests become durable jobs (`CLIP_JOB`, clip-job.ts) that choose
 * moments from the index and render them with ffmpeg. This class creates, lists, cancels and deletes them and
 * relays their progress.
 */
export class ClipService {
  readonly #store: ClipStore;
  readonly #blobs: ClipBlobStore;
  readonly #jobs: JobQueue;
  readonly #library: VideoLibrary;
  readonly #maxAttempts: number;
  readonly #maxUnfinished: number;
  readonly #maxFetches: number;
  #fetching = 0;
  readonly #listeners = new Map<string, Set<ClipListener>>();
  readonly #changes: ChangeFeed;

  constructor(options: ClipServiceOptions) {
    this.#changes = options.changes ?? new LocalChangeFeed();
    this.#store = options.store;
    this.#blobs = options.blobs;
    this.#jobs = options.jobs;
    this.#library = options.library;
    this.#maxAttempts = options.maxAttempts;
    this.#maxUnfinished = options.maxUnfinishedPerOwner ?? MAX_UNFINISHED_PER_OWNER;
    this.#maxFetches = options.maxConcurrentFetches ?? 8;
  }

  /**
   * Checks that every video is the owner's (404 naming the entry otherwise), or adds each URL to the owner's
   * library (fetched by the SSRF-safe fetcher and queued for indexing, as `POST /v1/videos/upload` does), then
   * queues the job. Returns at once; the job waits for the videos' indexing.
   */
  async create(owner: string, request: NewClipRequest, signal: AbortSignal): Promise<ClipRecord> {
    if ((await this.#store.countUnfinished(owner)) >= this.#maxUnfinished) {
      throw new OcularError(
        'rate_limit_error',
        `${this.#maxUnfinished} of your clips are still queued or processing; wait for some to finish`,
        {
          retryAfterSeconds: RETRY_AFTER_SECONDS,
        },
      );
    }
    const videoIds: string[] = [];
    const { sourceStartSeconds } = request.generation;
    for (const [index, id] of (request.videoIds ?? []).entries()) {
      const missing = new OcularError('not_found_error', `no video with id "${id}"`, { param: `video_ids.${index}` });
      if (!isVideoId(id)) throw missing;
      let video: VideoRecord;
      try {
        video = await this.#library.getVideo(owner, id);
      } catch {
        throw missing;
      }
      if (video.status === 'failed') {
        throw new OcularError('conflict_error', `video "${id}" failed to index (${video.error ?? 'unknown error'}); upload it again`, {
          param: `video_ids.${index}`,
        });
      }
      const duration = video.metadata?.durationSeconds;
      if (duration !== undefined && sourceStartSeconds !== null && sourceStartSeconds >= duration) {
        throw validationError(
          `source_start_time (${sourceStartSeconds} s) is not before the end of the video (${Math.round(duration * 1000) / 1000} s)`,
          'generation_config.source_start_time',
        );
      }
      if (!videoIds.includes(id)) videoIds.push(id);
    }
    const urls = request.videoUrls ?? [];
    if (urls.length > 0 && this.#fetching >= this.#maxFetches) {
      throw new OcularError('rate_limit_error', `${this.#maxFetches} requests are downloading videos; try again shortly`, {
        retryAfterSeconds: 5,
      });
    }
    if (urls.length > 0) this.#fetching += 1;
    try {
      await this.#addUrls(owner, urls, videoIds, signal);
    } finally {
      if (urls.length > 0) this.#fetching -= 1;
    }
    const { videoIds: _ids, videoUrls: _urls, ...rest } = request;
    const id = randomUUID();
    await this.#store.insert({ id, owner, request: { ...rest, videoIds, videoUrls: [...urls] } });
    const job = await this.#jobs.enqueue(CLIP_JOB, { clipId: id }, { key: `clip:${id}`, maxAttempts: this.#maxAttempts });
    await this.#store.update(id, { jobId: job.id });
    return (await this.#store.getById(id))!;
  }

  /** Adds each URL to the owner's library (one at a time: each download is already bounded by the upload limit). */
  async #addUrls(owner: string, urls: readonly string[], videoIds: string[], signal: AbortSignal): Promise<void> {
    for (const [index, url] of urls.entries()) {
      try {
        const video = await this.#library.addVideo(
          owner,
          {
            source: { kind: 'url', url },
            name: nameFromUrl(url),
            index: true,
            thumbnails: false,
            groupId: 'default',
            startTimestamp: undefined,
            webhookUrl: undefined,
            webhookSecret: undefined,
          },
          signal,
        );
        videoIds.push(video.id);
      } catch (error) {
        // Name the list entry, not the upload form's field.
        if (error instanceof OcularError && error.param === 'video_url') {
          throw new OcularError(error.type, error.message, { param: `video_urls.${index}`, cause: error });
        }
        throw error;
      }
    }
  }

  async get(owner: string, id: string): Promise<ClipRecord> {
    const clip = isVideoId(id) ? await this.#store.get(owner, id) : undefined;
    if (!clip) throw notFound(id);
    return clip;
  }

  list(owner: string, limit: number, offset: number): Promise<Page<ClipRecord>> {
    return this.#store.list(owner, limit, offset);
  }

  /** Where a rendered output is downloaded from, for its signed URL; undefined when the clip or that output does not exist. */
  async outputSource(clipId: string, index: number): Promise<BlobSource | undefined> {
    if (!isVideoId(clipId)) return undefined;
    const output = (await this.#store.getById(clipId))?.outputs.find((entry) => entry.index === index);
    return output === undefined ? undefined : this.#blobs.outputSource(clipId, output.index);
  }

  /** Cancels the job (a running render's ffmpeg is killed), waits briefly for it to stop, then removes the clip and its files. */
  async delete(owner: string, id: string): Promise<void> {
    const clip = await this.get(owner, id);
    if (clip.jobId !== null && (await this.#jobs.cancel(clip.jobId))?.status === 'running') await this.#jobStopped(clip.jobId);
    await this.#blobs.hold(id, async () => {
      await this.#store.remove(owner, id);
      await this.#blobs.removeClip(id);
    });
    const event = deletedClipEvent(id, clip.progress);
    for (const listener of this.#listeners.get(id) ?? []) listener(event);
    this.#listeners.delete(id);
    this.#changes.publish(clipTopic(id));
  }

  async #jobStopped(jobId: string): Promise<void> {
    const deadline = Date.now() + JOB_STOP_WAIT_MS;
    while ((await this.#jobs.get(jobId))?.status === 'running' && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  }

  /**
   * After a crash: removes folders of clips that no longer exist, and settles clips whose job ended without
   * them hearing of it (failed with the job's reason, or queued again when no job is left). Returns how many
   * changed.
   */
  async recover(): Promise<{ removedFolders: number; settledClips: number }> {
    const orphans = await this.#blobs.orphanFolders((id) => this.#store.has(id));
    for (const id of orphans) await this.#blobs.removeClip(id);
    const abandoned = await this.recoverAbandoned();
    return { removedFolders: orphans.length + abandoned, settledClips: await this.settle() };
  }

  /** With a blob store: removes the outputs a process that stopped mid-delete left, when the clip is gone. */
  recoverAbandoned(): Promise<number> {
    return this.#blobs.recoverAbandoned((id) => this.#store.has(id));
  }

  async settle(): Promise<number> {
    let settled = 0;
    for (const clip of await this.#store.unfinished()) {
      const job = clip.jobId === null ? undefined : await this.#jobs.get(clip.jobId);
      if (job?.status === 'queued' || job?.status === 'running' || job?.status === 'succeeded') continue;
      if (job?.status === 'failed' || job?.status === 'cancelled') {
        await this.report(clip.id, {
          status: 'failed',
          stage: 'failed',
          progress: clip.progress,
          error: job.error ?? 'clip generation failed',
        });
      } else {
        const requeued = await this.#jobs.enqueue(
          CLIP_JOB,
          { clipId: clip.id },
          { key: `clip:${clip.id}`, maxAttempts: this.#maxAttempts },
        );
        await this.#store.update(clip.id, { jobId: requeued.id });
      }
      settled += 1;
    }
    return settled;
  }

  // ---- progress ----

  /** Calls `notice` when any process changed the clip (a worker rendering it), until the returned function is called. */
  watch(clipId: string, notice: () => void): () => void {
    return this.#changes.subscribe(clipTopic(clipId), notice);
  }

  subscribe(clipId: string, listener: ClipListener): () => void {
    let listeners = this.#listeners.get(clipId);
    if (!listeners) {
      listeners = new Set();
      this.#listeners.set(clipId, listeners);
    }
    listeners.add(listener);
    return () => {
      listeners.delete(listener);
      if (listeners.size === 0 && this.#listeners.get(clipId) === listeners) this.#listeners.delete(clipId);
    };
  }

  /** Records the job's progress and tells subscribers. False when the clip is gone. */
  async report(
    clipId: string,
    update: { status: ClipStatus; stage: string | null; progress: number; error?: string | null },
  ): Promise<boolean> {
    const progress = Math.min(1, Math.max(0, update.progress));
    const error = update.error ?? null;
    if (!(await this.#store.update(clipId, { status: update.status, stage: update.stage, progress, error }))) return false;
    const event: ClipEvent = { clipId, status: update.status, stage: update.stage, progress, error };
    for (const listener of this.#listeners.get(clipId) ?? []) listener(event);
    this.#changes.publish(clipTopic(clipId));
    return true;
  }
}
