import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, open, rename, rm, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { PassThrough, Readable, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsCommand,
  type ListObjectsCommandOutput,
  S3Client,
  S3ServiceException,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import type { BlobSettings } from '../config/schema.ts';
import { OcularError } from '../spec/errors.ts';

export type S3BlobSettings = Extract<BlobSettings, { kind: 's3' }>;

/** What a blob download needs to know before sending a byte: its size and validators. */
export interface BlobStat {
  size: number;
  /** A strong entity tag, quotes included. */
  etag: string;
  mtimeMs: number;
}

/** Where a response takes a blob's bytes from: a file, or an object in the store. */
export interface BlobSource {
  /** Undefined when there is no such blob. Read once; `stream` serves the bytes this described. */
  stat(): Promise<BlobStat | undefined>;
  /** Bytes `start..end`, both inclusive. */
  stream(start: number, end: number): Promise<Readable>;
  /** Releases what `stat` opened when no stream was taken. */
  close(): Promise<void>;
  /** A URL of the store itself that serves the blob until `expiresAt`, when the store signs URLs and redirects are on. */
  redirect?(expiresAt: Date, options: { contentType: string; downloadName?: string | undefined }): Promise<string>;
}

/** Strong validator from size and modification time, the pair nginx uses; blobs are written once and renamed. */
function entityTag(size: number, mtimeMs: number): string {
  return `"${size.toString(16)}-${Math.floor(mtimeMs).toString(16)}"`;
}

/** A file on disk as a download source: opened once, so size, validators and bytes all come from one descriptor. */
export function fileSource(path: string): BlobSource {
  let handle: FileHandle | undefined;
  return {
    async stat() {
      try {
        handle = await open(path, 'r');
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'EISDIR') return undefined;
        throw error;
      }
      const stats = await handle.stat();
      if (!stats.isFile()) return undefined;
      return { size: stats.size, etag: entityTag(stats.size, stats.mtimeMs), mtimeMs: stats.mtimeMs };
    },
    async stream(start, end) {
      // The stream closes the descriptor when it ends or when the client goes away (the web stream is cancelled).
      const stream = handle!.createReadStream({ start, end });
      handle = undefined;
      return stream;
    },
    async close() {
      await handle?.close();
      handle = undefined;
    },
  };
}

/** What `S3Blobs.observe` reports of each request to the store: `GetObject`, `UploadPart`, ... */
export type BlobStoreObserver = (operation: string, outcome: 'ok' | 'missing' | 'error', seconds: number) => void;

/** A blob being uploaded while its bytes are written to `stream`. */
export interface BlobUpload {
  stream: Writable;
  done: Promise<void>;
  abort(): Promise<void>;
}

/** How long a store-signed URL lives when the Ocular URL it stands for has no expiry of its own. */
export const STORE_URL_SECONDS = 300;
/** S3's limit on keys per DeleteObjects call. */
const DELETE_BATCH = 1000;

function isMissing(error: unknown): boolean {
  if (!(error instanceof S3ServiceException)) return false;
  return error.$metadata.httpStatusCode === 404 || error.name === 'NoSuchKey' || error.name === 'NotFound';
}

function isStale(error: unknown): boolean {
  return error instanceof S3ServiceException && error.$metadata.httpStatusCode === 412;
}

/** What a failed store request becomes: missing objects and aborts as they are, the rest a 503. */
function storeFailure(error: unknown): unknown {
  if (isMissing(error) || isStale(error) || (error as Error).name === 'AbortError' || error instanceof OcularError) return error;
  const reason = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  return new OcularError('unavailable_error', `the blob store failed: ${reason}`, { cause: error, retryAfterSeconds: 5 });
}

