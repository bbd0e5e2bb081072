// The SDK's video and image library calls against a real Ocular server that indexes for real (objects, labels and
// voice activity off: they add nothing to text search and cost seconds).
import { execFile } from 'node:child_process';
import { createReadStream, statSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  APIConnectionError,
  BadRequestError,
  ConflictError,
  NotFoundError,
  Ocular,
  PayloadTooLargeError,
  VideoIndexingError,
  type IndexingEvent,
  type UploadProgress,
} from '../../src/sdk/index.ts';
import { ffmpegContext, fixturePath, removeMediaFixtures } from '../helpers/media-fixtures.ts';
import { startOcular, type TestOcular } from '../helpers/ocular.ts';
import { FONT_PATH, makeTitledVideo } from '../helpers/vision-fixtures.ts';

const KEY_A = 'ocu_sdk_owner_a_0123456789abcd';
const KEY_B = 'ocu_sdk_owner_b_0123456789abcd';

let ocular: TestOcular;
let client: Ocular;
let other: Ocular;

beforeAll(async () => {
  ocular = await startOcular(
    { indexing: { objects: { enabled: false }, labels: { enabled: false }, vad: { enabled: false } } },
    { envApiKeys: [KEY_A, KEY_B] },
  );
  client = new Ocular({ apiKey: KEY_A, baseURL: ocular.url, maxRetries: 0 });
  other = new Ocular({ apiKey: KEY_B, baseURL: ocular.url, maxRetries: 0 });
}, 60_000);

afterAll(async () => {
  await ocular?.close();
  removeMediaFixtures();
});

/** A PNG of `text`, white on black, drawn with ffmpeg. */
async function textImage(text: string): Promise<string> {
  const path = fixturePath('.png');
  await promisify(execFile)(ffmpegContext.binaries.ffmpeg, [
    '-nostdin',
    '-loglevel',
    'error',
    '-y',
    '-f',
    'lavfi',
    '-i',
    'color=c=0x303030:size=640x360',
    '-vf',
    `drawtext=fontfile=${FONT_PATH}:text='${text}':fontsize=52:fontcolor=white:box=1:boxcolor=black:boxborderw=12:x=(w-tw)/2:y=(h-th)/2`,
    '-frames:v',
    '1',
    path,
  ]);
  return path;
}

