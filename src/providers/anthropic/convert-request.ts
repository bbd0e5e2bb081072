import { OcularError } from '../../spec/errors.ts';
import type { MediaContent, PromptMessage, TextPart, ToolCall, ToolChoice } from '../../spec/messages.ts';
import type { ProviderRequest } from '../../spec/provider.ts';
import { parseToolArguments } from '../../provider-utils/provider-definition.ts';
import { structuredOutputInstruction } from '../../provider-utils/structured-output-instruction.ts';

type AnthropicContentBlock =
  | { type: 'text'; text: string }
  | { type: 'image'; source: { type: 'base64'; media_type: string; data: string } }
  | { type: 'document'; source: { type: 'base64'; media_type: 'application/pdf'; data: string } }
  | { type: 'tool_use'; id: string; name: string; input: Record<string, unknown> }
  | { type: 'tool_result'; tool_use_id: string; content?: string };

export interface AnthropicMessage {
  role: 'user' | 'assistant';
  content: AnthropicContentBlock[];
}

/** The image formats the Messages API accepts; anything else is rejected upstream with a vaguer 400. */
const IMAGE_MEDIA_TYPES = new Set(['image/jpeg', 'image/png', 'image/gif', 'image/webp']);

function convertUserPart(part: TextPart | MediaContent, param: string): AnthropicContentBlock | undefined {
  if (part.type === 'text') return part.text === '' ? undefined : { type: 'text', text: part.text };
  switch (part.kind) {
    case 'image':
      if (!IMAGE_MEDIA_TYPES.has(part.mediaType)) {
        throw new OcularError('validation_error', `anthropic accepts JPEG, PNG, GIF and WebP images, not ${part.mediaType}`, { param });
      }
      return { type: 'image', source: { type: 'base64', media_type: part.mediaType, data: part.data } };
    case 'pdf':
      return { type: 'document', source: { type: 'base64', media_type: 'application/pdf', data: part.data } };
    case 'video':
    case 'audio':
      throw new OcularError('validation_error', `anthropic models do not accept ${part.kind} input; send images, PDFs or text`, { param });
  }
}

/**
 * `tool_use.input` must be a JSON object. Arguments that another model emitted as invalid JSON (kept as raw
 * text by `parseToolArguments`) cannot be represented, so they become `{}` rather than a rejected request.
 */
function toToolInput(call: ToolCall): Record<string, unknown> {
  const value = typeof call.arguments === 'string' ? parseToolArguments(call.arguments) : call.arguments;
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : {};
}

function convertMessage(message: Exclude<PromptMessage, { role: 'system' }>, index: number): AnthropicMessage {
  switch (message.role) {
    case 'user': {
      const content = message.content.flatMap((part, partIndex) => convertUserPart(part, `messages.${index}.content.${partIndex}`) ?? []);
      return { role: 'user', content };
    }
    case 'assistant': {
      // Empty text blocks are rejected, and an assistant turn that only calls tools has no text.
      const content: AnthropicContentBlock[] = message.content === '' ? [] : [{ type: 'text', text: message.content }];
      for (const call of message.toolCalls ?? [])
        content.push({ type: 'tool_use', id: call.id, name: call.name, input: toToolInput(call) });
      return { role: 'assistant', content };
    }
    case 'tool':
      return {
        role: 'user',
        content: [
          { type: 'tool_result', tool_use_id: message.toolCallId, ...(message.content === '' ? {} : { content: message.content }) },
        ],
      };
  }
}

/** Removes trailing whitespace from a final assistant turn: the API rejects a prefill that ends with it. */
function trimFinalAssistant(messages: AnthropicMessage[]): void {
  const last = messages.at(-1);
  if (last?.role !== 'assistant') return;
  const block = last.content.at(-1);
  if (block?.type !== 'text') return;
  block.text = block.text.trimEnd();
  if (block.text === '') last.content.pop();
  if (last.content.length === 0) messages.pop();
}

/**
 * Splits out the system prompt and converts the turns. Anthropic requires user and assistant turns to
 * alternate, so consecutive turns of one role (tool results, then the user's next words) are merged.
 */
export function convertMessages(messages: readonly PromptMessage[]): { system: string | undefined; messages: AnthropicMessage[] } {
  const system: string[] = [];
  const converted: AnthropicMessage[] = [];
  messages.forEach((message, index) => {
    if (message.role === 'system') {
      if (message.content !== '') system.push(message.content);
      return;
    }
    const next = convertMessage(message, index);
    if (next.content.length === 0) return; // empty content is rejected upstream
    const previous = converted.at(-1);
    if (previous?.role === next.role) previous.content.push(...next.content);
    else converted.push(next);
  });
  trimFinalAssistant(converted);
  return { system: system.length > 0 ? system.join('\n\n') : undefined, messages: converted };
}

function convertToolChoice(choice: ToolChoice): Record<string, unknown> {
  if (typeof choice === 'object') return { type: 'tool', name: choice.name };
  switch (choice) {
    case 'auto':
      return { type: 'auto' };
    case 'required':
      return { type: 'any' };
    case 'none':
      return { type: 'none' };
  }
}

export interface ConvertOptions {
  upstreamModel: string;
  stream: boolean;
}

/**
 * Builds the Messages API body. A final assistant message is sent as is: Anthropic continues it natively
 * (prefill), so `continuation` needs nothing more. `seed` and the frequency/presence penalties have no
 * Anthropic equivalent and are left out rather than rejected.
 */
export function convertRequest(request: ProviderRequest, options: ConvertOptions): Record<string, unknown> {
  const { system, messages } = convertMessages(request.messages);
  const body: Record<string, unknown> = { model: options.upstreamModel, max_tokens: request.maxTokens };
  const format = request.responseFormat;
  // Structured outputs (`output_config.format`) take a JSON Schema; "any JSON object" has no native form, so it
  // is asked for in the system prompt.
  const instruction = format?.type === 'json_object' ? structuredOutputInstruction(format) : undefined;
  const fullSystem = [system, instruction].filter((text) => text !== undefined).join('\n\n');
  if (fullSystem !== '') body.system = fullSystem;
  body.messages = messages;
  if (request.temperature !== undefined) body.temperature = request.temperature;
  if (request.topP !== undefined) body.top_p = request.topP;
  if (request.topK !== undefined) body.top_k = request.topK;
  if (request.stop !== undefined && request.stop.length > 0) body.stop_sequences = request.stop;
  if (request.tools !== undefined && request.tools.length > 0) {
    body.tools = request.tools.map((tool) => ({
      name: tool.name,
      ...(tool.description === undefined ? {} : { description: tool.description }),
      input_schema: tool.parameters,
    }));
    if (request.toolChoice !== undefined) body.tool_choice = convertToolChoice(request.toolChoice);
  }
  if (format?.type === 'json_schema') body.output_config = { format: { type: 'json_schema', schema: format.schema } };
  if (options.stream) body.stream = true;
  return body;
}
