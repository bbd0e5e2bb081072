import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
// Not the global fetch: Node's bundled undici (7.x in Node 24) asserts from a socket handler, taking the process
// down, when a peer sends FIN while a body is paused by backpressure (undici #5360, fixed in undici 8).
import { fetch, type Response } from 'undici';
import { isAbortError } from '../spec/errors.ts';
import { readHubChecksum } from './hub.ts';

export type DownloadErrorCode =
  'checksum_mismatch' | 'size_mismatch' | 'unauthorized' | 'not_found' | 'http_error' | 'network_error' | 'busy';

/** A download that did not produce a verified file. `retryable`: trying again later may succeed. */
export class ModelDownloadError extends Error {
  override name = 'ModelDownloadError';
  readonly code: DownloadErrorCode;
  readonly retryable: boolean;

  constructor(code: DownloadErrorCode, message: string, options: { retryable?: boolean; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.retryable = options.retryable ?? false;
  }
}

export interface DownloadProgress {
  /** Bytes on disk so far, including what an earlier attempt left in the `.part` file. */
  received: number;
  /** The file's size, once known. */
  total: number | undefined;
  /** Recent transfer rate. */
  bytesPerSecond: number;
}

export interface DownloadFileOptions {
  url: string;
  /** Final path; bytes go to `<destination>.part` until verified, then are renamed into place. */
  destination: string;
  /** Sent as `Authorization: Bearer` to the URL's origin only (never to the CDN a hub redirects to). */
  token?: string | undefined;
  /** Expected content digest (hex), e.g. from the catalog. */
  sha256?: string | undefined;
  /** Expected size in bytes. */
  size?: number | undefined;
  signal?: AbortSignal | undefined;
  onProgress?: ((progress: DownloadProgress) => void) | undefined;
  /** Times a dropped connection is resumed (HTTP Range) within this call. @default 5 */
  maxResumes?: number | undefined;
  /** Milliseconds without a byte before the connection counts as dropped. @default 60000 */
  stallTimeoutMs?: number | undefined;
}

export interface DownloadResult {
  path: string;
  size: number;
  sha256: string;
  /** Where the digest it was checked against came from; empty when no source gave one. */
  verifiedWith: Array<'expected' | 'hub'>;
}

const MAX_REDIRECTS = 5;
const REDIRECTS = new Set([301, 302, 303, 307, 308]);

type HubChecksum = ReturnType<typeof readHubChecksum>;

/**
 * GET with redirects followed by hand: the hub's own first answer carries the checksum headers, and `check` may
 * refuse the file (throwing) before anything is fetched from where it redirects.
 */
async function request(
  url: string,
  headers: Record<string, string>,
  signal: AbortSignal,
  check: (hub: HubChecksum) => void,
): Promise<Response> {
  const origin = new URL(url).origin;
  let current = url;
  for (let hop = 0; hop <= MAX_REDIRECTS; hop += 1) {
    const { authorization, ...anonymous } = headers;
    void authorization;
    const response = await fetch(current, {
      headers: new URL(current).origin === origin ? headers : anonymous,
      redirect: 'manual',
      signal,
    });
    if (hop === 0) {
      try {
        check(readHubChecksum(response.headers));
      } catch (error) {
        await response.body?.cancel();
        throw error;
      }
    }
    const location = response.headers.get('location');
    if (!REDIRECTS.has(response.status) || location === null) return response;
    await response.body?.cancel();
    current = new URL(location, current).href;
  }
  throw new ModelDownloadError('http_error', `${url}: more than ${MAX_REDIRECTS} redirects`);
}

/** Hashes what an earlier attempt left on disk, so a resumed download is verified end to end. */
async function hashExisting(path: string, hash: Hash): Promise<number> {
  let bytes = 0;
  try {
    for await (const chunk of createReadStream(path)) {
      hash.update(chunk as Buffer);
      bytes += (chunk as Buffer).length;
    }
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw error;
  }
  return bytes;
}

// Locks this process holds, so a lock file carrying our own pid (a container restarts with the same pid) is
// recognised as stale rather than busy.
const heldLocks = new Set<string>();

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** One writer per file across processes: a server pulling in the background and `ocular models pull` share `.part`. */
async function acquireLock(path: string): Promise<() => Promise<void>> {
  // Claimed before the first await, so two downloads in this process cannot both get past here.
  if (heldLocks.has(path)) throw new ModelDownloadError('busy', `${path} is already being downloaded`, { retryable: true });
  heldLocks.add(path);
  try {
    await writeFile(path, String(process.pid), { flag: 'wx' });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') {
      heldLocks.delete(path);
      throw error;
    }
    const pid = Number((await readFile(path, 'utf8').catch(() => '')).trim());
    if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && isAlive(pid)) {
      heldLocks.delete(path);
      throw new ModelDownloadError('busy', `another process (pid ${pid}) is downloading this file; if none is, delete ${path}`, {
        retryable: true,
      });
    }
    await writeFile(path, String(process.pid));
  }
  return async () => {
    heldLocks.delete(path);
    await rm(path, { force: true });
  };
}

