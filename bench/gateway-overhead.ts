// What Ocular adds on top of an OpenAI-compatible upstream: the same requests sent straight to a fake upstream
// and through Ocular's /openai/v1/chat/completions (auth, validation, canonical conversion, provider call,
// re-encoding). The upstream and Ocular each run in their own process; the load generator runs in this one.
import { randomBytes } from 'node:crypto';
import autocannon from 'autocannon';
import { createParser } from 'eventsource-parser';
import { Client } from 'undici';
import { z } from 'zod';
import { startChild, type ChildHandle } from './child-process.ts';
import { formatRate, percentile, printTable, verdict } from './report.ts';

export interface GatewayOverheadOptions {
  /** Runs the Ocular process under `node --cpu-prof` and leaves the profile in this directory. */
  cpuProfileDir?: string | undefined;
}

/** The targets. */
const TARGETS = {
  /** Ocular's p50 minus the upstream's, one connection, non-streamed. */
  addedP50Ms: 0.3,
  /** Ocular's req/s over the upstream's, 32 connections, non-streamed. */
  throughputRatio: 0.35,
  /** Ocular's median time to first byte minus the upstream's, streamed. */
  firstByteOverheadMs: 1,
};

/**
 * Every phase is bounded by time or count; the whole bench stays well under 90 s. Load phases alternate
 * direct and Ocular in short rounds, so that a machine that slows down for a while penalises both alike.
 */
const PLAN = {
  warmupSeconds: 3,
  warmupConnections: 8,
  warmupStreams: 100,
  rounds: 3,
  latencySeconds: 3,
  throughputSeconds: 3,
  throughputConnections: 32,
  firstByteSamples: 400,
};

const UPSTREAM_PATH = '/v1/chat/completions';
const OCULAR_PATH = '/openai/v1/chat/completions';

const MESSAGES = [{ role: 'user', content: 'Write one short sentence about benchmarks.' }];
const BODY = JSON.stringify({ model: 'bench', messages: MESSAGES, max_tokens: 64 });
const STREAM_BODY = JSON.stringify({
  model: 'bench',
  messages: MESSAGES,
  max_tokens: 64,
  stream: true,
  stream_options: { include_usage: true },
});

// ---- statistics ----

const ascending = (values: number[]): number[] => values.sort((a, b) => a - b);

// ---- load ----

interface LoadRun {
  requestsPerSecond: number;
  latencies: number[];
}

interface LoadResult {
  requestsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
}

/**
 * Runs autocannon for a fixed time. Latencies are each response's own time: autocannon's histograms round to
 * whole milliseconds, too coarse for a 0.3 ms target.
 */
async function runLoad(
  label: string,
  url: string,
  headers: Record<string, string>,
  connections: number,
  seconds: number,
): Promise<LoadRun> {
  const latencies: number[] = [];
  const instance = autocannon({ url, method: 'POST', headers, body: BODY, connections, pipelining: 1, duration: seconds, timeout: 10 });
  instance.on('response', (_client, _status, _bytes, responseTime) => {
    latencies.push(responseTime);
  });
  const result = await instance;
  if (result.non2xx > 0 || result.errors > 0 || result.timeouts > 0) {
    throw new Error(`${label}: ${result.non2xx} non-2xx responses, ${result.errors} errors, ${result.timeouts} timeouts`);
  }
  if (latencies.length === 0) throw new Error(`${label}: no response completed`);
  return { requestsPerSecond: latencies.length / result.duration, latencies };
}

type PathName = 'direct' | 'bare proxy' | 'Ocular';
const PATHS: readonly PathName[] = ['direct', 'bare proxy', 'Ocular'];

