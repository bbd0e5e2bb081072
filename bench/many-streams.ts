// Many streams at once: 1,000 concurrent streamed chat completions through Ocular's /openai/v1/chat/completions to
// a slow upstream (each answer spread over 10 s), against the same 1,000 streams sent straight to that upstream in
// the same run. What it shows: whether Ocular queues streams (total time), how fast each starts (time to first
// byte), and what holding them costs (the Ocular process's peak RSS). Run alone with `node bench/many-streams.ts`.
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { Agent, request } from 'undici';
import { startChild } from './child-process.ts';
import { percentile, printTable, verdict } from './report.ts';

/** The targets. */
const TARGETS = {
  /** Ocular's total time for all streams over the same streams sent straight to the upstream. */
  totalRatio: 1.2,
  /** Peak resident memory of the Ocular process. */
  peakRssMiB: 500,
};

const PLAN = {
  streams: 1_000,
  /** How long the upstream takes to send each answer. */
  streamSeconds: 10,
  /** A stream not finished by then counts as failed; the bench stops by itself. */
  streamTimeoutMs: 60_000,
};

const BODY = JSON.stringify({
  model: 'bench',
  messages: [{ role: 'user', content: 'Tell a long story.' }],
  max_tokens: 64,
  stream: true,
});

interface StreamTiming {
  firstByteMs: number;
  totalMs: number;
}

/** One streamed request, read to its end; times from just before it is sent. */
async function timeStream(dispatcher: Agent, url: string, headers: Record<string, string>): Promise<StreamTiming> {
  const started = performance.now();
  const response = await request(url, {
    dispatcher,
    method: 'POST',
    headers,
    body: BODY,
    signal: AbortSignal.timeout(PLAN.streamTimeoutMs),
  });
  let firstByteMs = Number.NaN;
  let text = '';
  for await (const chunk of response.body) {
    if (Number.isNaN(firstByteMs)) firstByteMs = performance.now() - started;
    text += (chunk as Buffer).toString('utf8');
  }
  if (response.statusCode !== 200) throw new Error(`HTTP ${response.statusCode}: ${text.slice(0, 200)}`);
  if (!text.includes('[DONE]')) throw new Error('the stream ended without [DONE]');
  return { firstByteMs, totalMs: performance.now() - started };
}

interface RunResult {
  totalMs: number;
  firstByte: number[];
  failures: string[];
}

/** Starts every stream at once and waits for all of them. */
async function runStreams(url: string, headers: Record<string, string>): Promise<RunResult> {
  // One connection per stream, opened at once: the client side must not be what queues.
  const dispatcher = new Agent({ connections: PLAN.streams, keepAliveTimeout: 10_000 });
  const started = performance.now();
  try {
    const settled = await Promise.allSettled(Array.from({ length: PLAN.streams }, () => timeStream(dispatcher, url, headers)));
    const totalMs = performance.now() - started;
    const firstByte = settled.flatMap((result) => (result.status === 'fulfilled' ? [result.value.firstByteMs] : [])).sort((a, b) => a - b);
    const failures = settled.flatMap((result) => (result.status === 'rejected' ? [String(result.reason)] : []));
    return { totalMs, firstByte, failures };
  } finally {
    await dispatcher.close();
  }
}

/** Peak resident set size of a process, from /proc (Linux). */
async function peakRssMiB(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kilobytes = /^VmHWM:\s+(\d+) kB$/m.exec(status)?.[1];
  if (kilobytes === undefined) throw new Error(`no VmHWM line in /proc/${pid}/status`);
  return Number(kilobytes) / 1024;
}

const seconds = (ms: number): string => `${(ms / 1000).toFixed(2)} s`;
const milliseconds = (ms: number): string => `${ms.toFixed(1)} ms`;

export async function runManyStreams(): Promise<boolean> {
  const apiKey = `ocu_bench_${randomBytes(12).toString('hex')}`;
  process.stdout.write(
    `many-streams: ${PLAN.streams} concurrent streams, each answer spread over ${PLAN.streamSeconds} s by the upstream\n`,
  );
  const upstream = await startChild('the slow upstream', 'bench/fake-openai-upstream.ts', ['--stream-seconds', String(PLAN.streamSeconds)]);
  try {
    const ocular = await startChild('Ocular', 'bench/ocular-process.ts', [upstream.url], { env: { OCULAR_API_KEYS: apiKey } });
    try {
      const jsonHeaders = { 'content-type': 'application/json' };
      const direct = await runStreams(`${upstream.url}/v1/chat/completions`, jsonHeaders);
      const through = await runStreams(`${ocular.url}/openai/v1/chat/completions`, { ...jsonHeaders, authorization: `Bearer ${apiKey}` });
      const rssMiB = await peakRssMiB(ocular.pid);

      const rows = [['', 'total', 'first byte p50', 'first byte p99', 'failed']];
      for (const [name, run] of [
        ['direct', direct],
        ['Ocular', through],
      ] as const) {
        rows.push([
          name,
          seconds(run.totalMs),
          milliseconds(percentile(run.firstByte, 50)),
          milliseconds(percentile(run.firstByte, 99)),
          String(run.failures.length),
        ]);
      }
      printTable(rows);
      for (const failure of new Set([...direct.failures, ...through.failures].slice(0, 5))) process.stdout.write(`  failure: ${failure}\n`);

      const ratio = through.totalMs / direct.totalMs;
      const upstreamRatio = through.totalMs / (PLAN.streamSeconds * 1000);
      const totalMet = ratio <= TARGETS.totalRatio && through.failures.length === 0;
      const rssMet = rssMiB < TARGETS.peakRssMiB;
      process.stdout.write(
        `  total through Ocular: ${ratio.toFixed(3)}x the direct run, ${upstreamRatio.toFixed(3)}x the upstream's own ${PLAN.streamSeconds} s ` +
          `(target <= ${TARGETS.totalRatio}x: ${verdict(totalMet)})\n` +
          `  Ocular peak RSS: ${rssMiB.toFixed(0)} MiB (target < ${TARGETS.peakRssMiB} MiB: ${verdict(rssMet)})\n`,
      );
      return totalMet && rssMet;
    } finally {
      await ocular.stop();
    }
  } finally {
    await upstream.stop();
  }
}

if (import.meta.main) await runManyStreams();
