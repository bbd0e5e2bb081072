import { z } from 'zod';
import type { ChatMessage, ChatRequest, ChatResult, FinishReason, MediaReference, TextPart, ToolCall } from '../../spec/messages.ts';
import type { StreamPart } from '../../spec/stream-parts.ts';
import { parseToolArguments } from '../../provider-utils/provider-definition.ts';
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

// ---- request (OpenAI Chat Completions) ----

const textPart = z.looseObject({ type: z.literal('text'), text: z.string() });

const AUDIO_FORMATS: Record<string, string> = {
  wav: 'audio/wav',
  mp3: 'audio/mpeg',
  flac: 'audio/flac',
  ogg: 'audio/ogg',
  webm: 'audio/webm',
  m4a: 'audio/mp4',
};

const userPart = z.discriminatedUnion('type', [
  textPart,
  z.looseObject({ type: z.literal('image_url'), image_url: mediaUrlSchema }),
  z.looseObject({ type: z.literal('video_url'), video_url: mediaUrlSchema }),
  z.looseObject({ type: z.literal('audio_url'), audio_url: mediaUrlSchema }),
  z.looseObject({ type: z.literal('pdf_url'), pdf_url: mediaUrlSchema }),
  z.looseObject({
    type: z.literal('input_audio'),
    input_audio: z.looseObject({ data: z.string().min(1), format: z.enum(Object.keys(AUDIO_FORMATS) as [string, ...string[]]) }),
  }),
  z.looseObject({
    type: z.literal('file'),
    file: z.looseObject({ file_data: z.string().min(1), filename: z.string().optional() }),
  }),
]);

function toCanonicalPart(part: z.infer<typeof userPart>): TextPart | MediaReference {
  switch (part.type) {
    case 'text':
      return { type: 'text', text: part.text };
    case 'image_url':
      return { type: 'media', kind: 'image', url: part.image_url };
    case 'video_url':
      return { type: 'media', kind: 'video', url: part.video_url };
    case 'audio_url':
      return { type: 'media', kind: 'audio', url: part.audio_url };
    case 'pdf_url':
      return { type: 'media', kind: 'pdf', url: part.pdf_url };
    case 'input_audio':
      return { type: 'media', kind: 'audio', url: `data:${AUDIO_FORMATS[part.input_audio.format]};base64,${part.input_audio.data}` };
    case 'file':
      // OpenAI's file parts carry PDFs as data: URLs (`data:application/pdf;base64,...`).
      return { type: 'media', kind: 'pdf', url: part.file.file_data };
  }
}

const textContent = z
  .union([z.string(), z.array(z.union([textPart, z.looseObject({ type: z.literal('refusal'), refusal: z.string() })]))])
  .transform((content) =>
    typeof content === 'string' ? content : content.map((part) => ('text' in part ? part.text : part.refusal)).join('\n'),
  );

const messageSchema = z.discriminatedUnion('role', [
  z.looseObject({ role: z.enum(['system', 'developer']), content: textContent }),
  z.looseObject({
    role: z.literal('user'),
    content: z.union([z.string(), z.array(userPart).min(1)]),
  }),
  z.looseObject({
    role: z.literal('assistant'),
    content: textContent.nullish(),
    tool_calls: z
      .array(
        z.looseObject({
          id: z.string().min(1),
          type: z.literal('function').optional(),
          function: z.looseObject({ name: toolNameSchema, arguments: z.string() }),
        }),
      )
      .nullish(),
  }),
  z.looseObject({ role: z.literal('tool'), tool_call_id: z.string().min(1), content: textContent }),
]);

export const openAiChatRequestSchema = z
  .looseObject({
    model: z.string().min(1).optional(),
    messages: z.array(messageSchema),
    ...samplingSchema,
    max_completion_tokens: z.int().min(1).optional(),
    n: z.literal(1, { error: 'only n=1 is supported' }).optional(),
    stream_options: z.looseObject({ include_usage: z.boolean().optional() }).nullish(),
    tools: z
      .array(
        z.looseObject({
          type: z.literal('function'),
          function: z.looseObject({ name: toolNameSchema, description: z.string().optional(), parameters: toolParametersSchema }),
        }),
      )
      .max(128)
      .optional(),
    tool_choice: z
      .union([
        z.enum(['auto', 'none', 'required']),
        z.looseObject({ type: z.literal('function'), function: z.looseObject({ name: toolNameSchema }) }),
      ])
      .optional(),
    response_format: responseFormatSchema,
  })
  .superRefine((request, context) =>
    checkUniqueToolNames(
      request.tools?.map((tool) => ({ name: tool.function.name, parameters: {} })),
      context,
    ),
  );

