import { mkdir, readdir, readFile, rename, rm, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { NO_CLAIM, type BlobClaim, type BlobClaims } from './blob-claims.ts';
import { missing } from './blob-store.ts';
import { fileSource, type BlobSource, type S3Blobs } from './object-store.ts';

/** Image ids are UUIDs; anything else never reaches the file system. */
const IMAGE_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export function isImageId(id: string): boolean {
  return IMAGE_ID.test(id);
}

/** Where multipart uploads stream to inside the image root before they become images (same file system). */
export const IMAGE_INCOMING_DIR = '.incoming';

/**
 * Blobs of the image library (and of conversation assets): one per image, the normalised image. On the file
 * system (`remote` absent) it is `<root>/<id>`; with an S3 store it is `<id>` in the store's folder, and `root`
 * only receives uploads.
 */
export class ImageBlobStore {
  readonly root: string;
  readonly remote: S3Blobs | undefined;
  readonly #claims: BlobClaims | undefined;

  /**
   * @param root the folder holding every image (`<data>/images`).
   * @param claims with a store: how a process says which blobs it is writing or removing (see BlobStore).
   */
  constructor(root: string, remote?: S3Blobs, claims?: BlobClaims) {
    this.root = root;
    this.remote = remote;
    this.#claims = remote ? claims : undefined;
  }

  /** Claims the image's blob while it is written or removed (nothing to claim in folders). */
  claim(imageId: string): Promise<BlobClaim> {
    return this.#claims ? this.#claims.claim(imageId) : Promise.resolve(NO_CLAIM);
  }

  /** Runs `work` holding the claim on the image's blob. */
  hold<T>(imageId: string, work: () => Promise<T>): Promise<T> {
    return this.#claims ? this.#claims.hold(imageId, work) : work();
  }

  get incomingDir(): string {
    return join(this.root, IMAGE_INCOMING_DIR);
  }

  path(imageId: string): string {
    if (!isImageId(imageId)) throw new RangeError(`not an image id: ${imageId}`);
    return join(this.root, imageId);
  }

  async put(imageId: string, data: Buffer): Promise<void> {
    if (this.remote) return this.remote.put(this.#key(imageId), data);
    await mkdir(this.root, { recursive: true, mode: 0o700 });
    await writeFile(this.path(imageId), data, { flag: 'wx', mode: 0o600 });
  }

  /** Stores a received file (in `incomingDir`) as the image's blob; the file is moved, or uploaded and removed. */
  async putFile(imageId: string, file: string): Promise<void> {
    if (!this.remote) return rename(file, this.path(imageId));
    await this.remote.putFile(this.#key(imageId), file);
    await unlink(file);
  }

  /** The image's bytes; rejects (`ENOENT`) when it has none. */
  async read(imageId: string): Promise<Buffer> {
    if (!this.remote) return readFile(this.path(imageId));
    return (await this.remote.read(this.#key(imageId))) ?? missing(`image ${imageId}`);
  }

  /** Where a download of the image reads from. */
  source(imageId: string): BlobSource {
    return this.remote ? this.remote.source(this.#key(imageId)) : fileSource(this.path(imageId));
  }

  async remove(imageId: string): Promise<void> {
    if (this.remote) return this.remote.remove(this.#key(imageId));
    await rm(this.path(imageId), { force: true });
  }

  #key(imageId: string): string {
    if (!isImageId(imageId)) throw new RangeError(`not an image id: ${imageId}`);
    return imageId;
  }

  /**
   * Removes half-received uploads and blobs whose row `exists` denies (a crash between the blob and the row): in
   * folders by listing them, in a store through the claims of processes that stopped (`recoverAbandoned`).
   */
  async sweep(exists: (imageId: string) => boolean | Promise<boolean>): Promise<number> {
    await rm(this.incomingDir, { recursive: true, force: true });
    if (this.remote) return this.recoverAbandoned(exists);
    let removed = 0;
    const entries = await readdir(this.root, { withFileTypes: true }).catch(() => []);
    for (const entry of entries) {
      if (!entry.isFile() || !isImageId(entry.name) || (await exists(entry.name))) continue;
      await this.remove(entry.name);
      removed += 1;
    }
    return removed;
  }

  /** With a store: removes the blobs of abandoned claims that `exists` denies a row. Returns how many went. */
  async recoverAbandoned(exists: (imageId: string) => boolean | Promise<boolean>): Promise<number> {
    if (!this.#claims) return 0;
    return this.#claims.removeAbandoned(
      async (imageId) => !isImageId(imageId) || (await exists(imageId)),
      (imageId) => this.remove(imageId),
    );
  }
}
