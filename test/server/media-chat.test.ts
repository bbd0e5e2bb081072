import { readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import sharp from 'sharp';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { sendJson, startFakeUpstream, type FakeUpstream } from '../helpers/fake-upstream.ts';
import { makeAudio, makeVideo, truncate } from '../helpers/media-fixtures.ts';
import { startOcular, type TestOcular } from '../helpers/ocular.ts';
import { startOpenAiUpstream } from '../helpers/openai-upstream.ts';
import { buildPdf, linesPage } from '../helpers/pdf-writer.ts';

/** Serves files from memory over real HTTP on loopback: the "remote" media host. */
async function startMediaHost(files: Record<string, Buffer>): Promise<{ url: string; port: number; close(): Promise<void> }> {
  const server: Server = createServer((request, response) => {
    const body = files[request.url ?? ''];
    if (!body) {
      response.writeHead(404).end('not found');
      return;
    }
    response.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length }).end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, port, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

const TRANSCRIPT = {
  task: 'transcribe',
  language: 'english',
  duration: 4,
  text: 'A steady tone plays.',
  segments: [
    {
      id: 0,
      seek: 0,
      start: 0.5,
      end: 3.2,
      text: ' A steady tone plays.',
      tokens: [],
      temperature: 0,
      avg_logprob: -0.2,
      compression_ratio: 1,
      no_speech_prob: 0.1,
    },
  ],
};

const dataUrl = (mediaType: string, data: Buffer) => `data:${mediaType};base64,${data.toString('base64')}`;

let upstream: Awaited<ReturnType<typeof startOpenAiUpstream>>;
let transcriber: FakeUpstream;
let mediaHost: Awaited<ReturnType<typeof startMediaHost>>;
let ocular: TestOcular;
let deaf: TestOcular;
let video: Buffer;
let audio: Buffer;
let pdf: Buffer;

beforeAll(async () => {
  upstream = await startOpenAiUpstream();
  transcriber = await startFakeUpstream((_request, response) => sendJson(response, 200, TRANSCRIPT));
  video = await readFile(await makeVideo({ seconds: 4, withAudio: true }));
  audio = await readFile(await makeAudio({ seconds: 2, format: 'wav' }));
  pdf = buildPdf([linesPage('Quarterly report', 'Revenue grew 12 percent'), linesPage('Second page text')]);
  mediaHost = await startMediaHost({ '/clip.mp4': video, '/report.pdf': pdf });
  const models = [
    { id: 'vision', provider: 'openai-compatible', baseUrl: `${upstream.url}/v1`, model: 'vl' },
    {
      id: 'omni',
      provider: 'openai-compatible',
      baseUrl: `${upstream.url}/v1`,
      model: 'omni',
      capabilities: { video: true, audio: true, pdf: true },
    },
    { id: 'text', provider: 'openai-compatible', baseUrl: `${upstream.url}/v1`, model: 'llm', capabilities: { image: false } },
  ];
  ocular = await startOcular({
    models,
    media: { allowHosts: [`127.0.0.1:${mediaHost.port}`], videoFrames: 4, maxImagePixels: 1_000_000, pdfRenderPages: 1 },
    transcriber: { provider: 'openai-compatible', baseUrl: `${transcriber.url}/v1`, model: 'whisper-1' },
  });
  deaf = await startOcular({ models });
});

afterAll(async () => {
  await Promise.all([ocular.close(), deaf.close()]);
  await Promise.all([upstream.close(), transcriber.close(), mediaHost.close()]);
});

beforeEach(() => {
  upstream.requests.length = 0;
  transcriber.requests.length = 0;
});

type SentPart = {
  type: string;
  text?: string;
  image_url?: { url: string };
  video_url?: { url: string };
  input_audio?: { data: string; format: string };
};
const sentContent = (): SentPart[] => {
  const { content } = (upstream.requests.at(-1)!.body as { messages: Array<{ content: SentPart[] | string }> }).messages[0]!;
  // Text-only turns go upstream as one string.
  return typeof content === 'string' ? [{ type: 'text', text: content }] : content;
};
const texts = (parts: SentPart[]) => parts.filter((part) => part.type === 'text').map((part) => part.text!);
const images = (parts: SentPart[]) => parts.filter((part) => part.type === 'image_url');

async function chat(server: TestOcular, model: string, part: unknown) {
  return server.post('/v1/chat', { model, messages: [{ role: 'user', content: [part, { type: 'text', text: 'Describe it.' }] }] });
}

async function expectError(response: Response, status: number, type: string) {
  expect(response.status).toBe(status);
  const body = await response.json();
  expect(body.error.type).toBe(type);
  return body.error as { message: string; param?: string };
}

describe('video', () => {
  it('reaches an image-only model as timestamped frames plus a transcript of its sound, from a URL', async () => {
    const response = await chat(ocular, 'vision', { type: 'video_url', video_url: `${mediaHost.url}/clip.mp4` });
    expect(response.status).toBe(200);
    const content = sentContent();
    expect(images(content)).toHaveLength(4);
    for (const image of images(content)) expect(image.image_url!.url).toMatch(/^data:image\/jpeg;base64,/);
    const frameLabels = texts(content).filter((text) => text.startsWith('frame at '));
    expect(frameLabels).toEqual(['frame at 00:00', 'frame at 00:01', 'frame at 00:02', 'frame at 00:03']);
    expect(texts(content).join('\n')).toContain('[00:00 - 00:03] A steady tone plays.');
    expect(transcriber.requests).toHaveLength(1);
  });

  it('reaches a video-capable model as the video itself', async () => {
    const response = await chat(ocular, 'omni', { type: 'video_url', video_url: dataUrl('video/mp4', video) });
    expect(response.status).toBe(200);
    const [part] = sentContent();
    expect(part!.type).toBe('video_url');
    expect(part!.video_url!.url).toBe(dataUrl('video/mp4', video));
  });

  it('accepts a video given as comma-joined JPEG frames', async () => {
    const frame = (colour: string) =>
      sharp({ create: { width: 64, height: 48, channels: 3, background: colour } })
        .jpeg()
        .toBuffer();
    const frames = await Promise.all(['#f00', '#0f0', '#00f'].map(frame));
    const url = `data:video/jpeg;base64,${frames.map((data) => data.toString('base64')).join(',')}`;
    const response = await chat(ocular, 'vision', { type: 'video_url', video_url: url });
    expect(response.status).toBe(200);
    expect(images(sentContent())).toHaveLength(3);
    expect(texts(sentContent())).toContain('frame 2 of 3');
  });

  it.each([
    ['garbage bytes', () => Buffer.from('this is not a video, just words '.repeat(100)), 415, 'unsupported_media_type'],
    ['a truncated MP4', async () => readFile(await truncate(await makeVideo({ seconds: 4 }), 3000)), 415, 'unsupported_media_type'],
    [
      'a PNG declared as video',
      () =>
        sharp({ create: { width: 8, height: 8, channels: 3, background: '#fff' } })
          .png()
          .toBuffer(),
      415,
      'unsupported_media_type',
    ],
  ])('rejects %s', async (_name, make, status, type) => {
    const data = await make();
    const error = await expectError(
      await chat(ocular, 'vision', { type: 'video_url', video_url: dataUrl('video/mp4', data) }),
      status,
      type,
    );
    expect(error.param).toBe('messages.0.content.0');
  });

  it('refuses a video for a model that takes neither video nor images', async () => {
    await expectError(await chat(ocular, 'text', { type: 'video_url', video_url: dataUrl('video/mp4', video) }), 400, 'validation_error');
  });
});

describe('audio', () => {
  it('reaches an audio-capable model as audio', async () => {
    const response = await chat(ocular, 'omni', { type: 'audio_url', audio_url: dataUrl('audio/wav', audio) });
    expect(response.status).toBe(200);
    expect(sentContent()[0]).toEqual({ type: 'input_audio', input_audio: { data: audio.toString('base64'), format: 'wav' } });
  });

  it('reaches a model without audio as a transcript from the configured transcriber', async () => {
    const response = await chat(ocular, 'vision', { type: 'audio_url', audio_url: dataUrl('audio/wav', audio) });
    expect(response.status).toBe(200);
    expect(texts(sentContent()).join('\n')).toContain('A steady tone plays.');
    expect(transcriber.requests).toHaveLength(1);
  });

  it('says how to configure a transcriber when there is none', async () => {
    const error = await expectError(
      await chat(deaf, 'vision', { type: 'audio_url', audio_url: dataUrl('audio/wav', audio) }),
      400,
      'validation_error',
    );
    expect(error.message).toContain('transcriber');
  });
});

describe('PDF', () => {
  it('reaches a model without PDF input as page text plus rendered pages, from a URL', async () => {
    const response = await chat(ocular, 'vision', { type: 'pdf_url', pdf_url: `${mediaHost.url}/report.pdf` });
    expect(response.status).toBe(200);
    const text = texts(sentContent()).join('\n');
    expect(text).toContain('Revenue grew 12 percent');
    expect(text).toContain('Second page text');
    expect(images(sentContent())).toHaveLength(1);
  });

  it('sends only the text to a model without images', async () => {
    const response = await chat(ocular, 'text', { type: 'pdf_url', pdf_url: dataUrl('application/pdf', pdf) });
    expect(response.status).toBe(200);
    expect(texts(sentContent()).join('\n')).toContain('Quarterly report');
    expect(images(sentContent())).toHaveLength(0);
  });

  it('answers 400 for a corrupt PDF and for an encrypted one', async () => {
    const corrupt = Buffer.from(`%PDF-1.7\n${'not a real body '.repeat(100)}\n%%EOF\n`);
    const encrypted = buildPdf([linesPage('secret')], { userPassword: 'pw', ownerPassword: 'owner' });
    for (const data of [corrupt, encrypted]) {
      await expectError(
        await chat(ocular, 'vision', { type: 'pdf_url', pdf_url: dataUrl('application/pdf', data) }),
        400,
        'validation_error',
      );
    }
  });

  it('sends the document itself to a PDF-capable model', async () => {
    await chat(ocular, 'omni', { type: 'pdf_url', pdf_url: dataUrl('application/pdf', pdf) });
    expect(sentContent()[0]).toMatchObject({ type: 'file', file: { file_data: dataUrl('application/pdf', pdf) } });
  });
});

describe('images and fetching', () => {
  it('refuses a decompression bomb over media.maxImagePixels', async () => {
    const bomb = await sharp({ create: { width: 2000, height: 2000, channels: 3, background: '#000' } })
      .png()
      .toBuffer();
    expect(bomb.length).toBeLessThan(100_000);
    await expectError(await chat(ocular, 'vision', { type: 'image_url', image_url: dataUrl('image/png', bomb) }), 400, 'validation_error');
  });

  it('sniffs the real type: a PNG labelled as JPEG is still sent, re-encoded', async () => {
    const png = await sharp({ create: { width: 40, height: 30, channels: 3, background: '#0a0' } })
      .png()
      .toBuffer();
    const response = await chat(ocular, 'vision', { type: 'image_url', image_url: dataUrl('image/jpeg', png) });
    expect(response.status).toBe(200);
    expect(images(sentContent())).toHaveLength(1);
  });

  it.each([
    ['a loopback host not in allowHosts', () => `http://127.0.0.1:${mediaHost.port + 1}/clip.mp4`],
    ['a private address', () => 'http://10.0.0.1/clip.mp4'],
    ['a numeric loopback form', () => 'http://2130706433/clip.mp4'],
    ['a missing file on an allowed host', () => `${mediaHost.url}/missing.mp4`],
  ])('answers 400 for %s', async (_name, url) => {
    const error = await expectError(await chat(ocular, 'vision', { type: 'video_url', video_url: url() }), 400, 'validation_error');
    expect(error.param).toBe('messages.0.content.0');
  });
});

describe('cancellation', () => {
  it('stops fetching media when the client goes away', async () => {
    let hostClosed!: () => void;
    const closed = new Promise<void>((resolve) => (hostClosed = resolve));
    const slowHost = createServer((_request, response) => {
      response.on('close', () => hostClosed());
      response.writeHead(200, { 'content-type': 'video/mp4' });
      const timer = setInterval(() => response.write(Buffer.alloc(1024)), 50);
      response.on('close', () => clearInterval(timer));
    });
    await new Promise<void>((resolve) => slowHost.listen(0, '127.0.0.1', resolve));
    const { port } = slowHost.address() as AddressInfo;
    const server = await startOcular({
      models: [{ id: 'vision', provider: 'openai-compatible', baseUrl: `${upstream.url}/v1`, model: 'vl' }],
      media: { allowHosts: [`127.0.0.1:${port}`] },
    });
    try {
      const controller = new AbortController();
      const request = server.post(
        '/v1/chat',
        { messages: [{ role: 'user', content: [{ type: 'video_url', video_url: `http://127.0.0.1:${port}/slow.mp4` }] }] },
        {},
        controller.signal,
      );
      await new Promise((resolve) => setTimeout(resolve, 300));
      controller.abort();
      await expect(request).rejects.toThrow();
      const started = Date.now();
      await closed;
      expect(Date.now() - started).toBeLessThan(2_000);
      expect(upstream.requests).toHaveLength(0);
    } finally {
      await server.close();
      await new Promise<void>((resolve) => slowHost.close(() => resolve()));
    }
  });
});