/** Alternates the paths round by round; req/s is the median round, percentiles are over every response. */
async function compareLoad(
  label: string,
  urls: Record<PathName, string>,
  headers: Record<string, string>,
  connections: number,
  seconds: number,
): Promise<Record<PathName, LoadResult>> {
  const runs: Record<PathName, LoadRun[]> = { direct: [], 'bare proxy': [], Ocular: [] };
  for (let round = 1; round <= PLAN.rounds; round++) {
    for (const path of PATHS)
      runs[path].push(await runLoad(`${label}, ${path}, round ${round}`, urls[path], headers, connections, seconds));
  }
  const summarise = (path: LoadRun[]): LoadResult => {
    const latencies = ascending(path.flatMap((run) => run.latencies));
    return {
      requestsPerSecond: percentile(ascending(path.map((run) => run.requestsPerSecond)), 50),
      p50Ms: percentile(latencies, 50),
      p99Ms: percentile(latencies, 99),
    };
  };
  return { direct: summarise(runs.direct), 'bare proxy': summarise(runs['bare proxy']), Ocular: summarise(runs.Ocular) };
}

interface StreamTiming {
  firstByteMs: number;
  lastByteMs: number;
  text: string;
}

/** One streamed request on a kept-alive connection: time to the first body byte and to the end of the stream. */
async function timeStream(client: Client, path: string, headers: Record<string, string>): Promise<StreamTiming> {
  const started = performance.now();
  const response = await client.request({ path, method: 'POST', headers, body: STREAM_BODY });
  let firstByteMs: number | undefined;
  const chunks: Buffer[] = [];
  for await (const chunk of response.body) {
    firstByteMs ??= performance.now() - started;
    chunks.push(chunk as Buffer);
  }
  const lastByteMs = performance.now() - started;
  const text = Buffer.concat(chunks).toString('utf8');
  if (response.statusCode !== 200) throw new Error(`streamed request to ${path} returned ${response.statusCode}: ${text.slice(0, 300)}`);
  if (firstByteMs === undefined) throw new Error(`streamed request to ${path} returned an empty body`);
  return { firstByteMs, lastByteMs, text };
}

// ---- sanity checks: both paths must answer the same text, or the figures compare different work ----

const completionSchema = z.object({ choices: z.array(z.object({ message: z.object({ content: z.string() }) })).min(1) });
const chunkSchema = z.object({ choices: z.array(z.object({ delta: z.object({ content: z.string().nullish() }).nullish() })) });

function streamedText(sse: string): { text: string; done: boolean } {
  let text = '';
  let done = false;
  const parser = createParser({
    onEvent: (event) => {
      if (event.data === '[DONE]') {
        done = true;
        return;
      }
      const parsed = chunkSchema.safeParse(JSON.parse(event.data));
      if (parsed.success) for (const choice of parsed.data.choices) text += choice.delta?.content ?? '';
    },
  });
  parser.feed(sse);
  return { text, done };
}

async function checkAnswers(direct: Client, ocular: Client, headers: Record<string, string>): Promise<void> {
  const answer = async (client: Client, path: string): Promise<string> => {
    const response = await client.request({ path, method: 'POST', headers, body: BODY });
    const text = await response.body.text();
    if (response.statusCode !== 200) throw new Error(`POST ${path} returned ${response.statusCode}: ${text.slice(0, 300)}`);
    return completionSchema.parse(JSON.parse(text)).choices[0]!.message.content;
  };
  const expected = await answer(direct, UPSTREAM_PATH);
  const viaOcular = await answer(ocular, OCULAR_PATH);
  if (viaOcular !== expected) throw new Error(`Ocular answered ${JSON.stringify(viaOcular)}, the upstream ${JSON.stringify(expected)}`);
  for (const [name, client, path] of [
    ['upstream', direct, UPSTREAM_PATH],
    ['Ocular', ocular, OCULAR_PATH],
  ] as const) {
    const streamed = streamedText((await timeStream(client, path, headers)).text);
    if (streamed.text !== expected || !streamed.done) throw new Error(`the ${name} stream did not carry the expected text and [DONE]`);
  }
}

// ---- report ----

const formatMs = (value: number): string => value.toFixed(3);
const loadCells = (result: LoadResult): string[] => [formatRate(result.requestsPerSecond), formatMs(result.p50Ms), formatMs(result.p99Ms)];

