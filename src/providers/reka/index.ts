import { z } from 'zod';
import type { Capabilities, GenerateResult, LanguageModel, ProviderRequest } from '../../spec/provider.ts';
import type { StreamPart } from '../../spec/stream-parts.ts';
import { HttpClient } from '../../provider-utils/http-client.ts';
import {
  baseModelSettingsSchema,
  resolveCapabilities,
  type ProviderDefinition,
  createToolCallId,
  upstreamConnectionOptions,
} from '../../provider-utils/provider-definition.ts';
import { convertRequest } from './convert-request.ts';
import { convertResponse } from './convert-response.ts';
import { createStreamConverter } from './convert-stream.ts';

export const settingsSchema = baseModelSettingsSchema.extend({
  provider: z.literal('reka'),
  /** Sent as `X-Api-Key`, as Reka's SDK does. */
  apiKey: z.string().min(1),
  /** API root including the version. @default "https://api.reka.ai/v1" */
  baseUrl: z.url({ protocol: /^https?$/ }).default('https://api.reka.ai/v1'),
});

export type RekaSettings = z.infer<typeof settingsSchema>;

/** Reka's hosted Chat API v1: `POST {baseUrl}/chat`, streaming as SSE when `stream` is true. */
class RekaModel implements LanguageModel {
  readonly provider = 'reka';
  readonly upstreamModel: string;
  readonly capabilities: Capabilities;
  readonly #client: HttpClient;

  constructor(settings: RekaSettings) {
    this.upstreamModel = settings.model;
    this.capabilities = resolveCapabilities(reka.defaultCapabilities, settings.capabilities);
    this.#client = new HttpClient({
      provider: this.provider,
      baseUrl: settings.baseUrl,
      headers: { 'x-api-key': settings.apiKey, ...settings.headers },
      ...upstreamConnectionOptions(settings),
    });
  }

  async generate(request: ProviderRequest, signal: AbortSignal): Promise<GenerateResult> {
    const body = convertRequest(request, { upstreamModel: this.upstreamModel, stream: false });
    return convertResponse(await this.#client.postJson('/chat', body, signal), createToolCallId);
  }

  async stream(request: ProviderRequest, signal: AbortSignal): Promise<ReadableStream<StreamPart>> {
    const body = convertRequest(request, { upstreamModel: this.upstreamModel, stream: true });
    const events = await this.#client.postEventStream('/chat', body, signal);
    return events.pipeThrough(createStreamConverter(createToolCallId));
  }

  close(): Promise<void> {
    return this.#client.close();
  }
}

export const reka: ProviderDefinition<RekaSettings> = {
  name: 'reka',
  settingsSchema,
  defaultCapabilities: { image: true, video: true, audio: true, pdf: true, tools: true },
  create: (settings) => new RekaModel(settings),
};
