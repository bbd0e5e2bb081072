// Video search quality: 24 generated videos, each showing two known three-word phrases on screen at known times
// (over plain, gradient and test-pattern backgrounds, in different sizes and places), uploaded to `ocular serve`
// (its own process, OCR on, no other analyzer) and indexed for real. Each phrase is then searched three ways:
// exactly, with one typo (a letter swapped, dropped, doubled or replaced) and partially (its last two words, the
// last cut short). A query hits when its first result is the right video and its range overlaps the phrase's
// time on screen; MRR counts the first such result in the top 10, and the range IoU says how tightly the hits'
// ranges fit the phrases' times. The videos are kept in .cache/bench/.
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, openAsBlob, rmSync } from 'node:fs';
import { mkdir, rename } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { z } from 'zod';
import { createFfmpegContext, type FfmpegContext } from '../src/media/binaries.ts';
import { startOcularServe } from './ocular-serve.ts';
import { BENCH_CACHE_DIR, printTable, seededRandom, verdict } from './report.ts';

const run = promisify(execFile);

const KEY = 'ocu_bench_search_quality_0123456789';
const VIDEOS = 24;
const SECONDS = 30;
const TARGETS = { exact: 0.95, typo: 0.8, partial: 0.8 } as const;
type QueryKind = keyof typeof TARGETS;
const FONTS = ['/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf', '/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf'];
const QUIET = ['-nostdin', '-hide_banner', '-loglevel', 'error', '-y'];
/** Bumped whenever the generated set changes, so a stale cache is not reused. */
const SET_VERSION = 1;

// Words are shared between phrases (each colour, material and animal appears in several), so a query only hits
// when the whole phrase, not one of its words, decides the ranking.
const COLOURS = ['AMBER', 'COBALT', 'CRIMSON', 'GOLDEN', 'SILVER', 'VIOLET', 'SCARLET', 'IVORY', 'EMERALD', 'COPPER', 'INDIGO', 'SAFFRON'];
const MATERIALS = ['QUARTZ', 'MARBLE', 'GRANITE', 'CEDAR', 'VELVET', 'BRONZE', 'PORCELAIN', 'OBSIDIAN'];
const ANIMALS = ['FALCON', 'OTTER', 'HERON', 'LYNX', 'BADGER', 'CONDOR', 'PELICAN', 'JACKAL', 'WALRUS', 'MANTIS'];
const BACKGROUNDS = ['color=c=0x303030', 'color=c=0x1d3557', 'testsrc', 'testsrc2', 'smptehdbars', 'color=c=0x6b4226'];

interface Phrase {
  text: string;
  video: number;
  fromSeconds: number;
  toSeconds: number;
}

/** Two phrases per video, every phrase distinct and every (material, animal) pair too, shown in the two halves. */
function buildPhrases(): Phrase[] {
  const next = seededRandom(11);
  const pick = <T>(list: readonly T[]): T => list[Math.floor(next() * list.length)]!;
  const phrases: Phrase[] = [];
  const pairs = new Set<string>();
  for (let video = 0; video < VIDEOS; video++) {
    for (const half of [0, 1]) {
      let words: string[];
      do words = [pick(COLOURS), pick(MATERIALS), pick(ANIMALS)];
      while (pairs.has(`${words[1]} ${words[2]}`));
      pairs.add(`${words[1]} ${words[2]}`);
      const from = half * 15 + 2 + Math.floor(next() * 4);
      phrases.push({ text: words.join(' '), video, fromSeconds: from, toSeconds: from + 5 + Math.floor(next() * 3) });
    }
  }
  return phrases;
}

/** One edit in the phrase's longest word, of a kind that depends on the phrase: swap, drop, double or replace. */
function withTypo(text: string, index: number): string {
  const words = text.toLowerCase().split(' ');
  const longest = words.reduce((best, word, position) => (word.length > words[best]!.length ? position : best), 0);
  const word = words[longest]!;
  const at = Math.floor(word.length / 2);
  const edits = [
    () => word.slice(0, at - 1) + word[at] + word[at - 1] + word.slice(at + 1),
    () => word.slice(0, at) + word.slice(at + 1),
    () => word.slice(0, at) + word[at] + word.slice(at),
    () => word.slice(0, at) + (word[at] === 'e' ? 'a' : 'e') + word.slice(at + 1),
  ];
  words[longest] = edits[index % edits.length]!();
  return words.join(' ');
}