describe.skipIf(FONT_PATH === undefined)('videos', () => {
  let path: string;
  let videoId: string;

  beforeAll(async () => {
    path = await makeTitledVideo({ seconds: 12, captions: [{ text: 'COBALT HERON', fromSeconds: 4, toSeconds: 8 }] });
  }, 60_000);

  it('uploads a file from disk with progress, waits until indexed with events, and finds its text', async () => {
    const progress: UploadProgress[] = [];
    const group = await client.videos.groups.create({ name: 'birds', metadata: { season: 'winter' } });
    const video = await client.videos.upload({
      file: path,
      groupId: group.group_id,
      enableThumbnails: true,
      onProgress: (update) => progress.push(update),
    });
    videoId = video.video_id;
    expect(video).toMatchObject({ video_name: path.split('/').pop(), group_id: group.group_id, enable_thumbnails: true });
    // Progress counts the whole multipart body, which is the file plus a little framing; it ends at its total.
    const size = statSync(path).size;
    const last = progress.at(-1)!;
    expect(last.total).toBeGreaterThan(size);
    expect(last.loaded).toBe(last.total);
    expect(progress.length).toBeGreaterThan(1);
    expect(progress.every((update, index) => index === 0 || update.loaded >= progress[index - 1]!.loaded)).toBe(true);

    const events: IndexingEvent[] = [];
    const indexed = await client.videos.waitUntilIndexed(videoId, { onProgress: (event) => events.push(event), timeout: 120_000 });
    expect(indexed.indexing_status).toBe('indexed');
    expect(events.length).toBeGreaterThan(0);
    expect(events.every((event) => event.video_id === videoId)).toBe(true);

    const found = await client.videos.search({ query: 'cobalt heron', group_ids: [group.group_id] });
    expect(found.results[0]).toMatchObject({ video_id: videoId });
    expect(found.results[0]!.start_timestamp).toBeLessThan(8);
    expect(found.results[0]!.end_timestamp).toBeGreaterThan(4);
    expect((await client.videos.search({ query: 'cobalt heron', group_ids: ['default'] })).results).toEqual([]);

    // An indexed video answers at once; the segments are listed with their text.
    expect((await client.videos.waitUntilIndexed(videoId, { timeout: 5_000 })).video_id).toBe(videoId);
    const segments = await client.videos.segments(videoId, { limit: 100 });
    expect(segments.results.some((segment) => /COBALT HERON/i.test(segment.ocr_text))).toBe(true);
  }, 150_000);

  it('uploads a Blob and a stream, lists, gets and deletes; another owner sees none of it', async () => {
    const bytes = await readFile(path);
    const fromBlob = await client.videos.upload({
      file: new Blob([new Uint8Array(bytes)], { type: 'video/mp4' }),
      name: 'blob',
      index: false,
    });
    expect(fromBlob).toMatchObject({ video_name: 'blob', indexing_status: 'pending' });
    const fromStream = await client.videos.upload({ file: createReadStream(path), fileName: 'streamed.mp4', index: false });
    expect(fromStream.video_name).toBe('streamed.mp4');
    expect(fromStream.metadata.size_bytes).toBe(bytes.length);

    // Not queued for indexing: waiting for it fails at once rather than hanging.
    await expect(client.videos.waitUntilIndexed(fromBlob.video_id, { timeout: 5_000 })).rejects.toBeInstanceOf(VideoIndexingError);

    const listed = await client.videos.list({ indexing_status: 'pending', limit: 10 });
    expect(listed.results.map((video) => video.video_id).sort()).toEqual([fromBlob.video_id, fromStream.video_id].sort());
    expect(listed.total).toBe(2);
    expect((await client.videos.get(fromBlob.video_id)).video_name).toBe('blob');

    await expect(other.videos.get(fromBlob.video_id)).rejects.toBeInstanceOf(NotFoundError);
    expect((await other.videos.list()).total).toBe(0);
    await expect(other.videos.delete(fromBlob.video_id)).rejects.toMatchObject({ status: 404, type: 'not_found_error' });

    expect(await client.videos.delete(fromBlob.video_id)).toEqual({ video_id: fromBlob.video_id, deleted: true });
    await expect(client.videos.get(fromBlob.video_id)).rejects.toBeInstanceOf(NotFoundError);
    await client.videos.delete(fromStream.video_id);
  });

  it('maps upload and search mistakes to typed errors with their param', async () => {
    await expect(client.videos.upload({ file: '/nonexistent/clip.mp4' })).rejects.toThrow(/cannot read/);
    await expect(client.videos.upload({})).rejects.toMatchObject({ type: 'validation_error' });
    const badUrl = await client.videos.upload({ videoUrl: 'http://127.0.0.1:9/private.mp4' }).catch((error: unknown) => error);
    expect(badUrl).toMatchObject({ status: 400 });
    const empty = await client.videos.upload({ file: new Blob([]), name: 'empty' }).catch((error: unknown) => error);
    expect(empty).toBeInstanceOf(BadRequestError);
    expect(empty).toMatchObject({ type: 'validation_error', param: 'file' });
    await expect(client.videos.search({ query: '' })).rejects.toMatchObject({ status: 400, param: 'query' });
    await expect(client.videos.waitUntilIndexed('00000000-0000-4000-8000-000000000000')).rejects.toBeInstanceOf(NotFoundError);
  });

  it('manages groups: update, list, and delete (409 while it holds videos, unless forced)', async () => {
    const group = await client.videos.groups.create({ name: 'temp' });
    expect((await client.videos.groups.update(group.group_id, { name: 'renamed' })).name).toBe('renamed');
    expect((await client.videos.groups.get(group.group_id)).name).toBe('renamed');
    expect((await client.videos.groups.list({ limit: 100 })).results.map((entry) => entry.group_id)).toContain(group.group_id);
    await client.videos.upload({ file: path, groupId: group.group_id, index: false });
    await expect(client.videos.groups.delete(group.group_id)).rejects.toBeInstanceOf(ConflictError);
    expect(await client.videos.groups.delete(group.group_id, { force: true })).toEqual({ group_id: group.group_id, deleted: true });
    await expect(client.videos.groups.get(group.group_id)).rejects.toBeInstanceOf(NotFoundError);
    await expect(client.videos.groups.create({ name: '' })).rejects.toMatchObject({ status: 400, param: 'name' });
  });
});

