import { OcularError } from '../spec/errors.ts';
import type { Capabilities, GenerateResult, LanguageModel, ProviderRequest } from '../spec/provider.ts';
import type { StreamPart } from '../spec/stream-parts.ts';
import type { ModelAvailability } from './background-pull.ts';

const ANY_INPUT: Capabilities = Object.freeze({ image: true, video: true, audio: true, pdf: true, tools: true });

export interface PendingModelOptions {
  /** The model's id in config, for messages. */
  id: string;
  provider: string;
  upstreamModel: string;
  /**
   * What to report before the real model exists. @default everything: a request then reaches `generate` and gets
   * the 503, rather than a 400 from a guess at what the model will accept (the built model's own apply after).
   */
  capabilities?: Capabilities | undefined;
  /** Asked on every request until it says ready. */
  availability: () => ModelAvailability;
  /** Builds the real model once its files are in place. */
  create: () => LanguageModel | Promise<LanguageModel>;
}

/**
 * A model whose weights are not in place yet. Until `availability()` says ready, every call fails with
 * `unavailable_error` (HTTP 503 with Retry-After) saying what is happening; then the real model is built once
 * and every call is delegated to it.
 */
export class PendingModel implements LanguageModel {
  readonly provider: string;
  readonly #options: PendingModelOptions;
  #model: LanguageModel | undefined;
  #building: Promise<LanguageModel> | undefined;

  constructor(options: PendingModelOptions) {
    this.#options = options;
    this.provider = options.provider;
  }

  get upstreamModel(): string {
    return this.#model?.upstreamModel ?? this.#options.upstreamModel;
  }

  get capabilities(): Capabilities {
    return this.#model?.capabilities ?? this.#options.capabilities ?? ANY_INPUT;
  }

  /** Whether the real model has been built. */
  get built(): boolean {
    return this.#model !== undefined;
  }

  /**
   * The real model, built on first use once the files are in place. A failed build is not cached: the next
   * request tries again (the files may have been replaced meanwhile).
   */
  async resolve(): Promise<LanguageModel> {
    if (this.#model) return this.#model;
    const availability = this.#options.availability();
    if (!availability.ready) {
      throw new OcularError('unavailable_error', `model "${this.#options.id}" is not ready: ${availability.message}`, {
        retryable: true,
        retryAfterSeconds: availability.retryAfterSeconds,
      });
    }
    if (!this.#building) {
      const building = (async () => {
        try {
          this.#model = await this.#options.create();
          return this.#model;
        } catch (error) {
          if (error instanceof OcularError) throw error;
          throw new OcularError('server_error', `model "${this.#options.id}" could not be loaded: ${(error as Error).message}`, {
            cause: error,
          });
        }
      })();
      this.#building = building;
      const settle = () => {
        if (this.#building === building) this.#building = undefined;
      };
      building.then(settle, settle);
    }
    return this.#building;
  }

  async generate(request: ProviderRequest, signal: AbortSignal): Promise<GenerateResult> {
    return (await this.resolve()).generate(request, signal);
  }

  async stream(request: ProviderRequest, signal: AbortSignal): Promise<ReadableStream<StreamPart>> {
    return (await this.resolve()).stream(request, signal);
  }

  async close(): Promise<void> {
    const model = this.#model ?? (await this.#building?.catch(() => undefined));
    await model?.close?.();
  }
}
