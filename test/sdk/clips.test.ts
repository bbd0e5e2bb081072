// The SDK's clips calls against a real Ocular: a generated video uploaded through the SDK (not indexed), its index
// rows written straight into the database (what the clip job reads), the clip rendered for real by ffmpeg.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  APIUserAbortError,
  BadRequestError,
  ClipGenerationError,
  NotFoundError,
  Ocular,
  type ClipProgressEvent,
} from '../../src/sdk/index.ts';
import { VideoStore } from '../../src/store/video-store.ts';
import { makeVideo, removeMediaFixtures } from '../helpers/media-fixtures.ts';
import { startOcular, type TestOcular } from '../helpers/ocular.ts';

const KEY_A = 'ocu_sdk_clips_a_0123456789abcd';
const KEY_B = 'ocu_sdk_clips_b_0123456789abcd';

let ocular: TestOcular;
let client: Ocular;
let other: Ocular;
let videoId: string;

/** Uploads a 12 s video with `index: false`, then writes three 4 s segments and marks it indexed. */
async function indexedVideo(texts: readonly string[]): Promise<string> {
  const video = await client.videos.upload({ file: await makeVideo({ seconds: 12 }), index: false });
  await ocular.withDatabase(async (database) => {
    const store = new VideoStore(database);
    for (const [seq, text] of texts.entries()) {
      await store.saveSegment({
        videoId: video.video_id,
        seq,
        startSeconds: seq * 4,
        endSeconds: seq * 4 + 4,
        keyframes: [],
        ocrText: text,
        objects: [],
        labels: [],
        transcript: '',
        speech: [],
        hasSpeech: null,
        caption: `On-screen text: ${text}`,
        thumbnail: null,
      });
    }
    await store.updateVideo(video.video_id, { status: 'indexed', stage: 'done', progress: 1 });
  });
  return video.video_id;
}

beforeAll(async () => {
  ocular = await startOcular({}, { envApiKeys: [KEY_A, KEY_B] });
  client = new Ocular({ apiKey: KEY_A, baseURL: ocular.url, maxRetries: 0 });
  other = new Ocular({ apiKey: KEY_B, baseURL: ocular.url, maxRetries: 0 });
  videoId = await indexedVideo(['welcome intro', 'red balloon launch', 'closing credits']);
}, 60_000);

afterAll(async () => {
  await ocular?.close();
  removeMediaFixtures();
});

describe('client.clips', () => {
  it('creates a clip, follows its events to completion, then gets, lists and deletes it', { timeout: 60_000 }, async () => {
    const created = await client.clips.create({
      video_ids: [videoId],
      prompt: 'red balloon',
      generation_config: { min_duration_seconds: 2, max_duration_seconds: 3 },
    });
    expect(['queued', 'processing']).toContain(created.status); // a worker may have taken it already
    const events: ClipProgressEvent[] = [];
    const done = await client.clips.waitUntilDone(created.id, { onProgress: (event) => events.push(event), timeout: 50_000 });
    expect(done.status).toBe('completed');
    expect(done.output).toHaveLength(1);
    const [output] = done.output;
    expect(output!.video_id).toBe(videoId);
    expect(output!.end - output!.start).toBeGreaterThanOrEqual(2);
    expect(output!.end - output!.start).toBeLessThanOrEqual(3);
    const rendered = await fetch(output!.url);
    expect(rendered.status).toBe(200);
    expect((await rendered.arrayBuffer()).byteLength).toBeGreaterThan(1000);
    expect(events.at(-1)).toMatchObject({ id: created.id, status: 'completed', progress: 1, percent: 100 });

    expect((await client.clips.get(created.id)).output[0]!.start).toBe(output!.start);
    const page = await client.clips.list({ limit: 5 });
    expect(page.results.map((clip) => clip.id)).toContain(created.id);
    expect(page).toMatchObject({ limit: 5, offset: 0 });
    expect(page.total).toBeGreaterThanOrEqual(1);
    expect((await other.clips.list()).results.map((clip) => clip.id)).not.toContain(created.id);

    expect(await client.clips.delete(created.id)).toMatchObject({ id: created.id, deleted: true });
    await expect(client.clips.get(created.id)).rejects.toBeInstanceOf(NotFoundError);
  });

  it('rejects waitUntilDone with ClipGenerationError when the clip fails', { timeout: 30_000 }, async () => {
    // Only 3 s of source left after source_start_time, and at least 5 s asked: nothing can be cut.
    const created = await client.clips.create({
      video_ids: [videoId],
      prompt: 'red balloon',
      generation_config: { min_duration_seconds: 5, max_duration_seconds: 6, source_start_time: 9, source_end_time: 12 },
    });
    const failure = await client.clips.waitUntilDone(created.id, { timeout: 20_000 }).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(ClipGenerationError);
    expect((failure as ClipGenerationError).type).toBe('clip_error');
    expect((await client.clips.get(created.id)).status).toBe('failed');
  });

  it("answers typed errors: bad params, unknown and other owners' ids, an aborted wait", async () => {
    const bad = await client.clips.create({ prompt: 'x' }).catch((error: unknown) => error);
    expect(bad).toBeInstanceOf(BadRequestError);
    expect((bad as BadRequestError).type).toBe('validation_error');
    await expect(
      client.clips.create({ video_ids: [videoId], prompt: 'x', generation_config: { num_generations: 9 } }),
    ).rejects.toBeInstanceOf(BadRequestError);
    await expect(client.clips.get('clip_unknown')).rejects.toBeInstanceOf(NotFoundError);
    await expect(client.clips.waitUntilDone('clip_unknown')).rejects.toBeInstanceOf(NotFoundError);
    await expect(client.clips.delete('clip_unknown')).rejects.toBeInstanceOf(NotFoundError);
    await expect(other.clips.create({ video_ids: [videoId], prompt: 'red balloon' })).rejects.toBeInstanceOf(NotFoundError);

    const created = await client.clips.create({ video_ids: [videoId], prompt: 'closing credits' });
    await expect(other.clips.get(created.id)).rejects.toBeInstanceOf(NotFoundError);
    await expect(other.clips.delete(created.id)).rejects.toBeInstanceOf(NotFoundError);
    const controller = new AbortController();
    controller.abort();
    await expect(client.clips.waitUntilDone(created.id, { signal: controller.signal })).rejects.toBeInstanceOf(APIUserAbortError);
    await client.clips.waitUntilDone(created.id, { timeout: 30_000 }).catch(() => undefined);
  }, 40_000);
});
