import { join } from 'node:path';

/**
 * Weights of the offline analyzers (`src/perception`): small ONNX files and their label lists, published in
 * GitHub repositories rather than on the Hugging Face hub, so they are fetched from a fixed URL at a pinned
 * commit instead of through `hubFileUrl`.
 */

/** The part a file plays for its analyzer; it names the path in `analyzerModelPaths` (`model` -> `modelPath`). */
export type AnalyzerFileRole = 'model' | 'labels';

export interface AnalyzerFile {
  role: AnalyzerFileRole;
  /** File name under `<models>/<analyzer name>/`. */
  file: string;
  /**
   * Where it is downloaded from: `github.com/<owner>/<repo>/raw/<commit>/<path>`, the link behind GitHub's "Raw"
   * button, which redirects to `raw.githubusercontent.com` (or to GitHub's LFS media host). `downloadFile` reads
   * a 64-hex ETag on the first answer as the file's sha256 (the Hugging Face convention); GitHub does not
   * document what its raw ETags hash, so the first answer is kept to GitHub's redirect, and the file is checked
   * against `sha256` below once downloaded.
   */
  url: string;
  /** Size in bytes. */
  size: number;
  /** SHA-256 of the content. */
  sha256: string;
}

export interface AnalyzerModel {
  /** The name used in `ocular models pull <name>`, and the folder under the models directory. */
  name: string;
  title: string;
  /** The repository the weights come from, `owner/name` on GitHub. */
  repo: string;
  license: string;
  files: readonly AnalyzerFile[];
}

/*
 * Sizes and digests were measured on the files at these exact commits (the copies the test suite runs against;
 * see each folder's SOURCE.txt in the shared test models). Pinning a commit keeps a moved branch from serving
 * something else.
 */
export const ANALYZER_CATALOG = Object.freeze([
  {
    name: 'silero-vad',
    title: 'Silero VAD v5 (ONNX, 16 kHz)',
    repo: 'snakers4/silero-vad',
    license: 'MIT',
    files: [
      {
        role: 'model',
        file: 'silero_vad.onnx',
        url: 'https://github.com/snakers4/silero-vad/raw/806dcba3f0b5d95282d0889a074954a2f8c6397b/src/silero_vad/data/silero_vad.onnx',
        size: 2_327_524,
        sha256: '1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3',
      },
    ],
  },
  {
    name: 'mobilenetv2',
    title: 'MobileNetV2 ImageNet-1k classifier (ONNX Model Zoo, int8)',
    // The Model Zoo serves its files through Git LFS, and copies under this file name differ in size from project
    // to project, so the file is pinned at a commit of a repository that holds the int8 zoo export as a plain
    // git file (the copy the tests were verified on).
    repo: 'Lawrence-lugs/MARP',
    license: 'Apache-2.0 (weights); labels public domain',
    files: [
      {
        role: 'model',
        file: 'mobilenetv2-12-int8.onnx',
        url: 'https://github.com/Lawrence-lugs/MARP/raw/92ce10f77c2359b68699e6fe9a16d09c106532c8/onnx_models/mobilenetv2-12-int8.onnx',
        size: 3_655_640,
        sha256: '83530ad811bc31d2b60a5599a21265a5057608c9b044b4ee758cc22f2309f54f',
      },
      {
        role: 'labels',
        file: 'imagenet-simple-labels.json',
        url: 'https://github.com/anishathalye/imagenet-simple-labels/raw/0f6e9efda54a9d35ab6de6b6dda1581aad18b3d6/imagenet-simple-labels.json',
        size: 14_209,
        sha256: '987705581d9446328498f950454a1cc7d8dfc578a8243d8bfdcd2588a6905aae',
      },
    ],
  },
] as const satisfies readonly AnalyzerModel[]);

export type AnalyzerModelName = (typeof ANALYZER_CATALOG)[number]['name'];

/** `{ modelPath }`, plus `labelsPath` for a model that ships a label list. */
export type AnalyzerModelPaths<Name extends AnalyzerModelName> = {
  [Role in Extract<(typeof ANALYZER_CATALOG)[number], { name: Name }>['files'][number]['role'] as `${Role}Path`]: string;
};

export function findAnalyzerModel(name: string): AnalyzerModel | undefined {
  return ANALYZER_CATALOG.find((entry) => entry.name === name);
}

export function isAnalyzerModelName(name: string): name is AnalyzerModelName {
  return findAnalyzerModel(name) !== undefined;
}

/** Where a pulled file lives: `<modelsDir>/<name>/<file>`. */
export function analyzerFilePath(modelsDir: string, model: Pick<AnalyzerModel, 'name'>, file: Pick<AnalyzerFile, 'file'>): string {
  return join(modelsDir, model.name, file.file);
}

/**
 * Where an analyzer's files live under the models directory once pulled (whether or not they are there):
 * `analyzerModelPaths(dir, 'mobilenetv2')` is `{ modelPath, labelsPath }`, ready for `createMobileNetLabeler`.
 */
export function analyzerModelPaths<Name extends AnalyzerModelName>(modelsDir: string, name: Name): AnalyzerModelPaths<Name> {
  const model = findAnalyzerModel(name)!;
  return Object.fromEntries(
    model.files.map((file) => [`${file.role}Path`, analyzerFilePath(modelsDir, model, file)]),
  ) as AnalyzerModelPaths<Name>;
}
