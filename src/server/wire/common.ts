import { z } from 'zod';
import type { ResponseFormat, ToolDefinition } from '../../spec/messages.ts';
import type { StreamPart } from '../../spec/stream-parts.ts';

/** A URL given flat (`"image_url": "https://..."`, Reka) or as an object (`{"url": ...}`, OpenAI). */
export const mediaUrlSchema = z
  .union([z.string().min(1), z.looseObject({ url: z.string().min(1) })])
  .transform((value) => (typeof value === 'string' ? value : value.url));

export const stopSchema = z
  .union([z.string(), z.array(z.string()).max(16)])
  .transform((value) => (typeof value === 'string' ? [value] : value))
  .optional();

/** JSON Schema object for a tool's arguments; `{}` and missing mean "no arguments". */
export const toolParametersSchema = z.record(z.string(), z.unknown()).default({ type: 'object', properties: {} });

export const toolNameSchema = z
  .string()
  .min(1)
  .max(64)
  .regex(/^[A-Za-z0-9_.-]+$/, 'tool names use letters, digits, _ . - only');

export const samplingSchema = {
  max_tokens: z.int().min(1).optional(),
  temperature: z.number().min(0).max(2).optional(),
  top_p: z.number().min(0).max(1).optional(),
  top_k: z.int().min(0).optional(),
  seed: z.int().optional(),
  stop: stopSchema,
  frequency_penalty: z.number().min(-2).max(2).optional(),
  presence_penalty: z.number().min(-2).max(2).optional(),
  stream: z.boolean().optional(),
};

/**
 * `response_format` as OpenAI defines it (and Reka's `/v1/chat`, the same field): `text` (the default, nothing
 * asked), `json_object`, or `json_schema` with a schema the chat service compiles (a bad one is a 400 there).
 */
export const responseFormatSchema = z
  .discriminatedUnion('type', [
    z.looseObject({ type: z.literal('text') }),
    z.looseObject({ type: z.literal('json_object') }),
    z.looseObject({
      type: z.literal('json_schema'),
      json_schema: z.looseObject({
        name: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'json_schema.name uses letters, digits, _ and - only, at most 64 of them'),
        description: z.string().optional(),
        schema: z.record(z.string(), z.unknown()),
        strict: z.boolean().nullish(),
      }),
    }),
  ])
  .optional()
  .transform((format): ResponseFormat | undefined => {
    if (format === undefined || format.type === 'text') return undefined;
    if (format.type === 'json_object') return { type: 'json_object' };
    const { name, schema, strict } = format.json_schema;
    return { type: 'json_schema', name, schema, ...(typeof strict === 'boolean' ? { strict } : {}) };
  });

/** Tool outputs may be any JSON; models receive text. */
export function outputToText(output: unknown): string {
  return typeof output === 'string' ? output : JSON.stringify(output);
}

export function checkUniqueToolNames(tools: ToolDefinition[] | undefined, context: z.core.$RefinementCtx): void {
  const seen = new Set<string>();
  tools?.forEach((tool, index) => {
    if (seen.has(tool.name))
      context.addIssue({ code: 'custom', message: `duplicate tool name "${tool.name}"`, path: ['tools', index, 'name'] });
    seen.add(tool.name);
  });
}

/** Encodes one server-sent event. */
export function sseFrame(data: unknown, event?: string): string {
  return `${event === undefined ? '' : `event: ${event}\n`}data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`;
}

/**
 * Turns a stream's parts into server-sent events, as text written straight to the response: `opening` first,
 * then what `encode` returns for each part ('' when a part adds nothing). A plain function rather than a
 * TransformStream: piping through one cost ~30 us per stream and a few per event.
 */
export interface EventEncoder {
  readonly opening: string;
  encode(part: StreamPart): string;
}
