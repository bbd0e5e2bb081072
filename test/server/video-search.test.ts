import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { environmentKeyOwner } from '../../src/store/api-keys.ts';
import { VideoStore } from '../../src/store/video-store.ts';
import { createUrlSigner, SIGNING_KEY_FILE } from '../../src/vision/signed-urls.ts';
import { removeMediaFixtures } from '../helpers/media-fixtures.ts';
import { startOcular, type TestOcular } from '../helpers/ocular.ts';
import { FONT_PATH, makeTitledVideo } from '../helpers/vision-fixtures.ts';
import { insertIndexedVideo } from '../helpers/library-fixtures.ts';

const KEY_A = 'ocu_search_owner_a_0123456789ab';
const KEY_B = 'ocu_search_owner_b_0123456789ab';

interface WireHit {
  video_chunk_id: string;
  video_id: string;
  video_title: string;
  score: number;
  start_timestamp: number;
  end_timestamp: number;
  plain_text_caption: string;
  plain_text_transcript: string;
  s3_presigned_url: string;
  thumbnail_url: string;
}

interface WireSearch {
  results: WireHit[];
  total_results: number;
}

let ocular: TestOcular;

function call(method: string, path: string, key = KEY_A, body?: unknown): Promise<Response> {
  return fetch(ocular.url + path, {
    method,
    headers: { 'x-api-key': key, 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
  });
}

async function search(body: Record<string, unknown>, key = KEY_A): Promise<WireSearch & { retrievers: string | null }> {
  const response = await call('POST', '/v1/videos/search', key, body);
  const text = await response.text();
  expect(response.status, text).toBe(200);
  return { ...(JSON.parse(text) as WireSearch), retrievers: response.headers.get('x-ocular-retrievers') };
}

async function expectError(response: Response, status: number, type: string): Promise<void> {
  const body = (await response.json()) as { error: { type: string; message: string } };
  expect({ status: response.status, type: body.error.type }).toEqual({ status, type });
  expect(body.error.message).not.toBe('');
}

const overlaps = (hit: WireHit, from: number, to: number): boolean => hit.start_timestamp < to && hit.end_timestamp > from;

/** Writes a video row and its segments straight into the server's database: search only reads rows. */
function insertVideo(
  key: string,
  segments: ReadonlyArray<{ ocr: string; seconds?: number }>,
  options: { groupId?: string; startTimestamp?: string; name?: string } = {},
): Promise<string> {
  return ocular.withDatabase((database) =>
    insertIndexedVideo(
      new VideoStore(database),
      environmentKeyOwner(key),
      segments.map(({ ocr, seconds }) => ({
        ocrText: ocr,
        caption: ocr === '' ? '' : `On-screen text: ${ocr}`,
        ...(seconds === undefined ? {} : { seconds }),
      })),
      {
        ...(options.groupId === undefined ? {} : { groupId: options.groupId }),
        ...(options.name === undefined ? {} : { name: options.name }),
        ...(options.startTimestamp === undefined ? {} : { startTimestamp: options.startTimestamp }),
      },
    ),
  );
}

async function uploadAndIndex(path: string, fields: Record<string, string>, key = KEY_A): Promise<string> {
  const body = new FormData();
  for (const [name, value] of Object.entries(fields)) body.set(name, value);
  body.set('file', new Blob([new Uint8Array(await readFile(path))], { type: 'video/mp4' }), 'clip.mp4');
  const response = await fetch(`${ocular.url}/v1/videos/upload`, { method: 'POST', headers: { 'x-api-key': key }, body });
  expect(response.status).toBe(200);
  const { video_id: id } = (await response.json()) as { video_id: string };
  const deadline = Date.now() + 120_000;
  for (;;) {
    const video = (await (await call('GET', `/v1/videos/${id}`, key)).json()) as { indexing_status: string; error?: string };
    if (video.indexing_status === 'indexed') return id;
    if (video.indexing_status === 'failed') throw new Error(`indexing failed: ${video.error}`);
    if (Date.now() > deadline) throw new Error('indexing took over 120 s');
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

beforeAll(async () => {
  // Object detection and scene labels add nothing to text search and cost seconds per video.
  ocular = await startOcular(
    { indexing: { objects: { enabled: false }, labels: { enabled: false }, vad: { enabled: false } } },
    { envApiKeys: [KEY_A, KEY_B] },
  );
}, 60_000);

afterAll(async () => {
  await ocular?.close();
  removeMediaFixtures();
});

describe.skipIf(FONT_PATH === undefined)('searching indexed videos', () => {
  let titled: string;

  beforeAll(async () => {
    const path = await makeTitledVideo({
      seconds: 30,
      captions: [
        { text: 'QUARTZ FALCON', fromSeconds: 3, toSeconds: 9 },
        { text: 'MARBLE OTTER', fromSeconds: 17, toSeconds: 23 },
      ],
    });
    titled = await uploadAndIndex(path, { video_name: 'titles', enable_thumbnails: 'true' });
  }, 150_000);

  it('finds on-screen text at the times it was shown, with a playable signed range', async () => {
    const found = await search({ query: 'quartz falcon' });
    expect(found.retrievers).toBe('lexical');
    const top = found.results[0]!;
    expect(top).toMatchObject({ video_id: titled, video_title: 'titles' });
    expect(overlaps(top, 3, 9)).toBe(true);
    expect(overlaps(top, 17, 23)).toBe(false);
    expect(top.score).toBeGreaterThan(0.9);
    expect(top.score).toBeLessThanOrEqual(1);
    expect(top.plain_text_caption).toMatch(/QUARTZ FALCON/i);
    expect(top.video_chunk_id).toMatch(new RegExp(`^${titled}:\\d+-\\d+$`));
    // The video itself, with a media fragment for the range; the signature needs no API key and Range works.
    const url = new URL(top.s3_presigned_url);
    expect(url.pathname).toBe(`/v1/videos/${titled}/file`);
    expect(url.hash).toBe(`#t=${top.start_timestamp.toFixed(3)},${top.end_timestamp.toFixed(3)}`);
    const part = await fetch(url, { headers: { range: 'bytes=0-99' } });
    expect(part.status).toBe(206);
    expect((await part.arrayBuffer()).byteLength).toBe(100);

    const otter = await search({ query: 'Marble Otter' });
    expect(otter.results[0]!.video_id).toBe(titled);
    expect(overlaps(otter.results[0]!, 17, 23)).toBe(true);
    expect(overlaps(otter.results[0]!, 3, 9)).toBe(false);

    const none = await search({ query: 'zebra crossing' });
    expect(none).toMatchObject({ results: [], total_results: 0 });
  });

  it('tolerates typos and finds partial queries', async () => {
    for (const query of ['quartz falcn', 'qaurtz falcon', 'falcn', 'quartz falc', 'QUARTZFALCON', 'marbel']) {
      const found = await search({ query });
      const top = found.results[0];
      expect(top?.video_id, query).toBe(titled);
      const window = /marb/i.test(query) ? [17, 23] : [3, 9];
      expect(overlaps(top!, window[0]!, window[1]!), query).toBe(true);
      expect(top!.score, query).toBeGreaterThan(0);
    }
    expect((await search({ query: 'quartz falcn' })).retrievers).toBe('lexical');
  });

  it('serves the result thumbnail and the segment pictures at signed URLs, with Range and validators', async () => {
    const [top] = (await search({ query: 'quartz falcon' })).results;
    const thumbnail = await fetch(top!.thumbnail_url);
    expect(thumbnail.status).toBe(200);
    expect(thumbnail.headers.get('content-type')).toBe('image/jpeg');
    const bytes = Buffer.from(await thumbnail.arrayBuffer());
    expect(bytes.subarray(0, 2).toString('hex')).toBe('ffd8');

    const head = await fetch(top!.thumbnail_url, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers.get('content-length')).toBe(String(bytes.length));
    const etag = head.headers.get('etag')!;
    expect(etag).toMatch(/^".+"$/);
    expect((await fetch(top!.thumbnail_url, { headers: { 'if-none-match': etag } })).status).toBe(304);
    const part = await fetch(top!.thumbnail_url, { headers: { range: 'bytes=2-11' } });
    expect(part.status).toBe(206);
    expect(part.headers.get('content-range')).toBe(`bytes 2-11/${bytes.length}`);
    expect(Buffer.from(await part.arrayBuffer()).equals(bytes.subarray(2, 12))).toBe(true);

    const listed = (await (await call('GET', `/v1/videos/${titled}/segments?limit=100`)).json()) as {
      results: Array<{
        segment_index: number;
        ocr_text: string;
        thumbnail_url: string;
        keyframes: Array<{ timestamp: number; url: string }>;
      }>;
      total: number;
    };
    expect(listed.total).toBe(listed.results.length);
    expect(listed.results.some((segment) => /QUARTZ/i.test(segment.ocr_text))).toBe(true);
    const keyframe = listed.results[0]!.keyframes[0]!;
    expect(keyframe.timestamp).toBe(0);
    const frame = await fetch(keyframe.url);
    expect(frame.status).toBe(200);
    expect(frame.headers.get('content-type')).toBe('image/jpeg');
    expect(frame.headers.get('accept-ranges')).toBe('bytes');
    expect((await fetch(listed.results[1]!.thumbnail_url)).status).toBe(200);
    await expectError(await call('GET', `/v1/videos/${titled}/segments`, KEY_B), 404, 'not_found_error');
  });

  it('pictures a segment by its middle keyframe when no segment thumbnails were asked for', async () => {
    const path = await makeTitledVideo({
      seconds: 8,
      width: 320,
      height: 180,
      captions: [{ text: 'PLAIN', fromSeconds: 1, toSeconds: 6 }],
    });
    const id = await uploadAndIndex(path, { video_name: 'no thumbnails' });
    const listed = (await (await call('GET', `/v1/videos/${id}/segments`)).json()) as {
      results: Array<{ thumbnail_url: string; keyframes: Array<{ url: string }> }>;
    };
    const [segment] = listed.results;
    const middle = segment!.keyframes[Math.floor(segment!.keyframes.length / 2)]!;
    const picture = Buffer.from(await (await fetch(segment!.thumbnail_url)).arrayBuffer());
    expect(picture.equals(Buffer.from(await (await fetch(middle.url)).arrayBuffer()))).toBe(true);
  }, 150_000);

  it('refuses picture URLs that are unsigned, tampered with or expired, and 404s pictures that do not exist', async () => {
    const [top] = (await search({ query: 'quartz falcon' })).results;
    const url = new URL(top!.thumbnail_url);
    await expectError(await fetch(`${ocular.url}${url.pathname}`), 403, 'permission_error');
    const otherSeq = url.pathname.replace(/\/segments\/(\d+)\//, (_, seq: string) => `/segments/${Number(seq) + 1}/`);
    await expectError(await fetch(`${ocular.url}${otherSeq}${url.search}`), 403, 'permission_error');
    const keyframePath = `/v1/videos/${titled}/keyframes/keyframe-000000.jpg`;
    await expectError(await fetch(`${ocular.url}${keyframePath}${url.search}`), 403, 'permission_error');

    // URLs signed with the server's own key: an expired one is refused like the video's; a missing picture is 404.
    const signer = createUrlSigner({ secret: readFileSync(join(ocular.dataDir, SIGNING_KEY_FILE)) });
    const past = new Date(Date.now() - 60_000);
    const future = new Date(Date.now() + 60_000);
    await expectError(await fetch(ocular.url + signer.sign(url.pathname, past)), 403, 'permission_error');
    await expectError(await fetch(ocular.url + signer.sign(keyframePath, past)), 403, 'permission_error');
    expect((await fetch(ocular.url + signer.sign(keyframePath, future))).status).toBe(200);
    await expectError(await fetch(ocular.url + signer.sign(`/v1/videos/${titled}/segments/999/thumbnail`, future)), 404, 'not_found_error');
    await expectError(
      await fetch(ocular.url + signer.sign(`/v1/videos/${titled}/keyframes/keyframe-999999.jpg`, future)),
      404,
      'not_found_error',
    );
    await expectError(
      await fetch(ocular.url + signer.sign(`/v1/videos/${randomUUID()}/segments/0/thumbnail`, future)),
      404,
      'not_found_error',
    );
  });
});

describe('ranges, filters and paging', () => {
  it('merges neighbouring matching segments of a video into one range', async () => {
    const id = await insertVideo(KEY_A, [
      { ocr: 'intro' },
      { ocr: 'ZEPHYR COMET' },
      { ocr: 'ZEPHYR COMET again' },
      { ocr: 'nothing here' },
      { ocr: 'ZEPHYR COMET' },
      { ocr: 'outro' },
    ]);
    const found = await search({ query: 'zephyr comet', video_ids: [id] });
    expect(found.total_results).toBe(2);
    const ranges = found.results.map((hit) => [hit.start_timestamp, hit.end_timestamp]).sort((a, b) => a[0]! - b[0]!);
    expect(ranges).toEqual([
      [5, 15],
      [20, 25],
    ]);
    const merged = found.results.find((hit) => hit.start_timestamp === 5)!;
    expect(merged.video_chunk_id).toBe(`${id}:1-2`);
    expect(merged.plain_text_caption).toBe('On-screen text: ZEPHYR COMET On-screen text: ZEPHYR COMET again');
    expect(merged.s3_presigned_url).toMatch(/#t=5\.000,15\.000$/);
  });

  it('filters by video, group and absolute time, and pages through the ranges', async () => {
    const group = (await (await call('POST', '/v1/videos/groups', KEY_A, { name: 'filters' })).json()) as { group_id: string };
    const spaced = Array.from({ length: 12 }, (_, index) => ({ ocr: index % 2 === 0 ? 'NEBULA HARBOR' : 'filler' }));
    const inGroup = await insertVideo(KEY_A, spaced, { groupId: group.group_id, startTimestamp: '2025-04-12T10:00:00Z' });
    const later = await insertVideo(KEY_A, spaced, { startTimestamp: '2025-04-12T12:00:00+02:00' });
    const untimed = await insertVideo(KEY_A, spaced);

    const all = await search({ query: 'nebula harbor', max_results: 100 });
    expect(all.total_results).toBe(18);
    expect(new Set(all.results.map((hit) => hit.video_id))).toEqual(new Set([inGroup, later, untimed]));
    const scores = all.results.map((hit) => hit.score);
    expect(scores).toEqual([...scores].sort((a, b) => b - a));

    expect((await search({ query: 'nebula harbor' })).results).toHaveLength(10); // the default max_results
    const pages = [];
    for (let offset = 0; offset < 18; offset += 5) {
      const page = await search({ query: 'nebula harbor', max_results: 5, offset });
      expect(page.total_results).toBe(18);
      pages.push(...page.results.map((hit) => hit.video_chunk_id));
    }
    expect(pages).toEqual(all.results.map((hit) => hit.video_chunk_id));
    expect((await search({ query: 'nebula harbor', limit: 3 })).results).toHaveLength(3);
    expect((await search({ query: 'nebula harbor', offset: 18 })).results).toEqual([]);

    const byVideo = await search({ query: 'nebula harbor', video_ids: [later, randomUUID()], max_results: 100 });
    expect(new Set(byVideo.results.map((hit) => hit.video_id))).toEqual(new Set([later]));
    expect(byVideo.total_results).toBe(6);
    const byGroup = await search({ query: 'nebula harbor', group_ids: [group.group_id], max_results: 100 });
    expect(new Set(byGroup.results.map((hit) => hit.video_id))).toEqual(new Set([inGroup]));
    const empty = await search({ query: 'nebula harbor', video_ids: [], group_ids: null, max_results: 100 });
    expect(empty.total_results).toBe(18);

    // inGroup starts 10:00Z, `later` 10:00Z too (12:00+02:00); segments of 5 s, matches at 0-5, 10-15, ... 50-55.
    const window = await search({
      query: 'nebula harbor',
      start_time: '2025-04-12T10:00:12Z',
      end_time: '2025-04-12T10:00:21Z',
      max_results: 100,
    });
    expect(window.results.map((hit) => [hit.video_id, hit.start_timestamp]).sort()).toEqual(
      [
        [inGroup, 10],
        [inGroup, 20],
        [later, 10],
        [later, 20],
      ].sort(),
    );
    // Untimed videos have no absolute time: a time filter leaves them out.
    const after = await search({ query: 'nebula harbor', start_time: '2025-04-12T10:00:50', max_results: 100 });
    expect(after.results.map((hit) => hit.start_timestamp)).toEqual([50, 50]);
    expect((await search({ query: 'nebula harbor', end_time: '2025-04-12' })).results).toEqual([]);
  });

  it('leaves out results under the threshold', async () => {
    const id = await insertVideo(KEY_A, [{ ocr: 'SAFFRON KITE' }, { ocr: '' }, { ocr: 'SAFFRON only' }, { ocr: '' }, { ocr: 'KITE only' }]);
    const all = await search({ query: 'saffron kite', video_ids: [id] });
    expect(all.results).toHaveLength(3);
    expect(all.results[0]).toMatchObject({ start_timestamp: 0, score: 1 });
    expect(all.results[1]!.score).toBeLessThan(0.6);
    const strict = await search({ query: 'saffron kite', video_ids: [id], threshold: 0.9 });
    expect(strict.results.map((hit) => hit.start_timestamp)).toEqual([0]);
    expect(strict.total_results).toBe(1);
    expect((await search({ query: 'saffron kite', video_ids: [id], threshold: 0 })).results).toHaveLength(3);
    // A misspelt query matches less than completely, so a strict threshold drops it.
    const typo = await search({ query: 'safron kite', video_ids: [id] });
    expect(typo.results[0]!.start_timestamp).toBe(0);
    expect(typo.results[0]!.score).toBeLessThan(1);
    expect((await search({ query: 'safron kite', video_ids: [id], threshold: 1 })).results).toEqual([]);
  });
});

describe('owner isolation', () => {
  it('never returns another owner’s segments, whatever the filters name', async () => {
    const mine = await insertVideo(KEY_A, [{ ocr: 'OBSIDIAN PELICAN' }]);
    const theirs = await insertVideo(KEY_B, [{ ocr: 'OBSIDIAN PELICAN' }]);
    expect((await search({ query: 'obsidian pelican' }, KEY_A)).results.map((hit) => hit.video_id)).toEqual([mine]);
    expect((await search({ query: 'obsidian pelican' }, KEY_B)).results.map((hit) => hit.video_id)).toEqual([theirs]);
    expect((await search({ query: 'obsidan pelican' }, KEY_B)).results.map((hit) => hit.video_id)).toEqual([theirs]);
    expect((await search({ query: 'obsidian pelican', video_ids: [mine] }, KEY_B)).results).toEqual([]);
    const group = (await (await call('POST', '/v1/videos/groups', KEY_A, { name: 'a-only' })).json()) as { group_id: string };
    await expectError(
      await call('POST', '/v1/videos/search', KEY_B, { query: 'obsidian', group_ids: [group.group_id] }),
      404,
      'not_found_error',
    );
    await expectError(
      await call('POST', '/v1/videos/search', KEY_A, { query: 'obsidian', group_ids: ['default', 'nope'] }),
      404,
      'not_found_error',
    );
    expect((await search({ query: 'obsidian pelican', group_ids: ['default'] }, KEY_B)).results.map((hit) => hit.video_id)).toEqual([
      theirs,
    ]);
    await expectError(
      await fetch(`${ocular.url}/v1/videos/search`, { method: 'POST', body: '{"query":"x"}' }),
      401,
      'authentication_error',
    );
  });
});

describe('bad input', () => {
  it.each([
    ['no query', {}],
    ['an empty query', { query: '' }],
    ['a blank query', { query: '   ' }],
    ['a query over 2,000 characters', { query: 'a'.repeat(2_001) }],
    ['a query that is not a string', { query: 42 }],
    ['max_results 0', { query: 'x', max_results: 0 }],
    ['max_results 101', { query: 'x', max_results: 101 }],
    ['a fractional max_results', { query: 'x', max_results: 2.5 }],
    ['max_results as a string', { query: 'x', max_results: '10' }],
    ['limit 0', { query: 'x', limit: 0 }],
    ['max_results and limit', { query: 'x', max_results: 5, limit: 5 }],
    ['threshold under 0', { query: 'x', threshold: -0.1 }],
    ['threshold over 1', { query: 'x', threshold: 1.5 }],
    ['threshold as a string', { query: 'x', threshold: '0.5' }],
    ['a negative offset', { query: 'x', offset: -1 }],
    ['video_ids that is not a list', { query: 'x', video_ids: 'abc' }],
    ['a video id that is not a string', { query: 'x', video_ids: [1] }],
    ['group_ids that is not a list', { query: 'x', group_ids: 'default' }],
    ['a start_time that is not a date', { query: 'x', start_time: 'yesterday' }],
    ['start_time after end_time', { query: 'x', start_time: '2025-04-12T10:00:00Z', end_time: '2025-04-12T09:00:00Z' }],
    ['an unknown field', { query: 'x', top_k: 3 }],
    ['a body that is not an object', ['x']],
  ])('answers 400 for %s', async (_, body) => {
    await expectError(await call('POST', '/v1/videos/search', KEY_A, body), 400, 'validation_error');
  });

  it('answers 400 for a body that is not JSON', async () => {
    await expectError(await call('POST', '/v1/videos/search', KEY_A, '{"query":'), 400, 'validation_error');
  });

  it('answers a query of only punctuation with no results', async () => {
    expect(await search({ query: '?!' })).toMatchObject({ results: [], total_results: 0 });
  });
});
