import { lookup as dnsLookup } from 'node:dns/promises';
import { createWriteStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import { isIP, type LookupFunction } from 'node:net';
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Agent, request, type Dispatcher } from 'undici';
import { OcularError } from '../spec/errors.ts';
import { blockedHostMessage, describeBlockedAddress, isAllowedHost, parseAllowHosts, type AllowHosts } from './address-policy.ts';
import type { Scratch } from './scratch.ts';

/** Sent on every media request, so site owners can tell what is fetching and why. */
export const MEDIA_USER_AGENT = 'Ocular/0.1 (+media fetcher)';

export interface ResolvedAddress {
  address: string;
  /** 4 or 6. */
  family: number;
}

/** Resolves a hostname to all its addresses. Injectable for tests and custom resolvers. */
export type ResolveHost = (hostname: string) => Promise<readonly ResolvedAddress[]>;

/** The settings of a {@link MediaFetcher}; fixed for its lifetime, usually from configuration. */
export interface MediaFetcherOptions {
  /** Largest body accepted, in bytes; enforced while the body streams in. */
  maxBytes: number;
  /** Milliseconds to resolve the host and open the connection (TLS handshake included). */
  connectTimeoutMs: number;
  /** Milliseconds for the whole fetch: every redirect hop and the complete body. */
  timeoutMs: number;
  /**
   * Milliseconds without a byte from the host (waiting for its headers, or between body chunks) before giving up;
   * for a long `timeoutMs` (large uploads), so that a host that stops sending is not waited on for all of it.
   * @default timeoutMs
   */
  stallTimeoutMs?: number | undefined;
  /**
   * Hosts exempt from the address check (on-prem storage): `host` for any port, `host:port` for one port.
   * Only the named host is exempt; a redirect from it to anywhere else is checked as usual.
   */
  allowHosts: readonly string[];
  /** Redirects followed before giving up. @default 5 */
  maxRedirects?: number | undefined;
  /** How hostnames are resolved. @default `dns.lookup` with `all: true` (the system resolver, /etc/hosts included) */
  resolveHost?: ResolveHost | undefined;
}

/** {@link MediaFetcherOptions} plus the request part being fetched, for {@link fetchMedia}. */
export interface FetchMediaOptions {
  /** The request field the URL came from (`messages.0.content.1`): named in error messages and used as `param`. */
  label: string;
  maxBytes: number;
  connectTimeoutMs: number;
  timeoutMs: number;
  allowHosts: readonly string[];
  /** @default 5 */
  maxRedirects?: number | undefined;
}

export interface FetchedMedia {
  /** The downloaded body, a file inside the request's scratch directory. */
  path: string;
  size: number;
  /** The response's `Content-Type` header, unverified: sniff the file before trusting it. */
  contentType: string | undefined;
  /** The URL the body came from, after redirects. */
  finalUrl: string;
}

export interface MediaFetcher {
  /**
   * Downloads `url` into `scratch`. Every failure is a `validation_error` with `param: label`, except an
   * abort through `signal`, which rethrows the signal's reason.
   */
  fetch(url: string, label: string, scratch: Scratch, signal: AbortSignal): Promise<FetchedMedia>;
  /**
   * POSTs `body` to `url` (a webhook) under the same address policy, without following redirects, and returns
   * the status code; the response body is discarded. Failures are `validation_error`s naming `label`:
   * `retryable` for timeouts and network failures, not for URLs the policy refuses.
   */
  post(url: string, body: string, headers: Readonly<Record<string, string>>, label: string, signal: AbortSignal): Promise<number>;
  /** Closes the pooled connections. */
  close(): Promise<void>;
}

const DEFAULT_MAX_REDIRECTS = 5;
const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);
const DNS_FAILURE_CODES = new Set(['ENOTFOUND', 'EAI_AGAIN', 'EAI_FAIL', 'EAI_NONAME', 'EAI_NODATA', 'ENODATA']);
/** What a redirect's body may cost before its connection is dropped instead of drained for reuse. */
const REDIRECT_BODY_LIMIT = 64 * 1024;

