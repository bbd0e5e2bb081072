/**
 * Runs one analyzer in a `worker_threads` Worker, so that its decoding, pre- and post-processing and any model
 * that runs on the JS thread (tfjs-wasm) block that thread and not the server's event loop, and so that two
 * analyzers in two workers can use two cores at once.
 */
import { Worker } from 'node:worker_threads';
import { OcularError } from '../../spec/errors.ts';
import { ANALYZER_KINDS, type AnalyzerKind, type AnalyzerKindDefinition, type AnalyzerKinds, type LoadListener } from './analyzer-kinds.ts';
import { fromWireError, type HostMessage, type WorkerMessage, type WorkerStart } from './protocol.ts';

/** The worker's entry: Node runs it as TypeScript by stripping its types, in the worker as in the main thread. */
const WORKER_ENTRY = new URL('./analyzer-worker.ts', import.meta.url);

/**
 * How long `close` waits for the analyzer inside to close (it waits for a running call, which cannot be
 * interrupted) before it terminates the worker anyway.
 */
const CLOSE_TIMEOUT_MS = 10_000;

interface PendingCall<K extends AnalyzerKind> {
  resolve(output: AnalyzerKinds[K]['output']): void;
  reject(error: unknown): void;
}

/** One started worker and the calls sent to it. A crashed worker's session ends; the next call starts another. */
interface Session<K extends AnalyzerKind> {
  worker: Worker;
  pending: Map<number, PendingCall<K>>;
  /** Resolves when the worker has exited, or has answered `close`. */
  closed: Promise<void>;
  markClosed(): void;
  /** The first error the worker reported, for the message when it exits. */
  error: Error | undefined;
}

/**
 * Hosts analyzer `K` in a worker thread started on the first call. The host's interface is the analyzer's own:
 * call it with the same input and signal and get the same output or the same error. Calls go to the worker as they
 * come, and the analyzer inside queues them as it does in the main thread.
 */
export class AnalyzerWorkerHost<K extends AnalyzerKind> {
  /** The analyzer's own `name` (`paddle`, `human`, ...). */
  readonly name: string;
  readonly #kind: K;
  readonly #definition: AnalyzerKindDefinition<K>;
  readonly #start: WorkerStart<K>;
  readonly #onLoad: LoadListener | undefined;
  #session: Session<K> | undefined;
  #closing: Promise<void> | undefined;
  #nextId = 1;
  /** The calls waiting on each signal, and the one listener that aborts them. */
  readonly #watches = new WeakMap<AbortSignal, { calls: Map<number, () => void>; listener: () => void }>();

  constructor(kind: K, options: AnalyzerKinds[K]['options']) {
    this.#kind = kind;
    this.#definition = ANALYZER_KINDS[kind];
    const { cloneable, onLoad } = splitOnLoad(options);
    // Building the analyzer here too checks the options with its own code, so bad ones throw now as they would
    // in the main thread, and gives its name. Constructors load nothing: this instance is never used.
    this.name = this.#definition.create(cloneable, undefined).name;
    this.#start = { kind, options: cloneable, reportsLoad: onLoad !== undefined };
    this.#onLoad = onLoad;
  }

