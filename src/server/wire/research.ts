import { z } from 'zod';
import type { ResearchResult, ResearchStep } from '../../research/research-agent.ts';
import { errorEnvelope } from '../errors.ts';
import { sseFrame } from './common.ts';
import { completionId, toOpenAiUsage } from './openai-chat.ts';

const domainList = z
  .array(
    z
      .string()
      .trim()
      .min(1)
      .max(253)
      .regex(/^[A-Za-z0-9.-]+$/, 'a domain such as example.com'),
  )
  .min(1)
  .max(100);

/** The `research` extras of a Chat Completions request to a research model. */
export const researchOptionsSchema = z
  .strictObject({
    web_search: z
      .strictObject({
        /** Searches the agent may run. */
        max_uses: z.int().min(1).max(50).optional(),
        allowed_domains: domainList.optional(),
        blocked_domains: domainList.optional(),
      })
      .refine((search) => search.allowed_domains === undefined || search.blocked_domains === undefined, {
        message: 'send allowed_domains or blocked_domains, not both',
        path: ['blocked_domains'],
      })
      .optional(),
    parallel_thinking: z.strictObject({ mode: z.enum(['none', 'low', 'high']) }).optional(),
  })
  .optional();

/** The `research` field, validated under its own name (errors say `research.web_search...`). */
export const researchRequestSchema = z.object({ research: researchOptionsSchema });

export const PARALLEL_ATTEMPTS = { none: 1, low: 2, high: 3 } as const;

function message(result: ResearchResult) {
  return {
    role: 'assistant',
    content: result.content,
    refusal: null,
    reasoning_content: result.reasoningContent,
    reasoning_steps: result.steps,
    annotations: result.annotations,
  };
}

/** A research answer as a Chat Completions object, with Reka Research's extra message fields. */
export function toResearchResponse(id: string, model: string, result: ResearchResult): unknown {
  return {
    id: completionId(id),
    object: 'chat.completion',
    created: Math.floor(Date.now() / 1000),
    model,
    choices: [{ index: 0, message: message(result), logprobs: null, finish_reason: 'stop' }],
    usage: toOpenAiUsage(result.usage),
  };
}

/** Chunk writers for a streamed research answer: each step as it happens, then the answer, then [DONE]. */
export function researchChunks(id: string, model: string) {
  const base = { id: completionId(id), object: 'chat.completion.chunk', created: Math.floor(Date.now() / 1000), model };
  const chunk = (delta: unknown, finishReason: string | null = null): string =>
    sseFrame({ ...base, choices: [{ index: 0, delta, logprobs: null, finish_reason: finishReason }] });
  return {
    opening: chunk({ role: 'assistant', content: '' }),
    step: (step: ResearchStep) => chunk({ reasoning_steps: [step] }),
    answer: (result: ResearchResult, includeUsage: boolean) =>
      chunk({ content: result.content, reasoning_content: result.reasoningContent }) +
      chunk({ annotations: result.annotations }, 'stop') +
      (includeUsage ? sseFrame({ ...base, choices: [], usage: toOpenAiUsage(result.usage) }) : '') +
      sseFrame('[DONE]'),
    error: (error: Parameters<typeof errorEnvelope>[0]) => sseFrame(errorEnvelope(error)),
  };
}
