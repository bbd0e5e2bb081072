import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { downloadFile, ModelDownloadError, type DownloadProgress } from '../../src/models/download-file.ts';
import { hubFileUrl, readHubChecksum } from '../../src/models/hub.ts';
import { resolveModelReference, type ModelSource } from '../../src/models/model-source.ts';
import { ProgressReporter } from '../../src/models/progress.ts';
import { pullModel } from '../../src/models/pull-model.ts';
import { sha256Of, startFakeHub, testBytes, type FakeHub } from './fake-hub.ts';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function hub(options: { token?: string } = {}): Promise<FakeHub> {
  const started = await startFakeHub(options);
  cleanups.push(() => started.close());
  return started;
}

function temporaryDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'ocular-models-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function downloadError(promise: Promise<unknown>): Promise<ModelDownloadError> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(ModelDownloadError);
  return error as ModelDownloadError;
}

const REPO = 'test-org/tiny-GGUF';

describe('downloadFile', () => {
  it('downloads through the hub redirect and verifies against both the expected digest and X-Linked-Etag', async () => {
    const server = await hub();
    const content = testBytes(300_000);
    const sha256 = server.add(REPO, 'model.gguf', { content });
    const destination = join(temporaryDir(), 'm', 'model.gguf');
    const progress: DownloadProgress[] = [];
    const result = await downloadFile({
      url: hubFileUrl({ endpoint: server.url }, REPO, 'model.gguf'),
      destination,
      sha256,
      size: content.length,
      onProgress: (update) => progress.push(update),
    });
    expect(result).toMatchObject({ path: destination, size: content.length, sha256, verifiedWith: ['expected', 'hub'] });
    expect(readFileSync(destination).equals(content)).toBe(true);
    expect(readdirSync(join(destination, '..'))).toEqual(['model.gguf']); // no .part or .lock left
    expect(progress.at(-1)).toMatchObject({ received: content.length, total: content.length });
    expect(progress.map((update) => update.received)).toEqual([...progress.map((update) => update.received)].sort((a, b) => a - b));
  });

  it('resumes with a Range request after the connection is cut halfway, and ends with the right bytes', async () => {
    const server = await hub();
    const content = testBytes(400_000, 7);
    server.add(REPO, 'cut.gguf', { content, cuts: 1 });
    const destination = join(temporaryDir(), 'cut.gguf');
    const result = await downloadFile({ url: hubFileUrl({ endpoint: server.url }, REPO, 'cut.gguf'), destination });
    expect(readFileSync(destination).equals(content)).toBe(true);
    expect(result.verifiedWith).toEqual(['hub']);
    const ranges = server.requests.filter((request) => request.path.startsWith('/cdn/')).map((request) => request.range);
    expect(ranges[0]).toBeUndefined();
    expect(ranges[1]).toMatch(/^bytes=[1-9]\d*-$/);
  });

  it('gives up on a connection that stalls and resumes on a new one', async () => {
    const server = await hub();
    const content = testBytes(200_000, 8);
    server.add(REPO, 'stall.gguf', { content, stalls: 1 });
    const destination = join(temporaryDir(), 'stall.gguf');
    await downloadFile({ url: hubFileUrl({ endpoint: server.url }, REPO, 'stall.gguf'), destination, stallTimeoutMs: 300 });
    expect(readFileSync(destination).equals(content)).toBe(true);
    expect(server.requests.filter((request) => request.path.startsWith('/cdn/')).map((request) => request.range)).toEqual([
      undefined,
      'bytes=100000-',
    ]);
  });

  it('resumes a .part left by an earlier run, re-hashing what it holds', async () => {
    const server = await hub();
    const content = testBytes(200_000, 3);
    const sha256 = server.add(REPO, 'resume.gguf', { content });
    const destination = join(temporaryDir(), 'resume.gguf');
    writeFileSync(`${destination}.part`, content.subarray(0, 123_456));
    const result = await downloadFile({ url: hubFileUrl({ endpoint: server.url }, REPO, 'resume.gguf'), destination, sha256 });
    expect(result.sha256).toBe(sha256);
    expect(readFileSync(destination).equals(content)).toBe(true);
    expect(server.requests.find((request) => request.path.startsWith('/cdn/'))?.range).toBe('bytes=123456-');
  });

  it('fails on a checksum mismatch and leaves neither the file nor the .part', async () => {
    const server = await hub();
    const content = testBytes(100_000, 5);
    // The hub publishes no checksum here; the expected digest is the only source, and it does not match.
    server.add(REPO, 'bad.gguf', { content, etag: null });
    const destination = join(temporaryDir(), 'bad.gguf');
    const error = await downloadError(
      downloadFile({ url: hubFileUrl({ endpoint: server.url }, REPO, 'bad.gguf'), destination, sha256: sha256Of(testBytes(10)) }),
    );
    expect(error.code).toBe('checksum_mismatch');
    expect(readdirSync(join(destination, '..'))).toEqual([]);
  });

  it('fails when the bytes do not match the hub X-Linked-Etag (no other checksum source)', async () => {
    const server = await hub();
    server.add(REPO, 'lying.gguf', { content: testBytes(50_000, 9), etag: sha256Of(testBytes(50_000, 10)) });
    const destination = join(temporaryDir(), 'lying.gguf');
    const error = await downloadError(downloadFile({ url: hubFileUrl({ endpoint: server.url }, REPO, 'lying.gguf'), destination }));
    expect(error.code).toBe('checksum_mismatch');
    expect(readdirSync(join(destination, '..'))).toEqual([]);
  });

  it('fails a corrupt .part from an earlier run (resumed bytes are verified end to end) and removes it', async () => {
    const server = await hub();
    const content = testBytes(80_000, 11);
    const sha256 = server.add(REPO, 'corrupt.gguf', { content });
    const destination = join(temporaryDir(), 'corrupt.gguf');
    writeFileSync(`${destination}.part`, testBytes(40_000, 99));
    const error = await downloadError(
      downloadFile({ url: hubFileUrl({ endpoint: server.url }, REPO, 'corrupt.gguf'), destination, sha256 }),
    );
    expect(error.code).toBe('checksum_mismatch');
    expect(existsSync(destination)).toBe(false);
    expect(existsSync(`${destination}.part`)).toBe(false);
  });

  it('refuses before downloading when the hub publishes a different file than the expected one', async () => {
    const server = await hub();
    server.add(REPO, 'changed.gguf', { content: testBytes(60_000, 12) });
    const destination = join(temporaryDir(), 'changed.gguf');
    const error = await downloadError(
      downloadFile({
        url: hubFileUrl({ endpoint: server.url }, REPO, 'changed.gguf'),
        destination,
        sha256: sha256Of(testBytes(60_000, 13)),
      }),
    );
    expect(error.code).toBe('checksum_mismatch');
    expect(server.requests.some((request) => request.path.startsWith('/cdn/'))).toBe(false);
    expect(readdirSync(join(destination, '..'))).toEqual([]);
  });

  it('starts over when the server ignores the Range and sends the whole file', async () => {
    const server = await hub();
    const content = testBytes(90_000, 14);
    server.add(REPO, 'norange.gguf', { content, ignoreRange: true });
    const destination = join(temporaryDir(), 'norange.gguf');
    writeFileSync(`${destination}.part`, content.subarray(0, 30_000));
    await downloadFile({ url: hubFileUrl({ endpoint: server.url }, REPO, 'norange.gguf'), destination });
    expect(readFileSync(destination).equals(content)).toBe(true);
  });

  it('sends HF_TOKEN as a bearer token to the hub but not to the CDN it redirects to', async () => {
    const server = await hub({ token: 'hf_secret' });
    const content = testBytes(10_000, 15);
    server.add(REPO, 'gated.gguf', { content });
    const dir = temporaryDir();
    const url = hubFileUrl({ endpoint: server.url }, REPO, 'gated.gguf');
    const anonymous = await downloadError(downloadFile({ url, destination: join(dir, 'a.gguf') }));
    expect(anonymous.code).toBe('unauthorized');
    expect(anonymous.message).toContain('HF_TOKEN');

    await downloadFile({ url, destination: join(dir, 'b.gguf'), token: 'hf_secret' });
    expect(readFileSync(join(dir, 'b.gguf')).equals(content)).toBe(true);
    const hubRequest = server.requests.filter((request) => request.path.includes('/resolve/')).at(-1);
    expect(hubRequest?.authorization).toBe('Bearer hf_secret');
    const cdnRequest = server.requests.filter((request) => request.path.startsWith('/cdn/')).at(-1);
    expect(cdnRequest?.authorization).toBeUndefined();
  });

  it('reports a missing file as not_found and a refused connection as a retryable network error', async () => {
    const server = await hub();
    const dir = temporaryDir();
    const missing = await downloadError(
      downloadFile({ url: hubFileUrl({ endpoint: server.url }, REPO, 'nope.gguf'), destination: join(dir, 'nope.gguf') }),
    );
    expect(missing.code).toBe('not_found');
    const closedUrl = server.url;
    await server.close();
    const offline = await downloadError(
      downloadFile({ url: hubFileUrl({ endpoint: closedUrl }, REPO, 'x.gguf'), destination: join(dir, 'x.gguf') }),
    );
    expect(offline).toMatchObject({ code: 'network_error', retryable: true });
  });

  it('lets one download at a time write a given file', async () => {
    const server = await hub();
    server.add(REPO, 'slow.gguf', { content: testBytes(40_000, 16), bytesPerSecond: 100_000 });
    const destination = join(temporaryDir(), 'slow.gguf');
    const url = hubFileUrl({ endpoint: server.url }, REPO, 'slow.gguf');
    const results = await Promise.allSettled([downloadFile({ url, destination }), downloadFile({ url, destination })]);
    expect(results.filter((result) => result.status === 'fulfilled')).toHaveLength(1);
    const refused = results.find((result) => result.status === 'rejected');
    expect(refused?.reason).toBeInstanceOf(ModelDownloadError);
    expect((refused?.reason as ModelDownloadError).code).toBe('busy');
    expect(readFileSync(destination).equals(server.files.get(`${REPO}/slow.gguf`)!.content)).toBe(true);
    expect(existsSync(`${destination}.lock`)).toBe(false);
  });
});

