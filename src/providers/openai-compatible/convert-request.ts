import type { MediaContent, PromptMessage, TextPart, ToolChoice } from '../../spec/messages.ts';
import type { ProviderRequest } from '../../spec/provider.ts';
import { toDataUrl, toSnakeCaseSampling } from '../../provider-utils/provider-definition.ts';

type OpenAiContentPart =
  | { type: 'text'; text: string }
  | { type: 'image_url'; image_url: { url: string } }
  | { type: 'video_url'; video_url: { url: string } }
  | { type: 'input_audio'; input_audio: { data: string; format: string } }
  | { type: 'file'; file: { filename: string; file_data: string } };

export type OpenAiMessage =
  | { role: 'system'; content: string }
  | { role: 'user'; content: string | OpenAiContentPart[] }
  | { role: 'assistant'; content: string | null; tool_calls?: OpenAiToolCall[] }
  | { role: 'tool'; tool_call_id: string; content: string };

interface OpenAiToolCall {
  id: string;
  type: 'function';
  function: { name: string; arguments: string };
}

/** The instruction used when the upstream cannot continue a final assistant message natively. */
export const CONTINUATION_INSTRUCTION =
  'Continue your previous message exactly where it stops. Reply with the continuation only: do not repeat what is already written, do not add any preface.';

function audioFormat(mediaType: string): string {
  const subtype = mediaType.split('/')[1] ?? 'wav';
  return subtype === 'mpeg' ? 'mp3' : subtype.replace(/^x-/, '');
}

function convertPart(part: TextPart | MediaContent): OpenAiContentPart {
  if (part.type === 'text') return { type: 'text', text: part.text };
  const url = toDataUrl(part.mediaType, part.data);
  switch (part.kind) {
    case 'image':
      return { type: 'image_url', image_url: { url } };
    case 'video':
      return { type: 'video_url', video_url: { url } };
    case 'audio':
      return { type: 'input_audio', input_audio: { data: part.data, format: audioFormat(part.mediaType) } };
    case 'pdf':
      return { type: 'file', file: { filename: 'document.pdf', file_data: url } };
  }
}

export function convertMessages(messages: readonly PromptMessage[]): OpenAiMessage[] {
  return messages.map((message): OpenAiMessage => {
    switch (message.role) {
      case 'system':
        return { role: 'system', content: message.content };
      case 'user':
        // Plain strings are the most widely accepted form (some servers reject parts arrays without media).
        return message.content.every((part) => part.type === 'text')
          ? { role: 'user', content: message.content.map((part) => (part as TextPart).text).join('\n') }
          : { role: 'user', content: message.content.map(convertPart) };
      case 'assistant': {
        const toolCalls = message.toolCalls?.map((call): OpenAiToolCall => ({
          id: call.id,
          type: 'function',
          function: { name: call.name, arguments: typeof call.arguments === 'string' ? call.arguments : JSON.stringify(call.arguments) },
        }));
        return toolCalls && toolCalls.length > 0
          ? { role: 'assistant', content: message.content === '' ? null : message.content, tool_calls: toolCalls }
          : { role: 'assistant', content: message.content };
      }
      case 'tool':
        return { role: 'tool', tool_call_id: message.toolCallId, content: message.content };
    }
  });
}

function convertToolChoice(choice: ToolChoice): unknown {
  return typeof choice === 'string' ? choice : { type: 'function', function: { name: choice.name } };
}

export interface ConvertOptions {
  upstreamModel: string;
  stream: boolean;
  /** Whether the upstream supports vLLM's `continue_final_message` (vLLM, SGLang). */
  continueFinalMessage: boolean;
}

/** Builds the Chat Completions body. Optional sampling fields are only sent when set (OpenAI rejects unknown ones like top_k). */
export function convertRequest(request: ProviderRequest, options: ConvertOptions): Record<string, unknown> {
  const messages = convertMessages(request.messages);
  const body: Record<string, unknown> = { model: options.upstreamModel, messages, max_tokens: request.maxTokens };
  if (request.continuation) {
    if (options.continueFinalMessage) {
      body.continue_final_message = true;
      body.add_generation_prompt = false;
    } else {
      messages.push({ role: 'user', content: CONTINUATION_INSTRUCTION });
    }
  }
  Object.assign(body, toSnakeCaseSampling(request));
  const format = request.responseFormat;
  if (format?.type === 'json_schema') {
    body.response_format = {
      type: 'json_schema',
      json_schema: { name: format.name, schema: format.schema, ...(format.strict === undefined ? {} : { strict: format.strict }) },
    };
  } else if (format?.type === 'json_object') {
    body.response_format = { type: 'json_object' };
  }
  if (request.tools !== undefined && request.tools.length > 0) {
    body.tools = request.tools.map((tool) => ({
      type: 'function',
      function: {
        name: tool.name,
        ...(tool.description === undefined ? {} : { description: tool.description }),
        parameters: tool.parameters,
      },
    }));
    if (request.toolChoice !== undefined) body.tool_choice = convertToolChoice(request.toolChoice);
  }
  if (options.stream) {
    body.stream = true;
    body.stream_options = { include_usage: true };
  }
  return body;
}
