// A deterministic OpenAI-compatible upstream for benchmarks, run as its own process so that it never shares an
// event loop with Ocular or the load generator. Every response body is built once at start; a request costs one
// JSON.parse of its (small) body and a few socket writes. Prints `{"url":"http://127.0.0.1:PORT"}` on stdout
// once listening, and exits when its stdin closes (the parent is gone) or on SIGTERM/SIGINT.
// `--stream-seconds N` spreads a streamed answer's events evenly over N seconds, as a slow model would.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';

const { values: argv } = parseArgs({ options: { 'stream-seconds': { type: 'string', default: '0' } } });
const STREAM_SECONDS = Number(argv['stream-seconds']);
if (!(STREAM_SECONDS >= 0 && STREAM_SECONDS <= 600)) throw new Error('--stream-seconds takes a number of seconds from 0 to 600');

/** The text of every answer: 20 deltas when streamed, joined when not. */
const BENCH_DELTAS: readonly string[] = Array.from({ length: 20 }, (_, index) => `token${index} `);
const BENCH_TEXT = BENCH_DELTAS.join('');
const CREATED = 1_700_000_000;
const ID = 'chatcmpl-bench0000000000000000000000';
const USAGE = { prompt_tokens: 12, completion_tokens: BENCH_DELTAS.length, total_tokens: 12 + BENCH_DELTAS.length };

const COMPLETION = Buffer.from(
  JSON.stringify({
    id: ID,
    object: 'chat.completion',
    created: CREATED,
    model: 'bench-model',
    choices: [{ index: 0, message: { role: 'assistant', content: BENCH_TEXT, refusal: null }, logprobs: null, finish_reason: 'stop' }],
    usage: USAGE,
  }),
);

const chunk = (choices: unknown[], usage: unknown = null): Buffer =>
  Buffer.from(
    `data: ${JSON.stringify({ id: ID, object: 'chat.completion.chunk', created: CREATED, model: 'bench-model', choices, usage })}\n\n`,
  );

/** Role delta, 20 content deltas, a finish chunk, a usage chunk and `[DONE]`: what vLLM sends with include_usage. */
const STREAM_CHUNKS: readonly Buffer[] = [
  chunk([{ index: 0, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }]),
  ...BENCH_DELTAS.map((text) => chunk([{ index: 0, delta: { content: text }, logprobs: null, finish_reason: null }])),
  chunk([{ index: 0, delta: {}, logprobs: null, finish_reason: 'stop' }]),
  chunk([], USAGE),
  Buffer.from('data: [DONE]\n\n'),
];

const JSON_HEADERS = { 'content-type': 'application/json', 'content-length': String(COMPLETION.length) };
const SSE_HEADERS = { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' };
const NOT_FOUND = Buffer.from(JSON.stringify({ error: { type: 'not_found_error', message: 'only POST /v1/chat/completions exists' } }));
const BAD_REQUEST = Buffer.from(JSON.stringify({ error: { type: 'invalid_request_error', message: 'the body is not a JSON object' } }));

function sendError(response: ServerResponse, status: number, body: Buffer): void {
  response.writeHead(status, { 'content-type': 'application/json', 'content-length': String(body.length) });
  response.end(body);
}

function handle(request: IncomingMessage, response: ServerResponse): void {
  if (request.method !== 'POST' || request.url !== '/v1/chat/completions') {
    request.resume();
    sendError(response, 404, NOT_FOUND);
    return;
  }
  const chunks: Buffer[] = [];
  request.on('data', (data: Buffer) => chunks.push(data));
  request.on('end', () => {
    let stream: boolean;
    try {
      // The bench's own requests, on loopback: a plain parse is enough to tell streamed from not.
      const body: unknown = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      if (body === null || typeof body !== 'object') throw new TypeError('not an object');
      stream = (body as { stream?: unknown }).stream === true;
    } catch {
      sendError(response, 400, BAD_REQUEST);
      return;
    }
    if (!stream) {
      response.writeHead(200, JSON_HEADERS);
      response.end(COMPLETION);
      return;
    }
    response.writeHead(200, SSE_HEADERS);
    if (STREAM_SECONDS === 0) {
      // Separate writes, as a model server flushes each event; no delay between them.
      for (const event of STREAM_CHUNKS) response.write(event);
      response.end();
      return;
    }
    writePaced(response);
  });
}

/** Writes the first event now and the rest at equal intervals, the last one STREAM_SECONDS from now. */
function writePaced(response: ServerResponse): void {
  const intervalMs = (STREAM_SECONDS * 1000) / (STREAM_CHUNKS.length - 1);
  const started = performance.now();
  let next = 0;
  const writeDue = (): void => {
    if (response.destroyed) return;
    response.write(STREAM_CHUNKS[next++]);
    if (next === STREAM_CHUNKS.length) {
      response.end();
      return;
    }
    // Scheduled against the start, so timer lateness does not add up over the answer.
    setTimeout(writeDue, Math.max(0, started + next * intervalMs - performance.now()));
  };
  writeDue();
}

const server = createServer({ keepAliveTimeout: 60_000 }, handle);
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address() as AddressInfo;
  process.stdout.write(`${JSON.stringify({ url: `http://127.0.0.1:${port}` })}\n`);
});

const stop = (): void => {
  server.closeAllConnections();
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 1_000).unref();
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
process.stdin.on('end', stop);
process.stdin.resume();
