import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { errorEnvelope } from '../../src/server/errors.ts';
import { createLogger } from '../../src/server/logger.ts';
import { ERROR_STATUS, OcularError, type ErrorType } from '../../src/spec/errors.ts';
import type { LanguageModel } from '../../src/spec/provider.ts';
import type { ProviderDefinition } from '../../src/provider-utils/provider-definition.ts';
import { startOcular, type TestOcular } from '../helpers/ocular.ts';
import { startOpenAiUpstream } from '../helpers/openai-upstream.ts';

describe('error envelope', () => {
  it.each(Object.entries(ERROR_STATUS) as Array<[ErrorType, number]>)('%s maps to HTTP %i', (type, status) => {
    const error = new OcularError(type, 'm', { param: 'p' });
    expect(error.status).toBe(status);
    expect(errorEnvelope(error)).toEqual({ error: { type, message: 'm', param: 'p' } });
  });
});

describe('upstream timeouts', () => {
  let upstream: Awaited<ReturnType<typeof startOpenAiUpstream>>;
  let ocular: TestOcular;

  beforeAll(async () => {
    upstream = await startOpenAiUpstream();
    upstream.behave(() => {}); // never answers
    ocular = await startOcular({
      models: [{ id: 'slow', provider: 'openai-compatible', baseUrl: `${upstream.url}/v1`, model: 'm', timeoutMs: 200, maxRetries: 0 }],
    });
  });

  afterAll(async () => {
    await ocular.close();
    await upstream.close();
  });

  it('answers 504 timeout_error when the upstream does not respond in time', async () => {
    const response = await ocular.post('/v1/chat', { messages: [{ role: 'user', content: 'hi' }] });
    expect(response.status).toBe(504);
    expect((await response.json()).error.type).toBe('timeout_error');
  });
});

describe('unexpected failures', () => {
  // A provider with a bug: it throws a plain Error instead of an OcularError.
  const broken: ProviderDefinition<never> = {
    name: 'broken',
    settingsSchema: { safeParse: (value: unknown) => ({ success: true, data: value }) } as never,
    defaultCapabilities: { image: false, video: false, audio: false, pdf: false, tools: false },
    create: (): LanguageModel => ({
      provider: 'broken',
      upstreamModel: 'x',
      capabilities: { image: false, video: false, audio: false, pdf: false, tools: false },
      generate: () => Promise.reject(new Error('secret internal detail')),
      stream: () => Promise.reject(new Error('secret internal detail')),
    }),
  };

  it.each(['/v1/chat', '/openai/v1/chat/completions'])(
    'answers 500 server_error on %s without leaking internals, with a request id',
    async (path) => {
      const logged: string[] = [];
      const ocular = await startOcular(
        { models: [{ id: 'b', provider: 'broken', model: 'x' }] },
        {},
        { providers: new Map([['broken', broken]]) },
        createLogger('info', (line) => logged.push(line)),
      );
      try {
        const response = await ocular.post(path, { model: 'b', messages: [{ role: 'user', content: 'hi' }] });
        expect(response.status).toBe(500);
        const body = await response.json();
        expect(body.error.type).toBe('server_error');
        expect(body.error.message).not.toContain('secret');
        expect(response.headers.get('x-request-id')).toBeTruthy();
        expect(logged.join('')).toContain('secret internal detail');
        // The access line, written once the response is done.
        const requestId = response.headers.get('x-request-id');
        await expect
          .poll(() => logged.map((line) => JSON.parse(line)).find((entry) => entry.message === 'request' && entry.path === path))
          .toMatchObject({ requestId, method: 'POST', status: 500 });
      } finally {
        await ocular.close();
      }
    },
  );
});
