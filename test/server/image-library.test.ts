import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { crc32 } from 'node:zlib';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hasTestBlob, TEST_BLOBS } from '../helpers/blob-mode.ts';
import { ffmpegContext, fixturePath, removeMediaFixtures } from '../helpers/media-fixtures.ts';
import { withDataDirDatabase } from '../helpers/storage-mode.ts';
import { sendJson } from '../helpers/fake-upstream.ts';
import { startOcular, tamperSignature, type TestOcular } from '../helpers/ocular.ts';
import { completion, startOpenAiUpstream } from '../helpers/openai-upstream.ts';
import { FONT_PATH } from '../helpers/vision-fixtures.ts';

const run = promisify(execFile);
const require = createRequire(import.meta.url);

const KEY_A = 'ocu_images_a_0123456789abcdef';
const KEY_B = 'ocu_images_b_0123456789abcdef';
/** `media.maxBytes` of the test server: the per-image upload cap. */
const MAX_IMAGE_BYTES = 2 * 1024 * 1024;

interface WireImage {
  image_id: string;
  image_url: string;
  image_name: string;
  indexing_status: number;
  status: string;
  error?: string;
  upload_timestamp: number;
  media_type: string;
  width: number;
  height: number;
  metadata: Record<string, unknown>;
  image_metadata: {
    caption: string;
    ocr_text: string;
    detection_metadata: Array<{ class_name: string; confidence: number; bounding_box: number[] }>;
  };
}

interface SearchResult {
  image_id: string;
  image_url: string;
  score: number;
  image_metadata: WireImage['image_metadata'];
}

interface ErrorBody {
  error: { type: string; message: string; param?: string };
}

let ocular: TestOcular;

