// Clip generation over HTTP: real uploads, index rows written straight into the database (what the clip job
// reads), real ffmpeg renders checked with ffprobe.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClipStore } from '../../src/store/clip-store.ts';
import { sql } from 'kysely';
import { VideoStore } from '../../src/store/video-store.ts';
import { ffmpegContext, fixturePath, makeVideo, removeMediaFixtures, type VideoFixture } from '../helpers/media-fixtures.ts';
import { completion, startOpenAiUpstream } from '../helpers/openai-upstream.ts';
import { readSseData, startOcular, type TestOcular } from '../helpers/ocular.ts';

const run = promisify(execFile);
const KEY_A = 'ocu_clips_owner_a_0123456789ab';
const KEY_B = 'ocu_clips_owner_b_0123456789ab';

interface WireOutput {
  url: string;
  start: number;
  end: number;
  title: string;
  duration: number;
  video_id: string;
  moments: Array<{ video_id: string; start: number; end: number }>;
}

interface WireClip {
  id: string;
  status: 'queued' | 'processing' | 'completed' | 'failed';
  progress: number;
  stage: string | null;
  error_message?: string;
  output: WireOutput[];
}

let ocular: TestOcular;

function call(method: string, path: string, key = KEY_A, body?: unknown): Promise<Response> {
  return fetch(ocular.url + path, {
    method,
    headers: { 'x-api-key': key, 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
  });
}

async function expectError(response: Response, status: number, type: string): Promise<{ param?: string }> {
  const body = (await response.json()) as { error: { type: string; message: string; param?: string } };
  expect({ status: response.status, type: body.error.type }).toEqual({ status, type });
  expect(body.error.message).not.toBe('');
  return body.error;
}

interface FixtureSegment {
  seconds: number;
  text?: string;
  transcript?: string;
}

/**
 * Uploads a generated video (not indexed), then writes its segments into the database and marks it indexed:
 * the clip job reads only those rows and the file.
 */
async function addIndexedVideo(key: string, video: VideoFixture, segments: readonly FixtureSegment[]): Promise<string> {
  const form = new FormData();
  form.set('video_name', 'fixture');
  form.set('index', 'false');
  const path = await makeVideo(video);
  form.set('file', new Blob([new Uint8Array(await readFile(path))], { type: 'video/mp4' }), 'fixture.mp4');
  const response = await fetch(`${ocular.url}/v1/videos/upload`, { method: 'POST', headers: { 'x-api-key': key }, body: form });
  expect(response.status).toBe(200);
  const { video_id: id } = (await response.json()) as { video_id: string };
  await ocular.withDatabase(async (database) => {
    const store = new VideoStore(database);
    let start = 0;
    for (const [seq, segment] of segments.entries()) {
      await store.saveSegment({
        videoId: id,
        seq,
        startSeconds: start,
        endSeconds: start + segment.seconds,
        keyframes: [],
        ocrText: segment.text ?? '',
        objects: [],
        labels: [],
        transcript: segment.transcript ?? '',
        speech: [],
        hasSpeech: null,
        caption: segment.text === undefined ? '' : `On-screen text: ${segment.text}`,
        thumbnail: null,
      });
      start += segment.seconds;
    }
    await store.updateVideo(id, { status: 'indexed', stage: 'done', progress: 1 });
  });
  return id;
}

async function createClip(body: Record<string, unknown>, key = KEY_A): Promise<WireClip> {
  const response = await call('POST', '/v1/clips', key, body);
  const text = await response.text();
  expect(response.status, text).toBe(200);
  return JSON.parse(text) as WireClip;
}

async function finished(id: string, key = KEY_A, timeoutMs = 60_000): Promise<WireClip> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const clip = (await (await call('GET', `/v1/clips/${id}`, key)).json()) as WireClip;
    if (clip.status === 'completed' || clip.status === 'failed') return clip;
    if (Date.now() > deadline) throw new Error(`clip ${id} did not finish: ${JSON.stringify(clip)}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Downloads an output through its signed URL and reads it with ffprobe. */
async function probeOutput(output: WireOutput): Promise<{ width: number; height: number; duration: number; audio: boolean; path: string }> {
  const response = await fetch(output.url);
  expect(response.status).toBe(200);
  expect(response.headers.get('content-type')).toBe('video/mp4');
  const path = fixturePath('.mp4');
  await writeFile(path, new Uint8Array(await response.arrayBuffer()));
  const { stdout } = await run(ffmpegContext.binaries.ffprobe, [
    '-v',
    'error',
    '-print_format',
    'json',
    '-show_format',
    '-show_streams',
    path,
  ]);
  const probe = JSON.parse(stdout) as {
    format: { duration: string };
    streams: Array<{ codec_type: string; width?: number; height?: number }>;
  };
  const video = probe.streams.find((stream) => stream.codec_type === 'video')!;
  return {
    width: video.width!,
    height: video.height!,
    duration: Number(probe.format.duration),
    audio: probe.streams.some((stream) => stream.codec_type === 'audio'),
    path,
  };
}

/** The bottom quarter of the frame at `seconds`, as 64x16 gray bytes: where subtitles are drawn. */
async function bottomStrip(path: string, seconds: number): Promise<Buffer> {
  const { stdout } = await run(
    ffmpegContext.binaries.ffmpeg,
    [
      '-v',
      'error',
      '-ss',
      String(seconds),
      '-i',
      path,
      '-frames:v',
      '1',
      '-vf',
      'crop=iw:ih/4:0:ih*3/4,scale=64:16,format=gray',
      '-f',
      'rawvideo',
      '-',
    ],
    { encoding: 'buffer' },
  );
  return stdout;
}

function clipRow(id: string) {
  return ocular.withDatabase((database) => new ClipStore(database).getById(id));
}

let upstream: Awaited<ReturnType<typeof startOpenAiUpstream>>;

beforeAll(async () => {
  upstream = await startOpenAiUpstream();
  ocular = await startOcular({}, { envApiKeys: [KEY_A, KEY_B] });
});

afterAll(async () => {
  await ocular?.close();
  await upstream?.close();
  removeMediaFixtures();
});

const BALLOON_SEGMENTS: FixtureSegment[] = [
  { seconds: 4, text: 'welcome intro' },
  { seconds: 4, text: 'red balloon launch', transcript: 'here the red balloon rises into the sky over the field' },
  { seconds: 4, text: 'closing credits' },
];

describe('POST /v1/clips', () => {
  it('cuts a moment the search finds, within the durations, as a stream copy when nothing else is asked', async () => {
    const videoId = await addIndexedVideo(KEY_A, { seconds: 12, withAudio: true }, BALLOON_SEGMENTS);
    const created = await createClip({
      video_ids: [videoId],
      prompt: 'red balloon',
      generation_config: { min_duration_seconds: 2, max_duration_seconds: 3 },
    });
    expect(['queued', 'processing']).toContain(created.status); // a worker may have taken it already
    const clip = await finished(created.id);
    expect(clip.status, clip.error_message).toBe('completed');
    expect(clip.progress).toBe(1);
    expect(clip.output).toHaveLength(1);
    const [output] = clip.output;
    expect(output!.video_id).toBe(videoId);
    expect(output!.start).toBeGreaterThanOrEqual(3); // snapped back onto a keyframe at most 1 s before the segment
    expect(output!.end).toBeLessThanOrEqual(8);
    expect(output!.end - output!.start).toBeGreaterThanOrEqual(2);
    expect(output!.end - output!.start).toBeLessThanOrEqual(3);
    expect(output!.title).toContain('red balloon');
    const probe = await probeOutput(output!);
    expect(probe).toMatchObject({ width: 320, height: 240, audio: true });
    expect(probe.duration).toBeGreaterThan(output!.end - output!.start - 0.15);
    expect(probe.duration).toBeLessThan(output!.end - output!.start + 0.15);
    // The fixture has a keyframe every 2 s: the cut starts on one and nothing else was asked.
    expect((await clipRow(clip.id))?.outputs[0]?.mode).toBe('copy');
  });

  it('renders each aspect ratio at the asked height, cropped or padded, with several generations', { timeout: 60_000 }, async () => {
    const videoId = await addIndexedVideo(KEY_A, { seconds: 12 }, [
      { seconds: 4, text: 'kite one' },
      { seconds: 4, text: 'nothing here' },
      { seconds: 4, text: 'kite two' },
    ]);
    const portrait = await createClip({
      video_ids: [videoId],
      prompt: 'kite',
      generation_config: { num_generations: 2, min_duration_seconds: 1, max_duration_seconds: 2 },
      rendering_config: { aspect_ratio: '9:16', resolution: 320 },
    });
    const square = await createClip({
      video_ids: [videoId],
      prompt: 'kite',
      generation_config: { max_duration_seconds: 1.5 },
      rendering_config: { aspect_ratio: '1:1', resolution: 240, fit: 'pad' },
    });
    const wide = await createClip({
      video_ids: [videoId],
      prompt: 'kite',
      generation_config: { max_duration_seconds: 1.5 },
      rendering_config: { aspect_ratio: '16:9', resolution: 360 },
    });
    const done = await Promise.all([finished(portrait.id), finished(square.id), finished(wide.id)]);
    for (const clip of done) expect(clip.status, clip.error_message).toBe('completed');
    const [p, s, w] = done;
    expect(p!.output).toHaveLength(2);
    // Two different moments, none overlapping.
    const [first, second] = p!.output;
    expect(first!.end <= second!.start || second!.end <= first!.start).toBe(true);
    for (const output of p!.output) {
      const probe = await probeOutput(output);
      expect({ width: probe.width, height: probe.height }).toEqual({ width: 180, height: 320 });
      expect(probe.duration).toBeGreaterThan(0.9);
      expect(probe.duration).toBeLessThan(2.15);
    }
    const squareProbe = await probeOutput(s!.output[0]!);
    expect({ width: squareProbe.width, height: squareProbe.height }).toEqual({ width: 240, height: 240 });
    // Padded: the 4:3 picture leaves bars above and below (black rows at the very top).
    const top = (
      await run(
        ffmpegContext.binaries.ffmpeg,
        ['-v', 'error', '-i', squareProbe.path, '-frames:v', '1', '-vf', 'crop=iw:4:0:0,format=gray', '-f', 'rawvideo', '-'],
        { encoding: 'buffer' },
      )
    ).stdout;
    expect(Math.max(...top)).toBeLessThan(40);
    const wideProbe = await probeOutput(w!.output[0]!);
    expect({ width: wideProbe.width, height: wideProbe.height }).toEqual({ width: 640, height: 360 });
    expect((await clipRow(w!.id))?.outputs[0]?.mode).toBe('encode');
  });

  it('burns the transcript in as subtitles when asked', { timeout: 60_000 }, async () => {
    const videoId = await addIndexedVideo(KEY_A, { seconds: 8 }, [
      { seconds: 4, text: 'speech part', transcript: 'WIDE LETTERS SHOWN AS SUBTITLES HERE' },
      { seconds: 4, text: 'silent part' },
    ]);
    const body = (subtitles: boolean) => ({
      video_ids: [videoId],
      prompt: 'speech part',
      generation_config: { min_duration_seconds: 3, max_duration_seconds: 3 },
      rendering_config: { subtitles, resolution: 240 },
    });
    const [plain, subtitled] = await Promise.all([createClip(body(false)), createClip(body(true))]);
    const [a, b] = await Promise.all([finished(plain.id), finished(subtitled.id)]);
    expect(a.status, a.error_message).toBe('completed');
    expect(b.status, b.error_message).toBe('completed');
    expect(b.output[0]!.start).toBe(a.output[0]!.start);
    const [pa, pb] = [await probeOutput(a.output[0]!), await probeOutput(b.output[0]!)];
    expect({ width: pb.width, height: pb.height }).toEqual({ width: 320, height: 240 });
    expect(pb.duration).toBeCloseTo(3, 0);
    const [stripA, stripB] = [await bottomStrip(pa.path, 1), await bottomStrip(pb.path, 1)];
    let difference = 0;
    for (let index = 0; index < stripA.length; index++) difference += Math.abs(stripA[index]! - stripB[index]!);
    // The same frames but for the subtitle line.
    expect(difference / stripA.length).toBeGreaterThan(3);
  });

  it('joins moments into one compilation file as long as its pieces together', { timeout: 60_000 }, async () => {
    const videoId = await addIndexedVideo(KEY_A, { seconds: 16, withAudio: true }, [
      { seconds: 4, text: 'goal scored' },
      { seconds: 4, text: 'crowd' },
      { seconds: 4, text: 'another goal scored' },
      { seconds: 4, text: 'end' },
    ]);
    const created = await createClip({
      video_ids: [videoId],
      prompt: 'goal scored',
      generation_config: { template: 'compilation', min_duration_seconds: 6, max_duration_seconds: 7 },
      rendering_config: { aspect_ratio: '1:1', resolution: 240 },
    });
    const clip = await finished(created.id);
    expect(clip.status, clip.error_message).toBe('completed');
    expect(clip.output).toHaveLength(1);
    const [output] = clip.output;
    expect(output!.moments.length).toBeGreaterThanOrEqual(2);
    const total = output!.moments.reduce((sum, moment) => sum + moment.end - moment.start, 0);
    expect(total).toBeGreaterThanOrEqual(6 - 0.01);
    expect(total).toBeLessThanOrEqual(7 + 0.01);
    // In time order, not overlapping.
    for (let index = 1; index < output!.moments.length; index++) {
      expect(output!.moments[index]!.start).toBeGreaterThanOrEqual(output!.moments[index - 1]!.end);
    }
    const probe = await probeOutput(output!);
    expect({ width: probe.width, height: probe.height, audio: probe.audio }).toEqual({ width: 240, height: 240, audio: true });
    expect(Math.abs(probe.duration - total)).toBeLessThan(0.2);
  });

  it('compiles moments of two different videos into one file, silent when one has no sound', { timeout: 60_000 }, async () => {
    const small = await addIndexedVideo(KEY_A, { seconds: 8, withAudio: true }, [
      { seconds: 4, text: 'harbour boats' },
      { seconds: 4, text: 'street' },
    ]);
    const large = await addIndexedVideo(KEY_A, { seconds: 8, width: 640, height: 360, fps: 30 }, [
      { seconds: 4, text: 'market' },
      { seconds: 4, text: 'harbour boats at dusk' },
    ]);
    const clip = await finished(
      (
        await createClip({
          video_ids: [small, large],
          prompt: 'harbour boats',
          generation_config: { template: 'compilation', min_duration_seconds: 5, max_duration_seconds: 6 },
          rendering_config: { aspect_ratio: '16:9', resolution: 240 },
        })
      ).id,
    );
    expect(clip.status, clip.error_message).toBe('completed');
    const [output] = clip.output;
    expect(new Set(output!.moments.map((moment) => moment.video_id))).toEqual(new Set([small, large]));
    const total = output!.moments.reduce((sum, moment) => sum + moment.end - moment.start, 0);
    const probe = await probeOutput(output!);
    expect({ width: probe.width, height: probe.height, audio: probe.audio }).toEqual({ width: 426, height: 240, audio: false });
    expect(Math.abs(probe.duration - total)).toBeLessThan(0.2);
  });

  it('keeps to the source range', async () => {
    const videoId = await addIndexedVideo(KEY_A, { seconds: 12 }, BALLOON_SEGMENTS);
    const clip = await finished(
      (
        await createClip({
          video_ids: [videoId],
          prompt: 'red balloon',
          generation_config: { min_duration_seconds: 2, max_duration_seconds: 4, source_start_time: 6, source_end_time: 10 },
        })
      ).id,
    );
    expect(clip.status, clip.error_message).toBe('completed');
    expect(clip.output[0]!.start).toBeGreaterThanOrEqual(6);
    expect(clip.output[0]!.end).toBeLessThanOrEqual(10);

    const tooShort = await finished(
      (
        await createClip({
          video_ids: [videoId],
          prompt: 'red balloon',
          generation_config: { min_duration_seconds: 5, max_duration_seconds: 6, source_start_time: 9, source_end_time: 12 },
        })
      ).id,
    );
    expect(tooShort.status).toBe('failed');
    expect(tooShort.error_message).toBeTruthy();
    expect(tooShort.output).toEqual([]);
  });

  it('streams progress events until the clip is done', async () => {
    const videoId = await addIndexedVideo(KEY_A, { seconds: 8 }, BALLOON_SEGMENTS.slice(0, 2));
    const created = await createClip({
      video_ids: [videoId],
      prompt: 'balloon',
      rendering_config: { resolution: 240, aspect_ratio: '1:1' },
    });
    const events = (await readSseData(await call('GET', `/v1/clips/${created.id}/events`))).map(
      (data) => JSON.parse(data) as { status: string; progress: number },
    );
    expect(events.at(-1)).toMatchObject({ status: 'completed', progress: 1 });
    const progress = events.map((event) => event.progress);
    expect(progress).toEqual([...progress].sort((a, b) => a - b));
  });
});

describe('clip model', () => {
  it('lets the configured model pick and title the moment, and falls back to the search on a bad answer', { timeout: 60_000 }, async () => {
    const withModel = await startOcular(
      {
        models: [{ id: 'picker', provider: 'openai-compatible', baseUrl: `${upstream.url}/v1`, model: 'm' }],
        vision: { clipModel: 'picker' },
      },
      { envApiKeys: [KEY_A] },
    );
    const previous = ocular;
    ocular = withModel;
    try {
      const videoId = await addIndexedVideo(KEY_A, { seconds: 12 }, [
        { seconds: 4, text: 'dog runs' },
        { seconds: 4, text: 'cat sleeps' },
        { seconds: 4, text: 'dog barks' },
      ]);
      // The search ranks the dog segments; the model names the second candidate it was shown.
      upstream.behave((_request, response) => {
        response.writeHead(200, { 'content-type': 'application/json' });
        response.end(JSON.stringify(completion('Here you go: {"moments":[{"candidate":1,"title":"The dog barks"}]}')));
      });
      const picked = await finished(
        (await createClip({ video_ids: [videoId], prompt: 'dog', generation_config: { max_duration_seconds: 2 } })).id,
      );
      expect(picked.status, picked.error_message).toBe('completed');
      expect(picked.output[0]!.title).toBe('The dog barks');
      const asked = upstream.requests.at(-1)!.body as { messages: Array<{ content: unknown }> };
      expect(JSON.stringify(asked.messages)).toContain('dog');

      upstream.behave((_request, response) => {
        response.writeHead(200, { 'content-type': 'application/json' });
        response.end(JSON.stringify(completion('{"moments":[{"candidate":"first"}]}')));
      });
      const fallback = await finished(
        (await createClip({ video_ids: [videoId], prompt: 'dog', generation_config: { max_duration_seconds: 2 } })).id,
      );
      expect(fallback.status, fallback.error_message).toBe('completed');
      expect(fallback.output[0]!.title).toMatch(/dog/);
      expect(fallback.output[0]!.title).not.toBe('The dog barks');
    } finally {
      ocular = previous;
      await withModel.close();
    }
  });
});

describe('clip access and errors', () => {
  it('refuses bad bodies with clear 400s', async () => {
    const videoId = await addIndexedVideo(KEY_A, { seconds: 4 }, [{ seconds: 4, text: 'x' }]);
    const base = { video_ids: [videoId], prompt: 'x' };
    const bad: unknown[] = [
      '{not json',
      {},
      { video_ids: [videoId] },
      { ...base, prompt: '' },
      { ...base, prompt: 'x'.repeat(2001) },
      { prompt: 'x' },
      { ...base, video_ids: [] },
      { ...base, video_urls: ['https://example.com/a.mp4'] },
      { ...base, video_ids: 'abc' },
      { ...base, video_urls: undefined, video_ids: Array.from({ length: 11 }, () => videoId) },
      { prompt: 'x', video_urls: ['ftp://example.com/a.mp4'] },
      { ...base, unknown: 1 },
      { ...base, generation_config: { template: 'montage' } },
      { ...base, generation_config: { num_generations: 0 } },
      { ...base, generation_config: { num_generations: 4 } },
      { ...base, generation_config: { min_duration_seconds: 10, max_duration_seconds: 5 } },
      { ...base, generation_config: { max_duration_seconds: 601 } },
      { ...base, generation_config: { min_duration_seconds: -1 } },
      { ...base, generation_config: { source_start_time: 5, source_end_time: 5 } },
      { ...base, generation_config: { max_duration_seconds: '10' } },
      { ...base, rendering_config: { aspect_ratio: '4:3' } },
      { ...base, rendering_config: { resolution: 100 } },
      { ...base, rendering_config: { resolution: 2160 } },
      { ...base, rendering_config: { resolution: 720.5 } },
      { ...base, rendering_config: { subtitles: 'yes' } },
      { ...base, generation_config: { source_start_time: 4 } }, // at the end of the 4 s video
    ];
    for (const body of bad) await expectError(await call('POST', '/v1/clips', KEY_A, body), 400, 'validation_error');
  });

  it('answers 404 for unknown videos and clips, and never shows one owner another owner’s', async () => {
    const videoId = await addIndexedVideo(KEY_A, { seconds: 4 }, [{ seconds: 4, text: 'mine' }]);
    const missing = await expectError(
      await call('POST', '/v1/clips', KEY_A, { video_ids: [videoId, '00000000-0000-4000-8000-000000000000'], prompt: 'x' }),
      404,
      'not_found_error',
    );
    expect(missing.param).toBe('video_ids.1');
    await expectError(await call('POST', '/v1/clips', KEY_A, { video_ids: ['../../etc'], prompt: 'x' }), 404, 'not_found_error');
    // A video whose indexing failed cannot be clipped.
    const failedId = await addIndexedVideo(KEY_A, { seconds: 4 }, [{ seconds: 4, text: 'broken' }]);
    await ocular.withDatabase((database) =>
      new VideoStore(database).updateVideo(failedId, { status: 'failed', error: 'could not be decoded' }),
    );
    const conflict = await expectError(
      await call('POST', '/v1/clips', KEY_A, { video_ids: [failedId], prompt: 'x' }),
      409,
      'conflict_error',
    );
    expect(conflict.param).toBe('video_ids.0');
    // B may not cut A's video.
    await expectError(await call('POST', '/v1/clips', KEY_B, { video_ids: [videoId], prompt: 'mine' }), 404, 'not_found_error');

    const clip = await finished((await createClip({ video_ids: [videoId], prompt: 'mine' })).id);
    expect(clip.status, clip.error_message).toBe('completed');
    await expectError(await call('GET', `/v1/clips/${clip.id}`, KEY_B), 404, 'not_found_error');
    await expectError(await call('DELETE', `/v1/clips/${clip.id}`, KEY_B), 404, 'not_found_error');
    await expectError(await call('GET', `/v1/clips/${clip.id}/events`, KEY_B), 404, 'not_found_error');
    await expectError(await call('GET', '/v1/clips/not-a-uuid'), 404, 'not_found_error');
    const listB = (await (await call('GET', '/v1/clips', KEY_B)).json()) as { results: WireClip[]; total: number };
    expect(listB).toMatchObject({ results: [], total: 0 });
    expect((await call('GET', `/v1/clips/${clip.id}`)).status).toBe(200);
  });

  it('refuses video_urls on private addresses, as uploads by URL do', async () => {
    const error = await expectError(
      await call('POST', '/v1/clips', KEY_A, { video_urls: ['http://127.0.0.1:9/clip.mp4'], prompt: 'x' }),
      400,
      'validation_error',
    );
    expect(error.param).toBe('video_urls.0');
  });

  it('lists clips newest first, paginated', async () => {
    const videoId = await addIndexedVideo(KEY_B, { seconds: 4 }, [{ seconds: 4, text: 'paging' }]);
    const ids: string[] = [];
    for (let index = 0; index < 3; index++) ids.push((await createClip({ video_ids: [videoId], prompt: 'paging' }, KEY_B)).id);
    await Promise.all(ids.map((id) => finished(id, KEY_B)));
    const page = (await (await call('GET', '/v1/clips?limit=2&offset=1', KEY_B)).json()) as {
      results: WireClip[];
      total: number;
      limit: number;
      offset: number;
    };
    expect(page.total).toBe(3);
    expect(page.results.map((clip) => clip.id)).toEqual([ids[1], ids[0]]);
    await expectError(await call('GET', '/v1/clips?limit=0', KEY_B), 400, 'validation_error');
    await expectError(await call('GET', '/v1/clips?limit=101', KEY_B), 400, 'validation_error');
    await expectError(await call('GET', '/v1/clips?page=2', KEY_B), 400, 'validation_error');
  });

  it('serves outputs by signed URL only, with Range, and deletes them with the clip', async () => {
    const videoId = await addIndexedVideo(KEY_A, { seconds: 4 }, [{ seconds: 4, text: 'signed' }]);
    const clip = await finished((await createClip({ video_ids: [videoId], prompt: 'signed' })).id);
    expect(clip.status, clip.error_message).toBe('completed');
    const url = new URL(clip.output[0]!.url);
    const ranged = await fetch(url, { headers: { range: 'bytes=0-99' } });
    expect(ranged.status).toBe(206);
    expect(ranged.headers.get('content-range')).toMatch(/^bytes 0-99\/\d+$/);
    expect((await ranged.arrayBuffer()).byteLength).toBe(100);
    expect((await fetch(url, { method: 'HEAD' })).headers.get('accept-ranges')).toBe('bytes');
    const unsigned = new URL(url);
    unsigned.search = '';
    await expectError(await fetch(unsigned), 403, 'permission_error');
    const tampered = new URL(url);
    tampered.searchParams.set('signature', 'A'.repeat(43));
    await expectError(await fetch(tampered), 403, 'permission_error');

    const deleted = await call('DELETE', `/v1/clips/${clip.id}`);
    expect(deleted.status).toBe(200);
    expect(await deleted.json()).toEqual({ id: clip.id, deleted: true });
    await expectError(await call('GET', `/v1/clips/${clip.id}`), 404, 'not_found_error');
    await expectError(await fetch(url), 404, 'not_found_error');
    expect(existsSync(join(ocular.dataDir, 'clips', clip.id))).toBe(false);
    await expectError(await call('DELETE', `/v1/clips/${clip.id}`), 404, 'not_found_error');
  });

  it('cancels a render in progress when the clip is deleted, leaving no files', { timeout: 60_000 }, async () => {
    const videoId = await addIndexedVideo(KEY_A, { seconds: 60, width: 640, height: 360 }, [
      { seconds: 30, text: 'long take' },
      { seconds: 30, text: 'long take again' },
    ]);
    const created = await createClip({
      video_ids: [videoId],
      prompt: 'long take',
      generation_config: { template: 'compilation', min_duration_seconds: 50, max_duration_seconds: 60 },
      rendering_config: { resolution: 1080, aspect_ratio: '9:16', subtitles: true },
    });
    const deadline = Date.now() + 30_000;
    for (;;) {
      const clip = (await (await call('GET', `/v1/clips/${created.id}`)).json()) as WireClip;
      if (clip.stage === 'rendering') break;
      expect(clip.status).not.toBe('completed');
      if (Date.now() > deadline) throw new Error('the render did not start');
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const events = await call('GET', `/v1/clips/${created.id}/events`);
    expect(events.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const started = Date.now();
    expect((await call('DELETE', `/v1/clips/${created.id}`)).status).toBe(200);
    // The event stream ends, saying why.
    const last = JSON.parse((await readSseData(events)).at(-1)!) as { status: string; stage: string };
    expect(last).toMatchObject({ status: 'failed', stage: 'deleted' });
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(existsSync(join(ocular.dataDir, 'clips', created.id))).toBe(false);
    const { rows: jobs } = await ocular.withDatabase((database) =>
      sql<{ status: string }>`SELECT status FROM jobs WHERE key = ${`clip:${created.id}`}`.execute(database.db),
    );
    expect(jobs[0]?.status).toBe('cancelled');
  });

  it('fails a clip whose video was uploaded without indexing', async () => {
    const form = new FormData();
    form.set('video_name', 'unindexed');
    form.set('index', 'false');
    form.set('file', new Blob([new Uint8Array(await readFile(await makeVideo({ seconds: 4 })))], { type: 'video/mp4' }), 'u.mp4');
    const uploaded = (await (
      await fetch(`${ocular.url}/v1/videos/upload`, { method: 'POST', headers: { 'x-api-key': KEY_A }, body: form })
    ).json()) as { video_id: string };
    const clip = await finished((await createClip({ video_ids: [uploaded.video_id], prompt: 'x' })).id);
    expect(clip.status).toBe('failed');
    expect(clip.error_message).toBeTruthy();
  });
});

describe('clip limits', () => {
  it('answers 429 past the unfinished clips an owner may have, and deleting them frees the slots', { timeout: 30_000 }, async () => {
    const key = 'ocu_clips_owner_c_0123456789ab';
    const limited = await startOcular({}, { envApiKeys: [key] });
    const previous = ocular;
    ocular = limited;
    try {
      const videoId = await addIndexedVideo(key, { seconds: 4 }, [{ seconds: 4, text: 'wait' }]);
      // Still "indexing" with no job to finish it: every clip on it waits.
      await limited.withDatabase((database) => new VideoStore(database).updateVideo(videoId, { status: 'indexing' }));
      const ids: string[] = [];
      for (let index = 0; index < 16; index++) ids.push((await createClip({ video_ids: [videoId], prompt: 'wait' }, key)).id);
      const refused = await call('POST', '/v1/clips', key, { video_ids: [videoId], prompt: 'wait' });
      expect(refused.headers.get('retry-after')).toBe('30');
      await expectError(refused, 429, 'rate_limit_error');
      for (const id of ids) expect((await call('DELETE', `/v1/clips/${id}`, key)).status).toBe(200);
      expect((await call('POST', '/v1/clips', key, { video_ids: [videoId], prompt: 'wait' })).status).toBe(200);
    } finally {
      ocular = previous;
      await limited.close();
    }
  });
});
