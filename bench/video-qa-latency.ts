// Video QA on a long video: `POST /v1/qa/chat` over HTTP against `ocular serve` (its own process), on a 1-minute
// video (12 segments) and a 2-hour one (1,440 segments) of the same owner, written through the store before the
// server starts. The model is a local OpenAI-compatible server that answers at once and records each prompt's size,
// so the figures are Ocular's own work: retrieval within the video, prompt building and citation checks. Questions
// name words spoken in one segment of the video. Prints p50/p95 latency and the prompt size per video; target: the
// 2-hour video's p50 within 1.5x the 1-minute one's (a long video must not mean a longer prompt or a slower answer).
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { environmentKeyOwner } from '../src/store/api-keys.ts';
import { openSqlDatabase } from '../src/store/sql.ts';
import { VideoStore } from '../src/store/video-store.ts';
import { startOcularServe } from './ocular-serve.ts';
import { median, percentile, printTable, seededRandom, verdict } from './report.ts';

const KEY = 'ocu_bench_video_qa_0123456789abcdef';
const SEGMENT_SECONDS = 5;
const VIDEOS = { '1 minute': 12, '2 hours': 1_440 } as const;
const WARMUP = 10;
const ROUNDS = 60;
const TARGET_RATIO = 1.5;

const next = seededRandom(11);
const SYLLABLES = ['ka', 'lo', 'mi', 'ne', 'ru', 'sa', 'ti', 'vo', 'ze', 'pa', 'do', 'fi', 'gu', 'ha', 'je', 'ko'];
/** A made-up word of three syllables: spoken words that name one segment each. */
const word = (): string => Array.from({ length: 3 }, () => SYLLABLES[Math.floor(next() * SYLLABLES.length)]!).join('');

/** Writes the two videos; returns, per video, the words of each segment (to ask about). */
async function buildLibrary(dataDir: string): Promise<Record<keyof typeof VIDEOS, { id: string; words: string[][] }>> {
  const database = await openSqlDatabase({ database: 'sqlite' }, { dataDir });
  const db = database.sqlite!;
  try {
    const store = new VideoStore(database);
    const owner = environmentKeyOwner(KEY);
    await store.ensureDefaultGroup(owner);
    const result = {} as Record<keyof typeof VIDEOS, { id: string; words: string[][] }>;
    // One transaction for the whole library: the store's queries run on this same handle.
    db.exec('BEGIN');
    await (async () => {
      for (const [name, segments] of Object.entries(VIDEOS) as Array<[keyof typeof VIDEOS, number]>) {
        const id = randomUUID();
        await store.insertVideo({
          id,
          owner,
          groupId: 'default',
          name,
          status: 'indexed',
          indexRequested: true,
          thumbnails: false,
          metadata: {
            durationSeconds: segments * SEGMENT_SECONDS,
            width: 640,
            height: 360,
            avgFps: 25,
            codec: 'h264',
            sizeBytes: 1,
            hasAudio: true,
            hasThumbnail: false,
          },
          startTimestamp: null,
          webhookUrl: null,
          webhookSecret: null,
        });
        const words: string[][] = [];
        for (let seq = 0; seq < segments; seq++) {
          const spoken = Array.from({ length: 25 }, word);
          words.push(spoken);
          await store.saveSegment({
            videoId: id,
            seq,
            startSeconds: seq * SEGMENT_SECONDS,
            endSeconds: (seq + 1) * SEGMENT_SECONDS,
            keyframes: [],
            ocrText: next() < 0.3 ? spoken.slice(0, 2).join(' ').toUpperCase() : '',
            objects: [],
            labels: [],
            transcript: spoken.join(' '),
            speech: [],
            hasSpeech: true,
            caption: `A person talks about ${spoken[3]} and ${spoken[7]}.`,
            thumbnail: null,
          });
        }
        result[name] = { id, words };
      }
    })();
    db.exec('COMMIT');
    return result;
  } finally {
    await database.close();
  }
}

/** An OpenAI-compatible model that answers at once, recording the size of each prompt it was sent. */
async function startModel(): Promise<{ url: string; promptChars: number[]; server: Server }> {
  const promptChars: number[] = [];
  const server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { messages: Array<{ content: unknown }> };
      promptChars.push(body.messages.reduce((sum, message) => sum + JSON.stringify(message.content).length, 0));
      response.writeHead(200, { 'content-type': 'application/json' });
      response.end(
        JSON.stringify({
          id: 'bench',
          object: 'chat.completion',
          created: 0,
          model: 'bench',
          choices: [{ index: 0, message: { role: 'assistant', content: 'It is said at [00:05].' }, finish_reason: 'stop' }],
          usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 },
        }),
      );
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, promptChars, server };
}

async function ask(url: string, videoId: string, question: string): Promise<number> {
  const started = performance.now();
  const response = await fetch(`${url}/v1/qa/chat`, {
    method: 'POST',
    headers: { 'x-api-key': KEY, 'content-type': 'application/json' },
    body: JSON.stringify({ video_id: videoId, messages: [{ role: 'user', content: question }] }),
  });
  if (response.status !== 200) throw new Error(`QA failed: HTTP ${response.status} ${await response.text()}`);
  await response.arrayBuffer();
  return performance.now() - started;
}

export async function runVideoQaLatency(): Promise<boolean> {
  const dataDir = mkdtempSync(join(tmpdir(), 'ocular-bench-qa-'));
  const model = await startModel();
  try {
    const library = await buildLibrary(dataDir);
    const serve = await startOcularServe(dataDir, KEY, {
      models: [{ id: 'bench', provider: 'openai-compatible', baseUrl: `${model.url}/v1`, model: 'bench', maxRetries: 0 }],
      indexing: { vad: { enabled: false }, labels: { enabled: false } },
    });
    try {
      const rows: string[][] = [['video', 'segments', 'p50 ms', 'p95 ms', 'prompt chars (median)']];
      const p50s: number[] = [];
      for (const [name, video] of Object.entries(library)) {
        const question = (): string => {
          const spoken = video.words[Math.floor(next() * video.words.length)]!;
          return `When does the speaker say ${spoken[5]} and ${spoken[12]}?`;
        };
        for (let round = 0; round < WARMUP; round++) await ask(serve.url, video.id, question());
        model.promptChars.length = 0;
        const times: number[] = [];
        for (let round = 0; round < ROUNDS; round++) times.push(await ask(serve.url, video.id, question()));
        times.sort((a, b) => a - b);
        p50s.push(percentile(times, 50));
        rows.push([
          name,
          String(video.words.length),
          percentile(times, 50).toFixed(1),
          percentile(times, 95).toFixed(1),
          String(Math.round(median(model.promptChars))),
        ]);
      }
      printTable(rows);
      const ratio = p50s[1]! / p50s[0]!;
      const met = ratio <= TARGET_RATIO;
      process.stdout.write(`2-hour / 1-minute p50: ${ratio.toFixed(2)}x (target <= ${TARGET_RATIO}x): ${verdict(met)}\n`);
      return met;
    } finally {
      await serve.stop();
    }
  } finally {
    model.server.closeAllConnections();
    await new Promise<void>((resolve) => model.server.close(() => resolve()));
    rmSync(dataDir, { recursive: true, force: true });
  }
}

if (import.meta.main) await runVideoQaLatency();
