import type { HubSettings } from '../config/settings.ts';
import { isAbortError } from '../spec/errors.ts';
import { ModelDownloadError } from './download-file.ts';
import type { ModelSource } from './model-source.ts';
import { describeProgress, estimateSeconds, percentOf } from './progress.ts';
import { handPlacementHint, missingFiles, pullModel, type PullProgress } from './pull-model.ts';

/** The part of the server's logger this module uses. */
export interface PullLog {
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
}

/** Whether a model's files are in place, and if not, what to tell a client. */
export type ModelAvailability = { ready: true } | { ready: false; message: string; retryAfterSeconds: number };

export interface BackgroundPullOptions {
  source: ModelSource;
  /** `<data>/models` */
  modelsDir: string;
  hub: HubSettings;
  log: PullLog;
  /** Waits before each retry of a failed download; their count is the number of retries. @default [10s, 30s, 90s] */
  retryDelaysMs?: readonly number[] | undefined;
  /** Milliseconds between progress lines in the log. @default 10000 */
  logIntervalMs?: number | undefined;
  /** How often to look again while another process holds the download lock. @default 5000 */
  busyPollMs?: number | undefined;
}

type State =
  | { kind: 'idle' }
  | { kind: 'downloading'; progress: PullProgress | undefined }
  | { kind: 'waiting'; error: Error; retryAt: number; attempt: number }
  | { kind: 'failed'; error: Error }
  | { kind: 'ready' };

const DEFAULT_RETRY_DELAYS_MS = [10_000, 30_000, 90_000];

/**
 * Fetches a model's missing files while the server runs: retried with backoff a few times, then left in a
 * "place the files by hand" state (files that appear later, placed by hand or by `ocular models pull`, are
 * picked up on the next request). `availability()` is what a waiting model answers clients with.
 */
export class BackgroundPull {
  readonly source: ModelSource;
  readonly #options: BackgroundPullOptions;
  readonly #retryDelaysMs: readonly number[];
  readonly #abort = new AbortController();
  readonly #readyListeners: Array<() => void> = [];
  #state: State = { kind: 'idle' };
  #running: Promise<void> | undefined;
  #lastLog = 0;

  constructor(options: BackgroundPullOptions) {
    this.source = options.source;
    this.#options = options;
    this.#retryDelaysMs = options.retryDelaysMs ?? DEFAULT_RETRY_DELAYS_MS;
    if (missingFiles(options.modelsDir, options.source).length === 0) this.#state = { kind: 'ready' };
  }

  get ready(): boolean {
    return this.#state.kind === 'ready';
  }

  /** Starts downloading in the background (once); progress and failures go to the log. */
  start(): void {
    if (this.#state.kind === 'ready') return;
    this.#running ??= this.#run().catch((error: unknown) => {
      if (!this.#abort.signal.aborted) this.#fail(error instanceof Error ? error : new Error(String(error)));
    });
  }

