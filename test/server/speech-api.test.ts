// The Speech API (/v1/transcription_or_translation) and OpenAI's audio routes, against local upstreams over real
// HTTP: a transcriber, a chat model that translates and a text-to-speech server.
import { createReadStream, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readFile } from 'node:fs/promises';
import OpenAI from 'openai';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { sendJson, startFakeUpstream, type FakeUpstream } from '../helpers/fake-upstream.ts';
import { garbage, makeAudio, makeVideo, removeMediaFixtures } from '../helpers/media-fixtures.ts';
import { startOcular, type TestOcular } from '../helpers/ocular.ts';
import { completion, startOpenAiUpstream } from '../helpers/openai-upstream.ts';
import { buildTinyWhisperModel } from '../helpers/ggml-whisper-writer.ts';

const SEGMENTS = [
  { start: 0, end: 1.25, text: ' Good morning.' },
  { start: 1.25, end: 2, text: ' The train leaves at nine.' },
];
const TRANSCRIPT = { text: 'Good morning. The train leaves at nine.', language: 'english', segments: SEGMENTS };

/** A valid PCM WAV of `samples` silent 16-bit mono samples at 24 kHz, as a TTS server sends. */
function silentWav(samples: number): Buffer {
  const header = Buffer.alloc(44);
  header.write('RIFF', 0, 'latin1');
  header.writeUInt32LE(36 + samples * 2, 4);
  header.write('WAVEfmt ', 8, 'latin1');
  header.writeUInt32LE(16, 16);
  header.writeUInt16LE(1, 20);
  header.writeUInt16LE(1, 22);
  header.writeUInt32LE(24_000, 24);
  header.writeUInt32LE(48_000, 28);
  header.writeUInt16LE(2, 32);
  header.writeUInt16LE(16, 34);
  header.write('data', 36, 'latin1');
  header.writeUInt32LE(samples * 2, 40);
  return Buffer.concat([header, Buffer.alloc(samples * 2)]);
}

let chatModel: Awaited<ReturnType<typeof startOpenAiUpstream>>;
let speechUpstream: FakeUpstream;
let ocular: TestOcular;
let bare: TestOcular;
let audioDataUrl: string;
let audioPath: string;

const post = (server: TestOcular, body: unknown) => server.post('/v1/transcription_or_translation', body);

async function expectError(response: Response, status: number, type: string): Promise<void> {
  const body = (await response.json()) as { error: { type: string } };
  expect({ status: response.status, type: body.error.type }).toEqual({ status, type });
}

/** Answers translation requests with the segments "translated" (prefixed with the language's name). */
function translateAs(prefix: string): void {
  chatModel.behave((request, response) => {
    const body = request.body as { messages: Array<{ role: string; content: string }> };
    const texts = JSON.parse(body.messages.at(-1)!.content) as string[];
    sendJson(response, 200, completion(`Here you go:\n${JSON.stringify(texts.map((text) => `${prefix}: ${text}`))}`));
  });
}

beforeAll(async () => {
  chatModel = await startOpenAiUpstream();
  speechUpstream = await startFakeUpstream((request, response) => {
    if (request.url.endsWith('/audio/transcriptions')) return sendJson(response, 200, TRANSCRIPT);
    if (request.url.endsWith('/audio/speech')) {
      response.writeHead(200, { 'content-type': 'audio/wav' });
      return void response.end(silentWav(2_400));
    }
    sendJson(response, 404, { error: { message: 'no such route' } });
  });
  const models = [{ id: 'translator', provider: 'openai-compatible', baseUrl: `${chatModel.url}/v1`, model: 'm', maxRetries: 0 }];
  ocular = await startOcular({
    models,
    transcriber: { provider: 'openai-compatible', baseUrl: `${speechUpstream.url}/v1`, model: 'whisper-1', maxRetries: 0 },
    textToSpeech: { provider: 'openai-compatible', baseUrl: `${speechUpstream.url}/v1`, model: 'tts-1', voice: 'nova', maxRetries: 0 },
  });
  bare = await startOcular({ models, textToSpeech: { provider: 'none' } });
  audioPath = await makeAudio({ format: 'wav', seconds: 2 });
  audioDataUrl = `data:audio/wav;base64,${(await readFile(audioPath)).toString('base64')}`;
}, 60_000);

