import { validationError } from '../../spec/errors.ts';
import type { MediaContent, PromptMessage, TextPart, ToolCall, ToolChoice } from '../../spec/messages.ts';
import type { ProviderRequest } from '../../spec/provider.ts';

export type GeminiPart =
  | { text: string }
  | { inlineData: { mimeType: string; data: string } }
  | { functionCall: { name: string; args: Record<string, unknown> }; thoughtSignature?: string }
  | { functionResponse: { name: string; response: { output: string } } };

export interface GeminiContent {
  role: 'user' | 'model';
  parts: GeminiPart[];
}

export interface ConvertedMessages {
  systemInstruction: { parts: Array<{ text: string }> } | undefined;
  contents: GeminiContent[];
}

/**
 * Gemini 3 rejects (400) a replayed `functionCall` part without the `thoughtSignature` it was returned
 * with, and canonical tool calls do not carry one. Google documents this value for history the model did
 * not produce itself; it is only needed on the first call of each model turn.
 */
const FOREIGN_THOUGHT_SIGNATURE = 'skip_thought_signature_validator';

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * `functionCall.args` must be a JSON object. Arguments another model emitted as invalid JSON are kept
 * as raw text (see `parseToolArguments`), so they are wrapped rather than dropped.
 */
function toFunctionArgs(value: unknown): Record<string, unknown> {
  if (isPlainObject(value)) return value;
  if (typeof value === 'string') {
    try {
      const parsed: unknown = JSON.parse(value);
      if (isPlainObject(parsed)) return parsed;
    } catch {
      // fall through: keep the raw text
    }
  }
  return value === undefined ? {} : { value };
}

function convertUserPart(part: TextPart | MediaContent): GeminiPart {
  // Gemini takes every media kind the same way: the bytes with their IANA type.
  return part.type === 'text' ? { text: part.text } : { inlineData: { mimeType: part.mediaType, data: part.data } };
}

function convertToolCalls(toolCalls: readonly ToolCall[]): GeminiPart[] {
  return toolCalls.map((call, index) => ({
    functionCall: { name: call.name, args: toFunctionArgs(call.arguments) },
    ...(index === 0 ? { thoughtSignature: FOREIGN_THOUGHT_SIGNATURE } : {}),
  }));
}

/**
 * Splits out the system prompt and builds `contents`. Tool results become `functionResponse` parts of a
 * user turn, named after the call they answer (Gemini matches them by name, it has no call ids); turns of
 * the same role are merged, as Gemini expects the answers to parallel calls in one turn.
 */
export function convertMessages(messages: readonly PromptMessage[]): ConvertedMessages {
  const systemParts: Array<{ text: string }> = [];
  const contents: GeminiContent[] = [];
  const toolNames = new Map<string, string>();

  const append = (role: GeminiContent['role'], parts: GeminiPart[]): void => {
    if (parts.length === 0) return; // Gemini rejects a content with no parts
    const last = contents.at(-1);
    if (last?.role === role) last.parts.push(...parts);
    else contents.push({ role, parts });
  };

  messages.forEach((message, index) => {
    switch (message.role) {
      case 'system':
        if (message.content !== '') systemParts.push({ text: message.content });
        return;
      case 'user':
        return append('user', message.content.map(convertUserPart));
      case 'assistant': {
        for (const call of message.toolCalls ?? []) toolNames.set(call.id, call.name);
        const parts: GeminiPart[] = message.content === '' ? [] : [{ text: message.content }];
        return append('model', [...parts, ...convertToolCalls(message.toolCalls ?? [])]);
      }
      case 'tool': {
        const name = toolNames.get(message.toolCallId);
        if (name === undefined) {
          throw validationError(`No earlier assistant tool call has the id '${message.toolCallId}'`, `messages.${index}.toolCallId`);
        }
        return append('user', [{ functionResponse: { name, response: { output: message.content } } }]);
      }
    }
  });

  return { systemInstruction: systemParts.length > 0 ? { parts: systemParts } : undefined, contents };
}

function convertToolChoice(choice: ToolChoice): Record<string, unknown> {
  switch (choice) {
    case 'auto':
      return { mode: 'AUTO' };
    case 'none':
      return { mode: 'NONE' };
    case 'required':
      return { mode: 'ANY' };
    default:
      return { mode: 'ANY', allowedFunctionNames: [choice.name] };
  }
}

/**
 * Builds the `generateContent` body (the streaming endpoint takes the same one). Optional sampling fields
 * are only sent when set, so Gemini's per-model defaults apply otherwise.
 *
 * Continuation is best effort: the final assistant message is sent as the last `model` turn and Gemini
 * generally carries on from it, but it has no documented prefill mode, and some models (thinking ones
 * especially) may restart the sentence instead of continuing it.
 */
export function convertRequest(request: ProviderRequest): Record<string, unknown> {
  const { systemInstruction, contents } = convertMessages(request.messages);
  const body: Record<string, unknown> = { contents };
  if (systemInstruction) body.systemInstruction = systemInstruction;

  const generationConfig: Record<string, unknown> = { maxOutputTokens: request.maxTokens };
  if (request.temperature !== undefined) generationConfig.temperature = request.temperature;
  if (request.topP !== undefined) generationConfig.topP = request.topP;
  if (request.topK !== undefined) generationConfig.topK = request.topK;
  if (request.seed !== undefined) generationConfig.seed = request.seed;
  if (request.stop !== undefined && request.stop.length > 0) generationConfig.stopSequences = request.stop;
  if (request.frequencyPenalty !== undefined) generationConfig.frequencyPenalty = request.frequencyPenalty;
  if (request.presencePenalty !== undefined) generationConfig.presencePenalty = request.presencePenalty;
  const format = request.responseFormat;
  const hasTools = request.tools !== undefined && request.tools.length > 0;
  // JSON mode: `responseJsonSchema` takes JSON Schema as clients write it (`responseSchema` is an OpenAPI subset).
  // Older Gemini models refuse JSON mode together with function calling, so with tools the answer is left free
  // (the chat service validates it).
  if (format !== undefined && !hasTools) {
    generationConfig.responseMimeType = 'application/json';
    if (format.type === 'json_schema') generationConfig.responseJsonSchema = format.schema;
  }
  body.generationConfig = generationConfig;

  if (request.tools !== undefined && request.tools.length > 0) {
    body.tools = [
      {
        // `parametersJsonSchema` takes JSON Schema as clients write it; `parameters` is an OpenAPI subset
        // that rejects common keywords such as `additionalProperties` and `$schema`.
        functionDeclarations: request.tools.map((tool) => ({
          name: tool.name,
          ...(tool.description === undefined ? {} : { description: tool.description }),
          parametersJsonSchema: tool.parameters,
        })),
      },
    ];
    if (request.toolChoice !== undefined) body.toolConfig = { functionCallingConfig: convertToolChoice(request.toolChoice) };
  }
  return body;
}
