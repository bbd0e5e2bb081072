import type { EventSourceMessage } from 'eventsource-parser/stream';
import { OcularError } from '../../spec/errors.ts';
import type { StreamPart } from '../../spec/stream-parts.ts';
import { parseEventJson } from '../../provider-utils/http-client.ts';
import {
  convertUsage,
  mapFinishReason,
  missingCandidateError,
  readCandidate,
  responseSchema,
  type GeminiResponse,
} from './convert-response.ts';
import { errorFromStreamChunk } from './errors.ts';

/**
 * Turns `streamGenerateContent?alt=sse` events into stream parts. Each event is a whole
 * GenerateContentResponse holding only the new parts; function calls arrive complete in one part, so they
 * are emitted as they come. There is no end marker: the last chunk carries `finishReason`, and
 * `usageMetadata` is cumulative, so the last one seen is the total.
 */
export function createStreamConverter(createId: () => string): TransformStream<EventSourceMessage, StreamPart> {
  let finishReason: string | undefined;
  let usage: GeminiResponse['usageMetadata'];
  let sawToolCall = false;
  let sawCandidate = false;
  let finished = false;

  const fail = (controller: TransformStreamDefaultController<StreamPart>, error: OcularError): void => {
    finished = true;
    controller.enqueue({ type: 'error', error });
  };

  return new TransformStream({
    transform(event, controller) {
      if (finished) return;
      let json: unknown;
      try {
        json = parseEventJson('gemini', event);
      } catch (error) {
        return fail(controller, error as OcularError);
      }
      const upstreamError = errorFromStreamChunk(json);
      if (upstreamError) return fail(controller, upstreamError);
      const chunk = responseSchema.safeParse(json);
      if (!chunk.success) return; // not a response chunk; nothing Ocular can use
      if (chunk.data.usageMetadata) usage = chunk.data.usageMetadata;
      const candidate = chunk.data.candidates?.[0];
      if (!candidate) {
        // A refused prompt is a single chunk with promptFeedback and no candidates.
        if (!sawCandidate && chunk.data.promptFeedback?.blockReason) fail(controller, missingCandidateError(chunk.data));
        return;
      }
      sawCandidate = true;
      const { text, toolCalls } = readCandidate(candidate, createId);
      if (text) controller.enqueue({ type: 'text-delta', text });
      for (const toolCall of toolCalls) {
        sawToolCall = true;
        controller.enqueue({ type: 'tool-call', toolCall });
      }
      if (candidate.finishReason) finishReason = candidate.finishReason;
    },
    flush(controller) {
      if (finished) return;
      if (finishReason === undefined) {
        return fail(controller, new OcularError('upstream_error', 'gemini upstream closed the stream before it finished'));
      }
      finished = true;
      controller.enqueue({ type: 'finish', finishReason: mapFinishReason(finishReason, sawToolCall), usage: convertUsage(usage) });
    },
  });
}
