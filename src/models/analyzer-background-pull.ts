import { setTimeout as sleep } from 'node:timers/promises';
import { isAbortError } from '../spec/errors.ts';
import type { AnalyzerModel } from './analyzer-catalog.ts';
import type { PullLog } from './background-pull.ts';
import { analyzerHandPlacementHint, missingAnalyzerFiles, pullAnalyzerModel } from './pull-analyzer-model.ts';

export interface AnalyzerBackgroundPullOptions {
  model: AnalyzerModel;
  /** `<data>/models` */
  modelsDir: string;
  log: PullLog;
  /** Waits before each retry of a failed download; their count is the number of retries. @default [10s, 60s, 300s] */
  retryDelaysMs?: readonly number[] | undefined;
}

const DEFAULT_RETRY_DELAYS_MS = [10_000, 60_000, 300_000];

/**
 * Fetches an analyzer's weights (a few MB) while the server runs, so analyzers that are on by default work
 * without a manual `ocular models pull`. Until they are in place the analyzer is skipped; files placed by hand
 * later count as soon as they appear (`ready` looks at the disk).
 */
export class AnalyzerBackgroundPull {
  readonly model: AnalyzerModel;
  readonly #options: AnalyzerBackgroundPullOptions;
  readonly #abort = new AbortController();
  #running: Promise<void> | undefined;

  constructor(options: AnalyzerBackgroundPullOptions) {
    this.model = options.model;
    this.#options = options;
  }

  get ready(): boolean {
    return missingAnalyzerFiles(this.#options.modelsDir, this.model).length === 0;
  }

  /** Starts the download once, unless the files are already there. */
  start(): void {
    if (this.ready) return;
    this.#running ??= this.#run();
  }

  /** Stops a download in progress (its part file stays, for the next start to resume). */
  async close(): Promise<void> {
    this.#abort.abort();
    await this.#running;
  }

  async #run(): Promise<void> {
    const { model, modelsDir, log } = this.#options;
    const delays = this.#options.retryDelaysMs ?? DEFAULT_RETRY_DELAYS_MS;
    const signal = this.#abort.signal;
    for (let attempt = 0; ; attempt++) {
      try {
        await pullAnalyzerModel(model, {
          modelsDir,
          signal,
          onFile: (file, _index, _count, url) => log.info('downloading analyzer weights', { analyzer: model.name, file: file.file, url }),
        });
        log.info('analyzer weights are in place; the analyzer runs from the next segment on', { analyzer: model.name });
        return;
      } catch (error) {
        if (signal.aborted || isAbortError(error)) return;
        const delay = delays[attempt];
        if (delay === undefined) {
          log.warn('could not download analyzer weights; indexing goes on without this analyzer', {
            analyzer: model.name,
            error: (error as Error).message,
            fix: analyzerHandPlacementHint(modelsDir, model),
          });
          return;
        }
        log.warn('downloading analyzer weights failed; retrying', {
          analyzer: model.name,
          error: (error as Error).message,
          retryInMs: delay,
        });
        try {
          await sleep(delay, undefined, { signal });
        } catch {
          return; // closed while waiting
        }
      }
    }
  }
}
