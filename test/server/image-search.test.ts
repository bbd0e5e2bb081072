import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeTestBlob } from '../helpers/blob-mode.ts';
import { randomUUID } from 'node:crypto';
import { environmentKeyOwner } from '../../src/store/api-keys.ts';
import { ImageStore } from '../../src/store/image-store.ts';
import { sql } from 'kysely';
import { VideoStore } from '../../src/store/video-store.ts';
import { withDataDirDatabase } from '../helpers/storage-mode.ts';
import { writeClipFixture } from '../helpers/clip-model-writer.ts';
import { sendJson, startFakeUpstream, type FakeUpstream } from '../helpers/fake-upstream.ts';
import { insertIndexedVideo } from '../helpers/library-fixtures.ts';
import { makeVideo, removeMediaFixtures } from '../helpers/media-fixtures.ts';
import { startOcular, type TestOcular } from '../helpers/ocular.ts';

const KEY_A = 'ocu_clip_owner_a_0123456789abcd';
const KEY_B = 'ocu_clip_owner_b_0123456789abcd';

interface WireHit {
  video_id: string;
  start_timestamp: number;
  end_timestamp: number;
  score: number;
}

let dataDir: string;
let modelDir: string;
let ocular: TestOcular | undefined;
let media: Server;
let mediaOrigin: string;
const pictures: Buffer[] = [];
let videoA: string;
let videoB: string;
let videoOther: string;
let embedder: FakeUpstream;
const libraryImages: Record<string, string> = {};

/** An embeddings server that knows a few concepts, each with several words: synonyms land on the same axis. */
const CONCEPTS = [
  ['car', 'automobile', 'vehicle'],
  ['fruit', 'apple', 'apples', 'banana'],
];
const embedConcepts = (text: string): number[] => {
  const words = text.toLowerCase().match(/[a-z]+/g) ?? [];
  return [...CONCEPTS.map((synonyms) => words.filter((word) => synonyms.includes(word)).length), 0.01];
};

/** A 64x48 picture of 4x3 coloured blocks, drawn from `seed`: different seeds are different pictures. */
async function picture(seed: number): Promise<Buffer> {
  const bytes = createHash('sha512').update(`picture ${seed}`).digest();
  const blocks = Array.from({ length: 12 }, (_, block) => [...bytes.subarray(block * 3, block * 3 + 3)]);
  const raw = Buffer.alloc(64 * 48 * 3);
  for (let y = 0; y < 48; y += 1) {
    for (let x = 0; x < 64; x += 1) {
      const block = blocks[Math.floor(y / 16) * 4 + Math.floor(x / 16)]!;
      raw.set(block, (y * 64 + x) * 3);
    }
  }
  return sharp(raw, { raw: { width: 64, height: 48, channels: 3 } })
    .png()
    .toBuffer();
}

const dataUrl = (png: Buffer): string => `data:image/png;base64,${png.toString('base64')}`;

const config = () => ({
  models: [{ id: 'embedder', provider: 'openai-compatible', baseUrl: `${embedder.url}/v1`, model: 'concepts', maxRetries: 0 }],
  indexing: {
    objects: { enabled: false },
    labels: { enabled: false },
    vad: { enabled: false },
    ocr: { enabled: false },
    imageEmbeddingModel: modelDir,
    embeddingModel: 'embedder',
  },
  media: { allowHosts: [new URL(mediaOrigin).host], maxBytes: 65_536 },
});

/** A video of `key` whose segments show the given pictures as keyframes (JPEG files in its folder, as indexing writes them). */
async function insertVideo(key: string, segments: ReadonlyArray<readonly number[]>): Promise<string> {
  const id = await withDataDirDatabase(dataDir, (database) =>
    insertIndexedVideo(
      new VideoStore(database),
      environmentKeyOwner(key),
      segments.map((shown, seq) => ({
        seconds: 5,
        caption: `segment ${seq}`,
        keyframes: shown.map((_, frame) => ({ timeSeconds: seq * 5 + frame * 2, file: `keyframes/keyframe-${seq}-${frame}.jpg` })),
      })),
    ),
  );
  for (const [seq, shown] of segments.entries()) {
    for (const [frame, index] of shown.entries()) {
      const jpeg = await sharp(pictures[index]!).jpeg({ quality: 85 }).toBuffer();
      await writeTestBlob(dataDir, `videos/${id}/keyframes/keyframe-${seq}-${frame}.jpg`, jpeg);
    }
  }
  return id;
}

