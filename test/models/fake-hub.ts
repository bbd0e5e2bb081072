import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** How the fake hub serves one file. */
export interface HubFile {
  content: Buffer;
  /** `X-Linked-Etag` value: the content's sha256 unless overridden; `null` sends none (a hub without checksums). */
  etag?: string | null;
  /** Close the socket after sending half of the body, for the first `cuts` full (non-resumed) requests. @default 0 */
  cuts?: number;
  /** Like `cuts`, but the connection is left open and silent instead of closed (a stalled transfer). @default 0 */
  stalls?: number;
  /** Bytes per second, for a slow download. @default unlimited */
  bytesPerSecond?: number;
  /** Answer 200 with the whole file even when a Range is asked for. */
  ignoreRange?: boolean;
}

export interface HubRequest {
  path: string;
  range: string | undefined;
  authorization: string | undefined;
}

export interface FakeHub {
  /** Base URL, for HF_ENDPOINT. */
  url: string;
  requests: HubRequest[];
  files: Map<string, HubFile>;
  /** Adds `repo/file`, returning its sha256. */
  add(repo: string, file: string, hubFile: HubFile): string;
  close(): Promise<void>;
}

export const sha256Of = (content: Buffer): string => createHash('sha256').update(content).digest('hex');

/** Bytes that differ at every position, so a spliced or shifted download cannot hash right by chance. */
export function testBytes(size: number, seed = 1): Buffer {
  const bytes = Buffer.alloc(size);
  let state = seed;
  for (let index = 0; index < size; index += 1) {
    state = (state * 1_103_515_245 + 12_345) >>> 0;
    bytes[index] = state >>> 24;
  }
  return bytes;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * A local stand-in for the Hugging Face hub: `/{repo}/resolve/main/{file}` answers like huggingface.co does for
 * LFS files (a 302 to a CDN path carrying `X-Linked-Etag`/`X-Linked-Size`), and the CDN path serves the bytes with
 * Range support. With `token`, the resolve route answers 401 unless `Authorization: Bearer <token>` is sent.
 */
export async function startFakeHub(options: { token?: string } = {}): Promise<FakeHub> {
  const files = new Map<string, HubFile>();
  const requests: HubRequest[] = [];
  const cutsDone = new Map<string, number>();

  const serveBytes = async (request: IncomingMessage, response: ServerResponse, key: string, hubFile: HubFile) => {
    const { content } = hubFile;
    const range = /^bytes=(\d+)-$/.exec(request.headers.range ?? '');
    let start = 0;
    if (range && !hubFile.ignoreRange) {
      start = Number(range[1]);
      if (start >= content.length) {
        response.writeHead(416, { 'content-range': `bytes */${content.length}` }).end();
        return;
      }
      response.writeHead(206, {
        'content-length': content.length - start,
        'content-range': `bytes ${start}-${content.length - 1}/${content.length}`,
        'accept-ranges': 'bytes',
      });
    } else {
      response.writeHead(200, { 'content-length': content.length, 'accept-ranges': 'bytes' });
    }
    const interrupted = start === 0 && (cutsDone.get(key) ?? 0) < (hubFile.cuts ?? 0) + (hubFile.stalls ?? 0);
    const cut = interrupted && (cutsDone.get(key) ?? 0) < (hubFile.cuts ?? 0);
    const stall = interrupted && !cut;
    if (interrupted) cutsDone.set(key, (cutsDone.get(key) ?? 0) + 1);
    const end = interrupted ? Math.floor(content.length / 2) : content.length;
    const chunk = hubFile.bytesPerSecond ? Math.max(1, Math.floor(hubFile.bytesPerSecond / 20)) : 64 * 1024;
    for (let offset = start; offset < end; offset += chunk) {
      if (response.destroyed) return;
      const piece = content.subarray(offset, Math.min(end, offset + chunk));
      if (!response.write(piece)) await new Promise((resolve) => response.once('drain', resolve));
      if (hubFile.bytesPerSecond) await sleep(50);
    }
    if (stall) {
      // Say nothing more until the client gives up on this connection.
      await new Promise((resolve) => response.once('close', resolve));
      return;
    }
    if (cut) {
      // Let the half reach the client, then drop the connection mid-body.
      await sleep(20);
      request.socket.destroy();
      return;
    }
    response.end();
  };

  // The bytes come from another origin, as huggingface.co redirects to its CDN: credentials must not follow.
  const cdnServer = createServer((request, response) => {
    const path = decodeURIComponent(new URL(request.url ?? '/', 'http://cdn').pathname);
    requests.push({ path, range: request.headers.range, authorization: request.headers.authorization });
    const cdn = /^\/cdn\/(.+)$/.exec(path);
    const hubFile = cdn ? files.get(cdn[1]!) : undefined;
    if (!cdn || !hubFile) return void response.writeHead(404).end();
    void serveBytes(request, response, cdn[1]!, hubFile);
  });
  await new Promise<void>((resolve) => cdnServer.listen(0, '127.0.0.1', resolve));
  const cdnUrl = `http://127.0.0.1:${(cdnServer.address() as AddressInfo).port}`;

  const server = createServer((request, response) => {
    const url = new URL(request.url ?? '/', 'http://hub');
    const path = decodeURIComponent(url.pathname);
    requests.push({ path, range: request.headers.range, authorization: request.headers.authorization });
    const resolve = /^\/([^/]+\/[^/]+)\/resolve\/main\/(.+)$/.exec(path);
    if (!resolve) return void response.writeHead(404).end();
    if (options.token !== undefined && request.headers.authorization !== `Bearer ${options.token}`) {
      return void response
        .writeHead(401, { 'content-type': 'application/json' })
        .end('{"error":"Invalid credentials in Authorization header"}');
    }
    const key = `${resolve[1]}/${resolve[2]}`;
    const hubFile = files.get(key);
    if (!hubFile) return void response.writeHead(404, { 'x-error-code': 'EntryNotFound' }).end();
    const etag = hubFile.etag === undefined ? sha256Of(hubFile.content) : hubFile.etag;
    response
      .writeHead(302, {
        location: `${cdnUrl}/cdn/${key.split('/').map(encodeURIComponent).join('/')}`,
        'x-linked-size': String(hubFile.content.length),
        ...(etag === null ? {} : { 'x-linked-etag': `"${etag}"` }),
        // A git blob sha1 like the hub's own ETag: it must not be taken for a content checksum.
        etag: '"0123456789abcdef0123456789abcdef01234567"',
      })
      .end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    files,
    add(repo, file, hubFile) {
      files.set(`${repo}/${file}`, hubFile);
      return sha256Of(hubFile.content);
    },
    close: async () => {
      for (const instance of [server, cdnServer]) {
        instance.closeAllConnections();
        await new Promise<void>((resolve) => instance.close(() => resolve()));
      }
    },
  };
}
