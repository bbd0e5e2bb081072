/**
 * The inside of an analyzer worker thread (the entry `analyzer-worker-host.ts` starts): builds one analyzer from
 * `workerData` and runs the host's calls on it. Calls are handed to the analyzer as they arrive; it queues them
 * itself, as it does in the main thread.
 */
import { type MessagePort, parentPort, workerData } from 'node:worker_threads';
import { ANALYZER_KINDS, type AnalyzerKind } from './analyzer-kinds.ts';
import { type HostMessage, toWireError, type WorkerMessage, type WorkerStart } from './protocol.ts';

function serve<K extends AnalyzerKind>(port: MessagePort, start: WorkerStart<K>): void {
  const definition = ANALYZER_KINDS[start.kind];
  const post = (message: WorkerMessage<K>): void => port.postMessage(message);
  const analyzer = definition.create(
    start.options,
    start.reportsLoad ? ({ milliseconds }) => post({ type: 'loaded', milliseconds }) : undefined,
  );
  const running = new Map<number, AbortController>();

  const call = async ({ id, input }: Extract<HostMessage<K>, { type: 'call' }>): Promise<void> => {
    const controller = new AbortController();
    running.set(id, controller);
    try {
      const output = await definition.run(analyzer, definition.decode(input), controller.signal);
      // The host dropped an aborted call; its result would only be cloned for nothing.
      if (!controller.signal.aborted) post({ type: 'result', id, output });
    } catch (error) {
      if (!controller.signal.aborted) post({ type: 'error', id, error: toWireError(error) });
    } finally {
      running.delete(id);
    }
  };

  port.on('message', (message: HostMessage<K>) => {
    switch (message.type) {
      case 'call':
        void call(message);
        break;
      case 'abort':
        running.get(message.id)?.abort();
        break;
      case 'close':
        // A rejection left unhandled here would end the thread: opencv.js (PaddleOCR) aborts on any.
        void analyzer
          .close()
          .catch(() => undefined)
          .then(() => post({ type: 'closed' }));
        break;
    }
  });
}

if (parentPort === null) throw new Error('analyzer-worker.ts runs only inside a worker thread');
serve(parentPort, workerData as WorkerStart<AnalyzerKind>);
