import { validationError } from '../spec/errors.ts';
import type { MediaReference } from '../spec/messages.ts';

/** A past turn as it may be sent again: the prompt with its media, and the answer. */
export interface HistoryTurn {
  prompt: string;
  media: MediaReference[];
  answer: string;
}

/** A past turn as it will be sent: `droppedMedia` counts the media items left out to fit. */
export interface FittedTurn extends HistoryTurn {
  droppedMedia: number;
}

export interface ContextBudget {
  /** Tokens the model takes in all, answer included. */
  contextTokens: number;
  /** Tokens kept free for the answer. */
  maxTokens: number;
  /** What one media item is counted as. */
  mediaTokens: number;
}

export interface FittedContext {
  turns: FittedTurn[];
  /** Oldest turns left out entirely. */
  droppedTurns: number;
  /** Tokens the kept context is estimated at. */
  estimatedTokens: number;
}

/** Per message, for the role and the chat template's separators. */
const MESSAGE_OVERHEAD_TOKENS = 4;

/**
 * A rough token count: a token is about four characters of English text. Upstreams count exactly, but each
 * counts differently, and this only has to keep a conversation within a model's context with some margin.
 */
export function estimateTextTokens(text: string): number {
  return Math.ceil(text.length / 4) + MESSAGE_OVERHEAD_TOKENS;
}

function turnTokens(turn: FittedTurn, budget: ContextBudget): number {
  return estimateTextTokens(turn.prompt) + estimateTextTokens(turn.answer) + turn.media.length * budget.mediaTokens;
}

/**
 * Chooses what of a conversation's history is sent with the next turn, so that the whole fits the model's
 * context with room for the answer. While it does not fit, the media of the oldest turn that still has some
 * are dropped first (images of old turns go before any text), then the oldest turn altogether. `fixedTokens` is
 * what must be sent anyway (the system prompt, the new turn); when that alone does not fit, the turn is refused.
 */
export function fitHistory(history: readonly HistoryTurn[], fixedTokens: number, budget: ContextBudget): FittedContext {
  const available = budget.contextTokens - budget.maxTokens;
  if (fixedTokens > available) {
    throw validationError(
      `the prompt (with its assets and any web results) is estimated at ${fixedTokens} tokens, more than the ${available} this model's ` +
        'context leaves after the answer (conversations.contextTokens / modelContextTokens); shorten it or send fewer assets',
      'promptObject.prompt',
    );
  }
  const turns: FittedTurn[] = history.map((turn) => ({ ...turn, media: [...turn.media], droppedMedia: 0 }));
  let total = fixedTokens + turns.reduce((sum, turn) => sum + turnTokens(turn, budget), 0);
  let droppedTurns = 0;
  while (total > available && turns.length > 0) {
    const withMedia = turns.find((turn) => turn.media.length > 0);
    if (withMedia) {
      total -= withMedia.media.length * budget.mediaTokens;
      withMedia.droppedMedia += withMedia.media.length;
      withMedia.media = [];
    } else {
      total -= turnTokens(turns.shift()!, budget);
      droppedTurns += 1;
    }
  }
  return { turns, droppedTurns, estimatedTokens: total };
}
