// `npm install` / `npm ci` run this (the `prepare` script, also before `npm pack`): it builds what ships besides the
// TypeScript sources, each with a dev dependency, when that is installed:
// - the SDK (`ocular/client`) as JavaScript and declarations into dist/sdk, with TypeScript (Node does not strip
//   types under node_modules, so consumers need JS);
// - the web playground into web/dist, with Vite.
// An install without dev dependencies (`--omit=dev`) skips them; the server then answers `/` with a page that says
// to run `npm run build:web`.
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);

/** The entry script of a dev dependency's command, or undefined when it is not installed. */
function binary(packageName, relativePath) {
  try {
    return join(dirname(require.resolve(`${packageName}/package.json`)), relativePath);
  } catch {
    return undefined;
  }
}

const builds = [
  { what: 'the SDK (dist/sdk)', packageName: 'typescript', bin: 'bin/tsc', args: ['-p', join(root, 'src/sdk/tsconfig.json')] },
  { what: 'the web playground (web/dist)', packageName: 'vite', bin: 'bin/vite.js', args: ['build', join(root, 'web')] },
];

for (const build of builds) {
  const entry = binary(build.packageName, build.bin);
  if (entry === undefined) {
    console.warn(`ocular: ${build.packageName} is not installed (no dev dependencies); ${build.what} is not built`);
    continue;
  }
  const result = spawnSync(process.execPath, [entry, ...build.args], { stdio: 'inherit', cwd: root });
  if (result.status !== 0) process.exit(result.status ?? 1);
}
