import { randomUUID } from 'node:crypto';
import { rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { FfmpegContext } from '../media/binaries.ts';
import type { MediaFetcher } from '../media/fetch-media.ts';
import { Scratch } from '../media/scratch.ts';
import { sniffFile } from '../media/sniff.ts';
import { extractFramesAt, probeMedia, type MediaProbe } from '../media/video.ts';
import type { JobQueue } from '../jobs/job-queue.ts';
import { OcularError } from '../spec/errors.ts';
import { SOURCE_FILE, THUMBNAIL_FILE, type BlobStore } from '../store/blob-store.ts';
import { LocalChangeFeed, type ChangeFeed } from '../store/change-feed.ts';
import { isForeignKeyViolation } from '../store/sql.ts';
import {
  DEFAULT_GROUP_ID,
  type GroupPatch,
  type GroupRecord,
  type IndexingStatus,
  type ListVideosFilter,
  type Page,
  type SegmentRecord,
  type VideoMetadata,
  type VideoRecord,
  type VideoStore,
} from '../store/video-store.ts';

/** Where multipart uploads stream to inside the blob root before they become a video (same file system). */
export const INCOMING_DIR = '.incoming';

/** The job kind that indexes one video; its payload is `{ videoId }`. */
export const INDEX_VIDEO_JOB = 'video.index';

/** What the indexer reports as it goes, and what `GET /v1/videos/{id}/events` streams. */
export interface IndexingEvent {
  videoId: string;
  status: IndexingStatus;
  /** e.g. `scanning`, `audio`, `analyzing`, `done` */
  stage: string | null;
  /** 0..1 */
  progress: number;
  error: string | null;
}

export type IndexingListener = (event: IndexingEvent) => void;

/** Where an upload's bytes are: a file the server already received, or a URL to fetch. */
/** `stored`: the file is already the video's source in the blob store (uploaded while it was received). */
export type UploadSource = { kind: 'file'; path: string; stored?: boolean } | { kind: 'url'; url: string };

export interface UploadRequest {
  /** The new video's id when the caller chose it (to store the upload under it while it arrives). @default a new UUID */
  id?: string | undefined;
  source: UploadSource;
  name: string;
  index: boolean;
  thumbnails: boolean;
  groupId: string;
  startTimestamp: string | undefined;
  webhookUrl: string | undefined;
  webhookSecret: string | undefined;
}

export interface NewGroupRequest {
  name: string;
  metadata: string;
  webhookUrl?: string | undefined;
  webhookSecret?: string | undefined;
}

export interface VideoLibraryOptions {
  store: VideoStore;
  blobs: BlobStore;
  jobs: JobQueue;
  ffmpeg: FfmpegContext;
  /** Fetches `video_url` uploads (SSRF-safe, capped at the upload limit). */
  uploadFetcher: MediaFetcher;
  /** Attempts an indexing job gets. */
  maxAttempts: number;
  /** Tells other processes (API processes streaming a video's events) that a video changed. @default this process only */
  changes?: ChangeFeed | undefined;
}

/** What event streams on a video say last when it is deleted (in any process). */
export function deletedEvent(videoId: string, progress: number): IndexingEvent {
  return { videoId, status: 'failed', stage: 'deleted', progress, error: 'the video was deleted' };
}

/** The change-feed topic of a video. */
const videoTopic = (videoId: string): string => `video:${videoId}`;

/** How long deleting a video waits for its running indexing job to notice the cancellation. */
const JOB_STOP_WAIT_MS = 10_000;

/** The video's frame shown in lists: a little way in, past black lead-in frames. */
function thumbnailTime(durationSeconds: number): number {
  return Math.min(1, durationSeconds / 10);
}

function toMetadata(probe: MediaProbe, sizeBytes: number, mediaType: string): VideoMetadata {
  const video = probe.video!;
  return {
    mediaType,
    durationSeconds: video.durationSeconds ?? probe.durationSeconds,
    width: video.width,
    height: video.height,
    avgFps: video.averageFps ?? 0,
    codec: video.codec,
    sizeBytes,
    hasAudio: probe.audio !== undefined,
    hasThumbnail: false,
  };
}

function notFound(what: string, id: string, param?: string): OcularError {
  return new OcularError('not_found_error', `no ${what} with id "${id}"`, { param });
}

/**
 * The video library: groups, uploads and their indexing state, always on behalf of one owner. Indexing itself
 * runs as durable jobs (`INDEX_VIDEO_JOB`); this class enqueues and cancels them and relays their progress.
 */
export class VideoLibrary {
  readonly #store: VideoStore;
  readonly #blobs: BlobStore;
  readonly #jobs: JobQueue;
  readonly #ffmpeg: FfmpegContext;
  readonly #fetcher: MediaFetcher;
  readonly #maxAttempts: number;
  readonly #listeners = new Map<string, Set<IndexingListener>>();
  readonly #changes: ChangeFeed;
  /** Each video's last progress write, which the next one waits for. */
  readonly #reports = new Map<string, Promise<boolean>>();

  constructor(options: VideoLibraryOptions) {
    this.#store = options.store;
    this.#blobs = options.blobs;
    this.#jobs = options.jobs;
    this.#ffmpeg = options.ffmpeg;
    this.#fetcher = options.uploadFetcher;
    this.#maxAttempts = options.maxAttempts;
    this.#changes = options.changes ?? new LocalChangeFeed();
  }

  // ---- groups ----

  createGroup(owner: string, request: NewGroupRequest): Promise<GroupRecord> {
    return this.#store.createGroup({ owner, id: randomUUID(), ...request });
  }

  async getGroup(owner: string, id: string): Promise<GroupRecord> {
    const group = await this.#store.getGroup(owner, id);
    if (!group) throw notFound('group', id);
    return group;
  }

  listGroups(owner: string, limit: number, offset: number): Promise<Page<GroupRecord>> {
    return this.#store.listGroups(owner, limit, offset);
  }

  async updateGroup(owner: string, id: string, patch: GroupPatch): Promise<GroupRecord> {
    await this.getGroup(owner, id);
    return (await this.#store.updateGroup(owner, id, patch))!;
  }

  /** A group that holds videos is only deleted with `force`, which deletes its videos too. */
  async deleteGroup(owner: string, id: string, force: boolean): Promise<void> {
    await this.getGroup(owner, id);
    const videoIds = await this.#store.videoIdsInGroup(owner, id);
    if (videoIds.length > 0 && !force) {
      throw new OcularError(
        'conflict_error',
        `the group holds ${videoIds.length} video(s); delete them first or pass ?force=true to delete them with it`,
      );
    }
    for (const videoId of videoIds) await this.deleteVideo(owner, videoId);
    await this.#store.deleteGroup(owner, id);
  }

  // ---- videos ----

  async getVideo(owner: string, id: string): Promise<VideoRecord> {
    const video = await this.#store.getVideo(owner, id);
    if (!video) throw notFound('video', id);
    return video;
  }

  listVideos(owner: string, filter: ListVideosFilter): Promise<Page<VideoRecord>> {
    return this.#store.listVideos(owner, filter);
  }

  /**
   * Adds an upload to the library: moves (or fetches) its bytes into the video's folder, checks they are a
   * video, probes them and cuts a thumbnail, then queues indexing when asked. Returns without waiting for
   * indexing. Bytes that are not a video are refused (415); a video ffprobe cannot read is kept as `failed`.
   */
  async addVideo(owner: string, request: UploadRequest, signal: AbortSignal): Promise<VideoRecord> {
    const group = await this.#store.getGroup(owner, request.groupId);
    if (!group) throw notFound('group', request.groupId, 'group_id');
    const id = request.id ?? randomUUID();
    return this.#blobs.hold(id, () => this.#addVideo(owner, id, group, request, signal));
  }

  async #addVideo(owner: string, id: string, group: GroupRecord, request: UploadRequest, signal: AbortSignal): Promise<VideoRecord> {
    const dir = await this.#blobs.createVideoDir(id);
    const source = this.#blobs.sourcePath(id);
    try {
      if (request.source.kind === 'file') {
        await rename(request.source.path, source);
      } else {
        const scratch = await Scratch.create(dir);
        try {
          const fetched = await this.#fetcher.fetch(request.source.url, 'video_url', scratch, signal);
          await rename(fetched.path, source);
        } finally {
          await scratch.dispose();
        }
      }
      const sniffed = await sniffFile(source);
      if (sniffed?.kind !== 'video') {
        const what = sniffed === undefined ? 'not a recognised media format' : `${sniffed.mediaType}`;
        throw new OcularError('unsupported_media_type', `the upload is not a video (its bytes are ${what})`, {
          param: request.source.kind === 'file' ? 'file' : 'video_url',
        });
      }
      const { size } = await stat(source);
      let metadata: VideoMetadata | null = null;
      let failure: string | null = null;
      try {
        const probe = await probeMedia(source, this.#ffmpeg, signal);
        if (probe.video === undefined) throw new OcularError('unsupported_media_type', 'the file has no video stream');
        metadata = toMetadata(probe, size, sniffed.mediaType);
        if (!(metadata.durationSeconds > 0)) throw new OcularError('unsupported_media_type', 'the video has no duration');
      } catch (error) {
        if (signal.aborted) throw signal.reason;
        failure = `the file could not be read as a video: ${(error as Error).message}`;
        metadata = null;
      }
      // The video's own thumbnail is always cut (one seek); `enable_thumbnails` asks for one per segment as well.
      if (metadata !== null) metadata.hasThumbnail = await this.#writeThumbnail(id, source, metadata, signal);
      // With a blob store the upload goes up before the row exists, so whoever sees the row can read it.
      if (request.source.kind !== 'file' || !request.source.stored) await this.#blobs.persist(id, [SOURCE_FILE], metadata?.mediaType);

      const indexing = request.index && failure === null;
      const video = await this.#store.insertVideo({
        id,
        owner,
        groupId: group.id,
        name: request.name,
        status: failure !== null ? 'failed' : 'pending',
        error: failure,
        indexRequested: request.index,
        thumbnails: request.thumbnails,
        indexingType: request.index ? 'segments' : null,
        metadata,
        startTimestamp: request.startTimestamp ?? null,
        webhookUrl: request.webhookUrl ?? null,
        webhookSecret: request.webhookSecret ?? null,
      });
      // The working copy goes: a worker (maybe on another machine) fetches the video from the store.
      await this.#blobs.dropLocal(id);
      if (!indexing) return video;
      const job = await this.#jobs.enqueue(INDEX_VIDEO_JOB, { videoId: id }, { key: `video:${id}`, maxAttempts: this.#maxAttempts });
      await this.#store.updateVideo(id, { jobId: job.id });
      return (await this.#store.getVideoById(id))!;
    } catch (error) {
      await this.#blobs.removeVideo(id);
      // The group was deleted while the upload was being received: the row's foreign key has nothing to point at.
      if (isForeignKeyViolation(error)) throw notFound('group', request.groupId, 'group_id');
      throw error;
    }
  }

  async #writeThumbnail(id: string, source: string, metadata: VideoMetadata, signal: AbortSignal): Promise<boolean> {
    try {
      const [frame] = await extractFramesAt(source, [thumbnailTime(metadata.durationSeconds)], { maxSide: 640 }, this.#ffmpeg, signal);
      if (!frame) return false;
      await this.#blobs.write(id, THUMBNAIL_FILE, frame.jpeg, 'image/jpeg');
      return true;
    } catch {
      if (signal.aborted) throw signal.reason;
      return false; // a video whose first second does not decode still gets indexed; it just has no thumbnail
    }
  }

  /**
   * Cancels its indexing and waits (briefly) for a running job to stop, so nothing writes into the video's
   * folder afterwards; then removes its rows, index entries and blobs. Event streams on it end.
   */
  async deleteVideo(owner: string, id: string): Promise<void> {
    const video = await this.getVideo(owner, id);
    if (video.jobId !== null && (await this.#jobs.cancel(video.jobId))?.status === 'running') await this.#jobStopped(video.jobId);
    await this.#blobs.hold(id, async () => {
      await this.#store.deleteVideo(owner, id);
      await this.#blobs.removeVideo(id);
    });
    const event = deletedEvent(id, video.progress);
    for (const listener of this.#listeners.get(id) ?? []) listener(event);
    this.#listeners.delete(id);
    this.#changes.publish(videoTopic(id));
  }

  /** Resolves once the job is no longer running, or after `JOB_STOP_WAIT_MS` (a handler stuck in native code). */
  async #jobStopped(jobId: string): Promise<void> {
    const deadline = Date.now() + JOB_STOP_WAIT_MS;
    while ((await this.#jobs.get(jobId))?.status === 'running' && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  }

  /** One page of the owner's video's indexed segments, in time order (404 for a video that is not theirs). */
  async listSegments(owner: string, videoId: string, limit: number, offset: number): Promise<Page<SegmentRecord>> {
    await this.getVideo(owner, videoId);
    return this.#store.pageSegments(videoId, limit, offset);
  }

  /**
   * The blob file that pictures a segment, for its signed thumbnail URL: the segment thumbnail indexing cut
   * (with `enable_thumbnails`), else its middle keyframe, the frame that thumbnail is cut from. Undefined when
   * there is no such segment.
   */
  async segmentPicture(videoId: string, seq: number): Promise<string | undefined> {
    const segment = await this.#store.getSegment(videoId, seq);
    if (!segment) return undefined;
    return segment.thumbnail ?? segment.keyframes[Math.floor(segment.keyframes.length / 2)]?.file;
  }

  /** The uploaded file's media type, for serving it; undefined when there is no such video. */
  async sourceMediaType(videoId: string): Promise<string | undefined> {
    const video = await this.#store.getVideoById(videoId);
    return video && (video.metadata?.mediaType ?? 'video/mp4');
  }

  /**
   * Brings the library back in line after a crash or an unclean stop: removes half-received uploads and
   * folders of uploads that never became a video, and settles videos whose indexing job ended without them
   * hearing of it (failed after its worker died on the last attempt, or lost): failed with the job's reason,
   * or queued again when no job is left.
   */
  async recover(): Promise<{ removedFolders: number; settledVideos: number }> {
    let removedFolders = 0;
    await rm(join(this.#blobs.root, INCOMING_DIR), { recursive: true, force: true });
    for (const id of await this.#blobs.videoIds()) {
      if (await this.#store.hasVideo(id)) continue;
      await this.#blobs.removeVideo(id);
      removedFolders += 1;
    }
    removedFolders += await this.recoverAbandoned();
    return { removedFolders, settledVideos: await this.settleVideos() };
  }

  /**
   * With a blob store: removes the blobs a process that stopped was writing or removing, when no video row owns
   * them (an upload cut off before its row, a delete cut off after it). Cheap: runs now and then while serving.
   */
  recoverAbandoned(): Promise<number> {
    return this.#blobs.recoverAbandoned((id) => this.#store.hasVideo(id));
  }

  /** The settling half of `recover`, cheap enough to run now and then while serving. Returns how many changed. */
  async settleVideos(): Promise<number> {
    let settledVideos = 0;
    for (const video of await this.#store.unfinishedVideos()) {
      const job = video.jobId === null ? undefined : await this.#jobs.get(video.jobId);
      if (job?.status === 'queued' || job?.status === 'running') continue;
      if (job?.status === 'failed' || job?.status === 'cancelled') {
        const error = job.error ?? (job.status === 'cancelled' ? 'indexing was cancelled' : 'indexing failed');
        await this.report(video.id, { status: 'failed', stage: 'failed', progress: video.progress, error });
      } else if (job?.status !== 'succeeded') {
        const requeued = await this.#jobs.enqueue(
          INDEX_VIDEO_JOB,
          { videoId: video.id },
          { key: `video:${video.id}`, maxAttempts: this.#maxAttempts },
        );
        await this.#store.updateVideo(video.id, { jobId: requeued.id });
      } else {
        continue; // succeeded: its handler recorded the outcome itself
      }
      settledVideos += 1;
    }
    return settledVideos;
  }

  // ---- indexing progress ----

  /**
   * Calls `notice` when any process (a worker indexing it elsewhere) changed the video, until the returned
   * function is called; the new state is read from the store.
   */
  watch(videoId: string, notice: () => void): () => void {
    return this.#changes.subscribe(videoTopic(videoId), notice);
  }

  /** Calls `listener` on each progress report this process makes for the video until the returned function is called. */
  subscribe(videoId: string, listener: IndexingListener): () => void {
    let listeners = this.#listeners.get(videoId);
    if (!listeners) {
      listeners = new Set();
      this.#listeners.set(videoId, listeners);
    }
    listeners.add(listener);
    return () => {
      listeners.delete(listener);
      if (listeners.size === 0 && this.#listeners.get(videoId) === listeners) this.#listeners.delete(videoId);
    };
  }

  /**
   * Records the indexer's progress and tells subscribers. False when the video is gone. Reports on one video are
   * written in the order they were made, so a late progress write never lands after the final status.
   */
  report(
    videoId: string,
    update: { status: IndexingStatus; stage: string | null; progress: number; error?: string | null },
  ): Promise<boolean> {
    const previous = this.#reports.get(videoId) ?? Promise.resolve(true);
    const written = previous.catch(() => true).then(() => this.#writeReport(videoId, update));
    this.#reports.set(videoId, written);
    void written
      .finally(() => {
        if (this.#reports.get(videoId) === written) this.#reports.delete(videoId);
      })
      .catch(() => undefined);
    return written;
  }

  async #writeReport(
    videoId: string,
    update: { status: IndexingStatus; stage: string | null; progress: number; error?: string | null },
  ): Promise<boolean> {
    const progress = Math.min(1, Math.max(0, update.progress));
    const error = update.error ?? null;
    const exists = await this.#store.updateVideo(videoId, { status: update.status, stage: update.stage, progress, error });
    if (!exists) return false;
    this.#changes.publish(videoTopic(videoId));
    const event: IndexingEvent = { videoId, status: update.status, stage: update.stage, progress, error };
    for (const listener of this.#listeners.get(videoId) ?? []) listener(event);
    return true;
  }
}
