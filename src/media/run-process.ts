import { spawn } from 'node:child_process';
import { OcularError } from '../spec/errors.ts';

/** Why a run failed: a non-zero exit, the time limit, the stdout cap, or the executable could not start. */
export type ProcessFailure = 'exit' | 'timeout' | 'output_limit' | 'spawn';

/** A failed run of an external command. `stderrTail` is the end of what it wrote to stderr. */
export class ProcessError extends Error {
  readonly failure: ProcessFailure;
  readonly command: string;
  /** The exit code, or null when it was killed by a signal or never started. */
  readonly exitCode: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stderrTail: string;

  constructor(
    failure: ProcessFailure,
    message: string,
    details: { command: string; exitCode: number | null; signal: NodeJS.Signals | null; stderrTail: string; cause?: unknown },
  ) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = 'ProcessError';
    this.failure = failure;
    this.command = details.command;
    this.exitCode = details.exitCode;
    this.signal = details.signal;
    this.stderrTail = details.stderrTail;
  }
}

export interface RunProcessOptions {
  /** Milliseconds before the process is killed (SIGKILL) and the run fails with `timeout`. @default 120000 */
  timeoutMs?: number | undefined;
  /** Aborting kills the process (SIGKILL); the run rejects with the signal's reason once it has exited. */
  signal?: AbortSignal | undefined;
  /** `capture` collects stdout into a Buffer; `ignore` sends it to /dev/null. @default 'capture' */
  stdout?: 'capture' | 'ignore' | undefined;
  /** Bytes of stdout kept before the process is killed and the run fails with `output_limit`. @default 33554432 (32 MiB) */
  maxStdoutBytes?: number | undefined;
  /**
   * Receives stdout as it arrives, for output too long to keep (raw frames of a whole video). Set, stdout is
   * not collected (the result's is empty) and `maxStdoutBytes` does not apply. If it throws, the process is
   * killed and the run rejects with what it threw.
   */
  onStdout?: ((chunk: Buffer) => void) | undefined;
}

export interface ProcessOutput {
  /** Everything written to stdout (empty when it was ignored). */
  stdout: Buffer;
  /** The last few KB of stderr. */
  stderr: string;
}

const DEFAULT_TIMEOUT_MS = 120_000;
const DEFAULT_MAX_STDOUT_BYTES = 32 * 1024 * 1024;
/** Enough for ffmpeg's last error lines at `-loglevel error`; older output is dropped as it arrives. */
const STDERR_TAIL_BYTES = 4096;

/**
 * The one place Ocular starts an external program. The arguments go to the executable as an array, never
 * through a shell. The promise settles only after the process has exited, so a caller's `finally` that
 * removes a scratch directory never races a live ffmpeg.
 */
