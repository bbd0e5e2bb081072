import { Command, Option } from 'commander';
import { join, resolve } from 'node:path';
import { ConfigError } from '../config/load-config.ts';
import {
  LOG_LEVELS,
  OCULAR_VERSION,
  SERVER_ROLES,
  readEnvironment,
  resolveDataDir,
  resolveHubSettings,
  resolveClientSettings,
  resolveServerSettings,
  type ClientFlags,
  type HubSettings,
  type ServeFlags,
} from '../config/settings.ts';
import { findAnalyzerModel } from '../models/analyzer-catalog.ts';
import { ModelDownloadError, type DownloadProgress } from '../models/download-file.ts';
import { ModelReferenceError, resolvePullReference, type PullReference } from '../models/model-source.ts';
import {
  describeStoredFile,
  listModels,
  removeModel,
  verifyStoredModels,
  type StoredFile,
  type StoredModel,
} from '../models/model-store.ts';
import { formatBytes, ProgressReporter } from '../models/progress.ts';
import { analyzerHandPlacementHint, listAnalyzerModels, pullAnalyzerModel, removeAnalyzerModel } from '../models/pull-analyzer-model.ts';
import { handPlacementHint, pullModel } from '../models/pull-model.ts';
import { createLogger } from '../server/logger.ts';
import { registerClientCommands } from './client-commands.ts';
import { ApiKeyStore, isValidOwner } from '../store/api-keys.ts';
import { SchemaBehindError, schemaVersion } from '../store/database.ts';
import { openSqlDatabase } from '../store/sql.ts';
import { resolveStorageTarget } from './storage-flags.ts';
import Database from 'better-sqlite3';
import { existsSync } from 'node:fs';

const env = readEnvironment();

// A reader that stops early (`ocular models list | head -1`) closes the pipe: end quietly, as Unix tools do, rather
// than with an unhandled EPIPE. `serve` keeps running: its key is also saved to <data>/bootstrap-key.
let onStdoutClosed: () => void = () => process.exit(0);
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code !== 'EPIPE') throw error;
  onStdoutClosed();
});

/** Rows as columns padded to their widest cell (the last one left ragged), as `models list` and `keys list` print. */
function writeTable(rows: readonly (readonly string[])[]): void {
  const columns = Math.max(...rows.map((row) => row.length));
  const widths = Array.from({ length: columns - 1 }, (_, column) => Math.max(...rows.map((row) => row[column]?.length ?? 0)));
  for (const row of rows)
    process.stdout.write(
      `${row
        .map((cell, column) => cell.padEnd(widths[column] ?? 0))
        .join('  ')
        .trimEnd()}\n`,
    );
}

function fail(message: string): never {
  process.stderr.write(`ocular: ${message}\n`);
  process.exit(1);
}

const program = new Command('ocular')
  .description('Self-hosted multimodal AI API server (Reka and OpenAI wire formats)')
  .showHelpAfterError()
  .version(OCULAR_VERSION);

