import { z } from 'zod';
import { validationError } from '../spec/errors.ts';
import type { ResponseFormat } from '../spec/messages.ts';

/** Nesting a client's schema may have (objects and arrays, counted together). */
const MAX_SCHEMA_DEPTH = 32;
/** How many of the validation issues a problem names. */
const MAX_ISSUES = 5;

/**
 * Refuses what a client's schema must not bring: regular expressions (`pattern`, `patternProperties`), which
 * would run the client's regex over the model's output on the event loop (catastrophic backtracking), and
 * nesting deeper than MAX_SCHEMA_DEPTH.
 */
function checkSchemaSafety(value: unknown, param: string, depth = 0): void {
  if (typeof value !== 'object' || value === null) return;
  if (depth > MAX_SCHEMA_DEPTH) throw validationError(`schema is nested more than ${MAX_SCHEMA_DEPTH} levels deep`, param);
  if (Array.isArray(value)) {
    for (const item of value) checkSchemaSafety(item, param, depth + 1);
    return;
  }
  for (const [key, item] of Object.entries(value)) {
    const regex = (key === 'pattern' && typeof item === 'string') || (key === 'patternProperties' && typeof item === 'object');
    if (regex) throw validationError(`schema uses "${key}": regular expressions are not supported in schemas`, param);
    checkSchemaSafety(item, param, depth + 1);
  }
}

/**
 * Compiles a client's JSON Schema into a validator (zod's `fromJSONSchema`). What zod cannot compile
 * (conditionals, unknown types, dangling `$ref`s), regular expressions and deep nesting are a 400 naming `param`.
 */
export function compileJsonSchema(schema: Record<string, unknown>, param: string): z.ZodType {
  checkSchemaSafety(schema, param);
  try {
    const validator = z.fromJSONSchema(schema as Parameters<typeof z.fromJSONSchema>[0]);
    // References are resolved lazily: one trial run shows a schema that only refers to itself (endless recursion).
    validator.safeParse({});
    return validator;
  } catch (error) {
    throw validationError(`schema is not a JSON Schema this server can validate: ${(error as Error).message}`, param);
  }
}

/** `json_object` answers: any JSON object. */
const ANY_OBJECT = z.record(z.string(), z.unknown());

/** The validator for a request's `responseFormat`; a 400 naming `param` for a schema it cannot use. */
export function compileResponseFormat(format: ResponseFormat, param: string): z.ZodType {
  return format.type === 'json_object' ? ANY_OBJECT : compileJsonSchema(format.schema, param);
}

/** The JSON text in a model's answer: the whole text, or the inside of a Markdown code fence. */
function extractJsonText(text: string): string {
  const trimmed = text.trim();
  const fenced = /^```(?:json)?\s*([\s\S]*?)\s*```$/i.exec(trimmed);
  return fenced ? fenced[1]! : trimmed;
}

/** A valid answer (its JSON text, fences removed, and the parsed value), or what was wrong with it. */
export type CheckedAnswer = { json: string; value: unknown } | { problem: string };

/** Checks a model's answer against a compiled schema, for the retry prompt and the 502. */
export function checkStructuredAnswer(text: string, validator: z.ZodType, param: string): CheckedAnswer {
  const json = extractJsonText(text);
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch (error) {
    return { problem: `the answer is not valid JSON (${(error as Error).message})` };
  }
  let result: ReturnType<z.ZodType['safeParse']>;
  try {
    result = validator.safeParse(parsed);
  } catch (error) {
    // A recursive schema that only some values send into endless recursion: the schema is at fault.
    throw validationError(`schema could not be evaluated: ${(error as Error).message}`, param);
  }
  if (result.success) return { json, value: result.data };
  const issues = result.error.issues
    .slice(0, MAX_ISSUES)
    .map((issue) => `${issue.path.length > 0 ? issue.path.join('.') : '(root)'}: ${issue.message}`);
  return { problem: `the answer does not match the schema: ${issues.join('; ')}` };
}

/** What the model is told after an invalid answer (a small model often fixes a missing field or a stray fence). */
export function correctionPrompt(problem: string, format: ResponseFormat): string {
  const target = format.type === 'json_object' ? 'JSON object' : `JSON value matching the schema ${JSON.stringify(format.schema)}`;
  return `That is not valid: ${problem}. Answer again with only the corrected ${target}.`;
}