/** An indexed library image of `key` (row, findings and blob, as upload and indexing leave them). */
async function insertImage(key: string, index: number, caption: string): Promise<string> {
  const id = randomUUID();
  const data = pictures[index]!;
  await writeTestBlob(dataDir, `images/${id}`, data);
  await withDataDirDatabase(dataDir, async (database) => {
    const store = new ImageStore(database);
    await store.insertImages([
      {
        id,
        owner: environmentKeyOwner(key),
        name: `picture-${index}.png`,
        mediaType: 'image/png',
        width: 64,
        height: 48,
        sizeBytes: data.length,
        metadata: {},
        status: 'pending',
        indexRequested: true,
      },
    ]);
    await store.saveFindings(id, { caption, ocrText: '', detections: [], labels: [] });
  });
  return id;
}

function call(path: string, body: unknown, key = KEY_A, method = 'POST'): Promise<Response> {
  return fetch(ocular!.url + path, {
    method,
    headers: { 'x-api-key': key, 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
}

async function search(body: Record<string, unknown>, key = KEY_A): Promise<{ retrievers: string | null; results: WireHit[] }> {
  const response = await call('/v1/videos/search', body, key);
  const text = await response.text();
  expect(response.status, text).toBe(200);
  return { retrievers: response.headers.get('x-ocular-retrievers'), results: (JSON.parse(text) as { results: WireHit[] }).results };
}

async function expectError(response: Response, status: number, type: string): Promise<void> {
  const body = (await response.json()) as { error: { type: string; message: string } };
  expect({ status: response.status, type: body.error.type }).toEqual({ status, type });
  expect(body.error.message).not.toBe('');
}

/** Waits for the background job to have embedded the keyframes of every segment. */
async function allEmbedded(): Promise<void> {
  const pending = (): Promise<number> =>
    withDataDirDatabase(dataDir, async (database) => {
      const { rows } = await sql<{ n: number | string }>`
        SELECT count(*) AS n FROM video_segments s
        WHERE NOT EXISTS (SELECT 1 FROM keyframe_embeddings e WHERE e.segment_id = s.rowid)`.execute(database.db);
      return Number(rows[0]!.n);
    });
  await expect.poll(pending, { timeout: 15_000, interval: 100 }).toBe(0);
}

/** Waits for the background job to have embedded every library image, picture and text. */
async function allImagesEmbedded(): Promise<void> {
  const pending = (): Promise<number> =>
    withDataDirDatabase(dataDir, async (database) => {
      const { rows } = await sql<{ n: number | string }>`
        SELECT count(*) AS n FROM images i, (SELECT 'picture' AS kind UNION ALL SELECT 'text' AS kind) k
        WHERE NOT EXISTS (SELECT 1 FROM image_embeddings e WHERE e.image_id = i.id AND e.kind = k.kind)`.execute(database.db);
      return Number(rows[0]!.n);
    });
  await expect.poll(pending, { timeout: 15_000, interval: 100 }).toBe(0);
}

async function searchImages(
  body: Record<string, unknown>,
  key = KEY_A,
): Promise<{ retrievers: string | null; results: Array<{ image_id: string; score: number }> }> {
  const response = await call('/v1/images/search', body, key);
  const text = await response.text();
  expect(response.status, text).toBe(200);
  return {
    retrievers: response.headers.get('x-ocular-retrievers'),
    results: (JSON.parse(text) as { results: Array<{ image_id: string; score: number }> }).results,
  };
}

async function untilFound(image: number, key = KEY_A): Promise<WireHit[]> {
  await allEmbedded();
  return (await search({ image_url: dataUrl(pictures[image]!) }, key)).results;
}

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'ocular-clip-search-'));
  embedder = await startFakeUpstream((request, response) => {
    const { input } = request.body as { input: string[] };
    sendJson(response, 200, { data: input.map((text, index) => ({ index, embedding: embedConcepts(text) })) });
  });
  modelDir = writeClipFixture(join(dataDir, 'clip-model'));
  for (let seed = 0; seed < 8; seed += 1) pictures.push(await picture(seed));
  media = createServer((request, response) => {
    if (request.url === '/picture.png') {
      response.writeHead(200, { 'content-type': 'image/png' }).end(pictures[4]);
    } else if (request.url === '/big.png') {
      response.writeHead(200, { 'content-type': 'image/png' }).end(Buffer.concat([pictures[4]!, Buffer.alloc(70_000)]));
    } else if (request.url === '/page.html') {
      response.writeHead(200, { 'content-type': 'text/html' }).end('<html><body>not a picture</body></html>');
    } else {
      response.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve) => media.listen(0, '127.0.0.1', resolve));
  mediaOrigin = `http://127.0.0.1:${(media.address() as AddressInfo).port}`;
  // Videos indexed before the server (and its image model) started: the job at start embeds their keyframes.
  ocular = await startOcular(config(), { dataDir, envApiKeys: [KEY_A, KEY_B] });
  await ocular.close();
  videoA = await insertVideo(KEY_A, [[0, 1], [2, 3], [4]]);
  videoB = await insertVideo(KEY_A, [[5], [6]]);
  videoOther = await insertVideo(KEY_B, [[3]]);
  libraryImages.car = await insertImage(KEY_A, 1, 'A red car waits at the lights.');
  libraryImages.fruit = await insertImage(KEY_A, 2, 'A bowl of apples on a table.');
  libraryImages.other = await insertImage(KEY_B, 1, "Someone else's car.");
  ocular = await startOcular(config(), { dataDir, envApiKeys: [KEY_A, KEY_B] });
}, 60_000);

