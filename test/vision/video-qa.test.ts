import { describe, expect, it } from 'vitest';
import type { StreamPart } from '../../src/spec/stream-parts.ts';
import { filterCitationStream, removeCitationsOutside } from '../../src/vision/video-qa.ts';

async function run(deltas: readonly string[], durationSeconds: number): Promise<StreamPart[]> {
  const source = new ReadableStream<StreamPart>({
    start(controller) {
      for (const text of deltas) controller.enqueue({ type: 'text-delta', text });
      controller.enqueue({ type: 'finish', finishReason: 'stop', usage: { inputTokens: 1, outputTokens: 1 } });
      controller.close();
    },
  });
  const parts: StreamPart[] = [];
  const reader = filterCitationStream(source, durationSeconds).getReader();
  for (let next = await reader.read(); !next.done; next = await reader.read()) parts.push(next.value);
  return parts;
}

const textOf = (parts: readonly StreamPart[]): string => parts.map((part) => (part.type === 'text-delta' ? part.text : '')).join('');

describe('citations outside the video', () => {
  it('removes [mm:ss] and [h:mm:ss] citations past the end, keeps those inside and other brackets', () => {
    expect(removeCitationsOutside('At [00:05] and [01:30], not [02:05] nor [1:00:00]; see [note] and [3].', 120)).toBe(
      'At [00:05] and [01:30], not nor; see [note] and [3].',
    );
    expect(removeCitationsOutside('Late [1:59:59] and [2:00:05].', 7200)).toBe('Late [1:59:59] and.');
    expect(removeCitationsOutside('Bad seconds [00:75].', 3600)).toBe('Bad seconds.');
    expect(removeCitationsOutside('The end [02:01].', 120.5)).toBe('The end [02:01].'); // rounding slack
  });

  it('filters a stream the same way whatever the split of its deltas, and only ever appends', async () => {
    const text = 'Intro [00:03], then [09:59] out [1:00:00] and [00:59]. [x] [00:';
    const expected = removeCitationsOutside(text, 60);
    for (let first = 1; first < text.length; first += 1) {
      for (const second of [first + 1, first + 3, first + 7]) {
        if (second >= text.length) continue;
        const parts = await run([text.slice(0, first), text.slice(first, second), text.slice(second)], 60);
        expect(textOf(parts)).toBe(expected);
        expect(parts.at(-1)?.type).toBe('finish');
      }
    }
    // One character at a time.
    expect(textOf(await run([...text], 60))).toBe(expected);
  });

  it('passes an error part through after what was held back', async () => {
    const source = new ReadableStream<StreamPart>({
      start(controller) {
        controller.enqueue({ type: 'text-delta', text: 'Seen at [00:1' });
        controller.enqueue({ type: 'error', error: new (class extends Error {})() as never });
        controller.close();
      },
    });
    const parts: StreamPart[] = [];
    const reader = filterCitationStream(source, 30).getReader();
    for (let next = await reader.read(); !next.done; next = await reader.read()) parts.push(next.value);
    expect(parts.map((part) => part.type)).toEqual(['text-delta', 'text-delta', 'error']);
    expect(textOf(parts)).toBe('Seen at [00:1');
  });
});
