import { z } from 'zod';
import { OcularError } from '../../spec/errors.ts';
import type { FinishReason, ToolCall, Usage } from '../../spec/messages.ts';
import type { GenerateResult } from '../../spec/provider.ts';
import { blockedPromptError } from './errors.ts';

// Lenient: Gemini adds fields often (thoughtSignature, safetyRatings, citationMetadata, modelVersion...);
// only what Ocular reads is described, and unknown keys are dropped.
const partSchema = z.object({
  text: z.string().nullish(),
  /** Set on reasoning summaries (`includeThoughts`); they are not part of the answer. */
  thought: z.boolean().nullish(),
  functionCall: z.object({ name: z.string(), args: z.record(z.string(), z.unknown()).nullish() }).nullish(),
});

const candidateSchema = z.object({
  // A candidate stopped by a safety filter may come without content.
  content: z.object({ parts: z.array(partSchema).nullish() }).nullish(),
  finishReason: z.string().nullish(),
});

export const usageSchema = z
  .object({
    promptTokenCount: z.number().nullish(),
    candidatesTokenCount: z.number().nullish(),
    thoughtsTokenCount: z.number().nullish(),
  })
  .nullish();

export const responseSchema = z.object({
  candidates: z.array(candidateSchema).nullish(),
  promptFeedback: z.object({ blockReason: z.string().nullish(), blockReasonMessage: z.string().nullish() }).nullish(),
  usageMetadata: usageSchema,
});

export type GeminiResponse = z.infer<typeof responseSchema>;
export type GeminiCandidate = z.infer<typeof candidateSchema>;

/**
 * Gemini reports STOP for a turn that ended in function calls; MAX_TOKENS is the only length cut-off.
 * SAFETY, RECITATION, BLOCKLIST and the like end the answer early: the client sees what was produced.
 */
export function mapFinishReason(reason: string | null | undefined, hasToolCalls: boolean): FinishReason {
  if (reason === 'MAX_TOKENS') return 'length';
  if (hasToolCalls && (reason === 'STOP' || reason === null || reason === undefined)) return 'tool_call';
  return 'stop';
}

/** Thinking tokens are billed as output, as OpenAI counts reasoning tokens in `completion_tokens`. */
export function convertUsage(usage: z.infer<typeof usageSchema>): Usage {
  return {
    inputTokens: usage?.promptTokenCount ?? 0,
    outputTokens: (usage?.candidatesTokenCount ?? 0) + (usage?.thoughtsTokenCount ?? 0),
  };
}

/** The answer's text and tool calls in one candidate, thoughts left out. Gemini's calls have no ids. */
export function readCandidate(candidate: GeminiCandidate, createId: () => string): { text: string; toolCalls: ToolCall[] } {
  let text = '';
  const toolCalls: ToolCall[] = [];
  for (const part of candidate.content?.parts ?? []) {
    if (part.thought) continue;
    if (part.text) text += part.text;
    if (part.functionCall) toolCalls.push({ id: createId(), name: part.functionCall.name, arguments: part.functionCall.args ?? {} });
  }
  return { text, toolCalls };
}

/** The error for a response that has no candidate to read: a refused prompt, or an empty answer. */
export function missingCandidateError(response: GeminiResponse): OcularError {
  const blockReason = response.promptFeedback?.blockReason;
  if (blockReason) return blockedPromptError(blockReason, response.promptFeedback?.blockReasonMessage);
  return new OcularError('upstream_error', 'gemini upstream returned no candidates');
}

export function convertResponse(json: unknown, createId: () => string): GenerateResult {
  const parsed = responseSchema.safeParse(json);
  if (!parsed.success) {
    throw new OcularError('upstream_error', `gemini upstream sent an unexpected response: ${parsed.error.issues[0]?.message ?? ''}`);
  }
  const candidate = parsed.data.candidates?.[0];
  if (!candidate) throw missingCandidateError(parsed.data);
  const { text, toolCalls } = readCandidate(candidate, createId);
  return {
    text,
    toolCalls,
    finishReason: mapFinishReason(candidate.finishReason, toolCalls.length > 0),
    usage: convertUsage(parsed.data.usageMetadata),
  };
}
