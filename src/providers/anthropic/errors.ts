import { z } from 'zod';
import { OcularError } from '../../spec/errors.ts';

/** Anthropic's error envelope, used both in HTTP error bodies and in the stream's `error` event. */
export const anthropicErrorSchema = z.object({
  type: z.literal('error'),
  error: z.object({ type: z.string(), message: z.string().nullish() }),
});

/**
 * Maps an Anthropic error type (https://docs.anthropic.com/en/api/errors) to Ocular's model. Only the kinds
 * that can succeed on a later try are retryable; a mid-stream error is never retried here because part of
 * the answer has already been delivered, but the flag tells the caller a fresh request may work.
 */
export function mapAnthropicError(errorType: string, message: string): OcularError {
  const text = `anthropic upstream failed mid-stream (${errorType}): ${message}`;
  switch (errorType) {
    case 'rate_limit_error':
      return new OcularError('rate_limit_error', text, { retryable: true });
    case 'timeout_error':
      return new OcularError('timeout_error', text, { retryable: true });
    // 529 overloaded and 500 api_error are Anthropic-side and transient.
    case 'overloaded_error':
    case 'api_error':
      return new OcularError('upstream_error', text, { retryable: true });
    default:
      return new OcularError('upstream_error', text);
  }
}

/** The stream's `event: error` payload as an `OcularError`, or undefined when `json` is not one. */
export function errorFromStreamEvent(json: unknown): OcularError | undefined {
  const parsed = anthropicErrorSchema.safeParse(json);
  if (!parsed.success) return undefined;
  return mapAnthropicError(parsed.data.error.type, parsed.data.error.message ?? '(no message)');
}
