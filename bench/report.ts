// Printing shared by the benchmarks: aligned tables and target verdicts; and where their generated inputs are kept.
import { fileURLToPath } from 'node:url';

/**
 * Generated inputs (the 10-minute videos, about 900 MB) are kept here between runs and reused: `.cache/bench/` in
 * the repository (git ignores it). `rm -rf .cache/bench` frees the space; the next run generates them again.
 */
export const BENCH_CACHE_DIR = fileURLToPath(new URL('../.cache/bench/', import.meta.url));

let missed = 0;

/** `met` or `MISSED` for a printed target; misses are counted for `npm run bench -- --strict`. */
export function verdict(met: boolean): string {
  if (!met) missed += 1;
  return met ? 'met' : 'MISSED';
}

/** Targets printed as `MISSED` so far in this process. */
export const missedTargets = (): number => missed;

export const formatRate = (value: number): string => Math.round(value).toLocaleString('en-US');

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/** Prints rows as an indented table: the first `leftColumns` columns left-aligned, the rest right-aligned. */
export function printTable(rows: string[][], leftColumns = 1): void {
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]?.length ?? 0)));
  for (const row of rows) {
    const cells = row.map((cell, column) => (column < leftColumns ? cell.padEnd(widths[column]!) : cell.padStart(widths[column]!)));
    process.stdout.write(`  ${cells.join('   ')}\n`);
  }
}

/** Nearest-rank percentile of an ascending array. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

/** A seeded generator of numbers in [0, 1) (mulberry32), so every run measures the same generated data. */
export function seededRandom(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
