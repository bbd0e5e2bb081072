import type { ResponseFormat } from '../spec/messages.ts';

/**
 * An instruction for models whose API cannot constrain the answer to a `responseFormat`: the schema, in the
 * prompt. Providers without a native option add it; the chat service validates the answer either way.
 */
export function structuredOutputInstruction(format: ResponseFormat): string {
  return format.type === 'json_object'
    ? 'Answer with one JSON object and nothing else.'
    : `Answer with one JSON value and nothing else, matching this JSON Schema:\n${JSON.stringify(format.schema)}`;
}
