import { readFile } from 'node:fs/promises';
import sharp from 'sharp';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { sendJson, startFakeUpstream, type FakeUpstream } from '../helpers/fake-upstream.ts';
import { garbage, makeVideo, removeMediaFixtures } from '../helpers/media-fixtures.ts';
import { startOcular, TEST_KEY, type TestOcular } from '../helpers/ocular.ts';
import { completion, startOpenAiUpstream } from '../helpers/openai-upstream.ts';

const VALID_TAGS = {
  Description: 'A colourful test pattern with a moving clock and a steady tone.',
  Violence: false,
  Profanity: false,
  AdultContent: false,
  Drugs: false,
  Alcohol: false,
  Gambling: false,
  Political: false,
  ExpectedCTR: 0.02,
  ViralityScore: 2,
  Keyword: ['test pattern', 'clock'],
  MoodTone: ['neutral'],
};

const TRANSCRIPT = { text: 'This is the calibration tone.', segments: [] };

let upstream: Awaited<ReturnType<typeof startOpenAiUpstream>>;
let transcriber: FakeUpstream;
let ocular: TestOcular;
/** The model's answers, in order; the last one repeats. */
let answers: string[] = [];
let video: Buffer;

interface UpstreamBody {
  model: string;
  messages: Array<{ role: string; content: string | Array<{ type: string; text?: string }> }>;
  response_format?: { type: string; json_schema: { name: string; schema: Record<string, unknown> } };
}

const bodies = (): UpstreamBody[] => upstream.requests.map((request) => request.body as UpstreamBody);

function tag(file: Buffer | undefined, fields: Record<string, string> = {}, path = '/qa/quicktag'): Promise<Response> {
  const form = new FormData();
  for (const [name, value] of Object.entries(fields)) form.set(name, value);
  if (file !== undefined) form.set('video', new Blob([new Uint8Array(file)], { type: 'video/mp4' }), 'clip.mp4');
  return fetch(ocular.url + path, { method: 'POST', headers: { 'x-api-key': TEST_KEY }, body: form });
}

async function expectError(response: Response, status: number, type: string): Promise<string> {
  const body = (await response.json()) as { error: { type: string; message: string } };
  expect({ status: response.status, type: body.error.type }).toEqual({ status, type });
  expect(body.error.message).not.toBe('');
  return body.error.message;
}

beforeAll(async () => {
  upstream = await startOpenAiUpstream();
  upstream.behave((_request, response) => sendJson(response, 200, completion(answers.length > 1 ? answers.shift()! : answers[0]!)));
  transcriber = await startFakeUpstream((_request, response) => sendJson(response, 200, TRANSCRIPT));
  video = await readFile(await makeVideo({ seconds: 3, width: 160, height: 120, withAudio: true }));
  ocular = await startOcular({
    models: [
      { id: 'vision', provider: 'openai-compatible', baseUrl: `${upstream.url}/v1`, model: 'vl', maxRetries: 0 },
      { id: 'text-only', provider: 'openai-compatible', baseUrl: `${upstream.url}/v1`, model: 'llm', capabilities: { image: false } },
    ],
    transcriber: { provider: 'openai-compatible', baseUrl: `${transcriber.url}/v1`, model: 'whisper-1' },
    indexing: { vad: { enabled: false }, labels: { enabled: false } },
    qa: { quicktagFrames: 3 },
  });
}, 30_000);

afterAll(async () => {
  await ocular?.close();
  await Promise.all([upstream?.close(), transcriber?.close()]);
  removeMediaFixtures();
});

beforeEach(() => {
  upstream.requests.length = 0;
  answers = [JSON.stringify(VALID_TAGS)];
});

