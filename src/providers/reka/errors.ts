import { z } from 'zod';
import { OcularError } from '../../spec/errors.ts';

// Reka's API is FastAPI-based: failures carry `detail`; an `error` field is accepted too, as proxies send it.
const streamErrorSchema = z.union([
  z.object({ error: z.union([z.object({ message: z.string() }), z.string()]) }),
  z.object({ detail: z.string() }),
]);

/** A mid-stream failure event, which has no `responses` and would otherwise be skipped as unknown. */
export function errorFromStreamEvent(json: unknown): OcularError | undefined {
  const parsed = streamErrorSchema.safeParse(json);
  if (!parsed.success) return undefined;
  const body = parsed.data;
  const message = 'detail' in body ? body.detail : typeof body.error === 'string' ? body.error : body.error.message;
  return new OcularError('upstream_error', `reka upstream failed mid-stream: ${message}`);
}
