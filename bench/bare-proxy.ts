// The floor for any Node.js gateway on this machine: a pass-through proxy with no auth, validation or
// conversion (node:http in, undici out, bodies forwarded as they are). The gateway bench runs it beside Ocular
// so Ocular's own cost can be told apart from the cost of an extra HTTP hop. Usage: bare-proxy.ts UPSTREAM_URL.
// Prints `{"url":...}` once listening; exits when stdin closes or on SIGTERM/SIGINT.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Agent, request } from 'undici';

const upstream = process.argv[2];
if (!upstream) {
  process.stderr.write('usage: bare-proxy.ts UPSTREAM_URL\n');
  process.exit(2);
}
const target = `${upstream.replace(/\/+$/, '')}/v1/chat/completions`;
const dispatcher = new Agent({ connections: 256, keepAliveTimeout: 30_000 });

const server = createServer((incoming, outgoing) => {
  const chunks: Buffer[] = [];
  incoming.on('data', (chunk: Buffer) => chunks.push(chunk));
  incoming.on('end', () => {
    request(target, { dispatcher, method: 'POST', headers: { 'content-type': 'application/json' }, body: Buffer.concat(chunks) }).then(
      (response) => {
        outgoing.writeHead(response.statusCode, { 'content-type': String(response.headers['content-type'] ?? 'application/json') });
        response.body.pipe(outgoing);
      },
      (error: unknown) => {
        outgoing.writeHead(502).end(String(error));
      },
    );
  });
});

server.listen(0, '127.0.0.1', () => {
  const { port } = server.address() as AddressInfo;
  process.stdout.write(`${JSON.stringify({ url: `http://127.0.0.1:${port}` })}\n`);
});

const stop = (): void => {
  server.close();
  server.closeAllConnections();
  dispatcher.close().catch(() => {});
  setTimeout(() => process.exit(0), 200).unref();
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
process.stdin.on('end', stop);
process.stdin.resume();