/** `attachment` with an ASCII fallback name and the exact name as RFC 8187 `filename*`. */
export function contentDisposition(name: string): string {
  const fallback = name.replace(/[^\x20-\x7e]|["\\]/g, '_');
  const encoded = encodeURIComponent(name).replace(/['()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
  return `attachment; filename="${fallback}"; filename*=UTF-8''${encoded}`;
}

/**
 * Ocular's blobs in one bucket of an S3-compatible store, under `prefix`. Paths are relative (`videos/<id>/source`);
 * `within` gives a view of one folder. Uploads go through the SDK's multipart `Upload` (parts of `partSizeMiB`,
 * four at a time), so a large file or a stream is never held in memory whole; reads stream and take byte ranges.
 */
export class S3Blobs {
  readonly client: S3Client;
  readonly bucket: string;
  readonly prefix: string;
  readonly redirects: boolean;
  readonly #partSize: number;
  readonly #owned: boolean;
  readonly #settings: S3BlobSettings;

  constructor(settings: S3BlobSettings, client?: S3Client, prefix = settings.prefix) {
    this.bucket = settings.bucket;
    this.prefix = prefix;
    this.redirects = settings.redirect;
    this.#partSize = settings.partSizeMiB * 1024 * 1024;
    this.#owned = client === undefined;
    this.client =
      client ??
      new S3Client({
        region: settings.region,
        ...(settings.endpoint === undefined ? {} : { endpoint: settings.endpoint }),
        forcePathStyle: settings.forcePathStyle,
        ...(settings.accessKeyId === undefined || settings.secretAccessKey === undefined
          ? {}
          : { credentials: { accessKeyId: settings.accessKeyId, secretAccessKey: settings.secretAccessKey } }),
        // Uploads and reads are already bounded by Ocular's own limits; the SDK retries throttling and 5xx.
        maxAttempts: 4,
      });
    this.#settings = settings;
  }

  /**
   * One request to the store. A missing object stays the SDK's error (callers turn it into "none"); anything else
   * (unreachable, refused, throttled past the SDK's retries) is a 503 naming the store, not a 500: the store is
   * down, not Ocular.
   */
  readonly #send = ((command: never, options: { abortSignal?: AbortSignal } = {}) =>
    this.client.send(command, options).catch((error: unknown) => {
      throw storeFailure(error);
    })) as S3Client['send'];

  /** Reports every request this client sends (the multipart upload's parts included), for metrics. */
  observe(observer: BlobStoreObserver): void {
    this.client.middlewareStack.add(
      (next, context) => async (args) => {
        const operation = (context.commandName ?? 'unknown').replace(/Command$/, '');
        const started = performance.now();
        try {
          const result = await next(args);
          observer(operation, 'ok', (performance.now() - started) / 1000);
          return result;
        } catch (error) {
          observer(operation, isMissing(error) ? 'missing' : 'error', (performance.now() - started) / 1000);
          throw error;
        }
      },
      { step: 'initialize', name: 'ocularObserver' },
    );
  }

  /** The same bucket and client under `folder/` (`videos`, `images`). */
  within(folder: string): S3Blobs {
    if (!/^[\w.-]+$/.test(folder)) throw new RangeError(`not a blob folder: ${folder}`);
    return new S3Blobs(this.#settings, this.client, `${this.prefix}${folder}/`);
  }

  key(path: string): string {
    if (path === '' || path.startsWith('/') || path.split('/').some((part) => part === '..' || part === '.'))
      throw new RangeError(`not a blob path: ${path}`);
    return this.prefix + path;
  }

  /** Stores `body` (bytes or a stream of them) at `path`, replacing what was there; streams go up in parts as they arrive. */
  async put(path: string, body: Uint8Array | Readable, contentType = 'application/octet-stream'): Promise<void> {
    await this.#upload(path, body, contentType)
      .done()
      .catch((error: unknown) => {
        throw storeFailure(error);
      });
  }

  /** The SDK's managed upload: one PutObject for a small body, else parts of `partSizeMiB`, four in flight. */
  #upload(path: string, body: Uint8Array | Readable, contentType: string): Upload {
    return new Upload({
      client: this.client,
      params: { Bucket: this.bucket, Key: this.key(path), Body: body, ContentType: contentType },
      partSize: this.#partSize,
      queueSize: 4,
      // A failed multipart upload is aborted, so no orphaned parts keep costing storage.
      leavePartsOnError: false,
    });
  }

  /**
   * A multipart upload to `path` fed by writing to `stream` while the bytes arrive (a request body): parts go up
   * as they fill, so the object is complete moments after the last byte. `done` settles when it is stored (or
   * failed); `abort` cancels it, leaving no object and no parts.
   */
  upload(path: string, contentType = 'application/octet-stream'): BlobUpload {
    const stream = new PassThrough();
    const upload = this.#upload(path, stream, contentType);
    const done = upload.done().then(
      () => undefined,
      (error: unknown) => {
        throw storeFailure(error);
      },
    );
    done.catch(() => stream.destroy()); // a failed upload stops taking bytes
    return {
      stream,
      done,
      abort: async () => {
        stream.destroy();
        await upload.abort().catch(() => undefined);
        await done.catch(() => undefined);
        // An upload that had already completed is an object now: it goes too.
        await this.remove(path).catch(() => undefined);
      },
    };
  }

  async putFile(path: string, file: string, contentType?: string): Promise<void> {
    await this.put(path, createReadStream(file), contentType);
  }

  /** The whole blob, or undefined when there is none. For small blobs (keyframes, images). */
  async read(path: string): Promise<Buffer | undefined> {
    try {
      const response = await this.#send(new GetObjectCommand({ Bucket: this.bucket, Key: this.key(path) }));
      return Buffer.from(await response.Body!.transformToByteArray());
    } catch (error) {
      if (isMissing(error)) return undefined;
      throw error;
    }
  }

  async stat(path: string): Promise<BlobStat | undefined> {
    try {
      const head = await this.#send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.key(path) }));
      return { size: head.ContentLength ?? 0, etag: head.ETag ?? '""', mtimeMs: head.LastModified?.getTime() ?? 0 };
    } catch (error) {
      if (isMissing(error)) return undefined;
      throw error;
    }
  }

  async exists(path: string): Promise<boolean> {
    return (await this.stat(path)) !== undefined;
  }

  /**
   * Copies the blob into `file` (through a temporary name, so a reader never sees half of it). False when there
   * is no such blob.
   */
  async download(path: string, file: string, signal?: AbortSignal): Promise<boolean> {
    let response;
    try {
      response = await this.#send(
        new GetObjectCommand({ Bucket: this.bucket, Key: this.key(path) }),
        signal === undefined ? {} : { abortSignal: signal },
      );
    } catch (error) {
      if (isMissing(error)) return false;
      throw error;
    }
    await mkdir(dirname(file), { recursive: true, mode: 0o700 });
    const partial = `${file}.${randomBytes(6).toString('hex')}.part`;
    try {
      await pipeline(response.Body as Readable, createWriteStream(partial, { mode: 0o600 }), { signal });
      await rename(partial, file);
    } finally {
      await rm(partial, { force: true });
    }
    return true;
  }

  /**
   * A download source for `path`: `stat` reads the object's size and tag once, and each range is then read
   * with `If-Match` on that tag, so a blob replaced meanwhile fails the read rather than mixing two versions.
   */
  source(path: string): BlobSource {
    const key = this.key(path);
    let etag: string | undefined;
    const source: BlobSource = {
      stat: async () => {
        const stat = await this.stat(path);
        etag = stat?.etag;
        return stat;
      },
      stream: async (start, end) => {
        try {
          const response = await this.#send(
            new GetObjectCommand({ Bucket: this.bucket, Key: key, Range: `bytes=${start}-${end}`, IfMatch: etag }),
          );
          return response.Body as Readable;
        } catch (error) {
          // Blobs are written once, so this is a delete racing the download.
          if (isStale(error) || isMissing(error)) throw new OcularError('not_found_error', 'no such file', { cause: error });
          throw error;
        }
      },
      close: async () => undefined,
    };
    if (this.redirects) {
      source.redirect = (expiresAt, options) => this.presign(path, expiresAt, options);
    }
    return source;
  }

  /** A GET URL the store signed, answering with Ocular's content type (and download name). */
  async presign(path: string, expiresAt: Date, options: { contentType: string; downloadName?: string | undefined }): Promise<string> {
    const seconds = Math.max(1, Math.min(7 * 24 * 3600, Math.ceil((expiresAt.getTime() - Date.now()) / 1000)));
    const command = new GetObjectCommand({
      Bucket: this.bucket,
      Key: this.key(path),
      ResponseContentType: options.contentType,
      ...(options.downloadName === undefined ? {} : { ResponseContentDisposition: contentDisposition(options.downloadName) }),
    });
    return getSignedUrl(this.client, command, { expiresIn: seconds });
  }

  /** Names directly under `folder` (`''` for this view's top): blobs and sub-folders, without the trailing `/`. */
  async list(folder = ''): Promise<string[]> {
    const prefix = folder === '' ? this.prefix : `${this.key(folder)}/`;
    const names: string[] = [];
    for await (const page of this.#pages(prefix, '/')) {
      for (const entry of page.CommonPrefixes ?? []) names.push(entry.Prefix!.slice(prefix.length, -1));
      for (const entry of page.Contents ?? []) names.push(entry.Key!.slice(prefix.length));
    }
    return names;
  }

  /** When anything under folder `path` was last written (ms), from its first 1,000 blobs; undefined when empty. */
  async lastWrite(path: string): Promise<number | undefined> {
    const page = await this.#send(new ListObjectsCommand({ Bucket: this.bucket, Prefix: `${this.key(path)}/` }));
    const times = (page.Contents ?? []).map((entry) => entry.LastModified?.getTime() ?? 0);
    return times.length === 0 ? undefined : Math.max(...times);
  }

  /** Deletes `path` and, when it is a folder, everything under it. */
  async remove(path: string): Promise<void> {
    const key = this.key(path);
    const keys: string[] = [key];
    for await (const page of this.#pages(`${key}/`)) for (const entry of page.Contents ?? []) keys.push(entry.Key!);
    for (let start = 0; start < keys.length; start += DELETE_BATCH) {
      const batch = keys.slice(start, start + DELETE_BATCH).map((Key) => ({ Key }));
      await this.#send(new DeleteObjectsCommand({ Bucket: this.bucket, Delete: { Objects: batch, Quiet: true } }));
    }
  }

  /**
   * Every page of a listing. ListObjects (v1, paged by marker) rather than v2: every S3-compatible store takes
   * it, and v2's continuation tokens are where small ones (s3rver among them) break.
   */
  async *#pages(prefix: string, delimiter?: string): AsyncGenerator<ListObjectsCommandOutput> {
    let marker: string | undefined;
    for (;;) {
      const page = await this.#send(new ListObjectsCommand({ Bucket: this.bucket, Prefix: prefix, Delimiter: delimiter, Marker: marker }));
      yield page;
      if (!page.IsTruncated) return;
      // NextMarker comes only with a delimiter; otherwise the last key is where the next page starts.
      const last = [...(page.Contents ?? []).map((entry) => entry.Key!), ...(page.CommonPrefixes ?? []).map((entry) => entry.Prefix!)]
        .sort()
        .at(-1);
      marker = page.NextMarker ?? last;
      if (marker === undefined) return;
    }
  }

  /** For `/readyz`: the bucket exists and these credentials reach it. */
  async check(): Promise<void> {
    await this.#send(new HeadBucketCommand({ Bucket: this.bucket }));
  }

  close(): void {
    if (this.#owned) this.client.destroy();
  }
}
