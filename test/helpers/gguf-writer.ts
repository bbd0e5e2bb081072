/**
 * A GGUF v3 writer for tests: tiny random-weight llama models (and a matching vision projector) that llama.cpp
 * loads and samples from, written at test time so no weights are committed. Random weights give nonsense text, which is all that loading, sampling,
 * stop strings, max_tokens, streaming and cancellation need. Layout and metadata keys follow the GGUF spec
 * (ggml `docs/gguf.md`) and mirror llama2.c's stories260K conversion.
 */
import { writeFileSync } from 'node:fs';

/** GGUF metadata value types (gguf.md, `gguf_metadata_value_type`). */
const VALUE_TYPE = { uint32: 4, int32: 5, float32: 6, bool: 7, string: 8, array: 9 } as const;
/** ggml tensor type of every tensor written here. */
const GGML_TYPE_F32 = 0;
/** `general.alignment` default: tensor data offsets are multiples of this. */
const ALIGNMENT = 32;

export type GgufValue =
  | { type: 'uint32' | 'int32' | 'float32'; value: number }
  | { type: 'bool'; value: boolean }
  | { type: 'string'; value: string }
  | { type: 'array'; itemType: 'int32' | 'float32' | 'string'; value: ReadonlyArray<number | string> };

export interface GgufTensor {
  name: string;
  /** Dimensions, fastest-varying first (ggml `ne`): a `[n_embd, n_vocab]` matrix has rows of `n_embd`. */
  dims: readonly number[];
  data: Float32Array;
}

/** Little-endian byte sink that grows as it is written. */
class ByteWriter {
  #buffer = Buffer.alloc(1 << 16);
  #length = 0;

  get length(): number {
    return this.#length;
  }