describe('readHubChecksum', () => {
  it('takes X-Linked-Etag (or a sha256 ETag) and ignores git blob sha1 ETags', () => {
    const sha = 'a'.repeat(64);
    expect(readHubChecksum(new Headers({ 'x-linked-etag': `"${sha}"`, 'x-linked-size': '42' }))).toEqual({ sha256: sha, size: 42 });
    expect(readHubChecksum(new Headers({ etag: `W/"${sha.toUpperCase()}"` })).sha256).toBe(sha);
    expect(readHubChecksum(new Headers({ etag: `"${'b'.repeat(40)}"` })).sha256).toBeUndefined();
  });
});

describe('pullModel', () => {
  it('pulls every file of a source into <models>/<folder>, skipping files already in place', async () => {
    const server = await hub();
    const model = testBytes(120_000, 21);
    const mmproj = testBytes(30_000, 22);
    const source: ModelSource = {
      name: 'tiny',
      folder: ['tiny'],
      catalog: undefined,
      files: [
        { role: 'model', repo: REPO, file: 'tiny.gguf', size: model.length, sha256: server.add(REPO, 'tiny.gguf', { content: model }) },
        {
          role: 'mmproj',
          repo: REPO,
          file: 'mmproj-tiny.gguf',
          size: mmproj.length,
          sha256: server.add(REPO, 'mmproj-tiny.gguf', { content: mmproj }),
        },
      ],
    };
    const modelsDir = temporaryDir();
    const first = await pullModel(source, { modelsDir, hub: { endpoint: server.url, token: undefined } });
    expect(first.map((pulled) => pulled.path)).toEqual([join(modelsDir, 'tiny', 'tiny.gguf'), join(modelsDir, 'tiny', 'mmproj-tiny.gguf')]);
    expect(first.every((pulled) => pulled.download?.verifiedWith.includes('expected'))).toBe(true);
    expect(readFileSync(join(modelsDir, 'tiny', 'mmproj-tiny.gguf')).equals(mmproj)).toBe(true);

    const requestsBefore = server.requests.length;
    const second = await pullModel(source, { modelsDir, hub: { endpoint: server.url, token: undefined } });
    expect(second.every((pulled) => pulled.download === undefined)).toBe(true);
    expect(server.requests.length).toBe(requestsBefore);
  });

  it('puts owner/repo:file references under <models>/<owner>/<repo>/', async () => {
    const server = await hub();
    server.add(REPO, 'sub/dir/file.gguf', { content: testBytes(1000) });
    const modelsDir = temporaryDir();
    mkdirSync(modelsDir, { recursive: true });
    const [pulled] = await pullModel(resolveModelReference(`${REPO}:sub/dir/file.gguf`), {
      modelsDir,
      hub: { endpoint: server.url, token: undefined },
    });
    expect(pulled?.path).toBe(join(modelsDir, 'test-org', 'tiny-GGUF', 'sub', 'dir', 'file.gguf'));
    expect(existsSync(pulled!.path)).toBe(true);
  });
});

describe('ProgressReporter', () => {
  it('redraws a bar in place on a terminal and prints lines elsewhere', () => {
    const progress = { received: 250_000, total: 1_000_000, bytesPerSecond: 50_000 };
    const terminal: string[] = [];
    const bar = new ProgressReporter({ write: (text: string) => terminal.push(text), isTTY: true, columns: 120 }, 'model.gguf');
    bar.update(progress);
    bar.done();
    expect(terminal[0]).toBe('\r[######------------------] model.gguf 25% (250.0 kB of 1.0 MB), 50.0 kB/s, ETA 15s\x1b[K');
    expect(terminal.at(-1)).toBe('\n');

    const lines: string[] = [];
    const log = new ProgressReporter({ write: (text: string) => lines.push(text) }, 'model.gguf', { intervalMs: 60_000 });
    log.update(progress);
    log.update({ ...progress, received: 500_000 }); // within the interval: not printed
    log.done();
    expect(lines).toEqual([
      'model.gguf 25% (250.0 kB of 1.0 MB), 50.0 kB/s, ETA 15s\n',
      'model.gguf 50% (500.0 kB of 1.0 MB), 50.0 kB/s, ETA 10s\n',
    ]);
  });
});
