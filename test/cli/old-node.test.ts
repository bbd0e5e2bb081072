import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const BIN = join(import.meta.dirname, '..', '..', 'bin', 'ocular.js');

/** A Node.js older than 22.19 on this machine (Debian's, or the one the image ships), if there is one. */
function olderNode(): string | undefined {
  for (const candidate of ['/usr/bin/node', '/usr/local/bin/node', '/usr/bin/nodejs']) {
    if (!existsSync(candidate)) continue;
    const [major = 0, minor = 0] = execFileSync(candidate, ['-p', 'process.versions.node'], { encoding: 'utf8' })
      .trim()
      .split('.')
      .map(Number);
    if (major < 22 || (major === 22 && minor < 19)) return candidate;
  }
  return undefined;
}

const older = olderNode();

describe.skipIf(older === undefined)('ocular on a Node.js older than 22.19', () => {
  it('says which Node.js it needs, in one line, and exits 1', () => {
    const result = spawnSync(older!, [BIN, 'serve'], { encoding: 'utf8', timeout: 10_000 });
    expect(result.status).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr).toMatch(/^ocular: needs Node\.js 22\.19 or newer \(this is v\d+\.\d+\.\d+\); .*\n$/);
  });
});
