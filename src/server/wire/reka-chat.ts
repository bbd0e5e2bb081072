import { z } from 'zod';
import type { ChatMessage, ChatRequest, ChatResult, MediaKind, ToolCall } from '../../spec/messages.ts';
import type { StreamPart } from '../../spec/stream-parts.ts';
import { errorEnvelope } from '../errors.ts';
import {
  checkUniqueToolNames,
  mediaUrlSchema,
  outputToText,
  responseFormatSchema,
  samplingSchema,
  sseFrame,
  type EventEncoder,
  toolNameSchema,
  toolParametersSchema,
} from './common.ts';

// ---- request (Reka Chat API v1) ----

const mediaPart = <Type extends string>(type: Type, kind: MediaKind) =>
  z.strictObject({ type: z.literal(type), [type]: mediaUrlSchema }).transform((part) => ({
    type: 'media' as const,
    kind,
    url: (part as Record<string, string>)[type]!,
  }));

const textPart = z.looseObject({ type: z.literal('text'), text: z.string() }).transform(({ text }) => ({ type: 'text' as const, text }));

const userPart = z.union([
  textPart,
  mediaPart('image_url', 'image'),
  mediaPart('video_url', 'video'),
  mediaPart('audio_url', 'audio'),
  mediaPart('pdf_url', 'pdf'),
]);

const toolCallSchema = z.looseObject({
  id: z.string().min(1),
  name: toolNameSchema,
  parameters: z.unknown().optional(),
});

const textOnly = z
  .union([z.string(), z.array(textPart)])
  .transform((content) => (typeof content === 'string' ? content : content.map((part) => part.text).join('\n')));

const messageSchema = z.discriminatedUnion('role', [
  z.looseObject({
    role: z.literal('user'),
    content: z
      .union([z.string(), z.array(userPart).min(1)])
      .transform((content) => (typeof content === 'string' ? [{ type: 'text' as const, text: content }] : content)),
  }),
  z.looseObject({ role: z.literal('system'), content: textOnly }),
  z.looseObject({
    role: z.literal('assistant'),
    content: textOnly.nullish().transform((content) => content ?? ''),
    tool_calls: z.array(toolCallSchema).nullish(),
  }),
  z.looseObject({
    role: z.literal('tool_output'),
    content: z.array(z.looseObject({ tool_call_id: z.string().min(1), output: z.unknown() })).min(1),
  }),
]);

export const rekaChatRequestSchema = z
  .looseObject({
    model: z.string().min(1).optional(),
    messages: z.array(messageSchema),
    ...samplingSchema,
    tools: z
      .array(
        z.looseObject({
          name: toolNameSchema,
          description: z.string().optional(),
          parameters: toolParametersSchema,
        }),
      )
      .max(128)
      .optional(),
    tool_choice: z.enum(['auto', 'tool', 'none']).optional(),
    use_search_engine: z.boolean().optional(),
    response_format: responseFormatSchema,
  })
  .superRefine((request, context) => checkUniqueToolNames(request.tools, context));

export type RekaChatRequest = z.infer<typeof rekaChatRequestSchema>;

export function fromRekaRequest(body: RekaChatRequest, defaultMaxTokens: number): ChatRequest {
  const messages: ChatMessage[] = [];
  for (const message of body.messages) {
    switch (message.role) {
      case 'user':
        messages.push({ role: 'user', content: message.content });
        break;
      case 'system':
        messages.push({ role: 'system', content: message.content });
        break;
      case 'assistant':
        messages.push({
          role: 'assistant',
          content: message.content,
          toolCalls: message.tool_calls?.map((call) => ({ id: call.id, name: call.name, arguments: call.parameters ?? {} })),
        });
        break;
      case 'tool_output':
        for (const output of message.content) {
          messages.push({ role: 'tool', toolCallId: output.tool_call_id, content: outputToText(output.output) });
        }
        break;
    }
  }
  return {
    model: body.model,
    messages,
    maxTokens: body.max_tokens ?? defaultMaxTokens,
    temperature: body.temperature,
    topP: body.top_p,
    topK: body.top_k,
    seed: body.seed,
    stop: body.stop,
    frequencyPenalty: body.frequency_penalty,
    presencePenalty: body.presence_penalty,
    tools: body.tools?.map((tool) => ({ name: tool.name, description: tool.description, parameters: tool.parameters })),
    toolChoice: body.tool_choice === 'tool' ? 'required' : body.tool_choice,
    useSearchEngine: body.use_search_engine,
    responseFormat: body.response_format,
  };
}

// ---- response ----

function toRekaToolCalls(toolCalls: readonly ToolCall[]): Array<{ id: string; name: string; parameters: unknown }> | undefined {
  return toolCalls.length === 0 ? undefined : toolCalls.map((call) => ({ id: call.id, name: call.name, parameters: call.arguments }));
}

export function toRekaResponse(result: ChatResult): unknown {
  return {
    id: result.id,
    model: result.model,
    responses: [
      {
        finish_reason: result.finishReason,
        message: { role: 'assistant', content: result.text, tool_calls: toRekaToolCalls(result.toolCalls) },
      },
    ],
    usage: { input_tokens: result.usage.inputTokens, output_tokens: result.usage.outputTokens },
  };
}

/** Reka's stream repeats the whole text so far in every event; the last event adds finish_reason and usage. */
export function createRekaStreamEncoder(id: string, model: string): EventEncoder {
  let content = '';
  const toolCalls: ToolCall[] = [];
  return {
    opening: '',
    encode(part) {
      switch (part.type) {
        case 'text-delta':
          content += part.text;
          return sseFrame({ id, model, responses: [{ chunk: { role: 'assistant', content }, finish_reason: null }] });
        case 'tool-call':
          toolCalls.push(part.toolCall);
          return '';
        case 'finish':
          return sseFrame({
            id,
            model,
            responses: [
              { chunk: { role: 'assistant', content, tool_calls: toRekaToolCalls(toolCalls) }, finish_reason: part.finishReason },
            ],
            usage: { input_tokens: part.usage.inputTokens, output_tokens: part.usage.outputTokens },
          });
        case 'error':
          return sseFrame(errorEnvelope(part.error), 'error');
      }
    },
  };
}