export type OpenAiChatRequest = z.infer<typeof openAiChatRequestSchema>;

export function fromOpenAiRequest(body: OpenAiChatRequest, defaultMaxTokens: number): ChatRequest {
  const messages = body.messages.map((message): ChatMessage => {
    switch (message.role) {
      case 'system':
      case 'developer':
        return { role: 'system', content: message.content };
      case 'user':
        return {
          role: 'user',
          content: typeof message.content === 'string' ? [{ type: 'text', text: message.content }] : message.content.map(toCanonicalPart),
        };
      case 'assistant':
        return {
          role: 'assistant',
          content: message.content ?? '',
          toolCalls: message.tool_calls?.map((call) => ({
            id: call.id,
            name: call.function.name,
            arguments: parseToolArguments(call.function.arguments),
          })),
        };
      case 'tool':
        return { role: 'tool', toolCallId: message.tool_call_id, content: outputToText(message.content) };
    }
  });
  const choice = body.tool_choice;
  return {
    model: body.model,
    messages,
    maxTokens: body.max_completion_tokens ?? body.max_tokens ?? defaultMaxTokens,
    temperature: body.temperature,
    topP: body.top_p,
    topK: body.top_k,
    seed: body.seed,
    stop: body.stop,
    frequencyPenalty: body.frequency_penalty,
    presencePenalty: body.presence_penalty,
    tools: body.tools?.map((tool) => ({
      name: tool.function.name,
      description: tool.function.description,
      parameters: tool.function.parameters,
    })),
    toolChoice: choice === undefined || typeof choice === 'string' ? choice : { name: choice.function.name },
    responseFormat: body.response_format,
  };
}

// ---- response ----

const FINISH_REASONS: Record<FinishReason, string> = { stop: 'stop', length: 'length', context: 'length', tool_call: 'tool_calls' };

function toOpenAiToolCalls(toolCalls: readonly ToolCall[]) {
  return toolCalls.map((call) => ({
    id: call.id,
    type: 'function' as const,
    function: { name: call.name, arguments: typeof call.arguments === 'string' ? call.arguments : JSON.stringify(call.arguments) },
  }));
}

export function toOpenAiUsage(usage: { inputTokens: number; outputTokens: number }) {
  return { prompt_tokens: usage.inputTokens, completion_tokens: usage.outputTokens, total_tokens: usage.inputTokens + usage.outputTokens };
}

export function completionId(id: string): string {
  return `chatcmpl-${id.replaceAll('-', '')}`;
}

export function toOpenAiResponse(result: ChatResult): unknown {
  const toolCalls = toOpenAiToolCalls(result.toolCalls);
  return {
    id: completionId(result.id),
    object: 'chat.completion',
    created: Math.floor(Date.now() / 1000),
    model: result.model,
    choices: [
      {
        index: 0,
        message: {
          role: 'assistant',
          content: result.text === '' && toolCalls.length > 0 ? null : result.text,
          refusal: null,
          ...(toolCalls.length > 0 ? { tool_calls: toolCalls } : {}),
        },
        logprobs: null,
        finish_reason: FINISH_REASONS[result.finishReason],
      },
    ],
    usage: toOpenAiUsage(result.usage),
  };
}

/** Chat Completions chunks: a role delta first, content deltas, a finish chunk, optional usage, then [DONE]. */
export function createOpenAiStreamEncoder(id: string, model: string, includeUsage: boolean): EventEncoder {
  const created = Math.floor(Date.now() / 1000);
  const base = { id: completionId(id), object: 'chat.completion.chunk', created, model };
  const chunk = (delta: unknown, finishReason: string | null = null): string =>
    sseFrame({ ...base, choices: [{ index: 0, delta, logprobs: null, finish_reason: finishReason }] });
  let toolIndex = 0;
  return {
    opening: chunk({ role: 'assistant', content: '' }),
    encode(part) {
      switch (part.type) {
        case 'text-delta':
          return chunk({ content: part.text });
        case 'tool-call': {
          const [call] = toOpenAiToolCalls([part.toolCall]);
          return chunk({ tool_calls: [{ index: toolIndex++, ...call }] });
        }
        case 'finish':
          return (
            chunk({}, FINISH_REASONS[part.finishReason]) +
            (includeUsage ? sseFrame({ ...base, choices: [], usage: toOpenAiUsage(part.usage) }) : '') +
            sseFrame('[DONE]')
          );
        case 'error':
          return sseFrame(errorEnvelope(part.error));
      }
    },
  };
}