program
  .command('serve')
  .description('run the HTTP server')
  .option('--host <host>', 'address to bind (env OCULAR_HOST)', undefined)
  .option('--port <port>', 'port to listen on (env OCULAR_PORT)', undefined)
  .option('--data <dir>', 'data directory: database, bootstrap key (env OCULAR_DATA_DIR)', undefined)
  .option('--config <file>', 'JSON config file (env OCULAR_CONFIG; default ./ocular.config.json when present)', undefined)
  .option('--no-auth', 'disable API keys (only allowed when bound to loopback)')
  .addOption(new Option('--log-level <level>', 'log verbosity (env OCULAR_LOG_LEVEL)').choices(LOG_LEVELS))
  .option('--model-path <file>', 'a local GGUF served as the default model "local", with no download (env OCULAR_MODEL_PATH)')
  .option('--mmproj-path <file>', 'the multimodal projector GGUF for --model-path, for image input (env OCULAR_MMPROJ_PATH)')
  .option('--preload', 'load embedded models at boot instead of on the first request (env OCULAR_PRELOAD)')
  .addOption(new Option('--role <role>', 'api (HTTP, no jobs), worker (jobs, health only) or all (env OCULAR_ROLE)').choices(SERVER_ROLES))
  .option('--no-migrate', 'refuse to start on an outdated schema instead of migrating it (env OCULAR_NO_MIGRATE; see `ocular migrate`)')
  .action(async (flags: ServeFlags) => {
    onStdoutClosed = () => {};
    let settings;
    try {
      // commander sets auth=true unless --no-auth is given; only an explicit flag should override the env.
      settings = resolveServerSettings(
        { ...flags, auth: flags.auth === false ? false : undefined, migrate: flags.migrate === false ? false : undefined },
        env,
      );
    } catch (error) {
      if (error instanceof ConfigError) fail(error.message);
      throw error;
    }
    const logger = createLogger(settings.logLevel);
    // The server (and the MCP bridge below) load only when their command runs, so the client commands start fast.
    const { startServer } = await import('../server/serve.ts');
    let server;
    try {
      server = await startServer(settings, logger);
    } catch (error) {
      if (error instanceof ConfigError) fail(error.message);
      if ((error as { code?: string }).code === 'EADDRINUSE')
        fail(`port ${settings.port} on ${settings.host} is already in use (use --port)`);
      throw error;
    }
    if (server.bootstrapKey) {
      process.stdout.write(
        `\nYour API key (shown once, also saved to ${resolve(settings.dataDir, 'bootstrap-key')}):\n\n  ${server.bootstrapKey}\n\n`,
      );
    }
    const stop = (reason: string) => {
      logger.info('stopping', { reason });
      server.close().then(
        () => process.exit(0),
        () => process.exit(1),
      );
    };
    // `on`, not `once`: Ctrl+C under `npm start` delivers SIGINT twice (from the terminal and forwarded by npm), and a
    // second one with no listener left would kill the process mid-shutdown.
    process.on('SIGINT', () => stop('SIGINT'));
    process.on('SIGTERM', () => stop('SIGTERM'));
    // Under npm, a server that outlives npm (killed with SIGKILL, or a shell between them that died) is an orphan
    // nobody stops, so follow npm out. Elsewhere the parent is left alone: `ocular serve &` may outlive its shell.
    if (env.npm_lifecycle_event !== undefined) {
      const parent = process.ppid;
      const watch = setInterval(() => {
        if (process.ppid === parent) return;
        clearInterval(watch);
        stop('parent process exited');
      }, 1_000);
      watch.unref();
    }
  });

const keys = program.command('keys').description('manage stored API keys');
const dataOption = () => new Option('--data <dir>', 'data directory (env OCULAR_DATA_DIR)');
const configOption = () =>
  new Option('--config <path>', 'config file whose `storage` names the database (env OCULAR_CONFIG; default ./ocular.config.json)');

/** Runs `use` on the key store of the database `--data` / `--config` name (as `serve` finds it), closed after. */
async function withKeyStore<T>(
  flags: { data?: string | undefined; config?: string | undefined },
  use: (store: ApiKeyStore) => Promise<T>,
): Promise<T> {
  let database;
  try {
    const target = resolveStorageTarget(flags, env);
    database = await openSqlDatabase(target.storage, { dataDir: target.dataDir });
  } catch (error) {
    fail((error as Error).message);
  }
  try {
    return await use(new ApiKeyStore(database));
  } finally {
    await database.close();
  }
}

keys
  .command('create')
  .description('create a key and print it (only this once)')
  .option('--name <name>', 'a label for the key', 'default')
  .option('--owner <owner>', "whose video library the key opens; keys with the same owner share one (default: the key's own id)")
  .addOption(dataOption())
  .addOption(configOption())
  .action(async (options: { name: string; owner?: string; data?: string; config?: string }) => {
    if (options.owner !== undefined && !isValidOwner(options.owner)) fail('--owner takes 1-128 letters, digits, or . _ @ : -');
    const { key, info } = await withKeyStore(options, (store) => store.create(options.name, options.owner));
    process.stdout.write(`${key}\n`);
    process.stderr.write(`created ${info.id} (${info.name}, owner ${info.owner})\n`);
  });

