import type { FinishReason, ToolCall, Usage } from './messages.ts';
import type { OcularError } from './errors.ts';

/**
 * What a provider's stream yields. Wire formats are produced from these at the HTTP edge only.
 * A stream ends with exactly one `finish` or one `error` part.
 */
export type StreamPart =
  | { type: 'text-delta'; text: string }
  | { type: 'tool-call'; toolCall: ToolCall }
  | { type: 'finish'; finishReason: FinishReason; usage: Usage }
  | { type: 'error'; error: OcularError };
