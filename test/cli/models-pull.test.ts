import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ANALYZER_CATALOG } from '../../src/models/analyzer-catalog.ts';
import { CATALOG } from '../../src/models/catalog.ts';
import { resolveModelReference } from '../../src/models/model-source.ts';
import { handPlacementHint } from '../../src/models/pull-model.ts';
import { closedPort, STACK_FRAME, useOcularCli } from './ocular-cli.ts';

const cli = useOcularCli();

describe('ocular models pull', () => {
  it('with the hub unreachable, says how to place the files by hand, as the server does', async () => {
    const cwd = cli.temporaryDir();
    const data = join(cwd, 'data');
    const endpoint = `http://127.0.0.1:${await closedPort()}`;
    const pulled = await cli.run(['models', 'pull', 'smolvlm2-256m', '--data', data], { cwd, env: { HF_ENDPOINT: endpoint } });
    expect(pulled.code).toBe(1);
    expect(pulled.stderr).not.toMatch(STACK_FRAME);
    // The very hint the server's 503 and log carry: every file's URL and the path it goes to.
    expect(pulled.stderr).toContain(handPlacementHint(resolveModelReference('smolvlm2-256m'), join(data, 'models'), { endpoint }));
    expect(pulled.stderr).toContain(join(data, 'models', 'smolvlm2-256m', CATALOG[0]!.mmproj!.file));
  });

  it('names every model it can pull, analyzers included, for an unknown name', async () => {
    const cwd = cli.temporaryDir();
    const unknown = await cli.run(['models', 'pull', 'nonexistent', '--data', join(cwd, 'data')], { cwd });
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/^ocular: /);
    expect(unknown.stderr).not.toMatch(STACK_FRAME);
    for (const { name } of [...CATALOG, ...ANALYZER_CATALOG]) expect(unknown.stderr).toContain(name);
  });
});
