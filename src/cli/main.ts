import { Command, Option } from 'commander';
import { ConfigError } from '../config/load-config.ts';
import { LOG_LEVELS, readEnvironment, resolveDataDir, resolveServerSettings, type ServeFlags } from '../config/settings.ts';
import { createLogger } from '../server/logger.ts';
import { startServer } from '../server/serve.ts';
import { ApiKeyStore } from '../store/api-keys.ts';
import { openDatabase } from '../store/database.ts';
import { resolve } from 'node:path';

const env = readEnvironment();

function fail(message: string): never {
  process.stderr.write(`ocular: ${message}\n`);
  process.exit(1);
}

const program = new Command('ocular')
  .description('Self-hosted multimodal AI API server (Reka and OpenAI wire formats)')
  .showHelpAfterError()
  .version('0.1.0');

program
  .command('serve')
  .description('run the HTTP server')
  .option('--host <host>', 'address to bind (env OCULAR_HOST)', undefined)
  .option('--port <port>', 'port to listen on (env OCULAR_PORT)', undefined)
  .option('--data <dir>', 'data directory: database, bootstrap key (env OCULAR_DATA_DIR)', undefined)
  .option('--config <file>', 'JSON config file (env OCULAR_CONFIG; default ./ocular.config.json when present)', undefined)
  .option('--no-auth', 'disable API keys (only allowed when bound to loopback)')
  .addOption(new Option('--log-level <level>', 'log verbosity (env OCULAR_LOG_LEVEL)').choices(LOG_LEVELS))
  .action(async (flags: ServeFlags) => {
    let settings;
    try {
      // commander sets auth=true unless --no-auth is given; only an explicit flag should override the env.
      settings = resolveServerSettings({ ...flags, auth: flags.auth === false ? false : undefined }, env);
    } catch (error) {
      if (error instanceof ConfigError) fail(error.message);
      throw error;
    }
    const logger = createLogger(settings.logLevel);
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
    const stop = (signal: string) => {
      logger.info('signal received', { signal });
      server.close().then(
        () => process.exit(0),
        () => process.exit(1),
      );
    };
    process.once('SIGINT', () => stop('SIGINT'));
    process.once('SIGTERM', () => stop('SIGTERM'));
  });

const keys = program.command('keys').description('manage stored API keys');
const dataOption = () => new Option('--data <dir>', 'data directory (env OCULAR_DATA_DIR)');
const openStore = (data: string | undefined) => new ApiKeyStore(openDatabase(resolveDataDir(data, env)));

keys
  .command('create')
  .description('create a key and print it (only this once)')
  .option('--name <name>', 'a label for the key', 'default')
  .addOption(dataOption())
  .action((options: { name: string; data?: string }) => {
    const { key, info } = openStore(options.data).create(options.name);
    process.stdout.write(`${key}\n`);
    process.stderr.write(`created ${info.id} (${info.name})\n`);
  });

keys
  .command('list')
  .description('list keys (never their secret)')
  .option('--json', 'print JSON')
  .addOption(dataOption())
  .action((options: { json?: boolean; data?: string }) => {
    const list = openStore(options.data).list();
    if (options.json) {
      process.stdout.write(`${JSON.stringify(list, null, 2)}\n`);
      return;
    }
    if (list.length === 0) process.stdout.write('no stored keys\n');
    for (const key of list) {
      const state = key.revokedAt ? `revoked ${key.revokedAt.toISOString()}` : 'active';
      process.stdout.write(`${key.id}\t${key.prefix}…\t${key.name}\t${key.createdAt.toISOString()}\t${state}\n`);
    }
  });

keys
  .command('revoke')
  .description('revoke a key by id or listed prefix; running servers stop accepting it within 250 ms')
  .argument('<id>', 'key id (key_...) or prefix (ocu_...)')
  .addOption(dataOption())
  .action((id: string, options: { data?: string }) => {
    if (!openStore(options.data).revoke(id)) fail(`no active key matches "${id}"`);
    process.stdout.write(`revoked ${id}\n`);
  });

await program.parseAsync(process.argv);
