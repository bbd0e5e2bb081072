import type { MediaKind, PromptMessage, SamplingOptions, ToolCall, ToolChoice, ToolDefinition, FinishReason, Usage } from './messages.ts';
import type { StreamPart } from './stream-parts.ts';

/** What a model accepts besides text. */
export type Capabilities = Record<MediaKind | 'tools', boolean>;

/** A request as a provider receives it: media resolved, model chosen, options validated. */
export interface ProviderRequest extends SamplingOptions {
  messages: PromptMessage[];
  tools?: ToolDefinition[] | undefined;
  toolChoice?: ToolChoice | undefined;
  /**
   * When set, the last message is the assistant's and the model must continue it: the output is the
   * continuation only, without this prefix.
   */
  continuation?: boolean | undefined;
}

export interface GenerateResult {
  text: string;
  toolCalls: ToolCall[];
  finishReason: FinishReason;
  usage: Usage;
}

/**
 * One model backend. Adapters live in `providers/<name>/` and are built once at boot from config.
 * Both calls reject with `OcularError` (upstream_error, rate_limit_error, timeout_error) and honour `signal`.
 */
export interface LanguageModel {
  /** The provider name, e.g. `openai-compatible`. */
  readonly provider: string;
  /** The upstream's model name. */
  readonly upstreamModel: string;
  readonly capabilities: Capabilities;
  generate(request: ProviderRequest, signal: AbortSignal): Promise<GenerateResult>;
  /** Resolves once the upstream accepted the request (retries happen before this); errors later arrive as parts. */
  stream(request: ProviderRequest, signal: AbortSignal): Promise<ReadableStream<StreamPart>>;
  /**
   * Present on models that turn text into vectors (for semantic search): one vector per input, in order, each of
   * unit length so that a dot product is the cosine similarity. Rejects like `generate`.
   */
  readonly embed?: ((inputs: readonly string[], signal: AbortSignal) => Promise<Float32Array[]>) | undefined;
  /** Releases pooled connections or loaded weights. */
  close?(): Promise<void>;
}

/** Scales `vector` to unit length in place (a zero vector stays zero) and returns it. */
export function normalizeVector(vector: Float32Array): Float32Array {
  let sum = 0;
  for (const value of vector) sum += value * value;
  const norm = Math.sqrt(sum);
  if (norm > 0) for (let index = 0; index < vector.length; index++) vector[index]! /= norm;
  return vector;
}