/** p50 and p99 of first-byte and last-byte times, for one row of the streaming table. */
const streamCells = (firstByte: readonly number[], lastByte: readonly number[]): string[] =>
  [firstByte, firstByte, lastByte, lastByte].map((sorted, index) => formatMs(percentile(sorted, index % 2 === 0 ? 50 : 99)));

/** The first two columns (scenario, path) are labels. */
const printRows = (rows: string[][]): void => printTable(rows, 2);

// ---- the bench ----

export async function runGatewayOverhead(options: GatewayOverheadOptions = {}): Promise<void> {
  const apiKey = `ocu_bench_${randomBytes(24).toString('base64url')}`;
  const headers = { 'content-type': 'application/json', authorization: `Bearer ${apiKey}` };
  const children: ChildHandle[] = [];
  const clients: Client[] = [];
  try {
    const upstream = await startChild('the fake upstream', 'bench/fake-openai-upstream.ts', []);
    children.push(upstream);
    const nodeArgs = options.cpuProfileDir === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${options.cpuProfileDir}`];
    const ocular = await startChild('Ocular', 'bench/ocular-process.ts', [upstream.url], { nodeArgs, env: { OCULAR_API_KEYS: apiKey } });
    children.push(ocular);
    const bare = await startChild('the bare proxy', 'bench/bare-proxy.ts', [upstream.url]);
    children.push(bare);
    const directUrl = upstream.url + UPSTREAM_PATH;
    const ocularUrl = ocular.url + OCULAR_PATH;

    const direct = new Client(upstream.url, { pipelining: 1 });
    const gateway = new Client(ocular.url, { pipelining: 1 });
    const bareClient = new Client(bare.url, { pipelining: 1 });
    clients.push(direct, gateway, bareClient);
    await checkAnswers(direct, gateway, headers);

    process.stdout.write(`gateway-overhead: warming up (${PLAN.warmupSeconds} s each)...\n`);
    await runLoad('warm-up direct', directUrl, headers, PLAN.warmupConnections, PLAN.warmupSeconds);
    await runLoad('warm-up Ocular', ocularUrl, headers, PLAN.warmupConnections, PLAN.warmupSeconds);
    await runLoad('warm-up bare proxy', bare.url + OCULAR_PATH, headers, PLAN.warmupConnections, PLAN.warmupSeconds);
    for (let index = 0; index < PLAN.warmupStreams; index++) {
      await timeStream(direct, UPSTREAM_PATH, headers);
      await timeStream(gateway, OCULAR_PATH, headers);
    }

    const urls: Record<PathName, string> = { direct: directUrl, 'bare proxy': bare.url + OCULAR_PATH, Ocular: ocularUrl };
    process.stdout.write(`gateway-overhead: 1 connection, ${PLAN.rounds} rounds of ${PLAN.latencySeconds} s each way...\n`);
    const single = await compareLoad('1 connection', urls, headers, 1, PLAN.latencySeconds);
    process.stdout.write(
      `gateway-overhead: ${PLAN.throughputConnections} connections, ${PLAN.rounds} rounds of ${PLAN.throughputSeconds} s each way...\n`,
    );
    const loaded = await compareLoad(
      `${PLAN.throughputConnections} connections`,
      urls,
      headers,
      PLAN.throughputConnections,
      PLAN.throughputSeconds,
    );

    process.stdout.write(`gateway-overhead: streaming, ${PLAN.firstByteSamples} sequential requests each, interleaved...\n`);
    const streamDirect: StreamTiming[] = [];
    const streamOcular: StreamTiming[] = [];
    const streamBare: StreamTiming[] = [];
    for (let index = 0; index < PLAN.firstByteSamples; index++) {
      streamDirect.push(await timeStream(direct, UPSTREAM_PATH, headers));
      streamBare.push(await timeStream(bareClient, OCULAR_PATH, headers));
      streamOcular.push(await timeStream(gateway, OCULAR_PATH, headers));
    }
    const firstByte = (timings: StreamTiming[]) => ascending(timings.map((timing) => timing.firstByteMs));
    const lastByte = (timings: StreamTiming[]) => ascending(timings.map((timing) => timing.lastByteMs));
    const [firstDirect, firstOcular, firstBare, lastDirect, lastOcular, lastBare] = [
      firstByte(streamDirect),
      firstByte(streamOcular),
      firstByte(streamBare),
      lastByte(streamDirect),
      lastByte(streamOcular),
      lastByte(streamBare),
    ];

    const addedP50 = single.Ocular.p50Ms - single.direct.p50Ms;
    const throughputRatio = loaded.Ocular.requestsPerSecond / loaded.direct.requestsPerSecond;
    const firstByteOverhead = percentile(firstOcular, 50) - percentile(firstDirect, 50);
    const bareAddedP50 = single['bare proxy'].p50Ms - single.direct.p50Ms;
    const bareThroughputRatio = loaded['bare proxy'].requestsPerSecond / loaded.direct.requestsPerSecond;
    const bareFirstByteOverhead = percentile(firstBare, 50) - percentile(firstDirect, 50);

    process.stdout.write('\nGateway overhead: POST chat/completions, loopback, Ocular with auth on and logs silent\n\n');
    printRows([
      ['scenario', 'path', 'req/s', 'p50 ms', 'p99 ms'],
      ['1 connection, non-stream', 'direct', ...loadCells(single.direct)],
      ['', 'bare proxy', ...loadCells(single['bare proxy'])],
      ['', 'Ocular', ...loadCells(single.Ocular)],
      [`${PLAN.throughputConnections} connections, non-stream`, 'direct', ...loadCells(loaded.direct)],
      ['', 'bare proxy', ...loadCells(loaded['bare proxy'])],
      ['', 'Ocular', ...loadCells(loaded.Ocular)],
    ]);
    process.stdout.write('\n');
    printRows([
      [`stream, ${PLAN.firstByteSamples} sequential`, 'path', 'first byte p50', 'p99', 'last byte p50', 'p99'],
      ['', 'direct', ...streamCells(firstDirect, lastDirect)],
      ['', 'bare proxy', ...streamCells(firstBare, lastBare)],
      ['', 'Ocular', ...streamCells(firstOcular, lastOcular)],
    ]);
    process.stdout.write('\n');
    printRows([
      ['target', 'Ocular', 'bare proxy', 'goal', 'Ocular result'],
      [
        'added p50, 1 connection',
        `${formatMs(addedP50)} ms`,
        `${formatMs(bareAddedP50)} ms`,
        `<= ${TARGETS.addedP50Ms} ms`,
        verdict(addedP50 <= TARGETS.addedP50Ms),
      ],
      [
        `throughput, ${PLAN.throughputConnections} connections`,
        `${throughputRatio.toFixed(2)}x direct`,
        `${bareThroughputRatio.toFixed(2)}x direct`,
        `>= ${TARGETS.throughputRatio}x`,
        verdict(throughputRatio >= TARGETS.throughputRatio),
      ],
      [
        'stream first-byte overhead',
        `${formatMs(firstByteOverhead)} ms`,
        `${formatMs(bareFirstByteOverhead)} ms`,
        `< ${TARGETS.firstByteOverheadMs} ms`,
        verdict(firstByteOverhead < TARGETS.firstByteOverheadMs),
      ],
    ]);
    process.stdout.write(
      '"bare proxy" is a pass-through with no auth, validation or conversion (bench/bare-proxy.ts): the cost of the\n' +
        'extra HTTP hop alone on this machine, the floor for any Node.js gateway.\n\n',
    );
  } finally {
    await Promise.allSettled(clients.map((client) => client.close()));
    // Ocular first: it holds connections to the upstream, and its profile is written as it exits.
    for (const child of children.reverse()) await child.stop();
  }
}