/** A PNG of `text` drawn large, white on black, with ffmpeg's drawtext (as the video fixtures do). */
async function textImage(text: string): Promise<Buffer> {
  if (FONT_PATH === undefined) throw new Error('no TrueType font found for drawtext; install fonts-dejavu-core');
  const path = fixturePath('.png');
  await run(ffmpegContext.binaries.ffmpeg, [
    '-nostdin',
    '-hide_banner',
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
  return readFile(path);
}

function solidJpeg(width: number, height: number, colour = '#3080c0'): Promise<Buffer> {
  return sharp({ create: { width, height, channels: 3, background: colour } })
    .jpeg()
    .toBuffer();
}

/**
 * A valid small PNG whose header claims 50000 x 50000 pixels (2.5 gigapixels): what a decompression bomb looks
 * like to a decoder before it allocates. The header's CRC is fixed, so only the pixel limit can refuse it.
 */
async function bombPng(): Promise<Buffer> {
  const png = Buffer.from(
    await sharp({ create: { width: 8, height: 8, channels: 3, background: '#000000' } })
      .png()
      .toBuffer(),
  );
  // IHDR: 8-byte signature, 4-byte length, "IHDR" at 12, width at 16, height at 20, CRC after the 13 data bytes.
  png.writeUInt32BE(50_000, 16);
  png.writeUInt32BE(50_000, 20);
  png.writeUInt32BE(crc32(png.subarray(12, 29)), 29);
  return png;
}

/** The third tile of @vladmandic/human's sample sheet: a man seated behind a table (see test/perception/objects.test.ts). */
async function personPhoto(): Promise<Buffer> {
  const samples = join(dirname(require.resolve('@vladmandic/human')), '..', 'assets', 'samples.jpg');
  return sharp(await readFile(samples))
    .extract({ left: 326, top: 0, width: 210, height: 157 })
    .jpeg({ quality: 95 })
    .toBuffer();
}

function form(
  files: Array<{ data: Buffer | string; name?: string; field?: string; type?: string }>,
  fields: Record<string, string> = {},
): FormData {
  const body = new FormData();
  for (const file of files) {
    const bytes = typeof file.data === 'string' ? new TextEncoder().encode(file.data) : new Uint8Array(file.data);
    body.append(file.field ?? 'images', new Blob([bytes], { type: file.type ?? 'image/png' }), file.name ?? 'image.png');
  }
  for (const [name, value] of Object.entries(fields)) body.append(name, value);
  return body;
}

function upload(body: FormData, key = KEY_A): Promise<Response> {
  return fetch(`${ocular.url}/v1/images/upload`, { method: 'POST', headers: { 'x-api-key': key }, body });
}

async function uploadImages(body: FormData, key = KEY_A): Promise<WireImage[]> {
  const response = await upload(body, key);
  const text = await response.text();
  expect(response.status, text).toBe(200);
  return (JSON.parse(text) as { results: WireImage[] }).results;
}

function call(method: string, path: string, key = KEY_A, body?: unknown): Promise<Response> {
  return fetch(ocular.url + path, {
    method,
    headers: { 'x-api-key': key, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
}

async function search(query: string, extra: Record<string, unknown> = {}, key = KEY_A): Promise<SearchResult[]> {
  const response = await call('POST', '/v1/images/search', key, { query, ...extra });
  expect(response.status).toBe(200);
  return ((await response.json()) as { results: SearchResult[] }).results;
}

async function waitIndexed(id: string, timeoutMs = 60_000): Promise<WireImage> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const image = (await (await call('GET', `/v1/images/${id}`)).json()) as WireImage;
    if (image.status === 'indexed' || image.status === 'failed') return image;
    if (Date.now() > deadline) throw new Error(`image ${id} stayed ${image.status}`);
    await new Promise((resolve) => setTimeout(resolve, 150));
  }
}

async function waitIndexedOn(server: TestOcular, id: string): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (((await (await server.get(`/v1/images/${id}`)).json()) as WireImage).status !== 'indexed') {
    if (Date.now() > deadline) throw new Error(`image ${id} was not indexed`);
    await new Promise((resolve) => setTimeout(resolve, 150));
  }
}

async function expectError(response: Response, status: number, type: string, param?: string): Promise<void> {
  const body = (await response.json()) as ErrorBody;
  expect(response.status, JSON.stringify(body)).toBe(status);
  expect(body.error.type).toBe(type);
  if (param !== undefined) expect(body.error.param).toBe(param);
}

beforeAll(async () => {
  ocular = await startOcular(
    { media: { maxBytes: MAX_IMAGE_BYTES }, indexing: { vad: { enabled: false }, labels: { enabled: false } } },
    { envApiKeys: [KEY_A, KEY_B] },
  );
}, 60_000);

afterAll(async () => {
  await ocular?.close();
  removeMediaFixtures();
});

describe('POST /v1/images/upload', () => {
  it('stores one image, normalised, behind a signed URL', async () => {
    const [image] = await uploadImages(form([{ data: await solidJpeg(2400, 1200), name: 'wide.jpg', type: 'image/jpeg' }]));
    expect(image).toMatchObject({ image_name: 'wide.jpg', media_type: 'image/jpeg', width: 1568, height: 784, indexing_status: 1 });
    expect(image!.image_id).toMatch(/^[0-9a-f-]{36}$/);
    expect(image!.upload_timestamp).toBeGreaterThan(Date.now() / 1000 - 60);

    // The URL is the credential: no API key needed, and a tampered one is refused.
    const file = await fetch(image!.image_url);
    expect(file.status).toBe(200);
    expect(file.headers.get('content-type')).toBe('image/jpeg');
    expect((await sharp(Buffer.from(await file.arrayBuffer())).metadata()).width).toBe(1568);
    await expectError(await fetch(tamperSignature(image!.image_url)), 403, 'permission_error');
    await expectError(await fetch(image!.image_url.split('?')[0]!), 403, 'permission_error');

    const fetched = (await (await call('GET', `/v1/images/${image!.image_id}`)).json()) as WireImage;
    expect(fetched.image_id).toBe(image!.image_id);
  });

  it('stores several images in one upload, each with its own metadata and indexing choice', async () => {
    const metadata = {
      requests: [
        { indexing_config: { index: true }, metadata: { camera: 'north' } },
        { indexing_config: { index: false }, metadata: { camera: 'south' } },
        { metadata: {} },
      ],
    };
    const images = await uploadImages(
      form(
        [
          { data: await solidJpeg(64, 48), name: 'a.jpg' },
          { data: await solidJpeg(80, 60, '#c03020'), name: 'b.jpg' },
          { data: await textImage('SEVERAL'), name: 'c.png' },
        ],
        { metadata: JSON.stringify(metadata) },
      ),
    );
    expect(images.map((image) => image.image_name)).toEqual(['a.jpg', 'b.jpg', 'c.png']);
    expect(images.map((image) => image.metadata)).toEqual([{ camera: 'north' }, { camera: 'south' }, {}]);
    expect(images.map((image) => image.indexing_status)).toEqual([1, 0, 1]);
    expect(new Set(images.map((image) => image.image_id)).size).toBe(3);
  });
});

describe('bad uploads', () => {
  it('refuses bytes that are not an image (415), naming the file', async () => {
    const response = await upload(form([{ data: await solidJpeg(32, 32) }, { data: 'just some text, not a picture', name: 'notes.png' }]));
    await expectError(response, 415, 'unsupported_media_type', 'images.1');
    const svg = '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>';
    await expectError(await upload(form([{ data: svg, name: 'x.svg', type: 'image/svg+xml' }])), 415, 'unsupported_media_type');
  });

  it('refuses a decompression bomb before decoding it', async () => {
    await expectError(await upload(form([{ data: await bombPng(), name: 'bomb.png' }])), 400, 'validation_error', 'images.0');
  });

  it('refuses empty files, missing files, too many files and files over the size cap', async () => {
    await expectError(
      await upload(form([{ data: await solidJpeg(32, 32) }, { data: Buffer.alloc(0) }])),
      400,
      'validation_error',
      'images.1',
    );
    await expectError(await upload(form([], { metadata: '{"requests":[]}' })), 400, 'validation_error', 'images');
    const tiny = await solidJpeg(16, 16);
    await expectError(await upload(form(Array.from({ length: 17 }, () => ({ data: tiny })))), 400, 'validation_error', 'images');
    await expectError(await upload(form([{ data: Buffer.alloc(MAX_IMAGE_BYTES + 1, 0xff) }])), 413, 'payload_too_large');
    await expectError(await upload(form([{ data: tiny, field: 'file' }])), 400, 'validation_error', 'file');
  });

  it('refuses metadata that is not JSON, has the wrong shape, or does not match the files', async () => {
    const tiny = await solidJpeg(16, 16);
    await expectError(await upload(form([{ data: tiny }], { metadata: '{not json' })), 400, 'validation_error', 'metadata');
    await expectError(await upload(form([{ data: tiny }], { metadata: '{"requests":[{},{}]}' })), 400, 'validation_error', 'metadata');
    await expectError(
      await upload(form([{ data: tiny }], { metadata: '{"requests":[{"indexing_config":{"index":"yes"}}]}' })),
      400,
      'validation_error',
    );
    await expectError(await upload(form([{ data: tiny }], { other: 'x' })), 400, 'validation_error', 'other');
  });

  it('keeps nothing from a refused upload', async () => {
    const before = ((await (await call('GET', '/v1/images?limit=100')).json()) as { total: number }).total;
    await upload(form([{ data: await solidJpeg(32, 32) }, { data: 'not an image' }]));
    const after = ((await (await call('GET', '/v1/images?limit=100')).json()) as { total: number }).total;
    expect(after).toBe(before);
  });
});

describe('indexing and search', () => {
  it('finds an image by the text on it, also with a typo, and honours threshold', async () => {
    const [image] = await uploadImages(form([{ data: await textImage('QUARTZ FALCON'), name: 'sign.png' }]));
    const indexed = await waitIndexed(image!.image_id);
    expect(indexed.status).toBe('indexed');
    expect(indexed.indexing_status).toBe(2);
    expect(indexed.image_metadata.ocr_text.toUpperCase()).toContain('QUARTZ');
    expect(indexed.image_metadata.caption).toContain('On-screen text');

    const [best] = await search('quartz falcon');
    expect(best).toMatchObject({ image_id: image!.image_id, score: 1 });
    expect(best!.image_metadata.ocr_text.toUpperCase()).toContain('FALCON');
    expect((await fetch(best!.image_url)).status).toBe(200);

    const typo = await search('quartz falcn');
    expect(typo[0]?.image_id).toBe(image!.image_id);
    expect(typo[0]!.score).toBeLessThan(1);
    expect(typo[0]!.score).toBeGreaterThan(0.5);
    expect(await search('quartz falcn', { threshold: 0.99 })).toEqual([]);
    expect(await search('zebra umbrella')).toEqual([]);
  }, 90_000);

  it('reports objects with their boxes and confidence, and finds them by name', async () => {
    const [image] = await uploadImages(form([{ data: await personPhoto(), name: 'person.jpg', type: 'image/jpeg' }]));
    const indexed = await waitIndexed(image!.image_id);
    expect(indexed.status).toBe('indexed');
    const person = indexed.image_metadata.detection_metadata.find((detection) => detection.class_name === 'person');
    expect(person, JSON.stringify(indexed.image_metadata)).toBeDefined();
    expect(person!.confidence).toBeGreaterThan(0.3);
    expect(person!.bounding_box).toHaveLength(4);
    const [xMin, yMin, xMax, yMax] = person!.bounding_box as [number, number, number, number];
    expect(0 <= xMin && xMin < xMax && xMax <= 1 && 0 <= yMin && yMin < yMax && yMax <= 1).toBe(true);
    expect((await search('person')).map((hit) => hit.image_id)).toContain(image!.image_id);
  }, 90_000);

  it('validates the search body', async () => {
    await expectError(await call('POST', '/v1/images/search', KEY_A, { query: '' }), 400, 'validation_error', 'query');
    await expectError(
      await call('POST', '/v1/images/search', KEY_A, { query: 'x', max_results: 0 }),
      400,
      'validation_error',
      'max_results',
    );
    await expectError(await call('POST', '/v1/images/search', KEY_A, { query: 'x', threshold: 2 }), 400, 'validation_error', 'threshold');
  });
});

describe('GET /v1/images, DELETE /v1/images/{id} and owners', () => {
  it('pages through the images, oldest first', async () => {
    const files = await Promise.all([1, 2, 3].map(async (n) => ({ data: await solidJpeg(20 + n, 20), name: `p${n}.jpg` })));
    const uploaded = await uploadImages(form(files), KEY_B);
    const first = (await (await call('GET', '/v1/images?limit=2&offset=0', KEY_B)).json()) as {
      results: WireImage[];
      total: number;
      limit: number;
      offset: number;
    };
    expect(first).toMatchObject({ total: 3, limit: 2, offset: 0 });
    expect(first.results.map((image) => image.image_name)).toEqual(['p1.jpg', 'p2.jpg']);
    const second = (await (await call('GET', '/v1/images?limit=2&offset=2', KEY_B)).json()) as { results: WireImage[]; total: number };
    expect(second.results.map((image) => image.image_id)).toEqual([uploaded[2]!.image_id]);
    await expectError(await call('GET', '/v1/images?limit=0', KEY_B), 400, 'validation_error', 'limit');
  });

  it("keeps each owner's images to that owner", async () => {
    const [image] = await uploadImages(form([{ data: await textImage('OWNER SECRET'), name: 'mine.png' }]));
    await waitIndexed(image!.image_id);
    expect((await search('owner secret')).map((hit) => hit.image_id)).toContain(image!.image_id);
    expect(await search('owner secret', {}, KEY_B)).toEqual([]);
    await expectError(await call('GET', `/v1/images/${image!.image_id}`, KEY_B), 404, 'not_found_error');
    await expectError(await call('DELETE', `/v1/images/${image!.image_id}`, KEY_B), 404, 'not_found_error');
    const listed = (await (await call('GET', '/v1/images?limit=100', KEY_B)).json()) as { results: WireImage[] };
    expect(listed.results.map((entry) => entry.image_id)).not.toContain(image!.image_id);
    expect((await call('GET', `/v1/images/${image!.image_id}`)).status).toBe(200);
  }, 90_000);

  it('deletes an image: its row, its blob, its search entry and its URL', async () => {
    const [image] = await uploadImages(form([{ data: await textImage('DELETE ME'), name: 'gone.png' }]));
    await waitIndexed(image!.image_id);
    const blob = `images/${image!.image_id}`;
    expect(await hasTestBlob(ocular.dataDir, blob)).toBe(true);
    const response = await call('DELETE', `/v1/images/${image!.image_id}`);
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ image_id: image!.image_id, deleted: true });
    expect(await hasTestBlob(ocular.dataDir, blob)).toBe(false);
    await expectError(await call('GET', `/v1/images/${image!.image_id}`), 404, 'not_found_error');
    await expectError(await call('DELETE', `/v1/images/${image!.image_id}`), 404, 'not_found_error');
    await expectError(await fetch(image!.image_url), 404, 'not_found_error');
    expect((await search('delete me')).map((hit) => hit.image_id)).not.toContain(image!.image_id);
    await expectError(await call('GET', '/v1/images/not-an-id'), 404, 'not_found_error');
  }, 90_000);
});