afterAll(async () => {
  await Promise.all([ocular?.close(), bare?.close(), chatModel?.close(), speechUpstream?.close()]);
  removeMediaFixtures();
});

beforeEach(() => {
  chatModel.requests.length = 0;
  speechUpstream.requests.length = 0;
});

describe('POST /v1/transcription_or_translation', () => {
  it('transcribes with timestamps, sending the transcriber 16 kHz mono WAV', async () => {
    const response = await post(ocular, { audio_url: audioDataUrl, sampling_rate: 44_100 });
    expect(response.status).toBe(200);
    const body = (await response.json()) as Record<string, unknown>;
    expect(body).toMatchObject({
      transcript: TRANSCRIPT.text,
      transcript_translation_with_timestamp: [
        { start: 0, end: 1.25, transcript: 'Good morning.' },
        { start: 1.25, end: 2, transcript: 'The train leaves at nine.' },
      ],
      language: 'english',
    });
    expect(body.duration).toBeCloseTo(2, 1);
    expect(body).not.toHaveProperty('translation');
    expect(body).not.toHaveProperty('audio_base64');
    const sent = speechUpstream.requests.find((request) => request.url.endsWith('/audio/transcriptions'))!;
    const form = String(sent.body);
    expect(form).toContain('WAVE');
    expect(form).toContain('whisper-1');
    expect(chatModel.requests).toHaveLength(0);
  });

  it('translates each segment through the chat model, keeping the times', async () => {
    translateAs('FR');
    const response = await post(ocular, { audio_url: audioDataUrl, target_language: 'French' });
    expect(response.status).toBe(200);
    const body = (await response.json()) as Record<string, unknown>;
    expect(body.translation).toBe('FR: Good morning. FR: The train leaves at nine.');
    expect(body.transcript_translation_with_timestamp).toEqual([
      { start: 0, end: 1.25, transcript: 'FR: Good morning.' },
      { start: 1.25, end: 2, transcript: 'FR: The train leaves at nine.' },
    ]);
    const sent = chatModel.requests[0]!.body as { model: string; temperature: number; messages: Array<{ role: string; content: string }> };
    expect(sent.messages[0]!.content).toContain('French');
    expect(JSON.parse(sent.messages.at(-1)!.content)).toEqual(['Good morning.', 'The train leaves at nine.']);
    expect(sent.temperature).toBe(0);
  });

  it('asks the model once more when its answer is not the array, then gives up with 502', async () => {
    let calls = 0;
    chatModel.behave((request, response) => {
      calls += 1;
      const texts = JSON.parse((request.body as { messages: Array<{ content: string }> }).messages.at(-1)!.content) as string[];
      sendJson(response, 200, completion(calls === 1 ? 'Bonjour! (I could not do JSON)' : JSON.stringify(texts.map(() => 'ok'))));
    });
    expect((await post(ocular, { audio_url: audioDataUrl, target_language: 'es' })).status).toBe(200);
    expect(calls).toBe(2);

    chatModel.behave((_request, response) => sendJson(response, 200, completion('["only one"]')));
    await expectError(await post(ocular, { audio_url: audioDataUrl, target_language: 'german' }), 502, 'upstream_error');
  });

  it('speaks the translation through the text-to-speech backend', async () => {
    translateAs('JA');
    const response = await post(ocular, { audio_url: audioDataUrl, target_language: 'japanese', return_translation_audio: true });
    expect(response.status).toBe(200);
    const body = (await response.json()) as { audio_base64: string; translation: string };
    const wav = Buffer.from(body.audio_base64, 'base64');
    expect(wav.subarray(0, 4).toString('latin1')).toBe('RIFF');
    expect(wav.length).toBe(44 + 4_800);
    const spoken = speechUpstream.requests.find((request) => request.url.endsWith('/audio/speech'))!.body;
    expect(spoken).toEqual({ model: 'tts-1', input: body.translation, voice: 'nova', response_format: 'wav' });
  });

  it.skipIf(!existsSync('/usr/bin/espeak-ng'))('speaks with espeak-ng when it is installed (textToSpeech auto)', async () => {
    const local = await startOcular({
      models: [{ id: 'translator', provider: 'openai-compatible', baseUrl: `${chatModel.url}/v1`, model: 'm', maxRetries: 0 }],
      transcriber: { provider: 'openai-compatible', baseUrl: `${speechUpstream.url}/v1`, model: 'whisper-1', maxRetries: 0 },
    });
    try {
      translateAs('DE');
      const response = await post(local, { audio_url: audioDataUrl, target_language: 'german', return_translation_audio: true });
      expect(response.status).toBe(200);
      const wav = Buffer.from(((await response.json()) as { audio_base64: string }).audio_base64, 'base64');
      expect(wav.subarray(8, 12).toString('latin1')).toBe('WAVE');
      // Real speech: the declared data size matches the bytes, and there is more than a second of it at 22.05 kHz.
      expect(wav.readUInt32LE(40)).toBe(wav.length - 44);
      expect(wav.length - 44).toBeGreaterThan(22_050 * 2);
    } finally {
      await local.close();
    }
  });

  it('refuses bad requests with 4xx', async () => {
    await expectError(await post(ocular, {}), 400, 'validation_error');
    await expectError(await post(ocular, { audio_url: audioDataUrl, target_language: 'klingon' }), 400, 'validation_error');
    await expectError(await post(ocular, { audio_url: audioDataUrl, sampling_rate: 12 }), 400, 'validation_error');
    await expectError(await post(ocular, { audio_url: audioDataUrl, surprise: 1 }), 400, 'validation_error');
    await expectError(await post(ocular, { audio_url: audioDataUrl, return_translation_audio: true }), 400, 'validation_error');
    await expectError(await post(ocular, '{"audio_url":'), 400, 'validation_error');
    const png = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==', 'base64');
    await expectError(await post(ocular, { audio_url: `data:audio/wav;base64,${png.toString('base64')}` }), 415, 'unsupported_media_type');
    const noise = await readFile(await garbage(4_096, '.wav'));
    await expectError(
      await post(ocular, { audio_url: `data:audio/wav;base64,${noise.toString('base64')}` }),
      415,
      'unsupported_media_type',
    );
    const silentVideo = await readFile(await makeVideo({ seconds: 1 }));
    const video = await post(ocular, { audio_url: `data:video/mp4;base64,${silentVideo.toString('base64')}` });
    expect(video.status).toBeGreaterThanOrEqual(400);
    expect(video.status).toBeLessThan(500);
    const privateUrl = await post(ocular, { audio_url: 'http://10.0.0.7/speech.wav' });
    expect([400, 403]).toContain(privateUrl.status);
    expect(speechUpstream.requests.filter((request) => request.url.endsWith('/audio/transcriptions'))).toHaveLength(0);
  });

  it('says how to configure a transcriber, or speech, when there is none', async () => {
    await expectError(await post(bare, { audio_url: audioDataUrl }), 400, 'validation_error');
    await expectError(
      await post(ocular, { audio_url: audioDataUrl, target_language: 'french', return_translation_audio: true, model: 'nope' }),
      404,
      'not_found_error',
    );
  });
});

