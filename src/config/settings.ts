import { existsSync, readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { join, resolve } from 'node:path';
import { z } from 'zod';
import { ConfigError, declaresModels, describeZodError, parseConfig, parseConfigFile, readConfigFile } from './load-config.ts';
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
  /** `--model-path`: a local GGUF served as the default model. */
  modelPath?: string | undefined;
  /** `--mmproj-path`: the multimodal projector that goes with `--model-path`. */
  mmprojPath?: string | undefined;
  /** `--preload`: load embedded models at boot. */
  preload?: boolean | undefined;
  /** `--role`: api, worker or all. */
  role?: string | undefined;
  /** `--no-migrate`: commander sets `migrate: false`. */
  migrate?: boolean | undefined;
}

/** Where model weights are pulled from: the Hugging Face hub or a mirror of it. */
export interface HubSettings {
  /** Base URL; files are fetched from `{endpoint}/{repo}/resolve/main/{file}`. @default https://huggingface.co (env HF_ENDPOINT) */
  endpoint: string;
  /** Sent as `Authorization: Bearer` to the hub, for gated or private repositories. (env HF_TOKEN) */
  token: string | undefined;
}

/** The embedded model engine's settings: which local model to serve and where to pull weights from. */
export interface LocalModelSettings {
  /** A local GGUF served as the default model `local`, with no download. (--model-path, env OCULAR_MODEL_PATH) */
  modelPath: string | undefined;
  /** Its multimodal projector GGUF. (--mmproj-path, env OCULAR_MMPROJ_PATH) */
  mmprojPath: string | undefined;
  /** Load embedded models at boot instead of on the first request. @default false (--preload, env OCULAR_PRELOAD) */
  preload: boolean;
  /** No config file names `models`: serve the catalog's default model as `local`, pulling it when missing. */
  useDefaultModel: boolean;
  hub: HubSettings;
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
  /** The embedded engine's model settings; absent, only the config's models are served. */
  localModels?: LocalModelSettings | undefined;
  /**
   * What this process does (env OCULAR_ROLE): `api` serves HTTP and enqueues jobs, `worker` runs the jobs (and
   * answers only /healthz, /readyz and /metrics), `all` both. Processes of both roles may share one data directory.
   * @default all
   */
  role?: ServerRole | undefined;
  /** Apply pending schema migrations at start (env OCULAR_NO_MIGRATE=1 turns it off). @default true */
  migrate?: boolean | undefined;
}

export const SERVER_ROLES = ['api', 'worker', 'all'] as const;
export type ServerRole = (typeof SERVER_ROLES)[number];

export const DEFAULT_CONFIG_PATH = './ocular.config.json';

export const LOG_LEVELS = ['debug', 'info', 'warn', 'error', 'silent'] as const;
const logLevelSchema = z.enum(LOG_LEVELS);

/** The data directory from `--data`, else OCULAR_DATA_DIR, else ./data; absolute. */
export function resolveDataDir(flag: string | undefined, env: Readonly<Record<string, string | undefined>>): string {
  return resolve(flag || env.OCULAR_DATA_DIR || './data');
}

/** Ocular's version, as the CLI, the API reference and the MCP server report it. */
export const OCULAR_VERSION = '0.1.0';

/** The first key a server creates, written into its data directory (`ocular serve` prints it too). */
export const BOOTSTRAP_KEY_FILE = 'bootstrap-key';

export interface ClientFlags {
  url?: string | undefined;
  apiKey?: string | undefined;
  data?: string | undefined;
}

/** Where a client command (`ocular mcp`) finds the server, and the key it sends. */
export interface ClientSettings {
  /** `http(s)://host:port`, no trailing slash. */
  baseUrl: string;
  apiKey: string | undefined;
}

/**
 * `--url`, else OCULAR_BASE_URL, else the local server's default address (OCULAR_PORT or 8080 on 127.0.0.1);
 * `--api-key`, else OCULAR_API_KEY, else the bootstrap key a local server left in its data directory.
 */
export function resolveClientSettings(flags: ClientFlags, env: Readonly<Record<string, string | undefined>>): ClientSettings {
  const url = flags.url || env.OCULAR_BASE_URL || `http://127.0.0.1:${env.OCULAR_PORT || '8080'}`;
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new ConfigError(`--url / OCULAR_BASE_URL: "${url}" is not a URL (e.g. http://127.0.0.1:8080)`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new ConfigError(`--url / OCULAR_BASE_URL: use an http or https URL, not "${url}"`);
  }
  let apiKey = flags.apiKey || env.OCULAR_API_KEY || undefined;
  if (apiKey === undefined) {
    const bootstrap = join(resolveDataDir(flags.data, env), BOOTSTRAP_KEY_FILE);
    if (existsSync(bootstrap)) apiKey = readFileSync(bootstrap, 'utf8').trim() || undefined;
  }
  return { baseUrl: parsed.origin + parsed.pathname.replace(/\/+$/, ''), apiKey };
}