keys
  .command('list')
  .description('list keys (never their secret)')
  .option('--json', 'print JSON')
  .addOption(dataOption())
  .addOption(configOption())
  .action(async (options: { json?: boolean; data?: string; config?: string }) => {
    const list = await withKeyStore(options, (store) => store.list());
    if (options.json) {
      process.stdout.write(`${JSON.stringify(list, null, 2)}\n`);
      return;
    }
    if (list.length === 0) {
      process.stdout.write('no stored keys\n');
      return;
    }
    const rows = list.map((key) => {
      const state = key.revokedAt ? `revoked ${key.revokedAt.toISOString()}` : 'active';
      return [key.id, `${key.prefix}…`, key.name, key.owner, key.createdAt.toISOString(), state];
    });
    writeTable([['ID', 'PREFIX', 'NAME', 'OWNER', 'CREATED', 'STATE'], ...rows]);
  });

keys
  .command('revoke')
  .description('revoke a key by id or listed prefix; running servers stop accepting it within 250 ms')
  .argument('<id>', 'key id (key_...) or prefix (ocu_...)')
  .addOption(dataOption())
  .addOption(configOption())
  .action(async (id: string, options: { data?: string; config?: string }) => {
    if (!(await withKeyStore(options, (store) => store.revoke(id)))) fail(`no active key matches "${id}"`);
    process.stdout.write(`revoked ${id}\n`);
  });

const models = program
  .command('models')
  .description('manage embedded model weights (GGUF files under <data>/models, pulled from the Hugging Face hub)');

function readHub(): HubSettings {
  try {
    return resolveHubSettings(env);
  } catch (error) {
    if (error instanceof ConfigError) fail(error.message);
    throw error;
  }
}

function readPullReference(reference: string): PullReference {
  try {
    return resolvePullReference(reference);
  } catch (error) {
    if (error instanceof ModelReferenceError) fail(error.message);
    throw error;
  }
}

const modelsDirOf = (data: string | undefined) => join(resolveDataDir(data, env), 'models');

models
  .command('pull')
  .description('download a model (resumable, checksum-verified); HF_ENDPOINT and HF_TOKEN are honoured')
  .argument('<model>', 'a catalog name (see `ocular models list`), an analyzer (silero-vad, mobilenetv2) or owner/repo:file.gguf')
  .addOption(dataOption())
  .action(async (reference: string, options: { data?: string }) => {
    const { analyzer, source } = readPullReference(reference);
    const modelsDir = modelsDirOf(options.data);
    const hub = source ? readHub() : undefined;
    const interrupt = new AbortController();
    process.once('SIGINT', () => interrupt.abort());
    process.once('SIGTERM', () => interrupt.abort());
    let reporter: ProgressReporter | undefined;
    const progress = {
      modelsDir,
      signal: interrupt.signal,
      onFile: (file: { file: string }, index: number, count: number, url: string) => {
        process.stderr.write(`downloading ${file.file} (${index + 1} of ${count}) from ${url}\n`);
        reporter = new ProgressReporter(process.stderr, file.file);
      },
      onProgress: (update: DownloadProgress) => reporter?.update(update),
    };
    try {
      // Analyzer weights (indexing) come from their public GitHub homes, verified against the catalog.
      const pulled = analyzer ? await pullAnalyzerModel(analyzer, progress) : await pullModel(source!, { ...progress, hub: hub! });
      reporter?.done();
      for (const { file, path, download } of pulled) {
        if (!download) {
          const stored = describeStoredFile(file.file, path, file);
          process.stderr.write(
            stored.problem === 'wrong-size'
              ? `${file.file}: already present, but ${describeWrongSize(stored)}; replace it, or delete it and pull again\n`
              : `${file.file}: already present\n`,
          );
        } else if (download.verifiedWith.length === 0) {
          process.stderr.write(`${file.file}: ${formatBytes(download.size)}; no checksum was available to verify it against\n`);
        } else {
          const against = download.verifiedWith
            .map((source) => (source === 'hub' ? "the hub's X-Linked-Etag" : 'the catalog'))
            .join(' and ');
          process.stderr.write(`${file.file}: ${formatBytes(download.size)}, sha256 ${download.sha256} verified against ${against}\n`);
        }
        process.stdout.write(`${path}\n`);
      }
    } catch (error) {
      reporter?.done();
      if (interrupt.signal.aborted) fail('interrupted; run the same command again to resume where it stopped');
      if (error instanceof ModelDownloadError) {
        // Offline, firewalled, or the host failing: say how to place the files by hand, in the server's words.
        if (error.code !== 'network_error' && error.code !== 'http_error') fail(error.message);
        fail(
          `${error.message}\n${analyzer ? analyzerHandPlacementHint(modelsDir, analyzer) : handPlacementHint(source!, modelsDir, hub!)}`,
        );
      }
      throw error;
    }
  });

