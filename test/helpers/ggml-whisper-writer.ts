/**
 * A writer for whisper.cpp's legacy ggml model format, for tests: a tiny random-weight English whisper that
 * whisper.cpp loads and runs, written at test time so no weights are committed. The text it produces is
 * nonsense, which is all that loading, transcription, segment mapping and cancellation need.
 *
 * Layout (whisper.cpp `src/whisper.cpp`, `whisper_model_load`; the writer is `models/convert-pt-to-ggml.py`),
 * all little-endian:
 * - magic `0x67676d6c` (`GGML_FILE_MAGIC`, the bytes `lmgg`);
 * - eleven i32 hyperparameters: n_vocab, n_audio_ctx, n_audio_state, n_audio_head, n_audio_layer, n_text_ctx,
 *   n_text_state, n_text_head, n_text_layer, n_mels, ftype;
 * - the mel filterbank: i32 n_mel, i32 n_fft, then n_mel * n_fft f32;
 * - the vocabulary: i32 count, then per token a u32 byte length and the bytes (ids past the count are filled
 *   in by the loader as `[_extra_token_N]`, special and timestamp tokens);
 * - tensors until the end of the file: i32 n_dims, i32 name length, i32 ggml type, n_dims i32 sizes
 *   (fastest-varying first, ggml `ne`), the name, then the data.
 */
import { writeFileSync } from 'node:fs';

const GGML_FILE_MAGIC = 0x67676d6c;
/** ggml tensor types; `ftype` 0 (all f32) makes the loader expect f32 for every tensor, convolutions included. */
const GGML_TYPE_F32 = 0;
/** The English-only vocabulary size (`n_vocab >= 51865` is multilingual): 50257 text + special + 1501 timestamps. */
export const ENGLISH_VOCAB_SIZE = 51864;
/** Mel bins whisper's 400-point FFT gives (`1 + WHISPER_N_FFT / 2`); the loader's filterbank must match it. */
const N_FFT_BINS = 201;

export interface TinyWhisperOptions {
  /** Seed of the weights, so a test gets the same model every run. @default 1 */
  seed?: number;
  /** Width of encoder and decoder (whisper.cpp asserts they are equal). @default 32 */
  nState?: number;
  /** Attention heads; must divide nState. @default 2 */
  nHead?: number;
  /** @default 1 */
  nAudioLayer?: number;
  /** @default 1 */
  nTextLayer?: number;
  /**
   * The first token strings; the loader names the rest. @default printable ASCII, `" "` first. whisper.cpp
   * needs a `" "` token: its blank suppression looks it up with `token_to_id.at(" ")`, which throws without it.
   */
  vocab?: readonly string[];
}

interface Tensor {
  name: string;
  /** ggml `ne`: fastest-varying first. */
  dims: readonly number[];
  fill: 'ones' | 'zeros' | 'random';
}

/** mulberry32: small, fast and seeded, so generated models are reproducible. */
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

interface ModelSizes {
  nVocab: number;
  nAudioCtx: number;
  nTextCtx: number;
  nMels: number;
  nState: number;
  nHead: number;
  nAudioLayer: number;
  nTextLayer: number;
}

/** The tensors whisper.cpp creates for these sizes, with the names and shapes its loader checks. */
function listTensors(n: ModelSizes): Tensor[] {
  const s = n.nState;
  const tensors: Tensor[] = [];
  const add = (name: string, dims: readonly number[], fill: Tensor['fill'] = 'random'): void => {
    tensors.push({ name, dims, fill });
  };
  const norm = (prefix: string): void => {
    add(`${prefix}.weight`, [s], 'ones');
    add(`${prefix}.bias`, [s], 'zeros');
  };
  const attention = (prefix: string): void => {
    add(`${prefix}.query.weight`, [s, s]);
    add(`${prefix}.query.bias`, [s], 'zeros');
    add(`${prefix}.key.weight`, [s, s]);
    add(`${prefix}.value.weight`, [s, s]);
    add(`${prefix}.value.bias`, [s], 'zeros');
    add(`${prefix}.out.weight`, [s, s]);
    add(`${prefix}.out.bias`, [s], 'zeros');
  };
  const mlp = (prefix: string): void => {
    norm(`${prefix}.mlp_ln`);
    add(`${prefix}.mlp.0.weight`, [s, 4 * s]);
    add(`${prefix}.mlp.0.bias`, [4 * s], 'zeros');
    add(`${prefix}.mlp.2.weight`, [4 * s, s]);
    add(`${prefix}.mlp.2.bias`, [s], 'zeros');
  };

  add('encoder.positional_embedding', [s, n.nAudioCtx]);
  add('encoder.conv1.weight', [3, n.nMels, s]);
  add('encoder.conv1.bias', [1, s], 'zeros');
  add('encoder.conv2.weight', [3, s, s]);
  add('encoder.conv2.bias', [1, s], 'zeros');
  norm('encoder.ln_post');
  for (let layer = 0; layer < n.nAudioLayer; layer++) {
    const prefix = `encoder.blocks.${layer}`;
    norm(`${prefix}.attn_ln`);
    attention(`${prefix}.attn`);
    mlp(prefix);
  }

  add('decoder.positional_embedding', [s, n.nTextCtx]);
  add('decoder.token_embedding.weight', [s, n.nVocab]);
  norm('decoder.ln');
  for (let layer = 0; layer < n.nTextLayer; layer++) {
    const prefix = `decoder.blocks.${layer}`;
    norm(`${prefix}.attn_ln`);
    attention(`${prefix}.attn`);
    norm(`${prefix}.cross_attn_ln`);
    attention(`${prefix}.cross_attn`);
    mlp(prefix);
  }
  return tensors;
}

