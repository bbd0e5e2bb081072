import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { ChatObserver } from '../chat/chat-service.ts';
import type { JobQueue } from '../jobs/job-queue.ts';
import type { Usage } from '../spec/messages.ts';
import type { BlobStoreObserver } from '../store/object-store.ts';
import { OcularError } from '../spec/errors.ts';

/** Seconds: from a cached reply (1 ms) to a long upload or answer (5 min). */
const LATENCY_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];
const JOB_BUCKETS = [0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600];

/**
 * The server's Prometheus metrics, in a registry of its own (several servers in one process, as in tests, do not
 * mix their counts). Label values are bounded: routes are patterns (`/v1/videos/:id`), models are configured ids.
 */
export class ServerMetrics {
  readonly registry = new Registry();
  readonly #requests: Counter<'route' | 'method' | 'status'>;
  readonly #duration: Histogram<'route' | 'method'>;
  readonly #streams: Gauge;
  readonly #upstreamDuration: Histogram<'model'>;
  readonly #upstreamErrors: Counter<'model' | 'type'>;
  readonly #tokens: Counter<'model' | 'direction'>;
  readonly #jobDuration: Histogram<'kind' | 'outcome'>;
  readonly #realtimeFactor: Histogram;
  readonly #indexedSeconds: Counter;
  readonly #blobRequests: Counter<'operation' | 'outcome'>;
  readonly #blobDuration: Histogram<'operation'>;

  constructor() {
    const registers = [this.registry];
    this.#requests = new Counter({
      name: 'ocular_http_requests_total',
      help: 'HTTP requests answered, by route pattern, method and status',
      labelNames: ['route', 'method', 'status'],
      registers,
    });
    this.#duration = new Histogram({
      name: 'ocular_http_request_duration_seconds',
      help: 'Time from a request to the end of its answer (a stream: its last byte)',
      labelNames: ['route', 'method'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.#streams = new Gauge({ name: 'ocular_sse_streams_open', help: 'Chat answers being streamed now', registers });
    this.#upstreamDuration = new Histogram({
      name: 'ocular_upstream_duration_seconds',
      help: 'Time a model took to answer completely, by model id',
      labelNames: ['model'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.#upstreamErrors = new Counter({
      name: 'ocular_upstream_errors_total',
      help: 'Model calls that failed, by model id and error type',
      labelNames: ['model', 'type'],
      registers,
    });
    this.#tokens = new Counter({
      name: 'ocular_tokens_total',
      help: 'Model tokens, by model id and direction (input, output)',
      labelNames: ['model', 'direction'],
      registers,
    });
    this.#jobDuration = new Histogram({
      name: 'ocular_job_duration_seconds',
      help: 'Time a job run took, by kind and outcome',
      labelNames: ['kind', 'outcome'],
      buckets: JOB_BUCKETS,
      registers,
    });
    this.#realtimeFactor = new Histogram({
      name: 'ocular_indexing_realtime_factor',
      help: 'Seconds of video indexed per second of indexing, per video (above 1: faster than real time)',
      buckets: [0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128],
      registers,
    });
    this.#indexedSeconds = new Counter({
      name: 'ocular_indexed_media_seconds_total',
      help: 'Seconds of video indexed',
      registers,
    });
    this.#blobRequests = new Counter({
      name: 'ocular_blob_store_requests_total',
      help: 'Requests to the S3 blob store, by operation (GetObject, UploadPart, ...) and outcome (ok, missing, error)',
      labelNames: ['operation', 'outcome'],
      registers,
    });
    this.#blobDuration = new Histogram({
      name: 'ocular_blob_store_request_duration_seconds',
      help: 'Time one request to the S3 blob store took, by operation',
      labelNames: ['operation'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
  }

  /** What the S3 blob store reports of each request (see `S3Blobs.observe`). */
  readonly blobStore: BlobStoreObserver = (operation, outcome, seconds) => {
    this.#blobRequests.inc({ operation, outcome });
    this.#blobDuration.observe({ operation }, seconds);
  };

  /** Records one indexed video: `mediaSeconds` long, indexed in `runSeconds`. */
  readonly videoIndexed = (_videoId: string, timing: { mediaSeconds: number; runSeconds: number }): void => {
    if (timing.mediaSeconds <= 0 || timing.runSeconds <= 0) return;
    this.#realtimeFactor.observe(timing.mediaSeconds / timing.runSeconds);
    this.#indexedSeconds.inc(timing.mediaSeconds);
  };

  /** Reports the queue's jobs by kind and status, read when scraped (the database's count, whichever process enqueued). */
  watchJobs(jobs: JobQueue): void {
    new Gauge({
      name: 'ocular_jobs',
      help: 'Jobs by kind and status (queued: the queue depth)',
      labelNames: ['kind', 'status'],
      registers: [this.registry],
      async collect() {
        const counts = await jobs.counts();
        this.reset();
        for (const { kind, status, count } of counts) this.set({ kind, status }, count);
      },
    });
  }

  /** Counts one answered request; `seconds` until its last byte. */
  request(route: string, method: string, status: number, seconds: number): void {
    this.#requests.inc({ route, method, status: String(status) });
    this.#duration.observe({ route, method }, seconds);
  }

  /** Call when an event stream opens; the returned function when it closes. */
  streamOpened(): () => void {
    this.#streams.inc();
    let closed = false;
    return () => {
      if (closed) return;
      closed = true;
      this.#streams.dec();
    };
  }

  /** What the chat service reports of every model call. */
  readonly chat: ChatObserver = {
    answered: (model: string, usage: Usage, seconds: number) => {
      this.#upstreamDuration.observe({ model }, seconds);
      this.#tokens.inc({ model, direction: 'input' }, usage.inputTokens);
      this.#tokens.inc({ model, direction: 'output' }, usage.outputTokens);
    },
    failed: (model: string, error: unknown, seconds: number) => {
      this.#upstreamDuration.observe({ model }, seconds);
      this.#upstreamErrors.inc({ model, type: error instanceof OcularError ? error.type : 'aborted' });
    },
  };

  /** What job runners report of each run. */
  readonly jobSettled = (kind: string, outcome: string, seconds: number): void => {
    this.#jobDuration.observe({ kind, outcome }, seconds);
  };

  /** The exposition text and its content type. */
  async render(): Promise<{ body: string; contentType: string }> {
    return { body: await this.registry.metrics(), contentType: this.registry.contentType };
  }
}
