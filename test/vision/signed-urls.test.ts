import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createUrlSigner, loadOrCreateSigningSecret, SIGNING_KEY_FILE } from '../../src/vision/signed-urls.ts';

const secret = Buffer.alloc(32, 7);
const signer = createUrlSigner({ secret });
const now = new Date('2030-01-01T00:00:00Z');
const inAnHour = new Date(now.getTime() + 3_600_000);

/** The query of a signed URL, as a router would hand it over. */
function queryOf(url: string): { path: string; expires: string; signature: string } {
  const parsed = new URL(url, 'http://ocular.test');
  return {
    path: parsed.pathname,
    expires: parsed.searchParams.get('expires') ?? '',
    signature: parsed.searchParams.get('signature') ?? '',
  };
}

describe('createUrlSigner', () => {
  it('signs a path with its expiry in unix seconds and verifies it until then', () => {
    const url = signer.sign('/v1/videos/abc/thumbnails/3.jpg', inAnHour);
    expect(url).toMatch(/^\/v1\/videos\/abc\/thumbnails\/3\.jpg\?expires=\d+&signature=[\w-]{43}$/);
    const { path, expires, signature } = queryOf(url);
    expect(Number(expires)).toBe(inAnHour.getTime() / 1000);
    expect(signer.verify(path, { expires, signature }, now)).toBe('ok');
    expect(signer.verify(path, { expires, signature }, new Date(inAnHour.getTime() - 1))).toBe('ok');
  });

  it('says expired from the expiry second on', () => {
    const { path, expires, signature } = queryOf(signer.sign('/v1/videos/abc', inAnHour));
    expect(signer.verify(path, { expires, signature }, inAnHour)).toBe('expired');
    expect(signer.verify(path, { expires, signature }, new Date(inAnHour.getTime() + 86_400_000))).toBe('expired');
    expect(signer.verify(path, { expires, signature }, new Date(Number.NaN))).toBe('expired');
  });

  it('rejects a changed path, expiry or signature', () => {
    const { path, expires, signature } = queryOf(signer.sign('/v1/videos/abc', inAnHour));
    expect(signer.verify('/v1/videos/abd', { expires, signature }, now)).toBe('invalid');
    expect(signer.verify('/v1/videos/abc/', { expires, signature }, now)).toBe('invalid');
    // A later expiry is the tampering that matters most: it must not turn an expired URL back into a valid one.
    expect(signer.verify(path, { expires: String(Number(expires) + 3600), signature }, now)).toBe('invalid');
    expect(signer.verify(path, { expires: `0${expires}`, signature }, now)).toBe('invalid');
    const flipped = (signature[0] === 'A' ? 'B' : 'A') + signature.slice(1);
    expect(signer.verify(path, { expires, signature: flipped }, now)).toBe('invalid');
  });

  it('rejects a URL signed with another secret, and an expired one as invalid rather than expired', () => {
    const other = createUrlSigner({ secret: Buffer.alloc(32, 8) });
    const { path, expires, signature } = queryOf(other.sign('/v1/videos/abc', inAnHour));
    expect(signer.verify(path, { expires, signature }, now)).toBe('invalid');
    expect(signer.verify(path, { expires, signature }, new Date(inAnHour.getTime() + 1000))).toBe('invalid');
  });

  it.each([
    ['missing expires', { signature: 'x'.repeat(43) }],
    ['missing signature', { expires: '1893459600' }],
    ['non-numeric expires', { expires: 'soon', signature: 'x'.repeat(43) }],
    ['negative expires', { expires: '-1', signature: 'x'.repeat(43) }],
    ['fractional expires', { expires: '1893459600.5', signature: 'x'.repeat(43) }],
    ['huge expires', { expires: '9'.repeat(400), signature: 'x'.repeat(43) }],
    ['short signature', { expires: '1893459600', signature: 'abc' }],
    ['long signature', { expires: '1893459600', signature: 'x'.repeat(44) }],
    ['padded signature', { expires: '1893459600', signature: `${'x'.repeat(42)}=` }],
    ['signature with non-ASCII', { expires: '1893459600', signature: `${'x'.repeat(42)}é` }],
    ['empty values', { expires: '', signature: '' }],
  ])('says invalid, without throwing, for %s', (_name, query) => {
    expect(signer.verify('/v1/videos/abc', query, now)).toBe('invalid');
  });

  it('refuses the non-canonical spelling of a valid signature', () => {
    const { path, expires, signature } = queryOf(signer.sign('/v1/videos/abc', inAnHour));
    // The last of 43 base64url characters carries 4 bits plus 2 unused ones: flipping an unused bit decodes to
    // the same bytes, and must still be refused.
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const last = alphabet.indexOf(signature.at(-1)!);
    const variant = signature.slice(0, -1) + alphabet[last ^ 1];
    expect(Buffer.from(variant, 'base64url').equals(Buffer.from(signature, 'base64url'))).toBe(true);
    expect(signer.verify(path, { expires, signature: variant }, now)).toBe('invalid');
  });

  it('prefixes the base URL outside the signature', () => {
    const absolute = createUrlSigner({ secret, baseUrl: 'https://ocular.example/' });
    const url = absolute.sign('/v1/videos/abc', inAnHour);
    expect(url.startsWith('https://ocular.example/v1/videos/abc?expires=')).toBe(true);
    const { path, expires, signature } = queryOf(url);
    expect(signer.verify(path, { expires, signature }, now)).toBe('ok');
  });

  it('refuses to sign what is not a bare path, and refuses short secrets', () => {
    expect(() => signer.sign('v1/videos', inAnHour)).toThrow(TypeError);
    expect(() => signer.sign('/v1/videos?x=1', inAnHour)).toThrow(TypeError);
    expect(() => signer.sign('/v1/videos', new Date(Number.NaN))).toThrow(RangeError);
    expect(() => createUrlSigner({ secret: Buffer.alloc(16) })).toThrow(RangeError);
  });

  it('keeps its own copy of the secret', () => {
    const mutable = Buffer.alloc(32, 1);
    const own = createUrlSigner({ secret: mutable });
    const { path, expires, signature } = queryOf(own.sign('/a', inAnHour));
    mutable.fill(2);
    expect(own.verify(path, { expires, signature }, now)).toBe('ok');
  });
});

