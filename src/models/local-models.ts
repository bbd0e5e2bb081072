import { ConfigError } from '../config/load-config.ts';
import type { ConfigFile, ModelEntry } from '../config/schema.ts';
import type { LocalModelSettings } from '../config/settings.ts';
import { DEFAULT_CATALOG_MODEL } from './catalog.ts';
import { localModelPaths, ModelReferenceError, resolveModelReference, type ModelSource } from './model-source.ts';
import { missingFiles } from './pull-model.ts';

/** The id of the model `--model-path`, or the no-config default, adds. */
export const LOCAL_MODEL_ID = 'local';

export interface PlanLocalModelsOptions {
  /** The `provider` of the embedded engine's entries; no other entry is touched. */
  provider: string;
  /** `<data>/models` */
  modelsDir: string;
  settings: LocalModelSettings | undefined;
}

export interface LocalModelPlan {
  /** The config to build models from: the local model added, catalog names turned into paths, preload set. */
  config: Pick<ConfigFile, 'models' | 'aliases' | 'defaultModel'>;
  /** Sources with files still missing, each with the ids of the entries that wait for it. */
  pending: Array<{ source: ModelSource; ids: string[] }>;
}

function addedModel(config: Pick<ConfigFile, 'models' | 'aliases'>, options: PlanLocalModelsOptions): ModelEntry | undefined {
  const { settings, provider } = options;
  if (settings?.modelPath !== undefined) {
    if (config.models.some((entry) => entry.id === LOCAL_MODEL_ID) || LOCAL_MODEL_ID in config.aliases) {
      throw new ConfigError(`--model-path adds a model with id "${LOCAL_MODEL_ID}", but the config already has one by that name`);
    }
    return {
      id: LOCAL_MODEL_ID,
      provider,
      modelPath: settings.modelPath,
      ...(settings.mmprojPath === undefined ? {} : { mmprojPath: settings.mmprojPath }),
    };
  }
  if (settings?.useDefaultModel && config.models.length === 0) {
    return { id: LOCAL_MODEL_ID, provider, model: DEFAULT_CATALOG_MODEL };
  }
  return undefined;
}

/**
 * Prepares the embedded engine's entries before the model registry is built: adds the `--model-path` model (as
 * the default) or, without a config file, the catalog's default model; gives entries that name a catalog model
 * (or `owner/repo:file`) and no `modelPath` the paths under `<data>/models`; sets `preload` when asked to; and
 * lists the files still to be pulled.
 */
export function planLocalModels(
  config: Pick<ConfigFile, 'models' | 'aliases' | 'defaultModel'>,
  options: PlanLocalModelsOptions,
): LocalModelPlan {
  const added = addedModel(config, options);
  const entries = added ? [...config.models, added] : [...config.models];
  const pending = new Map<string, { source: ModelSource; ids: string[] }>();
  const models = entries.map((entry, index): ModelEntry => {
    if (entry.provider !== options.provider) return entry;
    const resolved: ModelEntry = { ...entry, ...(options.settings?.preload ? { preload: true } : {}) };
    if (entry.modelPath !== undefined || typeof entry.model !== 'string') return resolved;
    let source: ModelSource;
    try {
      source = resolveModelReference(entry.model);
    } catch (error) {
      if (error instanceof ModelReferenceError) {
        throw new ConfigError(`invalid config: models[${index}].model: ${error.message}, or set modelPath to a local GGUF`);
      }
      throw error;
    }
    const paths = localModelPaths(options.modelsDir, source);
    resolved.modelPath = paths.modelPath;
    if (entry.mmprojPath === undefined && paths.mmprojPath !== undefined) resolved.mmprojPath = paths.mmprojPath;
    if (missingFiles(options.modelsDir, source).length > 0) {
      const waiting = pending.get(source.name) ?? { source, ids: [] };
      waiting.ids.push(entry.id);
      pending.set(source.name, waiting);
    }
    return resolved;
  });
  return {
    config: {
      models,
      aliases: config.aliases,
      defaultModel: options.settings?.modelPath !== undefined ? LOCAL_MODEL_ID : config.defaultModel,
    },
    pending: [...pending.values()],
  };
}
