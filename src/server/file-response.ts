import { Readable } from 'node:stream';
import type { ReadableStream as NodeReadableStream } from 'node:stream/web';
import { OcularError } from '../spec/errors.ts';
import { contentDisposition, fileSource, STORE_URL_SECONDS, type BlobSource } from '../store/object-store.ts';

/** What `fileResponse` reads from the request: a fetch `Request` (`c.req.raw`) fits. */
export interface FileRequest {
  method: string;
  headers: { get(name: string): string | null };
}

export interface FileResponseOptions {
  contentType: string;
  /** Sent as is on 200, 206 and 304 (`private, max-age=3600`). @default none */
  cacheControl?: string | undefined;
  /** When set, the response is a download (`Content-Disposition: attachment`) under this name. */
  downloadName?: string | undefined;
  /** When the URL that asked ends; a redirect to the blob store's own signed URL lasts as long. @default 5 minutes */
  expiresAt?: Date | undefined;
}

/** A byte range, both ends inclusive. */
interface ByteRange {
  start: number;
  end: number;
}

export type RangeRequest = { kind: 'none' } | { kind: 'unsatisfiable' } | ({ kind: 'range' } & ByteRange);

/**
 * Reads a `Range` header for a representation of `size` bytes (RFC 9110 §14). A header that is not one
 * well-formed `bytes` range is ignored, which the RFC allows: a request for several ranges gets the whole file
 * (200) rather than a multipart/byteranges body, which no client of Ocular (browsers seeking in a video,
 * download resumers) asks for.
 */
export function parseRange(header: string, size: number): RangeRequest {
  const match = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(header);
  if (!match) return { kind: 'none' };
  const [, first = '', last = ''] = match;
  if (first === '') {
    if (last === '') return { kind: 'none' };
    // Suffix range: the last `n` bytes, all of them when the file is shorter.
    const length = Number(last);
    if (length === 0 || size === 0) return { kind: 'unsatisfiable' };
    return { kind: 'range', start: Math.max(0, size - length), end: size - 1 };
  }
  const start = Number(first);
  const end = last === '' ? Number.POSITIVE_INFINITY : Number(last);
  if (!Number.isSafeInteger(start) || end < start) return { kind: 'none' };
  if (start >= size) return { kind: 'unsatisfiable' };
  return { kind: 'range', start, end: Math.min(end, size - 1) };
}

/** Weak comparison (RFC 9110 §8.8.3.2), as `If-None-Match` requires. */
function noneMatch(header: string, etag: string): boolean {
  if (header.trim() === '*') return true;
  return header.split(',').some((tag) => tag.trim().replace(/^W\//, '') === etag);
}

/** Whether `If-Range` still describes the file, so the range may be served (strong comparison for tags). */
function ifRangeHolds(header: string, etag: string, mtimeMs: number): boolean {
  const value = header.trim();
  if (value.startsWith('"') || value.startsWith('W/')) return value === etag;
  const date = Date.parse(value);
  return !Number.isNaN(date) && Math.floor(mtimeMs / 1000) * 1000 === date;
}

/**
 * Answers a GET or HEAD for a file on disk, streaming it (never buffering) with range and conditional request
 * support: `bytes=a-b`, `bytes=a-` and `bytes=-n` get 206 with `Content-Range`, a range past the end 416
 * (`Content-Range: bytes *\/size`), several ranges the whole file; `If-None-Match` / `If-Modified-Since` give
 * 304, `If-Range` with a stale validator the whole file. HEAD ignores `Range`, as RFC 9110 §14.2 asks.
 *
 * The file is opened once and the size, validators and bytes all come from that one descriptor, so a file
 * replaced by rename while this runs is served whole, old or new, never mixed. A missing file is a 404
 * `OcularError`; other methods are rejected (the router should only send GET and HEAD here).
 */
export async function fileResponse(file: string | BlobSource, request: FileRequest, options: FileResponseOptions): Promise<Response> {
  const method = request.method.toUpperCase();
  if (method !== 'GET' && method !== 'HEAD')
    throw new OcularError('validation_error', `${request.method} is not supported here; use GET or HEAD`);
  const source = typeof file === 'string' ? fileSource(file) : file;
  if (source.redirect !== undefined) {
    // The store serves the bytes (ranges and validators included) under a URL it signed.
    const location = await source.redirect(options.expiresAt ?? new Date(Date.now() + STORE_URL_SECONDS * 1000), options);
    return new Response(null, { status: 302, headers: { Location: location, 'Cache-Control': 'no-store' } });
  }
  try {
    const stats = await source.stat();
    if (stats === undefined) throw new OcularError('not_found_error', 'no such file');
    const { size, etag } = stats;
    const validators: Record<string, string> = {
      ETag: etag,
      'Last-Modified': new Date(stats.mtimeMs).toUTCString(),
      ...(options.cacheControl === undefined ? {} : { 'Cache-Control': options.cacheControl }),
    };

    const ifNoneMatch = request.headers.get('if-none-match');
    const ifModifiedSince = request.headers.get('if-modified-since');
    // If-Modified-Since counts only without If-None-Match (RFC 9110 §13.1.3); HTTP dates have whole seconds.
    const notModified =
      ifNoneMatch !== null
        ? noneMatch(ifNoneMatch, etag)
        : ifModifiedSince !== null && Math.floor(stats.mtimeMs / 1000) * 1000 <= Date.parse(ifModifiedSince);
    // No Content-Length on 304: the client keeps the length it has, and a 0 here would be taken as the new one.
    if (notModified) return new Response(null, { status: 304, headers: validators });

    const headers: Record<string, string> = {
      ...validators,
      'Content-Type': options.contentType,
      'Accept-Ranges': 'bytes',
      // Uploaded blobs are served under the type Ocular decided, never one a browser sniffs from their bytes.
      'X-Content-Type-Options': 'nosniff',
      ...(options.downloadName === undefined ? {} : { 'Content-Disposition': contentDisposition(options.downloadName) }),
    };

    const rangeHeader = method === 'GET' ? request.headers.get('range') : null;
    const ifRange = request.headers.get('if-range');
    const range =
      rangeHeader === null || (ifRange !== null && !ifRangeHolds(ifRange, etag, stats.mtimeMs)) ? undefined : parseRange(rangeHeader, size);

    if (range?.kind === 'unsatisfiable') {
      return new Response(null, { status: 416, headers: { ...headers, 'Content-Range': `bytes */${size}`, 'Content-Length': '0' } });
    }
    const { status, start, end } = range?.kind === 'range' ? { status: 206, ...range } : { status: 200, start: 0, end: size - 1 };
    headers['Content-Length'] = String(end - start + 1);
    if (status === 206) headers['Content-Range'] = `bytes ${start}-${end}/${size}`;
    if (method === 'HEAD' || end < start) return new Response(null, { status, headers });

    const stream = await source.stream(start, end);
    const body = Readable.toWeb(stream) as NodeReadableStream<Uint8Array> as unknown as ReadableStream<Uint8Array>;
    return new Response(body, { status, headers });
  } finally {
    await source.close();
  }
}
