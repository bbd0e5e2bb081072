// `import { Ocular } from 'ocular/client'` as a consumer writes it: the build (the root `prepare` script) emits
// JavaScript and declarations, and the package's `exports` resolve to them (here by self-reference).
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startOcular, type TestOcular } from '../helpers/ocular.ts';
import { startOpenAiUpstream } from '../helpers/openai-upstream.ts';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../../', import.meta.url));

let upstream: Awaited<ReturnType<typeof startOpenAiUpstream>>;
let ocular: TestOcular;

beforeAll(async () => {
  await run(process.execPath, [`${ROOT}node_modules/typescript/bin/tsc`, '-p', 'src/sdk/tsconfig.json'], { cwd: ROOT });
  upstream = await startOpenAiUpstream();
  ocular = await startOcular({
    models: [{ id: 'flash', provider: 'openai-compatible', baseUrl: `${upstream.url}/v1`, model: 'upstream-model' }],
  });
}, 60_000);

afterAll(async () => {
  await ocular?.close();
  await upstream?.close();
});

it('builds JavaScript and declarations that `ocular/client` resolves to', async () => {
  expect(existsSync(`${ROOT}dist/sdk/index.js`)).toBe(true);
  expect(existsSync(`${ROOT}dist/sdk/index.d.ts`)).toBe(true);
  const script = `
    import { Ocular, NotFoundError } from 'ocular/client';
    import Default from 'ocular';
    const client = new Ocular({ maxRetries: 0 });
    const reply = await client.chat.create({ messages: [{ role: 'user', content: 'hi' }] });
    const missing = await client.models.get('absent').catch((error) => error);
    console.log(JSON.stringify({
      resolved: import.meta.resolve('ocular/client'),
      same: Default === Ocular,
      text: reply.responses[0].message.content,
      notFound: missing instanceof NotFoundError,
      requestId: typeof missing.requestId,
    }));
  `;
  // Type stripping off: only JavaScript may load. The key and URL come from the environment, as documented.
  const { stdout } = await run(process.execPath, ['--no-experimental-strip-types', '--input-type=module', '-e', script], {
    cwd: ROOT,
    env: { ...process.env, OCULAR_API_KEY: ocular.key, OCULAR_BASE_URL: ocular.url },
  });
  const result = JSON.parse(stdout) as Record<string, unknown>;
  expect(result).toEqual({
    resolved: expect.stringMatching(/\/dist\/sdk\/index\.js$/),
    same: true,
    text: 'hello',
    notFound: true,
    requestId: 'string',
  });
}, 60_000);