describe('POST /qa/quicktag', () => {
  it('tags a short video with the default fields from sampled frames and the transcript, asking for structured output', async () => {
    const response = await tag(video);
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual(VALID_TAGS);
    const [body] = bodies();
    expect(bodies()).toHaveLength(1);
    expect(body!.response_format?.type).toBe('json_schema');
    expect(Object.keys((body!.response_format!.json_schema.schema as { properties: object }).properties)).toEqual(Object.keys(VALID_TAGS));
    const parts = body!.messages[0]!.content as Array<{ type: string; text?: string }>;
    expect(parts.filter((part) => part.type === 'image_url')).toHaveLength(3);
    expect(parts.map((part) => part.text ?? '').join('\n')).toContain('This is the calibration tone.');
  });

  it('is also served at /v1/qa/quicktag, and sends a model without image input text only', async () => {
    const response = await tag(video, { model: 'text-only' }, '/v1/qa/quicktag');
    expect(response.status).toBe(200);
    const [body] = bodies();
    expect(body!.model).toBe('llm');
    const content = body!.messages[0]!.content;
    expect(typeof content === 'string' || content.every((part) => part.type === 'text')).toBe(true);
  });

  it('retries once when the first answer is malformed, telling the model what was wrong', async () => {
    answers = ['```json\n{"Description": "cut off', '```json\n' + JSON.stringify(VALID_TAGS) + '\n```'];
    const response = await tag(video);
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual(VALID_TAGS);
    expect(bodies()).toHaveLength(2);
    const retry = bodies()[1]!.messages;
    expect(retry.map((message) => message.role)).toEqual(['user', 'assistant', 'user']);
    expect(retry[1]!.content).toBe('```json\n{"Description": "cut off');
  });

  it('retries an answer that is JSON but misses fields, then answers 502 saying what did not match', async () => {
    answers = [JSON.stringify({ ...VALID_TAGS, ViralityScore: 42, Violence: undefined })];
    const message = await expectError(await tag(video), 502, 'upstream_error');
    expect(bodies()).toHaveLength(2);
    expect(message).toContain('ViralityScore');
    expect(message).toContain('Violence');
  });

  it('validates against a schema sent by the client instead of the default one', async () => {
    const schema = {
      type: 'object',
      properties: { Sport: { type: 'string', enum: ['football', 'none'] }, Players: { type: 'integer', minimum: 0 } },
      required: ['Sport', 'Players'],
      additionalProperties: false,
    };
    answers = [JSON.stringify({ Sport: 'tennis', Players: 2 }), JSON.stringify({ Sport: 'none', Players: 0 })];
    const response = await tag(video, { schema: JSON.stringify(schema) });
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ Sport: 'none', Players: 0 });
    expect(bodies()[0]!.response_format!.json_schema.schema).toEqual(schema);
  });

  it('answers 400 for a video longer than 30 seconds, without calling the model', async () => {
    const long = await readFile(await makeVideo({ seconds: 31, width: 64, height: 48, fps: 5 }));
    await expectError(await tag(long), 400, 'validation_error');
    expect(bodies()).toHaveLength(0);
  });

  it('answers 415 for bytes that are not a video', async () => {
    const image = await sharp({ create: { width: 16, height: 16, channels: 3, background: '#808080' } })
      .png()
      .toBuffer();
    await expectError(await tag(image), 415, 'unsupported_media_type');
    const junk = await readFile(await garbage(4096));
    expect((await tag(junk)).status).toBeGreaterThanOrEqual(400);
    expect(bodies()).toHaveLength(0);
  });

  it.each([
    ['no video part', undefined, {}],
    ['an empty video', Buffer.alloc(0), {}],
    ['a schema that is not JSON', 'video', { schema: '{"type":' }],
    ['a schema that is not an object schema', 'video', { schema: '{"type":"string"}' }],
    ['a schema zod cannot validate', 'video', { schema: '{"type":"object","if":{"type":"object"},"then":{}}' }],
    ['an unknown field', 'video', { colour: 'blue' }],
    [
      'a schema with a regular expression',
      'video',
      { schema: '{"type":"object","properties":{"x":{"type":"string","pattern":"(a+)+$"}}}' },
    ],
    ['a schema that refers to itself only', 'video', { schema: '{"type":"object","$ref":"#"}' }],
    ['a schema nested too deep', 'video', { schema: '{"type":"object","properties":{"a":'.repeat(40) + '{}' + '}}'.repeat(40) }],
  ] as const)('answers 400 for %s', async (_, file, fields) => {
    const bytes = file === 'video' ? video : file;
    await expectError(await tag(bytes, fields as Record<string, string>), 400, 'validation_error');
    expect(bodies()).toHaveLength(0);
  });

  it('answers 401 without an API key, before reading the upload', async () => {
    const form = new FormData();
    form.set('video', new Blob([new Uint8Array(video)], { type: 'video/mp4' }), 'clip.mp4');
    await expectError(await fetch(`${ocular.url}/qa/quicktag`, { method: 'POST', body: form }), 401, 'authentication_error');
    expect(bodies()).toHaveLength(0);
  });

  it('answers 404 for an unknown model', async () => {
    await expectError(await tag(video, { model: 'nope' }), 404, 'not_found_error');
  });
});
