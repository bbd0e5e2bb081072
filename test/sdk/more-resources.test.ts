// The SDK's clips, conversations, assets and speech resources against a real Ocular, with a fake model upstream.
import { readFile } from 'node:fs/promises';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { APITimeoutError, NotFoundError, Ocular, OcularError } from '../../src/sdk/index.ts';
import { environmentKeyOwner } from '../../src/store/api-keys.ts';
import { openDatabase } from '../../src/store/database.ts';
import { VideoStore } from '../../src/store/video-store.ts';
import { sendJson, startFakeUpstream, type FakeUpstream } from '../helpers/fake-upstream.ts';
import { insertIndexedVideo } from '../helpers/library-fixtures.ts';
import { makeAudio, removeMediaFixtures } from '../helpers/media-fixtures.ts';
import { startOcular, type TestOcular } from '../helpers/ocular.ts';
import { completion } from '../helpers/openai-upstream.ts';

let upstream: FakeUpstream;
let ocular: TestOcular;
let client: Ocular;

beforeAll(async () => {
  upstream = await startFakeUpstream((request, response) => {
    if (request.url.endsWith('/audio/transcriptions')) {
      return sendJson(response, 200, {
        text: 'Hello there.',
        language: 'english',
        segments: [{ start: 0, end: 1, text: ' Hello there.' }],
      });
    }
    sendJson(response, 200, completion('A red square.'));
  });
  ocular = await startOcular({
    models: [{ id: 'flash', provider: 'openai-compatible', baseUrl: `${upstream.url}/v1`, model: 'm', maxRetries: 0 }],
    transcriber: { provider: 'openai-compatible', baseUrl: `${upstream.url}/v1`, model: 'whisper-1', maxRetries: 0 },
  });
  client = new Ocular({ apiKey: ocular.key, baseURL: ocular.url, maxRetries: 0 });
}, 60_000);

afterAll(async () => {
  await ocular?.close();
  await upstream?.close();
  removeMediaFixtures();
});

describe('SDK: assets and conversations', () => {
  it('uploads an asset, talks about it in a conversation, and reads the conversation back', async () => {
    const png = await sharp({ create: { width: 32, height: 32, channels: 3, background: { r: 220, g: 20, b: 20 } } })
      .png()
      .toBuffer();
    const asset = await client.assets.upload({
      file: new Blob([new Uint8Array(png)], { type: 'image/png' }),
      fileName: 'red.png',
      contentType: 'image/png',
    });
    // Normalised by the media pipeline (a picture is kept as JPEG or PNG), its size kept.
    expect(asset).toMatchObject({ mime_type: expect.stringMatching(/^image\//), width: 32, height: 32 });
    expect((await client.assets.get(asset.key)).key).toBe(asset.key);

    const created = await client.conversations.create({ title: 'Pictures' });
    expect(created).toMatchObject({ uuid: expect.any(String), title: 'Pictures' });
    const turn = await client.conversations.send({ prompt: 'What is in the picture?', imageList: [asset.key] });
    expect(turn.conversationId).toEqual(expect.any(String));
    expect(JSON.stringify(turn)).toContain('A red square.');
    const conversation = await client.conversations.get(turn.conversationId);
    expect(conversation.messages.length).toBeGreaterThanOrEqual(2);
    expect((await client.conversations.list()).conversations.map((item) => item.uuid)).toContain(turn.conversationId);
    expect(JSON.stringify(await client.conversations.export(turn.conversationId))).toContain('What is in the picture?');
    await client.conversations.delete(turn.conversationId);
    await expect(client.conversations.get(turn.conversationId)).rejects.toBeInstanceOf(NotFoundError);
    await expect(client.conversations.send({ prompt: 'hi', imageList: ['no-such-asset'] })).rejects.toBeInstanceOf(OcularError);
  });
});

describe('SDK: speech', () => {
  it('transcribes with timestamps', async () => {
    const wav = await readFile(await makeAudio({ format: 'wav', seconds: 1 }));
    const result = await client.speech.transcribe({ audio_url: `data:audio/wav;base64,${wav.toString('base64')}` });
    expect(result).toMatchObject({
      transcript: 'Hello there.',
      transcript_translation_with_timestamp: [{ start: 0, end: 1, transcript: 'Hello there.' }],
    });
  });
});

describe('SDK: clips', () => {
  it('creates, reads, lists, waits for and deletes a clip job', async () => {
    const db = openDatabase(ocular.dataDir);
    let video: string;
    try {
      video = insertIndexedVideo(new VideoStore(db), environmentKeyOwner(ocular.key), [{ ocrText: 'GOAL' }, { ocrText: '' }]);
    } finally {
      db.close();
    }
    const clip = await client.clips.create({ video_ids: [video], prompt: 'the goal', generation_config: { max_duration_seconds: 5 } });
    expect(clip).toMatchObject({ prompt: 'the goal' });
    expect((await client.clips.get(clip.id)).id).toBe(clip.id);
    expect((await client.clips.list()).results.map((item) => item.id)).toContain(clip.id);
    // Waiting is bounded: the fixture video has no file to cut from, so the job does not complete in time.
    const seen: string[] = [];
    await expect(
      client.clips.waitUntilDone(clip.id, { interval: 100, timeout: 1_500, onProgress: (current) => seen.push(current.status) }),
    ).rejects.toBeInstanceOf(APITimeoutError);
    expect(seen.length).toBeGreaterThan(3);
    expect(seen).not.toContain('completed');
    await client.clips.delete(clip.id);
    await expect(client.clips.get(clip.id)).rejects.toBeInstanceOf(NotFoundError);
  });
});
