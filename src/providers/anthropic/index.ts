import { z } from 'zod';
import type { Capabilities, GenerateResult, LanguageModel, ProviderRequest } from '../../spec/provider.ts';
import type { StreamPart } from '../../spec/stream-parts.ts';
import { HttpClient } from '../../provider-utils/http-client.ts';
import {
  baseModelSettingsSchema,
  resolveCapabilities,
  upstreamConnectionOptions,
  type ProviderDefinition,
} from '../../provider-utils/provider-definition.ts';
import { convertRequest } from './convert-request.ts';
import { convertResponse } from './convert-response.ts';
import { createStreamConverter } from './convert-stream.ts';

/** The Messages API version this adapter speaks; newer versions are opted into per feature with `anthropic-beta` headers. */
const ANTHROPIC_VERSION = '2023-06-01';

export const settingsSchema = baseModelSettingsSchema.extend({
  provider: z.literal('anthropic'),
  /** Sent as `x-api-key`. */
  apiKey: z.string().min(1),
  /** API root without `/v1`, e.g. a gateway in front of Anthropic. @default "https://api.anthropic.com" */
  baseUrl: z.url({ protocol: /^https?$/ }).default('https://api.anthropic.com'),
});

export type AnthropicSettings = z.infer<typeof settingsSchema>;

class AnthropicModel implements LanguageModel {
  readonly provider = 'anthropic';
  readonly upstreamModel: string;
  readonly capabilities: Capabilities;
  readonly #client: HttpClient;

  constructor(settings: AnthropicSettings) {
    this.upstreamModel = settings.model;
    this.capabilities = resolveCapabilities(anthropic.defaultCapabilities, settings.capabilities);
    this.#client = new HttpClient({
      provider: this.provider,
      baseUrl: settings.baseUrl,
      headers: { 'x-api-key': settings.apiKey, 'anthropic-version': ANTHROPIC_VERSION, ...settings.headers },
      ...upstreamConnectionOptions(settings),
    });
  }

  async generate(request: ProviderRequest, signal: AbortSignal): Promise<GenerateResult> {
    const body = convertRequest(request, { upstreamModel: this.upstreamModel, stream: false });
    return convertResponse(await this.#client.postJson('/v1/messages', body, signal));
  }

  async stream(request: ProviderRequest, signal: AbortSignal): Promise<ReadableStream<StreamPart>> {
    const body = convertRequest(request, { upstreamModel: this.upstreamModel, stream: true });
    const events = await this.#client.postEventStream('/v1/messages', body, signal);
    return events.pipeThrough(createStreamConverter());
  }

  close(): Promise<void> {
    return this.#client.close();
  }
}

export const anthropic: ProviderDefinition<AnthropicSettings> = {
  name: 'anthropic',
  settingsSchema,
  defaultCapabilities: { image: true, video: false, audio: false, pdf: true, tools: true },
  create: (settings) => new AnthropicModel(settings),
};
