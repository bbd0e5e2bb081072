import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { configFileSchema, type ConfigFile } from './schema.ts';

export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** Formats a zod path the way users write config fields: `models[1].baseUrl`. */
export function formatPath(path: ReadonlyArray<PropertyKey>): string {
  let out = '';
  for (const segment of path) {
    out += typeof segment === 'number' ? `[${segment}]` : out === '' ? String(segment) : `.${String(segment)}`;
  }
  return out || '(root)';
}

export function describeZodError(error: z.ZodError, prefix: ReadonlyArray<PropertyKey> = []): string {
  return error.issues.map((issue) => `${formatPath([...prefix, ...issue.path])}: ${issue.message}`).join('; ');
}

const VARIABLE = /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g;

/** Replaces `${VAR}` (and `${VAR:-default}`) in every string value; an unset variable without default fails. */
export function substituteEnvironment(
  value: unknown,
  env: Readonly<Record<string, string | undefined>>,
  path: PropertyKey[] = [],
): unknown {
  if (typeof value === 'string') {
    return value.replace(VARIABLE, (_match, name: string, fallback: string | undefined) => {
      const found = env[name];
      if (found !== undefined && found !== '') return found;
      if (fallback !== undefined) return fallback;
      throw new ConfigError(
        `${formatPath(path)}: environment variable ${name} is not set (the config refers to \${${name}}); export it or write \${${name}:-default}`,
      );
    });
  }
  if (Array.isArray(value)) return value.map((item, index) => substituteEnvironment(item, env, [...path, index]));
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, substituteEnvironment(item, env, [...path, key])]));
  }
  return value;
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const item of Object.values(value)) deepFreeze(item);
  }
  return value;
}

/** Parses and validates a config document; the result is frozen. */
export function parseConfig(raw: unknown, env: Readonly<Record<string, string | undefined>>): Readonly<ConfigFile> {
  const substituted = substituteEnvironment(raw, env);
  const parsed = configFileSchema.safeParse(substituted);
  if (!parsed.success) throw new ConfigError(`invalid config: ${describeZodError(parsed.error)}`);
  const config = parsed.data;
  const ids = new Set<string>();
  config.models.forEach((model, index) => {
    if (ids.has(model.id)) throw new ConfigError(`invalid config: models[${index}].id: duplicate model id "${model.id}"`);
    ids.add(model.id);
  });
  for (const [alias, target] of Object.entries(config.aliases)) {
    if (ids.has(alias)) throw new ConfigError(`invalid config: aliases.${alias}: alias shadows a model id`);
    if (!ids.has(target)) throw new ConfigError(`invalid config: aliases.${alias}: unknown model id "${target}"`);
  }
  if (config.defaultModel !== undefined && !ids.has(config.defaultModel) && !(config.defaultModel in config.aliases)) {
    throw new ConfigError(`invalid config: defaultModel: unknown model id "${config.defaultModel}"`);
  }
  return deepFreeze(config);
}

/**
 * Whether a config document names its own `models` (even an empty list). Only such a config replaces the default
 * model: a file that only sets `media` or `limits` must not leave the server with no model at all.
 */
export function declaresModels(raw: unknown): boolean {
  return raw !== null && typeof raw === 'object' && Object.hasOwn(raw, 'models');
}

/** Reads a JSON config file as written, before validation. A missing file is an error here: callers decide whether a file is optional. */
export function readConfigFile(path: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new ConfigError(`cannot read config file ${path}: ${(error as Error).message}`);
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    throw new ConfigError(`config file ${path} is not valid JSON: ${(error as Error).message}`);
  }
}

/** Validates a document read from the config file at `path`; errors name the file. */
export function parseConfigFile(path: string, raw: unknown, env: Readonly<Record<string, string | undefined>>): Readonly<ConfigFile> {
  try {
    return parseConfig(raw, env);
  } catch (error) {
    if (error instanceof ConfigError) throw new ConfigError(`${path}: ${error.message}`);
    throw error;
  }
}

/** Reads and validates a JSON config file. */
export function loadConfigFile(path: string, env: Readonly<Record<string, string | undefined>>): Readonly<ConfigFile> {
  return parseConfigFile(path, readConfigFile(path), env);
}
