import { copyFileSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { findAnalyzerModel } from '../../src/models/analyzer-catalog.ts';
import { findCatalogModel } from '../../src/models/catalog.ts';
import type { StoredModel } from '../../src/models/model-store.ts';
import { useOcularCli } from './ocular-cli.ts';

const cli = useOcularCli();
const SHARED_SILERO = fileURLToPath(new URL('../../../shared/models/silero-vad/silero_vad.onnx', import.meta.url));

/** The table row of `name` (`smolvlm2-500m *  wrong size  545.6 MB  ...`) as cells. */
function rowOf(stdout: string, name: string): string[] | undefined {
  return stdout
    .split('\n')
    .map((line) => line.split(/\s{2,}/))
    .find((cells) => cells[0]?.replace(/ \*$/, '') === name);
}

describe('ocular models list checks files placed by hand', () => {
  it('shows a file whose size is not the catalog’s as wrong size, with both sizes', async () => {
    const cwd = cli.temporaryDir();
    const data = join(cwd, 'data');
    const catalog = findCatalogModel('smolvlm2-500m')!;
    const path = join(data, 'models', catalog.name, catalog.model.file);
    mkdirSync(join(path, '..'), { recursive: true });
    writeFileSync(path, Buffer.alloc(2_400)); // a truncated copy, or another file under the right name

    const json = await cli.run(['models', 'list', '--json', '--data', data], { cwd });
    expect(json.code).toBe(0);
    const model = (JSON.parse(json.stdout) as StoredModel[]).find((entry) => entry.name === catalog.name)!;
    expect(model.status).toBe('wrong-size');
    expect(model.files[0]).toMatchObject({ path, present: true, problem: 'wrong-size', sizeOnDisk: 2_400, size: catalog.model.size });

    const table = await cli.run(['models', 'list', '--data', data], { cwd });
    expect(table.code).toBe(0);
    expect(rowOf(table.stdout, catalog.name)?.[1]).toBe('wrong size');
    const note = table.stdout.split('\n').find((line) => line.includes(path));
    expect(note).toContain('2.4 kB');
    expect(note).toContain('436.8 MB');
  });

  it('with --verify, reports a file of the right size but another sha256 as corrupt, and exits 1', async () => {
    const cwd = cli.temporaryDir();
    const data = join(cwd, 'data');
    const vad = findAnalyzerModel('silero-vad')!;
    const path = join(data, 'models', vad.name, vad.files[0]!.file);
    mkdirSync(join(path, '..'), { recursive: true });
    writeFileSync(path, Buffer.alloc(vad.files[0]!.size)); // the size is right; the bytes are not

    const sizeOnly = (JSON.parse((await cli.run(['models', 'list', '--json', '--data', data], { cwd })).stdout) as StoredModel[]).find(
      (entry) => entry.name === vad.name,
    );
    expect(sizeOnly?.status).toBe('present'); // without hashing there is no telling

    const verified = await cli.run(['models', 'list', '--verify', '--json', '--data', data], { cwd });
    expect(verified.code).toBe(1);
    const model = (JSON.parse(verified.stdout) as StoredModel[]).find((entry) => entry.name === vad.name)!;
    expect(model.status).toBe('corrupt');
    expect(model.files[0]).toMatchObject({ problem: 'corrupt', verified: false });

    const table = await cli.run(['models', 'list', '--verify', '--data', data], { cwd });
    expect(table.code).toBe(1);
    expect(rowOf(table.stdout, vad.name)?.[1]).toBe('corrupt');
    expect(table.stdout.split('\n').some((line) => line.includes(path))).toBe(true);
  });

  it.skipIf(!existsSync(SHARED_SILERO))('with --verify, shows the catalog’s own file as verified', async () => {
    const cwd = cli.temporaryDir();
    const data = join(cwd, 'data');
    const vad = findAnalyzerModel('silero-vad')!;
    mkdirSync(join(data, 'models', vad.name), { recursive: true });
    copyFileSync(SHARED_SILERO, join(data, 'models', vad.name, vad.files[0]!.file));

    const table = await cli.run(['models', 'list', '--verify', '--data', data], { cwd });
    expect(table.code).toBe(0);
    expect(rowOf(table.stdout, vad.name)?.[1]).toBe('verified');
    const json = await cli.run(['models', 'list', '--verify', '--json', '--data', data], { cwd });
    const model = (JSON.parse(json.stdout) as StoredModel[]).find((entry) => entry.name === vad.name)!;
    expect(model).toMatchObject({ status: 'present', files: [{ verified: true }] });
    expect(model.files[0]!.problem).toBeUndefined();
  });
});
