// The SDK's speech resource transcribing for real (the transcriber a fake OpenAI-compatible upstream over HTTP);
// test/sdk/qa-speech.test.ts covers its error paths.
import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Ocular } from '../../src/sdk/index.ts';
import { sendJson, startFakeUpstream, type FakeUpstream } from '../helpers/fake-upstream.ts';
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
