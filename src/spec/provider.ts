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
  /** Releases pooled connections or loaded weights. */
  close?(): Promise<void>;
}