/** Raised inside the connector's lookup; carries what the error message needs. */
class BlockedAddressError extends Error {
  readonly hostname: string;
  readonly description: string;

  constructor(hostname: string, description: string) {
    super(`${hostname} resolves to ${description}`);
    this.name = 'BlockedAddressError';
    this.hostname = hostname;
    this.description = description;
  }
}

const defaultResolveHost: ResolveHost = (hostname) => dnsLookup(hostname, { all: true });

function wantedFamily(family: number | string | undefined): number | undefined {
  if (family === 4 || family === 'IPv4') return 4;
  if (family === 6 || family === 'IPv6') return 6;
  return undefined;
}

/**
 * The `lookup` the connector's sockets use. net/tls connect to exactly the addresses it returns, so
 * resolving and vetting happen once per connection and no later lookup can be rebound to another address.
 * Every address in the answer must pass, not only the one used: a mixed answer is an attack, not a fallback.
 */
function createLookup(resolveHost: ResolveHost, vet: boolean): LookupFunction {
  return (hostname, options, callback) => {
    resolveHost(hostname).then(
      (addresses) => {
        const family = wantedFamily(options.family);
        const usable = family === undefined ? addresses : addresses.filter((entry) => entry.family === family);
        const blocked = vet
          ? addresses.map((entry) => describeBlockedAddress(entry.address)).find((words) => words !== undefined)
          : undefined;
        const first = usable[0];
        if (blocked !== undefined) {
          callback(new BlockedAddressError(hostname, blocked), '');
        } else if (first === undefined) {
          callback(Object.assign(new Error(`no usable address for ${hostname}`), { code: 'ENOTFOUND', hostname }), '');
        } else if (options.all === true) {
          callback(
            null,
            usable.map(({ address, family: addressFamily }) => ({ address, family: addressFamily })),
          );
        } else {
          callback(null, first.address, first.family);
        }
      },
      (error: NodeJS.ErrnoException) => callback(error, ''),
    );
  };
}

