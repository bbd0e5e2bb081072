/**
 * The lifecycle every embedded analyzer shares: its weights load on first use (once, however many calls come at
 * the same time), calls are tracked so that `close()` can wait for them before it frees the weights, and calls
 * may have to take turns. The analyzers keep only what is their own: how to load, run and free their model.
 */
import { OcularError } from '../spec/errors.ts';

export interface ModelLifecycleOptions<Model> {
  /** Names the analyzer in the `unavailable_error` that calls get once it is closed: `<name> is shut down`. */
  name: string;
  /**
   * Loads the model. The first call starts it and the calls that come while it runs share it; after a failed
   * load the next call tries again (the missing file may have been downloaded since).
   */
  load: () => Promise<Model>;
  /**
   * Frees the loaded model, once, in `close()` after the running calls have ended.
   * @default nothing: the model is left to the garbage collector
   */
  release?: ((model: Model) => Promise<void> | void) | undefined;
  /**
   * Calls wait in this line and run one at a time. Lifecycles that share one model engine share one queue.
   * @default none: calls run side by side
   */
  queue?: TaskQueue | undefined;
}

/**
 * Owns a lazily loaded model for an analyzer: `use` runs a call with the model, `close` turns new calls away,
 * waits for the running ones and releases the model.
 */
export class ModelLifecycle<Model> {
  readonly #name: string;
  readonly #load: () => Promise<Model>;
  readonly #release: ((model: Model) => Promise<void> | void) | undefined;
  readonly #queue: TaskQueue | undefined;
  /** Aborts, with the "shut down" error, when `close()` is called: running and waiting calls see it. */
  readonly #closing = new AbortController();
  #closed: Promise<void> | undefined;
  #model: Promise<Model> | undefined;
  /** Calls in progress, waiting ones included; `close` waits for them before it frees the model they use. */
  readonly #running = new Set<Promise<unknown>>();

  constructor(options: ModelLifecycleOptions<Model>) {
    this.#name = options.name;
    this.#load = options.load;
    this.#release = options.release;
    this.#queue = options.queue;
  }

  /**
   * Runs `task` with the loaded model (loading it first if need be), in turn when there is a queue.
   *
   * Rejects with an `unavailable_error` once closed, and with `signal`'s reason when it is aborted before the
   * task starts (while waiting for the model or for its turn). The task gets a signal that aborts with either
   * reason: a running task cannot be interrupted, so it should check that signal between its steps.
   */
  async use<T>(task: (model: Model, signal: AbortSignal) => Promise<T>, signal?: AbortSignal): Promise<T> {
    if (this.#closing.signal.aborted) throw shutDownError(this.#name);
    signal?.throwIfAborted();
    const stop = signal === undefined ? this.#closing.signal : AbortSignal.any([signal, this.#closing.signal]);
    const call = this.#queue === undefined ? this.#run(task, stop) : this.#queue.run(() => this.#run(task, stop), stop);
    this.#running.add(call);
    try {
      return await call;
    } finally {
      this.#running.delete(call);
    }
  }

  /**
   * Turns new calls away, aborts the signal of the running and waiting ones (waiting ones leave at once), waits
   * for them to end, then releases the model. Calling it again returns the same promise.
   */
  close(): Promise<void> {
    this.#closed ??= this.#shutDown();
    return this.#closed;
  }

  async #shutDown(): Promise<void> {
    this.#closing.abort(shutDownError(this.#name));
    await Promise.allSettled([...this.#running]);
    // A load may still be under way though no call waits for it any longer (its caller was aborted): it is
    // waited for here, so that the model it makes is released rather than leaked.
    const model = this.#model;
    this.#model = undefined;
    await model?.then(
      (loaded) => this.#release?.(loaded),
      () => undefined,
    );
  }

  async #run<T>(task: (model: Model, signal: AbortSignal) => Promise<T>, stop: AbortSignal): Promise<T> {
    const model = await abortable(this.#loaded(), stop);
    stop.throwIfAborted();
    return await task(model, stop);
  }

  /** The model; concurrent first calls share one load, and a failed load is retried by the next call. */
  #loaded(): Promise<Model> {
    if (this.#model === undefined) {
      const loading = this.#load();
      this.#model = loading;
      loading.catch(() => {
        if (this.#model === loading) this.#model = undefined;
      });
    }
    return this.#model;
  }
}

/**
 * A line in which tasks run one at a time, in the order they came. A caller whose signal aborts while it waits
 * leaves at once, with the signal's reason; a running task is not interrupted (it checks the signal itself).
 */
export class TaskQueue {
  /** Settles when the last task in line has finished or left. */
  #tail: Promise<void> = Promise.resolve();

  /** Runs `task` once the tasks before it have finished. */
  async run<T>(task: () => Promise<T>, signal: AbortSignal): Promise<T> {
    const before = this.#tail;
    let finish!: () => void;
    const finished = new Promise<void>((resolvePromise) => (finish = resolvePromise));
    this.#tail = before.then(() => finished);
    try {
      await abortable(before, signal);
      signal.throwIfAborted();
      return await task();
    } finally {
      finish();
    }
  }

  /** Settles once every task in line now has finished (tasks queued later are not waited for). */
  idle(): Promise<void> {
    return this.#tail;
  }
}

const shutDownError = (name: string): OcularError => new OcularError('unavailable_error', `${name} is shut down`);

/** `promise`, or a rejection with the signal's reason as soon as it aborts (like fetch). */
function abortable<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason as Error);
  return new Promise<T>((resolvePromise, reject) => {
    const onAbort = (): void => reject(signal.reason as Error);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolvePromise(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error as Error);
      },
    );
  });
}
