// Video search latency: `POST /v1/videos/search` over HTTP against `ocular serve` (its own process) holding 10,000
// indexed segments of one owner (200 videos of 50 segments), written through the store before the server starts:
// on-screen text of 2-4 words from 3,000 made-up title words, a factual caption, object names, and a transcript
// of common English words drawn Zipf-like (so "the" is in nearly every segment, as in real speech). Queries, one
// at a time: on-screen phrases exactly, with a typo (the typo-tolerant pass), cut short, one common word (the
// widest match) and a sentence (spoken words around an object and a title word). Prints p50/p95 per kind and
// overall; target: overall p95 <= 50 ms.
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { environmentKeyOwner } from '../src/store/api-keys.ts';
import { openSqlDatabase } from '../src/store/sql.ts';
import { VideoStore } from '../src/store/video-store.ts';
import { startOcularServe } from './ocular-serve.ts';
import { percentile, printTable, seededRandom, verdict } from './report.ts';

const KEY = 'ocu_bench_search_latency_0123456789';
const VIDEOS = 200;
const SEGMENTS_PER_VIDEO = 50;
const VOCABULARY = 3_000;
const WARMUP = 40;
const ROUNDS = 120;
const TARGET_P95_MS = 50;
const OBJECTS = ['person', 'car', 'dog', 'bicycle', 'chair', 'laptop', 'bottle', 'truck', 'bird', 'boat'];

const next = seededRandom(7);
const ONSETS = [
  'b',
  'c',
  'd',
  'f',
  'g',
  'h',
  'j',
  'k',
  'l',
  'm',
  'n',
  'p',
  'r',
  's',
  't',
  'v',
  'w',
  'z',
  'ch',
  'sh',
  'th',
  'st',
  'tr',
  'br',
  'pl',
  'gr',
  'cr',
  'fl',
];
const VOWELS = ['a', 'e', 'i', 'o', 'u', 'ai', 'ea', 'ou', 'io', 'y'];
const CODAS = ['', '', 'n', 'r', 's', 't', 'l', 'x', 'nd', 'rk', 'st'];
/** Distinct made-up title words of two or three syllables (names of places, products, people). */
const TITLE_WORDS = (() => {
  const words = new Set<string>();
  const pick = (list: readonly string[]): string => list[Math.floor(next() * list.length)]!;
  while (words.size < VOCABULARY) {
    const syllables = 2 + Math.floor(next() * 2);
    words.add(Array.from({ length: syllables }, () => pick(ONSETS) + pick(VOWELS)).join('') + pick(CODAS));
  }
  return [...words];
})();
/** Common English words, most frequent first (spoken words follow Zipf's law over a list like this). */
const SPOKEN_WORDS = (
  'the be to of and a in that have it for not on with he as you do at this but his by from they we say her she or ' +
  'an will my one all would there their what so up out if about who get which go me when make can like time no just ' +
  'him know take people into year your good some could them see other than then now look only come its over think ' +
  'also back after use two how our work first well way even new want because any these give day most us is are was ' +
  'were been has had did said made found through long down should very place right where still around world great ' +
  'show every house water number part sound between might never under last left while along next city tree close ' +
  'night light change open begin seem together leave family often program question point system market company'
).split(' ');

/** Zipf-like: spoken word k is drawn about 1/k as often as the first. */
function zipfWord(): string {
  return SPOKEN_WORDS[Math.min(SPOKEN_WORDS.length - 1, Math.floor(Math.exp(next() * Math.log(SPOKEN_WORDS.length + 1)) - 1))]!;
}

const uniformWord = (): string => TITLE_WORDS[Math.floor(next() * TITLE_WORDS.length)]!;
const words = (count: number, draw: () => string): string => Array.from({ length: count }, draw).join(' ');

/** Writes the library into a fresh data dir; returns the on-screen phrases, to query for. */
async function buildLibrary(dataDir: string): Promise<string[]> {
  const database = await openSqlDatabase({ database: 'sqlite' }, { dataDir });
  const db = database.sqlite!;
  const phrases: string[] = [];
  try {
    const store = new VideoStore(database);
    const owner = environmentKeyOwner(KEY);
    await store.ensureDefaultGroup(owner);
    // One transaction for the whole library: the store's queries run on this same handle.
    db.exec('BEGIN');
    await (async () => {
      for (let video = 0; video < VIDEOS; video++) {
        const id = randomUUID();
        await store.insertVideo({
          id,
          owner,
          groupId: 'default',
          name: `video ${video}`,
          status: 'indexed',
          indexRequested: true,
          thumbnails: false,
          metadata: null,
          startTimestamp: '2025-04-12T10:00:00Z',
          webhookUrl: null,
          webhookSecret: null,
        });
        for (let seq = 0; seq < SEGMENTS_PER_VIDEO; seq++) {
          const ocrText = next() < 0.6 ? words(2 + Math.floor(next() * 3), uniformWord).toUpperCase() : '';
          if (ocrText !== '') phrases.push(ocrText.toLowerCase());
          const objects = [OBJECTS[Math.floor(next() * OBJECTS.length)]!, OBJECTS[Math.floor(next() * OBJECTS.length)]!];
          await store.saveSegment({
            videoId: id,
            seq,
            startSeconds: seq * 10,
            endSeconds: seq * 10 + 10,
            keyframes: [{ timeSeconds: seq * 10, file: `keyframes/keyframe-${String(seq * 5).padStart(6, '0')}.jpg` }],
            ocrText,
            objects: objects.map((label) => ({ label, count: 1, score: 0.8 })),
            labels: [],
            transcript: words(15 + Math.floor(next() * 20), zipfWord),
            speech: [],
            hasSpeech: true,
            caption: `Visible: a ${objects[0]} and a ${objects[1]}.${ocrText === '' ? '' : ` On-screen text: "${ocrText}".`}`,
            thumbnail: null,
          });
        }
      }
    })();
    db.exec('COMMIT');
  } finally {
    await database.close();
  }
  return phrases;
}

