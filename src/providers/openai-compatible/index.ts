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
import { convertEmbeddingsResponse, convertResponse } from './convert-response.ts';
import { createStreamConverter } from './convert-stream.ts';

export const settingsSchema = baseModelSettingsSchema.extend({
  provider: z.literal('openai-compatible'),
  /** e.g. `http://127.0.0.1:8000/v1` for vLLM, `http://127.0.0.1:11434/v1` for Ollama. */
  baseUrl: z.url({ protocol: /^https?$/ }),
  /**
   * The upstream continues a final assistant message natively (vLLM and SGLang `continue_final_message`).
   * When false, an instruction asks the model to continue. @default false
   */
  continueFinalMessage: z.boolean().optional(),
});

export type OpenAiCompatibleSettings = z.infer<typeof settingsSchema>;

class OpenAiCompatibleModel implements LanguageModel {
  readonly provider = 'openai-compatible';
  readonly upstreamModel: string;
  readonly capabilities: Capabilities;
  readonly #client: HttpClient;
  readonly #continueFinalMessage: boolean;

  constructor(settings: OpenAiCompatibleSettings) {
    this.upstreamModel = settings.model;
    this.capabilities = resolveCapabilities(openAiCompatible.defaultCapabilities, settings.capabilities);
    this.#continueFinalMessage = settings.continueFinalMessage ?? false;
    this.#client = new HttpClient({
      provider: this.provider,
      baseUrl: settings.baseUrl,
      headers: { ...(settings.apiKey ? { authorization: `Bearer ${settings.apiKey}` } : {}), ...settings.headers },
      ...upstreamConnectionOptions(settings),
    });
  }

  async generate(request: ProviderRequest, signal: AbortSignal): Promise<GenerateResult> {
    const body = convertRequest(request, {
      upstreamModel: this.upstreamModel,
      stream: false,
      continueFinalMessage: this.#continueFinalMessage,
    });
    return convertResponse(await this.#client.postJson('/chat/completions', body, signal), createToolCallId);
  }

  async stream(request: ProviderRequest, signal: AbortSignal): Promise<ReadableStream<StreamPart>> {
    const body = convertRequest(request, {
      upstreamModel: this.upstreamModel,
      stream: true,
      continueFinalMessage: this.#continueFinalMessage,
    });
    const events = await this.#client.postEventStream('/chat/completions', body, signal);
    return events.pipeThrough(createStreamConverter(createToolCallId));
  }

  /** A property, not a method: callers hand it on as a plain function (`Embed`). */
  readonly embed = (inputs: readonly string[], signal: AbortSignal): Promise<Float32Array[]> => this.#embed(inputs, signal);

  async #embed(inputs: readonly string[], signal: AbortSignal): Promise<Float32Array[]> {
    const vectors: Float32Array[] = [];
    // In batches: servers cap the inputs of one call (OpenAI: 2,048; TEI and vLLM: their batch size).
    for (let start = 0; start < inputs.length; start += EMBEDDING_BATCH) {
      const batch = inputs.slice(start, start + EMBEDDING_BATCH);
      const body = { model: this.upstreamModel, input: batch, encoding_format: 'float' };
      vectors.push(...convertEmbeddingsResponse(await this.#client.postJson('/embeddings', body, signal), batch.length));
    }
    return vectors;
  }

  close(): Promise<void> {
    return this.#client.close();
  }
}

/** Inputs sent in one `/embeddings` call. */
const EMBEDDING_BATCH = 64;

export const openAiCompatible: ProviderDefinition<OpenAiCompatibleSettings> = {
  name: 'openai-compatible',
  settingsSchema,
  defaultCapabilities: { image: true, video: false, audio: false, pdf: false, tools: true },
  create: (settings) => new OpenAiCompatibleModel(settings),
};