/** `2.4 MB on disk where the catalog's file is 436.8 MB` */
function describeWrongSize(file: StoredFile): string {
  return `${formatBytes(file.sizeOnDisk ?? 0)} on disk where the catalog's file is ${formatBytes(file.size ?? 0)}`;
}

function describeStatus(model: StoredModel): string {
  if (model.status === 'wrong-size') return 'wrong size';
  if (model.status === 'present' && model.files.every((file) => file.verified)) return 'verified';
  if (model.status !== 'partial') return model.status;
  const total = model.files.reduce((sum, file) => sum + (file.size ?? 0), 0);
  const done = model.files.reduce((sum, file) => sum + (file.present ? (file.size ?? 0) : (file.partialBytes ?? 0)), 0);
  return total > 0 ? `partial ${Math.floor((done / total) * 100)}%` : 'partial';
}

models
  .command('list')
  .description('the catalog and any other pulled model, with what is present (sizes checked against the catalog)')
  .option('--json', 'print JSON')
  .option('--verify', "also check the sha256 of present files against the catalog's (reads every byte); exit 1 on a bad file")
  .addOption(dataOption())
  .action(async (options: { json?: boolean; verify?: boolean; data?: string }) => {
    const modelsDir = modelsDirOf(options.data);
    let listed = [...listModels(modelsDir), ...listAnalyzerModels(modelsDir)];
    if (options.verify) {
      listed = await verifyStoredModels(listed, {
        onFile: (file) => process.stderr.write(`checking the sha256 of ${file.file} (${formatBytes(file.sizeOnDisk ?? 0)})\n`),
      });
      // A check, like `sha256sum -c`: scripts can test the exit status.
      if (listed.some((model) => model.status === 'wrong-size' || model.status === 'corrupt')) process.exitCode = 1;
    }
    if (options.json) {
      process.stdout.write(`${JSON.stringify(listed, null, 2)}\n`);
      return;
    }
    const rows = listed.map((model) => {
      const size = model.files.every((file) => file.size !== undefined)
        ? formatBytes(model.files.reduce((sum, file) => sum + file.size!, 0))
        : '?';
      return [`${model.name}${model.isDefault ? ' *' : ''}`, describeStatus(model), size, model.repo];
    });
    writeTable([['NAME', 'STATUS', 'SIZE', 'REPO'], ...rows]);
    const notes = listed.flatMap((model) =>
      model.files.flatMap((file) => {
        if (file.problem === 'wrong-size') return [`${model.name}: ${file.path} is ${describeWrongSize(file)}`];
        if (file.problem === 'corrupt') return [`${model.name}: ${file.path} does not match the catalog's sha256 ${file.sha256}`];
        if (options.verify && file.present && !file.verified) return [`${model.name}: ${file.file} has no checksum to verify it against`];
        return [];
      }),
    );
    if (notes.length > 0) process.stdout.write(`\n${notes.join('\n')}\n`);
    if (listed.some((model) => model.status === 'wrong-size' || model.status === 'corrupt')) {
      process.stdout.write('Replace such a file with the right one, or delete it and run `ocular models pull <name>`.\n');
    }
    process.stdout.write(`\n* served as "local" when there is no config file. Files live in ${modelsDir}\n`);
  });

