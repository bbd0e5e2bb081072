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

export const DEFAULT_BASE_URL = 'https://generativelanguage.googleapis.com/v1beta';

export const settingsSchema = baseModelSettingsSchema.extend({
  provider: z.literal('gemini'),
  /** A Gemini API key (Google AI Studio), sent as `x-goog-api-key`. */
  apiKey: z.string().min(1),
  /** The Gemini API root, up to and including the version. @default https://generativelanguage.googleapis.com/v1beta */
  baseUrl: z.url({ protocol: /^https?$/ }).optional(),
});

export type GeminiSettings = z.infer<typeof settingsSchema>;

/** `gemini-2.5-flash` and `models/gemini-2.5-flash` name the same model; the path wants the bare id. */
function modelPath(model: string, method: string): string {
  return `/models/${encodeURIComponent(model.replace(/^models\//, ''))}:${method}`;
}

class GeminiModel implements LanguageModel {
  readonly provider = 'gemini';
  readonly upstreamModel: string;
  readonly capabilities: Capabilities;
  readonly #client: HttpClient;
  readonly #generatePath: string;
  readonly #streamPath: string;

  constructor(settings: GeminiSettings) {
    this.upstreamModel = settings.model;
    this.capabilities = resolveCapabilities(gemini.defaultCapabilities, settings.capabilities);
    this.#generatePath = modelPath(settings.model, 'generateContent');
    this.#streamPath = `${modelPath(settings.model, 'streamGenerateContent')}?alt=sse`;
    this.#client = new HttpClient({
      provider: this.provider,
      baseUrl: settings.baseUrl ?? DEFAULT_BASE_URL,
      headers: { 'x-goog-api-key': settings.apiKey, ...settings.headers },
      ...upstreamConnectionOptions(settings),
    });
  }

  async generate(request: ProviderRequest, signal: AbortSignal): Promise<GenerateResult> {
    return convertResponse(await this.#client.postJson(this.#generatePath, convertRequest(request), signal), createToolCallId);
  }

  async stream(request: ProviderRequest, signal: AbortSignal): Promise<ReadableStream<StreamPart>> {
    const events = await this.#client.postEventStream(this.#streamPath, convertRequest(request), signal);
    return events.pipeThrough(createStreamConverter(createToolCallId));
  }

  close(): Promise<void> {
    return this.#client.close();
  }
}

export const gemini: ProviderDefinition<GeminiSettings> = {
  name: 'gemini',
  settingsSchema,
  defaultCapabilities: { image: true, video: true, audio: true, pdf: true, tools: true },
  create: (settings) => new GeminiModel(settings),
};
