import { z } from 'zod';
import { OcularError } from '../spec/errors.ts';

const upstreamErrorBody = z.union([
  z.object({ error: z.object({ message: z.string() }) }),
  z.object({ error: z.string() }),
  z.object({ message: z.string() }),
  z.object({ detail: z.string() }),
  z.array(z.object({ error: z.object({ message: z.string() }) })).min(1),
]);

/** Finds the human message in an upstream error body (OpenAI, Anthropic, Gemini, vLLM, FastAPI shapes). */
export function extractUpstreamMessage(bodyText: string): string {
  let json: unknown;
  try {
    json = JSON.parse(bodyText);
  } catch {
    return bodyText.trim().slice(0, 500) || '(empty body)';
  }
  const parsed = upstreamErrorBody.safeParse(json);
  if (!parsed.success) return bodyText.trim().slice(0, 500);
  const body = parsed.data;
  if (Array.isArray(body)) return body[0]!.error.message;
  if ('error' in body) return typeof body.error === 'string' ? body.error : body.error.message;
  if ('message' in body) return body.message;
  return body.detail;
}

export function parseRetryAfter(value: string | null | undefined): number | undefined {
  if (value === null || value === undefined || value === '') return undefined;
  const seconds = Number(value);
  if (Number.isFinite(seconds) && seconds >= 0) return seconds;
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, (date - Date.now()) / 1000);
}

/** Retrying may help for these statuses; anything else is the request's own fault or a hard failure. */
export function isRetryableStatus(status: number): boolean {
  return status === 408 || status === 409 || status === 429 || status >= 500;
}

/**
 * Maps an upstream HTTP failure: 429 passes through as rate_limit_error, 408/504 as timeout_error,
 * everything else is a 502 upstream_error. The upstream's own message is kept.
 */
export function mapUpstreamStatus(provider: string, status: number, bodyText: string, retryAfter?: string | null): OcularError {
  const message = `${provider} upstream returned ${status}: ${extractUpstreamMessage(bodyText)}`;
  const options = { retryable: isRetryableStatus(status), retryAfterSeconds: parseRetryAfter(retryAfter) };
  if (status === 429) return new OcularError('rate_limit_error', message, options);
  if (status === 408 || status === 504) return new OcularError('timeout_error', message, options);
  return new OcularError('upstream_error', message, options);
}

/** Maps a failure to reach the upstream at all (refused, reset, DNS, timeout). */
export function mapNetworkError(provider: string, error: unknown): OcularError {
  const code = (error as { code?: string }).code ?? '';
  const detail = error instanceof Error ? error.message : String(error);
  if (code.includes('TIMEOUT')) {
    return new OcularError('timeout_error', `${provider} upstream timed out: ${detail}`, { cause: error, retryable: true });
  }
  return new OcularError('upstream_error', `${provider} upstream unreachable: ${detail}${code ? ` (${code})` : ''}`, {
    cause: error,
    retryable: true,
  });
}
