import { z } from 'zod';
import { OcularError } from '../../spec/errors.ts';
import type { FinishReason, ToolCall, Usage } from '../../spec/messages.ts';
import type { GenerateResult } from '../../spec/provider.ts';

// Lenient: only what Ocular reads is required; new block types and usage fields pass through unread.
export const usageSchema = z.object({
  input_tokens: z.number().nullish(),
  output_tokens: z.number().nullish(),
  cache_creation_input_tokens: z.number().nullish(),
  cache_read_input_tokens: z.number().nullish(),
});

export type AnthropicUsage = z.infer<typeof usageSchema>;

const contentBlockSchema = z.union([
  z.object({ type: z.literal('text'), text: z.string() }),
  z.object({ type: z.literal('tool_use'), id: z.string(), name: z.string(), input: z.unknown() }),
  // thinking, redacted_thinking, server tool blocks: not part of Ocular's result
  z.object({ type: z.string() }),
]);

const messageSchema = z.object({
  content: z.array(contentBlockSchema),
  stop_reason: z.string().nullish(),
  usage: usageSchema.nullish(),
});

export function mapStopReason(reason: string | null | undefined, hasToolCalls: boolean): FinishReason {
  switch (reason) {
    case 'end_turn':
    case 'stop_sequence':
      return 'stop';
    case 'max_tokens':
      return 'length';
    case 'tool_use':
      return 'tool_call';
    case 'model_context_window_exceeded':
      return 'context';
    default:
      // pause_turn, refusal and reasons added later
      return hasToolCalls ? 'tool_call' : 'stop';
  }
}

/** Cached prompt tokens are reported apart from `input_tokens`; Ocular counts every prompt token as input. */
export function convertUsage(usage: AnthropicUsage | null | undefined): Usage {
  return {
    inputTokens: (usage?.input_tokens ?? 0) + (usage?.cache_creation_input_tokens ?? 0) + (usage?.cache_read_input_tokens ?? 0),
    outputTokens: usage?.output_tokens ?? 0,
  };
}

/** Tool input is a JSON object already; an absent one (never seen in practice) becomes `{}`. */
export function toToolArguments(input: unknown): unknown {
  return input ?? {};
}

export function convertResponse(json: unknown): GenerateResult {
  const parsed = messageSchema.safeParse(json);
  if (!parsed.success) {
    throw new OcularError('upstream_error', `anthropic upstream sent an unexpected response: ${parsed.error.issues[0]?.message ?? ''}`);
  }
  let text = '';
  const toolCalls: ToolCall[] = [];
  for (const block of parsed.data.content) {
    if ('text' in block) text += block.text;
    else if ('id' in block) toolCalls.push({ id: block.id, name: block.name, arguments: toToolArguments(block.input) });
  }
  return {
    text,
    toolCalls,
    finishReason: mapStopReason(parsed.data.stop_reason, toolCalls.length > 0),
    usage: convertUsage(parsed.data.usage),
  };
}
