import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { STACK_FRAME, useOcularCli } from './ocular-cli.ts';

const cli = useOcularCli();

describe('a reader that closes stdout early (`ocular ... | head -1`)', () => {
  it('ends `models list` quietly, mid-output', async () => {
    const cwd = cli.temporaryDir();
    const data = join(cwd, 'data');
    // Far more rows than a pipe buffers (64 KiB), so the command is still writing when the reader goes away.
    const repo = join(data, 'models', 'test-org', 'a-repository-with-a-long-name-GGUF');
    mkdirSync(repo, { recursive: true });
    for (let index = 0; index < 2_000; index += 1) writeFileSync(join(repo, `weights-${index}-with-a-long-file-name.gguf`), '');

    const listing = await cli.ocular(['models', 'list', '--data', data], { cwd });
    let firstLine: string | undefined;
    listing.child.stdout!.on('data', () => {
      if (firstLine !== undefined || !listing.stdout().includes('\n')) return;
      firstLine = listing.stdout().split('\n')[0];
      listing.child.stdout!.destroy();
    });

    expect(await listing.exited).toBe(0);
    expect(firstLine).toMatch(/^NAME\s+STATUS\s+SIZE\s+REPO$/);
    expect(listing.stderr()).not.toMatch(STACK_FRAME);
    expect(listing.stderr()).not.toContain('EPIPE');
  });

  it('ends `keys list` quietly when the reader is gone before the first byte', async () => {
    const cwd = cli.temporaryDir();
    const data = join(cwd, 'data');
    expect((await cli.run(['keys', 'create', '--data', data], { cwd })).code).toBe(0);

    const listing = await cli.ocular(['keys', 'list', '--data', data], { cwd });
    listing.child.stdout!.destroy(); // long before node has started: its first write meets a closed pipe

    expect(await listing.exited).toBe(0);
    expect(listing.stderr()).toBe('');
  });
});
