import { randomUUID } from 'node:crypto';
import { createWriteStream, type WriteStream } from 'node:fs';
import { unlink } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import { basename, join } from 'node:path';
import type { Readable } from 'node:stream';
import busboy from 'busboy';
import { OcularError, validationError } from '../spec/errors.ts';
import type { BlobUpload } from '../store/object-store.ts';

export interface MultipartUploadOptions {
  /** Existing folder the file part is written into. */
  directory: string;
  /** The form field that carries the file; a file part under any other name is rejected. */
  fileField: string;
  /** Largest file accepted, enforced while the part streams to disk. */
  maxFileBytes: number;
  /** File parts accepted, all under `fileField`; each is capped at `maxFileBytes`. @default 1 */
  maxFiles?: number | undefined;
  /**
   * Name of the written file inside `directory` (no directories, not hidden); only with one file.
   * @default a random UUID plus `.upload`
   */
  fileName?: string | undefined;
  /** Most text fields accepted. @default 32 */
  maxFields?: number | undefined;
  /** Longest text field value accepted, in bytes. @default 65536 */
  maxFieldBytes?: number | undefined;
  /** Text fields the caller understands; any other is rejected. @default any name */
  allowedFields?: readonly string[] | undefined;
  /** The setting behind `maxFileBytes`, named in the 413 message (`limits.maxVideoBytes`). */
  limitName?: string | undefined;
  /** Milliseconds without a byte from the client before the upload fails. @default 60000 */
  idleTimeoutMs?: number | undefined;
  /**
   * A second home for each file part, written as the part arrives (a blob store's multipart upload): the upload
   * resolves once it is stored too, and a failed upload aborts it. @default none
   */
  mirror?: ((file: { filename: string | undefined; declaredType: string }) => BlobUpload | undefined) | undefined;
}

export interface UploadedFile {
  /** Where the part was written (`directory` joined with the file name). The caller owns it from here on. */
  path: string;
  size: number;
  /** The client's file name, without any directories; `undefined` when the part had none. */
  filename: string | undefined;
  /** The part's `Content-Type` as the client declared it (not sniffed). @default `application/octet-stream` */
  declaredType: string;
  /** Whether `mirror` stored the part as well. */
  mirrored: boolean;
}

export interface MultipartUpload {
  fields: Record<string, string>;
  /** Absent when the form had no file part; an empty file (`size` 0) is returned as is. The first of `files`. */
  file?: UploadedFile;
  /** Every file part, in the order sent. */
  files: UploadedFile[];
}

const DEFAULT_MAX_FIELDS = 32;
const DEFAULT_MAX_FIELD_BYTES = 64 * 1024;
const DEFAULT_IDLE_TIMEOUT_MS = 60_000;
/**
 * Room for one part's boundary and headers: busboy refuses part headers over 16 KiB (Node's own header limit).
 * Together with the file and field caps it bounds the whole body, so that parts busboy skips (no
 * Content-Disposition) or an endless epilogue cannot keep a connection reading forever.
 */
const PART_OVERHEAD_BYTES = 16 * 1024 + 512;

const MULTIPART_FORM = /^\s*multipart\/form-data\s*(?:;|$)/i;

/**
 * Reads a `multipart/form-data` request: its one file part is streamed to `options.directory` under a byte cap
 * enforced as it arrives, its text fields are collected. Resolves once the whole body is parsed and the file is
 * flushed and closed, so fields sent after the file (curl's `-F` order) are included.
 *
 * On rejection the partial file is already deleted and reading has stopped; the request is neither drained
 * nor destroyed here, so the error response can still be written: @hono/node-server drains what is left after
 * the response (bounded), and the 413 handler in app.ts closes the connection.
 */