/** The phrase's last two words, the last one cut to two thirds (at least four letters): `quartz falc`. */
function partial(text: string): string {
  const [, second, third] = text.toLowerCase().split(' ');
  return `${second} ${third!.slice(0, Math.max(4, Math.ceil((third!.length * 2) / 3)))}`;
}

function videoArgs(output: string, font: string, video: number, phrases: readonly Phrase[]): string[] {
  const background = BACKGROUNDS[video % BACKGROUNDS.length]!;
  const size = video % 3 === 0 ? '1280x720' : '640x360';
  const height = size === '1280x720' ? 720 : 360;
  const draw = phrases
    .map((phrase, index) => {
      const fontSize = Math.round(height / (index === 0 ? 9 : 12));
      const y = index === 0 ? '(h-th)/2' : 'h-th-40';
      return (
        `drawtext=fontfile=${font}:text='${phrase.text}':fontsize=${fontSize}:fontcolor=white:box=1:boxcolor=black@0.7:` +
        `boxborderw=10:x=(w-tw)/2:y=${y}:enable='between(t,${phrase.fromSeconds},${phrase.toSeconds})'`
      );
    })
    .join(',');
  return [
    ...QUIET,
    ...['-f', 'lavfi', '-i', `${background}${background.includes('=') ? ':' : '='}size=${size}:rate=25:duration=${SECONDS}`],
    ...['-vf', `${draw},format=yuv420p`, '-c:v', 'libx264', '-preset', 'ultrafast', '-crf', '28', '-g', '50', output],
  ];
}

/** The generated videos, made once into the bench cache (about 20 s) and reused. */
async function benchVideos(context: FfmpegContext, phrases: readonly Phrase[]): Promise<string[]> {
  const dir = join(BENCH_CACHE_DIR, `video-search-v${SET_VERSION}`);
  const paths = Array.from({ length: VIDEOS }, (_, video) => join(dir, `titles-${String(video).padStart(2, '0')}.mp4`));
  if (paths.every((path) => existsSync(path))) return paths;
  const font = FONTS.find((candidate) => existsSync(candidate));
  if (font === undefined) throw new Error(`no TrueType font for drawtext (looked for ${FONTS.join(', ')}); install fonts-dejavu-core`);
  process.stdout.write(`video-search-quality: generating ${VIDEOS} videos in ${dir} (once)...\n`);
  await mkdir(dir, { recursive: true });
  for (const [video, path] of paths.entries()) {
    if (existsSync(path)) continue;
    const partialPath = `${path}.partial.mp4`;
    const own = phrases.filter((phrase) => phrase.video === video);
    await run(context.binaries.ffmpeg, videoArgs(partialPath, font, video, own), { maxBuffer: 16 * 1024 * 1024 });
    await rename(partialPath, path);
  }
  return paths;
}

const videoSchema = z.object({ video_id: z.string(), indexing_status: z.string(), error: z.string().optional() });
const searchSchema = z.object({
  results: z.array(z.object({ video_id: z.string(), start_timestamp: z.number(), end_timestamp: z.number() })),
});

