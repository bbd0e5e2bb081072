import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import pLimit from 'p-limit';
import type { BlobClaims } from './blob-claims.ts';
import { fileSource, type BlobSource, type BlobUpload, type S3Blobs } from './object-store.ts';

/** Video ids are UUIDs; anything else never reaches the file system. */
const VIDEO_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export function isVideoId(id: string): boolean {
  return VIDEO_ID.test(id);
}

/** The uploaded file's name inside a video's folder. */
export const SOURCE_FILE = 'source';
export const THUMBNAIL_FILE = 'thumbnail.jpg';

/**
 * Blobs of the video library: one folder per video holding the uploaded file (`source`), its thumbnail and the
 * keyframes indexing cut from it.
 *
 * On the file system (`remote` absent) the folder under `root` is the blob itself. With an S3 store the bucket
 * is, and the folder under `root` is this process's working copy: ffmpeg writes keyframes into it and reads the
 * video from it (`localFile` downloads it first), `persist` sends what was written up, and `dropLocal` lets the
 * copy go once a job is done with it.
 */
export class BlobStore {
  readonly root: string;
  readonly remote: S3Blobs | undefined;
  readonly #claims: BlobClaims | undefined;
  readonly #downloads = new Map<string, Promise<boolean>>();

  /**
   * @param root the folder holding every video's folder (`<data>/videos`).
   * @param claims with a store: how a process says which videos' blobs it is writing or removing, so that what
   *   a process that died was doing is found and cleared without listing the store.
   */
  constructor(root: string, remote?: S3Blobs, claims?: BlobClaims) {
    this.root = root;
    this.remote = remote;
    this.#claims = remote ? claims : undefined;
  }

  /** Runs `work` holding the claim on the video's blobs. */
  hold<T>(videoId: string, work: () => Promise<T>): Promise<T> {
    return this.#claims ? this.#claims.hold(videoId, work) : work();
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
    return join(this.videoDir(videoId), SOURCE_FILE);
  }

  thumbnailPath(videoId: string): string {
    return join(this.videoDir(videoId), THUMBNAIL_FILE);
  }

  /** A file the indexer wrote into the video's folder (a keyframe, a segment thumbnail). */
  filePath(videoId: string, file: string): string {
    return join(this.videoDir(videoId), checkFile(file));
  }

