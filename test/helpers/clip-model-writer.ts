// A tiny random-weight CLIP-style model in the Hugging Face ONNX export layout, for tests of the code path
// (loading, preprocessing, tokenising, normalising, searching): `onnx/vision_model.onnx` projects the pixels
// linearly (so the same picture, even re-encoded, lands on nearly the same vector, and different pictures do
// not), `onnx/text_model.onnx` sums token embeddings under the attention mask. The ONNX ModelProto is encoded
// here by hand: a few nodes need only a few protobuf fields.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

type Field = Buffer;

function varint(value: number | bigint): Buffer {
  let rest = BigInt.asUintN(64, BigInt(value));
  const bytes: number[] = [];
  do {
    let byte = Number(rest & 0x7fn);
    rest >>= 7n;
    if (rest > 0n) byte |= 0x80;
    bytes.push(byte);
  } while (rest > 0n);
  return Buffer.from(bytes);
}

const key = (field: number, wire: number): Buffer => varint((field << 3) | wire);
const int = (field: number, value: number | bigint): Field => Buffer.concat([key(field, 0), varint(value)]);
const bytes = (field: number, value: Buffer | string): Field => {
  const data = typeof value === 'string' ? Buffer.from(value, 'utf8') : value;
  return Buffer.concat([key(field, 2), varint(data.length), data]);
};
const message = (field: number, ...parts: Field[]): Field => bytes(field, Buffer.concat(parts));

const FLOAT = 1;
const INT64 = 7;

/** TensorProto: dims (1), data_type (2), name (8), raw_data (9). */
function tensor(field: number, name: string, type: number, dims: readonly number[], raw: Buffer): Field {
  return message(field, ...dims.map((dim) => int(1, dim)), int(2, type), bytes(8, name), bytes(9, raw));
}

/** ValueInfoProto: name (1), type (2) = TypeProto { tensor_type (1) { elem_type (1), shape (2) { dim (1) } } }. */
function valueInfo(field: number, name: string, type: number, dims: ReadonlyArray<number | string>): Field {
  const shape = dims.map((dim) => message(1, typeof dim === 'number' ? int(1, dim) : bytes(2, dim)));
  return message(field, bytes(1, name), message(2, message(1, int(1, type), message(2, ...shape))));
}

/** AttributeProto: name (1), i (3), ints (8), type (20): INT = 2, INTS = 7. */
function intAttribute(name: string, value: number): Field {
  return message(5, bytes(1, name), int(3, value), int(20, 2));
}
function intsAttribute(name: string, values: readonly number[]): Field {
  return message(5, bytes(1, name), ...values.map((value) => int(8, value)), int(20, 7));
}

/** NodeProto: input (1), output (2), name (3), op_type (4), attribute (5). */
function node(op: string, inputs: readonly string[], outputs: readonly string[], ...attributes: Field[]): Field {
  return message(
    1,
    ...inputs.map((input) => bytes(1, input)),
    ...outputs.map((output) => bytes(2, output)),
    bytes(3, `${op}_${outputs[0]}`),
    bytes(4, op),
    ...attributes,
  );
}

/** ModelProto: ir_version (1), producer_name (2), graph (7), opset_import (8) { version (2) }. */
function model(graph: Field[]): Buffer {
  return Buffer.concat([int(1, 7), bytes(2, 'ocular-test'), message(7, bytes(2, 'graph'), ...graph), message(8, int(2, 11))]);
}

/** Seeded uniform numbers in -1..1 (mulberry32). */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1;
  };
}

function floats(count: number, next: () => number): Buffer {
  const values = Float32Array.from({ length: count }, next);
  return Buffer.from(values.buffer);
}

export interface ClipFixtureOptions {
  /** The crop the vision model reads (width = height). @default 16 */
  imageSize?: number;
  /** Embedding dimensions. @default 24 */
  dimensions?: number;
  /** Seeds the weights. @default 1 */
  seed?: number;
}

/** Words of the fixture tokenizer's vocabulary (others are `[UNK]`). */
export const CLIP_FIXTURE_WORDS = ['red', 'green', 'blue', 'square', 'circle', 'stripes', 'picture', 'of', 'a'];

