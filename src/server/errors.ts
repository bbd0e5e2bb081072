import { z } from 'zod';
import { OcularError, validationError } from '../spec/errors.ts';
import { describeIssue, explainIssue } from './describe-validation-issue.ts';

export interface ErrorEnvelope {
  error: { type: string; message: string; param?: string };
}

/** The one wire shape of every error Ocular returns. */
export function errorEnvelope(error: OcularError): ErrorEnvelope {
  return { error: { type: error.type, message: error.message, ...(error.param === undefined ? {} : { param: error.param }) } };
}

/** Dotted path as clients name request fields: `messages.0.content`. */
function toParam(path: ReadonlyArray<PropertyKey>): string | undefined {
  return path.length === 0 ? undefined : path.map(String).join('.');
}

/** Turns a schema failure into a 400 naming the first offending field: `field: expected X, got Y`. */
export function fromZodError(error: z.ZodError): OcularError {
  const issue = error.issues[0];
  if (!issue) return validationError('invalid request body');
  const { path, message } = explainIssue(issue);
  const param = toParam(path);
  return validationError(param === undefined ? message : `${param}: ${message}`, param);
}

/**
 * Parses a request body with a schema; failures are 400 validation_error. Every request schema is parsed here,
 * so this is where messages get their one voice (describe-validation-issue.ts); `reportInput` keeps the values
 * a union's branches saw, to say what came.
 */
export function parseBody<Schema extends z.ZodType>(schema: Schema, body: unknown): z.infer<Schema> {
  const parsed = schema.safeParse(body, { error: describeIssue, reportInput: true });
  if (!parsed.success) throw fromZodError(parsed.error);
  return parsed.data;
}