  /** Calls `listener` once the files are in place (at once if they are). */
  onReady(listener: () => void): void {
    if (this.#state.kind === 'ready') listener();
    else this.#readyListeners.push(listener);
  }

  availability(): ModelAvailability {
    const state = this.#state;
    if (state.kind === 'ready') return { ready: true };
    if (state.kind !== 'downloading' && missingFiles(this.#options.modelsDir, this.source).length === 0) {
      // Placed by hand, or pulled by another process, since the last attempt.
      this.#setReady();
      return { ready: true };
    }
    const name = this.source.name;
    switch (state.kind) {
      case 'idle':
        return { ready: false, message: `the weights of ${name} are about to be downloaded`, retryAfterSeconds: 5 };
      case 'downloading': {
        if (!state.progress) return { ready: false, message: `the weights of ${name} are downloading (connecting)`, retryAfterSeconds: 5 };
        const { file, index, count } = state.progress;
        const eta = estimateSeconds(state.progress);
        return {
          ready: false,
          message: `the weights of ${name} are downloading: ${file.file} (file ${index + 1} of ${count}) ${describeProgress(state.progress)}`,
          retryAfterSeconds: Math.min(30, Math.max(1, Math.ceil(eta ?? 10))),
        };
      }
      case 'waiting': {
        const seconds = Math.max(1, Math.ceil((state.retryAt - Date.now()) / 1000));
        return {
          ready: false,
          message:
            `downloading the weights of ${name} failed (${state.error.message}); trying again in ${seconds}s ` +
            `(attempt ${state.attempt + 1} of ${this.#retryDelaysMs.length + 1}). ${this.handPlacementHint()}`,
          retryAfterSeconds: seconds,
        };
      }
      case 'failed':
        return {
          ready: false,
          message: `the weights of ${name} could not be downloaded (${state.error.message}). ${this.handPlacementHint()}`,
          retryAfterSeconds: 60,
        };
    }
  }

  /** How to get the model without this server's download: the exact files and paths, or a local GGUF. */
  handPlacementHint(): string {
    return handPlacementHint(this.source, this.#options.modelsDir, this.#options.hub);
  }

  /** Stops the download (the part file stays, for the next start to resume). */
  async close(): Promise<void> {
    this.#abort.abort();
    await this.#running;
  }

  async #run(): Promise<void> {
    const { source, modelsDir, hub, log } = this.#options;
    const signal = this.#abort.signal;
    for (let attempt = 0; ;) {
      this.#state = { kind: 'downloading', progress: undefined };
      try {
        await pullModel(source, {
          modelsDir,
          hub,
          signal,
          onFile: (file, index, count, url) =>
            log.info('downloading model file', { model: source.name, file: file.file, index: index + 1, of: count, url }),
          onProgress: (progress) => {
            this.#state = { kind: 'downloading', progress };
            this.#logProgress(progress);
          },
        });
        log.info('model files are in place', { model: source.name });
        this.#setReady();
        return;
      } catch (error) {
        if (signal.aborted || isAbortError(error)) return;
        const failure = error instanceof Error ? error : new Error(String(error));
        if (missingFiles(modelsDir, source).length === 0) {
          this.#setReady();
          return;
        }
        if (failure instanceof ModelDownloadError && failure.code === 'busy') {
          // Another process is pulling the same files: wait for it without spending a retry.
          this.#state = { kind: 'waiting', error: failure, retryAt: Date.now() + (this.#options.busyPollMs ?? 5_000), attempt };
          await this.#sleep(this.#options.busyPollMs ?? 5_000);
          if (signal.aborted) return;
          continue;
        }
        const retryable = failure instanceof ModelDownloadError && failure.retryable;
        const delay = this.#retryDelaysMs[attempt];
        if (!retryable || delay === undefined) {
          this.#fail(failure);
          return;
        }
        attempt += 1;
        this.#state = { kind: 'waiting', error: failure, retryAt: Date.now() + delay, attempt };
        log.warn('model download failed; retrying', { model: source.name, error: failure.message, retryInMs: delay, attempt });
        await this.#sleep(delay);
        if (signal.aborted) return;
      }
    }
  }

  #fail(error: Error): void {
    this.#state = { kind: 'failed', error };
    this.#options.log.warn('model download failed; the model answers 503 until its files are in place', {
      model: this.source.name,
      error: error.message,
      hint: this.handPlacementHint(),
    });
  }

  #setReady(): void {
    if (this.#state.kind === 'ready') return;
    this.#state = { kind: 'ready' };
    for (const listener of this.#readyListeners.splice(0)) listener();
  }

  #logProgress(progress: PullProgress): void {
    const now = performance.now();
    if (now - this.#lastLog < (this.#options.logIntervalMs ?? 10_000)) return;
    this.#lastLog = now;
    const eta = estimateSeconds(progress);
    this.#options.log.info('model download progress', {
      model: this.source.name,
      file: progress.file.file,
      percent: percentOf(progress) ?? null,
      received: progress.received,
      total: progress.total ?? null,
      bytesPerSecond: Math.round(progress.bytesPerSecond),
      etaSeconds: eta === undefined ? null : Math.round(eta),
    });
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.#abort.signal.addEventListener(
        'abort',
        () => {
          clearTimeout(timer);
          resolve();
        },
        { once: true },
      );
    });
  }
}