export function receiveMultipartUpload(incoming: IncomingMessage, options: MultipartUploadOptions): Promise<MultipartUpload> {
  if (options.fileName !== undefined && (options.fileName !== basename(options.fileName) || options.fileName.startsWith('.'))) {
    return Promise.reject(new TypeError(`fileName must be a plain file name inside the directory, not "${options.fileName}"`));
  }
  const maxFiles = options.maxFiles ?? 1;
  if (!Number.isInteger(maxFiles) || maxFiles < 1)
    return Promise.reject(new RangeError(`maxFiles must be a positive integer, got ${maxFiles}`));
  if (options.fileName !== undefined && maxFiles > 1)
    return Promise.reject(new TypeError('fileName names one file; it cannot go with maxFiles > 1'));
  const type = incoming.headers['content-type'];
  if (type === undefined || !MULTIPART_FORM.test(type)) {
    return Promise.reject(
      new OcularError('unsupported_media_type', `uploads must be multipart/form-data, not ${type ?? 'a body without a type'}`),
    );
  }
  const maxFields = options.maxFields ?? DEFAULT_MAX_FIELDS;
  const maxFieldBytes = options.maxFieldBytes ?? DEFAULT_MAX_FIELD_BYTES;
  const maxBodyBytes = options.maxFileBytes * maxFiles + maxFields * maxFieldBytes + (maxFields + maxFiles + 1) * PART_OVERHEAD_BYTES;
  const limitNote = options.limitName === undefined ? '' : ` (${options.limitName})`;
  const fileTooLarge = (): OcularError =>
    new OcularError('payload_too_large', `the uploaded file is larger than ${options.maxFileBytes} bytes${limitNote}`, {
      param: options.fileField,
    });
  const bodyTooLarge = (): OcularError =>
    new OcularError(
      'payload_too_large',
      `the request body is larger than ${maxBodyBytes} bytes (a file of up to ${options.maxFileBytes} bytes${limitNote} plus form fields)`,
    );
  const cutShort = (): OcularError => validationError('the client closed the connection before sending the whole body');
  const idleTimeoutMs = options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
  const stalled = (): OcularError => validationError(`the upload stalled: no data arrived for ${Math.round(idleTimeoutMs / 1000)} s`);

  const declared = incoming.headers['content-length'];
  if (declared !== undefined && Number(declared) > maxBodyBytes) return Promise.reject(bodyTooLarge());
  if (incoming.destroyed && !incoming.readableEnded) return Promise.reject(cutShort());

  let parser: busboy.Busboy;
  try {
    parser = busboy({
      headers: incoming.headers,
      // Browsers and undici send file names as raw UTF-8, not the latin1 busboy assumes by default.
      defParamCharset: 'utf8',
      // One more than allowed, so that busboy's truncation flags mean "over the limit" and not "at it".
      limits: { fileSize: options.maxFileBytes + 1, files: maxFiles, fields: maxFields, fieldSize: maxFieldBytes + 1 },
    });
  } catch (error) {
    return Promise.reject(validationError(`malformed multipart request: ${(error as Error).message}`));
  }

  return new Promise<MultipartUpload>((resolve, reject) => {
    const fields: Record<string, string> = Object.create(null) as Record<string, string>;
    type WrittenFile = {
      path: string;
      filename: string | undefined;
      declaredType: string;
      output: WriteStream;
      created: boolean;
      closed: Promise<void>;
      mirror: BlobUpload | undefined;
    };
    const written: WrittenFile[] = [];
    let received = 0;
    let parsed = false;
    let settled = false;

    // A client that stops sending mid-upload is let go after `idleTimeoutMs` (the server's total request
    // timeout is off, since a large upload over a slow link legitimately takes long). Disarmed while reading is
    // paused for the disk's backpressure: that wait is ours, not the client's.
    let idleTimer: NodeJS.Timeout | undefined;
    const disarmIdle = (): void => clearTimeout(idleTimer);
    const armIdle = (): void => {
      clearTimeout(idleTimer);
      idleTimer = setTimeout(() => fail(stalled()), idleTimeoutMs);
      idleTimer.unref();
    };

    const stopReading = (): void => {
      disarmIdle();
      incoming.off('data', onData).off('end', onEnd).off('close', onClose);
      incoming.pause();
    };

    const fail = (error: OcularError): void => {
      if (settled) return;
      settled = true;
      stopReading();
      // Destroying the parser ends the file stream with an error; its 'error' events land on the listeners
      // below, which stay attached and now ignore them. Deferred: `fail` may run inside busboy's own write.
      process.nextTick(() => parser.destroy());
      // Settle only once the partial files are gone, so a caller (or test) never sees one.
      const removals = written.map((file) => {
        file.output.destroy();
        const aborted = file.mirror?.abort() ?? Promise.resolve();
        return (
          Promise.all([file.closed, aborted])
            .catch(() => undefined)
            // Only a file this call created: with `wx`, a failed open means someone else's file is at that path.
            .then(() => (file.created ? unlink(file.path) : undefined))
            .catch(() => undefined)
        );
      });
      void Promise.all(removals).finally(() => reject(error));
    };

    const succeed = (): void => {
      if (settled || !parsed) return;
      Promise.all(written.flatMap((file) => [file.closed, file.mirror?.done])).then(
        () => {
          if (settled) return;
          settled = true;
          stopReading();
          const files = written.map(({ path, filename, declaredType, output, mirror }) => ({
            path,
            size: output.bytesWritten,
            filename,
            declaredType,
            mirrored: mirror !== undefined,
          }));
          resolve(files[0] === undefined ? { fields: { ...fields }, files } : { fields: { ...fields }, file: files[0], files });
        },
        () => undefined, // the write stream's own 'error' listener has failed the upload
      );
    };

    parser.on('file', (name: string | undefined, stream: Readable, info: busboy.FileInfo) => {
      stream.on('error', () => undefined); // destroyed with the parser on failure; the cause is reported there
      if (settled) {
        stream.resume();
        return;
      }
      if (name !== options.fileField) {
        stream.resume();
        fail(validationError(`unexpected file part "${name ?? ''}"; send the file as the "${options.fileField}" field`, name));
        return;
      }
      const path = join(options.directory, options.fileName ?? `${randomUUID()}.upload`);
      // `wx`: never clobber a file that is already there.
      const output = createWriteStream(path, { flags: 'wx', mode: 0o600 });
      const closed = new Promise<void>((resolveClosed, rejectClosed) => {
        output.once('close', () =>
          output.writableFinished ? resolveClosed() : rejectClosed(new Error('upload write stream closed early')),
        );
      });
      closed.catch(() => undefined);
      const mirror = options.mirror?.({ filename: info.filename, declaredType: info.mimeType });
      const file: WrittenFile = { path, filename: info.filename, declaredType: info.mimeType, output, created: false, closed, mirror };
      written.push(file);
      if (mirror !== undefined) {
        mirror.stream.on('error', () => undefined); // reported through `done`
        mirror.done.catch((error: Error) =>
          fail(
            error instanceof OcularError
              ? error
              : new OcularError('unavailable_error', `could not store the upload in the blob store: ${error.message}`, { cause: error }),
          ),
        );
        stream.pipe(mirror.stream);
      }
      output.once('open', () => {
        file.created = true;
      });
      output.on('error', (error) => {
        fail(new OcularError('server_error', `could not store the upload: ${error.message}`, { cause: error }));
      });
      stream.on('limit', () => fail(fileTooLarge()));
      // pipe() carries the disk's backpressure to busboy, and from busboy to the socket (onData below).
      stream.pipe(output);
    });

    parser.on('field', (name: string | undefined, value: string, info: busboy.FieldInfo) => {
      if (settled) return;
      if (name === undefined || name === '') {
        fail(validationError('a form field has no name'));
      } else if (options.allowedFields && !options.allowedFields.includes(name)) {
        fail(validationError(`unknown form field "${name}"`, name));
      } else if (info.valueTruncated) {
        fail(validationError(`form field "${name}" is longer than ${maxFieldBytes} bytes`, name));
      } else if (Object.hasOwn(fields, name)) {
        fail(validationError(`form field "${name}" is sent more than once`, name));
      } else {
        fields[name] = value;
      }
    });

    parser.on('filesLimit', () =>
      fail(
        validationError(
          maxFiles === 1
            ? `send one file part ("${options.fileField}"), not several`
            : `send at most ${maxFiles} file parts ("${options.fileField}")`,
          options.fileField,
        ),
      ),
    );
    parser.on('fieldsLimit', () => fail(validationError(`the form has more than ${maxFields} fields`)));
    parser.on('error', (error: Error) => fail(validationError(`malformed multipart body: ${error.message}`)));
    parser.on('finish', () => {
      parsed = true;
      succeed();
    });

    const onData = (chunk: Buffer): void => {
      received += chunk.length;
      if (received > maxBodyBytes) {
        fail(bodyTooLarge());
        return;
      }
      if (!parser.write(chunk)) {
        disarmIdle();
        incoming.pause();
        parser.once('drain', () => {
          if (settled) return;
          armIdle();
          incoming.resume();
        });
      } else {
        armIdle();
      }
    };
    const onEnd = (): void => {
      if (!settled) parser.end();
    };
    // 'close' without 'end': the client went away mid-body (Node emits 'aborted' and an ECONNRESET 'error' first).
    const onClose = (): void => {
      if (!incoming.readableEnded) fail(cutShort());
    };

    incoming
      .on('error', () => undefined)
      .on('data', onData)
      .once('end', onEnd)
      .once('close', onClose);
    if (incoming.readableEnded) parser.end();
    else {
      armIdle();
      incoming.resume();
    }
  });
}