afterAll(async () => {
  await ocular?.close();
  await new Promise((resolve) => media?.close(resolve));
  await embedder?.close();
  removeMediaFixtures();
  rmSync(dataDir, { recursive: true, force: true });
});

describe('search by image', () => {
  it('finds the segment whose keyframe is the picture, at its time range', async () => {
    const results = await untilFound(3);
    expect(results[0]).toMatchObject({ video_id: videoA, start_timestamp: 5, end_timestamp: 10 });
    expect(results[0]!.score).toBeGreaterThan(0.9);
    const { retrievers } = await search({ image_url: dataUrl(pictures[3]!) });
    expect(retrievers).toBe('image');
    const other = (await search({ image_url: dataUrl(pictures[6]!) })).results;
    expect(other[0]).toMatchObject({ video_id: videoB, start_timestamp: 5, end_timestamp: 10 });
  });

  it('fetches an http(s) image_url through the media fetcher', async () => {
    await untilFound(0);
    const { results } = await search({ image_url: `${mediaOrigin}/picture.png` });
    expect(results[0]).toMatchObject({ video_id: videoA, start_timestamp: 10, end_timestamp: 15 });
  });

  it('keeps the filters: video_ids, max_results, threshold', async () => {
    await untilFound(0);
    const onlyB = await search({ image_url: dataUrl(pictures[3]!), video_ids: [videoB] });
    expect(onlyB.results.every((hit) => hit.video_id === videoB)).toBe(true);
    const one = await search({ image_url: dataUrl(pictures[3]!), max_results: 1 });
    expect(one.results).toHaveLength(1);
    const strict = await search({ image_url: dataUrl(pictures[3]!), threshold: 0.9 });
    expect(strict.results.map((hit) => hit.video_id)).toEqual([videoA]);
  });

  it("searches only the caller's keyframes", async () => {
    const mine = await untilFound(3, KEY_B);
    expect(mine.map((hit) => hit.video_id)).toEqual([videoOther]);
    const theirs = await search({ image_url: dataUrl(pictures[3]!), video_ids: [videoA] }, KEY_B);
    expect(theirs.results).toEqual([]);
  });

  it('adds the text-to-image retriever to a text query', async () => {
    await untilFound(0);
    const { retrievers } = await search({ query: 'a red square' });
    expect(retrievers).toBe('lexical, semantic, visual');
  });

  it('wants exactly one of query and image_url', async () => {
    await expectError(await call('/v1/videos/search', { query: 'red', image_url: dataUrl(pictures[0]!) }), 400, 'validation_error');
    await expectError(await call('/v1/videos/search', { max_results: 3 }), 400, 'validation_error');
    await expectError(await call('/v1/videos/search', { image_url: '' }), 400, 'validation_error');
    await expectError(await call('/v1/videos/search', { image_url: 42 }), 400, 'validation_error');
  });

  it('refuses private addresses, non-images and corrupt pictures', async () => {
    await expectError(await call('/v1/videos/search', { image_url: 'http://10.0.0.1/picture.png' }), 400, 'validation_error');
    await expectError(await call('/v1/videos/search', { image_url: 'http://127.0.0.1:9/picture.png' }), 400, 'validation_error');
    await expectError(await call('/v1/videos/search', { image_url: 'ftp://example.com/picture.png' }), 400, 'validation_error');
    await expectError(await call('/v1/videos/search', { image_url: `${mediaOrigin}/page.html` }), 415, 'unsupported_media_type');
    await expectError(await call('/v1/videos/search', { image_url: `${mediaOrigin}/missing.png` }), 400, 'validation_error');
    const corrupt = Buffer.concat([pictures[0]!.subarray(0, 40), Buffer.alloc(200, 7)]);
    await expectError(await call('/v1/videos/search', { image_url: dataUrl(corrupt) }), 415, 'unsupported_media_type');
    await expectError(await call('/v1/videos/search', { image_url: 'data:image/png;base64,!!!' }), 400, 'validation_error');
    const oversized = Buffer.concat([pictures[0]!, Buffer.alloc(70_000)]);
    await expectError(await call('/v1/videos/search', { image_url: dataUrl(oversized) }), 413, 'payload_too_large');
    await expectError(await call('/v1/videos/search', { image_url: `${mediaOrigin}/big.png` }), 400, 'validation_error');
    await expectError(
      await call('/v1/videos/search', { image_url: `data:text/plain;base64,${Buffer.from('hello there').toString('base64')}` }),
      415,
      'unsupported_media_type',
    );
  });

  it('rebuilds the keyframe and picture vector indexes from the database after they were deleted while the server was down', async () => {
    await untilFound(3);
    await allImagesEmbedded();
    await ocular!.close();
    ocular = undefined;
    const folders = [join(dataDir, 'vectors', 'keyframe-image'), join(dataDir, 'vectors', 'image-picture')];
    for (const folder of folders) {
      expect(existsSync(folder)).toBe(true);
      rmSync(folder, { recursive: true, force: true });
    }
    ocular = await startOcular(config(), { dataDir, envApiKeys: [KEY_A, KEY_B] });
    const { results } = await search({ image_url: dataUrl(pictures[3]!) });
    expect(results[0]).toMatchObject({ video_id: videoA, start_timestamp: 5, end_timestamp: 10 });
    const images = await searchImages({ image_url: dataUrl(pictures[2]!), max_results: 1 });
    expect(images.results.map((hit) => hit.image_id)).toEqual([libraryImages.fruit]);
    for (const folder of folders) expect(existsSync(folder)).toBe(true);
  }, 30_000);

  it("removes a video's keyframe embeddings with it", async () => {
    await untilFound(6);
    const response = await call(`/v1/videos/${videoB}`, undefined, KEY_A, 'DELETE');
    expect(response.status).toBe(200);
    const keyframesOf = (videoId: string): Promise<number> =>
      withDataDirDatabase(dataDir, async (database) => {
        const rows = await database.db.selectFrom('keyframe_embeddings').select('id').where('video_id', '=', videoId).execute();
        return rows.length;
      });
    expect(await keyframesOf(videoB)).toBe(0);
    expect(await keyframesOf(videoA)).toBe(5);
    const { results } = await search({ image_url: dataUrl(pictures[6]!) });
    expect(results.some((hit) => hit.video_id === videoB)).toBe(false);
  });
});

