import { describe, expect, it } from 'vitest';
import { parseServerSentEvents, type ServerSentEvent } from '../../src/sdk/sse.ts';

async function* chunked(bytes: Uint8Array, sizes: (index: number) => number): AsyncGenerator<Uint8Array> {
  let offset = 0;
  for (let index = 0; offset < bytes.length; index += 1) {
    const size = Math.max(1, sizes(index));
    yield bytes.subarray(offset, offset + size);
    offset += size;
  }
}

async function parseAll(body: AsyncIterable<Uint8Array>): Promise<ServerSentEvent[]> {
  const events: ServerSentEvent[] = [];
  for await (const event of parseServerSentEvents(body)) events.push(event);
  return events;
}

const STREAM =
  '\uFEFF: a comment first\n' +
  'event: progress\ndata: {"text":"héllo ✓ 🎬"}\n\n' +
  'data: line one\r\ndata: line two\r\n\r\n' +
  'id: 7\rdata:no space\r\r' +
  'event: ignored\n\n' + // no data: not dispatched
  ': keep-alive\n\n' +
  'event: done\ndata: {"end":true}\n\n';

const EXPECTED: ServerSentEvent[] = [
  { event: 'progress', data: '{"text":"héllo ✓ 🎬"}', id: undefined },
  { event: 'message', data: 'line one\nline two', id: undefined },
  { event: 'message', data: 'no space', id: '7' },
  { event: 'done', data: '{"end":true}', id: '7' },
];

describe('parseServerSentEvents', () => {
  const bytes = new TextEncoder().encode(STREAM);

  it('parses a stream given whole', async () => {
    expect(await parseAll(chunked(bytes, () => bytes.length))).toEqual(EXPECTED);
  });

  it('gives the same events whatever the chunk boundaries (mid-line, mid-CRLF, mid-character)', async () => {
    for (let size = 1; size <= 13; size += 1) {
      expect(await parseAll(chunked(bytes, () => size)), `chunks of ${size}`).toEqual(EXPECTED);
    }
    // Seeded uneven splits.
    let seed = 42;
    const random = () => ((seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31) * 9;
    for (let round = 0; round < 50; round += 1) {
      expect(await parseAll(chunked(bytes, () => Math.ceil(random())))).toEqual(EXPECTED);
    }
  });

  it('drops a last event whose blank line never came (a stream cut mid-event)', async () => {
    const cut = new TextEncoder().encode('data: {"a":1}\n\ndata: {"b":');
    expect((await parseAll(chunked(cut, () => 3))).map((event) => event.data)).toEqual(['{"a":1}']);
  });
});