describe('with the embedded whisper.cpp transcriber', () => {
  it('transcribes with a generated whisper model, then translates its timed segments', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ocular-speech-whisper-'));
    const modelPath = join(dir, 'ggml-tiny-random.bin');
    writeFileSync(modelPath, buildTinyWhisperModel({ seed: 1 }));
    const local = await startOcular({
      models: [{ id: 'translator', provider: 'openai-compatible', baseUrl: `${chatModel.url}/v1`, model: 'm', maxRetries: 0 }],
      transcriber: { provider: 'whisper', modelPath, threads: 2 },
      textToSpeech: { provider: 'none' },
    });
    try {
      translateAs('IT');
      const longer = await readFile(await makeAudio({ format: 'wav', seconds: 6, sampleRate: 16_000, channels: 1 }));
      const response = await post(local, { audio_url: `data:audio/wav;base64,${longer.toString('base64')}`, target_language: 'italian' });
      const body = (await response.json()) as {
        transcript: string;
        duration: number;
        language?: string;
        translation: string;
        transcript_translation_with_timestamp: Array<{ start: number; end: number; transcript: string }>;
      };
      expect(response.status, JSON.stringify(body)).toBe(200);
      expect(body.duration).toBeCloseTo(6, 1);
      expect(typeof body.transcript).toBe('string');
      // Random weights say nonsense, but whisper.cpp still times it: segments in order, inside the audio.
      let previous = 0;
      for (const segment of body.transcript_translation_with_timestamp) {
        expect(segment.start).toBeGreaterThanOrEqual(previous);
        expect(segment.end).toBeGreaterThanOrEqual(segment.start);
        expect(segment.end).toBeLessThanOrEqual(6.01);
        expect(segment.transcript.startsWith('IT: ')).toBe(true);
        previous = segment.start;
      }
      expect(body.transcript_translation_with_timestamp.length).toBeGreaterThan(0);
      const sent = chatModel.requests.at(-1)!.body as { messages: Array<{ content: string }> };
      expect((JSON.parse(sent.messages.at(-1)!.content) as string[]).length).toBe(body.transcript_translation_with_timestamp.length);
    } finally {
      await local.close();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});

describe('OpenAI audio routes, through the openai SDK', () => {
  const client = () => new OpenAI({ apiKey: ocular.key, baseURL: `${ocular.url}/openai/v1`, maxRetries: 0 });

  it('transcribes in each response format', async () => {
    const json = await client().audio.transcriptions.create({ file: createReadStream(audioPath), model: 'whisper-1' });
    expect(json.text).toBe(TRANSCRIPT.text);
    const srt = await client().audio.transcriptions.create({
      file: createReadStream(audioPath),
      model: 'whisper-1',
      response_format: 'srt',
    });
    expect(srt).toBe('1\n00:00:00,000 --> 00:00:01,250\nGood morning.\n\n2\n00:00:01,250 --> 00:00:02,000\nThe train leaves at nine.\n');
    const vtt = await client().audio.transcriptions.create({
      file: createReadStream(audioPath),
      model: 'whisper-1',
      response_format: 'vtt',
    });
    expect(vtt.startsWith('WEBVTT\n\n00:00:00.000 --> 00:00:01.250\nGood morning.')).toBe(true);
    const verbose = await client().audio.transcriptions.create({
      file: createReadStream(audioPath),
      model: 'whisper-1',
      response_format: 'verbose_json',
      timestamp_granularities: ['segment'],
    });
    expect(verbose.segments?.map((segment) => [segment.start, segment.end])).toEqual([
      [0, 1.25],
      [1.25, 2],
    ]);
    expect(verbose.duration).toBeCloseTo(2, 1);
  });

  it('translates into English', async () => {
    translateAs('EN');
    const translation = await client().audio.translations.create({ file: createReadStream(audioPath), model: 'whisper-1' });
    expect(translation.text).toBe('EN: Good morning. EN: The train leaves at nine.');
    expect((chatModel.requests[0]!.body as { messages: Array<{ content: string }> }).messages[0]!.content).toContain('English');
  });

  it('refuses a form without a file, or with unknown fields', async () => {
    const form = new FormData();
    form.set('model', 'whisper-1');
    const missing = await fetch(`${ocular.url}/v1/audio/transcriptions`, {
      method: 'POST',
      headers: { 'x-api-key': ocular.key },
      body: form,
    });
    await expectError(missing, 400, 'validation_error');
    const extra = new FormData();
    extra.set('model', 'whisper-1');
    extra.set('stream', 'true');
    extra.set('file', new Blob([await readFile(audioPath)]), 'a.wav');
    const unknown = await fetch(`${ocular.url}/v1/audio/transcriptions`, {
      method: 'POST',
      headers: { 'x-api-key': ocular.key },
      body: extra,
    });
    expect(unknown.status).toBe(400);
    const json = await fetch(`${ocular.url}/v1/audio/transcriptions`, { method: 'POST', headers: ocular.headers, body: '{}' });
    expect(json.status).toBe(415);
  });
});