  #reserve(bytes: number): void {
    if (this.#length + bytes <= this.#buffer.length) return;
    const grown = Buffer.alloc(Math.max(this.#buffer.length * 2, this.#length + bytes));
    this.#buffer.copy(grown, 0, 0, this.#length);
    this.#buffer = grown;
  }

  u32(value: number): void {
    this.#reserve(4);
    this.#length = this.#buffer.writeUInt32LE(value, this.#length);
  }

  i32(value: number): void {
    this.#reserve(4);
    this.#length = this.#buffer.writeInt32LE(value, this.#length);
  }

  f32(value: number): void {
    this.#reserve(4);
    this.#length = this.#buffer.writeFloatLE(value, this.#length);
  }

  u64(value: number): void {
    this.#reserve(8);
    this.#length = this.#buffer.writeBigUInt64LE(BigInt(value), this.#length);
  }

  bytes(data: Uint8Array): void {
    this.#reserve(data.length);
    this.#buffer.set(data, this.#length);
    this.#length += data.length;
  }

  /** GGUF string: u64 byte length, then UTF-8 without a terminator. */
  string(value: string): void {
    const bytes = Buffer.from(value, 'utf8');
    this.u64(bytes.length);
    this.bytes(bytes);
  }

  padTo(alignment: number): void {
    const padding = (alignment - (this.#length % alignment)) % alignment;
    this.bytes(new Uint8Array(padding));
  }

  toBuffer(): Buffer {
    return this.#buffer.subarray(0, this.#length);
  }
}

function writeValue(out: ByteWriter, entry: GgufValue): void {
  switch (entry.type) {
    case 'uint32':
      return out.u32(entry.value);
    case 'int32':
      return out.i32(entry.value);
    case 'float32':
      return out.f32(entry.value);
    case 'bool':
      return out.bytes(Uint8Array.of(entry.value ? 1 : 0));
    case 'string':
      return out.string(entry.value);
    case 'array':
      out.u32(VALUE_TYPE[entry.itemType]);
      out.u64(entry.value.length);
      for (const item of entry.value) {
        if (entry.itemType === 'string') out.string(String(item));
        else if (entry.itemType === 'int32') out.i32(Number(item));
        else out.f32(Number(item));
      }
  }
}

/** Serialises a GGUF v3 file: header, metadata, tensor infos, then F32 tensor data at 32-byte aligned offsets. */
export function buildGguf(metadata: ReadonlyArray<readonly [string, GgufValue]>, tensors: readonly GgufTensor[]): Buffer {
  const out = new ByteWriter();
  out.bytes(Buffer.from('GGUF', 'ascii'));
  out.u32(3);
  out.u64(tensors.length);
  out.u64(metadata.length);
  for (const [key, entry] of metadata) {
    out.string(key);
    out.u32(VALUE_TYPE[entry.type]);
    writeValue(out, entry);
  }
  let offset = 0;
  for (const tensor of tensors) {
    const elements = tensor.dims.reduce((product, dim) => product * dim, 1);
    if (elements !== tensor.data.length)
      throw new Error(`${tensor.name}: dims ${tensor.dims.join('x')} do not match ${tensor.data.length} values`);
    out.string(tensor.name);
    out.u32(tensor.dims.length);
    for (const dim of tensor.dims) out.u64(dim);
    out.u32(GGML_TYPE_F32);
    out.u64(offset);
    offset += Math.ceil((elements * 4) / ALIGNMENT) * ALIGNMENT;
  }
  out.padTo(ALIGNMENT);
  for (const tensor of tensors) {
    out.bytes(new Uint8Array(tensor.data.buffer, tensor.data.byteOffset, tensor.data.byteLength));
    out.padTo(ALIGNMENT);
  }
  return out.toBuffer();
}

export interface TinyLlamaOptions {
  /** @default 64 */
  embeddingLength?: number;
  /** @default 2 */
  blockCount?: number;
  /** @default 4 */
  headCount?: number;
  /** @default 2 */
  headCountKv?: number;
  /** @default 128 */
  feedForwardLength?: number;
  /** The trained context (`llama.context_length`). @default 4096 */
  contextLength?: number;
  /** Seeds the weights: the same seed writes the same file. @default 1 */
  seed?: number;
  /** A Jinja chat template stored as `tokenizer.chat_template`; none by default (like stories260K). */
  chatTemplate?: string;
  /** Never sample `</s>`: generation runs to `max_tokens` (for length, cancellation and concurrency tests). @default false */
  endless?: boolean;
  /** Never sample `<unk>`, `<s>` or bytes >= 0x80, so the text is printable ASCII and control characters. @default false */
  asciiOnly?: boolean;
}

/** Logit weight that keeps a suppressed token from ever being sampled (see the bias channel below). */
const SUPPRESS_WEIGHT = -60;
/** Value of the bias channel in every token embedding. */
const BIAS_CHANNEL_VALUE = 4;

/** Words added to the vocabulary so the random text has some whole-word tokens besides bytes. */
const WORDS = [
  'the',
  'and',
  'to',
  'was',
  'he',
  'she',
  'it',
  'cat',
  'dog',
  'sun',
  'day',
  'big',
  'red',
  'ran',
  'saw',
  'Once',
  'upon',
  'time',
];

/**
 * The vocabulary of a SentencePiece (`llama`) tokenizer: `<unk>`, `<s>`, `</s>`, the 256 byte-fallback tokens
 * (llama.cpp looks every one up when it tokenizes text it has no piece for) and a few pieces. Like a real model,
 * random sampling can emit a lone byte >= 0x80; the binding renders broken UTF-8 as U+FFFD.
 */
function buildVocabulary(): { tokens: string[]; scores: number[]; types: number[] } {
  // llama_token_type: 1 normal, 2 unknown, 3 control, 6 byte.
  const tokens = ['<unk>', '<s>', '</s>'];
  const types = [2, 3, 3];
  for (let byte = 0; byte < 256; byte++) {
    tokens.push(`<0x${byte.toString(16).toUpperCase().padStart(2, '0')}>`);
    types.push(6);
  }
  const pieces = [
    ...'abcdefghijklmnopqrstuvwxyz'.split('').map((letter) => `\u2581${letter}`),
    ...WORDS.map((word) => `\u2581${word}`),
    '\u2581',
    '.',
    ',',
  ];
  for (const piece of pieces) {
    tokens.push(piece);
    types.push(1);
  }
  // Scores rank merges for SentencePiece: longer pieces first, bytes last.
  const scores = tokens.map((token, index) => (types[index] === 1 ? -index + [...token].length * 100 : 0));
  return { tokens, scores, types };
}

/** mulberry32: a small deterministic PRNG, so generated files are identical across runs. */
function createRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

/** A tiny llama model (~0.2 MB with the defaults) with random weights. */
export function buildTinyLlamaGguf(options: TinyLlamaOptions = {}): Buffer {
  const embedding = options.embeddingLength ?? 64;
  const blocks = options.blockCount ?? 2;
  const heads = options.headCount ?? 4;
  const headsKv = options.headCountKv ?? 2;
  const feedForward = options.feedForwardLength ?? 128;
  const headDim = embedding / heads;
  if (!Number.isInteger(headDim)) throw new Error('embeddingLength must be a multiple of headCount');
  const vocabulary = buildVocabulary();
  const vocabSize = vocabulary.tokens.length;
  const random = createRandom(options.seed ?? 1);
  const uniform = (count: number, scale: number): Float32Array => Float32Array.from({ length: count }, () => (random() * 2 - 1) * scale);
  const ones = (count: number): Float32Array => new Float32Array(count).fill(1);

  const metadata: Array<readonly [string, GgufValue]> = [
    ['general.architecture', { type: 'string', value: 'llama' }],
    ['general.name', { type: 'string', value: 'ocular-test-tiny-llama' }],
    ['general.alignment', { type: 'uint32', value: ALIGNMENT }],
    ['llama.context_length', { type: 'uint32', value: options.contextLength ?? 4096 }],
    ['llama.embedding_length', { type: 'uint32', value: embedding }],
    ['llama.block_count', { type: 'uint32', value: blocks }],
    ['llama.feed_forward_length', { type: 'uint32', value: feedForward }],
    ['llama.attention.head_count', { type: 'uint32', value: heads }],
    ['llama.attention.head_count_kv', { type: 'uint32', value: headsKv }],
    ['llama.rope.dimension_count', { type: 'uint32', value: headDim }],
    ['llama.attention.layer_norm_rms_epsilon', { type: 'float32', value: 1e-5 }],
    ['tokenizer.ggml.model', { type: 'string', value: 'llama' }],
    ['tokenizer.ggml.tokens', { type: 'array', itemType: 'string', value: vocabulary.tokens }],
    ['tokenizer.ggml.scores', { type: 'array', itemType: 'float32', value: vocabulary.scores }],
    ['tokenizer.ggml.token_type', { type: 'array', itemType: 'int32', value: vocabulary.types }],
    ['tokenizer.ggml.unknown_token_id', { type: 'uint32', value: 0 }],
    ['tokenizer.ggml.bos_token_id', { type: 'uint32', value: 1 }],
    ['tokenizer.ggml.eos_token_id', { type: 'uint32', value: 2 }],
    ...(options.chatTemplate === undefined ? [] : [['tokenizer.chat_template', { type: 'string', value: options.chatTemplate }] as const]),
  ];

  // Scales keep activations in a range where sampling is varied but not uniform.
  const tokenEmbedding = uniform(embedding * vocabSize, 1);
  const output = uniform(embedding * vocabSize, 0.5);
  // Suppression uses dimension 0 as a bias channel: every embedding has the same positive value there and no
  // layer writes to it (row 0 of attn_output and ffn_down is zero), so after the final norm it is positive for
  // every position, and a large negative output weight on it rules a token out.
  const suppressed = [
    ...(options.endless ? [2] : []),
    ...(options.asciiOnly ? [0, 1, ...vocabulary.tokens.flatMap((token, id) => (/^<0x[89A-F][0-9A-F]>$/.test(token) ? [id] : []))] : []),
  ];
  const biasChannel = suppressed.length > 0;
  if (biasChannel) {
    for (let token = 0; token < vocabSize; token++) {
      tokenEmbedding[token * embedding] = BIAS_CHANNEL_VALUE;
      output[token * embedding] = 0;
    }
    for (const token of suppressed) output[token * embedding] = SUPPRESS_WEIGHT;
  }
  const withoutRowZero = (data: Float32Array, rowLength: number): Float32Array => (biasChannel ? (data.fill(0, 0, rowLength), data) : data);
  const tensors: GgufTensor[] = [
    { name: 'token_embd.weight', dims: [embedding, vocabSize], data: tokenEmbedding },
    { name: 'output_norm.weight', dims: [embedding], data: ones(embedding) },
    { name: 'output.weight', dims: [embedding, vocabSize], data: output },
  ];
  const kvDim = headDim * headsKv;
  const projection = 1 / Math.sqrt(embedding);
  for (let block = 0; block < blocks; block++) {
    const prefix = `blk.${block}.`;
    tensors.push(
      { name: `${prefix}attn_norm.weight`, dims: [embedding], data: ones(embedding) },
      { name: `${prefix}attn_q.weight`, dims: [embedding, embedding], data: uniform(embedding * embedding, projection) },
      { name: `${prefix}attn_k.weight`, dims: [embedding, kvDim], data: uniform(embedding * kvDim, projection) },
      { name: `${prefix}attn_v.weight`, dims: [embedding, kvDim], data: uniform(embedding * kvDim, projection) },
      {
        name: `${prefix}attn_output.weight`,
        dims: [embedding, embedding],
        data: withoutRowZero(uniform(embedding * embedding, projection), embedding),
      },
      { name: `${prefix}ffn_norm.weight`, dims: [embedding], data: ones(embedding) },
      { name: `${prefix}ffn_gate.weight`, dims: [embedding, feedForward], data: uniform(embedding * feedForward, projection) },
      { name: `${prefix}ffn_up.weight`, dims: [embedding, feedForward], data: uniform(embedding * feedForward, projection) },
      {
        name: `${prefix}ffn_down.weight`,
        dims: [feedForward, embedding],
        data: withoutRowZero(uniform(feedForward * embedding, 1 / Math.sqrt(feedForward)), feedForward),
      },
    );
  }
  return buildGguf(metadata, tensors);
}

/** Writes {@link buildTinyLlamaGguf} to `path` and returns the path. */
export function writeTinyLlamaGguf(path: string, options: TinyLlamaOptions = {}): string {
  writeFileSync(path, buildTinyLlamaGguf(options));
  return path;
}

export interface TinyProjectorOptions {
  /** Must equal the language model's `embeddingLength`: the projector's output feeds its embeddings. @default 64 */
  textEmbeddingLength?: number;
  /** Side of the square image the encoder sees; with 8-pixel patches, 32 gives 16 image tokens. @default 32 */
  imageSize?: number;
  /** @default 1 */
  seed?: number;
}

/**
 * A tiny random-weight vision projector (mmproj) in the LLaVA layout llama.cpp's mtmd loads: a 2-block ViT
 * (`v.*`) and a 2-layer MLP projector (`mm.0`, `mm.2`, projector type `mlp`). Images go through the real
 * preprocessing and encoder; the embeddings mean nothing, which is all that wiring tests need.
 */
export function buildTinyMmprojGguf(options: TinyProjectorOptions = {}): Buffer {
  const embedding = 32;
  const feedForward = 64;
  const patch = 8;
  const blocks = 2;
  const hidden = 64;
  const text = options.textEmbeddingLength ?? 64;
  const imageSize = options.imageSize ?? 32;
  const positions = (imageSize / patch) ** 2 + 1; // patches plus the class embedding
  const random = createRandom(options.seed ?? 1);
  const uniform = (count: number, scale: number): Float32Array => Float32Array.from({ length: count }, () => (random() * 2 - 1) * scale);
  const ones = (count: number): Float32Array => new Float32Array(count).fill(1);
  const zeros = (count: number): Float32Array => new Float32Array(count);
  const metadata: Array<readonly [string, GgufValue]> = [
    ['general.architecture', { type: 'string', value: 'clip' }],
    ['general.name', { type: 'string', value: 'ocular-test-tiny-mmproj' }],
    ['clip.has_vision_encoder', { type: 'bool', value: true }],
    ['clip.projector_type', { type: 'string', value: 'mlp' }],
    ['clip.use_gelu', { type: 'bool', value: true }],
    ['clip.vision.image_size', { type: 'uint32', value: imageSize }],
    ['clip.vision.patch_size', { type: 'uint32', value: patch }],
    ['clip.vision.embedding_length', { type: 'uint32', value: embedding }],
    ['clip.vision.feed_forward_length', { type: 'uint32', value: feedForward }],
    ['clip.vision.projection_dim', { type: 'uint32', value: text }],
    ['clip.vision.block_count', { type: 'uint32', value: blocks }],
    ['clip.vision.attention.head_count', { type: 'uint32', value: 4 }],
    ['clip.vision.attention.layer_norm_epsilon', { type: 'float32', value: 1e-5 }],
    ['clip.vision.image_mean', { type: 'array', itemType: 'float32', value: [0.5, 0.5, 0.5] }],
    ['clip.vision.image_std', { type: 'array', itemType: 'float32', value: [0.5, 0.5, 0.5] }],
  ];
  const tensors: GgufTensor[] = [
    // Conv2d kernel: [kernel width, kernel height, input channels, output channels].
    { name: 'v.patch_embd.weight', dims: [patch, patch, 3, embedding], data: uniform(patch * patch * 3 * embedding, 0.1) },
    { name: 'v.class_embd', dims: [embedding], data: uniform(embedding, 0.1) },
    { name: 'v.position_embd.weight', dims: [embedding, positions], data: uniform(embedding * positions, 0.1) },
    { name: 'v.pre_ln.weight', dims: [embedding], data: ones(embedding) },
    { name: 'v.pre_ln.bias', dims: [embedding], data: zeros(embedding) },
  ];
  for (let block = 0; block < blocks; block++) {
    const prefix = `v.blk.${block}.`;
    for (const name of ['attn_q', 'attn_k', 'attn_v', 'attn_out']) {
      tensors.push(
        { name: `${prefix}${name}.weight`, dims: [embedding, embedding], data: uniform(embedding * embedding, 0.2) },
        { name: `${prefix}${name}.bias`, dims: [embedding], data: zeros(embedding) },
      );
    }
    for (const name of ['ln1', 'ln2']) {
      tensors.push(
        { name: `${prefix}${name}.weight`, dims: [embedding], data: ones(embedding) },
        { name: `${prefix}${name}.bias`, dims: [embedding], data: zeros(embedding) },
      );
    }
    tensors.push(
      { name: `${prefix}ffn_up.weight`, dims: [embedding, feedForward], data: uniform(embedding * feedForward, 0.2) },
      { name: `${prefix}ffn_up.bias`, dims: [feedForward], data: zeros(feedForward) },
      { name: `${prefix}ffn_down.weight`, dims: [feedForward, embedding], data: uniform(feedForward * embedding, 0.2) },
      { name: `${prefix}ffn_down.bias`, dims: [embedding], data: zeros(embedding) },
    );
  }
  tensors.push(
    { name: 'mm.0.weight', dims: [embedding, hidden], data: uniform(embedding * hidden, 0.2) },
    { name: 'mm.0.bias', dims: [hidden], data: zeros(hidden) },
    { name: 'mm.2.weight', dims: [hidden, text], data: uniform(hidden * text, 0.2) },
    { name: 'mm.2.bias', dims: [text], data: zeros(text) },
  );
  return buildGguf(metadata, tensors);
}

/** Writes {@link buildTinyMmprojGguf} to `path` and returns the path. */
export function writeTinyMmprojGguf(path: string, options: TinyProjectorOptions = {}): string {
  writeFileSync(path, buildTinyMmprojGguf(options));
  return path;
}
