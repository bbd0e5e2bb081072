import { isAbortError, OcularError } from '../spec/errors.ts';
import type { StreamPart } from '../spec/stream-parts.ts';

export interface GuardOptions {
  /** Stop strings to enforce even when the upstream ignores them. */
  stop?: readonly string[] | undefined;
  /** Called when Ocular ends the answer early (a stop string matched), to cancel the upstream. */
  onStop: () => void;
  /** The signal the upstream call was given; its reason explains a cancellation. */
  signal?: AbortSignal | undefined;
}

/** Finds the earliest occurrence of any stop string. */
export function findStop(text: string, stops: readonly string[]): number {
  let earliest = -1;
  for (const stop of stops) {
    const index = text.indexOf(stop);
    if (index !== -1 && (earliest === -1 || index < earliest)) earliest = index;
  }
  return earliest;
}

/**
 * Wraps a provider stream so that consumers always see well-formed parts: read failures become an `error`
 * part, a stream that just ends becomes an `error`, and stop strings end the text without being returned.
 * To find a stop string split across deltas, the last (longest stop - 1) characters are held back.
 */
export function guardStream(source: ReadableStream<StreamPart>, options: GuardOptions): ReadableStream<StreamPart> {
  const reader = source.getReader();
  const stops = (options.stop ?? []).filter((stop) => stop !== '');
  const holdBack = stops.reduce((max, stop) => Math.max(max, stop.length - 1), 0);
  let pending = '';
  let deltas = 0;
  let done = false;

  const end = (controller: ReadableStreamDefaultController<StreamPart>, part: StreamPart): void => {
    done = true;
    controller.enqueue(part);
    controller.close();
    reader.cancel().catch(() => {});
  };

  const flushPending = (controller: ReadableStreamDefaultController<StreamPart>): void => {
    if (pending !== '') controller.enqueue({ type: 'text-delta', text: pending });
    pending = '';
  };

  return new ReadableStream<StreamPart>({
    // Loops until it enqueued something: a pull that enqueues nothing is not called again.
    async pull(controller) {
      while (!done) {
        let result: ReadableStreamReadResult<StreamPart>;
        try {
          result = await reader.read();
        } catch (error) {
          if (isAbortError(error) || options.signal?.aborted) {
            const reason: unknown = options.signal?.reason;
            flushPending(controller);
            return end(controller, {
              type: 'error',
              error:
                reason instanceof OcularError ? reason : new OcularError('timeout_error', 'the request was cancelled', { cause: error }),
            });
          }
          const mapped =
            error instanceof OcularError
              ? error
              : new OcularError('upstream_error', `the upstream stream failed: ${(error as Error).message}`, { cause: error });
          flushPending(controller);
          return end(controller, { type: 'error', error: mapped });
        }
        if (result.done) {
          flushPending(controller);
          return end(controller, {
            type: 'error',
            error: new OcularError('upstream_error', 'the upstream stream ended without finishing'),
          });
        }
        const part = result.value;
        if (part.type !== 'text-delta') {
          flushPending(controller);
          if (part.type === 'finish' || part.type === 'error') return end(controller, part);
          controller.enqueue(part);
          return;
        }
        deltas++;
        if (stops.length === 0) {
          controller.enqueue(part);
          return;
        }
        pending += part.text;
        const stopAt = findStop(pending, stops);
        if (stopAt !== -1) {
          pending = pending.slice(0, stopAt);
          flushPending(controller);
          options.onStop();
          // The upstream is cancelled mid-answer, so its usage never arrives: count what was streamed.
          return end(controller, { type: 'finish', finishReason: 'stop', usage: { inputTokens: 0, outputTokens: deltas } });
        }
        if (pending.length > holdBack) {
          controller.enqueue({ type: 'text-delta', text: pending.slice(0, pending.length - holdBack) });
          pending = pending.slice(pending.length - holdBack);
          return;
        }
      }
    },
    cancel(reason) {
      done = true;
      return reader.cancel(reason);
    },
  });
}
