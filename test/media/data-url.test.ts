import { describe, expect, it } from 'vitest';
import { decodeDataUrl } from '../../src/media/data-url.ts';
import { OcularError } from '../../src/spec/errors.ts';

const options = { maxBytes: 1000, label: 'messages.0.content.0' };

function errorOf(run: () => unknown): OcularError {
  try {
    run();
  } catch (error) {
    if (error instanceof OcularError) return error;
    throw error;
  }
  throw new Error('expected an OcularError');
}

describe('decodeDataUrl', () => {
  it('decodes base64, standard and URL-safe, with whitespace', () => {
    expect(decodeDataUrl('data:image/png;base64,aGVsbG8=', options)).toEqual({
      type: 'bytes',
      declaredType: 'image/png',
      data: Buffer.from('hello'),
    });
    expect(decodeDataUrl('data:image/png;base64,-_8=', options)).toMatchObject({ data: Buffer.from([0xfb, 0xff]) });
    expect(decodeDataUrl('data:image/png;base64,aGVs\nbG8=', options)).toMatchObject({ data: Buffer.from('hello') });
  });

  it('decodes percent-encoded bytes, including non-UTF-8 ones', () => {
    expect(decodeDataUrl('data:image/svg+xml,%3Csvg%3E%FF', options)).toMatchObject({
      data: Buffer.from([0x3c, ...Buffer.from('svg'), 0x3e, 0xff]),
    });
  });

  it('splits the multi-frame video/jpeg form into frames', () => {
    expect(decodeDataUrl('data:video/jpeg;base64,aGk=,aG8=', options)).toEqual({
      type: 'frames',
      frames: [Buffer.from('hi'), Buffer.from('ho')],
    });
  });

  it.each([
    ['not base64', 'data:image/png;base64,@@@@'],
    ['base64 with a stray character', 'data:image/png;base64,aGVsbG8*'],
    ['an empty payload', 'data:image/png;base64,'],
    ['a malformed header', 'data:image/png;base64'],
    ['bad percent-encoding', 'data:image/svg+xml,%ZZ'],
    ['an empty frame', 'data:video/jpeg;base64,aGk=,,aGk='],
  ])('rejects %s with validation_error naming the part', (_name, url) => {
    const error = errorOf(() => decodeDataUrl(url, options));
    expect(error.type).toBe('validation_error');
    expect(error.param).toBe('messages.0.content.0');
  });

  it('rejects a payload over the size limit before decoding', () => {
    expect(errorOf(() => decodeDataUrl(`data:image/png;base64,${'A'.repeat(2000)}`, options)).type).toBe('payload_too_large');
  });
});
