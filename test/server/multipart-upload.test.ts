import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { request, type IncomingMessage, type Server } from 'node:http';
import { once } from 'node:events';
import { connect, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { serve } from '@hono/node-server';
import { Hono } from 'hono';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { errorEnvelope } from '../../src/server/errors.ts';
import { receiveMultipartUpload, type MultipartUpload, type MultipartUploadOptions } from '../../src/server/multipart-upload.ts';
import { OcularError } from '../../src/spec/errors.ts';
import { S3Blobs } from '../../src/store/object-store.ts';
import { startTestS3, type TestS3 } from '../helpers/s3.ts';

const MAX_FILE_BYTES = 1024 * 1024;

type Outcome = { upload: MultipartUpload } | { error: unknown };

let server: Server;
let url: string;
let port: number;
let dir: string;
let options: Partial<MultipartUploadOptions>;
let outcomes: Outcome[];
let outcomeWaiters: Array<(outcome: Outcome) => void>;

/** The settled result of the next upload the server receives (or the one it already has). */
function nextOutcome(): Promise<Outcome> {
  const ready = outcomes.shift();
  if (ready) return Promise.resolve(ready);
  return new Promise((resolve) => outcomeWaiters.push(resolve));
}

function record(outcome: Outcome): void {
  const waiter = outcomeWaiters.shift();
  if (waiter) waiter(outcome);
  else outcomes.push(outcome);
}

beforeAll(async () => {
  const app = new Hono<{ Bindings: { incoming: IncomingMessage } }>();
  // As app.ts does: the envelope, and no keep-alive after a body that was left unread.
  app.onError((error, c) => {
    const mapped = error instanceof OcularError ? error : new OcularError('server_error', String(error));
    if (mapped.type === 'payload_too_large') c.header('Connection', 'close');
    return c.json(errorEnvelope(mapped), mapped.status as 400);
  });
  app.post('/upload', async (c) => {
    try {
      const upload = await receiveMultipartUpload(c.env.incoming, {
        directory: dir,
        fileField: 'file',
        maxFileBytes: MAX_FILE_BYTES,
        ...options,
      });
      record({ upload });
      return c.json(upload);
    } catch (error) {
      record({ error });
      throw error;
    }
  });
  server = await new Promise<Server>((resolve) => {
    const instance = serve({ fetch: app.fetch, hostname: '127.0.0.1', port: 0 }, () => resolve(instance as Server));
  });
  port = (server.address() as AddressInfo).port;
  url = `http://127.0.0.1:${port}/upload`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'ocular-upload-'));
  options = {};
  outcomes = [];
  outcomeWaiters = [];
});

afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

async function post(body: FormData | string, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(url, { method: 'POST', body, headers });
}

async function expectError(response: Response, status: number, type: string): Promise<{ type: string; message: string; param?: string }> {
  const body = (await response.json()) as { error: { type: string; message: string; param?: string } };
  expect({ status: response.status, type: body.error.type }).toEqual({ status, type });
  return body.error;
}

/**
 * Sends raw bytes over a fresh connection and returns everything the server answers until it closes (the
 * requests say `Connection: close`). The socket is not half-closed: Node's server aborts a request on FIN.
 */
function sendRaw(request: Buffer | string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', reject);
    socket.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')));
    socket.write(request);
  });
}

const BOUNDARY = 'ocular-test-boundary';

function rawRequest(body: string | Buffer, extraHeaders = ''): Buffer {
  const bytes = typeof body === 'string' ? Buffer.from(body, 'latin1') : body;
  const head =
    `POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n` +
    `Content-Type: multipart/form-data; boundary=${BOUNDARY}\r\nContent-Length: ${bytes.length}\r\n${extraHeaders}\r\n`;
  return Buffer.concat([Buffer.from(head, 'latin1'), bytes]);
}