  /**
   * The local path of a video's file, for ffmpeg. With a store it is downloaded first when this process has no
   * copy (once, however many callers ask at the same time), into the video's working folder or into `into`, a
   * folder the caller owns (so another job letting the working folder go cannot pull it away).
   */
  async localFile(videoId: string, file: string, signal?: AbortSignal, into?: string): Promise<string> {
    const remote = this.remote;
    const path = remote && into !== undefined ? join(into, checkFile(file).replaceAll('/', '-')) : this.filePath(videoId, file);
    if (!remote || existsSync(path)) return path;
    let download = this.#downloads.get(path);
    if (download === undefined) {
      download = remote.download(`${videoId}/${file}`, path, signal).finally(() => this.#downloads.delete(path));
      this.#downloads.set(path, download);
    }
    if (!(await download)) missing(`${file} of video ${videoId}`);
    return path;
  }

  /**
   * With a store: an upload of the video's source fed while the request body arrives (see `S3Blobs.upload`), so
   * `persist` has nothing left to send. Undefined on the file system, where the received file is moved in.
   */
  sourceUpload(videoId: string, contentType?: string): BlobUpload | undefined {
    this.videoDir(videoId); // refuses what is not a video id
    return this.remote?.upload(`${videoId}/${SOURCE_FILE}`, contentType);
  }

  /** Makes files written into the local folder durable: uploads them to the store (nothing to do on disk). */
  async persist(videoId: string, files: readonly string[], contentType?: string): Promise<void> {
    const remote = this.remote;
    if (!remote) return;
    // A few at a time: keyframes are small and many.
    const limit = pLimit(8);
    await Promise.all(
      files.map((file) => limit(() => remote.putFile(`${videoId}/${checkFile(file)}`, this.filePath(videoId, file), contentType))),
    );
  }

  /** Writes a small file (a thumbnail) into the video's folder, durably. */
  async write(videoId: string, file: string, data: Uint8Array, contentType?: string): Promise<void> {
    if (this.remote) return this.remote.put(`${videoId}/${checkFile(file)}`, data, contentType);
    await writeFile(this.filePath(videoId, file), data);
  }

  /** A file's bytes: the local copy when there is one, else the store's. Rejects when it does not exist. */
  async read(videoId: string, file: string): Promise<Buffer> {
    try {
      return await readFile(this.filePath(videoId, file));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT' || !this.remote) throw error;
    }
    return (await this.remote.read(`${videoId}/${file}`)) ?? missing(`${file} of video ${videoId}`);
  }

  /** Whether every one of `files` exists (locally, or in the store), e.g. the keyframes a saved plan names. */
  async hasAll(videoId: string, files: readonly string[]): Promise<boolean> {
    if (!this.remote) return files.every((file) => existsSync(this.filePath(videoId, file)));
    const folders = new Map<string, Set<string>>();
    for (const file of files) {
      const slash = checkFile(file).lastIndexOf('/');
      const folder = slash < 0 ? '' : file.slice(0, slash);
      if (!folders.has(folder)) folders.set(folder, new Set(await this.remote.list(folder === '' ? videoId : `${videoId}/${folder}`)));
      if (!folders.get(folder)!.has(file.slice(slash + 1))) return false;
    }
    return true;
  }

  /** Where a download of the file reads from. */
  source(videoId: string, file: string): BlobSource {
    return this.remote ? this.remote.source(`${videoId}/${checkFile(file)}`) : fileSource(this.filePath(videoId, file));
  }

  /** Lets this process's working copy go (with a store; on disk the folder is the blob and stays). */
  async dropLocal(videoId: string): Promise<void> {
    if (this.remote) await removeFolder(this.videoDir(videoId));
  }

  /**
   * With a store: removes every working copy in this process's folder, those a killed run left behind included.
   * For a worker about to start, whose data directory is its own. Returns how many went.
   */
  async clearWorkingCopies(): Promise<number> {
    return this.remote ? removeIdFolders(this.root) : 0;
  }

  async removeVideo(videoId: string): Promise<void> {
    if (this.remote) await this.remote.remove(videoId);
    await removeFolder(this.videoDir(videoId));
  }

  /**
   * Every video id that has a folder on disk. A store is not listed (that would read the whole library): what a
   * crash left in it is found through its claims (`recoverAbandoned`).
   */
  async videoIds(): Promise<string[]> {
    if (this.remote) return [];
    const entries = await readdir(this.root, { withFileTypes: true }).catch(() => []);
    return entries.filter((entry) => entry.isDirectory() && isVideoId(entry.name)).map((entry) => entry.name);
  }

  /**
   * With a store: takes the claims of processes that stopped while writing or removing a video's blobs and
   * removes the blobs of those `exists` denies a row. Returns how many videos' blobs went.
   */
  async recoverAbandoned(exists: (videoId: string) => Promise<boolean>): Promise<number> {
    if (!this.#claims) return 0;
    return this.#claims.removeAbandoned(
      async (videoId) => !isVideoId(videoId) || (await exists(videoId)),
      (videoId) => this.removeVideo(videoId),
    );
  }
}

/** The error reading a missing file gives, so callers treat a blob gone from the store as one gone from disk. */
export function missing(what: string): never {
  throw Object.assign(new Error(`no such blob: ${what}`), { code: 'ENOENT' });
}

function checkFile(file: string): string {
  if (!/^[\w.-]+(?:\/[\w.-]+)?$/.test(file) || file.includes('..')) throw new RangeError(`not a blob file name: ${file}`);
  return file;
}

/** Removes every folder under `root` named by a UUID (a video's or a clip's); returns how many. */
export async function removeIdFolders(root: string): Promise<number> {
  const entries = await readdir(root, { withFileTypes: true }).catch(() => []);
  const folders = entries.filter((entry) => entry.isDirectory() && isVideoId(entry.name));
  for (const entry of folders) await removeFolder(join(root, entry.name));
  return folders.length;
}

async function removeFolder(dir: string): Promise<void> {
  // Retries cover a file still being closed by a process that was just stopped (ENOTEMPTY, EBUSY).
  await rm(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 });
}
