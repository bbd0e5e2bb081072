import { z } from 'zod';
import { OcularError } from '../../spec/errors.ts';
import type { FinishReason, ToolCall, Usage } from '../../spec/messages.ts';
import type { GenerateResult } from '../../spec/provider.ts';
import { parseToolArguments } from '../../provider-utils/provider-definition.ts';

// Lenient: only what Ocular reads is required; Reka adds fields over time.

/** `content` is a string, or (per Reka's schema) a list of typed items of which only text matters in output. */
export const contentSchema = z
  .union([z.string(), z.array(z.looseObject({ type: z.string().nullish(), text: z.string().nullish() }))])
  .nullish();

export const toolCallSchema = z.object({
  id: z.string().nullish(),
  name: z.string(),
  parameters: z.union([z.record(z.string(), z.unknown()), z.string()]).nullish(),
});

export const usageSchema = z.object({ input_tokens: z.number().nullish(), output_tokens: z.number().nullish() }).nullish();

export const chatResponseSchema = z.object({
  responses: z
    .array(
      z.object({
        finish_reason: z.string().nullish(),
        message: z.object({ content: contentSchema, tool_calls: z.array(toolCallSchema).nullish() }),
      }),
    )
    .min(1),
  usage: usageSchema,
});

export function contentToText(content: z.infer<typeof contentSchema>): string {
  if (content === null || content === undefined) return '';
  if (typeof content === 'string') return content;
  return content.map((item) => (item.type === undefined || item.type === null || item.type === 'text' ? (item.text ?? '') : '')).join('');
}

export function mapFinishReason(reason: string | null | undefined, hasToolCalls: boolean): FinishReason {
  switch (reason) {
    case 'length':
      return 'length';
    case 'context':
      return 'context';
    case 'tool_call':
    case 'tool_calls':
      return 'tool_call';
    default:
      return hasToolCalls ? 'tool_call' : 'stop';
  }
}

export function convertUsage(usage: z.infer<typeof usageSchema>): Usage {
  return { inputTokens: usage?.input_tokens ?? 0, outputTokens: usage?.output_tokens ?? 0 };
}

export function convertToolCalls(
  calls: ReadonlyArray<z.infer<typeof toolCallSchema>> | null | undefined,
  createId: () => string,
): ToolCall[] {
  return (calls ?? []).map((call) => ({
    id: call.id ?? createId(),
    name: call.name,
    arguments: typeof call.parameters === 'string' ? parseToolArguments(call.parameters) : (call.parameters ?? {}),
  }));
}

/** Converts a `POST /chat` response; only the first of `responses` is used (Ocular asks for one). */
export function convertResponse(json: unknown, createId: () => string): GenerateResult {
  const parsed = chatResponseSchema.safeParse(json);
  if (!parsed.success) {
    throw new OcularError('upstream_error', `reka upstream sent an unexpected response: ${parsed.error.issues[0]?.message ?? ''}`);
  }
  const response = parsed.data.responses[0]!;
  const toolCalls = convertToolCalls(response.message.tool_calls, createId);
  return {
    text: contentToText(response.message.content),
    toolCalls,
    finishReason: mapFinishReason(response.finish_reason, toolCalls.length > 0),
    usage: convertUsage(parsed.data.usage),
  };
}