function filePart(content: string, name = 'file', filename = 'clip.mp4'): string {
  return `--${BOUNDARY}\r\nContent-Disposition: form-data; name="${name}"; filename="${filename}"\r\nContent-Type: video/mp4\r\n\r\n${content}\r\n`;
}

function fieldPart(name: string, value: string): string {
  return `--${BOUNDARY}\r\nContent-Disposition: form-data; name="${name}"\r\n\r\n${value}\r\n`;
}

const CLOSE = `--${BOUNDARY}--\r\n`;

describe('receiveMultipartUpload', () => {
  it('streams the file to the directory and collects fields sent before and after it', async () => {
    const content = randomBytes(300_000);
    const form = new FormData();
    form.append('title', 'before');
    form.append('file', new Blob([content], { type: 'video/mp4' }), 'vidéo 1.mp4');
    form.append('language', 'après'); // after the file, as `curl -F file=@x -F language=...` sends it
    const response = await post(form);
    expect(response.status).toBe(200);
    const upload = (await response.json()) as MultipartUpload;
    expect(upload.fields).toEqual({ title: 'before', language: 'après' });
    expect(upload.file).toMatchObject({ size: content.length, filename: 'vidéo 1.mp4', declaredType: 'video/mp4' });
    expect(upload.file!.path.startsWith(dir)).toBe(true);
    expect(readFileSync(upload.file!.path).equals(content)).toBe(true);
  });

  it('accepts a file of exactly the limit, an empty file, and a form without a file', async () => {
    const exact = new FormData();
    exact.append('file', new Blob([Buffer.alloc(MAX_FILE_BYTES, 1)]), 'a.bin');
    const full = (await (await post(exact)).json()) as MultipartUpload;
    expect(full.file).toMatchObject({ size: MAX_FILE_BYTES, declaredType: 'application/octet-stream' });

    const empty = new FormData();
    empty.append('file', new Blob([]), 'empty.mp4');
    const none = (await (await post(empty)).json()) as MultipartUpload;
    expect(none.file?.size).toBe(0);
    expect(readFileSync(none.file!.path).length).toBe(0);

    const fieldsOnly = new FormData();
    fieldsOnly.append('url', 'https://example.com/v.mp4');
    const upload = (await (await post(fieldsOnly)).json()) as MultipartUpload;
    expect(upload).toEqual({ fields: { url: 'https://example.com/v.mp4' }, files: [] });
  });

  it('writes under the given file name and never over an existing file', async () => {
    options = { fileName: 'fixed.upload' };
    const form = new FormData();
    form.append('file', new Blob(['abc']), 'a.txt');
    const upload = (await (await post(form)).json()) as MultipartUpload;
    expect(upload.file?.path).toBe(join(dir, 'fixed.upload'));
    const again = await post(form);
    expect(again.status).toBe(500);
    expect(readFileSync(join(dir, 'fixed.upload'), 'utf8')).toBe('abc');
    options = { fileName: '../escaped.upload' };
    expect((await post(form)).status).toBe(500);
    expect(readdirSync(join(dir, '..')).includes('escaped.upload')).toBe(false);
  });

  it('refuses bodies that are not multipart with 415, and multipart without a boundary with 400', async () => {
    await expectError(await post('{"a":1}', { 'content-type': 'application/json' }), 415, 'unsupported_media_type');
    await expectError(await post('a=1', { 'content-type': 'application/x-www-form-urlencoded' }), 415, 'unsupported_media_type');
    await expectError(await fetch(url, { method: 'POST', body: new Uint8Array([1, 2]) }), 415, 'unsupported_media_type');
    await expectError(await post('x', { 'content-type': 'multipart/form-data' }), 400, 'validation_error');
  });

  it('stops a file over the limit while it streams: 413 naming the limit, connection closed, nothing left on disk', async () => {
    options = { limitName: 'limits.maxUploadBytes' };
    const form = new FormData();
    form.append('file', new Blob([randomBytes(MAX_FILE_BYTES + 1)]), 'big.mp4');
    const response = await post(form);
    expect(response.headers.get('connection')).toBe('close');
    const error = await expectError(response, 413, 'payload_too_large');
    expect(error.message).toContain(String(MAX_FILE_BYTES));
    expect(error.message).toContain('limits.maxUploadBytes');
    expect(readdirSync(dir)).toEqual([]);
  });

  it('refuses a declared length past what any valid form could need without reading it', async () => {
    const head =
      `POST /upload HTTP/1.1\r\nHost: x\r\nConnection: close\r\n` +
      `Content-Type: multipart/form-data; boundary=${BOUNDARY}\r\nContent-Length: ${50 * MAX_FILE_BYTES}\r\n\r\n`;
    const response = await sendRaw(head);
    expect(response).toMatch(/^HTTP\/1\.1 413 /);
    expect(response).toContain('"payload_too_large"');
    expect(readdirSync(dir)).toEqual([]);
  });

  it('refuses a second file part, removing the first', async () => {
    const form = new FormData();
    form.append('file', new Blob(['one']), 'a.mp4');
    form.append('file', new Blob(['two']), 'b.mp4');
    const error = await expectError(await post(form), 400, 'validation_error');
    expect(error.param).toBe('file');
    expect(readdirSync(dir)).toEqual([]);
  });

  it('refuses a file under another field name, naming it, even when the body is large', async () => {
    const form = new FormData();
    form.append('video', new Blob([randomBytes(3 * MAX_FILE_BYTES)]), 'a.mp4');
    // The body is far from read when the error is sent; the response must still arrive whole.
    const error = await expectError(await post(form), 400, 'validation_error');
    expect(error.param).toBe('video');
    expect(error.message).toContain('"video"');
    expect(readdirSync(dir)).toEqual([]);
  });

  it('enforces the field rules: allowed names, size, count, duplicates', async () => {
    options = { allowedFields: ['title', 'language'], maxFields: 2, maxFieldBytes: 10 };
    const cases: Array<[Array<[string, string]>, string | undefined]> = [
      [[['colour', 'red']], 'colour'],
      [[['title', 'x'.repeat(11)]], 'title'],
      [
        [
          ['title', 'a'],
          ['title', 'b'],
        ],
        'title',
      ],
      [
        [
          ['title', 'a'],
          ['language', 'b'],
          ['title', 'c'],
        ],
        undefined,
      ],
    ];
    for (const [entries, param] of cases) {
      const form = new FormData();
      form.append('file', new Blob(['content']), 'a.mp4');
      for (const [name, value] of entries) form.append(name, value);
      const error = await expectError(await post(form), 400, 'validation_error');
      expect(error.param).toBe(param);
      expect(readdirSync(dir)).toEqual([]);
    }
    const form = new FormData();
    form.append('title', 'x'.repeat(10));
    form.append('language', 'é'.repeat(5));
    expect(((await (await post(form)).json()) as MultipartUpload).fields).toEqual({ title: 'x'.repeat(10), language: 'é'.repeat(5) });
  });

  it('answers a malformed part header with 400 and removes the file written so far', async () => {
    const body = filePart('x'.repeat(50_000)) + `--${BOUNDARY}\r\nthis is not a header\r\n\r\nvalue\r\n` + CLOSE;
    const response = await sendRaw(rawRequest(body));
    expect(response).toMatch(/^HTTP\/1\.1 400 /);
    expect(response).toContain('"validation_error"');
    expect(readdirSync(dir)).toEqual([]);
  });

  it('answers a body that ends before the closing boundary with 400 and removes the file', async () => {
    // The same part, closed, is fine.
    expect(await sendRaw(rawRequest(filePart('x'.repeat(50_000)) + CLOSE))).toMatch(/^HTTP\/1\.1 200 /);
    rmSync(dir, { recursive: true });
    dir = mkdtempSync(join(tmpdir(), 'ocular-upload-'));
    for (const body of [filePart('x'.repeat(50_000)), filePart('x'.repeat(50_000)).slice(0, 30_000), '', 'no boundary at all']) {
      const response = await sendRaw(rawRequest(body));
      expect(response).toMatch(/^HTTP\/1\.1 400 /);
      expect(response).toContain('"validation_error"');
      expect(readdirSync(dir)).toEqual([]);
    }
  });

  it('parses a chunked body split at every awkward place', async () => {
    const body = Buffer.from(
      fieldPart('title', 'split') + filePart('abc\r\n--not-the-boundary\r\ndef') + fieldPart('language', 'en') + CLOSE,
      'latin1',
    );
    // One byte per chunk: every boundary and header straddles writes.
    const chunked = Buffer.concat([...body].map((byte) => Buffer.concat([Buffer.from('1\r\n'), Buffer.from([byte]), Buffer.from('\r\n')])));
    const head =
      `POST /upload HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n` +
      `Content-Type: multipart/form-data; boundary=${BOUNDARY}\r\n\r\n`;
    const response = await sendRaw(Buffer.concat([Buffer.from(head), chunked, Buffer.from('0\r\n\r\n')]));
    expect(response).toMatch(/^HTTP\/1\.1 200 /);
    const upload = JSON.parse(response.slice(response.indexOf('\r\n\r\n') + 4)) as MultipartUpload;
    expect(upload.fields).toEqual({ title: 'split', language: 'en' });
    expect(readFileSync(upload.file!.path, 'latin1')).toBe('abc\r\n--not-the-boundary\r\ndef');
  });

  it('fails with validation_error and removes the partial file when the client goes away mid-upload', async () => {
    const head =
      `POST /upload HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=${BOUNDARY}\r\n` + `Content-Length: 500000\r\n\r\n`;
    const socket = connect(port, '127.0.0.1');
    socket.on('error', () => undefined);
    socket.write(head + filePart('x'.repeat(200_000)).slice(0, 150_000));
    // Wait until the server has the file open and partly written, then drop the connection.
    for (let waited = 0; readdirSync(dir).length === 0 && waited < 5000; waited += 10) await new Promise((r) => setTimeout(r, 10));
    expect(readdirSync(dir)).toHaveLength(1);
    socket.destroy();
    const outcome = await nextOutcome();
    expect('error' in outcome && outcome.error).toMatchObject({ type: 'validation_error' });
    expect(readdirSync(dir)).toEqual([]);
  });

  it('lets go of a client that stops sending mid-upload, answering 400 and removing the partial file', async () => {
    options = { idleTimeoutMs: 300 };
    const head =
      `POST /upload HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=${BOUNDARY}\r\n` + `Content-Length: 500000\r\n\r\n`;
    const socket = connect(port, '127.0.0.1');
    socket.on('error', () => undefined);
    const answer: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => answer.push(chunk));
    socket.write(head + filePart('x'.repeat(200_000)).slice(0, 150_000));
    const started = Date.now();
    const outcome = await nextOutcome();
    expect(Date.now() - started).toBeLessThan(5_000);
    expect('error' in outcome && outcome.error).toMatchObject({ type: 'validation_error', message: expect.stringMatching(/stalled/) });
    expect(readdirSync(dir)).toEqual([]);
    for (let waited = 0; answer.length === 0 && waited < 3000; waited += 10) await new Promise((r) => setTimeout(r, 10));
    expect(Buffer.concat(answer).toString('latin1')).toMatch(/^HTTP\/1\.1 400/);
    socket.destroy();
  });

  it('keeps memory flat while a 200 MB file streams through to disk', async () => {
    options = { maxFileBytes: 256 * 1024 * 1024 };
    const chunkBytes = 64 * 1024;
    const chunkCount = (200 * 1024 * 1024) / chunkBytes;
    const sent = createHash('sha256');
    const head = Buffer.from(filePart('', 'file', 'big.mp4').replace(/\r\n$/, ''), 'latin1');
    const tail = Buffer.from(`\r\n${fieldPart('title', 'after the file')}${CLOSE}`, 'latin1');

    const baseline = process.memoryUsage().rss;
    let peak = baseline;
    const sampler = setInterval(() => {
      peak = Math.max(peak, process.memoryUsage().rss);
    }, 10);
    const started = Date.now();
    // node:http as the client, writing chunks as the socket drains: Node 20's fetch reads a streamed request
    // body far ahead of the socket (its RSS grows by the whole upload), which would hide what the server does.
    const { status, text } = await new Promise<{ status: number; text: string }>((resolve, reject) => {
      const client = request(
        url,
        {
          method: 'POST',
          headers: {
            'content-type': `multipart/form-data; boundary=${BOUNDARY}`,
            'content-length': head.length + chunkCount * chunkBytes + tail.length,
          },
        },
        (response) => {
          const chunks: Buffer[] = [];
          response.on('data', (chunk: Buffer) => chunks.push(chunk));
          response.on('end', () => resolve({ status: response.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
        },
      );
      client.on('error', reject);
      void (async () => {
        client.write(head);
        for (let i = 0; i < chunkCount; i += 1) {
          const chunk = randomBytes(chunkBytes);
          sent.update(chunk);
          if (!client.write(chunk)) await once(client, 'drain');
        }
        client.end(tail);
      })();
    });
    clearInterval(sampler);
    const seconds = (Date.now() - started) / 1000;

    expect(status).toBe(200);
    const upload = JSON.parse(text) as MultipartUpload;
    expect(upload.fields).toEqual({ title: 'after the file' });
    expect(upload.file?.size).toBe(chunkCount * chunkBytes);
    const written = createHash('sha256');
    for await (const chunk of createReadStream(upload.file!.path)) written.update(chunk as Buffer);
    expect(written.digest('hex')).toBe(sent.digest('hex'));
    const grewMb = (peak - baseline) / 1024 / 1024;
    expect(grewMb, `RSS grew ${grewMb.toFixed(1)} MB in ${seconds} s`).toBeLessThan(100);
  });

  it('does not crash the process on errors after it has answered (unhandled error events)', async () => {
    // A wrong-name file part followed by garbage and an abrupt close: the parser, the file stream and the
    // request all error after the upload was already refused.
    const head = `POST /upload HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=${BOUNDARY}\r\nContent-Length: 900000\r\n\r\n`;
    const socket = connect(port, '127.0.0.1');
    socket.on('error', () => undefined);
    socket.write(head + filePart('y'.repeat(100_000), 'video') + `--${BOUNDARY}\r\nbroken\r\n\r\n`);
    const outcome = await nextOutcome();
    expect('error' in outcome && outcome.error).toMatchObject({ type: 'validation_error', param: 'video' });
    socket.destroy();
    await new Promise((r) => setTimeout(r, 50));
    // Still serving.
    const form = new FormData();
    form.append('file', new Blob(['ok']), 'ok.txt');
    expect((await post(form)).status).toBe(200);
  });
});

describe('receiveMultipartUpload with a blob store mirror', () => {
  let s3: TestS3;
  let blobs: S3Blobs;
  const commands: string[] = [];

  beforeAll(async () => {
    s3 = await startTestS3();
    blobs = new S3Blobs(s3.settings);
    blobs.client.middlewareStack.add(
      (next, context) => (args) => {
        commands.push(context.commandName!);
        return next(args);
      },
      { step: 'initialize', name: 'recordCommands' },
    );
  });

  afterAll(async () => {
    blobs?.close();
    await s3?.close();
  });

  it('uploads the file part to the store in parts while it arrives, and resolves once it is stored', async () => {
    options = { maxFileBytes: 32 * 1024 * 1024, mirror: () => blobs.upload('mirrored/one') };
    commands.length = 0;
    const content = randomBytes(12 * 1024 * 1024);
    const head =
      `POST /upload HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: multipart/form-data; boundary=${BOUNDARY}\r\n` +
      `Content-Length: ${Buffer.byteLength(filePart('')) + content.length + CLOSE.length}\r\n\r\n`;
    const [before, after] = filePart('').split('\r\n\r\n\r\n') as [string, string];
    const socket = connect(port, '127.0.0.1');
    socket.on('error', () => undefined);
    const answer: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => answer.push(chunk));
    socket.write(head + before + '\r\n\r\n');
    socket.write(content.subarray(0, 11 * 1024 * 1024));
    // Two 5 MiB parts are full before the body is: they go up before the client has finished sending.
    for (let waited = 0; commands.filter((name) => name === 'UploadPartCommand').length < 2 && waited < 10_000; waited += 20) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(commands.filter((name) => name === 'UploadPartCommand').length).toBeGreaterThanOrEqual(2);
    expect(commands).not.toContain('CompleteMultipartUploadCommand');
    socket.write(content.subarray(11 * 1024 * 1024));
    socket.write('\r\n' + after + CLOSE);
    const outcome = await nextOutcome();
    expect('upload' in outcome && outcome.upload.file).toMatchObject({ size: content.length, mirrored: true });
    expect(commands).toContain('CompleteMultipartUploadCommand');
    expect((await blobs.read('mirrored/one'))!.equals(content)).toBe(true);
    socket.destroy();
  });

  it('aborts the store upload when the file goes over the limit or the client goes away, leaving no object', async () => {
    options = { maxFileBytes: 6 * 1024 * 1024, mirror: () => blobs.upload('mirrored/too-big') };
    commands.length = 0;
    const response = await sendRaw(rawRequest(filePart('z'.repeat(7 * 1024 * 1024)) + CLOSE));
    expect(response).toMatch(/^HTTP\/1\.1 413/);
    const outcome = await nextOutcome();
    expect('error' in outcome && outcome.error).toMatchObject({ type: 'payload_too_large' });
    expect(await blobs.exists('mirrored/too-big')).toBe(false);
    expect(readdirSync(dir)).toEqual([]);

    options = { maxFileBytes: 32 * 1024 * 1024, mirror: () => blobs.upload('mirrored/gone') };
    commands.length = 0;
    const head =
      `POST /upload HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=${BOUNDARY}\r\n` +
      `Content-Length: 20000000\r\n\r\n`;
    const socket = connect(port, '127.0.0.1');
    socket.on('error', () => undefined);
    socket.write(head + filePart('x'.repeat(8 * 1024 * 1024)).slice(0, 7 * 1024 * 1024));
    for (let waited = 0; !commands.includes('UploadPartCommand') && waited < 10_000; waited += 20) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    socket.destroy();
    const gone = await nextOutcome();
    expect('error' in gone && gone.error).toMatchObject({ type: 'validation_error' });
    expect(commands).toContain('AbortMultipartUploadCommand');
    expect(await blobs.exists('mirrored/gone')).toBe(false);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('fails the upload with 503 when the store cannot be reached, removing the local file', async () => {
    const unreachable = new S3Blobs({ ...s3.settings, endpoint: 'http://127.0.0.1:1' });
    options = { mirror: () => unreachable.upload('nowhere') };
    const form = new FormData();
    form.append('file', new Blob([randomBytes(1000)]), 'f.bin');
    const response = await post(form);
    expect(response.status).toBe(503);
    const outcome = await nextOutcome();
    expect('error' in outcome && outcome.error).toMatchObject({ type: 'unavailable_error', message: expect.stringMatching(/blob store/) });
    expect(readdirSync(dir)).toEqual([]);
    unreachable.close();
  });
});
