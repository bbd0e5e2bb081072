import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createParser } from 'eventsource-parser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeVideo, removeMediaFixtures } from '../helpers/media-fixtures.ts';
import { startOcular, type TestOcular } from '../helpers/ocular.ts';

interface WireVideo {
  video_id: string;
  indexing_status: string;
}

interface ReceivedEvent {
  event: string | undefined;
  data: { video_id: string; indexing_status: string; indexing_progress: number };
}

let ocular: TestOcular;

beforeAll(async () => {
  // No analyzers: these tests are about the event stream, and indexing stays a scan of a few seconds of video.
  ocular = await startOcular({
    indexing: { ocr: { enabled: false }, objects: { enabled: false }, vad: { enabled: false }, labels: { enabled: false } },
  });
}, 60_000);

afterAll(async () => {
  await ocular?.close();
  removeMediaFixtures();
});

async function upload(path: string, index: boolean): Promise<WireVideo> {
  const body = new FormData();
  body.set('video_name', 'clip');
  body.set('index', String(index));
  body.set('file', new Blob([new Uint8Array(await readFile(path))], { type: 'video/mp4' }), 'clip.mp4');
  const response = await fetch(`${ocular.url}/v1/videos/upload`, { method: 'POST', headers: { 'x-api-key': ocular.key }, body });
  expect(response.status).toBe(200);
  return (await response.json()) as WireVideo;
}

async function waitForStatus(id: string, statuses: readonly string[]): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    const video = (await (await ocular.get(`/v1/videos/${id}`)).json()) as WireVideo;
    if (statuses.includes(video.indexing_status)) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`video ${id} did not reach ${statuses.join(' or ')}`);
}

/** The whole event stream; fails the test if the server does not end it within a few seconds. */
async function readEvents(id: string): Promise<ReceivedEvent[]> {
  const response = await fetch(`${ocular.url}/v1/videos/${id}/events`, {
    headers: { 'x-api-key': ocular.key },
    signal: AbortSignal.timeout(5_000),
  });
  expect(response.status).toBe(200);
  expect(response.headers.get('content-type')).toMatch(/^text\/event-stream/);
  const events: ReceivedEvent[] = [];
  const parser = createParser({ onEvent: (event) => events.push({ event: event.event, data: JSON.parse(event.data) }) });
  parser.feed(await response.text());
  return events;
}

describe('GET /v1/videos/{id}/events on a video that is not being indexed', () => {
  it('sends the current state and `done` at once for an indexed video, and ends', async () => {
    const video = await upload(await makeVideo({ seconds: 4, width: 160, height: 120 }), true);
    await waitForStatus(video.video_id, ['indexed']);

    const events = await readEvents(video.video_id);

    expect(events.map((event) => event.event)).toEqual(['progress', 'done']);
    for (const event of events)
      expect(event.data).toMatchObject({ video_id: video.video_id, indexing_status: 'indexed', indexing_progress: 1 });
  }, 90_000);

  it('sends `done` with the failed state for a video whose indexing failed', async () => {
    // The header and index survive, so the upload probes; the frames are gone, so the scan fails.
    const good = await readFile(await makeVideo({ seconds: 8, width: 160, height: 120 }));
    const broken = Buffer.from(good);
    broken.fill(0, Math.floor(good.length * 0.05), Math.floor(good.length * 0.95));
    const path = join(ocular.dataDir, 'broken.mp4');
    await writeFile(path, broken);
    const video = await upload(path, true);
    await waitForStatus(video.video_id, ['failed']);

    const events = await readEvents(video.video_id);

    expect(events.map((event) => event.event)).toEqual(['progress', 'done']);
    expect(events.at(-1)!.data).toMatchObject({ video_id: video.video_id, indexing_status: 'failed' });
  }, 90_000);

  it('sends `done` for a video uploaded without indexing', async () => {
    const video = await upload(await makeVideo({ seconds: 4, width: 160, height: 120 }), false);

    const events = await readEvents(video.video_id);

    expect(events.map((event) => event.event)).toEqual(['progress', 'done']);
    expect(events.at(-1)!.data).toMatchObject({ indexing_status: 'pending' });
  });
});
