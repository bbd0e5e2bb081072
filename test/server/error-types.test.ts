import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChatService } from '../../src/chat/chat-service.ts';
import { MediaResolver } from '../../src/chat/media-resolver.ts';
import { createFfmpegContext } from '../../src/media/binaries.ts';
import { createMediaFetcher } from '../../src/media/fetch-media.ts';
import { ModelRegistry } from '../../src/chat/model-registry.ts';
import { parseConfig } from '../../src/config/load-config.ts';
import { errorEnvelope } from '../../src/server/errors.ts';
import { createApp } from '../../src/server/app.ts';
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

  it('answers 500 server_error without leaking internals, with a request id', async () => {
    const config = parseConfig({ models: [{ id: 'b', provider: 'broken' }] }, {});
    const logged: string[] = [];
    const app = createApp({
      chat: new ChatService(
        new ModelRegistry(config, new Map([['broken', broken]])),
        config.limits,
        new MediaResolver({ settings: config.media, fetcher: createMediaFetcher(config.media), ffmpeg: createFfmpegContext() }),
      ),
      verifier: undefined,
      limits: config.limits,
      logger: createLogger('error', (line) => logged.push(line)),
    });
    const response = await app.request('/v1/chat', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ messages: [{ role: 'user', content: 'hi' }] }),
    });
    expect(response.status).toBe(500);
    const body = await response.json();
    expect(body.error.type).toBe('server_error');
    expect(body.error.message).not.toContain('secret');
    expect(response.headers.get('x-request-id')).toBeTruthy();
    expect(logged.join('')).toContain('secret internal detail');
  });
});