describe('durability', () => {
  // Folders only: in a shared S3 store, a crash's leftovers are found through their claims (s3-blobs.test.ts).
  it.skipIf(TEST_BLOBS === 's3')(
    'indexes an image whose job was lost after the restart, and sweeps what a crash left behind',
    async () => {
      const dataDir = mkdtempSync(join(tmpdir(), 'ocular-images-'));
      const config = { indexing: { vad: { enabled: false }, labels: { enabled: false }, objects: { enabled: false } } };
      try {
        const first = await startOcular(config, { dataDir });
        const body = form([{ data: await textImage('RESUMED LATER'), name: 'later.png' }]);
        const response = await fetch(`${first.url}/v1/images/upload`, { method: 'POST', headers: { 'x-api-key': first.key }, body });
        expect(response.status).toBe(200);
        const [image] = ((await response.json()) as { results: WireImage[] }).results;
        await waitIndexedOn(first, image!.image_id);
        await first.close();

        // As a crash can leave it: the row unfinished, its job gone.
        await withDataDirDatabase(dataDir, (database) =>
          database.db
            .updateTable('images')
            .set({ status: 'pending', job_id: null, caption: '', ocr_text: '' })
            .where('id', '=', image!.image_id)
            .execute(),
        );

        // What a crash between writing a blob and its row, or mid-upload, leaves behind.
        const orphan = join(dataDir, 'images', randomUUID());
        writeFileSync(orphan, 'orphan');
        mkdirSync(join(dataDir, 'images', '.incoming'), { recursive: true });
        writeFileSync(join(dataDir, 'images', '.incoming', 'half.upload'), 'half');

        const second = await startOcular(config, { dataDir });
        try {
          expect(existsSync(orphan)).toBe(false);
          expect(existsSync(join(dataDir, 'images', '.incoming'))).toBe(false);
          const deadline = Date.now() + 60_000;
          let current: WireImage;
          for (;;) {
            current = (await (await second.get(`/v1/images/${image!.image_id}`)).json()) as WireImage;
            if (current.status === 'indexed' || Date.now() > deadline) break;
            await new Promise((resolve) => setTimeout(resolve, 150));
          }
          expect(current.status).toBe('indexed');
          expect(current.image_metadata.ocr_text.toUpperCase()).toContain('RESUMED');
        } finally {
          await second.close();
        }
      } finally {
        rmSync(dataDir, { recursive: true, force: true });
      }
    },
    120_000,
  );
});