describe('loadOrCreateSigningSecret', () => {
  const dirs: string[] = [];
  const tempDir = (): string => {
    const dir = mkdtempSync(join(tmpdir(), 'ocular-signing-'));
    dirs.push(dir);
    return dir;
  };
  afterEach(() => {
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  it('creates 32 random bytes once, with mode 0600, and reads the same key afterwards', () => {
    const dataDir = tempDir();
    const first = loadOrCreateSigningSecret(dataDir);
    expect(first.length).toBe(32);
    const path = join(dataDir, SIGNING_KEY_FILE);
    expect(readFileSync(path).equals(first)).toBe(true);
    if (process.platform !== 'win32') expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(loadOrCreateSigningSecret(dataDir).equals(first)).toBe(true);
    // No temporary files left behind.
    expect(readdirSync(dataDir)).toEqual([SIGNING_KEY_FILE]);
    // A URL signed before a "restart" verifies after it.
    const url = createUrlSigner({ secret: first }).sign('/v1/videos/abc', inAnHour);
    const { path: signedPath, expires, signature } = queryOf(url);
    expect(createUrlSigner({ secret: loadOrCreateSigningSecret(dataDir) }).verify(signedPath, { expires, signature }, now)).toBe('ok');
  });

  it('makes different keys for different data dirs, creating the dir when needed', () => {
    const nested = join(tempDir(), 'not', 'yet');
    expect(loadOrCreateSigningSecret(nested).equals(loadOrCreateSigningSecret(tempDir()))).toBe(false);
  });

  it('keeps an existing key file and refuses a corrupt one', () => {
    const dataDir = tempDir();
    const key = randomBytes(32);
    writeFileSync(join(dataDir, SIGNING_KEY_FILE), key, { mode: 0o600 });
    expect(loadOrCreateSigningSecret(dataDir).equals(key)).toBe(true);
    writeFileSync(join(dataDir, SIGNING_KEY_FILE), 'short');
    expect(() => loadOrCreateSigningSecret(dataDir)).toThrow(/url-signing-key/);
  });
});
