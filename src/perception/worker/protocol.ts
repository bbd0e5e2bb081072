/**
 * The messages between an analyzer host and its worker thread. Both ends are this code, in one process, so the
 * messages are typed rather than validated.
 */
import { type ErrorType, OcularError } from '../../spec/errors.ts';
import type { AnalyzerKind, AnalyzerKinds, CloneableOptions } from './analyzer-kinds.ts';

/** The worker's `workerData`. */
export interface WorkerStart<K extends AnalyzerKind> {
  kind: K;
  options: CloneableOptions<K>;
  /** Whether the host wants a `loaded` message when the analyzer has loaded its weights. */
  reportsLoad: boolean;
}

export type HostMessage<K extends AnalyzerKind> =
  | { type: 'call'; id: number; input: AnalyzerKinds[K]['wire'] }
  /** The caller gave up: the worker aborts the call's signal, and its result is dropped. */
  | { type: 'abort'; id: number }
  /** Close the analyzer; the worker answers `closed`, and the host then terminates it. */
  | { type: 'close' };

export type WorkerMessage<K extends AnalyzerKind> =
  | { type: 'result'; id: number; output: AnalyzerKinds[K]['output'] }
  | { type: 'error'; id: number; error: WireError }
  | { type: 'loaded'; milliseconds: number }
  | { type: 'closed' };

/** An error as structured cloning can carry it: cloning an `Error` keeps only its name, message and stack. */
export type WireError =
  | {
      ocular: true;
      type: ErrorType;
      message: string;
      param: string | undefined;
      retryable: boolean;
      retryAfterSeconds: number | undefined;
      stack: string | undefined;
    }
  | { ocular: false; name: string; message: string; stack: string | undefined };

export function toWireError(error: unknown): WireError {
  if (error instanceof OcularError) {
    const { type, message, param, retryable, retryAfterSeconds, stack } = error;
    return { ocular: true, type, message, param, retryable, retryAfterSeconds, stack };
  }
  if (error instanceof Error) return { ocular: false, name: error.name, message: error.message, stack: error.stack };
  return { ocular: false, name: 'Error', message: String(error), stack: undefined };
}

/** The error again, with the worker's stack (where it was thrown) in place of one pointing at this function. */
export function fromWireError(wire: WireError): Error {
  let error: Error;
  if (wire.ocular) {
    const { type, message, param, retryable, retryAfterSeconds } = wire;
    error = new OcularError(type, message, { param, retryable, retryAfterSeconds });
  } else {
    error = new Error(wire.message);
    error.name = wire.name;
  }
  if (wire.stack !== undefined) error.stack = wire.stack;
  return error;
}
