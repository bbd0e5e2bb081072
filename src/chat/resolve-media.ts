import { OcularError, validationError } from '../spec/errors.ts';
import type { MediaContent, MediaKind, MediaReference } from '../spec/messages.ts';

export interface MediaLimits {
  /** Largest decoded media item, in bytes. */
  maxBytes: number;
}

const DATA_URL = /^data:([^,;]*)((?:;[^,;]*)*?)(;base64)?,/i;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

function matchesKind(kind: MediaKind, mediaType: string): boolean {
  if (kind === 'pdf') return mediaType === 'application/pdf';
  return mediaType.startsWith(`${kind}/`);
}

/** Normalises a media type as clients write it (`image/JPG`, `audio/x-wav`). */
function normaliseMediaType(value: string): string {
  const lower = value.trim().toLowerCase();
  return lower === 'image/jpg' ? 'image/jpeg' : lower;
}

/**
 * Decodes a `data:` URL into base64 content. The declared type must match the part's kind; size is checked
 * on the encoded length before anything is decoded.
 */
export function resolveDataUrl(reference: MediaReference, param: string, limits: MediaLimits): MediaContent {
  const header = DATA_URL.exec(reference.url);
  if (!header) throw validationError(`${param}: malformed data: URL`, param);
  const mediaType = normaliseMediaType(header[1] || 'text/plain');
  if (!matchesKind(reference.kind, mediaType)) {
    throw new OcularError('unsupported_media_type', `${param}: a ${reference.kind} part cannot carry ${mediaType}`, { param });
  }
  const payload = reference.url.slice(header[0].length);
  const isBase64 = header[3] !== undefined;
  const estimatedBytes = isBase64 ? Math.floor((payload.length * 3) / 4) : payload.length;
  if (estimatedBytes > limits.maxBytes) {
    throw new OcularError('payload_too_large', `${param}: media is larger than the ${limits.maxBytes}-byte limit`, { param });
  }
  if (isBase64) {
    let compact = payload;
    if (payload.includes('%') || /\s/.test(payload)) {
      try {
        compact = decodeURIComponent(payload).replace(/\s+/g, '');
      } catch {
        throw validationError(`${param}: the data: URL is not valid base64`, param);
      }
    }
    const base64 = compact.replaceAll('-', '+').replaceAll('_', '/');
    if (base64.length === 0 || !BASE64.test(base64)) throw validationError(`${param}: the data: URL is not valid base64`, param);
    return { type: 'media', kind: reference.kind, mediaType, data: base64 };
  }
  let bytes: Buffer;
  try {
    bytes = Buffer.from(decodeURIComponent(payload), 'utf8');
  } catch {
    throw validationError(`${param}: the data: URL is not valid percent-encoding`, param);
  }
  return { type: 'media', kind: reference.kind, mediaType, data: bytes.toString('base64') };
}

/** Turns a client's media reference into content a provider can send. */
export function resolveMedia(reference: MediaReference, param: string, limits: MediaLimits): MediaContent {
  const scheme = reference.url.slice(0, reference.url.indexOf(':') + 1).toLowerCase();
  if (scheme === 'data:') return resolveDataUrl(reference, param, limits);
  if (scheme === 'http:' || scheme === 'https:') {
    // Remote media needs the SSRF-safe fetcher of the media pipeline; until it lands, say so plainly.
    throw validationError(
      `${param}: remote ${reference.kind} URLs are not supported yet; send the ${reference.kind} inline as a data: URL`,
      param,
    );
  }
  throw validationError(`${param}: unsupported URL scheme; use a data: URL`, param);
}
