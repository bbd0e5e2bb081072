import { describe, expect, it } from 'vitest';
import { estimateTextTokens, fitHistory, type HistoryTurn } from '../../src/conversations/context-window.ts';
import type { MediaReference } from '../../src/spec/messages.ts';

const image = (name: string): MediaReference => ({ type: 'media', kind: 'image', url: `asset:${name}` });
const turn = (prompt: string, media: MediaReference[] = [], answer = 'ok'): HistoryTurn => ({ prompt, media, answer });
const budget = { contextTokens: 10_000, maxTokens: 1_000, mediaTokens: 1_000 };

describe('fitHistory', () => {
  it('keeps everything that fits, in order', () => {
    const history = [turn('a', [image('1')]), turn('b', [image('2')])];
    const fitted = fitHistory(history, 100, budget);
    expect(fitted.droppedTurns).toBe(0);
    expect(fitted.turns.map((entry) => [entry.prompt, entry.media.length, entry.droppedMedia])).toEqual([
      ['a', 1, 0],
      ['b', 1, 0],
    ]);
  });

  it('drops the media of the oldest turns before any text', () => {
    const history = [turn('a', [image('1'), image('2')]), turn('b', [image('3')]), turn('c', [image('4')])];
    // 9000 available: 5000 fixed + 4 images (4000) + text is over; two images have to go, the oldest turn's.
    const fitted = fitHistory(history, 5_000, budget);
    expect(fitted.droppedTurns).toBe(0);
    expect(fitted.turns.map((entry) => [entry.prompt, entry.media.length, entry.droppedMedia])).toEqual([
      ['a', 0, 2],
      ['b', 1, 0],
      ['c', 1, 0],
    ]);
    expect(fitted.estimatedTokens).toBeLessThanOrEqual(9_000);
  });

  it('then drops the oldest turns', () => {
    const long = 'x'.repeat(8_000); // about 2000 tokens
    const history = [turn(long, [image('1')]), turn(long), turn('short', [image('2')])];
    const fitted = fitHistory(history, 6_000, budget);
    expect(fitted.turns.map((entry) => entry.prompt.length)).toEqual([long.length, 5]);
    expect(fitted.droppedTurns).toBe(1);
    expect(fitted.turns[1]!.media).toEqual([]); // images went first, from every turn, before the text of any
  });

  it('refuses a turn that does not fit on its own', () => {
    expect(() => fitHistory([], 9_001, budget)).toThrow(expect.objectContaining({ type: 'validation_error' }));
    expect(fitHistory([turn('a')], 9_000 - 2 * estimateTextTokens('a'), budget).droppedTurns).toBe(0);
    expect(fitHistory([turn('a')], 9_000 - 2 * estimateTextTokens('a') + 1, budget).droppedTurns).toBe(1);
  });
});
