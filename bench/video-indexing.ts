// Indexing throughput: a generated 10-minute 720p video (scenes of test patterns, a fractal zoom, a cellular
// automaton and title cards with text, with a soundtrack) is uploaded to an Ocular server running as its own
// process (`node bin/ocular.js serve`, default analyzers) and indexed end to end. Prints the wall time from
// the upload to `indexed`, the realtime factor (video seconds per wall second), the server's peak RSS, and a
// bare ffmpeg decode of the same file in the same run as the baseline. The video is cached in the temp dir.
import { execFile, spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, openAsBlob, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { mkdir, mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { createParser } from 'eventsource-parser';
import { createFfmpegContext, type FfmpegContext } from '../src/media/binaries.ts';
import { BENCH_CACHE_DIR, printTable, verdict } from './report.ts';

const run = promisify(execFile);

const PLAN = {
  seconds: 600,
  width: 1280,
  height: 720,
  fps: 30,
  /** The target: video seconds indexed per wall-clock second, default analyzers, 2 cores. */
  targetRealtime: 10,
};

const QUIET = ['-nostdin', '-hide_banner', '-loglevel', 'error', '-y'];
const FONTS = ['/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf', '/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf'];
const KEY = 'ocu_bench_indexing_key_0123456789';
const SHARED_MODELS = fileURLToPath(new URL('../../shared/models/', import.meta.url));
/** Shared test model file -> where the server's model manager keeps it under `<data>/models`. */
const SHARED_WEIGHTS: ReadonlyArray<[string, string]> = [
  ['silero-vad/silero_vad.onnx', 'silero-vad/silero_vad.onnx'],
  ['mobilenetv2-int8/mobilenetv2-12-int8.onnx', 'mobilenetv2/mobilenetv2-12-int8.onnx'],
  ['mobilenetv2-int8/imagenet-simple-labels.json', 'mobilenetv2/imagenet-simple-labels.json'],
];

/** Which default analyzers have their weights in the data dir (OCR and objects ship in npm). */
function analyzersPresent(dataDir: string): string {
  const present = ['OCR', 'objects'];
  if (existsSync(join(dataDir, 'models', SHARED_WEIGHTS[0]![1]))) present.push('voice activity');
  if (existsSync(join(dataDir, 'models', SHARED_WEIGHTS[1]![1]))) present.push('scene labels');
  return present.join(', ');
}

/**
 * A 90-second reel of seven scenes, each a different kind of picture: moving pattern with a running clock,
 * still colour bars, a slow fractal zoom, a title card whose second line appears after 6 s, a cellular
 * automaton, still RGB bars, and a chapter card with a caption box.
 */
function reelArgs(output: string, font: string): string[] {
  const { width: w, height: h, fps } = PLAN;
  const size = `size=${w}x${h}:rate=${fps}`;
  const title = `drawtext=fontfile=${font}:text='Quarterly results':fontsize=64:fontcolor=white:x=(w-tw)/2:y=h/3,drawtext=fontfile=${font}:text='Revenue up 12 percent':fontsize=40:fontcolor=yellow:x=(w-tw)/2:y=h/2:enable='gte(t,6)'`;
  const chapter = `drawtext=fontfile=${font}:text='Chapter 2 - The harbour':fontsize=56:fontcolor=white:box=1:boxcolor=black@0.6:x=40:y=h-120`;
  return [
    ...QUIET,
    ...['-f', 'lavfi', '-i', `testsrc2=${size}:duration=14`],
    ...['-f', 'lavfi', '-i', `smptebars=${size}:duration=9`],
    ...['-f', 'lavfi', '-i', `mandelbrot=${size}`],
    ...['-f', 'lavfi', '-i', `color=c=0x203040:${size}:duration=16`],
    ...['-f', 'lavfi', '-i', `life=${size}:mold=10:ratio=0.1:death_color=#101010:life_color=#60a060`],
    ...['-f', 'lavfi', '-i', `rgbtestsrc=${size}:duration=7`],
    ...['-f', 'lavfi', '-i', `color=c=0x402020:${size}:duration=12`],
    ...['-f', 'lavfi', '-i', 'sine=frequency=300:sample_rate=44100:duration=90'],
    '-filter_complex',
    `[2:v]trim=duration=15,setpts=PTS-STARTPTS[m];[4:v]trim=duration=17,setpts=PTS-STARTPTS[l];[3:v]${title}[c];[6:v]${chapter}[d];` +
      '[0:v][1:v][m][c][l][5:v][d]concat=n=7:v=1:a=0,format=yuv420p[v]',
    ...['-map', '[v]', '-map', '7:a', '-c:v', 'libx264', '-preset', 'ultrafast', '-crf', '26', '-g', String(fps * 2)],
    ...['-c:a', 'aac', '-b:a', '64k', output],
  ];
}

/** The cached 10-minute video: the reel repeated, joined without re-encoding (about 30 s to generate once). */
async function benchVideo(context: FfmpegContext): Promise<string> {
  const path = join(BENCH_CACHE_DIR, `ocular-bench-indexing-reel-${PLAN.width}x${PLAN.height}-${PLAN.fps}fps-${PLAN.seconds}s.mp4`);
  if (existsSync(path)) return path;
  const font = FONTS.find((candidate) => existsSync(candidate));
  if (font === undefined) throw new Error(`no TrueType font for drawtext (looked for ${FONTS.join(', ')}); install fonts-dejavu-core`);
  process.stdout.write(`video-indexing: generating ${path} (once)...\n`);
  await mkdir(BENCH_CACHE_DIR, { recursive: true });
  // Next to the cache, so the finished file is renamed into it rather than copied across file systems.
  const work = await mkdtemp(join(BENCH_CACHE_DIR, 'generating-'));
  try {
    const reel = join(work, 'reel.mp4');
    await run(context.binaries.ffmpeg, reelArgs(reel, font), { maxBuffer: 16 * 1024 * 1024 });
    const list = join(work, 'list.txt');
    await writeFile(list, `file '${reel}'\n`.repeat(Math.ceil(PLAN.seconds / 90)));
    const joined = join(work, 'joined.mp4');
    await run(context.binaries.ffmpeg, [
      ...QUIET,
      '-f',
      'concat',
      '-safe',
      '0',
      '-i',
      list,
      '-t',
      String(PLAN.seconds),
      '-c',
      'copy',
      joined,
    ]);
    await rename(joined, path);
    return path;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** Seconds a bare single-process decode of the video stream takes: the floor for anything that looks at every frame. */
async function bareDecodeSeconds(context: FfmpegContext, path: string): Promise<number> {
  const started = performance.now();
  await run(context.binaries.ffmpeg, [...QUIET, '-i', path, '-an', '-f', 'null', '-'], { maxBuffer: 16 * 1024 * 1024 });
  return (performance.now() - started) / 1000;
}

/** The peak resident set of a process, in MiB (Linux `/proc`); undefined elsewhere. */
function peakRssMiB(pid: number): number | undefined {
  try {
    const match = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) / 1024 : undefined;
  } catch {
    return undefined;
  }
}

async function startServer(dataDir: string): Promise<{ url: string; pid: number; stop(): Promise<void> }> {
  const bin = fileURLToPath(new URL('../bin/ocular.js', import.meta.url));
  // An empty config: the default analyzers, and no embedded chat model to download in the background.
  const configPath = join(dataDir, 'ocular.config.json');
  writeFileSync(configPath, '{}\n');
  // The weights the server would pull for voice activity and scene labels, from the shared test models when
  // this machine has them (no network here), so every default analyzer runs.
  for (const [source, target] of SHARED_WEIGHTS) {
    const from = join(SHARED_MODELS, source);
    if (!existsSync(from)) continue;
    mkdirSync(join(dataDir, 'models', dirname(target)), { recursive: true });
    copyFileSync(from, join(dataDir, 'models', target));
  }
  const child = spawn(process.execPath, [bin, 'serve', '--host', '127.0.0.1', '--port', '0', '--data', dataDir], {
    env: { ...process.env, OCULAR_API_KEYS: KEY, OCULAR_LOG_LEVEL: 'info', OCULAR_CONFIG: configPath },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the server did not start in 60 s')), 60_000);
    createInterface({ input: child.stderr! }).on('line', (line) => {
      if (!line.includes('ocular is listening')) return;
      clearTimeout(timer);
      resolve((JSON.parse(line) as { url: string }).url);
    });
    child.once('exit', (code) => reject(new Error(`the server exited with ${code}`)));
  });
  return {
    url,
    pid: child.pid!,
    stop: async () => {
      child.kill('SIGTERM');
      await new Promise((resolve) => child.once('exit', resolve));
    },
  };
}

/** Follows `/events` until indexing ends, printing each stage change and every 10 %. */
async function followIndexing(url: string, videoId: string): Promise<{ status: string; error?: string }> {
  const response = await fetch(`${url}/v1/videos/${videoId}/events`, { headers: { 'x-api-key': KEY } });
  let last: { indexing_status: string; stage: string | null; indexing_progress: number; error?: string } | undefined;
  let printed = { stage: '', tenth: -1 };
  const parser = createParser({
    onEvent: (event) => {
      last = JSON.parse(event.data) as NonNullable<typeof last>;
      const tenth = Math.floor(last.indexing_progress * 10);
      if (last.stage !== printed.stage || tenth !== printed.tenth) {
        process.stdout.write(`video-indexing:   ${last.stage ?? last.indexing_status} ${(last.indexing_progress * 100).toFixed(0)}%\n`);
        printed = { stage: last.stage ?? '', tenth };
      }
    },
  });
  const decoder = new TextDecoder();
  const reader = response.body!.getReader();
  for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read())
    parser.feed(decoder.decode(chunk.value, { stream: true }));
  return { status: last?.indexing_status ?? 'unknown', ...(last?.error === undefined ? {} : { error: last.error }) };
}

/** How long the idle latency baseline is sampled, and how often the API is asked while probing. */
const IDLE_PROBE_MS = 5_000;
const PROBE_INTERVAL_MS = 50;

/**
 * Latencies (ms) of `GET /v1/videos/{id}` asked every PROBE_INTERVAL_MS until `signal` aborts: whether the API
 * stays responsive while indexing keeps both cores busy.
 */
async function probeLatency(url: string, videoId: string, signal: AbortSignal): Promise<number[]> {
  const samples: number[] = [];
  while (!signal.aborted) {
    const started = performance.now();
    const response = await fetch(`${url}/v1/videos/${videoId}`, { headers: { 'x-api-key': KEY } });
    await response.arrayBuffer();
    samples.push(performance.now() - started);
    await new Promise((resolve) => setTimeout(resolve, PROBE_INTERVAL_MS));
  }
  return samples;
}

function summarize(samples: number[]): { p50: string; p99: string; max: string } {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (fraction: number): string => (sorted[Math.min(sorted.length - 1, Math.floor(fraction * sorted.length))] ?? 0).toFixed(1);
  return { p50: at(0.5), p99: at(0.99), max: (sorted.at(-1) ?? 0).toFixed(1) };
}

export async function runVideoIndexing(): Promise<void> {
  const context = createFfmpegContext({ timeoutMs: 600_000, maxOutputBytes: 64 * 1024 * 1024 });
  const video = await benchVideo(context);
  const decodeSeconds = await bareDecodeSeconds(context, video);
  const dataDir = mkdtempSync(join(tmpdir(), 'ocular-bench-indexing-'));
  const server = await startServer(dataDir);
  try {
    const body = new FormData();
    body.set('video_name', 'bench');
    body.set('index', 'true');
    body.set('file', await openAsBlob(video, { type: 'video/mp4' }), 'bench.mp4');
    const started = performance.now();
    const response = await fetch(`${server.url}/v1/videos/upload`, { method: 'POST', headers: { 'x-api-key': KEY }, body });
    if (response.status !== 200) throw new Error(`upload failed: HTTP ${response.status} ${await response.text()}`);
    const uploadSeconds = (performance.now() - started) / 1000;
    const { video_id: videoId } = (await response.json()) as { video_id: string };
    const probing = new AbortController();
    const busy = probeLatency(server.url, videoId, probing.signal);
    const outcome = await followIndexing(server.url, videoId);
    const wallSeconds = (performance.now() - started) / 1000;
    probing.abort();
    const busyLatency = summarize(await busy);
    const idleLatency = summarize(await probeLatency(server.url, videoId, AbortSignal.timeout(IDLE_PROBE_MS)));
    if (outcome.status !== 'indexed') throw new Error(`indexing ended ${outcome.status}: ${outcome.error ?? ''}`);
    const rss = peakRssMiB(server.pid);
    const realtime = PLAN.seconds / wallSeconds;
    printTable([
      ['video-indexing', 'value'],
      ['video', `${PLAN.seconds} s, ${PLAN.width}x${PLAN.height} ${PLAN.fps} fps H.264 + AAC`],
      ['analyzers', analyzersPresent(dataDir)],
      ['upload (part of wall)', `${uploadSeconds.toFixed(1)} s`],
      ['wall, upload to indexed', `${wallSeconds.toFixed(1)} s`],
      ['realtime factor', `${realtime.toFixed(1)}x (target >= ${PLAN.targetRealtime}x: ${verdict(realtime >= PLAN.targetRealtime)})`],
      ['bare ffmpeg decode (baseline)', `${decodeSeconds.toFixed(1)} s (indexing = ${(wallSeconds / decodeSeconds).toFixed(2)}x a decode)`],
      ['server peak RSS', rss === undefined ? 'n/a (no /proc)' : `${rss.toFixed(0)} MiB (ffmpeg children not included)`],
      ['GET /v1/videos/{id} while indexing', `p50 ${busyLatency.p50} ms, p99 ${busyLatency.p99} ms, max ${busyLatency.max} ms`],
      ['the same, idle (baseline)', `p50 ${idleLatency.p50} ms, p99 ${idleLatency.p99} ms, max ${idleLatency.max} ms`],
    ]);
  } finally {
    await server.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await runVideoIndexing();