/** Writes the model folder (`onnx/*.onnx`, tokenizer.json, tokenizer_config.json, preprocessor_config.json) into `dir`. */
export function writeClipFixture(dir: string, options: ClipFixtureOptions = {}): string {
  const size = options.imageSize ?? 16;
  const dimensions = options.dimensions ?? 24;
  const next = random(options.seed ?? 1);
  const pixels = 3 * size * size;
  mkdirSync(join(dir, 'onnx'), { recursive: true });

  const shape = Buffer.from(BigInt64Array.from([0n, -1n]).buffer);
  writeFileSync(
    join(dir, 'onnx', 'vision_model.onnx'),
    model([
      node('Reshape', ['pixel_values', 'flat_shape'], ['flat']),
      node('MatMul', ['flat', 'projection'], ['image_embeds']),
      tensor(5, 'flat_shape', INT64, [2], shape),
      tensor(5, 'projection', FLOAT, [pixels, dimensions], floats(pixels * dimensions, next)),
      valueInfo(11, 'pixel_values', FLOAT, ['batch', 3, size, size]),
      valueInfo(12, 'image_embeds', FLOAT, ['batch', dimensions]),
    ]),
  );

  const vocabulary = ['[PAD]', '[UNK]', '<start>', '<end>', ...CLIP_FIXTURE_WORDS];
  writeFileSync(
    join(dir, 'onnx', 'text_model.onnx'),
    model([
      node('Gather', ['token_embedding', 'input_ids'], ['tokens'], intAttribute('axis', 0)),
      node('Cast', ['attention_mask'], ['mask_float'], intAttribute('to', FLOAT)),
      node('Unsqueeze', ['mask_float'], ['mask'], intsAttribute('axes', [2])),
      node('Mul', ['tokens', 'mask'], ['masked']),
      node('ReduceSum', ['masked'], ['text_embeds'], intsAttribute('axes', [1]), intAttribute('keepdims', 0)),
      tensor(5, 'token_embedding', FLOAT, [vocabulary.length, dimensions], floats(vocabulary.length * dimensions, next)),
      valueInfo(11, 'input_ids', INT64, ['batch', 'sequence']),
      valueInfo(11, 'attention_mask', INT64, ['batch', 'sequence']),
      valueInfo(12, 'text_embeds', FLOAT, ['batch', dimensions]),
    ]),
  );

  writeFileSync(
    join(dir, 'tokenizer.json'),
    JSON.stringify({
      version: '1.0',
      truncation: null,
      padding: null,
      added_tokens: vocabulary.slice(0, 4).map((content, id) => ({
        id,
        content,
        single_word: false,
        lstrip: false,
        rstrip: false,
        normalized: false,
        special: true,
      })),
      normalizer: { type: 'Lowercase' },
      pre_tokenizer: { type: 'Whitespace' },
      post_processor: {
        type: 'TemplateProcessing',
        single: [
          { SpecialToken: { id: '<start>', type_id: 0 } },
          { Sequence: { id: 'A', type_id: 0 } },
          { SpecialToken: { id: '<end>', type_id: 0 } },
        ],
        pair: [{ Sequence: { id: 'A', type_id: 0 } }, { Sequence: { id: 'B', type_id: 1 } }],
        special_tokens: {
          '<start>': { id: '<start>', ids: [2], tokens: ['<start>'] },
          '<end>': { id: '<end>', ids: [3], tokens: ['<end>'] },
        },
      },
      decoder: null,
      model: { type: 'WordLevel', vocab: Object.fromEntries(vocabulary.map((word, id) => [word, id])), unk_token: '[UNK]' },
    }),
  );
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ model_max_length: 8, unk_token: '[UNK]', pad_token: '[PAD]' }));
  writeFileSync(
    join(dir, 'preprocessor_config.json'),
    JSON.stringify({
      do_resize: true,
      size: { shortest_edge: size },
      do_center_crop: true,
      crop_size: { height: size, width: size },
      do_rescale: true,
      rescale_factor: 1 / 255,
      do_normalize: true,
      image_mean: [0.48145466, 0.4578275, 0.40821073],
      image_std: [0.26862954, 0.26130258, 0.27577711],
    }),
  );
  return dir;
}