/** One edit in the middle of the phrase's longest word. */
function withTypo(phrase: string, index: number): string {
  const parts = phrase.split(' ');
  const longest = parts.reduce((best, word, position) => (word.length > parts[best]!.length ? position : best), 0);
  const word = parts[longest]!;
  const at = Math.floor(word.length / 2);
  parts[longest] =
    index % 2 === 0 ? word.slice(0, at) + word.slice(at + 1) : word.slice(0, at - 1) + word[at] + word[at - 1] + word.slice(at + 1);
  return parts.join(' ');
}

type QueryKind = 'exact' | 'typo' | 'partial' | 'common word' | 'sentence';

function queriesFor(phrases: readonly string[], round: number): Record<QueryKind, string> {
  const phrase = phrases[Math.floor(next() * phrases.length)]!;
  const parts = phrase.split(' ');
  return {
    exact: phrase,
    typo: withTypo(phrase, round),
    partial: `${parts.slice(0, -1).join(' ')} ${parts.at(-1)!.slice(0, 4)}`.trim(),
    'common word': SPOKEN_WORDS[Math.floor(next() * 5)]!,
    sentence: `${words(3, zipfWord)} ${OBJECTS[Math.floor(next() * OBJECTS.length)]} ${words(3, zipfWord)} ${uniformWord()}`,
  };
}

async function timeSearch(url: string, query: string): Promise<number> {
  const started = performance.now();
  const response = await fetch(`${url}/v1/videos/search`, {
    method: 'POST',
    headers: { 'x-api-key': KEY, 'content-type': 'application/json' },
    body: JSON.stringify({ query, max_results: 10 }),
  });
  if (response.status !== 200) throw new Error(`search failed: HTTP ${response.status} ${await response.text()}`);
  await response.arrayBuffer();
  return performance.now() - started;
}

export async function runVideoSearchLatency(): Promise<boolean> {
  const dataDir = mkdtempSync(join(tmpdir(), 'ocular-bench-search-latency-'));
  try {
    const building = performance.now();
    const phrases = await buildLibrary(dataDir);
    const buildSeconds = (performance.now() - building) / 1000;
    // Nothing to index: no analyzer is needed, so none loads.
    const off = { enabled: false };
    const server = await startOcularServe(dataDir, KEY, { indexing: { ocr: off, objects: off, labels: off, vad: off, speech: off } });
    try {
      for (let round = 0; round < WARMUP; round++) {
        for (const query of Object.values(queriesFor(phrases, round))) await timeSearch(server.url, query);
      }
      const samples = new Map<QueryKind, number[]>();
      for (let round = 0; round < ROUNDS; round++) {
        for (const [kind, query] of Object.entries(queriesFor(phrases, round)) as Array<[QueryKind, string]>) {
          const list = samples.get(kind) ?? [];
          list.push(await timeSearch(server.url, query));
          samples.set(kind, list);
        }
      }
      const all = [...samples.values()].flat().sort((a, b) => a - b);
      const p95 = percentile(all, 95);
      const rows = [['video-search-latency', 'p50 ms', 'p95 ms', 'max ms']];
      for (const [kind, list] of samples) {
        const sorted = [...list].sort((a, b) => a - b);
        rows.push([
          `${kind} (${sorted.length})`,
          percentile(sorted, 50).toFixed(1),
          percentile(sorted, 95).toFixed(1),
          sorted.at(-1)!.toFixed(1),
        ]);
      }
      rows.push([`all (${all.length})`, percentile(all, 50).toFixed(1), p95.toFixed(1), all.at(-1)!.toFixed(1)]);
      printTable(rows);
      const met = p95 <= TARGET_P95_MS;
      process.stdout.write(
        `  ${VIDEOS * SEGMENTS_PER_VIDEO} segments of one owner (written in ${buildSeconds.toFixed(1)} s); ` +
          `p95 target <= ${TARGET_P95_MS} ms: ${verdict(met)}\n`,
      );
      return met;
    } finally {
      await server.stop();
    }
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
}

if (import.meta.main) await runVideoSearchLatency();
