// The README's SDK example is code users copy: it must type-check against the SDK as it is.
import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

it('the README TypeScript SDK example type-checks', async () => {
  const readme = readFileSync(`${ROOT}README.md`, 'utf8');
  const example = /## TypeScript SDK[\s\S]*?```ts\n([\s\S]*?)```/.exec(readme)?.[1];
  expect(example).toContain("from 'ocular/client'");
  const dir = `${ROOT}.cache/readme-sdk-example`;
  mkdirSync(dir, { recursive: true });
  writeFileSync(`${dir}/example.ts`, `${example!.replace("'ocular/client'", "'../../src/sdk/index.ts'")}\nexport {};\n`);
  // The project's strict settings, less noUncheckedIndexedAccess, which few applications turn on.
  writeFileSync(
    `${dir}/tsconfig.json`,
    JSON.stringify({ extends: '../../tsconfig.json', compilerOptions: { noUncheckedIndexedAccess: false }, include: ['example.ts'] }),
  );
  const result = await promisify(execFile)(process.execPath, [`${ROOT}node_modules/typescript/bin/tsc`, '-p', `${dir}/tsconfig.json`], {
    cwd: ROOT,
  }).catch((error: { stdout: string }) => ({ stdout: error.stdout }));
  expect(result.stdout).toBe('');
}, 60_000);
