import type { MediaContent, PromptMessage, TextPart, ToolCall, ToolChoice, ToolDefinition } from '../../spec/messages.ts';
import type { ProviderRequest } from '../../spec/provider.ts';
import { pickDefined, toDataUrl } from '../../provider-utils/provider-definition.ts';

/** Where llama.cpp's multimodal layer (mtmd) puts each entry of `media_paths`, in order. */
export const MEDIA_MARKER = '<__media__>';

/** A tool call as chat templates read it (OpenAI's shape: arguments as a JSON string). */
export interface TemplateToolCall {
  id: string;
  type: 'function';
  function: { name: string; arguments: string };
}

/** Messages in the OpenAI shape llama.cpp hands to a GGUF's Jinja chat template. */
export type TemplateMessage =
  | { role: 'system' | 'user'; content: string }
  | { role: 'assistant'; content: string; tool_calls?: TemplateToolCall[] }
  | { role: 'tool'; tool_call_id: string; content: string };

/** A tool as llama.cpp's chat templates and tool-call grammars take it. */
export interface TemplateTool {
  type: 'function';
  function: { name: string; description: string; parameters: Record<string, unknown> };
}

export interface ConvertedMessages {
  messages: TemplateMessage[];
  /** `data:` URLs of the media, in the order of their markers. */
  mediaPaths: string[];
  /** The assistant text to continue (the final message, removed from `messages`), when continuing. */
  prefix: string | undefined;
}

function serializeArguments(call: ToolCall): string {
  return typeof call.arguments === 'string' ? call.arguments : JSON.stringify(call.arguments ?? {});
}

/** A user turn as one string: text parts and one marker per media item, in order. */
function convertUserContent(parts: ReadonlyArray<TextPart | MediaContent>, mediaPaths: string[]): string {
  return parts
    .map((part) => {
      if (part.type === 'text') return part.text;
      mediaPaths.push(toDataUrl(part.mediaType, part.data));
      return MEDIA_MARKER;
    })
    .join('\n');
}

/**
 * Canonical messages to template messages. With `continuation`, the final assistant message becomes the
 * prefix the prompt ends with, so the model writes only what follows it. `systemAddendum` (the tool
 * instructions of the JSON fallback) joins the first system message, or becomes one.
 */
export function convertMessages(
  messages: readonly PromptMessage[],
  options: { continuation: boolean; systemAddendum?: string | undefined },
): ConvertedMessages {
  const mediaPaths: string[] = [];
  const converted = messages.map((message): TemplateMessage => {
    switch (message.role) {
      case 'system':
        return { role: 'system', content: message.content };
      case 'user':
        return { role: 'user', content: convertUserContent(message.content, mediaPaths) };
      case 'assistant':
        return message.toolCalls && message.toolCalls.length > 0
          ? {
              role: 'assistant',
              content: message.content,
              tool_calls: message.toolCalls.map((call) => ({
                id: call.id,
                type: 'function',
                function: { name: call.name, arguments: serializeArguments(call) },
              })),
            }
          : { role: 'assistant', content: message.content };
      case 'tool':
        return { role: 'tool', tool_call_id: message.toolCallId, content: message.content };
    }
  });
  let prefix: string | undefined;
  const last = converted.at(-1);
  if (options.continuation && last?.role === 'assistant') {
    converted.pop();
    prefix = last.content;
  }
  if (options.systemAddendum !== undefined) {
    const first = converted[0];
    if (first?.role === 'system') converted[0] = { role: 'system', content: `${first.content}\n\n${options.systemAddendum}` };
    else converted.unshift({ role: 'system', content: options.systemAddendum });
  }
  return { messages: converted, mediaPaths, prefix };
}

/** Stops that keep a model on the plain format from writing the next turn itself. */
export const PLAIN_FORMAT_STOPS: readonly string[] = ['\nUser:', '\nSystem:'];

/**
 * The prompt for models whose GGUF has no chat template (base models such as llama2.c's stories):
 *
 * ```
 * System: {system}
 * User: {text}
 * Assistant: {text}
 * Tool result ({id}): {output}
 * Assistant:
 * ```
 *
 * Tool calls in history are written as the JSON the tool fallback asks for. A continued answer ends the prompt
 * as `Assistant: {prefix}`, so the model's next tokens continue the prefix.
 */
