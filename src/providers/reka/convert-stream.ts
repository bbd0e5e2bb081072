import type { EventSourceMessage } from 'eventsource-parser/stream';
import { z } from 'zod';
import { OcularError } from '../../spec/errors.ts';
import type { StreamPart } from '../../spec/stream-parts.ts';
import { parseEventJson } from '../../provider-utils/http-client.ts';
import {
  contentSchema,
  contentToText,
  convertToolCalls,
  convertUsage,
  mapFinishReason,
  toolCallSchema,
  usageSchema,
} from './convert-response.ts';
import { errorFromStreamEvent } from './errors.ts';

const chunkSchema = z.object({
  responses: z
    .array(
      z.object({
        chunk: z.object({ content: contentSchema, tool_calls: z.array(toolCallSchema).nullish() }).nullish(),
        finish_reason: z.string().nullish(),
      }),
    )
    .nullish(),
  usage: usageSchema,
});

/** Length of the longest common prefix, never ending between the two halves of a surrogate pair. */
function commonPrefixLength(a: string, b: string): number {
  const limit = Math.min(a.length, b.length);
  let index = 0;
  while (index < limit && a.charCodeAt(index) === b.charCodeAt(index)) index++;
  const previous = index > 0 ? a.charCodeAt(index - 1) : 0;
  return previous >= 0xd800 && previous <= 0xdbff ? index - 1 : index;
}

/**
 * Turns Reka chat chunks into stream parts. Reka's `content` is cumulative (each event carries all text so
 * far), so only the new suffix is emitted; if an event rewrites earlier text, the part after the common
 * prefix is emitted. Tool calls are taken from the latest event that has them and emitted whole at the end.
 * Reka sends no `[DONE]`: the stream ends when the connection does, and must have said why it finished.
 */
export function createStreamConverter(createId: () => string): TransformStream<EventSourceMessage, StreamPart> {
  let text = '';
  let toolCalls: z.infer<typeof toolCallSchema>[] = [];
  let finishReason: string | null | undefined;
  let usage: z.infer<typeof usageSchema>;
  let finished = false;

  const finish = (controller: TransformStreamDefaultController<StreamPart>): void => {
    finished = true;
    const calls = convertToolCalls(toolCalls, createId);
    for (const toolCall of calls) controller.enqueue({ type: 'tool-call', toolCall });
    controller.enqueue({ type: 'finish', finishReason: mapFinishReason(finishReason, calls.length > 0), usage: convertUsage(usage) });
  };

  return new TransformStream({
    transform(event, controller) {
      if (finished) return;
      if (event.data === '[DONE]') {
        if (finishReason !== undefined && finishReason !== null) finish(controller);
        return;
      }
      const json = parseEventJson('reka', event);
      const upstreamError = errorFromStreamEvent(json);
      if (upstreamError) {
        finished = true;
        controller.enqueue({ type: 'error', error: upstreamError });
        return;
      }
      const chunk = chunkSchema.safeParse(json);
      if (!chunk.success) return; // keep-alive or an event shape Ocular does not use
      if (chunk.data.usage) usage = chunk.data.usage;
      const response = chunk.data.responses?.[0];
      if (!response) return;
      if (response.chunk) {
        const next = contentToText(response.chunk.content);
        const start = next.startsWith(text) ? text.length : commonPrefixLength(text, next);
        if (next.length > start) controller.enqueue({ type: 'text-delta', text: next.slice(start) });
        // Chunks that carry no content (e.g. a final tool-call chunk) keep the text seen so far.
        if (response.chunk.content !== null && response.chunk.content !== undefined) text = next;
        if (response.chunk.tool_calls && response.chunk.tool_calls.length > 0) toolCalls = response.chunk.tool_calls;
      }
      if (response.finish_reason) finishReason = response.finish_reason;
    },
    flush(controller) {
      if (finished) return;
      if (finishReason === undefined || finishReason === null) {
        finished = true;
        controller.enqueue({
          type: 'error',
          error: new OcularError('upstream_error', 'reka upstream closed the stream before it finished'),
        });
        return;
      }
      finish(controller);
    },
  });
}
