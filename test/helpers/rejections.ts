import { expect } from 'vitest';
import { OcularError } from '../../src/spec/errors.ts';

/** What `promise` rejects with; the test fails if it fulfils instead. */
export async function rejectionOf(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => expect.fail('expected a rejection'),
    (reason: unknown) => reason,
  );
}

/** Asserts that `promise` rejects with an OcularError (of `type`, when given) and returns it. */
export async function expectOcularError(promise: Promise<unknown>, type?: OcularError['type']): Promise<OcularError> {
  const error = await rejectionOf(promise);
  expect(error).toBeInstanceOf(OcularError);
  if (type !== undefined) expect((error as OcularError).type).toBe(type);
  return error as OcularError;
}
