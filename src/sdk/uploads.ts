// Multipart bodies for uploads, written by hand so a file streams from disk (never held in memory) and the bytes
// sent can be counted for progress. The platform's FormData would read a path into memory and report nothing.

/** What an upload's file may be: a path on disk (Node), a Blob or File, or a stream of bytes (sent once, not retried). */
export type Uploadable = string | Blob | ReadableStream<Uint8Array> | AsyncIterable<Uint8Array>;

/** Bytes of the request body sent so far; `total` is undefined when a stream of unknown length is uploaded. */
export interface UploadProgress {
  loaded: number;
  total: number | undefined;
}

export interface MultipartFile {
  field: string;
  file: Uploadable;
  fileName: string;
  contentType: string;
}

export interface MultipartBody {
  /** Builds the body for one attempt. */
  make(): { body: BodyInit; headers: Record<string, string> };
  /** False when a file is a caller's stream, which can be read only once. */
  retryable: boolean;
}

/** Node's fs, loaded only when a path is uploaded (browsers never reach it). */
interface NodeFs {
  statSync(path: string): { size: number; isFile(): boolean };
  createReadStream(path: string, options?: { highWaterMark?: number }): AsyncIterable<Uint8Array>;
}

let nodeFs: NodeFs | undefined;
async function loadNodeFs(): Promise<NodeFs> {
  // A computed specifier: browser bundlers leave it alone (this line only runs for a path, which only Node has).
  const specifier = 'node:fs';
  nodeFs ??= (await import(specifier)) as NodeFs;
  return nodeFs;
}

const encoder = new TextEncoder();

/** Quotes a form-data name or filename: `"` and line breaks are percent-encoded, as browsers do. */
function quote(value: string): string {
  return `"${value.replace(/\r/g, '%0D').replace(/\n/g, '%0A').replace(/"/g, '%22')}"`;
}

function isAsyncIterable(value: unknown): value is AsyncIterable<Uint8Array> {
  return typeof value === 'object' && value !== null && Symbol.asyncIterator in value;
}

/** The last segment of a path or URL, for a default name. */
export function baseName(pathOrUrl: string): string {
  const withoutQuery = pathOrUrl.replace(/[?#].*$/, '');
  const name = withoutQuery
    .split(/[\\/]/)
    .filter((part) => part !== '')
    .pop();
  try {
    return decodeURIComponent(name ?? '');
  } catch {
    return name ?? '';
  }
}

/**
 * A multipart/form-data body of `fields` (in order) then `files`, streamed with progress. Paths are checked
 * (they must be readable files) when the body is built, so a wrong path fails before any request is sent.
 */
export async function multipartBody(
  fields: ReadonlyArray<readonly [string, string]>,
  files: readonly MultipartFile[],
  onProgress?: (progress: UploadProgress) => void,
): Promise<MultipartBody> {
  const boundary = `----ocular-${Array.from(crypto.getRandomValues(new Uint8Array(12)), (byte) => byte.toString(16).padStart(2, '0')).join('')}`;
  const head = fields
    .map(([name, value]) => `--${boundary}\r\ncontent-disposition: form-data; name=${quote(name)}\r\n\r\n${value}\r\n`)
    .join('');
  const sizes: Array<number | undefined> = [];
  for (const file of files) {
    if (typeof file.file === 'string') {
      const fs = await loadNodeFs();
      let stat;
      try {
        stat = fs.statSync(file.file);
      } catch (error) {
        throw new TypeError(`cannot read ${file.file}: ${(error as Error).message}`);
      }
      if (!stat.isFile()) throw new TypeError(`${file.file} is not a file`);
      sizes.push(stat.size);
    } else if (typeof Blob !== 'undefined' && file.file instanceof Blob) sizes.push(file.file.size);
    else sizes.push(undefined);
  }
  const partHeads = files.map(
    (file) =>
      `--${boundary}\r\ncontent-disposition: form-data; name=${quote(file.field)}; filename=${quote(file.fileName)}\r\n` +
      `content-type: ${file.contentType}\r\n\r\n`,
  );
  const tail = `--${boundary}--\r\n`;
  const framing =
    encoder.encode(head).length + partHeads.reduce((sum, text) => sum + encoder.encode(text).length + 2, 0) + encoder.encode(tail).length;
  const total = sizes.every((size) => size !== undefined) ? framing + sizes.reduce<number>((sum, size) => sum + size!, 0) : undefined;
  const retryable = files.every((file) => typeof file.file === 'string' || (typeof Blob !== 'undefined' && file.file instanceof Blob));
  const fs = nodeFs;

  async function* chunks(): AsyncGenerator<Uint8Array> {
    yield encoder.encode(head);
    for (const [index, file] of files.entries()) {
      yield encoder.encode(partHeads[index]!);
      const source = file.file;
      if (typeof source === 'string') yield* fs!.createReadStream(source, { highWaterMark: 256 * 1024 });
      else if (typeof Blob !== 'undefined' && source instanceof Blob) yield* iterate(source.stream());
      else if (typeof ReadableStream !== 'undefined' && source instanceof ReadableStream) yield* iterate(source);
      else if (isAsyncIterable(source)) yield* source;
      else throw new TypeError('an upload takes a path, a Blob, a ReadableStream or an async iterable of bytes');
      yield encoder.encode('\r\n');
    }
    yield encoder.encode(tail);
  }

  // A browser's fetch streams a request body only over HTTP/2 (and Safari not at all): send Blobs as one Blob
  // there, which the browser reads from wherever the file lives; progress is then reported at the start and end.
  const inBrowser = (globalThis as { process?: { versions?: { node?: string } } }).process?.versions?.node === undefined;
  if (inBrowser && files.every((file) => typeof Blob !== 'undefined' && file.file instanceof Blob)) {
    return {
      retryable,
      make() {
        const parts: BlobPart[] = [head];
        files.forEach((file, index) => parts.push(partHeads[index]!, file.file as Blob, '\r\n'));
        parts.push(tail);
        onProgress?.({ loaded: 0, total });
        return { body: new Blob(parts), headers: { 'content-type': `multipart/form-data; boundary=${boundary}` } };
      },
    };
  }

  return {
    retryable,
    make() {
      const iterator = chunks();
      let loaded = 0;
      onProgress?.({ loaded, total });
      const body = new ReadableStream<Uint8Array>({
        async pull(controller) {
          const next = await iterator.next();
          if (next.done) {
            controller.close();
            return;
          }
          const bytes = next.value instanceof Uint8Array ? next.value : new Uint8Array(next.value as ArrayBufferLike);
          controller.enqueue(bytes);
          loaded += bytes.byteLength;
          onProgress?.({ loaded, total });
        },
        async cancel() {
          await iterator.return(undefined);
        },
      });
      return { body, headers: { 'content-type': `multipart/form-data; boundary=${boundary}` } };
    },
  };
}

/**
 * A ReadableStream as an async iterable: not every platform's streams are iterable yet (Safari's are not). Leaving
 * the loop early cancels the stream.
 */
export async function* iterate(stream: ReadableStream<Uint8Array>): AsyncGenerator<Uint8Array> {
  const reader = stream.getReader();
  let finished = false;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) {
        finished = true;
        return;
      }
      yield value;
    }
  } finally {
    if (!finished) await reader.cancel().catch(() => {});
    reader.releaseLock();
  }
}
