// Request validation messages in one voice: the field, what was expected, what came
// (`index: expected a string, got nothing (the field is missing)`), instead of zod's defaults
// (`Invalid input: expected string, received undefined`). A message a schema sets itself always wins.
import type { z } from 'zod';

type Issue = z.core.$ZodIssue;
type RawIssue = z.core.$ZodRawIssue;

/** Longest string value quoted back in a message; longer ones (base64, whole prompts) are only described. */
const MAX_QUOTED = 40;

const TYPE_WORDS: Readonly<Record<string, string>> = {
  string: 'a string',
  number: 'a number',
  int: 'an integer',
  boolean: 'true or false',
  object: 'an object',
  record: 'an object',
  array: 'an array',
  tuple: 'an array',
  null: 'null',
};

const typeWords = (expected: string): string => TYPE_WORDS[expected] ?? expected;

const plural = (count: number | bigint, word: string): string => `${count} ${word}${count === 1 || count === 1n ? '' : 's'}`;

/** What came, in words: a value when it is short enough to quote, otherwise its kind. */
export function describeValue(input: unknown): string {
  if (input === undefined) return 'nothing (the field is missing)';
  if (input === null) return 'null';
  if (typeof input === 'number') return Number.isNaN(input) ? 'not a number' : String(input);
  if (typeof input === 'boolean' || typeof input === 'bigint') return String(input);
  if (typeof input === 'string') {
    if (input === '') return 'an empty string';
    return input.length <= MAX_QUOTED ? JSON.stringify(input) : `a string of ${input.length} characters`;
  }
  if (Array.isArray(input)) return 'an array';
  return typeof input === 'object' ? 'an object' : typeof input;
}

/** "one of "a", "b"" or, for a single value, just it. */
function describeChoices(values: readonly unknown[]): string {
  const quoted = values.map((value) => (typeof value === 'string' ? JSON.stringify(value) : String(value)));
  return quoted.length === 1 ? quoted[0]! : `one of ${quoted.join(', ')}`;
}

function sizeOf(input: unknown): number | undefined {
  if (typeof input === 'string' || Array.isArray(input)) return input.length;
  return undefined;
}

function describeBound(issue: Extract<RawIssue, { code: 'too_small' | 'too_big' }>): string | undefined {
  const small = issue.code === 'too_small';
  const limit = small ? issue.minimum : issue.maximum;
  const exclusive = issue.inclusive === false;
  const size = sizeOf(issue.input);
  const unit = issue.origin === 'string' ? 'character' : issue.origin === 'array' ? 'item' : undefined;
  if (unit !== undefined && size !== undefined) {
    const amount = issue.exact ? 'exactly' : small ? 'at least' : 'at most';
    return `expected ${amount} ${plural(limit, unit)}, got ${size}`;
  }
  if (issue.origin === 'number' || issue.origin === 'int' || issue.origin === 'bigint') {
    const kind = issue.origin === 'int' ? 'an integer' : 'a number';
    const operator = small ? (exclusive ? '>' : '>=') : exclusive ? '<' : '<=';
    return `expected ${kind} ${operator} ${String(limit)}, got ${describeValue(issue.input)}`;
  }
  return undefined;
}

/**
 * A zod error map for request bodies (pass as `safeParse(body, { error })`): the message for one issue, without
 * the field, which the caller prefixes. Undefined leaves zod's own message.
 */
export function describeIssue(issue: RawIssue): string | undefined {
  switch (issue.code) {
    case 'invalid_type':
      return `expected ${typeWords(issue.expected)}, got ${describeValue(issue.input)}`;
    case 'too_small':
    case 'too_big':
      return describeBound(issue);
    case 'invalid_value':
      return `expected ${describeChoices(issue.values)}, got ${describeValue(issue.input)}`;
    case 'invalid_format':
      return issue.format === 'regex' && issue.pattern !== undefined
        ? `expected a string matching ${issue.pattern}, got ${describeValue(issue.input)}`
        : `expected a valid ${issue.format}, got ${describeValue(issue.input)}`;
    case 'not_multiple_of':
      return `expected a multiple of ${String(issue.divisor)}, got ${describeValue(issue.input)}`;
    case 'invalid_union': {
      // A discriminated union whose discriminator matched no option; zod adds the discriminator to the path.
      const { discriminator, options } = issue as { discriminator?: unknown; options?: unknown };
      if (typeof discriminator === 'string' && Array.isArray(options) && options.length > 0) {
        const input = issue.input as Record<string, unknown> | null | undefined;
        const value = input !== null && typeof input === 'object' ? input[discriminator] : undefined;
        return `expected ${describeChoices(options)}, got ${describeValue(value)}`;
      }
      return `matches none of the accepted forms, got ${describeValue(issue.input)}`;
    }
    default:
      return undefined;
  }
}

/** A branch the input's shape is not: a different type altogether, or a different literal `type`/`role`. */
function isShapeMismatch(issue: Issue): boolean {
  return (
    (issue.code === 'invalid_type' && issue.path.length === 0) ||
    (issue.code === 'invalid_value' && issue.values.length === 1 && issue.path.length === 1)
  );
}

export interface ExplainedIssue {
  /** The path of the field the message is about, from the root of the body. */
  path: PropertyKey[];
  message: string;
}

/**
 * The one thing to tell the client about a failed parse (its first issue). A union's issue is the failures of
 * every branch; this follows the branch the input was meant for (the one whose type and literal tag fit), or,
 * when none fits, lists what each accepts.
 */
export function explainIssue(issue: Issue, path: PropertyKey[] = issue.path): ExplainedIssue {
  if (issue.code === 'unrecognized_keys') {
    const [first, ...others] = issue.keys;
    const also = others.length === 0 ? '' : ` (so ${others.length === 1 ? 'is' : 'are'} ${others.map((key) => `"${key}"`).join(', ')})`;
    return { path: first === undefined ? path : [...path, first], message: `unknown field${also}` };
  }
  if (issue.code !== 'invalid_union' || issue.errors.length === 0) return { path, message: issue.message };
  const fitting = issue.errors.filter((branch) => branch.length > 0 && !branch.some(isShapeMismatch));
  if (fitting.length > 0) {
    const closest = fitting.reduce((best, branch) => (branch.length < best.length ? branch : best));
    const inner = closest[0]!;
    return explainIssue(inner, [...path, ...inner.path]);
  }
  const mismatches = issue.errors.map((branch) => branch.find(isShapeMismatch)).filter((found) => found !== undefined);
  if (mismatches.length === issue.errors.length) {
    if (mismatches.every((found) => found.code === 'invalid_type')) {
      const expected = [...new Set(mismatches.map((found) => typeWords(found.expected)))].join(' or ');
      return { path, message: `expected ${expected}, got ${describeValue(issue.input)}` };
    }
    const tag = mismatches[0]!.path[0];
    if (tag !== undefined && mismatches.every((found) => found.code === 'invalid_value' && found.path[0] === tag)) {
      const values = mismatches.flatMap((found) => (found.code === 'invalid_value' ? found.values : []));
      return { path: [...path, tag], message: `expected ${describeChoices(values)}, got ${describeValue(mismatches[0]!.input)}` };
    }
  }
  return { path, message: issue.message };
}
