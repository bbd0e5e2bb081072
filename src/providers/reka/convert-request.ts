import type { MediaContent, MediaKind, PromptMessage, TextPart, ToolCall, ToolChoice } from '../../spec/messages.ts';
import type { ProviderRequest } from '../../spec/provider.ts';
import { parseToolArguments, toDataUrl, toSnakeCaseSampling } from '../../provider-utils/provider-definition.ts';
import { structuredOutputInstruction } from '../../provider-utils/structured-output-instruction.ts';

/** Reka's media parts carry the URL as a flat string: `{"type": "image_url", "image_url": "data:..."}`. */
export type RekaContentPart =
  | { type: 'text'; text: string }
  | { type: 'image_url'; image_url: string }
  | { type: 'video_url'; video_url: string }
  | { type: 'audio_url'; audio_url: string }
  | { type: 'pdf_url'; pdf_url: string };

export interface RekaToolCall {
  id: string;
  name: string;
  /** A JSON object: Reka validates it as a dict. */
  parameters: Record<string, unknown>;
}

export interface RekaToolOutput {
  tool_call_id: string;
  output: string;
}

export type RekaMessage =
  | { role: 'user'; content: string | RekaContentPart[] }
  | { role: 'assistant'; content?: string; tool_calls?: RekaToolCall[] }
  | { role: 'tool_output'; content: RekaToolOutput[] };

function convertMediaPart(kind: MediaKind, url: string): RekaContentPart {
  switch (kind) {
    case 'image':
      return { type: 'image_url', image_url: url };
    case 'video':
      return { type: 'video_url', video_url: url };
    case 'audio':
      return { type: 'audio_url', audio_url: url };
    case 'pdf':
      return { type: 'pdf_url', pdf_url: url };
  }
}

function convertUserContent(parts: ReadonlyArray<TextPart | MediaContent>, systemText: string | undefined): string | RekaContentPart[] {
  // Text-only turns go as a plain string, the form every Reka model and example uses.
  if (parts.every((part) => part.type === 'text')) {
    const text = parts.map((part) => (part as TextPart).text).join('\n');
    return systemText === undefined ? text : `${systemText}\n\n${text}`;
  }
  const converted = parts.map((part): RekaContentPart =>
    part.type === 'text' ? { type: 'text', text: part.text } : convertMediaPart(part.kind, toDataUrl(part.mediaType, part.data)),
  );
  if (systemText === undefined) return converted;
  const first = converted[0];
  if (first?.type === 'text') return [{ type: 'text', text: `${systemText}\n\n${first.text}` }, ...converted.slice(1)];
  return [{ type: 'text', text: systemText }, ...converted];
}

/** Reka takes `parameters` as an object; arguments a model emitted as invalid JSON cannot be sent back as such. */
function toParametersObject(value: unknown): Record<string, unknown> {
  const parsed = typeof value === 'string' ? parseToolArguments(value) : value;
  return typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : {};
}

function convertToolCall(call: ToolCall): RekaToolCall {
  return { id: call.id, name: call.name, parameters: toParametersObject(call.arguments) };
}

/**
 * Converts canonical messages to Reka's. Reka has no system role (its models take the system prompt as the
 * start of the first user turn), so system texts are joined and prepended there; consecutive tool results
 * become one `tool_output` message, as Reka answers all tool calls of a turn in one message.
 */
export function convertMessages(messages: readonly PromptMessage[]): RekaMessage[] {
  const systemTexts = messages.filter((message) => message.role === 'system').map((message) => message.content);
  let pendingSystem: string | undefined = systemTexts.length > 0 ? systemTexts.join('\n\n') : undefined;
  const result: RekaMessage[] = [];
  for (const message of messages) {
    switch (message.role) {
      case 'system':
        break;
      case 'user':
        result.push({ role: 'user', content: convertUserContent(message.content, pendingSystem) });
        pendingSystem = undefined;
        break;
      case 'assistant': {
        const toolCalls = message.toolCalls?.map(convertToolCall) ?? [];
        // A tool-calling turn without text omits `content`, as Reka's own clients send it.
        if (toolCalls.length === 0) result.push({ role: 'assistant', content: message.content });
        else result.push({ role: 'assistant', ...(message.content === '' ? {} : { content: message.content }), tool_calls: toolCalls });
        break;
      }
      case 'tool': {
        const output: RekaToolOutput = { tool_call_id: message.toolCallId, output: message.content };
        const previous = result.at(-1);
        if (previous?.role === 'tool_output') previous.content.push(output);
        else result.push({ role: 'tool_output', content: [output] });
        break;
      }
    }
  }
  // A conversation with instructions but no user turn still needs them somewhere the model reads.
  if (pendingSystem !== undefined) result.unshift({ role: 'user', content: pendingSystem });
  return result;
}

function convertToolChoice(choice: ToolChoice): 'auto' | 'none' | 'tool' {
  // Reka cannot force one named tool; `tool` forces some tool call, the closest it offers.
  if (typeof choice !== 'string' || choice === 'required') return 'tool';
  return choice;
}

/**
 * Builds the body of `POST /chat`. Optional sampling fields are sent only when set so Reka's own defaults
 * apply. A final assistant message is sent as is: Reka continues it natively (assistant prefix completion),
 * so `continuation` needs no extra instruction.
 */
export function convertRequest(request: ProviderRequest, options: { upstreamModel: string; stream: boolean }): Record<string, unknown> {
  // Reka's Chat API has no option that constrains the answer to a schema: it is asked for in the prompt (as
  // a system text, which goes after the client's at the start of the first user turn).
  const messages =
    request.responseFormat === undefined
      ? request.messages
      : [...request.messages, { role: 'system' as const, content: structuredOutputInstruction(request.responseFormat) }];
  const body: Record<string, unknown> = {
    model: options.upstreamModel,
    messages: convertMessages(messages),
    max_tokens: request.maxTokens,
    stream: options.stream,
  };
  Object.assign(body, toSnakeCaseSampling(request));
  if (request.tools !== undefined && request.tools.length > 0) {
    body.tools = request.tools.map((tool) => ({
      name: tool.name,
      ...(tool.description === undefined ? {} : { description: tool.description }),
      parameters: tool.parameters,
    }));
    if (request.toolChoice !== undefined) body.tool_choice = convertToolChoice(request.toolChoice);
  }
  return body;
}
