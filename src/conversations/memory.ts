// Long-term memory by an explicit convention rather than tool calls (which not every model has): the model is
// told to write a note it wants kept as `<memory>...</memory>`; those spans are cut out of the answer (also
// while it streams) and stored for the owner, and the notes most related to a later prompt are given back.
import type { MemoryRecord } from '../store/conversation-store.ts';

const OPEN = '<memory>';
const CLOSE = '</memory>';
/** Longest note kept; a longer span is cut to this. */
export const MAX_NOTE_CHARS = 500;

/** The system prompt's part about memory. */
export function memoryInstructions(recalled: readonly MemoryRecord[]): string {
  const known =
    recalled.length === 0
      ? 'You have no notes about this user yet.'
      : `Notes you saved about this user in earlier conversations:\n${recalled.map((note) => `- ${note.text}`).join('\n')}`;
  return (
    `${known}\nWhen the user tells you something worth remembering in later conversations (a preference, a fact about ` +
    `them), write it once as ${OPEN}the fact${CLOSE} anywhere in your answer; it is saved and hidden from the user.`
  );
}

/**
 * Cuts `<memory>` spans out of text that arrives in pieces: `push` returns what may be shown now, holding back
 * anything that could be the start of a marker; `end` returns the rest. `notes` collects the spans' text.
 */
export class MemoryFilter {
  readonly notes: string[] = [];
  #pending = '';
  #inside = false;

  push(text: string): string {
    this.#pending += text;
    let visible = '';
    for (;;) {
      if (this.#inside) {
        const close = this.#pending.indexOf(CLOSE);
        if (close === -1) return visible;
        this.#save(this.#pending.slice(0, close));
        this.#pending = this.#pending.slice(close + CLOSE.length);
        this.#inside = false;
        continue;
      }
      const open = this.#pending.indexOf(OPEN);
      if (open !== -1) {
        visible += this.#pending.slice(0, open);
        this.#pending = this.#pending.slice(open + OPEN.length);
        this.#inside = true;
        continue;
      }
      // Hold back a tail that could still become `<memory>`.
      let keep = 0;
      for (let length = Math.min(OPEN.length - 1, this.#pending.length); length > 0; length--) {
        if (OPEN.startsWith(this.#pending.slice(-length))) {
          keep = length;
          break;
        }
      }
      visible += this.#pending.slice(0, this.#pending.length - keep);
      this.#pending = this.#pending.slice(this.#pending.length - keep);
      return visible;
    }
  }

  /** What is left: an unfinished marker's text is saved as a note, a held-back tail is shown. */
  end(): string {
    const rest = this.#pending;
    this.#pending = '';
    if (this.#inside) {
      this.#save(rest);
      this.#inside = false;
      return '';
    }
    return rest;
  }

  #save(text: string): void {
    const note = text.trim().replace(/\s+/g, ' ').slice(0, MAX_NOTE_CHARS);
    if (note !== '' && !this.notes.includes(note)) this.notes.push(note);
  }
}

const words = (text: string): Set<string> => new Set(text.toLowerCase().match(/[\p{L}\p{N}]{3,}/gu) ?? []);

/**
 * The notes to give with a prompt: those sharing the most words with it first, then the newest, `max` in all.
 * `notes` come newest first.
 */
export function recallNotes(notes: readonly MemoryRecord[], prompt: string, max: number): MemoryRecord[] {
  const wanted = words(prompt);
  return notes
    .map((note, order) => {
      let shared = 0;
      for (const word of words(note.text)) if (wanted.has(word)) shared += 1;
      return { note, order, shared };
    })
    .sort((a, b) => b.shared - a.shared || a.order - b.order)
    .slice(0, max)
    .map((entry) => entry.note);
}
