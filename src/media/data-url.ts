import { OcularError, validationError } from '../spec/errors.ts';

export type DecodedDataUrl =
  /** One item; `declaredType` is what the URL claims, the bytes are sniffed later. */
  | { type: 'bytes'; declaredType: string; data: Buffer }
  /** `data:video/jpeg;base64,F1,F2,...`: a video given as comma-joined base64 JPEG frames. */
  | { type: 'frames'; frames: Buffer[] };

export interface DecodeOptions {
  /** Largest decoded size, in bytes (all frames together). */
  maxBytes: number;
  /** The request field, named in errors (`messages.0.content.1`). */
  label: string;
}

const HEADER = /^data:([^,;]*)((?:;[^,;]*)*?)(;base64)?,/i;

function decodedLength(base64: string): number {
  const padding = base64.endsWith('==') ? 2 : base64.endsWith('=') ? 1 : 0;
  return Math.floor((base64.length * 3) / 4) - padding;
}

/**
 * Decodes base64 strictly: Node's decoder skips characters outside the alphabet, so a length that differs from
 * what the input implies means the input was not base64. Accepts the URL-safe alphabet too.
 */
function decodeBase64(text: string, label: string): Buffer {
  const compact = /\s/.test(text) ? text.replace(/\s+/g, '') : text;
  const data = Buffer.from(compact, 'base64');
  if (compact.length === 0 || compact.length % 4 === 1 || data.length !== decodedLength(compact)) {
    throw validationError(`${label}: the data: URL is not valid base64`, label);
  }
  return data;
}

/** RFC 3986 percent-decoding to bytes (decodeURIComponent would insist on UTF-8). */
function percentDecode(text: string, label: string): Buffer {
  if (/%(?![0-9a-fA-F]{2})/.test(text)) throw validationError(`${label}: the data: URL is not valid percent-encoding`, label);
  // split() with a capture group puts the escaped runs at odd indexes.
  const pieces = text.split(/((?:%[0-9a-fA-F]{2})+)/);
  return Buffer.concat(
    pieces.map((piece, index) => Buffer.from(index % 2 === 1 ? piece.replaceAll('%', '') : piece, index % 2 === 1 ? 'hex' : 'utf8')),
  );
}

function tooLarge(label: string, maxBytes: number): OcularError {
  return new OcularError('payload_too_large', `${label}: media is larger than the ${maxBytes}-byte limit (media.maxBytes)`, {
    param: label,
  });
}

export function isDataUrl(url: string): boolean {
  return url.slice(0, 5).toLowerCase() === 'data:';
}

/** Decodes a `data:` URL, checking the size on the encoded length before decoding anything. */
export function decodeDataUrl(url: string, options: DecodeOptions): DecodedDataUrl {
  const { label, maxBytes } = options;
  const header = HEADER.exec(url);
  if (!header) throw validationError(`${label}: malformed data: URL`, label);
  const declaredType = (header[1] || 'text/plain').trim().toLowerCase();
  let payload = url.slice(header[0].length);
  const isBase64 = header[3] !== undefined;
  if ((isBase64 ? Math.floor((payload.length * 3) / 4) : payload.length) > maxBytes) throw tooLarge(label, maxBytes);
  if (!isBase64) return { type: 'bytes', declaredType, data: percentDecode(payload, label) };
  if (payload.includes('%')) {
    try {
      payload = decodeURIComponent(payload);
    } catch {
      throw validationError(`${label}: the data: URL is not valid base64`, label);
    }
  }
  if (declaredType === 'video/jpeg' && payload.includes(',')) {
    const frames = payload.split(',').map((frame, index) => {
      if (frame.trim() === '') throw validationError(`${label}: frame ${index + 1} of the multi-frame data: URL is empty`, label);
      return decodeBase64(frame, label);
    });
    return { type: 'frames', frames };
  }
  return { type: 'bytes', declaredType, data: decodeBase64(payload, label) };
}
