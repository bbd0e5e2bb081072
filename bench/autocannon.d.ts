// autocannon ships no types (and @types/autocannon lags its major versions): the part of its programmatic
// API the benchmarks use, as documented in its README for v8.
declare module 'autocannon' {
  import type { EventEmitter } from 'node:events';

  namespace autocannon {
    interface Options {
      url: string;
      method?: 'GET' | 'POST' | 'PUT' | 'DELETE' | 'PATCH';
      headers?: Record<string, string>;
      body?: string | Buffer;
      /** Concurrent connections. @default 10 */
      connections?: number;
      /** Requests in flight per connection. @default 1 */
      pipelining?: number;
      /** Seconds to run for; ignored when `amount` is set. @default 10 */
      duration?: number;
      /** Requests to send in all, instead of a duration. */
      amount?: number;
      /** Seconds before a request counts as timed out. @default 10 */
      timeout?: number;
    }

    /** Per-second samples (requests, throughput) or, for latency, integer milliseconds. */
    interface Histogram {
      average: number;
      mean: number;
      stddev: number;
      min: number;
      max: number;
      total: number;
      p50: number;
      p99: number;
    }

    interface Result {
      requests: Histogram;
      latency: Histogram;
      throughput: Histogram;
      errors: number;
      timeouts: number;
      non2xx: number;
      /** Seconds. */
      duration: number;
    }

    /** Without a callback, `autocannon()` returns an emitter that is also a thenable of the result. */
    interface Instance extends EventEmitter, PromiseLike<Result> {
      /** Emitted for each response; `responseTime` is in milliseconds, unrounded (the histograms round it). */
      on(event: 'response', listener: (client: unknown, statusCode: number, bytes: number, responseTime: number) => void): this;
      on(event: string, listener: (...args: unknown[]) => void): this;
      stop(): void;
    }
  }

  function autocannon(options: autocannon.Options): autocannon.Instance;
  export = autocannon;
}