describe('indexing', () => {
  it('embeds the keyframes of a video once it is indexed, so its pictures find it', async () => {
    const body = new FormData();
    body.set('video_name', 'pattern');
    body.set('file', new Blob([new Uint8Array(readFileSync(await makeVideo({ seconds: 3, width: 160, height: 120 })))]), 'clip.mp4');
    const uploaded = await fetch(`${ocular!.url}/v1/videos/upload`, { method: 'POST', headers: { 'x-api-key': KEY_A }, body });
    expect(uploaded.status).toBe(200);
    const { video_id: id } = (await uploaded.json()) as { video_id: string };
    await expect
      .poll(
        async () =>
          ((await (await call(`/v1/videos/${id}`, undefined, KEY_A, 'GET')).json()) as { indexing_status: string }).indexing_status,
        { timeout: 60_000, interval: 200 },
      )
      .toBe('indexed');
    await allEmbedded();
    const segments = (await (await call(`/v1/videos/${id}/segments`, undefined, KEY_A, 'GET')).json()) as {
      results: Array<{ keyframes: Array<{ url: string }> }>;
    };
    const keyframe = Buffer.from(await (await fetch(segments.results[0]!.keyframes[0]!.url)).arrayBuffer());
    const { results } = await search({ image_url: `data:image/jpeg;base64,${keyframe.toString('base64')}`, video_ids: [id] });
    expect(results[0]).toMatchObject({ video_id: id, start_timestamp: 0 });
  }, 90_000);

  it('embeds an uploaded image once it is indexed', async () => {
    const body = new FormData();
    body.append('images', new Blob([new Uint8Array(pictures[5]!)], { type: 'image/png' }), 'upload.png');
    const uploaded = await fetch(`${ocular!.url}/v1/images/upload`, { method: 'POST', headers: { 'x-api-key': KEY_A }, body });
    expect(uploaded.status).toBe(200);
    const [{ image_id: id }] = ((await uploaded.json()) as { results: Array<{ image_id: string }> }).results as [{ image_id: string }];
    await expect
      .poll(async () => ((await (await call(`/v1/images/${id}`, undefined, KEY_A, 'GET')).json()) as { status: string }).status, {
        timeout: 30_000,
        interval: 200,
      })
      .toBe('indexed');
    await allImagesEmbedded();
    const { results } = await searchImages({ image_url: dataUrl(pictures[5]!), max_results: 1 });
    expect(results.map((hit) => hit.image_id)).toEqual([id]);
  }, 60_000);
});

