import { z } from 'zod';
import { OcularError } from '../../spec/errors.ts';

const streamErrorSchema = z.object({
  error: z.object({ message: z.string(), code: z.number().nullish(), status: z.string().nullish() }),
});

/**
 * A failure after the stream started arrives as a `data:` event holding Google's usual error body
 * (`{"error":{"code","message","status"}}`) instead of a response chunk.
 */
export function errorFromStreamChunk(json: unknown): OcularError | undefined {
  const parsed = streamErrorSchema.safeParse(json);
  if (!parsed.success) return undefined;
  const { message, status } = parsed.data.error;
  return new OcularError('upstream_error', `gemini upstream failed mid-stream${status ? ` (${status})` : ''}: ${message}`);
}

/**
 * Gemini answers 200 with no candidates when it refuses the prompt itself (safety, blocklist, prohibited
 * content); `promptFeedback.blockReason` says why. Retrying the same prompt gets the same answer.
 */
export function blockedPromptError(blockReason: string, blockReasonMessage?: string | null): OcularError {
  return new OcularError(
    'upstream_error',
    `gemini upstream blocked the prompt (${blockReason})${blockReasonMessage ? `: ${blockReasonMessage}` : ''}`,
  );
}
