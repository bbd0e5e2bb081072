// Run with `npm run bench` from the repository root (about twenty minutes, most of it the 1M-vector ANN build;
// loopback only, nothing leaves the machine).
// Runs every benchmark below in sequence and prints its table. The exit status is non-zero when a bench errors, and
// with `--strict` also when any printed target is MISSED. `npm run bench -- --cpu-prof-dir DIR` profiles the Ocular
// process. Generated videos are kept in .cache/bench/ (see report.ts).
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { runAnn } from './ann.ts';
import { runGatewayOverhead } from './gateway-overhead.ts';
import { runLlamaThroughput } from './llama-throughput.ts';
import { runManyStreams } from './many-streams.ts';
import { missedTargets } from './report.ts';
import { runVideoIndexing } from './video-indexing.ts';
import { runVideoSampling } from './video-sampling.ts';
import { runVideoSearchLatency } from './video-search-latency.ts';
import { runVideoSearchQuality } from './video-search-quality.ts';
import { runVideoQaLatency } from './video-qa-latency.ts';
import { runScaleOut } from './scale-out.ts';

const { values } = parseArgs({ options: { 'cpu-prof-dir': { type: 'string' }, strict: { type: 'boolean', default: false } } });
const profileDir = values['cpu-prof-dir'] === undefined ? undefined : resolve(values['cpu-prof-dir']);

// A bench's own result (some return whether their targets were met) is not used: verdict() counts the misses.
const benches: ReadonlyArray<{ name: string; run: () => Promise<unknown> }> = [
  { name: 'gateway-overhead', run: () => runGatewayOverhead({ cpuProfileDir: profileDir }) },
  { name: 'many-streams', run: () => runManyStreams() },
  { name: 'video-sampling', run: () => runVideoSampling() },
  { name: 'llama-throughput', run: () => runLlamaThroughput() },
  { name: 'video-indexing', run: () => runVideoIndexing() },
  { name: 'video-search-quality', run: () => runVideoSearchQuality() },
  { name: 'video-search-latency', run: () => runVideoSearchLatency() },
  { name: 'video-qa-latency', run: () => runVideoQaLatency() },
  { name: 'scale-out', run: () => runScaleOut() },
  { name: 'ann', run: () => runAnn() },
];

const missedBy: string[] = [];
for (const bench of benches) {
  const started = performance.now();
  const missedBefore = missedTargets();
  try {
    await bench.run();
    process.stdout.write(`${bench.name}: done in ${((performance.now() - started) / 1000).toFixed(1)} s\n\n`);
  } catch (error) {
    process.stderr.write(`${bench.name}: failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exitCode = 1;
  }
  const missed = missedTargets() - missedBefore;
  if (missed > 0) missedBy.push(`${bench.name} (${missed})`);
}
if (missedBy.length > 0) {
  process.stdout.write(`targets MISSED: ${missedBy.join(', ')}${values.strict ? '' : ' (exit status unaffected without --strict)'}\n`);
  if (values.strict) process.exitCode = 1;
}
