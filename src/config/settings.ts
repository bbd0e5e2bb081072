import { existsSync } from 'node:fs';
import { isIP } from 'node:net';
import { resolve } from 'node:path';
import { z } from 'zod';
import { ConfigError, describeZodError, loadConfigFile, parseConfig } from './load-config.ts';
import type { ConfigFile } from './schema.ts';

/** The process environment, read here and nowhere else. */
export function readEnvironment(): Readonly<Record<string, string | undefined>> {
  return { ...process.env };
}

/** Command-line flags of `ocular serve`; each has an environment equivalent. */
export interface ServeFlags {
  host?: string | undefined;
  port?: string | undefined;
  data?: string | undefined;
  config?: string | undefined;
  /** `--no-auth`: commander sets `auth: false`. */
  auth?: boolean | undefined;
  logLevel?: string | undefined;
}

export interface ServerSettings {
  /** @default 127.0.0.1 (env OCULAR_HOST) */
  host: string;
  /** @default 8080 (env OCULAR_PORT) */
  port: number;
  /** @default ./data (env OCULAR_DATA_DIR) */
  dataDir: string;
  /** Path of the config file, when one was found. (env OCULAR_CONFIG) */
  configPath: string | undefined;
  /** Keys accepted besides the stored ones (env OCULAR_API_KEYS, comma-separated). */
  envApiKeys: string[];
  auth: boolean;
  /** ffmpeg/ffprobe to use (env OCULAR_FFMPEG, OCULAR_FFPROBE); otherwise one on PATH, otherwise the npm-shipped ones. */
  binaries: { ffmpeg?: string | undefined; ffprobe?: string | undefined; searchPath: string };
  /** @default info (env OCULAR_LOG_LEVEL) */
  logLevel: (typeof LOG_LEVELS)[number];
  config: Readonly<ConfigFile>;
}

export const DEFAULT_CONFIG_PATH = './ocular.config.json';

export const LOG_LEVELS = ['debug', 'info', 'warn', 'error', 'silent'] as const;
const logLevelSchema = z.enum(LOG_LEVELS);

/** The data directory from `--data`, else OCULAR_DATA_DIR, else ./data; absolute. */
export function resolveDataDir(flag: string | undefined, env: Readonly<Record<string, string | undefined>>): string {
  return resolve(flag || env.OCULAR_DATA_DIR || './data');
}

const portSchema = z.coerce.number().int().min(0).max(65535);

export function isLoopbackHost(host: string): boolean {
  if (host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  const bare = host.replace(/^\[|\]$/g, '');
  return bare === '::1' || bare.startsWith('::ffff:127.');
}

/** Resolves flags, then environment, then defaults; validates everything and fails with a message naming the setting. */
export function resolveServerSettings(flags: ServeFlags, env: Readonly<Record<string, string | undefined>>): ServerSettings {
  // An empty variable means "unset", as in `${VAR}` substitution: `OCULAR_HOST=` must not bind every interface.
  const fromEnv = (name: string): string | undefined => (env[name] === '' ? undefined : env[name]);
  if (flags.host === '') throw new ConfigError('--host: an address is required (e.g. 127.0.0.1)');
  const host = flags.host ?? fromEnv('OCULAR_HOST') ?? '127.0.0.1';
  const portText = flags.port ?? fromEnv('OCULAR_PORT') ?? '8080';
  const port = portSchema.safeParse(portText);
  if (!port.success) throw new ConfigError(`--port / OCULAR_PORT: "${portText}" is not a port number (${describeZodError(port.error)})`);
  const dataDir = resolveDataDir(flags.data, env);
  const explicitConfig = flags.config ?? fromEnv('OCULAR_CONFIG');
  const configPath = explicitConfig ?? (existsSync(DEFAULT_CONFIG_PATH) ? DEFAULT_CONFIG_PATH : undefined);
  const config = configPath === undefined ? parseConfig({}, env) : loadConfigFile(configPath, env);
  const envApiKeys = (env.OCULAR_API_KEYS ?? '')
    .split(',')
    .map((key) => key.trim())
    .filter((key) => key !== '');
  const auth = flags.auth ?? !['1', 'true'].includes((env.OCULAR_NO_AUTH ?? '').toLowerCase());
  const logLevel = logLevelSchema.safeParse(flags.logLevel ?? fromEnv('OCULAR_LOG_LEVEL') ?? 'info');
  if (!logLevel.success) throw new ConfigError(`--log-level / OCULAR_LOG_LEVEL: use one of ${LOG_LEVELS.join(', ')}`);
  if (!auth && !isLoopbackHost(host)) {
    throw new ConfigError(`--no-auth is refused when binding to ${host}: it is only allowed on loopback (127.0.0.1, ::1)`);
  }
  return {
    host,
    port: port.data,
    logLevel: logLevel.data,
    binaries: { ffmpeg: fromEnv('OCULAR_FFMPEG'), ffprobe: fromEnv('OCULAR_FFPROBE'), searchPath: env.PATH ?? '' },
    dataDir,
    configPath: configPath === undefined ? undefined : resolve(configPath),
    envApiKeys,
    auth,
    config,
  };
}
