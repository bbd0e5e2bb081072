/** One file of a catalog model, as published in its Hugging Face repository. */
export interface CatalogFile {
  /** Path of the file inside the repository. */
  file: string;
  /** Size in bytes; undefined where no source could pin it (the hub's size header is checked instead). */
  size: number | undefined;
  /**
   * SHA-256 of the content (what Hugging Face shows as the LFS oid). Undefined where no source could be
   * cross-checked; the download is then verified against the hub's `X-Linked-Etag` header instead.
   */
  sha256: string | undefined;
}

/** A small multimodal GGUF model known to work with the embedded engine: weights plus vision projector. */
export interface CatalogModel {
  /** The name used in `ocular models pull <name>` and in a config entry's `model`. */
  name: string;
  title: string;
  /** Hugging Face repository, `owner/name`. */
  repo: string;
  license: string;
  model: CatalogFile;
  /** The multimodal projector (image input); none for an embedding model. */
  mmproj?: CatalogFile | undefined;
  /**
   * Set for a text embedding model (for `indexing.embeddingModel`): a config entry serving it needs
   * `"embedding": true` and this pooling.
   */
  embedding?: { pooling: 'cls' | 'mean' | 'last'; dimensions: number } | undefined;
}

/*
 * Checksums and sizes: Hugging Face cannot be reached from where this was written, so each value was taken from
 * public projects that pin these exact files (download scripts and manifests that verify them), and kept only
 * where at least two independent sources agree. The quantisations are the ones `llama-server -hf` picks by default.
 */
export const CATALOG: readonly CatalogModel[] = Object.freeze([
  {
    name: 'smolvlm2-256m',
    title: 'SmolVLM2 256M Video Instruct (Q8_0)',
    repo: 'ggml-org/SmolVLM2-256M-Video-Instruct-GGUF',
    license: 'Apache-2.0',
    model: {
      file: 'SmolVLM2-256M-Video-Instruct-Q8_0.gguf',
      size: 175_056_352,
      sha256: 'af7ce9951a2f46c4f6e5def253e5b896ca5e417010e7a9949fdc9e5175c27767',
    },
    // Public sources disagree on this projector's digest, so none is pinned: the hub's X-Linked-Etag is checked.
    mmproj: { file: 'mmproj-SmolVLM2-256M-Video-Instruct-Q8_0.gguf', size: 103_771_680, sha256: undefined },
  },
  {
    name: 'smolvlm2-500m',
    title: 'SmolVLM2 500M Video Instruct (Q8_0)',
    repo: 'ggml-org/SmolVLM2-500M-Video-Instruct-GGUF',
    license: 'Apache-2.0',
    model: {
      file: 'SmolVLM2-500M-Video-Instruct-Q8_0.gguf',
      size: 436_808_704,
      sha256: '6f67b8036b2469fcd71728702720c6b51aebd759b78137a8120733b4d66438bc',
    },
    mmproj: {
      file: 'mmproj-SmolVLM2-500M-Video-Instruct-Q8_0.gguf',
      size: 108_785_184,
      sha256: '921dc7e259f308e5b027111fa185efcbf33db13f6e35749ddf7f5cdb60ef520b',
    },
  },
  {
    name: 'smolvlm2-2.2b',
    title: 'SmolVLM2 2.2B Instruct (Q4_K_M)',
    repo: 'ggml-org/SmolVLM2-2.2B-Instruct-GGUF',
    license: 'Apache-2.0',
    model: {
      file: 'SmolVLM2-2.2B-Instruct-Q4_K_M.gguf',
      size: 1_112_602_656,
      sha256: '0cf76814555b8665149075b74ab6b5c1d428ea1d3d01c1918c12012e8d7c9f58',
    },
    mmproj: {
      file: 'mmproj-SmolVLM2-2.2B-Instruct-Q8_0.gguf',
      size: 592_523_200,
      sha256: 'ae07ea1facd07dd3230c4483b63e8cda96c6944ad2481f33d531f79e892dd024',
    },
  },
  {
    name: 'qwen2.5-vl-3b',
    title: 'Qwen2.5-VL 3B Instruct (Q4_K_M)',
    repo: 'ggml-org/Qwen2.5-VL-3B-Instruct-GGUF',
    license: 'Qwen Research License',
    model: {
      file: 'Qwen2.5-VL-3B-Instruct-Q4_K_M.gguf',
      size: 1_929_901_056,
      sha256: 'd02fe9b69ad8cadbbd228e387667af66612c44bed29ffc8eb1e7caf9ac486c12',
    },
    mmproj: {
      file: 'mmproj-Qwen2.5-VL-3B-Instruct-Q8_0.gguf',
      size: 844_757_728,
      sha256: '980c9b2f78c04e6cff93d277ada09e768394f112d75db3b4e9dea8a69f9fb904',
    },
  },
  {
    name: 'gemma-3-4b',
    title: 'Gemma 3 4B Instruct (Q4_K_M)',
    repo: 'ggml-org/gemma-3-4b-it-GGUF',
    license: 'Gemma Terms of Use',
    model: {
      file: 'gemma-3-4b-it-Q4_K_M.gguf',
      size: 2_489_757_856,
      sha256: '882e8d2db44dc554fb0ea5077cb7e4bc49e7342a1f0da57901c0802ea21a0863',
    },
    mmproj: {
      file: 'mmproj-model-f16.gguf',
      size: 851_251_104,
      sha256: '8c0fb064b019a6972856aaae2c7e4792858af3ca4561be2dbf649123ba6c40cb',
    },
  },
  // Text embedding models for semantic search. Public pins of these files disagree (bge-small's q8_0 is listed
  // with two different digests), so nothing is pinned: the download is checked against the hub's X-Linked-Etag
  // and size headers, as for `ocular models pull owner/repo:file`.
  {
    name: 'bge-small-en-v1.5',
    title: 'BGE small English v1.5 (Q8_0, text embeddings, 384 dimensions)',
    repo: 'CompendiumLabs/bge-small-en-v1.5-gguf',
    license: 'MIT',
    model: { file: 'bge-small-en-v1.5-q8_0.gguf', size: undefined, sha256: undefined },
    embedding: { pooling: 'cls', dimensions: 384 },
  },
  {
    name: 'nomic-embed-text-v1.5',
    title: 'Nomic Embed Text v1.5 (Q8_0, text embeddings, 768 dimensions)',
    repo: 'nomic-ai/nomic-embed-text-v1.5-GGUF',
    license: 'Apache-2.0',
    model: { file: 'nomic-embed-text-v1.5.Q8_0.gguf', size: undefined, sha256: undefined },
    embedding: { pooling: 'mean', dimensions: 768 },
  },
] satisfies CatalogModel[]);

/** The model served when there is no config file: small enough for any machine, and it sees images. */
export const DEFAULT_CATALOG_MODEL = 'smolvlm2-500m';

export function findCatalogModel(name: string): CatalogModel | undefined {
  return CATALOG.find((entry) => entry.name === name);
}
