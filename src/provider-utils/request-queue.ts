import { OcularError } from '../spec/errors.ts';

export interface RequestQueueOptions {
  /** Requests that hold a slot at once. */
  concurrency: number;
  /** Requests that may wait for a slot; the next one is refused with `rate_limit_error` (HTTP 429). */
  maxWaiting: number;
  /** Names what is busy in the 429 message, e.g. `model "tiny"`. */
  label: string;
}

/** Gives a slot back; calling it more than once is harmless. */
export type ReleaseSlot = () => void;

interface Waiter {
  resolve: (release: ReleaseSlot) => void;
  reject: (reason: unknown) => void;
  cleanup: () => void;
}

/** Weight of the newest sample in the moving average of slot hold times. */
const HOLD_TIME_SMOOTHING = 0.2;

/**
 * A bounded FIFO of requests for a backend that can serve `concurrency` of them at once (a local model's
 * parallel sequences). Requests beyond the running and waiting ones are refused at once with a 429 whose
 * `Retry-After` comes from how long slots have recently been held, rather than piling up without bound.
 */
export class RequestQueue {
  readonly #options: RequestQueueOptions;
  #concurrency: number;
  readonly #waiters: Waiter[] = [];
  #running = 0;
  /** Moving average of how long a slot is held, in ms; undefined until a slot was given back. */
  #averageHoldMs: number | undefined;

  constructor(options: RequestQueueOptions) {
    if (!Number.isInteger(options.concurrency) || options.concurrency < 1) throw new RangeError('concurrency must be an integer >= 1');
    if (!Number.isInteger(options.maxWaiting) || options.maxWaiting < 0) throw new RangeError('maxWaiting must be an integer >= 0');
    this.#options = options;
    this.#concurrency = options.concurrency;
  }

  /** Slots; raising it lets waiting requests start (a backend may only know its capacity once loaded). */
  get concurrency(): number {
    return this.#concurrency;
  }

  set concurrency(value: number) {
    if (!Number.isInteger(value) || value < 1) throw new RangeError('concurrency must be an integer >= 1');
    this.#concurrency = value;
    while (this.#running < this.#concurrency && this.#waiters.length > 0) {
      const next = this.#waiters.shift()!;
      next.cleanup();
      next.resolve(this.#take());
    }
  }

  /** Requests holding a slot. */
  get running(): number {
    return this.#running;
  }

  /** Requests waiting for a slot. */
  get waiting(): number {
    return this.#waiters.length;
  }

  /** True when nothing runs or waits. */
  get idle(): boolean {
    return this.#running === 0 && this.#waiters.length === 0;
  }

  /**
   * Resolves with a release function once a slot is free. Rejects with `rate_limit_error` when the queue is
   * full, and with the signal's reason when it aborts while waiting (the request then leaves the queue).
   */
  acquire(signal: AbortSignal): Promise<ReleaseSlot> {
    if (signal.aborted) return Promise.reject(signal.reason);
    if (this.#running < this.#concurrency && this.#waiters.length === 0) return Promise.resolve(this.#take());
    if (this.#waiters.length >= this.#options.maxWaiting) {
      const retryAfterSeconds = this.#retryAfterSeconds();
      return Promise.reject(
        new OcularError(
          'rate_limit_error',
          `${this.#options.label} is busy: ${this.#running} requests are running and ${this.#waiters.length} are waiting; retry in about ${retryAfterSeconds} s`,
          { retryable: true, retryAfterSeconds },
        ),
      );
    }
    return new Promise<ReleaseSlot>((resolve, reject) => {
      const onAbort = (): void => {
        const index = this.#waiters.indexOf(waiter);
        if (index !== -1) this.#waiters.splice(index, 1);
        reject(signal.reason);
      };
      const waiter: Waiter = { resolve, reject, cleanup: () => signal.removeEventListener('abort', onAbort) };
      signal.addEventListener('abort', onAbort, { once: true });
      this.#waiters.push(waiter);
    });
  }

  /** Rejects every waiting request with `reason` (used on shutdown); running ones keep their slots. */
  rejectWaiting(reason: unknown): void {
    for (const waiter of this.#waiters.splice(0)) {
      waiter.cleanup();
      waiter.reject(reason);
    }
  }

  #take(): ReleaseSlot {
    this.#running++;
    const started = performance.now();
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const heldMs = performance.now() - started;
      this.#averageHoldMs =
        this.#averageHoldMs === undefined ? heldMs : this.#averageHoldMs + HOLD_TIME_SMOOTHING * (heldMs - this.#averageHoldMs);
      this.#running--;
      if (this.#running < this.#concurrency) {
        const next = this.#waiters.shift();
        if (next) {
          next.cleanup();
          next.resolve(this.#take());
        }
      }
    };
  }

  /** Time until a new request would likely get a slot: the waiting ones drain `concurrency` at a time. */
  #retryAfterSeconds(): number {
    const holdMs = this.#averageHoldMs ?? 1000;
    const rounds = Math.floor(this.#waiters.length / this.#concurrency) + 1;
    return Math.max(1, Math.ceil((holdMs * rounds) / 1000));
  }
}