describe('image library search', () => {
  it('finds the image that is the picture', async () => {
    await allImagesEmbedded();
    const { retrievers, results } = await searchImages({ image_url: dataUrl(pictures[2]!) });
    expect(retrievers).toBe('image');
    expect(results[0]!.image_id).toBe(libraryImages.fruit);
    expect(results[0]!.score).toBeGreaterThan(0.9);
    expect(results.map((hit) => hit.image_id)).not.toContain(libraryImages.other);
    const strict = await searchImages({ image_url: dataUrl(pictures[2]!), threshold: 0.9 });
    expect(strict.results.map((hit) => hit.image_id)).toEqual([libraryImages.fruit]);
  });

  it('fuses word matches with the caption text embeddings and the pictures for a text query', async () => {
    await allImagesEmbedded();
    const { retrievers, results } = await searchImages({ query: 'automobile' });
    expect(retrievers).toBe('lexical, visual, semantic');
    expect(results[0]!.image_id).toBe(libraryImages.car);
    const words = await searchImages({ query: 'bowl of apples', max_results: 1 });
    expect(words.results.map((hit) => hit.image_id)).toEqual([libraryImages.fruit]);
  });

  it("searches only the caller's images", async () => {
    await allImagesEmbedded();
    const theirs = await searchImages({ image_url: dataUrl(pictures[1]!) }, KEY_B);
    expect(theirs.results.map((hit) => hit.image_id)).toEqual([libraryImages.other]);
    const byWords = await searchImages({ query: 'automobile' }, KEY_B);
    expect(byWords.results.map((hit) => hit.image_id)).toEqual([libraryImages.other]);
  });

  it('wants exactly one of query and image_url, and a picture', async () => {
    await expectError(await call('/v1/images/search', { query: 'car', image_url: dataUrl(pictures[1]!) }), 400, 'validation_error');
    await expectError(await call('/v1/images/search', { max_results: 2 }), 400, 'validation_error');
    await expectError(await call('/v1/images/search', { image_url: 'http://10.0.0.1/picture.png' }), 400, 'validation_error');
    await expectError(await call('/v1/images/search', { image_url: `${mediaOrigin}/page.html` }), 415, 'unsupported_media_type');
  });

  it("removes an image's embeddings with it", async () => {
    await allImagesEmbedded();
    const response = await call(`/v1/images/${libraryImages.car}`, undefined, KEY_A, 'DELETE');
    expect(response.status).toBe(200);
    const embeddingsOf = (imageId: string): Promise<number> =>
      withDataDirDatabase(dataDir, async (database) => {
        const rows = await database.db.selectFrom('image_embeddings').select('id').where('image_id', '=', imageId).execute();
        return rows.length;
      });
    expect(await embeddingsOf(libraryImages.car!)).toBe(0);
    expect(await embeddingsOf(libraryImages.fruit!)).toBe(2);
    const { results } = await searchImages({ image_url: dataUrl(pictures[1]!) });
    expect(results.map((hit) => hit.image_id)).not.toContain(libraryImages.car);
  });
});

