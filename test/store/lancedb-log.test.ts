import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { LANCEDB_LOG_DEFAULT, quietLanceDbLogs } from '../../src/config/lancedb.ts';

const VECTOR_INDEX = fileURLToPath(new URL('../../src/store/vector-index.ts', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'ocular-lancedb-log-'));

afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Creates an owner's table in a fresh index in a child process (LanceDB reads LANCEDB_LOG once per process). */
function createTable(env: NodeJS.ProcessEnv, name: string): { stdout: string; stderr: string } {
  const script = join(dir, `${name}.ts`);
  writeFileSync(
    script,
    `import { openVectorIndex } from ${JSON.stringify(VECTOR_INDEX)};
const index = await openVectorIndex({
  directory: ${JSON.stringify(join(dir, name))},
  dimensions: 3,
  source: { summary: () => ({ count: 0, maxId: 0, idSum: 0 }), rows: () => [] },
});
index.add('owner', { id: 1, vector: [1, 0, 0] });
await index.flush();
const found = await index.search([1, 0, 0], 1, { owner: 'owner' });
await index.close();
console.log(JSON.stringify({ level: process.env.LANCEDB_LOG, found: found.length }));
`,
  );
  const run = spawnSync(process.execPath, [script], { env, encoding: 'utf8', timeout: 60_000 });
  expect(run.status, run.stderr).toBe(0);
  return { stdout: run.stdout, stderr: run.stderr };
}

describe("LanceDB's own log lines", () => {
  it('are kept off stderr unless the user sets LANCEDB_LOG', () => {
    const { LANCEDB_LOG: _unset, ...env } = process.env;
    const { stdout, stderr } = createTable(env, 'quiet');
    expect(JSON.parse(stdout)).toEqual({ level: LANCEDB_LOG_DEFAULT, found: 1 });
    expect(stderr).not.toMatch(/\b(?:WARN|INFO|DEBUG)\b/);
  });

  it("respect the user's LANCEDB_LOG", () => {
    const { stdout, stderr } = createTable({ ...process.env, LANCEDB_LOG: 'debug' }, 'chatty');
    expect(JSON.parse(stdout)).toEqual({ level: 'debug', found: 1 });
    expect(stderr).toMatch(/\bDEBUG\b/);
  });

  it('sets the level only where none is chosen', () => {
    const unset: NodeJS.ProcessEnv = {};
    quietLanceDbLogs(unset);
    expect(unset.LANCEDB_LOG).toBe(LANCEDB_LOG_DEFAULT);
    const chosen: NodeJS.ProcessEnv = { LANCEDB_LOG: 'warn' };
    quietLanceDbLogs(chosen);
    expect(chosen.LANCEDB_LOG).toBe('warn');
  });
});
