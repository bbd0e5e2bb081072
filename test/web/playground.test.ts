// The web playground end to end: the built page, served by a real Ocular, driven in headless Chromium.
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { removeMediaFixtures } from '../helpers/media-fixtures.ts';
import { startOcular, type TestOcular } from '../helpers/ocular.ts';
import { sendJson } from '../helpers/fake-upstream.ts';
import { startOpenAiUpstream, streamCompletion } from '../helpers/openai-upstream.ts';
import { FONT_PATH, makeTitledVideo } from '../helpers/vision-fixtures.ts';

const CHROMIUM = '/usr/bin/chromium';
const ROOT = join(import.meta.dirname, '..', '..');
const WEB = join(ROOT, 'web');
const DIST = join(WEB, 'dist');
const PNG = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==';

function newestChange(path: string): number {
  const stats = statSync(path);
  if (!stats.isDirectory()) return stats.mtimeMs;
  return Math.max(stats.mtimeMs, ...readdirSync(path).map((name) => newestChange(join(path, name))));
}

/** Builds the playground unless web/dist is newer than all of its sources. */
async function ensureBuilt(): Promise<void> {
  const index = join(DIST, 'index.html');
  const sources = Math.max(...['index.html', 'src', 'public', 'vite.config.ts'].map((name) => newestChange(join(WEB, name))));
  if (existsSync(index) && statSync(index).mtimeMs > sources) return;
  await promisify(execFile)(process.execPath, [join(ROOT, 'node_modules', 'vite', 'bin', 'vite.js'), 'build', WEB, '--logLevel', 'warn'], {
    cwd: ROOT,
    timeout: 120_000,
  });
}

let upstream: Awaited<ReturnType<typeof startOpenAiUpstream>>;
let ocular: TestOcular;
let browser: Browser;
let page: Page;
/** Content-Security-Policy violations and uncaught errors in the page: each test ends with none. */
let problems: string[] = [];