export const DEFAULT_HUB_ENDPOINT = 'https://huggingface.co';

const isTrue = (value: string | undefined): boolean => ['1', 'true'].includes((value ?? '').toLowerCase());

/** HF_ENDPOINT and HF_TOKEN, the variables the Hugging Face tools use; an empty one means unset. */
export function resolveHubSettings(env: Readonly<Record<string, string | undefined>>): HubSettings {
  const endpoint = env.HF_ENDPOINT || DEFAULT_HUB_ENDPOINT;
  let url: URL;
  try {
    url = new URL(endpoint);
  } catch {
    throw new ConfigError(`HF_ENDPOINT: "${endpoint}" is not a URL (e.g. https://huggingface.co)`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new ConfigError(`HF_ENDPOINT: use an http(s) URL, not ${url.protocol}`);
  // HUGGING_FACE_HUB_TOKEN is the older name huggingface_hub still reads.
  return { endpoint: endpoint.replace(/\/+$/, ''), token: env.HF_TOKEN || env.HUGGING_FACE_HUB_TOKEN || undefined };
}

function resolveLocalFile(path: string, setting: string): string {
  const absolute = resolve(path);
  if (!existsSync(absolute)) throw new ConfigError(`${setting}: no file at ${absolute}`);
  return absolute;
}

/**
 * The embedded engine's settings from flags, then environment; the GGUF paths must exist. `configNamesModels`:
 * the config file has a `models` list of its own, which replaces the default model.
 */
export function resolveLocalModelSettings(
  flags: Pick<ServeFlags, 'modelPath' | 'mmprojPath' | 'preload'>,
  env: Readonly<Record<string, string | undefined>>,
  configNamesModels: boolean,
): LocalModelSettings {
  const modelPath = flags.modelPath || env.OCULAR_MODEL_PATH || undefined;
  const mmprojPath = flags.mmprojPath || env.OCULAR_MMPROJ_PATH || undefined;
  if (mmprojPath !== undefined && modelPath === undefined) {
    throw new ConfigError('--mmproj-path / OCULAR_MMPROJ_PATH: it goes with a model; pass --model-path (or OCULAR_MODEL_PATH) too');
  }
  return {
    modelPath: modelPath === undefined ? undefined : resolveLocalFile(modelPath, '--model-path / OCULAR_MODEL_PATH'),
    mmprojPath: mmprojPath === undefined ? undefined : resolveLocalFile(mmprojPath, '--mmproj-path / OCULAR_MMPROJ_PATH'),
    preload: flags.preload ?? isTrue(env.OCULAR_PRELOAD),
    useDefaultModel: !configNamesModels,
    hub: resolveHubSettings(env),
  };
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
  const document = configPath === undefined ? {} : readConfigFile(configPath);
  const config = configPath === undefined ? parseConfig(document, env) : parseConfigFile(configPath, document, env);
  const envApiKeys = (env.OCULAR_API_KEYS ?? '')
    .split(',')
    .map((key) => key.trim())
    .filter((key) => key !== '');
  const auth = flags.auth ?? !isTrue(env.OCULAR_NO_AUTH);
  const logLevel = logLevelSchema.safeParse(flags.logLevel ?? fromEnv('OCULAR_LOG_LEVEL') ?? 'info');
  if (!logLevel.success) throw new ConfigError(`--log-level / OCULAR_LOG_LEVEL: use one of ${LOG_LEVELS.join(', ')}`);
  if (!auth && !isLoopbackHost(host)) {
    throw new ConfigError(`--no-auth is refused when binding to ${host}: it is only allowed on loopback (127.0.0.1, ::1)`);
  }
  const localModels = resolveLocalModelSettings(flags, env, declaresModels(document));
  const role = flags.role ?? fromEnv('OCULAR_ROLE') ?? 'all';
  if (!(SERVER_ROLES as readonly string[]).includes(role))
    throw new ConfigError(`--role / OCULAR_ROLE: use one of ${SERVER_ROLES.join(', ')}, not "${role}"`);
  return {
    role: role as ServerRole,
    migrate: flags.migrate ?? !isTrue(env.OCULAR_NO_MIGRATE),
    host,
    port: port.data,
    logLevel: logLevel.data,
    binaries: { ffmpeg: fromEnv('OCULAR_FFMPEG'), ffprobe: fromEnv('OCULAR_FFPROBE'), searchPath: env.PATH ?? '' },
    dataDir,
    configPath: configPath === undefined ? undefined : resolve(configPath),
    envApiKeys,
    auth,
    config,
    localModels,
  };
}