/** Uploads every video, then waits until all are indexed; returns their ids in order and the wall time. */
async function indexAll(url: string, paths: readonly string[]): Promise<{ ids: string[]; seconds: number }> {
  const started = performance.now();
  const ids: string[] = [];
  for (const [index, path] of paths.entries()) {
    const body = new FormData();
    body.set('video_name', `titles-${index}`);
    body.set('file', await openAsBlob(path, { type: 'video/mp4' }), 'titles.mp4');
    const response = await fetch(`${url}/v1/videos/upload`, { method: 'POST', headers: { 'x-api-key': KEY }, body });
    if (response.status !== 200) throw new Error(`upload failed: HTTP ${response.status} ${await response.text()}`);
    ids.push(videoSchema.parse(await response.json()).video_id);
  }
  const deadline = Date.now() + 10 * 60_000;
  for (const id of ids) {
    for (;;) {
      const video = videoSchema.parse(await (await fetch(`${url}/v1/videos/${id}`, { headers: { 'x-api-key': KEY } })).json());
      if (video.indexing_status === 'indexed') break;
      if (video.indexing_status === 'failed') throw new Error(`indexing ${id} failed: ${video.error ?? ''}`);
      if (Date.now() > deadline) throw new Error('indexing took over 10 minutes');
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  }
  return { ids, seconds: (performance.now() - started) / 1000 };
}

/** Per kind of query: top-1 hits, the sum of reciprocal ranks, the sum of the hits' range IoU, what missed. */
type Tally = Record<QueryKind, { hits: number; reciprocalRanks: number; overlap: number; misses: string[] }>;

/** Searches every phrase three ways; `ids` are the indexed videos in generation order. */
async function evaluate(url: string, ids: readonly string[], phrases: readonly Phrase[]): Promise<Tally> {
  const tally = Object.fromEntries(
    (Object.keys(TARGETS) as QueryKind[]).map((kind) => [kind, { hits: 0, reciprocalRanks: 0, overlap: 0, misses: [] as string[] }]),
  ) as Tally;
  for (const [index, phrase] of phrases.entries()) {
    const queries: Record<QueryKind, string> = {
      exact: phrase.text.toLowerCase(),
      typo: withTypo(phrase.text, index),
      partial: partial(phrase.text),
    };
    for (const kind of Object.keys(queries) as QueryKind[]) {
      const response = await fetch(`${url}/v1/videos/search`, {
        method: 'POST',
        headers: { 'x-api-key': KEY, 'content-type': 'application/json' },
        body: JSON.stringify({ query: queries[kind], max_results: 10 }),
      });
      if (response.status !== 200) throw new Error(`search failed: HTTP ${response.status} ${await response.text()}`);
      const { results } = searchSchema.parse(await response.json());
      const rank = results.findIndex(
        (hit) => hit.video_id === ids[phrase.video] && hit.start_timestamp < phrase.toSeconds && hit.end_timestamp > phrase.fromSeconds,
      );
      if (rank === 0) {
        // How tightly the range fits the time the phrase was on screen (segments are 5-15 s, so below 1).
        const [hit] = results;
        const shared = Math.min(hit!.end_timestamp, phrase.toSeconds) - Math.max(hit!.start_timestamp, phrase.fromSeconds);
        const spanned = Math.max(hit!.end_timestamp, phrase.toSeconds) - Math.min(hit!.start_timestamp, phrase.fromSeconds);
        tally[kind].hits += 1;
        tally[kind].overlap += shared / spanned;
      } else tally[kind].misses.push(`"${queries[kind]}" (rank ${rank < 0 ? 'none' : rank + 1})`);
      if (rank >= 0) tally[kind].reciprocalRanks += 1 / (rank + 1);
    }
  }
  return tally;
}

export async function runVideoSearchQuality(): Promise<boolean> {
  const context = createFfmpegContext({ timeoutMs: 120_000, maxOutputBytes: 16 * 1024 * 1024 });
  const phrases = buildPhrases();
  const paths = await benchVideos(context, phrases);
  const dataDir = mkdtempSync(join(tmpdir(), 'ocular-bench-search-quality-'));
  // OCR only: the phrases are on screen, and the other analyzers would only make indexing slower.
  const server = await startOcularServe(dataDir, KEY, {
    indexing: { objects: { enabled: false }, labels: { enabled: false }, vad: { enabled: false }, speech: { enabled: false } },
  });
  try {
    const { ids, seconds } = await indexAll(server.url, paths);
    const tally = await evaluate(server.url, ids, phrases);
    let met = true;
    const rows = [['video-search-quality', 'top-1 hit rate', 'MRR', 'range IoU', 'target (top-1)']];
    for (const kind of Object.keys(TARGETS) as QueryKind[]) {
      const rate = tally[kind].hits / phrases.length;
      const ok = rate >= TARGETS[kind];
      met &&= ok;
      rows.push([
        `${kind} (${phrases.length} queries)`,
        rate.toFixed(3),
        (tally[kind].reciprocalRanks / phrases.length).toFixed(3),
        tally[kind].hits === 0 ? 'n/a' : (tally[kind].overlap / tally[kind].hits).toFixed(2),
        `>= ${TARGETS[kind]}: ${verdict(ok)}`,
      ]);
    }
    rows.push([`indexing ${VIDEOS} videos of ${SECONDS} s (OCR only)`, `${seconds.toFixed(1)} s`, '', '', '']);
    printTable(rows);
    for (const kind of Object.keys(TARGETS) as QueryKind[]) {
      if (tally[kind].misses.length > 0) process.stdout.write(`  ${kind} misses: ${tally[kind].misses.join(', ')}\n`);
    }
    return met;
  } finally {
    await server.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

if (import.meta.main) await runVideoSearchQuality();
