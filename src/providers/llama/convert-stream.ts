import type { ToolCall } from '../../spec/messages.ts';
import type { StreamPart } from '../../spec/stream-parts.ts';
import {
  convertUsage,
  extractToolCalls,
  finalText,
  findStop,
  mapFinishReason,
  parseJsonToolCall,
  type CompletionResult,
  type OutputPlan,
} from './convert-response.ts';

/** What the binding's token callback gives (lenient: only what is read). */
export interface CompletionToken {
  /** The token's text. */
  token: string;
  /** With a chat parser: the answer's text so far, without tool-call markup. */
  content?: string | undefined;
}

/**
 * Turns the binding's per-token callbacks into stream parts: one `text-delta` per token, except the
 * characters that could still be the start of a stop string (held back until they cannot) and answers that
 * may be a fallback tool call (held until the end, where they become a `tool-call`). Whatever is emitted is a
 * prefix of the final text, so a streamed answer and a generated one read the same.
 */
export class TokenStreamConverter {
  readonly #plan: OutputPlan;
  readonly #createId: () => string;
  /** Longest stop minus one: how far back a stop that ends in the newest token can start. */
  readonly #holdBack: number;
  /** The raw text so far (text source). */
  #raw = '';
  /** The answer's text so far, as the client will see it. */
  #text = '';
  /** Characters of `#text` already sent. */
  #sent = 0;
  #tokens = 0;
  #stopped = false;

  constructor(plan: OutputPlan, createId: () => string) {
    this.#plan = plan;
    this.#createId = createId;
    this.#holdBack = plan.stops.reduce((longest, stop) => Math.max(longest, stop.length - 1), 0);
  }

  /**
   * True once a stop string matched: no more text is sent. The completion normally ends at the same string
   * ({@link finish}); otherwise the caller cancels it and ends with {@link finishStopped}.
   */
  get stopped(): boolean {
    return this.#stopped;
  }

  /** Tokens seen so far. */
  get tokens(): number {
    return this.#tokens;
  }

  push(token: CompletionToken): StreamPart[] {
    if (this.#stopped) return [];
    this.#tokens++;
    let next: string;
    if (this.#plan.source === 'content' && typeof token.content === 'string') {
      next = this.#plan.trimStart ? token.content.trimStart() : token.content;
      // A chat parser may re-read earlier output (a tag turned out to be text): only ever extend what was sent.
      if (next.length < this.#sent || (this.#sent > 0 && !next.startsWith(this.#text.slice(0, this.#sent)))) return [];
    } else {
      this.#raw += token.token;
      next = this.#plan.trimStart ? this.#raw.trimStart() : this.#raw;
    }
    this.#text = next;
    if (this.#plan.stops.length > 0) {
      const searchFrom = Math.max(0, this.#sent - this.#holdBack);
      const stopAt = findStop(next.slice(searchFrom), this.#plan.stops);
      if (stopAt !== -1) {
        this.#text = next.slice(0, searchFrom + stopAt);
        this.#stopped = true;
        return this.#holdsAll() ? [] : this.#sendUpTo(this.#text.length);
      }
    }
    if (this.#holdsAll()) return [];
    return this.#sendUpTo(next.length - partialStopLength(next, this.#plan.stops));
  }

  /** Parts for the binding's final result: the rest of the text, tool calls, then `finish`. */
  finish(result: CompletionResult): StreamPart[] {
    const { text, stopped } = finalText(result, this.#plan);
    const toolCalls = extractToolCalls(result, text, this.#plan, this.#createId);
    const parts: StreamPart[] = [];
    if (toolCalls.length === 0 || this.#plan.tools === 'native') {
      const sent = this.#text.slice(0, this.#sent);
      if (text.length > this.#sent && text.startsWith(sent)) parts.push({ type: 'text-delta', text: text.slice(this.#sent) });
    }
    parts.push(...toolCallParts(toolCalls));
    parts.push({
      type: 'finish',
      finishReason: mapFinishReason(result, toolCalls.length > 0, stopped),
      usage: convertUsage(result, this.#plan),
    });
    return parts;
  }

  /**
   * Parts after a stop string matched mid-stream: the completion is cancelled, so usage is the prompt's
   * count and the tokens seen.
   */
  finishStopped(): StreamPart[] {
    const parts: StreamPart[] = [];
    const call =
      this.#plan.tools === 'json' || this.#plan.tools === 'json-required'
        ? parseJsonToolCall(this.#text, this.#plan.toolNames, this.#createId)
        : undefined;
    if (call) parts.push(...toolCallParts([call]));
    else parts.push(...this.#sendUpTo(this.#text.length));
    parts.push({
      type: 'finish',
      finishReason: call ? 'tool_call' : 'stop',
      usage: { inputTokens: this.#plan.promptTokens, outputTokens: this.#tokens },
    });
    return parts;
  }

  /** The fallback's calls are whole-answer JSON: hold everything while the answer may still be one. */
  #holdsAll(): boolean {
    if (this.#plan.tools === 'json-required') return true;
    if (this.#plan.tools !== 'json') return false;
    const start = this.#text.trimStart();
    return start === '' || start.startsWith('{') || start.startsWith('`');
  }

  #sendUpTo(end: number): StreamPart[] {
    if (end <= this.#sent) return [];
    const delta = this.#text.slice(this.#sent, end);
    this.#sent = end;
    return [{ type: 'text-delta', text: delta }];
  }
}

/**
 * Length of the longest end of `text` that begins some stop string: the characters that must wait for the next
 * token. Text that cannot start a stop is sent at once, so a stop like "\nUser:" delays nothing but newlines.
 */
export function partialStopLength(text: string, stops: readonly string[]): number {
  let longest = 0;
  for (const stop of stops) {
    for (let length = Math.min(stop.length - 1, text.length); length > longest; length--) {
      if (text.endsWith(stop.slice(0, length))) {
        longest = length;
        break;
      }
    }
  }
  return longest;
}

function toolCallParts(calls: readonly ToolCall[]): StreamPart[] {
  return calls.map((toolCall) => ({ type: 'tool-call', toolCall }));
}
