import { z } from 'zod';
import type { FinishReason, ToolCall, Usage } from '../../spec/messages.ts';
import type { GenerateResult } from '../../spec/provider.ts';
import { parseToolArguments } from '../../provider-utils/provider-definition.ts';

/** How the output of one completion is read. */
export interface OutputPlan {
  /**
   * `content`: llama.cpp's chat parser splits the output into text and tool calls (GGUF chat templates).
   * `text`: the raw generated text (plain prompts and continuations).
   */
  source: 'content' | 'text';
  /** Stop strings: the client's plus the format's; the binding includes a matched one in its text, so it is cut here. */
  stops: readonly string[];
  /** Drop whitespace before the first character (the plain format's "Assistant:" is followed by a space). */
  trimStart: boolean;
  /**
   * `native`: the template's own tool-call format, parsed by llama.cpp. `json`: the fallback, where the whole
   * answer is one `{"name", "arguments"}` object (`json-required`: a grammar guarantees it).
   */
  tools: 'none' | 'native' | 'json' | 'json-required';
  toolNames: readonly string[];
  /** Tokens of the prompt, counted before the completion started (usage when the binding reports none). */
  promptTokens: number;
}

// Lenient: only what Ocular reads. The binding's parallel API reports these per request.
const toolCallSchema = z.object({
  id: z.string().nullish(),
  function: z.object({ name: z.string(), arguments: z.union([z.string(), z.record(z.string(), z.unknown())]).nullish() }),
});

export const completionResultSchema = z.object({
  text: z.string(),
  content: z.string().nullish(),
  tool_calls: z.array(toolCallSchema).nullish(),
  stopped_limit: z.boolean().nullish(),
  stopped_eos: z.boolean().nullish(),
  stopped_word: z.boolean().nullish(),
  context_full: z.boolean().nullish(),
  tokens_predicted: z.number().nullish(),
  timings: z.object({ prompt_n: z.number().nullish(), cache_n: z.number().nullish(), predicted_n: z.number().nullish() }).nullish(),
});

export type CompletionResult = z.infer<typeof completionResultSchema>;

/** Finds the earliest occurrence of any stop string. */
export function findStop(text: string, stops: readonly string[]): number {
  let earliest = -1;
  for (const stop of stops) {
    if (stop === '') continue;
    const index = text.indexOf(stop);
    if (index !== -1 && (earliest === -1 || index < earliest)) earliest = index;
  }
  return earliest;
}

/** The answer's text as the client should see it: leading space dropped where the format adds one, cut at a stop. */
export function finalText(result: CompletionResult, plan: OutputPlan): { text: string; stopped: boolean } {
  let text = plan.source === 'content' ? (result.content ?? result.text) : result.text;
  if (plan.trimStart) text = text.trimStart();
  const stopAt = findStop(text, plan.stops);
  return stopAt === -1 ? { text, stopped: false } : { text: text.slice(0, stopAt), stopped: true };
}

/** Prompt tokens are the ones evaluated plus those reused from the slot's cache. */
export function convertUsage(result: CompletionResult, plan: OutputPlan): Usage {
  const evaluated = (result.timings?.prompt_n ?? 0) + (result.timings?.cache_n ?? 0);
  return {
    inputTokens: evaluated > 0 ? evaluated : plan.promptTokens,
    // `tokens_predicted` can carry over tokens of a request cancelled on the same slot; the timings cannot.
    outputTokens: result.timings?.predicted_n ?? result.tokens_predicted ?? 0,
  };
}

export function mapFinishReason(result: CompletionResult, hasToolCalls: boolean, stopped: boolean): FinishReason {
  if (hasToolCalls) return 'tool_call';
  if (stopped) return 'stop';
  if (result.context_full) return 'context';
  if (result.stopped_limit) return 'length';
  return 'stop';
}

/** Strips the Markdown fence llama.cpp's JSON grammars allow around the object. */
function unfence(text: string): string {
  const trimmed = text.trim();
  const fenced = /^```(?:json)?\s*([\s\S]*?)\s*```$/.exec(trimmed);
  return fenced ? fenced[1]! : trimmed;
}

const jsonToolCallSchema = z.object({ name: z.string(), arguments: z.unknown().optional() });

/**
 * The fallback format's call, when the whole answer is one `{"name", "arguments"}` object naming a known
 * tool; anything else is an ordinary answer.
 */
export function parseJsonToolCall(text: string, toolNames: readonly string[], createId: () => string): ToolCall | undefined {
  const body = unfence(text);
  if (!body.startsWith('{')) return undefined;
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch {
    return undefined;
  }
  const parsed = jsonToolCallSchema.safeParse(json);
  if (!parsed.success || !toolNames.includes(parsed.data.name)) return undefined;
  return { id: createId(), name: parsed.data.name, arguments: parsed.data.arguments ?? {} };
}

/** Tool calls the chat parser found (native) or the answer is (fallback). */
export function extractToolCalls(result: CompletionResult, text: string, plan: OutputPlan, createId: () => string): ToolCall[] {
  switch (plan.tools) {
    case 'none':
      return [];
    case 'native':
      return (result.tool_calls ?? []).map((call) => ({
        id: call.id ?? createId(),
        name: call.function.name,
        arguments:
          typeof call.function.arguments === 'string' ? parseToolArguments(call.function.arguments) : (call.function.arguments ?? {}),
      }));
    case 'json':
    case 'json-required': {
      const call = parseJsonToolCall(text, plan.toolNames, createId);
      return call ? [call] : [];
    }
  }
}

/** The binding's final result as a provider result. A fallback call replaces the text it was written as. */
export function convertResult(result: CompletionResult, plan: OutputPlan, createId: () => string): GenerateResult {
  const { text, stopped } = finalText(result, plan);
  const toolCalls = extractToolCalls(result, text, plan, createId);
  const isJsonCall = toolCalls.length > 0 && plan.tools !== 'native';
  return {
    text: isJsonCall ? '' : text,
    toolCalls,
    finishReason: mapFinishReason(result, toolCalls.length > 0, stopped),
    usage: convertUsage(result, plan),
  };
}
