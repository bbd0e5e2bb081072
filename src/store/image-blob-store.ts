import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/** Image ids are UUIDs; anything else never reaches the file system. */
const IMAGE_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export function isImageId(id: string): boolean {
  return IMAGE_ID.test(id);
}

/** Where multipart uploads stream to inside the image root before they become images (same file system). */
export const IMAGE_INCOMING_DIR = '.incoming';

/**
 * Local-disk blobs of the image library: one file per image (`<root>/<id>`), the normalised image. An
 * S3-compatible store would offer the same operations.
 */
export class ImageBlobStore {
  readonly root: string;

  /** @param root the folder holding every image (`<data>/images`). */
  constructor(root: string) {
    this.root = root;
  }

  get incomingDir(): string {
    return join(this.root, IMAGE_INCOMING_DIR);
  }

  path(imageId: string): string {
    if (!isImageId(imageId)) throw new RangeError(`not an image id: ${imageId}`);
    return join(this.root, imageId);
  }

  async put(imageId: string, data: Buffer): Promise<void> {
    await mkdir(this.root, { recursive: true, mode: 0o700 });
    await writeFile(this.path(imageId), data, { flag: 'wx', mode: 0o600 });
  }

  async remove(imageId: string): Promise<void> {
    await rm(this.path(imageId), { force: true });
  }

  /** Removes half-received uploads and blobs whose row `exists` denies (a crash between the file and the row). */
  async sweep(exists: (imageId: string) => boolean | Promise<boolean>): Promise<number> {
    await rm(this.incomingDir, { recursive: true, force: true });
    let removed = 0;
    const entries = await readdir(this.root, { withFileTypes: true }).catch(() => []);
    for (const entry of entries) {
      if (!entry.isFile() || !isImageId(entry.name) || (await exists(entry.name))) continue;
      await this.remove(entry.name);
      removed += 1;
    }
    return removed;
  }
}
