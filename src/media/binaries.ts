import { accessSync, constants, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { delimiter, isAbsolute, join, resolve } from 'node:path';

/** Absolute paths of the ffmpeg and ffprobe executables every media command runs. */
export interface MediaBinaries {
  ffmpeg: string;
  ffprobe: string;
}

/**
 * Where to look for the binaries. `ffmpeg`/`ffprobe` are explicit executables (config passes OCULAR_FFMPEG and
 * OCULAR_FFPROBE; a bare name is looked up on `searchPath`); `searchPath` is a PATH value, passed in because
 * only config/ reads the environment.
 */
export interface MediaBinaryOptions {
  ffmpeg?: string | undefined;
  ffprobe?: string | undefined;
  /** @default '' (no PATH search: an override or the bundled binaries) */
  searchPath?: string | undefined;
}

/** Where a binary was found, in the order they are tried. */
export type MediaBinarySource = 'option' | 'path' | 'bundled';

export interface LocatedMediaBinaries extends MediaBinaries {
  sources: Readonly<Record<keyof MediaBinaries, MediaBinarySource>>;
}

/** What every function that runs ffmpeg or ffprobe is given: built once at boot from config, then shared. */
export interface FfmpegContext {
  binaries: MediaBinaries;
  /** Milliseconds one ffmpeg/ffprobe run may take before it is killed (config `media.processTimeoutMs`). */
  timeoutMs: number;
  /** Largest output kept from one conversion (converted audio), in bytes (config `media.maxBytes`). */
  maxOutputBytes: number;
}

/** The npm packages that ship static builds, read lazily: they throw on platforms they do not cover. */
const BUNDLED_PACKAGES: Readonly<Record<keyof MediaBinaries, string>> = {
  ffmpeg: '@ffmpeg-installer/ffmpeg',
  ffprobe: '@ffprobe-installer/ffprobe',
};

const OVERRIDE_VARIABLES: Readonly<Record<keyof MediaBinaries, string>> = { ffmpeg: 'OCULAR_FFMPEG', ffprobe: 'OCULAR_FFPROBE' };

function isExecutableFile(path: string): boolean {
  try {
    if (!statSync(path).isFile()) return false;
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * The first executable called `name` in the directories of a PATH value. Empty and relative entries are
 * skipped: they would resolve against the server's working directory, which is no place to run code from.
 */
export function findOnPath(name: string, pathValue: string | undefined, platform: NodeJS.Platform = process.platform): string | undefined {
  if (pathValue === undefined || pathValue === '') return undefined;
  const separator = platform === 'win32' ? ';' : delimiter;
  const candidates = platform === 'win32' && !/\.exe$/i.test(name) ? [`${name}.exe`, name] : [name];
  for (const directory of pathValue.split(separator)) {
    if (directory === '' || !isAbsolute(directory)) continue;
    for (const candidate of candidates) {
      const path = join(directory, candidate);
      if (isExecutableFile(path)) return path;
    }
  }
  return undefined;
}

function bundledBinary(name: keyof MediaBinaries): string | undefined {
  try {
    const module: unknown = createRequire(import.meta.url)(BUNDLED_PACKAGES[name]);
    const path = (module as { path?: unknown }).path;
    return typeof path === 'string' && isExecutableFile(path) ? path : undefined;
  } catch {
    return undefined;
  }
}

function locateOne(name: keyof MediaBinaries, override: string | undefined, pathValue: string | undefined): [string, MediaBinarySource] {
  if (override !== undefined && override !== '') {
    const explicit = override.includes('/') || override.includes('\\') ? resolve(override) : findOnPath(override, pathValue);
    if (explicit === undefined || !isExecutableFile(explicit)) {
      throw new Error(`${OVERRIDE_VARIABLES[name]}: "${override}" is not an executable file`);
    }
    return [explicit, 'option'];
  }
  const onPath = findOnPath(name, pathValue);
  if (onPath !== undefined) return [onPath, 'path'];
  const bundled = bundledBinary(name);
  if (bundled !== undefined) return [bundled, 'bundled'];
  throw new Error(
    `${name} was not found: install it on PATH, set ${OVERRIDE_VARIABLES[name]} to its path, or reinstall ${BUNDLED_PACKAGES[name]}`,
  );
}

/**
 * Finds ffmpeg and ffprobe, each on its own: an explicit override, else the first on `searchPath`, else the
 * static build from npm. Uncached; most callers want `resolveMediaBinaries`.
 */
export function locateMediaBinaries(options: MediaBinaryOptions = {}): LocatedMediaBinaries {
  const [ffmpeg, ffmpegSource] = locateOne('ffmpeg', options.ffmpeg, options.searchPath);
  const [ffprobe, ffprobeSource] = locateOne('ffprobe', options.ffprobe, options.searchPath);
  return { ffmpeg, ffprobe, sources: { ffmpeg: ffmpegSource, ffprobe: ffprobeSource } };
}

const cache = new Map<string, LocatedMediaBinaries>();

/** `locateMediaBinaries`, done once per distinct options: the file-system search runs at boot, not per request. */
export function resolveMediaBinaries(options: MediaBinaryOptions = {}): LocatedMediaBinaries {
  const key = JSON.stringify([options.ffmpeg ?? '', options.ffprobe ?? '', options.searchPath ?? '']);
  let located = cache.get(key);
  if (located === undefined) {
    located = locateMediaBinaries(options);
    cache.set(key, located);
  }
  return located;
}

export interface FfmpegContextOptions extends MediaBinaryOptions {
  /** @default 120000 */
  timeoutMs?: number | undefined;
  /** @default 104857600 (100 MB) */
  maxOutputBytes?: number | undefined;
}

/** Resolves the binaries (cached) and bundles them with the limits every run observes. */
export function createFfmpegContext(options: FfmpegContextOptions = {}): FfmpegContext {
  const { ffmpeg, ffprobe } = resolveMediaBinaries(options);
  return Object.freeze({
    binaries: Object.freeze({ ffmpeg, ffprobe }),
    timeoutMs: options.timeoutMs ?? 120_000,
    maxOutputBytes: options.maxOutputBytes ?? 104_857_600,
  });
}