describe.skipIf(FONT_PATH === undefined)('images', () => {
  it('uploads images with metadata, searches their text, lists, gets and deletes', async () => {
    const sign = await textImage('AMBER LYNX');
    const progress: UploadProgress[] = [];
    const [image, plain] = await client.images.upload({
      images: [
        { file: sign, metadata: { shelf: 3 } },
        { file: new Blob([new Uint8Array(await readFile(sign))], { type: 'image/png' }), fileName: 'copy.png', index: false },
      ],
      onProgress: (update) => progress.push(update),
    });
    expect(progress.at(-1)!.loaded).toBe(progress.at(-1)!.total);
    expect(image).toMatchObject({ image_name: sign.split('/').pop(), metadata: { shelf: 3 } });
    expect(plain).toMatchObject({ image_name: 'copy.png', status: 'not_indexed' });

    const deadline = Date.now() + 60_000;
    while ((await client.images.get(image!.image_id)).status !== 'indexed') {
      if (Date.now() > deadline) throw new Error('the image was not indexed');
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    const hits = await client.images.search({ query: 'amber lynx' });
    expect(hits[0]).toMatchObject({ image_id: image!.image_id });
    expect(hits.map((hit) => hit.image_id)).not.toContain(plain!.image_id);
    expect(await other.images.search({ query: 'amber lynx' })).toEqual([]);

    expect((await client.images.list()).total).toBe(2);
    await expect(other.images.get(image!.image_id)).rejects.toBeInstanceOf(NotFoundError);
    expect(await client.images.delete(plain!.image_id)).toEqual({ image_id: plain!.image_id, deleted: true });
    await expect(client.images.upload({ images: [] })).rejects.toMatchObject({ status: 400, param: 'images' });
    await expect(client.images.search({ query: ' ' })).rejects.toBeInstanceOf(BadRequestError);
  }, 90_000);
});

describe('an upload over the server limit', () => {
  it('fails typed (413, or a connection the server closed mid-upload) and stores nothing', async () => {
    const small = await startOcular({ limits: { maxUploadBytes: 100_000 } });
    try {
      const limited = new Ocular({ apiKey: small.key, baseURL: small.url, maxRetries: 1 });
      const path = fixturePath('.mp4');
      writeFileSync(path, new Uint8Array(3_000_000));
      for (const file of [path, new Blob([new Uint8Array(3_000_000)])]) {
        const error = await limited.videos.upload({ file, name: 'big' }).catch((caught: unknown) => caught);
        // fetch cannot always hand over an answer sent before the body was read: then it is a broken connection.
        if (error instanceof PayloadTooLargeError) expect(error).toMatchObject({ status: 413, type: 'payload_too_large' });
        else {
          expect(error).toBeInstanceOf(APIConnectionError);
          expect((error as APIConnectionError).message).toMatch(/upload limit/);
        }
      }
      expect((await limited.videos.list()).total).toBe(0);
    } finally {
      await small.close();
    }
  });
});
