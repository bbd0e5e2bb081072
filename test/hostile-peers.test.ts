// Every outbound HTTP path pointed at a peer that misbehaves (test/helpers/hostile-peer.ts): a body and FIN sent
// at once while Ocular still reads (the undici #5360 crash), a reset mid-body, headers and then silence, an
// endless body, a status line that is not HTTP. Each request must end with a clear error (or, where the bytes
// are usable, succeed), within its configured deadline; the process keeps serving; nothing is left half-written.
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMediaFetcher } from '../src/media/fetch-media.ts';
import { downloadFile, ModelDownloadError } from '../src/models/download-file.ts';
import { OpenAiCompatibleTranscriber } from '../src/perception/speech/openai-compatible.ts';
import { isOcularError } from '../src/spec/errors.ts';
import { createWebhookHandler } from '../src/vision/webhooks.ts';
import { HOSTILE_BEHAVIOURS, startHostilePeer, type HostileBehaviour, type HostilePeer } from './helpers/hostile-peer.ts';
import { runJobOnce } from './helpers/library-fixtures.ts';
import { startOcular, type TestOcular } from './helpers/ocular.ts';
import { startOpenAiUpstream } from './helpers/openai-upstream.ts';

/** Every deadline in this file: a request that outlives it by much has hung. */
const TIMEOUT_MS = 1_500;
/** How long any one request may take in all (deadline plus teardown). */
const BOUND_MS = TIMEOUT_MS * 4;
/** What a hostile peer may earn: a refusal of the request (400, 413, 415), or an upstream failure (502, 504). */
const CLEAR_ERRORS = [400, 413, 415, 502, 504];

/** How a failed upstream call is reported: a broken answer (502), or one that stopped coming (504). */
const UPSTREAM_FAILURES = ['upstream_error', 'timeout_error'];

/** The behaviours after which the peer has sent a complete, well-framed body. */
const COMPLETE_BODY: ReadonlySet<HostileBehaviour> = new Set(['fin-length', 'fin-chunked', 'fin-eof']);

let peer: HostilePeer;
let upstream: Awaited<ReturnType<typeof startOpenAiUpstream>>;
let ocular: TestOcular;
/** Scratch files (media downloads) go under the OS temp dir: this worker's own, so leftovers can be counted. */
let tempDir: string;
const originalTmpdir = process.env.TMPDIR;

const PROVIDERS = {
  'openai-compatible': (base: string) => ({ provider: 'openai-compatible', baseUrl: `${base}v1`, model: 'm' }),
  anthropic: (base: string) => ({ provider: 'anthropic', baseUrl: `${base}v1`, model: 'm', apiKey: 'k' }),
  gemini: (base: string) => ({ provider: 'gemini', baseUrl: `${base}v1beta`, model: 'm', apiKey: 'k' }),
  reka: (base: string) => ({ provider: 'reka', baseUrl: `${base}v1`, model: 'm', apiKey: 'k' }),
} as const;

const modelId = (provider: string, behaviour: HostileBehaviour): string => `${provider}-${behaviour}`;

beforeAll(async () => {
  tempDir = mkdtempSync(join(tmpdir(), 'ocular-hostile-'));
  process.env.TMPDIR = tempDir;
  peer = await startHostilePeer({ maxHoldMs: 30_000 });
  upstream = await startOpenAiUpstream();
  const models = [
    {
      id: 'omni',
      provider: 'openai-compatible',
      baseUrl: `${upstream.url}/v1`,
      model: 'omni',
      capabilities: { image: true, video: true, audio: true, pdf: true },
    },
    ...Object.entries(PROVIDERS).flatMap(([provider, entry]) =>
      HOSTILE_BEHAVIOURS.map((behaviour) => ({
        id: modelId(provider, behaviour),
        ...entry(peer.url(behaviour)),
        timeoutMs: TIMEOUT_MS,
        maxRetries: 0,
      })),
    ),
  ];
  ocular = await startOcular({
    models,
    defaultModel: 'omni',
    media: { allowHosts: [peer.host], timeoutMs: TIMEOUT_MS, connectTimeoutMs: TIMEOUT_MS, maxBytes: 8 * 1024 * 1024 },
    limits: { maxMediaPerTurn: 8, maxUploadBytes: 8 * 1024 * 1024 },
  });
}, 30_000);

