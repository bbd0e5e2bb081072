// client.qa.chatStream and client.speech.transcribe against a real Ocular whose default model is a fake
// OpenAI-compatible upstream over HTTP; the QA video's index rows are inserted straight into the database.
import type { ServerResponse } from 'node:http';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { APIUserAbortError, BadRequestError, ConflictError, NotFoundError, Ocular, QaChatStream } from '../../src/sdk/index.ts';
import { environmentKeyOwner } from '../../src/store/api-keys.ts';
import { VideoStore } from '../../src/store/video-store.ts';
import { sendJson } from '../helpers/fake-upstream.ts';
import { insertIndexedVideo } from '../helpers/library-fixtures.ts';
import { startOcular, TEST_KEY, type TestOcular } from '../helpers/ocular.ts';
import { completion, startOpenAiUpstream, streamCompletion } from '../helpers/openai-upstream.ts';

const KEY_B = 'ocu_sdk_qa_owner_b_0123456789ab';

let upstream: Awaited<ReturnType<typeof startOpenAiUpstream>>;
let ocular: TestOcular;
let client: Ocular;
let other: Ocular;
let videoId: string;
let deltas: string[] = [];
let delayMs = 0;
let omitEnd = false;
let lastStream: ServerResponse | undefined;

beforeAll(async () => {
  upstream = await startOpenAiUpstream();
  upstream.behave(async (request, response) => {
    const body = request.body as { stream?: boolean };
    if (body.stream) {
      lastStream = response;
      return streamCompletion(response, deltas, { delayMs, omitEnd });
    }
    return sendJson(response, 200, completion('It launches at [00:12].'));
  });
  ocular = await startOcular(
    {
      defaultModel: 'flash',
      models: [{ id: 'flash', provider: 'openai-compatible', baseUrl: `${upstream.url}/v1`, model: 'upstream', maxRetries: 0 }],
      qa: { maxWaitSeconds: 1 },
    },
    { envApiKeys: [TEST_KEY, KEY_B] },
  );
  client = new Ocular({ apiKey: TEST_KEY, baseURL: ocular.url, maxRetries: 0 });
  other = new Ocular({ apiKey: KEY_B, baseURL: ocular.url, maxRetries: 0 });
  videoId = await ocular.withDatabase((database) =>
    insertIndexedVideo(new VideoStore(database), environmentKeyOwner(TEST_KEY), [
      { caption: 'A presenter in a studio.' },
      { caption: 'A map of the coast.' },
      { caption: 'A rocket on a launch pad.', ocrText: 'QUARTZ FALCON' },
    ]),
  );
}, 30_000);

afterAll(async () => {
  await ocular?.close();
  await upstream?.close();
});

beforeEach(() => {
  deltas = ['The rocket ', 'launches ', 'at [00:12].'];
  delayMs = 0;
  omitEnd = false;
});

const question = (text: string) => ({ video_id: videoId, messages: [{ role: 'user' as const, content: text }] });

describe('client.qa.chatStream', () => {
  it('yields the new text of each event, then resolves the final answer with its status', async () => {
    const stream = await client.qa.chatStream(question('When does the rocket launch?'));
    expect(stream).toBeInstanceOf(QaChatStream);
    const pieces: string[] = [];
    for await (const delta of stream) pieces.push(delta);
    expect(pieces.length).toBeGreaterThan(1);
    expect(pieces.join('')).toBe('The rocket launches at [00:12].');
    expect(await stream.finalResponse()).toEqual({ chat_response: 'The rocket launches at [00:12].', status: 'success' });
  });

  it('the non-streaming chat answers the same question in one response', async () => {
    expect(await client.qa.chat(question('When?'))).toEqual({ chat_response: 'It launches at [00:12].', status: 'success' });
  });

  it('abort() ends the iteration quietly and cancels the upstream stream; finalResponse rejects', async () => {
    deltas = Array.from({ length: 200 }, (_, index) => `word${index} `);
    delayMs = 20;
    const stream = await client.qa.chatStream(question('Tell me everything.'));
    let seen = 0;
    let closed: Promise<void> | undefined;
    for await (const _delta of stream) {
      if (++seen === 2) {
        const upstreamResponse = lastStream!;
        closed = new Promise<void>((resolve) => (upstreamResponse.destroyed ? resolve() : upstreamResponse.once('close', resolve)));
        stream.abort();
      }
    }
    expect(seen).toBe(2);
    await expect(stream.finalResponse()).rejects.toBeInstanceOf(APIUserAbortError);
    await closed;
    expect(lastStream!.writableFinished).toBe(false);
  });

  it('an upstream that breaks off mid-answer: the error event rejects the iteration with a typed error', async () => {
    omitEnd = true;
    const stream = await client.qa.chatStream(question('When?'));
    const pieces: string[] = [];
    const failure = await (async () => {
      for await (const delta of stream) pieces.push(delta);
    })().catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(Error);
    expect((failure as { type?: string }).type).toMatch(/_error$/);
    await expect(stream.finalResponse()).rejects.toBe(failure);
  });

  it("answers typed errors before streaming: unknown and other owners' videos, a video not indexed, bad params", async () => {
    await expect(client.qa.chatStream({ ...question('x'), video_id: 'nope' })).rejects.toBeInstanceOf(NotFoundError);
    await expect(other.qa.chatStream(question('x'))).rejects.toBeInstanceOf(NotFoundError);
    await expect(client.qa.chatStream({ video_id: videoId, messages: [] })).rejects.toBeInstanceOf(BadRequestError);
    const pending = await ocular.withDatabase((database) =>
      insertIndexedVideo(new VideoStore(database), environmentKeyOwner(TEST_KEY), [{}], { status: 'indexing' }),
    );
    await expect(client.qa.chatStream({ ...question('x'), video_id: pending })).rejects.toBeInstanceOf(ConflictError);
  });
});

describe('client.speech.transcribe', () => {
  it('answers typed 400s for a bad audio_url, an unknown target language and out-of-range numbers', async () => {
    for (const params of [
      { audio_url: 'ftp://example.com/a.wav' },
      { audio_url: 'data:audio/wav;base64,AAAA', target_language: 'klingon' },
      { audio_url: 'data:audio/wav;base64,AAAA', sampling_rate: 10 },
    ]) {
      const failure = await client.speech.transcribe(params).catch((error: unknown) => error);
      expect(failure).toBeInstanceOf(BadRequestError);
      expect((failure as BadRequestError).status).toBe(400);
    }
  });

  it('refuses bytes that are not audio with a typed 4xx', async () => {
    const failure = await client.speech
      .transcribe({ audio_url: `data:audio/wav;base64,${Buffer.from('not audio at all').toString('base64')}` })
      .catch((error: unknown) => error);
    expect((failure as { status?: number }).status).toBeGreaterThanOrEqual(400);
    expect((failure as { status?: number }).status).toBeLessThan(500);
  });
});