models
  .command('rm')
  .description('delete a pulled model (unfinished downloads included)')
  .argument('<model>', 'a catalog name, owner/repo:file.gguf, or owner/repo')
  .addOption(dataOption())
  .action(async (reference: string, options: { data?: string }) => {
    const modelsDir = modelsDirOf(options.data);
    let removed: string[];
    try {
      const analyzer = findAnalyzerModel(reference);
      removed = analyzer ? await removeAnalyzerModel(modelsDir, analyzer) : await removeModel(modelsDir, reference);
    } catch (error) {
      if (error instanceof ModelReferenceError) fail(error.message);
      throw error;
    }
    if (removed.length === 0) fail(`nothing to remove: "${reference}" is not under ${modelsDir}`);
    for (const path of removed) process.stdout.write(`removed ${path}\n`);
  });

program
  .command('migrate')
  .description('bring the database schema up to date (serve also does at start, unless --no-migrate)')
  .option('--data <dir>', 'data directory (env OCULAR_DATA_DIR)')
  .option('--config <path>', 'config file whose `storage` names the database (env OCULAR_CONFIG; default ./ocular.config.json)')
  .action(async (flags: { data?: string; config?: string }) => {
    const target = resolveStorageTarget(flags, env);
    let before = 0;
    if (target.storage.database === 'sqlite') {
      const file = join(target.dataDir, 'ocular.db');
      if (existsSync(file)) {
        const peek = new Database(file, { readonly: true });
        try {
          before = schemaVersion(peek);
        } finally {
          peek.close();
        }
      }
    } else {
      const peek = await openSqlDatabase(target.storage, { dataDir: target.dataDir, migrate: false }).catch((error: unknown) => {
        if (error instanceof SchemaBehindError) {
          before = error.current;
          return undefined;
        }
        fail((error as Error).message);
      });
      if (peek !== undefined) {
        before = await peek.schemaVersion();
        await peek.close();
      }
    }
    let database;
    try {
      database = await openSqlDatabase(target.storage, { dataDir: target.dataDir });
    } catch (error) {
      fail((error as Error).message);
    }
    const after = await database.schemaVersion();
    const latest = database.latestSchemaVersion;
    await database.close();
    const where = target.storage.database === 'sqlite' ? join(target.dataDir, 'ocular.db') : 'PostgreSQL';
    process.stdout.write(
      before === after
        ? `${where}: schema is at version ${after} (up to date)\n`
        : `${where}: schema migrated from version ${before} to ${after}\n`,
    );
    if (after !== latest) fail(`schema is at ${after}, expected ${latest}`);
  });

program
  .command('mcp')
  .description('serve the MCP tools on stdio, for MCP clients that start their servers as processes (talks to a running Ocular)')
  .option('--url <url>', 'the Ocular server (env OCULAR_BASE_URL; default http://127.0.0.1:8080)')
  .option('--api-key <key>', "the key to call it with (env OCULAR_API_KEY; default a local server's bootstrap key)")
  .option('--data <dir>', "the local server's data directory, for its bootstrap key (env OCULAR_DATA_DIR)")
  .action(async (flags: ClientFlags) => {
    // stdout carries the protocol: nothing else may be written there.
    onStdoutClosed = () => process.exit(0);
    let settings;
    try {
      settings = resolveClientSettings(flags, env);
    } catch (error) {
      if (error instanceof ConfigError) fail(error.message);
      throw error;
    }
    const { runStdioBridge } = await import('../mcp/stdio-bridge.ts');
    try {
      await runStdioBridge(settings);
    } catch (error) {
      fail(`cannot serve MCP for ${settings.baseUrl}: ${(error as Error).message}`);
    }
  });

registerClientCommands(program, { env, writeTable, fail });

await program.parseAsync(process.argv);