  async call(input: AnalyzerKinds[K]['input'], signal?: AbortSignal): Promise<AnalyzerKinds[K]['output']> {
    if (this.#closing !== undefined) throw this.#closedError();
    signal?.throwIfAborted();
    const { wire, transfer } = this.#definition.encode(input);
    const session = this.#session ?? this.#startWorker();
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      const onAbort = (): void => {
        if (!session.pending.delete(id)) return;
        this.#post(session, { type: 'abort', id });
        this.#updateRef(session);
        reject(signal?.reason);
      };
      session.pending.set(id, {
        resolve: (output) => {
          if (signal) this.#unwatch(signal, id);
          resolve(output);
        },
        reject: (error) => {
          if (signal) this.#unwatch(signal, id);
          reject(error);
        },
      });
      if (signal) this.#watch(signal, id, onAbort);
      this.#post(session, { type: 'call', id, input: wire }, transfer);
      this.#updateRef(session);
    });
  }

  /**
   * One abort listener per signal for all the calls waiting on it: an indexing job sends dozens of frames on one
   * signal at once, and a listener each would pass the limit of 10 after which Node warns of a leak (Node 20 gives
   * every signal that limit, and a caller may set one with `events.setMaxListeners`).
   */
  #watch(signal: AbortSignal, id: number, onAbort: () => void): void {
    let watch = this.#watches.get(signal);
    if (watch === undefined) {
      const calls = new Map<number, () => void>();
      const listener = (): void => {
        this.#watches.delete(signal);
        for (const abort of calls.values()) abort();
      };
      watch = { calls, listener };
      this.#watches.set(signal, watch);
      signal.addEventListener('abort', listener, { once: true });
    }
    watch.calls.set(id, onAbort);
  }

  /** The call has settled: it stops waiting on the signal, and the last one removes the listener. */
  #unwatch(signal: AbortSignal, id: number): void {
    const watch = this.#watches.get(signal);
    if (watch === undefined || !watch.calls.delete(id) || watch.calls.size > 0) return;
    this.#watches.delete(signal);
    signal.removeEventListener('abort', watch.listener);
  }

  /**
   * Rejects the calls still waiting, lets the analyzer inside close (which frees its weights), then terminates
   * the worker. Later calls reject with `unavailable_error`.
   */
  close(): Promise<void> {
    this.#closing ??= this.#shutDown();
    return this.#closing;
  }

  /** The running worker, for tests that make it die. */
  get worker(): Worker | undefined {
    return this.#session?.worker;
  }

  async #shutDown(): Promise<void> {
    const session = this.#session;
    this.#session = undefined;
    if (session === undefined) return;
    this.#rejectAll(session, this.#closedError());
    // Held until it has gone: a process that is shutting down waits for the analyzer to free its weights.
    session.worker.ref();
    this.#post(session, { type: 'close' });
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([session.closed, new Promise((resolveTimeout) => (timer = setTimeout(resolveTimeout, CLOSE_TIMEOUT_MS)))]);
    clearTimeout(timer);
    await session.worker.terminate();
  }

  #startWorker(): Session<K> {
    const worker = new Worker(WORKER_ENTRY, { name: `ocular ${this.#kind} (${this.name})`, workerData: this.#start });
    let markClosed!: () => void;
    const closed = new Promise<void>((resolveClosed) => (markClosed = resolveClosed));
    const session: Session<K> = { worker, pending: new Map(), closed, markClosed, error: undefined };
    worker.on('message', (message: WorkerMessage<K>) => this.#receive(session, message));
    worker.on('error', (error) => {
      // An uncaught exception (or an out-of-memory JS heap): the worker is exiting; 'exit' follows.
      session.error ??= error;
      this.#stopped(session, `failed: ${error.message}`);
    });
    worker.on('messageerror', (error) => {
      // A message that could not be deserialized belongs to a call that would then never settle.
      session.error ??= error;
      this.#stopped(session, `sent a message that could not be read: ${error.message}`);
      void worker.terminate();
    });
    worker.on('exit', (code) => this.#stopped(session, `exited with code ${code}`));
    this.#session = session;
    this.#updateRef(session);
    return session;
  }

  #receive(session: Session<K>, message: WorkerMessage<K>): void {
    switch (message.type) {
      case 'result':
      case 'error': {
        const call = session.pending.get(message.id);
        // Absent when the caller aborted: the result is dropped.
        if (call === undefined) return;
        session.pending.delete(message.id);
        this.#updateRef(session);
        if (message.type === 'result') call.resolve(message.output);
        else call.reject(fromWireError(message.error));
        return;
      }
      case 'loaded':
        this.#onLoad?.({ milliseconds: message.milliseconds });
        return;
      case 'closed':
        session.markClosed();
        return;
    }
  }

  /** The worker has stopped or is stopping: its calls will never be answered. The next call starts a new one. */
  #stopped(session: Session<K>, how: string): void {
    if (this.#session === session) this.#session = undefined;
    session.markClosed();
    if (session.pending.size === 0) return;
    const error = new OcularError('unavailable_error', `the ${this.#definition.title} analyzer worker stopped (it ${how})`, {
      cause: session.error,
    });
    this.#rejectAll(session, error);
  }

  #rejectAll(session: Session<K>, error: Error): void {
    const calls = [...session.pending.values()];
    session.pending.clear();
    for (const call of calls) call.reject(error);
  }

  #post(session: Session<K>, message: HostMessage<K>, transfer: ArrayBuffer[] = []): void {
    session.worker.postMessage(message, transfer);
  }

  /** The worker keeps the process alive only while it has calls to answer. */
  #updateRef(session: Session<K>): void {
    if (session.pending.size > 0) session.worker.ref();
    else session.worker.unref();
  }

  #closedError(): OcularError {
    return new OcularError('unavailable_error', `${this.#definition.title} is shut down`);
  }
}

/** Options without `onLoad` (a function cannot be cloned to the worker), and `onLoad`. */
function splitOnLoad<O extends object>(options: O): { cloneable: Omit<O, 'onLoad'>; onLoad: LoadListener | undefined } {
  const { onLoad, ...cloneable } = options as O & { onLoad?: LoadListener | undefined };
  return { cloneable, onLoad };
}