describe('search by image without an image model', () => {
  it('answers 400 saying how to configure one, before fetching anything', async () => {
    const plain = await startOcular({}, { envApiKeys: [KEY_A] });
    try {
      const response = await fetch(`${plain.url}/v1/videos/search`, {
        method: 'POST',
        headers: { 'x-api-key': KEY_A, 'content-type': 'application/json' },
        body: JSON.stringify({ image_url: dataUrl(pictures[0]!) }),
      });
      const body = (await response.json()) as { error: { type: string; param: string } };
      expect({ status: response.status, type: body.error.type, param: body.error.param }).toEqual({
        status: 400,
        type: 'validation_error',
        param: 'image_url',
      });
      const text = await fetch(`${plain.url}/v1/videos/search`, {
        method: 'POST',
        headers: { 'x-api-key': KEY_A, 'content-type': 'application/json' },
        body: JSON.stringify({ query: 'anything' }),
      });
      expect(text.headers.get('x-ocular-retrievers')).toBe('lexical');
      const images = await fetch(`${plain.url}/v1/images/search`, {
        method: 'POST',
        headers: { 'x-api-key': KEY_A, 'content-type': 'application/json' },
        body: JSON.stringify({ image_url: dataUrl(pictures[0]!) }),
      });
      expect(images.status).toBe(400);
      expect(((await images.json()) as { error: { param: string } }).error.param).toBe('image_url');
    } finally {
      await plain.close();
    }
  });

  it('refuses at boot a folder that holds no CLIP model', async () => {
    const empty = mkdtempSync(join(tmpdir(), 'ocular-clip-empty-'));
    try {
      await expect(startOcular({ indexing: { imageEmbeddingModel: empty } })).rejects.toThrow(/imageEmbeddingModel.*vision_model\.onnx/s);
      writeClipFixture(empty);
      writeFileSync(join(empty, 'preprocessor_config.json'), '{"image_std": "wide"}');
      await expect(startOcular({ indexing: { imageEmbeddingModel: empty } })).rejects.toThrow(/preprocessor/);
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  });
});
