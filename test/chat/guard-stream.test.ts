import { describe, expect, it } from 'vitest';
import { guardStream } from '../../src/chat/guard-stream.ts';
import { OcularError } from '../../src/spec/errors.ts';
import type { StreamPart } from '../../src/spec/stream-parts.ts';

const finish: StreamPart = { type: 'finish', finishReason: 'stop', usage: { inputTokens: 1, outputTokens: 2 } };

function source(parts: StreamPart[], options: { failWith?: Error } = {}): ReadableStream<StreamPart> {
  let index = 0;
  return new ReadableStream({
    pull(controller) {
      if (index < parts.length) controller.enqueue(parts[index++]!);
      else if (options.failWith) controller.error(options.failWith);
      else controller.close();
    },
  });
}

const deltas = (...texts: string[]): StreamPart[] => texts.map((text) => ({ type: 'text-delta', text }));

async function collect(stream: ReadableStream<StreamPart>): Promise<StreamPart[]> {
  const parts: StreamPart[] = [];
  const reader = stream.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return parts;
    parts.push(value);
  }
}

const textOf = (parts: StreamPart[]) => parts.map((part) => (part.type === 'text-delta' ? part.text : '')).join('');

describe('guardStream', () => {
  it('passes parts through untouched without stop strings', async () => {
    const parts = await collect(guardStream(source([...deltas('a', 'b'), finish]), { onStop: () => {} }));
    expect(parts).toEqual([...deltas('a', 'b'), finish]);
  });

  it.each([
    [['Hello ##', '# world'], 'Hello '],
    [['Hel', 'lo #', '#', '#!'], 'Hello '],
    [['###'], ''],
    [['no stop here'], 'no stop here'],
  ])('cuts %j at the stop string', async (texts, expected) => {
    let stopped = false;
    const parts = await collect(guardStream(source([...deltas(...texts), finish]), { stop: ['###'], onStop: () => (stopped = true) }));
    expect(textOf(parts)).toBe(expected);
    expect(parts.at(-1)).toMatchObject({ type: 'finish', finishReason: 'stop' });
    expect(stopped).toBe(texts.join('').includes('###'));
  });

  it('uses the earliest of several stop strings', async () => {
    const parts = await collect(guardStream(source([...deltas('one END two STOP'), finish]), { stop: ['STOP', 'END'], onStop: () => {} }));
    expect(textOf(parts)).toBe('one ');
  });

  it('keeps held-back text when the stream finishes', async () => {
    const parts = await collect(guardStream(source([...deltas('ends with #'), finish]), { stop: ['##'], onStop: () => {} }));
    expect(textOf(parts)).toBe('ends with #');
    expect(parts.at(-1)).toEqual(finish);
  });

  it('turns a read failure into an error part after the text so far', async () => {
    const parts = await collect(guardStream(source(deltas('partial'), { failWith: new TypeError('terminated') }), { onStop: () => {} }));
    expect(textOf(parts)).toBe('partial');
    expect(parts.at(-1)).toMatchObject({ type: 'error', error: { type: 'upstream_error' } });
  });

  it('reports a stream that ends without finishing as an upstream error', async () => {
    const parts = await collect(guardStream(source(deltas('x')), { onStop: () => {} }));
    expect(parts.at(-1)).toMatchObject({ type: 'error', error: { type: 'upstream_error' } });
  });

  it('uses the abort reason of the signal when the upstream is cancelled', async () => {
    const controller = new AbortController();
    controller.abort(new OcularError('server_error', 'the server is shutting down'));
    const abortError = Object.assign(new Error('aborted'), { name: 'AbortError' });
    const parts = await collect(
      guardStream(source(deltas('x'), { failWith: abortError }), { onStop: () => {}, signal: controller.signal }),
    );
    expect(parts.at(-1)).toMatchObject({ type: 'error', error: { type: 'server_error' } });
  });

  it('ends after the first finish part', async () => {
    const parts = await collect(guardStream(source([...deltas('a'), finish, ...deltas('late')]), { onStop: () => {} }));
    expect(parts).toEqual([...deltas('a'), finish]);
  });
});