afterAll(async () => {
  await ocular?.close();
  await upstream?.close();
  await peer?.close();
  if (originalTmpdir === undefined) delete process.env.TMPDIR;
  else process.env.TMPDIR = originalTmpdir;
  rmSync(tempDir, { recursive: true, force: true });
});

/** Resolves to the settled outcome of `work`, failing the test if it takes longer than BOUND_MS. */
async function bounded<T>(work: Promise<T>): Promise<{ value?: T; error?: unknown; ms: number }> {
  const started = performance.now();
  let timer: NodeJS.Timeout | undefined;
  const hang = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`still running after ${BOUND_MS} ms`)), BOUND_MS);
  });
  try {
    return { value: await Promise.race([work, hang]), ms: performance.now() - started };
  } catch (error) {
    if (error instanceof Error && error.message.startsWith('still running')) throw error;
    return { error, ms: performance.now() - started };
  } finally {
    clearTimeout(timer);
  }
}

/** A non-2xx answer must carry the error envelope with a type and a message. */
async function expectClearError(response: Response): Promise<{ type: string; message: string }> {
  expect(CLEAR_ERRORS).toContain(response.status);
  const body = (await response.json()) as { error: { type: string; message: string } };
  expect(body.error.type).toEqual(expect.any(String));
  expect(body.error.message.length).toBeGreaterThan(0);
  return body.error;
}

async function expectStillServing(): Promise<void> {
  const response = await fetch(`${ocular.url}/healthz`);
  expect(response.status).toBe(200);
}

