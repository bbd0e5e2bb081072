import type { EventSourceMessage } from 'eventsource-parser/stream';
import { z } from 'zod';
import { OcularError } from '../../spec/errors.ts';
import type { StreamPart } from '../../spec/stream-parts.ts';
import { parseEventJson } from '../../provider-utils/http-client.ts';
import { parseToolArguments } from '../../provider-utils/provider-definition.ts';
import { convertUsage, mapStopReason, toToolArguments, usageSchema, type AnthropicUsage } from './convert-response.ts';
import { errorFromStreamEvent } from './errors.ts';

// One lenient schema per event Ocular reads; `ping` and event types added later are skipped.
const messageStartSchema = z.object({
  type: z.literal('message_start'),
  message: z.object({ usage: usageSchema.nullish() }),
});

const contentBlockStartSchema = z.object({
  type: z.literal('content_block_start'),
  index: z.number().int().min(0),
  content_block: z.union([
    z.object({ type: z.literal('text'), text: z.string().nullish() }),
    z.object({ type: z.literal('tool_use'), id: z.string(), name: z.string(), input: z.unknown() }),
    z.object({ type: z.string() }),
  ]),
});

const contentBlockDeltaSchema = z.object({
  type: z.literal('content_block_delta'),
  index: z.number().int().min(0),
  delta: z.union([
    z.object({ type: z.literal('text_delta'), text: z.string() }),
    z.object({ type: z.literal('input_json_delta'), partial_json: z.string().nullish() }),
    // thinking_delta, signature_delta, citations_delta
    z.object({ type: z.string() }),
  ]),
});

const contentBlockStopSchema = z.object({ type: z.literal('content_block_stop'), index: z.number().int().min(0) });

const messageDeltaSchema = z.object({
  type: z.literal('message_delta'),
  delta: z.object({ stop_reason: z.string().nullish() }).nullish(),
  usage: usageSchema.nullish(),
});

const streamEventSchema = z.union([
  messageStartSchema,
  contentBlockStartSchema,
  contentBlockDeltaSchema,
  contentBlockStopSchema,
  messageDeltaSchema,
  z.object({ type: z.literal('message_stop') }),
]);

interface PendingToolUse {
  id: string;
  name: string;
  /** `input` from `content_block_start`, used when no `input_json_delta` follows. */
  initialInput: unknown;
  json: string;
}

function mergeUsage(current: AnthropicUsage, update: AnthropicUsage | null | undefined): AnthropicUsage {
  if (!update) return current;
  const merged = { ...current };
  for (const [key, value] of Object.entries(update) as Array<[keyof AnthropicUsage, number | null | undefined]>) {
    if (value !== null && value !== undefined) merged[key] = value;
  }
  return merged;
}

/**
 * Turns Messages API stream events into stream parts. Text is forwarded as it arrives; a tool_use block's
 * input comes as JSON fragments and is emitted whole at its `content_block_stop`. `message_start` carries
 * the prompt's usage and `message_delta` the cumulative output usage and stop reason; `message_stop` ends it.
 */
export function createStreamConverter(): TransformStream<EventSourceMessage, StreamPart> {
  const toolUses = new Map<number, PendingToolUse>();
  let usage: AnthropicUsage = {};
  let stopReason: string | null | undefined;
  let toolCallCount = 0;
  let finished = false;

  const emitToolCall = (controller: TransformStreamDefaultController<StreamPart>, index: number): void => {
    const pending = toolUses.get(index);
    if (!pending) return;
    toolUses.delete(index);
    toolCallCount++;
    const input = pending.json === '' ? toToolArguments(pending.initialInput) : parseToolArguments(pending.json);
    controller.enqueue({ type: 'tool-call', toolCall: { id: pending.id, name: pending.name, arguments: input } });
  };

  const fail = (controller: TransformStreamDefaultController<StreamPart>, error: OcularError): void => {
    finished = true;
    controller.enqueue({ type: 'error', error });
  };

  return new TransformStream({
    transform(message, controller) {
      if (finished) return;
      let json: unknown;
      try {
        json = parseEventJson('anthropic', message);
      } catch (error) {
        return fail(controller, error instanceof OcularError ? error : new OcularError('upstream_error', String(error)));
      }
      const upstreamError = errorFromStreamEvent(json);
      if (upstreamError) return fail(controller, upstreamError);
      const parsed = streamEventSchema.safeParse(json);
      if (!parsed.success) return; // ping, or an event type this adapter does not know
      const event = parsed.data;
      switch (event.type) {
        case 'message_start':
          usage = mergeUsage(usage, event.message.usage);
          break;
        case 'content_block_start': {
          const block = event.content_block;
          if ('text' in block && block.text) controller.enqueue({ type: 'text-delta', text: block.text });
          else if ('id' in block) toolUses.set(event.index, { id: block.id, name: block.name, initialInput: block.input, json: '' });
          break;
        }
        case 'content_block_delta': {
          const delta = event.delta;
          if ('text' in delta) {
            if (delta.text !== '') controller.enqueue({ type: 'text-delta', text: delta.text });
          } else if ('partial_json' in delta) {
            const pending = toolUses.get(event.index);
            if (pending && delta.partial_json) pending.json += delta.partial_json;
          }
          break;
        }
        case 'content_block_stop':
          emitToolCall(controller, event.index);
          break;
        case 'message_delta':
          if (event.delta?.stop_reason) stopReason = event.delta.stop_reason;
          usage = mergeUsage(usage, event.usage);
          break;
        case 'message_stop':
          // Blocks are always stopped before the message is; this only guards against a sloppy proxy.
          for (const index of [...toolUses.keys()].sort((a, b) => a - b)) emitToolCall(controller, index);
          finished = true;
          controller.enqueue({ type: 'finish', finishReason: mapStopReason(stopReason, toolCallCount > 0), usage: convertUsage(usage) });
          break;
      }
    },
    flush(controller) {
      if (finished) return;
      fail(controller, new OcularError('upstream_error', 'anthropic upstream closed the stream before message_stop', { retryable: true }));
    },
  });
}