export function runProcess(command: string, args: readonly string[], options: RunProcessOptions = {}): Promise<ProcessOutput> {
  const { signal } = options;
  if (signal?.aborted) return Promise.reject(signal.reason);
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const maxStdoutBytes = options.maxStdoutBytes ?? DEFAULT_MAX_STDOUT_BYTES;
  const capture = options.stdout !== 'ignore';

  return new Promise<ProcessOutput>((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', capture ? 'pipe' : 'ignore', 'pipe'], windowsHide: true });
    const stdoutChunks: Buffer[] = [];
    let stdoutBytes = 0;
    let stderrTail: Buffer = Buffer.alloc(0);
    /** Set when we kill the process, so that its exit is reported as what caused it. */
    let stopped: { failure: 'timeout' | 'output_limit' } | { failure: 'abort' | 'callback'; reason: unknown } | undefined;
    let settled = false;

    const kill = (): void => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    };
    const onAbort = (): void => {
      stopped ??= { failure: 'abort', reason: signal!.reason };
      kill();
    };
    const timer = setTimeout(() => {
      stopped ??= { failure: 'timeout' };
      kill();
    }, timeoutMs);
    signal?.addEventListener('abort', onAbort, { once: true });

    const details = (exitCode: number | null, exitSignal: NodeJS.Signals | null, cause?: unknown) => ({
      command,
      exitCode,
      signal: exitSignal,
      stderrTail: stderrTail.toString('utf8'),
      ...(cause === undefined ? {} : { cause }),
    });
    const finish = (exitCode: number | null, exitSignal: NodeJS.Signals | null, spawnError?: Error): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      if (stopped?.failure === 'abort' || stopped?.failure === 'callback') {
        reject(stopped.reason);
      } else if (spawnError !== undefined) {
        reject(new ProcessError('spawn', `could not start ${command}: ${spawnError.message}`, details(null, null, spawnError)));
      } else if (stopped?.failure === 'timeout') {
        reject(new ProcessError('timeout', `${command} was killed after ${timeoutMs} ms`, details(exitCode, exitSignal)));
      } else if (stopped?.failure === 'output_limit') {
        reject(
          new ProcessError('output_limit', `${command} wrote more than ${maxStdoutBytes} bytes to stdout`, details(exitCode, exitSignal)),
        );
      } else if (exitCode !== 0) {
        const how = exitCode === null ? `was killed by ${exitSignal}` : `exited with code ${exitCode}`;
        const tail = lastLine(stderrTail.toString('utf8'));
        reject(new ProcessError('exit', `${command} ${how}${tail === '' ? '' : `: ${tail}`}`, details(exitCode, exitSignal)));
      } else {
        resolve({ stdout: Buffer.concat(stdoutChunks, stdoutBytes), stderr: stderrTail.toString('utf8') });
      }
    };

    child.stdout?.on('data', (chunk: Buffer) => {
      if (stopped !== undefined) return;
      if (options.onStdout !== undefined) {
        try {
          options.onStdout(chunk);
        } catch (error) {
          stopped = { failure: 'callback', reason: error };
          kill();
        }
        return;
      }
      stdoutBytes += chunk.length;
      if (stdoutBytes > maxStdoutBytes) {
        stopped = { failure: 'output_limit' };
        stdoutChunks.length = 0;
        stdoutBytes = 0;
        kill();
        return;
      }
      stdoutChunks.push(chunk);
    });
    child.stderr!.on('data', (chunk: Buffer) => {
      const joined = stderrTail.length === 0 ? chunk : Buffer.concat([stderrTail, chunk]);
      stderrTail = joined.length > STDERR_TAIL_BYTES ? joined.subarray(joined.length - STDERR_TAIL_BYTES) : joined;
    });
    // 'error' without a pid: the executable never started, and no 'close' may follow. Other 'error's (a failed
    // kill) are followed by 'close', which settles the run.
    child.once('error', (error) => {
      if (child.pid === undefined) finish(null, null, error);
    });
    child.once('close', (exitCode, exitSignal) => finish(exitCode, exitSignal));
  });
}

/** ffmpeg's note that it folded repeats of the line before: it says nothing by itself. */
const REPEAT_NOTE = /^\s*(?:\[[^\]]*\]\s*)?Last message repeated \d+ times?\s*$/;

/** The last non-empty line of a process's stderr (ffmpeg's "Last message repeated" notes skipped). */
export function lastLine(text: string): string {
  const lines = text.split(/\r?\n/).filter((line) => line.trim() !== '' && !REPEAT_NOTE.test(line));
  return lines.at(-1)?.trim() ?? '';
}

/**
 * Turns a failed media command into the error a client sees: undecodable input is the client's (415), a
 * runaway output is 413, a timeout 504; a binary that cannot start is the server's fault (500). Anything else
 * (an abort reason, an OcularError) passes through unchanged. `inputPath` is removed from ffmpeg's message,
 * so that server paths do not reach the client.
 */
export function toMediaError(error: unknown, action: string, inputPath: string): unknown {
  if (!(error instanceof ProcessError)) return error;
  switch (error.failure) {
    case 'timeout':
      return new OcularError('timeout_error', `${action} took too long and was stopped`, { cause: error });
    case 'output_limit':
      return new OcularError('payload_too_large', `${action} produced more output than allowed`, { cause: error });
    case 'spawn':
      return new OcularError('server_error', `${action}: the media tools could not be started`, { cause: error });
    case 'exit': {
      const detail = lastLine(error.stderrTail).replaceAll(`file:${inputPath}`, 'input').replaceAll(inputPath, 'input');
      return new OcularError('unsupported_media_type', `${action} failed${detail === '' ? '' : `: ${detail}`}`, { cause: error });
    }
  }
}
