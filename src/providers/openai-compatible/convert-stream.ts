import type { EventSourceMessage } from 'eventsource-parser/stream';
import { z } from 'zod';
import { OcularError } from '../../spec/errors.ts';
import type { StreamPart } from '../../spec/stream-parts.ts';
import { parseEventJson } from '../../provider-utils/http-client.ts';
import { parseToolArguments } from '../../provider-utils/provider-definition.ts';
import { convertUsage, mapFinishReason } from './convert-response.ts';
import { errorFromStreamEvent } from './errors.ts';

const chunkSchema = z.object({
  choices: z
    .array(
      z.object({
        delta: z
          .object({
            content: z.string().nullish(),
            tool_calls: z
              .array(
                z.object({
                  index: z.number().int().min(0).max(127),
                  id: z.string().nullish(),
                  function: z.object({ name: z.string().nullish(), arguments: z.string().nullish() }).nullish(),
                }),
              )
              .nullish(),
          })
          .nullish(),
        finish_reason: z.string().nullish(),
      }),
    )
    .nullish(),
  usage: z.object({ prompt_tokens: z.number().nullish(), completion_tokens: z.number().nullish() }).nullish(),
});

interface PendingToolCall {
  id: string;
  name: string;
  arguments: string;
}

/**
 * Turns Chat Completions chunks into stream parts. Tool calls arrive in fragments keyed by index and are
 * emitted whole once the stream says why it finished; usage may come in a last chunk with no choices.
 */
export function createStreamConverter(createId: () => string): TransformStream<EventSourceMessage, StreamPart> {
  const toolCalls = new Map<number, PendingToolCall>();
  let finishReason: string | null | undefined;
  let usage: z.infer<typeof chunkSchema>['usage'];
  let finished = false;

  const finish = (controller: TransformStreamDefaultController<StreamPart>): void => {
    if (finished) return;
    finished = true;
    for (const call of [...toolCalls.entries()].sort(([a], [b]) => a - b).map(([, value]) => value)) {
      controller.enqueue({ type: 'tool-call', toolCall: { id: call.id, name: call.name, arguments: parseToolArguments(call.arguments) } });
    }
    controller.enqueue({ type: 'finish', finishReason: mapFinishReason(finishReason, toolCalls.size > 0), usage: convertUsage(usage) });
  };

  return new TransformStream({
    transform(event, controller) {
      if (finished) return;
      if (event.data === '[DONE]') return finish(controller);
      const json = parseEventJson('openai-compatible', event);
      const upstreamError = errorFromStreamEvent(json);
      if (upstreamError) {
        finished = true;
        controller.enqueue({ type: 'error', error: upstreamError });
        return;
      }
      const chunk = chunkSchema.safeParse(json);
      if (!chunk.success) return; // keep-alive or vendor extension chunks
      if (chunk.data.usage) usage = chunk.data.usage;
      for (const choice of chunk.data.choices ?? []) {
        const content = choice.delta?.content;
        if (content) controller.enqueue({ type: 'text-delta', text: content });
        for (const fragment of choice.delta?.tool_calls ?? []) {
          let call = toolCalls.get(fragment.index);
          if (!call) {
            call = { id: fragment.id ?? createId(), name: '', arguments: '' };
            toolCalls.set(fragment.index, call);
          }
          if (fragment.function?.name) call.name += fragment.function.name;
          if (fragment.function?.arguments) call.arguments += fragment.function.arguments;
        }
        if (choice.finish_reason) finishReason = choice.finish_reason;
      }
    },
    flush(controller) {
      if (finished) return;
      // Servers that omit [DONE] still send a finish_reason; a stream with neither was cut off.
      if (finishReason === undefined || finishReason === null) {
        finished = true;
        controller.enqueue({
          type: 'error',
          error: new OcularError('upstream_error', 'openai-compatible upstream closed the stream before it finished'),
        });
        return;
      }
      finish(controller);
    },
  });
}