describe.skipIf(!existsSync(CHROMIUM))('the web playground in Chromium', () => {
  beforeAll(async () => {
    await ensureBuilt();
    upstream = await startOpenAiUpstream();
    // Object detection, scene labels and speech detection add nothing to text search and cost seconds per video.
    ocular = await startOcular(
      {
        models: [{ id: 'chatty', provider: 'openai-compatible', baseUrl: `${upstream.url}/v1`, model: 'upstream-model' }],
        indexing: { objects: { enabled: false }, labels: { enabled: false }, vad: { enabled: false } },
      },
      {},
      { webDir: DIST },
    );
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--no-first-run',
        '--autoplay-policy=no-user-gesture-required',
      ],
    });
  }, 180_000);

  afterAll(async () => {
    await browser?.close();
    await ocular?.close();
    await upstream?.close();
    removeMediaFixtures();
  });

  beforeEach(async () => {
    await page?.context().close();
    const context = await browser.newContext();
    page = await context.newPage();
    problems = [];
    page.on('console', (message) => {
      if (/Content.Security.Policy/i.test(message.text())) problems.push(message.text());
    });
    page.on('pageerror', (error) => problems.push(error.message));
    await page.goto(`${ocular.url}/`);
    await page.fill('#api-key', ocular.key);
    await page.click('#save-key');
    await page.waitForFunction(() => document.querySelector('#key-status')?.textContent === 'Key saved');
  });

  afterEach(() => {
    expect(problems).toEqual([]);
  });

  it('keeps the key in the browser across reloads', async () => {
    await page.reload();
    expect(await page.inputValue('#api-key')).toBe(ocular.key);
    expect(await page.evaluate(() => localStorage.getItem('ocular.apiKey'))).toBe(ocular.key);
  });

  it('streams a chat answer as sanitized Markdown, with an attached image sent as a data URL', async () => {
    upstream.requests.length = 0;
    upstream.behave((_request, response) =>
      streamCompletion(response, ['Here is **bo', 'ld** text.\n\n- one\n- tw', 'o\n\n<img src=x onerror="window.pwned=1">'], {
        delayMs: 5,
      }),
    );
    await page.waitForSelector('#model option[value="chatty"]', { state: 'attached' });
    await page.setInputFiles('#attach', { name: 'dot.png', mimeType: 'image/png', buffer: Buffer.from(PNG, 'base64') });
    await page.waitForSelector('#attachments .chip.image');
    await page.fill('#prompt', 'What is in the picture?');
    const request = page.waitForRequest((candidate) => new URL(candidate.url()).pathname === '/v1/chat');
    await page.click('#send');
    // The page sends a Reka request: the file as a data: URL part, then the text, streamed.
    expect((await request).postDataJSON()).toEqual({
      model: 'chatty',
      stream: true,
      messages: [
        {
          role: 'user',
          content: [
            { type: 'image_url', image_url: `data:image/png;base64,${PNG}` },
            { type: 'text', text: 'What is in the picture?' },
          ],
        },
      ],
    });
    const answer = page.locator('.message.assistant .body');
    await answer.locator('li').nth(1).waitFor();
    await page.waitForFunction(() => !(document.querySelector('#send') as HTMLButtonElement).disabled);
    expect(await answer.locator('strong').textContent()).toBe('bold');
    expect(await answer.locator('li').allTextContents()).toEqual(['one', 'two']);
    expect(await answer.locator('img').count()).toBe(0);
    expect(await answer.textContent()).toContain('<img src=x onerror="window.pwned=1">');
    expect(await page.evaluate(() => (window as { pwned?: number }).pwned)).toBeUndefined();

    // Ocular passed the image on to the model (re-encoded by its media pipeline).
    const sent = upstream.requests.at(-1)!.body as { messages: Array<{ role: string; content: unknown }> };
    expect(JSON.stringify(sent.messages.at(-1)!.content)).toContain('data:image/png;base64,');

    // The next turn carries the conversation so far.
    upstream.behave((_request, response) => streamCompletion(response, ['Second answer.']));
    await page.fill('#prompt', 'And then?');
    await page.click('#send');
    await page.locator('.message.assistant .body').nth(1).filter({ hasText: 'Second answer.' }).waitFor();
    const second = upstream.requests.at(-1)!.body as { messages: Array<{ role: string }> };
    expect(second.messages.map((message) => message.role)).toEqual(['user', 'assistant', 'user']);
  });

  it('attaches a file dropped on the page', async () => {
    upstream.behave((_request, response) => streamCompletion(response, ['A single pixel.']));
    await page.waitForSelector('#model option[value="chatty"]', { state: 'attached' });
    const drop = await page.evaluateHandle((base64) => {
      const transfer = new DataTransfer();
      const bytes = Uint8Array.from(atob(base64), (character) => character.charCodeAt(0));
      transfer.items.add(new File([bytes], 'dropped.png', { type: 'image/png' }));
      return transfer;
    }, PNG);
    await page.dispatchEvent('#chat-page', 'dragover', { dataTransfer: drop });
    await page.dispatchEvent('#messages', 'drop', { dataTransfer: drop });
    await page.locator('#attachments .chip.image', { hasText: 'dropped.png' }).waitFor();
    const request = page.waitForRequest((candidate) => new URL(candidate.url()).pathname === '/v1/chat');
    await page.click('#send');
    const sent = (await request).postDataJSON() as { messages: Array<{ content: unknown }> };
    expect(sent.messages[0]!.content).toEqual([{ type: 'image_url', image_url: `data:image/png;base64,${PNG}` }]);
    await page.locator('.message.user img.thumb').waitFor();
    await page.locator('.message.assistant .body', { hasText: 'A single pixel.' }).waitFor();
  });

  it('stops a streaming answer and keeps what arrived', async () => {
    upstream.behave((_request, response) =>
      streamCompletion(response, ['First words', ...Array.from({ length: 200 }, () => ' more')], { delayMs: 50, splitEvery: 40 }),
    );
    await page.waitForSelector('#model option[value="chatty"]', { state: 'attached' });
    await page.fill('#prompt', 'Talk for a long time');
    await page.click('#send');
    await page.locator('.message.assistant .body').filter({ hasText: 'First words' }).waitFor();
    await page.click('#stop');
    await page.locator('.message.assistant .stopped').waitFor();
    expect(await page.isEnabled('#send')).toBe(true);
    expect(await page.isDisabled('#stop')).toBe(true);
  });

  it('reports a key the server does not accept', async () => {
    await page.fill('#api-key', 'ocu_not_a_key_0123456789abcdef');
    await page.click('#save-key');
    await page.waitForFunction(() => document.querySelector('#key-status')?.textContent === 'This key is not accepted');
  });

  it('shows a failed answer, keeps it out of the conversation, and refuses attachments it cannot send', async () => {
    upstream.behave((_request, response) => sendJson(response, 400, { error: { message: 'upstream refused the request' } }));
    await page.waitForSelector('#model option[value="chatty"]', { state: 'attached' });
    await page.fill('#prompt', 'Will this work?');
    await page.click('#send');
    await page.locator('#chat-error:not(:empty)').waitFor();
    await page.locator('.message.assistant.failed').waitFor();
    expect(await page.isEnabled('#send')).toBe(true);

    upstream.behave((_request, response) => streamCompletion(response, ['It works now.']));
    const request = page.waitForRequest((candidate) => new URL(candidate.url()).pathname === '/v1/chat');
    await page.fill('#prompt', 'Again?');
    await page.click('#send');
    const sent = (await request).postDataJSON() as { messages: Array<{ role: string; content: unknown }> };
    expect(sent.messages).toEqual([{ role: 'user', content: 'Again?' }]);
    await page.locator('.message.assistant .body', { hasText: 'It works now.' }).waitFor();

    await page.setInputFiles('#attach', { name: 'notes.zip', mimeType: 'application/zip', buffer: Buffer.from('PK') });
    await page.locator('#chat-error:not(:empty)').waitFor();
    // Seven files where a message takes six: six are attached, the seventh is refused (size limits: helpers test).
    const pngs = Array.from({ length: 7 }, (_, index) => ({
      name: `dot-${index}.png`,
      mimeType: 'image/png',
      buffer: Buffer.from(PNG, 'base64'),
    }));
    await page.setInputFiles('#attach', pngs);
    await page.waitForFunction(() => /6 files/.test(document.querySelector('#chat-error')?.textContent ?? ''));
    expect(await page.locator('#attachments .chip').count()).toBe(6);
  });

  it('reports an upload the server refuses', async () => {
    await page.click('#nav-library');
    await page.setInputFiles('#upload-file', {
      name: 'not-a-video.mp4',
      mimeType: 'video/mp4',
      buffer: Buffer.from('this is text, not a video'),
    });
    await page.click('#upload-button');
    await page.waitForFunction(() => /^Upload failed/.test(document.querySelector('#upload-status')?.textContent ?? ''));
    expect(await page.isEnabled('#upload-button')).toBe(true);
    expect(await page.locator('#videos tbody tr', { hasText: 'not-a-video.mp4' }).count()).toBe(0);
  });

  it.skipIf(FONT_PATH === undefined)(
    'uploads a video, waits for it to be indexed, finds a word drawn on it and plays that range',
    async () => {
      // Long enough for several segments, so the word's range starts well after 0 and playing it means seeking.
      const video = await makeTitledVideo({
        seconds: 24,
        width: 320,
        height: 180,
        captions: [{ text: 'LIGHTHOUSE', fromSeconds: 14, toSeconds: 20 }],
      });
      await page.click('#nav-library');
      await page.setInputFiles('#upload-file', video);
      await page.fill('#upload-name', 'Harbour tour');
      await page.click('#upload-button');
      const row = page.locator('#videos tbody tr', { hasText: 'Harbour tour' });
      await row.waitFor();
      await page.locator('#videos tbody tr[data-status="indexed"]', { hasText: 'Harbour tour' }).waitFor({ timeout: 120_000 });
      expect(await page.locator('#upload-status').textContent()).toMatch(/Uploaded/);

      await page.fill('#search-query', 'lighthouse');
      await page.click('#search-button');
      const result = page.locator('#search-results .result').first();
      await result.waitFor();
      expect(await result.locator('strong').textContent()).toBe('Harbour tour');
      expect(await result.locator('img').getAttribute('src')).toMatch(/\/thumbnail\?/);
      const start = Number(await result.getAttribute('data-start'));
      const end = Number(await result.getAttribute('data-end'));
      expect(end).toBeGreaterThan(start);
      expect(start).toBeGreaterThanOrEqual(5); // the word is on screen from 14 s to 20 s
      expect(start).toBeLessThan(20);
      expect(end).toBeGreaterThan(14);
      await result.click();
      await page.waitForFunction(
        ([from, to]) => {
          const player = document.querySelector('#player') as HTMLVideoElement;
          return player.readyState >= 1 && player.currentTime >= from! - 0.05 && player.currentTime <= to! + 0.05;
        },
        [start, end],
        { timeout: 20_000 },
      );
      const currentTime = await page.evaluate(() => (document.querySelector('#player') as HTMLVideoElement).currentTime);
      expect(currentTime).toBeGreaterThanOrEqual(start - 0.05);
      expect(currentTime).toBeLessThanOrEqual(end + 0.05);
      expect(await page.locator('#player-title').textContent()).toContain('Harbour tour');

      // Ask a video, through the real POST /v1/qa/chat: the model (the fake upstream) streams an answer that cites
      // two moments; the page renders it as Markdown with citations that seek the player.
      const videoId = await row.getAttribute('data-video-id');
      upstream.requests.length = 0;
      upstream.behave((_request, response) =>
        streamCompletion(response, ['The word **LIGHTHOUSE**', ' appears at [0:15]', ' and again [00:18].']),
      );
      let asked: unknown;
      page.on('request', (request) => {
        if (request.url().endsWith('/v1/qa/chat')) asked = request.postDataJSON();
      });
      await page.selectOption('#ask-video', videoId!);
      await page.fill('#ask-question', 'What word is shown?');
      await page.click('#ask-button');
      await page.locator('#ask-answer a.citation').nth(1).waitFor();
      expect(asked).toEqual({ video_id: videoId, messages: [{ role: 'user', content: 'What word is shown?' }], stream: true });
      // The model was given the video's indexed text: the word indexing read on screen.
      expect(JSON.stringify(upstream.requests.at(-1)!.body)).toContain('LIGHTHOUSE');
      expect(await page.locator('#ask-answer strong').textContent()).toBe('LIGHTHOUSE');
      expect(await page.locator('#ask-answer a.citation').allTextContents()).toEqual(['[0:15]', '[00:18]']);
      await page.click('#ask-answer a.citation >> nth=1');
      await page.waitForFunction(
        () => Math.abs((document.querySelector('#player') as HTMLVideoElement).currentTime - 18) < 0.1,
        undefined,
        {
          timeout: 10_000,
        },
      );
      await page.click('#ask-answer a.citation >> nth=0');
      await page.waitForFunction(
        () => Math.abs((document.querySelector('#player') as HTMLVideoElement).currentTime - 15) < 0.1,
        undefined,
        {
          timeout: 10_000,
        },
      );

      // A video the route cannot answer about yet (409 from the server) is reported in the panel, not thrown. A
      // video still being indexed cannot be held in that state here without slowing the test, so the 409 is
      // stubbed: what is checked is how the page shows it.
      await page.route('**/v1/qa/chat', (route) =>
        route.fulfill({
          status: 409,
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ error: { type: 'conflict_error', message: 'the video is still being indexed' } }),
        }),
      );
      await page.click('#ask-button');
      await page.locator('#ask-error:not(:empty)').waitFor();
      expect(await page.isEnabled('#ask-button')).toBe(true);
    },
    180_000,
  );
});
