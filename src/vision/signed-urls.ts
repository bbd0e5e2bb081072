import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { chmodSync, linkSync, mkdirSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface UrlSignerOptions {
  /** HMAC key, at least 32 bytes (see `loadOrCreateSigningSecret`). */
  secret: Buffer;
  /** Prepended to signed paths (`https://ocular.example`), outside the signature. @default none: relative URLs */
  baseUrl?: string | undefined;
}

/** The query parameters of a signed URL, as the router hands them over. */
export interface SignedUrlQuery {
  expires?: string | undefined;
  signature?: string | undefined;
}

export type SignedUrlVerdict = 'ok' | 'expired' | 'invalid';

export interface UrlSigner {
  /**
   * `path?expires=<unix seconds>&signature=<base64url HMAC>`, prefixed with `baseUrl`. `path` is the URL path
   * exactly as it will be requested: starting with `/`, already percent-encoded, without query or fragment.
   * `expiresAt` is rounded down to the second.
   */
  sign(path: string, expiresAt: Date): string;
  /**
   * Checks a request for a signed path: `path` as it arrived (the raw, still-encoded pathname). Never throws:
   * anything missing, malformed or tampered with is `'invalid'`; `'expired'` is only said of a URL this
   * server did sign.
   */
  verify(path: string, query: SignedUrlQuery, now?: Date): SignedUrlVerdict;
}

export const SIGNING_KEY_FILE = 'url-signing-key';
const SECRET_BYTES = 32;
/** Versioned domain separation: a MAC made for this purpose is never valid for another use of the key. */
const MAC_CONTEXT = 'ocular-signed-url-v1';
/** base64url of a SHA-256 HMAC: 32 bytes, 43 characters, no padding. */
const SIGNATURE = /^[A-Za-z0-9_-]{43}$/;
/** Whole unix seconds; twelve digits reach past the year 33000, and keep `Number` exact. */
const EXPIRES = /^\d{1,12}$/;

export function createUrlSigner(options: UrlSignerOptions): UrlSigner {
  if (options.secret.length < SECRET_BYTES) throw new RangeError(`the URL signing secret must be at least ${SECRET_BYTES} bytes`);
  const secret = Buffer.from(options.secret);
  const baseUrl = options.baseUrl?.replace(/\/+$/, '') ?? '';

  // Expiry first and newline-separated: it is digits only, so no two (path, expiry) pairs give the same input.
  const mac = (path: string, expires: string): string =>
    createHmac('sha256', secret).update(`${MAC_CONTEXT}\n${expires}\n${path}`).digest('base64url');

  return {
    sign(path, expiresAt) {
      if (!path.startsWith('/') || /[?#]/.test(path))
        throw new TypeError(`cannot sign "${path}": expected a path starting with "/", without query or fragment`);
      const time = expiresAt.getTime();
      if (!Number.isFinite(time) || time < 0) throw new RangeError('cannot sign a URL with an invalid expiry date');
      const expires = String(Math.floor(time / 1000));
      return `${baseUrl}${path}?expires=${expires}&signature=${mac(path, expires)}`;
    },

    verify(path, query, now = new Date()) {
      const { expires, signature } = query;
      if (typeof expires !== 'string' || typeof signature !== 'string' || !EXPIRES.test(expires) || !SIGNATURE.test(signature)) {
        return 'invalid';
      }
      // Both sides are 43 ASCII bytes here, as timingSafeEqual needs; comparing the text rather than the
      // decoded bytes also refuses the non-canonical spellings of the last base64 character.
      if (!timingSafeEqual(Buffer.from(signature, 'latin1'), Buffer.from(mac(path, expires), 'latin1'))) return 'invalid';
      // Written so that an invalid `now` (NaN) reads as expired, not as valid forever.
      return now.getTime() < Number(expires) * 1000 ? 'ok' : 'expired';
    },
  };
}

/**
 * The server's URL signing key: 32 random bytes in `<dataDir>/url-signing-key` (mode 0600), created on first
 * start and read afterwards, so signed URLs outlive restarts. The file is written under a temporary name and
 * hard-linked into place, which never replaces an existing key: two servers starting on one data dir at once
 * both end up with the key that won. A key file of the wrong size is an error rather than silently replaced
 * (that would invalidate every URL handed out).
 */
export function loadOrCreateSigningSecret(dataDir: string): Buffer {
  const path = join(dataDir, SIGNING_KEY_FILE);
  const existing = readSecret(path);
  if (existing) return existing;

  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const temporary = `${path}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  writeFileSync(temporary, randomBytes(SECRET_BYTES), { flag: 'wx', mode: 0o600 });
  try {
    chmodSync(temporary, 0o600); // in case a umask took owner bits
    try {
      linkSync(temporary, path);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'EEXIST') return readSecret(path) ?? failMissing(path);
      // File systems without hard links: rename is still atomic, it just cannot refuse to replace.
      if (code === 'EPERM' || code === 'ENOTSUP' || code === 'EOPNOTSUPP' || code === 'ENOSYS') renameSync(temporary, path);
      else throw error;
    }
  } finally {
    try {
      unlinkSync(temporary);
    } catch {
      // already renamed into place
    }
  }
  return readSecret(path) ?? failMissing(path);
}

function readSecret(path: string): Buffer | undefined {
  let secret: Buffer;
  try {
    secret = readFileSync(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  if (secret.length !== SECRET_BYTES) {
    throw new Error(
      `${path} holds ${secret.length} bytes, not a ${SECRET_BYTES}-byte URL signing key; delete it to make a new one (URLs signed with the old key stop working)`,
    );
  }
  return secret;
}

function failMissing(path: string): never {
  throw new Error(`${path} vanished while it was being created`);
}
