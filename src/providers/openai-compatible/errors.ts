import { z } from 'zod';
import { OcularError } from '../../spec/errors.ts';

const streamErrorSchema = z.object({ error: z.union([z.object({ message: z.string() }), z.string()]) });

/** vLLM, OpenAI and llama.cpp report a failure mid-stream as a `data: {"error": ...}` event. */
export function errorFromStreamEvent(json: unknown): OcularError | undefined {
  const parsed = streamErrorSchema.safeParse(json);
  if (!parsed.success) return undefined;
  const message = typeof parsed.data.error === 'string' ? parsed.data.error : parsed.data.error.message;
  return new OcularError('upstream_error', `openai-compatible upstream failed mid-stream: ${message}`);
}
