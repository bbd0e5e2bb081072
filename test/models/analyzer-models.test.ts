import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import {
  ANALYZER_CATALOG,
  analyzerModelPaths,
  findAnalyzerModel,
  isAnalyzerModelName,
  type AnalyzerModel,
} from '../../src/models/analyzer-catalog.ts';
import { CATALOG } from '../../src/models/catalog.ts';
import { ModelDownloadError } from '../../src/models/download-file.ts';
import { listModels } from '../../src/models/model-store.ts';
import { missingAnalyzerFiles, pullAnalyzerModel } from '../../src/models/pull-analyzer-model.ts';
import { sha256Of, testBytes } from './fake-hub.ts';

const SHARED_MODELS = fileURLToPath(new URL('../../../shared/models/', import.meta.url));
const hasSharedModels = existsSync(SHARED_MODELS);

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function temporaryDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'ocular-analyzer-models-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

interface FakeGitHub {
  url: string;
  /** Paths asked for, in order. */
  requests: string[];
}

/**
 * A local stand-in for github.com: `/{owner}/{repo}/raw/{commit}/{path}` answers 302 to a raw host path, as
 * GitHub does, and the raw host serves the bytes with a 64-hex ETag that is NOT the content's sha256 (GitHub
 * does not document what its raw ETags hash: the download must not take it for a content digest).
 */