/** Transfer rate over the last few seconds, for progress and ETA. */
class RateMeter {
  readonly #samples: Array<{ at: number; bytes: number }> = [];

  sample(bytes: number): number {
    const now = performance.now();
    this.#samples.push({ at: now, bytes });
    while (this.#samples.length > 2 && now - this.#samples[0]!.at > 5_000) this.#samples.shift();
    const first = this.#samples[0]!;
    const seconds = (now - first.at) / 1000;
    return seconds > 0 ? (bytes - first.bytes) / seconds : 0;
  }
}

/** `getaddrinfo ENOTFOUND huggingface.co` rather than fetch's bare `fetch failed`. */
function describeNetworkError(error: unknown): string {
  const cause = (error as { cause?: { code?: string; message?: string } }).cause;
  return cause?.message || cause?.code || (error as Error).message;
}

/**
 * Downloads `url` to `destination`: streamed to `<destination>.part` while hashing, resumed with HTTP Range after
 * a dropped connection (here, or in an earlier run: the existing part is re-hashed first), verified against every
 * checksum source there is (the expected digest and the hub's `X-Linked-Etag`), then renamed into place.
 * A mismatch removes the part file and fails; an abort keeps it for the next run.
 */
export async function downloadFile(options: DownloadFileOptions): Promise<DownloadResult> {
  const { url, destination, signal } = options;
  const part = `${destination}.part`;
  const maxResumes = options.maxResumes ?? 5;
  const stallTimeoutMs = options.stallTimeoutMs ?? 60_000;
  await mkdir(dirname(destination), { recursive: true });
  const releaseLock = await acquireLock(`${destination}.lock`);
  try {
    let hash = createHash('sha256');
    let received = await hashExisting(part, hash);
    let hubSha256: string | undefined;
    let total = options.size;
    const meter = new RateMeter();
    const restart = async () => {
      hash = createHash('sha256');
      received = 0;
      await rm(part, { force: true });
    };
    if (options.size !== undefined && received > options.size) await restart();

    for (let resumes = 0; ;) {
      signal?.throwIfAborted();
      const attempt = new AbortController();
      const attemptSignal = signal ? AbortSignal.any([signal, attempt.signal]) : attempt.signal;
      const stall = () =>
        attempt.abort(new ModelDownloadError('network_error', `${url}: no data for ${stallTimeoutMs / 1000}s`, { retryable: true }));
      let stallTimer = setTimeout(stall, stallTimeoutMs);
      const resetStall = () => {
        clearTimeout(stallTimer);
        stallTimer = setTimeout(stall, stallTimeoutMs);
      };
      const headers: Record<string, string> = { 'user-agent': 'ocular' };
      if (options.token) headers.authorization = `Bearer ${options.token}`;
      if (received > 0) headers.range = `bytes=${received}-`;
      let connected = false;
      try {
        const response = await request(url, headers, attemptSignal, (hub) => {
          if (hub.sha256 !== undefined) {
            if (options.sha256 !== undefined && hub.sha256 !== options.sha256.toLowerCase()) {
              throw new ModelDownloadError(
                'checksum_mismatch',
                `${url}: the hub serves a different file (sha256 ${hub.sha256}) than the one expected (${options.sha256}); ` +
                  'the repository has changed since the catalog was written',
              );
            }
            hubSha256 = hub.sha256;
          }
          if (hub.size !== undefined) {
            if (options.size !== undefined && hub.size !== options.size) {
              throw new ModelDownloadError('size_mismatch', `${url}: the hub reports ${hub.size} bytes, expected ${options.size}`);
            }
            total = hub.size;
          }
        });
        connected = true;
        if (response.status === 416 && received > 0) {
          // Nothing after what we have: either the part is complete, or it belongs to another version of the file.
          await response.body?.cancel();
          const range = response.headers.get('content-range')?.match(/\/(\d+)$/);
          if (range && Number(range[1]) === received) break;
          await restart();
          continue;
        }
        if (response.status === 401 || response.status === 403) {
          await response.body?.cancel();
          throw new ModelDownloadError(
            'unauthorized',
            `${url}: HTTP ${response.status}; the repository may be gated or private: set HF_TOKEN to a Hugging Face token with access`,
          );
        }
        if (response.status === 404) {
          await response.body?.cancel();
          throw new ModelDownloadError('not_found', `${url}: HTTP 404, no such repository or file`);
        }
        if (response.status !== 200 && response.status !== 206) {
          await response.body?.cancel();
          const retryable = response.status === 408 || response.status === 429 || response.status >= 500;
          throw new ModelDownloadError('http_error', `${url}: HTTP ${response.status}`, { retryable });
        }
        if (response.status === 206) {
          const range = response.headers.get('content-range')?.match(/^bytes (\d+)-\d+\/(\d+|\*)$/);
          if (!range || Number(range[1]) !== received) {
            // A range we did not ask for: start over rather than splice mismatched bytes.
            await response.body?.cancel();
            await restart();
            continue;
          }
          if (range[2] !== '*') total ??= Number(range[2]);
        } else {
          // 200: the server ignored the range (or there was none): whatever the part held is replaced.
          if (received > 0) await restart();
          const length = response.headers.get('content-length');
          if (length !== null && /^\d+$/.test(length)) total ??= Number(length);
        }
        if (options.size !== undefined && total !== undefined && total !== options.size) {
          await response.body?.cancel();
          throw new ModelDownloadError('size_mismatch', `${url}: the server sends ${total} bytes, expected ${options.size}`);
        }
        const handle = await open(part, 'a');
        const reader = response.body?.getReader();
        let finished = false;
        try {
          for (let next = await reader?.read(); next && !next.done; next = await reader?.read()) {
            // Written before hashed: the hash only ever covers bytes that are in the part file.
            await handle.write(next.value);
            hash.update(next.value);
            received += next.value.length;
            if (total !== undefined && received > total) {
              // More than announced: a server that never stops sending would otherwise fill the disk.
              await rm(part, { force: true });
              throw new ModelDownloadError('size_mismatch', `${url}: the server sent more than the ${total} bytes announced; the download was removed`);
            }
            resetStall();
            options.onProgress?.({ received, total, bytesPerSecond: meter.sample(received) });
          }
          finished = true;
        } finally {
          // A body left unread keeps its connection (and the server's sending) alive: cancel it.
          if (finished) reader?.releaseLock();
          else await reader?.cancel().catch(() => undefined);
          await handle.close();
        }
        if (total === undefined || received >= total) break;
        throw new ModelDownloadError('network_error', `${url}: the connection ended after ${received} of ${total} bytes`, {
          retryable: true,
        });
      } catch (error) {
        if (signal?.aborted) throw signal.reason ?? error;
        const dropped =
          (error instanceof ModelDownloadError && error.code === 'network_error') ||
          (!(error instanceof ModelDownloadError) && (isAbortError(error) || error instanceof TypeError));
        if (!dropped) throw error;
        // The bytes received so far stay in the part file (and in the hash): ask for the rest. A first connection
        // that fails outright (no network, refused) is reported at once; the caller decides when to try again.
        resumes += 1;
        if (resumes > maxResumes || (!connected && resumes === 1)) {
          const reason = error instanceof ModelDownloadError ? error.message : `${url}: ${describeNetworkError(error)}`;
          const detail = connected ? ` (gave up after ${maxResumes} resumes)` : '';
          throw new ModelDownloadError('network_error', `${reason}${detail}`, {
            retryable: true,
            cause: error,
          });
        }
        await new Promise((resolve) => setTimeout(resolve, Math.min(250 * 2 ** resumes, 5_000)));
      } finally {
        clearTimeout(stallTimer);
      }
    }

    const digest = hash.digest('hex');
    const verifiedWith: DownloadResult['verifiedWith'] = [];
    for (const [source, expected] of [
      ['expected', options.sha256?.toLowerCase()],
      ['hub', hubSha256],
    ] as const) {
      if (expected === undefined) continue;
      if (digest !== expected) {
        await rm(part, { force: true });
        throw new ModelDownloadError(
          'checksum_mismatch',
          `${url}: sha256 ${digest} does not match ${expected} (${source}); the download was removed`,
          {
            retryable: true,
          },
        );
      }
      verifiedWith.push(source);
    }
    if (total !== undefined && received !== total) {
      await rm(part, { force: true });
      throw new ModelDownloadError('size_mismatch', `${url}: received ${received} bytes, expected ${total}; the download was removed`, {
        retryable: true,
      });
    }
    await rename(part, destination);
    return { path: destination, size: (await stat(destination)).size, sha256: digest, verifiedWith };
  } finally {
    await releaseLock();
  }
}
