// A raw TCP peer that misbehaves on command, for pointing Ocular's outbound HTTP paths at. Each request's first
// path segment names the behaviour (`http://127.0.0.1:PORT/fin-length/anything/else`); the rest of the path is
// free, so a provider's base URL or a file name can follow. It never parses more than the request head.
import { createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';

export const HOSTILE_BEHAVIOURS = [
  /** Status, headers with Content-Length and the whole body, then FIN, in one write. */
  'fin-length',
  /** Status, chunked headers, every chunk and the last one, then FIN, in one write. */
  'fin-chunked',
  /** Status, headers with neither length nor chunking (body ends at EOF), the body, then FIN, in one write. */
  'fin-eof',
  /** Status, headers announcing more bytes than come, part of the body, then a TCP reset. */
  'reset',
  /** Status and headers announcing a body, then nothing; the socket stays open until the other side leaves. */
  'silent',
  /** Status, chunked headers, then chunks for as long as the other side reads. */
  'endless',
  /** A status line that is not HTTP, then FIN. */
  'malformed',
] as const;

export type HostileBehaviour = (typeof HOSTILE_BEHAVIOURS)[number];

export interface HostilePeer {
  /** `http://127.0.0.1:PORT` */
  origin: string;
  /** `host:port`, as `media.allowHosts` takes it. */
  host: string;
  /** A URL whose requests get `behaviour`, with `rest` (no leading slash) after it. */
  url(behaviour: HostileBehaviour, rest?: string): string;
  /** Requests received so far, by behaviour. */
  readonly received: Readonly<Record<string, number>>;
  /** The behaviour of each socket still open (a client that gave up must have closed its end); `?` before its request. */
  openSockets(): string[];
  close(): Promise<void>;
}

export interface HostilePeerOptions {
  /** The body sent by the `fin-*` and `reset` behaviours. @default 2.5 MB of pseudo-random bytes */
  body?: Buffer;
  /** The Content-Type header of every response. @default application/octet-stream */
  contentType?: string;
  /** Longest time an `endless` or `silent` response is kept up, so the peer stops by itself. @default 60000 */
  maxHoldMs?: number;
}

const DEFAULT_BODY_BYTES = 2_500_000;
const ENDLESS_CHUNK = Buffer.alloc(64 * 1024, 'x');

/** Deterministic bytes that no sniffer takes for a known format. */
function pseudoRandomBytes(length: number): Buffer {
  const bytes = Buffer.alloc(length);
  let state = 0x2545f491;
  for (let index = 0; index < length; index++) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    bytes[index] = state & 0xff;
  }
  return bytes;
}

const chunked = (body: Buffer): Buffer => {
  const parts: Buffer[] = [];
  for (let offset = 0; offset < body.length; offset += 300_000) {
    const piece = body.subarray(offset, offset + 300_000);
    parts.push(Buffer.from(`${piece.length.toString(16)}\r\n`), piece, Buffer.from('\r\n'));
  }
  parts.push(Buffer.from('0\r\n\r\n'));
  return Buffer.concat(parts);
};

export async function startHostilePeer(options: HostilePeerOptions = {}): Promise<HostilePeer> {
  const body = options.body ?? pseudoRandomBytes(DEFAULT_BODY_BYTES);
  const contentType = options.contentType ?? 'application/octet-stream';
  const maxHoldMs = options.maxHoldMs ?? 60_000;
  const received: Record<string, number> = {};
  /** Open sockets, with the behaviour each was asked for. */
  const sockets = new Map<Socket, string>();

  const head = (lines: string[]): Buffer => Buffer.from(['HTTP/1.1 200 OK', `Content-Type: ${contentType}`, ...lines, '', ''].join('\r\n'));

  const respond = (socket: Socket, behaviour: string): void => {
    // Every response ends the connection: nothing is kept alive for a next request.
    switch (behaviour as HostileBehaviour) {
      case 'fin-length':
        socket.end(Buffer.concat([head([`Content-Length: ${body.length}`, 'Connection: close']), body]));
        return;
      case 'fin-chunked':
        socket.end(Buffer.concat([head(['Transfer-Encoding: chunked', 'Connection: close']), chunked(body)]));
        return;
      case 'fin-eof':
        socket.end(Buffer.concat([head(['Connection: close']), body]));
        return;
      case 'reset':
        socket.write(Buffer.concat([head([`Content-Length: ${body.length * 2}`]), body.subarray(0, 256 * 1024)]), () =>
          socket.resetAndDestroy(),
        );
        return;
      case 'silent':
        socket.write(head([`Content-Length: ${body.length}`]));
        socket.setTimeout(maxHoldMs, () => socket.destroy());
        return;
      case 'endless': {
        socket.write(head(['Transfer-Encoding: chunked']));
        const chunk = Buffer.concat([Buffer.from(`${ENDLESS_CHUNK.length.toString(16)}\r\n`), ENDLESS_CHUNK, Buffer.from('\r\n')]);
        const stopAt = Date.now() + maxHoldMs;
        const pump = (): void => {
          while (!socket.destroyed && Date.now() < stopAt) {
            if (!socket.write(chunk)) {
              socket.once('drain', pump);
              return;
            }
          }
          socket.destroy();
        };
        pump();
        return;
      }
      case 'malformed':
        socket.end('HTTP/1.1 2x0 Who Knows\r\nContent-Length: banana\r\n\r\n{}');
        return;
      default:
        socket.end('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
    }
  };

  const server: Server = createServer((socket) => {
    sockets.set(socket, '?');
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined); // resets and aborts from the client are expected
    let requestHead = '';
    const onData = (data: Buffer): void => {
      requestHead += data.toString('latin1');
      const end = requestHead.indexOf('\r\n\r\n');
      if (end === -1) {
        if (requestHead.length > 64 * 1024) socket.destroy();
        return;
      }
      socket.off('data', onData);
      socket.resume(); // a request body is read and dropped
      const target = requestHead.slice(0, requestHead.indexOf('\r\n')).split(' ')[1] ?? '/';
      const behaviour = target.split('/')[1] ?? '';
      received[behaviour] = (received[behaviour] ?? 0) + 1;
      sockets.set(socket, behaviour);
      respond(socket, behaviour);
    };
    socket.on('data', onData);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const origin = `http://127.0.0.1:${port}`;
  return {
    origin,
    host: `127.0.0.1:${port}`,
    url: (behaviour, rest = '') => `${origin}/${behaviour}/${rest}`,
    received,
    openSockets: () => [...sockets.values()],
    close: async () => {
      for (const socket of sockets.keys()) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
