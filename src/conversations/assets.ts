import { randomUUID } from 'node:crypto';
import type { FfmpegContext } from '../media/binaries.ts';
import { normalizeImage } from '../media/image.ts';
import { sniffFile } from '../media/sniff.ts';
import { probeMedia } from '../media/video.ts';
import { OcularError, validationError } from '../spec/errors.ts';
import type { AssetRecord, AssetStore } from '../store/asset-store.ts';
import type { ImageBlobStore } from '../store/image-blob-store.ts';
import type { BlobSource } from '../store/object-store.ts';
import type { Page } from '../store/video-store.ts';

/** An uploaded file, already on disk (in the blob store's incoming folder, so it can be renamed into place). */
export interface AssetUploadFile {
  path: string;
  size: number;
  filename: string | undefined;
}

export interface AssetLibraryOptions {
  store: AssetStore;
  /** One file per asset, named by its key. */
  blobs: ImageBlobStore;
  ffmpeg: FfmpegContext;
  /** Longest side an image is stored at (`media.maxImageSide`). */
  maxImageSide: number;
  /** Most pixels an image may decode to (`media.maxImagePixels`). */
  maxImagePixels: number;
  /** Longest audio or video accepted (`conversations.maxAssetSeconds`). */
  maxSeconds: number;
}

/** Asset keys are UUIDs; anything else never reaches the database or the disk. */
export const ASSET_KEY = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export function assetNotFound(key: string, param?: string): OcularError {
  return new OcularError('not_found_error', `no asset with key "${key}"`, { param });
}

/**
 * Files uploaded once and referred to by key in conversation turns, each owned by the key's owner. Images are
 * normalised on the way in (upright, stripped of metadata, downscaled to `media.maxImageSide`), as `/v1/chat`
 * does with image URLs; PDFs, audio and short videos are kept as sent, after sniffing and probing, and go
 * through the media pipeline when a model is given them.
 */
export class AssetLibrary {
  readonly #store: AssetStore;
  readonly #blobs: ImageBlobStore;
  readonly #options: AssetLibraryOptions;

  constructor(options: AssetLibraryOptions) {
    this.#store = options.store;
    this.#blobs = options.blobs;
    this.#options = options;
  }

  get incomingDir(): string {
    return this.#blobs.incomingDir;
  }

  /** Stores an upload as an asset; the upload file is moved or left for the caller to remove. */
  async add(owner: string, file: AssetUploadFile): Promise<AssetRecord> {
    const label = 'asset';
    if (file.size === 0) throw validationError('the asset file is empty', label);
    const sniffed = await sniffFile(file.path);
    if (sniffed === undefined) {
      throw new OcularError('unsupported_media_type', 'the asset is not a recognised image, PDF, audio or video file', { param: label });
    }
    const key = randomUUID();
    const base = { key, owner, kind: sniffed.kind, filename: file.filename ?? null };
    // The blob is claimed until its row is in (see BlobClaims).
    return this.#blobs.hold(key, async () => {
      let record: Omit<AssetRecord, 'createdAt'>;
      if (sniffed.kind === 'image') {
        const image = await normalizeImage(file.path, {
          maxSide: this.#options.maxImageSide,
          maxPixels: this.#options.maxImagePixels,
          label,
        });
        await this.#blobs.put(key, image.data);
        record = {
          ...base,
          mediaType: image.mediaType,
          sizeBytes: image.data.length,
          width: image.width,
          height: image.height,
          durationSeconds: null,
        };
      } else {
        let width: number | null = null;
        let height: number | null = null;
        let durationSeconds: number | null = null;
        if (sniffed.kind === 'video' || sniffed.kind === 'audio') {
          const probe = await probeMedia(file.path, this.#options.ffmpeg);
          const stream = sniffed.kind === 'video' ? probe.video : probe.audio;
          if (!stream) throw new OcularError('unsupported_media_type', `the asset has no ${sniffed.kind} stream`, { param: label });
          if (probe.durationSeconds > this.#options.maxSeconds) {
            throw validationError(
              `the ${sniffed.kind} is ${Math.round(probe.durationSeconds)} s long; at most ${this.#options.maxSeconds} s are accepted (conversations.maxAssetSeconds)`,
              label,
            );
          }
          durationSeconds = probe.durationSeconds;
          if (probe.video) {
            width = probe.video.width;
            height = probe.video.height;
          }
        }
        await this.#blobs.putFile(key, file.path);
        record = { ...base, mediaType: sniffed.mediaType, sizeBytes: file.size, width, height, durationSeconds };
      }
      try {
        return await this.#store.insert(record);
      } catch (error) {
        await this.#blobs.remove(key);
        throw error;
      }
    });
  }

  async get(owner: string, key: string, param?: string): Promise<AssetRecord> {
    const asset = ASSET_KEY.test(key) ? await this.#store.get(owner, key) : undefined;
    if (!asset) throw assetNotFound(key, param);
    return asset;
  }

  /** The owner's asset, or undefined (deleted since a turn referred to it). */
  async find(owner: string, key: string): Promise<AssetRecord | undefined> {
    return ASSET_KEY.test(key) ? this.#store.get(owner, key) : undefined;
  }

  list(owner: string, limit: number, offset: number): Promise<Page<AssetRecord>> {
    return this.#store.list(owner, limit, offset);
  }

  async delete(owner: string, key: string): Promise<void> {
    await this.get(owner, key);
    await this.#blobs.hold(key, async () => {
      await this.#store.delete(owner, key);
      await this.#blobs.remove(key);
    });
  }

  /** Any owner's asset, for the signed file route (the signature is the credential). */
  async byKey(key: string): Promise<AssetRecord | undefined> {
    return ASSET_KEY.test(key) ? this.#store.getByKey(key) : undefined;
  }

  /** How a chat request reads the asset: its file on disk, or its bytes from the store. */
  held(key: string): { localPath: string } | { localData: () => Promise<Buffer> } {
    return this.#blobs.remote ? { localData: () => this.#blobs.read(key) } : { localPath: this.#blobs.path(key) };
  }

  /** Where a download of the asset reads from. */
  source(key: string): BlobSource {
    return this.#blobs.source(key);
  }

  /** Removes half-received uploads and files without a row (a crash between the two). */
  recover(): Promise<number> {
    return this.#blobs.sweep((key) => this.#store.has(key));
  }

  /** With a blob store: removes the blobs a process that stopped was writing or removing, when no row owns them. */
  recoverAbandoned(): Promise<number> {
    return this.#blobs.recoverAbandoned((key) => this.#store.has(key));
  }
}
