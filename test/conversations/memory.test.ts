import { describe, expect, it } from 'vitest';
import { MemoryFilter, recallNotes } from '../../src/conversations/memory.ts';
import type { MemoryRecord } from '../../src/store/conversation-store.ts';

/** Feeds `text` in pieces of `size` characters and returns what was shown and the notes kept. */
function filter(text: string, size: number): { shown: string; notes: string[] } {
  const memory = new MemoryFilter();
  let shown = '';
  for (let offset = 0; offset < text.length; offset += size) shown += memory.push(text.slice(offset, offset + size));
  shown += memory.end();
  return { shown, notes: memory.notes };
}

describe('MemoryFilter', () => {
  const text = 'Hi <b>there</b> <memory>likes  tea</memory>. Less < more. <memory>lives in Oslo</memory><memor';

  it.each([1, 2, 3, 7, 1000])('cuts <memory> spans out of text arriving in pieces of %i', (size) => {
    expect(filter(text, size)).toEqual({ shown: 'Hi <b>there</b> . Less < more. <memor', notes: ['likes tea', 'lives in Oslo'] });
  });

  it('shows a held-back tail that never became a marker, and saves an unclosed note', () => {
    expect(filter('a < b <mem', 2)).toEqual({ shown: 'a < b <mem', notes: [] });
    expect(filter('ok <memory>unfinished note', 4)).toEqual({ shown: 'ok ', notes: ['unfinished note'] });
  });

  it('keeps each note once', () => {
    expect(filter('<memory>x y</memory><memory>x  y</memory><memory> </memory>', 5).notes).toEqual(['x y']);
  });
});

describe('recallNotes', () => {
  const note = (text: string, index: number): MemoryRecord => ({
    id: String(index),
    owner: 'o',
    text,
    conversationId: null,
    createdAt: new Date(),
  });
  const notes = ['works as a nurse', 'has a cat named Miso', 'prefers metric units', 'cat is allergic to fish'].map(note);

  it('gives the notes sharing most words with the prompt first, then the newest', () => {
    expect(recallNotes(notes, 'What should I feed my cat, given the fish problem?', 3).map((entry) => entry.text)).toEqual([
      'cat is allergic to fish',
      'has a cat named Miso',
      'works as a nurse',
    ]);
    expect(recallNotes(notes, 'hello', 2).map((entry) => entry.text)).toEqual(['works as a nurse', 'has a cat named Miso']);
  });
});