describe('caption model', () => {
  it('captions an image with indexing.captionModel, given the picture and the findings, and searches the caption', async () => {
    const upstream = await startOpenAiUpstream();
    upstream.behave((_request, response) => sendJson(response, 200, completion('A brass telescope on a wooden tripod.')));
    const server = await startOcular({
      models: [{ id: 'captioner', provider: 'openai-compatible', baseUrl: `${upstream.url}/v1`, model: 'vl' }],
      indexing: { captionModel: 'captioner', vad: { enabled: false }, labels: { enabled: false }, objects: { enabled: false } },
    });
    try {
      const body = form([{ data: await textImage('STARGAZER'), name: 'scope.png' }]);
      const response = await fetch(`${server.url}/v1/images/upload`, { method: 'POST', headers: { 'x-api-key': server.key }, body });
      expect(response.status).toBe(200);
      const [image] = ((await response.json()) as { results: WireImage[] }).results;
      await waitIndexedOn(server, image!.image_id);
      const indexed = (await (await server.get(`/v1/images/${image!.image_id}`)).json()) as WireImage;
      expect(indexed.image_metadata.caption).toBe('A brass telescope on a wooden tripod.');

      const sent = JSON.stringify(upstream.requests.at(-1)?.body);
      expect(sent).toContain('data:image/');
      expect(sent).toContain('in this image');
      expect(sent).toContain('STARGAZER'); // the OCR findings ground the caption

      const found = await server.post('/v1/images/search', { query: 'telescope tripod' });
      const results = ((await found.json()) as { results: SearchResult[] }).results;
      expect(results.map((hit) => hit.image_id)).toEqual([image!.image_id]);
    } finally {
      await server.close();
      await upstream.close();
    }
  }, 90_000);
});
