import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { useOcularCli } from './ocular-cli.ts';

const cli = useOcularCli();

describe('ocular keys list', () => {
  it('prints a header row, then one aligned row per key', async () => {
    const cwd = cli.temporaryDir();
    const data = join(cwd, 'data');
    const empty = await cli.run(['keys', 'list', '--data', data], { cwd });
    expect(empty.code).toBe(0);
    expect(empty.stdout.trim().split('\n')).toHaveLength(1); // a sentence, no header over nothing

    expect((await cli.run(['keys', 'create', '--name', 'ci', '--data', data], { cwd })).code).toBe(0);
    expect((await cli.run(['keys', 'create', '--name', 'laptop', '--owner', 'team-1', '--data', data], { cwd })).code).toBe(0);
    const listed = await cli.run(['keys', 'list', '--data', data], { cwd });
    expect(listed.code).toBe(0);
    const [header, ...rows] = listed.stdout.trimEnd().split('\n');
    expect(header!.split(/\s+/)).toEqual(['ID', 'PREFIX', 'NAME', 'OWNER', 'CREATED', 'STATE']);
    expect(rows).toHaveLength(2);

    const keys = JSON.parse((await cli.run(['keys', 'list', '--json', '--data', data], { cwd })).stdout) as Array<{
      id: string;
      name: string;
      owner: string;
    }>;
    for (const [index, key] of keys.entries()) {
      const cells = rows[index]!.split(/\s+/);
      expect([cells[0], cells[2], cells[3], cells[5]]).toEqual([key.id, key.name, key.owner, 'active']);
      // Columns line up under the header.
      expect(rows[index]!.indexOf(key.name)).toBe(header!.indexOf('NAME'));
    }
  });
});
