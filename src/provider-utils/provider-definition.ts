import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import type { SamplingOptions } from '../spec/messages.ts';
import type { HttpClientOptions } from './http-client.ts';
import type { Capabilities, LanguageModel } from '../spec/provider.ts';

export const capabilitiesSchema = z.strictObject({
  image: z.boolean().optional(),
  video: z.boolean().optional(),
  audio: z.boolean().optional(),
  pdf: z.boolean().optional(),
  tools: z.boolean().optional(),
});

/** Fields every provider's model entry accepts; providers extend this with their own. */
export const baseModelSettingsSchema = z.strictObject({
  id: z.string(),
  provider: z.string(),
  /** The upstream's model name. */
  model: z.string().min(1),
  apiKey: z.string().min(1).optional(),
  baseUrl: z.url({ protocol: /^https?$/ }).optional(),
  capabilities: capabilitiesSchema.optional(),
  /** Extra headers sent upstream on every call. */
  headers: z.record(z.string(), z.string()).optional(),
  /** Milliseconds to wait for the upstream's headers and between its body chunks. @default 600000 */
  timeoutMs: z.int().min(100).max(3_600_000).optional(),
  /** Retries on 408/429/5xx before the first streamed byte. @default 2 */
  maxRetries: z.int().min(0).max(10).optional(),
  /**
   * Connections kept open to the upstream at most; requests beyond them wait for a free one. Each streamed answer
   * holds one for its whole length, so this bounds the concurrent streams to the upstream. @default 1024
   */
  maxConnections: z.int().min(1).max(65_536).optional(),
});

export type BaseModelSettings = z.infer<typeof baseModelSettingsSchema>;

/** The connection settings of a model entry, as every HTTP provider hands them to its `HttpClient`. */
export function upstreamConnectionOptions(settings: BaseModelSettings): Pick<HttpClientOptions, 'timeoutMs' | 'maxRetries' | 'maxConnections'> {
  return { timeoutMs: settings.timeoutMs, maxRetries: settings.maxRetries, maxConnections: settings.maxConnections };
}

/** What each `providers/<name>/index.ts` exports. */
export interface ProviderDefinition<Settings extends BaseModelSettings = BaseModelSettings> {
  /** The value of `provider` in config. */
  readonly name: string;
  /** Strict schema of a model entry for this provider. */
  readonly settingsSchema: z.ZodType<Settings>;
  /** What the provider's models accept unless the entry's `capabilities` says otherwise. */
  readonly defaultCapabilities: Capabilities;
  /** Builds the model once at boot; the hot path only calls `generate`/`stream`. */
  create(settings: Settings): LanguageModel;
}

export function resolveCapabilities(defaults: Capabilities, overrides: z.infer<typeof capabilitiesSchema> | undefined): Capabilities {
  return Object.freeze({ ...defaults, ...Object.fromEntries(Object.entries(overrides ?? {}).filter(([, value]) => value !== undefined)) });
}

/** `data:` URL of base64 content, as OpenAI-style upstreams take images. */
export function toDataUrl(mediaType: string, base64: string): string {
  return `data:${mediaType};base64,${base64}`;
}

/** Parses tool-call arguments; a model that emits invalid JSON keeps its raw text so nothing is lost. */
export function parseToolArguments(text: string): unknown {
  if (text.trim() === '') return {};
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** Ids for tool calls an upstream returned without one (Gemini never sends ids). */
export function createToolCallId(): string {
  return `call_${randomUUID().replaceAll('-', '')}`;
}

/** Drops undefined fields, so optional options are only sent upstream when the client set them. */
export function pickDefined<Fields extends Record<string, unknown>>(fields: Fields): Partial<Fields> {
  return Object.fromEntries(Object.entries(fields).filter(([, value]) => value !== undefined)) as Partial<Fields>;
}

/** Sampling options under the snake_case names OpenAI-style and Reka APIs share. */
export function toSnakeCaseSampling(request: SamplingOptions): Record<string, unknown> {
  return pickDefined({
    temperature: request.temperature,
    top_p: request.topP,
    top_k: request.topK,
    seed: request.seed,
    stop: request.stop !== undefined && request.stop.length > 0 ? request.stop : undefined,
    frequency_penalty: request.frequencyPenalty,
    presence_penalty: request.presencePenalty,
  });
}