describe.each(HOSTILE_BEHAVIOURS)('a peer that answers %s', (behaviour) => {
  it('fails chat media parts (image, video, audio, PDF URLs) with a clear error and leaves no scratch file', async () => {
    const parts = ['image_url', 'video_url', 'audio_url', 'pdf_url'].map((type) => ({ type, [type]: peer.url(behaviour, `file-${type}`) }));
    const outcomes = await Promise.all(
      parts.map((part) =>
        bounded(ocular.post('/v1/chat', { messages: [{ role: 'user', content: [part, { type: 'text', text: 'What is it?' }] }] })),
      ),
    );
    for (const outcome of outcomes) {
      expect(outcome.error).toBeUndefined();
      // The peer's bytes are never a valid image, video, sound or document.
      const error = await expectClearError(outcome.value!);
      expect(error.type).not.toBe('internal_error');
    }
    await expectStillServing();
    expect(readdirSync(tempDir).filter((name) => name.startsWith('ocular-media-'))).toEqual([]);
  });

  it('fails a video_url upload with a clear error and keeps no video row or folder', async () => {
    const form = new FormData();
    form.set('video_name', `hostile ${behaviour}`);
    form.set('index', 'false');
    form.set('video_url', peer.url(behaviour, 'clip.mp4'));
    const outcome = await bounded(
      fetch(`${ocular.url}/v1/videos/upload`, { method: 'POST', headers: { 'x-api-key': ocular.key }, body: form }),
    );
    expect(outcome.error).toBeUndefined();
    await expectClearError(outcome.value!);
    const list = (await (await ocular.get('/v1/videos')).json()) as { total: number };
    expect(list.total).toBe(0);
    // Nothing but the (empty) folder uploads are received in.
    const videosDir = join(ocular.dataDir, 'videos');
    expect(readdirSync(videosDir).filter((name) => name !== '.incoming')).toEqual([]);
    expect(readdirSync(join(videosDir, '.incoming'))).toEqual([]);
    await expectStillServing();
  });

  it.each(Object.keys(PROVIDERS))('fails %s JSON and streamed calls with a clear error', async (provider) => {
    const model = modelId(provider, behaviour);
    const messages = [{ role: 'user', content: 'Hello' }];
    const [json, streamed] = await Promise.all([
      bounded(ocular.post('/v1/chat', { model, messages })),
      bounded(
        ocular.post('/v1/chat', { model, messages, stream: true }).then(async (response) => ({ response, text: await response.text() })),
      ),
    ]);
    expect(json.error).toBeUndefined();
    const error = await expectClearError(json.value!);
    expect(UPSTREAM_FAILURES).toContain(error.type);

    expect(streamed.error).toBeUndefined();
    const { response, text } = streamed.value!;
    if (response.status === 200) {
      // The stream had started: its error is the last event, and the stream is closed.
      expect(text).toMatch(/"error"/);
      expect(UPSTREAM_FAILURES.some((type) => text.includes(type))).toBe(true);
    } else {
      expect(CLEAR_ERRORS).toContain(response.status);
      expect(UPSTREAM_FAILURES).toContain((JSON.parse(text) as { error: { type: string } }).error.type);
    }
    await expectStillServing();
  });

  it('fails a webhook delivery (the job retries it) without hanging', async () => {
    const fetcher = createMediaFetcher({
      maxBytes: 1024 * 1024,
      connectTimeoutMs: TIMEOUT_MS,
      timeoutMs: TIMEOUT_MS,
      allowHosts: [peer.host],
    });
    try {
      const payload = { url: peer.url(behaviour, 'hook'), secret: 's', event: 'video.indexed', body: '{}' };
      const outcome = await bounded(runJobOnce(createWebhookHandler(fetcher), 'webhook.deliver', payload));
      // A receiver that answered 200 has the call, whatever it does with the rest of its answer; one whose
      // answer is not HTTP has not, and the job is tried again.
      if (behaviour === 'malformed') expect(outcome.error).toBeInstanceOf(Error);
      else expect(outcome.error).toBeUndefined();
    } finally {
      await fetcher.close();
    }
  });

  it('fails a model weight download, keeping no file under the final name', async () => {
    const dir = mkdtempSync(join(tempDir, 'models-'));
    const destination = join(dir, 'weights.onnx');
    // The body the `fin-*` behaviours send in full: those downloads verify and land.
    const body = await (await fetch(peer.url('fin-length', 'weights.onnx'))).arrayBuffer();
    const sha256 = createHash('sha256').update(Buffer.from(body)).digest('hex');
    const outcome = await bounded(
      downloadFile({
        url: peer.url(behaviour, 'weights.onnx'),
        destination,
        size: body.byteLength,
        sha256,
        maxResumes: 1,
        stallTimeoutMs: TIMEOUT_MS,
      }),
    );
    if (COMPLETE_BODY.has(behaviour)) {
      expect(outcome.error).toBeUndefined();
      expect(outcome.value!.sha256).toBe(sha256);
    } else {
      expect(outcome.error).toBeInstanceOf(ModelDownloadError);
      expect(existsSync(destination)).toBe(false);
    }
  });

  it('fails a transcription call with an upstream error', async () => {
    const transcriber = new OpenAiCompatibleTranscriber({
      provider: 'openai-compatible',
      baseUrl: peer.url(behaviour, 'v1'),
      model: 'whisper-1',
      timeoutMs: TIMEOUT_MS,
      maxRetries: 0,
    });
    try {
      const audio = { data: Buffer.alloc(32_000), mediaType: 'audio/wav', filename: 'a.wav' };
      const outcome = await bounded(transcriber.transcribe(audio, new AbortController().signal));
      expect(isOcularError(outcome.error)).toBe(true);
    } finally {
      await transcriber.close();
    }
  });
});

describe('after the whole corpus', () => {
  it('the peer has no connection left open by Ocular', async () => {
    await expectStillServing();
    await expect.poll(() => peer.openSockets(), { timeout: 5_000 }).toEqual([]);
  });
});
