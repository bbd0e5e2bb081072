import { ConfigError, describeZodError } from '../config/load-config.ts';
import type { ConfigFile } from '../config/schema.ts';
import { OcularError } from '../spec/errors.ts';
import type { LanguageModel } from '../spec/provider.ts';
import type { ProviderDefinition } from '../provider-utils/provider-definition.ts';

export interface ResolvedModel {
  /** The id or alias the client used. */
  name: string;
  model: LanguageModel;
}

/** The configured models, built once at boot. Lookups on the hot path are one Map access. */
export class ModelRegistry {
  readonly #byName = new Map<string, ResolvedModel>();
  readonly #models: LanguageModel[] = [];
  readonly #names: string[] = [];
  readonly defaultModel: string | undefined;

  constructor(config: Pick<ConfigFile, 'models' | 'aliases' | 'defaultModel'>, providers: ReadonlyMap<string, ProviderDefinition<never>>) {
    const byId = new Map<string, LanguageModel>();
    config.models.forEach((entry, index) => {
      const definition = providers.get(entry.provider);
      if (!definition) {
        throw new ConfigError(
          `invalid config: models[${index}].provider: unknown provider "${entry.provider}" (known: ${[...providers.keys()].join(', ')})`,
        );
      }
      const settings = definition.settingsSchema.safeParse(entry);
      if (!settings.success) throw new ConfigError(`invalid config: ${describeZodError(settings.error, ['models', index])}`);
      const model = definition.create(settings.data as never);
      byId.set(entry.id, model);
      this.#models.push(model);
      this.#add(entry.id, model);
    });
    for (const [alias, target] of Object.entries(config.aliases)) {
      const model = byId.get(target);
      if (model) this.#add(alias, model);
    }
    this.defaultModel = config.defaultModel ?? config.models[0]?.id;
  }

  #add(name: string, model: LanguageModel): void {
    this.#byName.set(name, { name, model });
    this.#names.push(name);
  }

  /** Every model id and alias, in config order. */
  get names(): readonly string[] {
    return this.#names;
  }

  resolve(name: string | undefined): ResolvedModel {
    const wanted = name ?? this.defaultModel;
    if (wanted === undefined) {
      throw new OcularError('not_found_error', 'no model is configured: add one to ocular.config.json (see the README, "Models")', {
        param: 'model',
      });
    }
    const found = this.#byName.get(wanted);
    if (!found) {
      throw new OcularError('not_found_error', `unknown model "${wanted}"; GET /v1/models lists the available ones`, { param: 'model' });
    }
    // A request naming no model reports the default under the name it was configured with.
    return found;
  }

  async close(): Promise<void> {
    await Promise.all(this.#models.map((model) => model.close?.()));
  }
}
