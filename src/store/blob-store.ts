import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';

/** Video ids are UUIDs; anything else never reaches the file system. */
const VIDEO_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export function isVideoId(id: string): boolean {
  return VIDEO_ID.test(id);
}

/**
 * Local-disk blobs of the video library: one folder per video holding the uploaded file (`source`), its
 * thumbnail and the keyframes indexing cut from it. An S3-compatible store would offer the same operations.
 */
export class BlobStore {
  readonly root: string;

  /** @param root the folder holding every video's folder (`<data>/videos`). */
  constructor(root: string) {
    this.root = root;
  }

  videoDir(videoId: string): string {
    if (!isVideoId(videoId)) throw new RangeError(`not a video id: ${videoId}`);
    return join(this.root, videoId);
  }

  async createVideoDir(videoId: string): Promise<string> {
    const dir = this.videoDir(videoId);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    return dir;
  }

  sourcePath(videoId: string): string {
    return join(this.videoDir(videoId), 'source');
  }

  thumbnailPath(videoId: string): string {
    return join(this.videoDir(videoId), 'thumbnail.jpg');
  }

  /** A file the indexer wrote into the video's folder (a keyframe, a segment thumbnail). */
  filePath(videoId: string, file: string): string {
    if (!/^[\w.-]+(?:\/[\w.-]+)?$/.test(file) || file.includes('..')) throw new RangeError(`not a blob file name: ${file}`);
    return join(this.videoDir(videoId), file);
  }

  async removeVideo(videoId: string): Promise<void> {
    // Retries cover a file still being closed by a process that was just stopped (ENOTEMPTY, EBUSY).
    await rm(this.videoDir(videoId), { recursive: true, force: true, maxRetries: 5, retryDelay: 50 });
  }
}