export function formatPlainPrompt(messages: readonly TemplateMessage[], prefix: string | undefined): string {
  const lines = messages.map((message) => {
    switch (message.role) {
      case 'system':
        return `System: ${message.content}`;
      case 'user':
        return `User: ${message.content}`;
      case 'assistant': {
        const calls = (message.tool_calls ?? []).map((call) =>
          JSON.stringify({ name: call.function.name, arguments: parseOrKeep(call.function.arguments) }),
        );
        return `Assistant: ${[message.content, ...calls].filter((text) => text !== '').join('\n')}`;
      }
      case 'tool':
        return `Tool result (${message.tool_call_id}): ${message.content}`;
    }
  });
  lines.push(prefix === undefined ? 'Assistant:' : `Assistant: ${prefix}`);
  return lines.join('\n');
}

function parseOrKeep(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

export function convertTools(tools: readonly ToolDefinition[]): TemplateTool[] {
  return tools.map((tool) => ({
    type: 'function',
    function: { name: tool.name, description: tool.description ?? '', parameters: tool.parameters },
  }));
}

/**
 * llama.cpp's tool-call grammars know `auto`, `none` and `required`; a named tool is `required` over that
 * tool alone.
 */
export function convertToolChoice(
  tools: readonly ToolDefinition[],
  choice: ToolChoice | undefined,
): { tools: ToolDefinition[]; toolChoice: 'auto' | 'none' | 'required' } {
  if (choice === undefined) return { tools: [...tools], toolChoice: 'auto' };
  if (typeof choice === 'string') return { tools: [...tools], toolChoice: choice };
  return { tools: tools.filter((tool) => tool.name === choice.name), toolChoice: 'required' };
}

/**
 * The tool fallback's instructions, for chat templates (or plain prompts) without tool support: the model is
 * told to answer a call as one JSON object, and when a call is required, a grammar holds it to that.
 */
export function buildToolInstructions(tools: readonly ToolDefinition[], toolChoice: 'auto' | 'required'): string {
  const list = tools
    .map(
      (tool) =>
        `- ${tool.name}${tool.description ? `: ${tool.description}` : ''}\n  arguments (JSON Schema): ${JSON.stringify(tool.parameters)}`,
    )
    .join('\n');
  const rule =
    toolChoice === 'required'
      ? 'You must call one of these tools. Reply with only a JSON object of the form {"name": "<tool name>", "arguments": {...}}.'
      : 'To call one of these tools, reply with only a JSON object of the form {"name": "<tool name>", "arguments": {...}}; otherwise answer normally.';
  return `You can use these tools:\n${list}\n${rule}`;
}

/** JSON Schema of one call in the fallback format: `{"name": ..., "arguments": {...}}`, one branch per tool. */
export function buildToolCallSchema(tools: readonly ToolDefinition[]): Record<string, unknown> {
  return {
    anyOf: tools.map((tool) => ({
      type: 'object',
      properties: { name: { const: tool.name }, arguments: tool.parameters },
      required: ['name', 'arguments'],
    })),
  };
}

/**
 * A template whose only job is to let llama.cpp turn a JSON Schema into a grammar (it renders nothing). The
 * conversion runs in the binding's chat formatter, which reports an unsupported schema as an exception;
 * the completion path would instead abort the whole process on one.
 */
export const SCHEMA_ONLY_TEMPLATE = '{%- for message in messages -%}{{ message.content }}{%- endfor -%}';

/** llama.cpp takes a signed 32-bit seed; `0xFFFFFFFF` (-1) means "random", so other values keep their low 32 bits. */
export function toLlamaSeed(seed: number): number {
  return Number(BigInt.asIntN(32, BigInt(Math.trunc(seed))));
}

/**
 * Samplers the binding turns on by default but llama.cpp (and every API Ocular speaks) leaves off: XTC at
 * probability 0.1 with threshold 0 randomly discards the likeliest token, so even temperature 0 would not be
 * greedy, and DRY penalises repeats. Off, so a request means what it says.
 */
const NEUTRAL_SAMPLING = { xtc_probability: 0, dry_multiplier: 0 } as const;

/** Sampling options under the binding's names; unset ones keep llama.cpp's defaults (temperature 0.8, top_k 40, top_p 0.95). */
export function convertSampling(request: ProviderRequest): Record<string, number> {
  return {
    ...NEUTRAL_SAMPLING,
    ...pickDefined({
      n_predict: request.maxTokens,
      temperature: request.temperature,
      top_p: request.topP,
      top_k: request.topK,
      seed: request.seed === undefined ? undefined : toLlamaSeed(request.seed),
      penalty_freq: request.frequencyPenalty,
      penalty_present: request.presencePenalty,
    }),
  } as Record<string, number>;
}