function errorCode(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** The error and its causes, outermost first (undici and net may wrap the lookup's error). */
function causeChain(error: unknown): unknown[] {
  const chain: unknown[] = [];
  for (
    let current = error;
    current !== undefined && current !== null && chain.length < 8;
    current = (current as { cause?: unknown }).cause
  ) {
    chain.push(current);
  }
  return chain;
}

function firstHeader(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

/** Drops a body we will not read, and its connection; the abort error that destroying raises is expected. */
function discard(body: Dispatcher.ResponseData['body']): void {
  body.on('error', () => undefined).destroy();
}

/** The hostname as net wants it: IPv6 literals without their URL brackets. */
const bareHostname = (url: URL): string => (url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname);

/**
 * Builds a fetcher for one configuration. Connection pools, the parsed allow-list and the resolvers are made
 * here once; each `fetch` only parses its URL and streams. Build one per configuration and reuse it.
 */
export function createMediaFetcher(options: MediaFetcherOptions): MediaFetcher {
  const { maxBytes, connectTimeoutMs, timeoutMs } = options;
  const stallTimeoutMs = Math.min(options.stallTimeoutMs ?? timeoutMs, timeoutMs);
  const maxRedirects = options.maxRedirects ?? DEFAULT_MAX_REDIRECTS;
  const allow: AllowHosts = parseAllowHosts(options.allowHosts);
  const resolveHost = options.resolveHost ?? defaultResolveHost;
  const agentOptions = (vet: boolean): Agent.Options => ({
    connect: { timeout: connectTimeoutMs, lookup: createLookup(resolveHost, vet) },
    // The total deadline below governs the whole fetch; these catch a host that stops sending before it.
    headersTimeout: stallTimeoutMs,
    bodyTimeout: stallTimeoutMs,
    keepAliveTimeout: 10_000,
  });
  // Two pools, chosen per hop: connections to allow-listed hosts never serve a vetted host, nor the reverse.
  const vetted = new Agent(agentOptions(true));
  const exempt = allow.anyPort.size + allow.onPort.size > 0 ? new Agent(agentOptions(false)) : undefined;
  const headers = { 'user-agent': MEDIA_USER_AGENT, accept: '*/*', 'accept-encoding': 'identity' };

  async function fetchOnce(url: string, label: string, scratch: Scratch, signal: AbortSignal): Promise<FetchedMedia> {
    signal.throwIfAborted();
    const fail = (reason: string, cause?: unknown): OcularError =>
      new OcularError('validation_error', `${label}: ${reason}`, { param: label, cause });

    let current: URL;
    try {
      current = new URL(url);
    } catch (error) {
      throw fail('the media URL is not a valid URL', error);
    }
    const deadline = new AbortController();
    const timer = setTimeout(() => deadline.abort(), timeoutMs);
    const combined = AbortSignal.any([signal, deadline.signal]);
    let partialPath: string | undefined;
    try {
      for (let redirects = 0; ; redirects++) {
        const dispatcher = chooseDispatcher(current, fail);
        const response = await request(current, { dispatcher, method: 'GET', headers, signal: combined });
        const { statusCode, body } = response;

        if (REDIRECT_STATUSES.has(statusCode)) {
          await body.dump({ limit: REDIRECT_BODY_LIMIT, signal: combined });
          if (redirects >= maxRedirects) throw fail(`the media URL redirected too many times (more than ${maxRedirects} redirects)`);
          const location = firstHeader(response.headers.location);
          if (location === undefined) throw fail(`the media URL returned HTTP ${statusCode} without a Location header`);
          try {
            current = new URL(location, current);
          } catch (error) {
            throw fail(`the media URL redirected to an invalid URL`, error);
          }
          continue;
        }
        if (statusCode < 200 || statusCode > 299) {
          discard(body);
          throw fail(`the media URL returned HTTP ${statusCode}`);
        }
        const announced = Number(firstHeader(response.headers['content-length']) ?? Number.NaN);
        if (announced > maxBytes) {
          discard(body);
          throw fail(`the media is larger than the ${maxBytes}-byte limit (Content-Length ${announced})`);
        }

        const path = scratch.path();
        partialPath = path;
        let size = 0;
        const limiter = new Transform({
          transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback) {
            size += chunk.length;
            if (size > maxBytes) callback(fail(`the media is larger than the ${maxBytes}-byte limit`));
            else callback(null, chunk);
          },
        });
        // pipeline destroys the response body on any failure, which drops its connection mid-transfer.
        await pipeline(body, limiter, createWriteStream(path, { flags: 'wx' }));
        partialPath = undefined;
        return { path, size, contentType: firstHeader(response.headers['content-type']), finalUrl: current.href };
      }
    } catch (error) {
      if (partialPath !== undefined) await rm(partialPath, { force: true });
      if (signal.aborted) throw signal.reason;
      if (error instanceof OcularError) throw error;
      if (deadline.signal.aborted) throw fail(`fetching the media URL timed out after ${timeoutMs} ms`, error);
      throw fail(describeNetworkFailure(error, current), error);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Checks a hop's scheme and, for an IP literal (which net connects to without a lookup), its address. */
  function chooseDispatcher(url: URL, fail: (reason: string) => OcularError): Dispatcher {
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw fail(`unsupported media URL scheme '${url.protocol.slice(0, -1)}': only http and https are fetched`);
    }
    if (exempt !== undefined && isAllowedHost(allow, url)) return exempt;
    const hostname = bareHostname(url);
    if (isIP(hostname) !== 0) {
      const blocked = describeBlockedAddress(hostname);
      if (blocked !== undefined) throw fail(blockedHostMessage(url, `the media host is ${blocked}`));
    }
    return vetted;
  }

  function describeNetworkFailure(error: unknown, url: URL): string {
    const host = url.host;
    const chain = causeChain(error);
    const blocked = chain.find((entry): entry is BlockedAddressError => entry instanceof BlockedAddressError);
    if (blocked !== undefined) return blockedHostMessage(url, `the media host ${blocked.hostname} resolves to ${blocked.description}`);
    const codes = chain.map(errorCode).filter((code): code is string => code !== undefined);
    const dnsCode = codes.find((code) => DNS_FAILURE_CODES.has(code));
    if (dnsCode !== undefined) return `DNS lookup of the media host ${url.hostname} failed (${dnsCode})`;
    if (codes.includes('UND_ERR_CONNECT_TIMEOUT')) return `connecting to the media host ${host} timed out after ${connectTimeoutMs} ms`;
    if (codes.includes('UND_ERR_HEADERS_TIMEOUT') || codes.includes('UND_ERR_BODY_TIMEOUT')) {
      return stallTimeoutMs < timeoutMs
        ? `the media host sent nothing for ${stallTimeoutMs} ms`
        : `fetching the media URL timed out after ${timeoutMs} ms`;
    }
    const code = codes[0];
    return `fetching the media URL from ${host} failed${code === undefined ? '' : ` (${code})`}`;
  }

  async function post(
    url: string,
    body: string,
    extraHeaders: Readonly<Record<string, string>>,
    label: string,
    signal: AbortSignal,
  ): Promise<number> {
    signal.throwIfAborted();
    const fail = (reason: string, cause?: unknown): OcularError =>
      new OcularError('validation_error', `${label}: ${reason}`, { param: label, cause });
    let target: URL;
    try {
      target = new URL(url);
    } catch (error) {
      throw fail('not a valid URL', error);
    }
    const deadline = AbortSignal.timeout(timeoutMs);
    const combined = AbortSignal.any([signal, deadline]);
    try {
      const dispatcher = chooseDispatcher(target, fail);
      const response = await request(target, {
        dispatcher,
        method: 'POST',
        headers: { ...headers, ...extraHeaders },
        body,
        signal: combined,
      });
      await response.body.dump({ limit: REDIRECT_BODY_LIMIT, signal: combined });
      return response.statusCode;
    } catch (error) {
      if (signal.aborted) throw signal.reason;
      // Refusals by the address policy are final (`retryable` false); timeouts and network failures may pass.
      if (error instanceof OcularError) throw error;
      const message = deadline.aborted
        ? `the request timed out after ${timeoutMs} ms`
        : describeNetworkFailure(error, target).replace('fetching the media URL', 'the request');
      throw new OcularError('validation_error', `${label}: ${message}`, { param: label, cause: error, retryable: true });
    }
  }

  return {
    fetch: fetchOnce,
    post,
    async close() {
      await Promise.all([vetted.close(), exempt?.close()]);
    },
  };
}

/** Fetchers shared by {@link fetchMedia}, one per configuration; configurations come from config, so few. */
const sharedFetchers = new Map<string, MediaFetcher>();
const MAX_SHARED_FETCHERS = 16;

function sharedFetcher(options: MediaFetcherOptions): MediaFetcher {
  const key = JSON.stringify([options.maxBytes, options.connectTimeoutMs, options.timeoutMs, options.maxRedirects, options.allowHosts]);
  let fetcher = sharedFetchers.get(key);
  if (fetcher === undefined) {
    if (sharedFetchers.size >= MAX_SHARED_FETCHERS) {
      const [oldestKey, oldest] = sharedFetchers.entries().next().value as [string, MediaFetcher];
      sharedFetchers.delete(oldestKey);
      void oldest.close(); // waits for requests in flight before closing
    }
    fetcher = createMediaFetcher(options);
    sharedFetchers.set(key, fetcher);
  }
  return fetcher;
}

/**
 * Downloads an `http(s)://` media URL into `scratch`, refusing non-public addresses (SSRF), with size and time
 * caps enforced while streaming. Reuses one fetcher (and its connection pools) per distinct configuration;
 * callers that hold their configuration can build one with {@link createMediaFetcher} instead.
 */
export async function fetchMedia(url: string, options: FetchMediaOptions, scratch: Scratch, signal: AbortSignal): Promise<FetchedMedia> {
  const { label, ...config } = options;
  return sharedFetcher(config).fetch(url, label, scratch, signal);
}
