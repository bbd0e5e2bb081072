import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { contentSecurityPolicy, DEFAULT_WEB_DIR } from '../../src/server/web-routes.ts';
import { startOcular, type TestOcular } from '../helpers/ocular.ts';

const INDEX = '<!doctype html><title>playground</title><script type="module" src="/assets/index-Ab12_x.js"></script>';
const SCRIPT = 'console.log("playground");';

let root: string;
let built: TestOcular;
let unbuilt: TestOcular;

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'ocular-web-'));
  const dist = join(root, 'dist');
  mkdirSync(join(dist, 'assets'), { recursive: true });
  writeFileSync(join(dist, 'index.html'), INDEX);
  writeFileSync(join(dist, 'assets', 'index-Ab12_x.js'), SCRIPT);
  writeFileSync(join(dist, 'assets', 'tool.exe'), 'MZ');
  writeFileSync(join(dist, 'favicon.svg'), '<svg xmlns="http://www.w3.org/2000/svg"/>');
  // Next to the folder, not in it: never reachable.
  writeFileSync(join(root, 'secret.js'), 'top-secret-bytes');
  built = await startOcular({}, {}, { webDir: dist });
  unbuilt = await startOcular({}, {}, { webDir: join(root, 'missing') });
});

afterAll(async () => {
  await built?.close();
  await unbuilt?.close();
  rmSync(root, { recursive: true, force: true });
});

const plain = (server: TestOcular, path: string, init: RequestInit = {}) => fetch(server.url + path, init);

async function expectError(response: Response, status: number, type: string): Promise<void> {
  const body = (await response.json()) as { error: { type: string } };
  expect({ status: response.status, type: body.error.type }).toEqual({ status, type });
}

describe('the web playground at /', () => {
  it('serves index.html without a key, revalidated on every load, under a restrictive CSP', async () => {
    const response = await plain(built, '/');
    expect(response.status).toBe(200);
    expect(await response.text()).toBe(INDEX);
    expect(response.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(response.headers.get('cache-control')).toBe('no-cache');
    expect(response.headers.get('x-request-id')).toBeTruthy();
    expect(response.headers.get('x-content-type-options')).toBe('nosniff');
    const policy = response.headers.get('content-security-policy')!;
    expect(policy).toContain("default-src 'none'");
    expect(policy).toContain("script-src 'self'");
    expect(policy).toContain("connect-src 'self'");
    expect(policy).toContain("frame-ancestors 'none'");
    expect(policy).not.toContain('unsafe-inline');
    expect(policy).not.toContain('unsafe-eval');
  });

  it('serves hashed assets with long cache headers, validators and HEAD', async () => {
    const response = await plain(built, '/assets/index-Ab12_x.js');
    expect(response.status).toBe(200);
    expect(await response.text()).toBe(SCRIPT);
    expect(response.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    expect(response.headers.get('cache-control')).toBe('public, max-age=31536000, immutable');
    const etag = response.headers.get('etag')!;
    expect(etag).toBeTruthy();
    const again = await plain(built, '/assets/index-Ab12_x.js', { headers: { 'if-none-match': etag } });
    expect(again.status).toBe(304);
    const head = await plain(built, '/assets/index-Ab12_x.js', { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers.get('content-length')).toBe(String(SCRIPT.length));
    expect(await head.text()).toBe('');
  });

  it('serves the favicon Vite copies from web/public', async () => {
    const response = await plain(built, '/favicon.svg');
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('image/svg+xml');
  });

  it('answers 404 for assets that do not exist or are not web files, without a key', async () => {
    await expectError(await plain(built, '/assets/index-missing.js'), 404, 'not_found_error');
    await expectError(await plain(built, '/assets/tool.exe'), 404, 'not_found_error');
  });

  it('never serves a file outside the folder', async () => {
    for (const path of ['/assets/..%2Fsecret.js', '/assets/%2e%2e%2fsecret.js', '/assets/..%5Csecret.js', '/..%2Fsecret.js']) {
      const response = await plain(built, path, { headers: { 'x-api-key': built.key } });
      expect(response.status, path).toBe(404);
      expect(await response.text()).not.toContain('top-secret-bytes');
    }
  });

  it('opens nothing else: the API still asks for a key, and / takes only GET and HEAD', async () => {
    await expectError(await plain(built, '/v1/videos'), 401, 'authentication_error');
    await expectError(await plain(built, '/index.html'), 401, 'authentication_error');
    const post = await plain(built, '/', { method: 'POST', headers: { 'x-api-key': built.key } });
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toContain('GET');
  });

  it('says how to build the playground when it has not been built', async () => {
    const response = await plain(unbuilt, '/');
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(response.headers.get('content-security-policy')).toContain("default-src 'none'");
    expect(await response.text()).toContain('npm run build:web');
    await expectError(await plain(unbuilt, '/assets/index-Ab12_x.js'), 404, 'not_found_error');
  });
});

describe('contentSecurityPolicy', () => {
  it('lets images and videos come from the public base URL signed links point at', () => {
    const policy = contentSecurityPolicy('https://media.example.com/ocular/');
    expect(policy).toMatch(/img-src [^;]*https:\/\/media\.example\.com/);
    expect(policy).toMatch(/media-src [^;]*https:\/\/media\.example\.com/);
    expect(policy).not.toMatch(/connect-src [^;]*media\.example\.com/);
  });

  it('defaults to web/dist in the package, not the working directory', () => {
    expect(DEFAULT_WEB_DIR).toBe(join(import.meta.dirname, '..', '..', 'web', 'dist') + '/');
  });
});
