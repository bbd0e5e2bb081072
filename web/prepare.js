// `npm install` / `npm ci` run this (the `prepare` script): it builds the playground into web/dist when Vite, a
// dev dependency, is installed. An install without dev dependencies (`--omit=dev`) skips it; the server then
// answers `/` with a page that says to run `npm run build:web`.
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const web = dirname(fileURLToPath(import.meta.url));
let vite;
try {
  vite = join(dirname(createRequire(import.meta.url).resolve('vite/package.json')), 'bin', 'vite.js');
} catch {
  console.warn('ocular: vite is not installed (no dev dependencies); the web playground is not built');
  process.exit(0);
}
const result = spawnSync(process.execPath, [vite, 'build', web], { stdio: 'inherit' });
process.exit(result.status ?? 1);
