import type { DownloadProgress } from './download-file.ts';

const UNITS = ['B', 'kB', 'MB', 'GB', 'TB'];

/** `436.8 MB`: decimal units, as Hugging Face shows file sizes. */
export function formatBytes(bytes: number): string {
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < UNITS.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${UNITS[unit]}`;
}

export function formatDuration(seconds: number): string {
  const whole = Math.max(0, Math.round(seconds));
  if (whole < 60) return `${whole}s`;
  if (whole < 3600) return `${Math.floor(whole / 60)}m${String(whole % 60).padStart(2, '0')}s`;
  return `${Math.floor(whole / 3600)}h${String(Math.floor((whole % 3600) / 60)).padStart(2, '0')}m`;
}

/** Seconds left at the current rate, when both the size and a rate are known. */
export function estimateSeconds(progress: DownloadProgress): number | undefined {
  if (progress.total === undefined || progress.bytesPerSecond <= 0) return undefined;
  return Math.max(0, progress.total - progress.received) / progress.bytesPerSecond;
}

export function percentOf(progress: Pick<DownloadProgress, 'received' | 'total'>): number | undefined {
  if (progress.total === undefined || progress.total === 0) return undefined;
  return Math.min(100, Math.floor((progress.received / progress.total) * 100));
}

/** `42% 183.5 MB of 436.8 MB, 12.3 MB/s, ETA 21s` (parts that are unknown are left out). */
export function describeProgress(progress: DownloadProgress): string {
  const percent = percentOf(progress);
  const amount =
    progress.total === undefined ? formatBytes(progress.received) : `${formatBytes(progress.received)} of ${formatBytes(progress.total)}`;
  const eta = estimateSeconds(progress);
  return [
    percent === undefined ? amount : `${percent}% (${amount})`,
    ...(progress.bytesPerSecond > 0 ? [`${formatBytes(progress.bytesPerSecond)}/s`] : []),
    ...(eta === undefined ? [] : [`ETA ${formatDuration(eta)}`]),
  ].join(', ');
}

export interface ProgressWriter {
  write(text: string): unknown;
  /** True for a terminal: the bar is redrawn in place; otherwise a line is printed now and then. */
  isTTY?: boolean | undefined;
  columns?: number | undefined;
}

/** Renders download progress on stderr: a bar redrawn in place on a terminal, periodic lines elsewhere (logs, CI). */
export class ProgressReporter {
  readonly #out: ProgressWriter;
  readonly #label: string;
  readonly #intervalMs: number;
  #lastDraw = Number.NEGATIVE_INFINITY;
  #last: DownloadProgress | undefined;

  constructor(out: ProgressWriter, label: string, options: { intervalMs?: number } = {}) {
    this.#out = out;
    this.#label = label;
    this.#intervalMs = options.intervalMs ?? (out.isTTY ? 100 : 5_000);
  }

  update(progress: DownloadProgress): void {
    this.#last = progress;
    const now = performance.now();
    if (now - this.#lastDraw < this.#intervalMs) return;
    this.#lastDraw = now;
    this.#draw(progress);
  }

  /** The final state, then a newline on a terminal. */
  done(): void {
    if (this.#last) this.#draw(this.#last);
    if (this.#out.isTTY && this.#last) this.#out.write('\n');
  }

  #draw(progress: DownloadProgress): void {
    const text = `${this.#label} ${describeProgress(progress)}`;
    if (!this.#out.isTTY) {
      this.#out.write(`${text}\n`);
      return;
    }
    const percent = percentOf(progress);
    const width = 24;
    const filled = percent === undefined ? 0 : Math.round((percent / 100) * width);
    const bar = percent === undefined ? '' : `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] `;
    const line = `${bar}${text}`.slice(0, Math.max(20, (this.#out.columns ?? 120) - 1));
    this.#out.write(`\r${line}\x1b[K`);
  }
}