async function startFakeGitHub(files: Map<string, Buffer>): Promise<FakeGitHub> {
  const requests: string[] = [];
  const server = createServer((request: IncomingMessage, response: ServerResponse) => {
    const path = decodeURIComponent(new URL(request.url ?? '/', 'http://x').pathname);
    requests.push(path);
    if (path.startsWith('/raw-host/')) {
      const content = files.get(path.slice('/raw-host'.length));
      if (content === undefined) return void response.writeHead(404).end();
      response.writeHead(200, {
        'content-length': content.length,
        etag: `"${sha256Of(Buffer.concat([content, Buffer.from('not the content')]))}"`,
      });
      return void response.end(content);
    }
    if (files.has(path)) return void response.writeHead(302, { location: `/raw-host${path}` }).end();
    response.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(() => new Promise((resolve) => server.close(resolve)));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, requests };
}

/** The model with its URLs moved from github.com to `base`. */
function servedFrom(model: AnalyzerModel, base: string): AnalyzerModel {
  return { ...model, files: model.files.map((file) => ({ ...file, url: file.url.replace('https://github.com', base) })) };
}

describe('analyzer catalog', () => {
  it('names each entry once, apart from the GGUF catalog, with a pinned github.com raw URL per file', () => {
    const names = ANALYZER_CATALOG.map((entry) => entry.name);
    expect(names).toEqual(['silero-vad', 'mobilenetv2']);
    expect(names.filter((name) => CATALOG.some((entry) => entry.name === name))).toEqual([]);
    for (const entry of ANALYZER_CATALOG) {
      expect(entry.files[0]!.url).toContain(`https://github.com/${entry.repo}/raw/`);
      for (const file of entry.files) {
        expect(file.url).toMatch(/^https:\/\/github\.com\/[\w.-]+\/[\w.-]+\/raw\/[0-9a-f]{40}\/[\w./-]+$/);
        expect(file.url.endsWith(`/${file.file}`)).toBe(true);
        expect(file.sha256).toMatch(/^[0-9a-f]{64}$/);
        expect(file.size).toBeGreaterThan(0);
      }
    }
    expect(findAnalyzerModel('mobilenetv2')?.files.map((file) => file.role)).toEqual(['model', 'labels']);
    expect(findAnalyzerModel('smolvlm2-500m')).toBeUndefined();
    expect(isAnalyzerModelName('silero-vad')).toBe(true);
    expect(isAnalyzerModelName('whisper')).toBe(false);
  });

  it('places the files in one folder per analyzer under the models directory', () => {
    const dir = join('/data', 'models');
    expect(analyzerModelPaths(dir, 'silero-vad')).toEqual({ modelPath: join(dir, 'silero-vad', 'silero_vad.onnx') });
    expect(analyzerModelPaths(dir, 'mobilenetv2')).toEqual({
      modelPath: join(dir, 'mobilenetv2', 'mobilenetv2-12-int8.onnx'),
      labelsPath: join(dir, 'mobilenetv2', 'imagenet-simple-labels.json'),
    });
  });
});

describe('pullAnalyzerModel', () => {
  const model: AnalyzerModel = {
    name: 'tiny-analyzer',
    title: 'test',
    repo: 'test-org/weights',
    license: 'MIT',
    files: [
      { role: 'model', file: 'tiny.onnx', url: '', size: 0, sha256: '' },
      { role: 'labels', file: 'labels.json', url: '', size: 0, sha256: '' },
    ],
  };
  const contents = [testBytes(120_000, 3), Buffer.from(JSON.stringify(['cat', 'dog']))];
  const paths = ['/test-org/weights/raw/0123456789abcdef0123456789abcdef01234567/data/tiny.onnx', '/test-org/labels/raw/aa/labels.json'];

  async function serve(): Promise<{ github: FakeGitHub; model: AnalyzerModel }> {
    const github = await startFakeGitHub(new Map(paths.map((path, index) => [path, contents[index]!])));
    return {
      github,
      model: {
        ...model,
        files: model.files.map((file, index) => ({
          ...file,
          url: `${github.url}${paths[index]}`,
          size: contents[index]!.length,
          sha256: sha256Of(contents[index]!),
        })),
      },
    };
  }

  it('downloads every file through the redirect, verified against the catalog, then finds them in place', async () => {
    const { github, model: served } = await serve();
    const modelsDir = temporaryDir();
    expect(missingAnalyzerFiles(modelsDir, served).map((file) => file.file)).toEqual(['tiny.onnx', 'labels.json']);
    const started: string[] = [];
    const received: number[] = [];
    const pulled = await pullAnalyzerModel(served, {
      modelsDir,
      onFile: (file, index, count) => started.push(`${file.file} ${index + 1}/${count}`),
      onProgress: (progress) => received.push(progress.received),
    });
    expect(started).toEqual(['tiny.onnx 1/2', 'labels.json 2/2']);
    expect(received.at(-1)).toBe(contents[1]!.length);
    expect(pulled.map((entry) => entry.download?.verifiedWith)).toEqual([['expected'], ['expected']]);
    for (const [index, entry] of pulled.entries()) {
      expect(entry.path).toBe(join(modelsDir, 'tiny-analyzer', model.files[index]!.file));
      expect(readFileSync(entry.path).equals(contents[index]!)).toBe(true);
    }
    expect(readdirSync(join(modelsDir, 'tiny-analyzer')).sort()).toEqual(['labels.json', 'tiny.onnx']); // no .part or .lock
    expect(missingAnalyzerFiles(modelsDir, served)).toEqual([]);

    const asked = github.requests.length;
    const again = await pullAnalyzerModel(served, { modelsDir, onFile: () => expect.fail('nothing left to download') });
    expect(again.map((entry) => entry.download)).toEqual([undefined, undefined]);
    expect(github.requests.length).toBe(asked);
  });

  it('refuses a file whose bytes do not match the catalog and leaves nothing behind', async () => {
    const { model: served } = await serve();
    const modelsDir = temporaryDir();
    const wrong: AnalyzerModel = { ...served, files: [{ ...served.files[0]!, sha256: sha256Of(Buffer.from('other')) }] };
    const error = await pullAnalyzerModel(wrong, { modelsDir }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(ModelDownloadError);
    expect((error as ModelDownloadError).code).toBe('checksum_mismatch');
    expect(readdirSync(join(modelsDir, 'tiny-analyzer'))).toEqual([]);
  });

  it('reports a missing file as not_found', async () => {
    const { github, model: served } = await serve();
    const gone: AnalyzerModel = { ...served, files: [{ ...served.files[0]!, url: `${github.url}/test-org/weights/raw/ff/missing.onnx` }] };
    const error = await pullAnalyzerModel(gone, { modelsDir: temporaryDir() }).catch((caught: unknown) => caught);
    expect((error as ModelDownloadError).code).toBe('not_found');
  });

  it('leaves pulled analyzers out of the GGUF model listing', async () => {
    const { model: served } = await serve();
    const modelsDir = temporaryDir();
    await pullAnalyzerModel(served, { modelsDir });
    expect(listModels(modelsDir).map((entry) => entry.name)).toEqual(CATALOG.map((entry) => entry.name));
  });

  it.skipIf(!hasSharedModels)('pulls the real catalog files, whose sizes and digests match the pinned copies', async () => {
    const local: Record<string, string> = {
      'silero_vad.onnx': join(SHARED_MODELS, 'silero-vad', 'silero_vad.onnx'),
      'mobilenetv2-12-int8.onnx': join(SHARED_MODELS, 'mobilenetv2-int8', 'mobilenetv2-12-int8.onnx'),
      'imagenet-simple-labels.json': join(SHARED_MODELS, 'mobilenetv2-int8', 'imagenet-simple-labels.json'),
    };
    const files = new Map(
      ANALYZER_CATALOG.flatMap((entry) =>
        entry.files.map((file) => [new URL(file.url).pathname, readFileSync(local[file.file]!)] as const),
      ),
    );
    const github = await startFakeGitHub(files);
    const modelsDir = temporaryDir();
    for (const entry of ANALYZER_CATALOG) {
      const pulled = await pullAnalyzerModel(servedFrom(entry, github.url), { modelsDir });
      expect(pulled.map((file) => file.download?.verifiedWith)).toEqual(entry.files.map(() => ['expected']));
    }
    expect(Object.values(analyzerModelPaths(modelsDir, 'mobilenetv2')).every((path) => existsSync(path))).toBe(true);
    expect(existsSync(analyzerModelPaths(modelsDir, 'silero-vad').modelPath)).toBe(true);
  });
});
