import { z } from 'zod';
import { OcularError } from '../../spec/errors.ts';
import type { FinishReason, ToolCall } from '../../spec/messages.ts';
import { normalizeVector, type GenerateResult } from '../../spec/provider.ts';
import { parseToolArguments } from '../../provider-utils/provider-definition.ts';

// Lenient: upstreams differ in the fields they add; only what Ocular reads is required.
const usageSchema = z.object({ prompt_tokens: z.number().nullish(), completion_tokens: z.number().nullish() }).nullish();

const toolCallSchema = z.object({
  id: z.string().nullish(),
  function: z.object({ name: z.string(), arguments: z.string().nullish() }),
});

export const completionSchema = z.object({
  choices: z
    .array(
      z.object({
        message: z.object({ content: z.string().nullish(), tool_calls: z.array(toolCallSchema).nullish() }),
        finish_reason: z.string().nullish(),
      }),
    )
    .min(1),
  usage: usageSchema,
});

export function mapFinishReason(reason: string | null | undefined, hasToolCalls: boolean): FinishReason {
  switch (reason) {
    case 'length':
      return 'length';
    case 'tool_calls':
    case 'function_call':
      return 'tool_call';
    default:
      return hasToolCalls ? 'tool_call' : 'stop';
  }
}

export function convertUsage(usage: z.infer<typeof usageSchema>): { inputTokens: number; outputTokens: number } {
  return { inputTokens: usage?.prompt_tokens ?? 0, outputTokens: usage?.completion_tokens ?? 0 };
}

export function convertResponse(json: unknown, createId: () => string): GenerateResult {
  const parsed = completionSchema.safeParse(json);
  if (!parsed.success) {
    throw new OcularError(
      'upstream_error',
      `openai-compatible upstream sent an unexpected response: ${parsed.error.issues[0]?.message ?? ''}`,
    );
  }
  const choice = parsed.data.choices[0]!;
  const toolCalls: ToolCall[] = (choice.message.tool_calls ?? []).map((call) => ({
    id: call.id ?? createId(),
    name: call.function.name,
    arguments: parseToolArguments(call.function.arguments ?? ''),
  }));
  return {
    text: choice.message.content ?? '',
    toolCalls,
    finishReason: mapFinishReason(choice.finish_reason, toolCalls.length > 0),
    usage: convertUsage(parsed.data.usage),
  };
}

const embeddingsSchema = z.object({
  data: z.array(z.object({ index: z.number().int().min(0), embedding: z.array(z.number()) })),
});

/** An `/embeddings` answer as one unit vector per input, in input order. */
export function convertEmbeddingsResponse(body: unknown, inputCount: number): Float32Array[] {
  const parsed = embeddingsSchema.safeParse(body);
  if (!parsed.success) {
    throw new OcularError('upstream_error', 'openai-compatible upstream sent an unexpected embeddings body', { cause: parsed.error });
  }
  const vectors: Float32Array[] = new Array(inputCount);
  for (const item of parsed.data.data) {
    if (item.index < inputCount) vectors[item.index] = normalizeVector(Float32Array.from(item.embedding));
  }
  const dimensions = vectors[0]?.length;
  for (let index = 0; index < inputCount; index++) {
    const vector = vectors[index];
    if (vector === undefined || vector.length === 0 || vector.length !== dimensions) {
      throw new OcularError('upstream_error', `openai-compatible upstream sent no usable embedding for input ${index}`);
    }
  }
  return vectors;
}
