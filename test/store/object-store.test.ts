// S3Blobs against a real S3-protocol server (s3rver on loopback): uploads (whole and multipart, from bytes, files
// and streams), reads, ranges, listing, recursive removal, downloads, store-signed URLs and the readiness check.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import { text } from 'node:stream/consumers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { S3Blobs } from '../../src/store/object-store.ts';
import { startTestS3, type TestS3 } from '../helpers/s3.ts';

let s3: TestS3;
let blobs: S3Blobs;
const dir = mkdtempSync(join(tmpdir(), 'ocular-object-store-'));

beforeAll(async () => {
  s3 = await startTestS3({ prefix: 'deploy/' });
  blobs = new S3Blobs(s3.settings);
});

afterAll(async () => {
  blobs?.close();
  await s3?.close();
  rmSync(dir, { recursive: true, force: true });
});

async function collect(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

describe('S3Blobs', () => {
  it('stores bytes under the prefix and folder, reads them back, and says undefined for what is missing', async () => {
    const videos = blobs.within('videos');
    await videos.put('a/b.txt', Buffer.from('hello'), 'text/plain');
    expect((await videos.read('a/b.txt'))?.toString()).toBe('hello');
    expect(videos.key('a/b.txt')).toBe('deploy/videos/a/b.txt');
    expect(await videos.read('a/missing')).toBeUndefined();
    expect(await videos.stat('a/missing')).toBeUndefined();
    expect(await videos.exists('a/b.txt')).toBe(true);
    expect((await videos.stat('a/b.txt'))?.size).toBe(5);
  });

  it('refuses paths that would leave its folder', () => {
    for (const path of ['', '/abs', '../x', 'a/../b', 'a/./b']) expect(() => blobs.key(path)).toThrow(RangeError);
    expect(() => blobs.within('a/b')).toThrow(RangeError);
  });

  it('uploads a stream larger than one part as a multipart upload, byte for byte', async () => {
    const data = randomBytes(12 * 1024 * 1024 + 123); // three 5 MiB parts
    const commands: string[] = [];
    blobs.client.middlewareStack.add(
      (next, context) => (args) => {
        commands.push(context.commandName!);
        return next(args);
      },
      { step: 'initialize', name: 'recordCommands' },
    );
    const stream = new PassThrough();
    const done = blobs.put('big/stream.bin', stream);
    for (let offset = 0; offset < data.length; offset += 1024 * 1024) stream.write(data.subarray(offset, offset + 1024 * 1024));
    stream.end();
    await done;
    blobs.client.middlewareStack.remove('recordCommands');
    expect(commands.filter((name) => name === 'UploadPartCommand')).toHaveLength(3);
    expect(commands).toContain('CompleteMultipartUploadCommand');
    expect(commands).not.toContain('PutObjectCommand');
    const stat = await blobs.stat('big/stream.bin');
    expect(stat?.size).toBe(data.length);
    expect((await blobs.read('big/stream.bin'))!.equals(data)).toBe(true);
  });

  it('uploads a file and downloads it whole into a new folder', async () => {
    const data = randomBytes(300_000);
    const file = join(dir, 'upload.bin');
    writeFileSync(file, data);
    await blobs.putFile('files/one.bin', file);
    const target = join(dir, 'nested', 'deeper', 'one.bin');
    expect(await blobs.download('files/one.bin', target)).toBe(true);
    expect(readFileSync(target).equals(data)).toBe(true);
    expect(await blobs.download('files/none.bin', join(dir, 'none.bin'))).toBe(false);
  });

  it('serves byte ranges of one version through a source, and a 404 once the blob is gone', async () => {
    await blobs.put('range.txt', Buffer.from('0123456789'));
    const source = blobs.source('range.txt');
    const stat = await source.stat();
    expect(stat?.size).toBe(10);
    expect((await collect(await source.stream(2, 5))).toString()).toBe('2345');
    expect((await collect(await source.stream(9, 9))).toString()).toBe('9');
    await blobs.remove('range.txt');
    await expect(source.stream(0, 3)).rejects.toMatchObject({ type: 'not_found_error' });
    expect(await blobs.source('range.txt').stat()).toBeUndefined();
  });

  it('lists the names directly under a folder, across pages, and removes a folder recursively', async () => {
    const clips = blobs.within('clips');
    const ids = Array.from({ length: 5 }, (_, index) => `clip-${index}`);
    await Promise.all(ids.map((id) => clips.put(`${id}/output-0.mp4`, Buffer.from(id))));
    await clips.put(`${ids[0]}/nested/deep.bin`, Buffer.from('x'));
    await clips.put('loose.bin', Buffer.from('y'));
    expect((await clips.list()).sort()).toEqual([...ids, 'loose.bin'].sort());
    expect((await clips.list(ids[0]!)).sort()).toEqual(['nested', 'output-0.mp4']);
    expect(await clips.lastWrite(ids[0]!)).toBeGreaterThan(Date.now() - 60_000);
    await clips.remove(ids[0]!);
    expect(await clips.list(ids[0]!)).toEqual([]);
    expect(await clips.lastWrite(ids[0]!)).toBeUndefined();
    expect((await clips.list()).sort()).toEqual([...ids.slice(1), 'loose.bin'].sort());
  });

  it('removes more blobs than one DeleteObjects call takes', async () => {
    const many = blobs.within('many');
    const names = Array.from({ length: 1_005 }, (_, index) => `f/${index}`);
    for (let start = 0; start < names.length; start += 100) {
      await Promise.all(names.slice(start, start + 100).map((name) => many.put(name, Buffer.from('z'))));
    }
    expect(await many.list('f')).toHaveLength(1_005);
    await many.remove('f');
    expect(await many.list('f')).toEqual([]);
  }, 120_000);

  it('signs GET URLs that the store answers with ranges, the given type and a download name', async () => {
    await blobs.put('signed.bin', Buffer.from('signed bytes'));
    const url = await blobs.presign('signed.bin', new Date(Date.now() + 60_000), { contentType: 'video/mp4', downloadName: 'my clip.mp4' });
    expect(url.startsWith(`${s3.url}/`)).toBe(true);
    const response = await fetch(url, { headers: { range: 'bytes=0-5' } });
    expect(response.status).toBe(206);
    expect(await response.text()).toBe('signed');
    expect(response.headers.get('content-type')).toBe('video/mp4');
    expect(response.headers.get('content-disposition')).toContain('my clip.mp4');
    const redirecting = new S3Blobs({ ...s3.settings, redirect: true });
    expect(blobs.source('signed.bin').redirect).toBeUndefined();
    const location = await redirecting.source('signed.bin').redirect!(new Date(Date.now() + 60_000), { contentType: 'text/plain' });
    expect(await text((await fetch(location)).body as unknown as AsyncIterable<Uint8Array> as never)).toBe('signed bytes');
    redirecting.close();
  });

  it('passes the readiness check on its bucket and fails it on a missing bucket or a stopped store', async () => {
    await blobs.check();
    const missing = new S3Blobs({ ...s3.settings, bucket: 'no-such-bucket-here' });
    await expect(missing.check()).rejects.toThrow();
    missing.close();
    const unreachable = new S3Blobs({ ...s3.settings, endpoint: 'http://127.0.0.1:1' });
    await expect(unreachable.check()).rejects.toThrow();
    unreachable.close();
  });
});