/** Triangular filters spread evenly over the FFT bins: not the real mel scale, but positive and well-formed. */
function melFilters(nMels: number): Float32Array {
  const filters = new Float32Array(nMels * N_FFT_BINS);
  const width = N_FFT_BINS / (nMels + 1);
  for (let mel = 0; mel < nMels; mel++) {
    const center = (mel + 1) * width;
    for (let bin = 0; bin < N_FFT_BINS; bin++) {
      filters[mel * N_FFT_BINS + bin] = Math.max(0, 1 - Math.abs(bin - center) / width);
    }
  }
  return filters;
}

/**
 * The bytes of a tiny English whisper model (a few MB): 1500 audio positions (30 s windows, as whisper.cpp's
 * decoding loop assumes), 448 text positions, 80 mel bands, random f32 weights.
 */
export function buildTinyWhisperModel(options: TinyWhisperOptions = {}): Buffer {
  const sizes: ModelSizes = {
    nVocab: ENGLISH_VOCAB_SIZE,
    nAudioCtx: 1500,
    nTextCtx: 448,
    nMels: 80,
    nState: options.nState ?? 32,
    nHead: options.nHead ?? 2,
    nAudioLayer: options.nAudioLayer ?? 1,
    nTextLayer: options.nTextLayer ?? 1,
  };
  if (sizes.nState % sizes.nHead !== 0) throw new Error('nHead must divide nState');
  const random = createRandom(options.seed ?? 1);
  // Printable ASCII as the first ids, so the nonsense decodes to visible text.
  const vocab = (options.vocab ?? Array.from({ length: 95 }, (_, index) => String.fromCharCode(32 + index))).map((token) =>
    Buffer.from(token, 'utf8'),
  );
  const filters = melFilters(sizes.nMels);
  const tensors = listTensors(sizes);

  const headerBytes = 4 + 11 * 4 + 8 + filters.byteLength + 4 + vocab.reduce((total, token) => total + 4 + token.length, 0);
  const tensorBytes = tensors.reduce(
    (total, tensor) => total + 12 + tensor.dims.length * 4 + Buffer.byteLength(tensor.name) + 4 * tensor.dims.reduce((a, b) => a * b, 1),
    0,
  );
  const buffer = Buffer.alloc(headerBytes + tensorBytes);
  let offset = 0;
  const i32 = (value: number): void => {
    offset = buffer.writeInt32LE(value, offset);
  };

  buffer.writeUInt32LE(GGML_FILE_MAGIC, offset);
  offset += 4;
  for (const value of [
    sizes.nVocab,
    sizes.nAudioCtx,
    sizes.nState,
    sizes.nHead,
    sizes.nAudioLayer,
    sizes.nTextCtx,
    sizes.nState,
    sizes.nHead,
    sizes.nTextLayer,
    sizes.nMels,
    0, // ftype: all f32
  ]) {
    i32(value);
  }

  i32(sizes.nMels);
  i32(N_FFT_BINS);
  for (const value of filters) offset = buffer.writeFloatLE(value, offset);

  i32(vocab.length);
  for (const token of vocab) {
    offset = buffer.writeUInt32LE(token.length, offset);
    offset += token.copy(buffer, offset);
  }

  for (const tensor of tensors) {
    const name = Buffer.from(tensor.name, 'utf8');
    i32(tensor.dims.length);
    i32(name.length);
    i32(GGML_TYPE_F32);
    for (const dim of tensor.dims) i32(dim);
    offset += name.copy(buffer, offset);
    const count = tensor.dims.reduce((a, b) => a * b, 1);
    // Uniform in [-0.1, 0.1): small enough that activations stay finite through the layer norms.
    for (let index = 0; index < count; index++) {
      const value = tensor.fill === 'ones' ? 1 : tensor.fill === 'zeros' ? 0 : (random() - 0.5) * 0.2;
      offset = buffer.writeFloatLE(value, offset);
    }
  }
  if (offset !== buffer.length) throw new Error(`model size mismatch: wrote ${offset} of ${buffer.length} bytes`);
  return buffer;
}

/** Writes `buildTinyWhisperModel(options)` to `path`. */
export function writeTinyWhisperModel(path: string, options: TinyWhisperOptions = {}): void {
  writeFileSync(path, buildTinyWhisperModel(options));
}
