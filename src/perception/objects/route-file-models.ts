/**
 * Lets TensorFlow.js load graph models from `file://` URLs inside one directory.
 *
 * `@vladmandic/human` loads every model with `new tf.GraphModel(url)`, which asks tfjs's IO router registry
 * for a handler. Without `@tensorflow/tfjs-node` (a native build we do not use) the only router is tfjs-core's
 * http(s) one, so a `file://` URL finds no handler and Human logs an error and carries on without the model.
 * Human would then fetch with the global `fetch`, which cannot read `file://` either; patching that would
 * change every fetch in the server. A load router is the narrow fix: tfjs consults it for model loads only,
 * and it answers only for `.json` files under the directory it was given, reading them and the weight files
 * they list from disk.
 */
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import type * as tfjs from '@tensorflow/tfjs-core';
import { z } from 'zod';

/** The part of a tfjs graph model's `model.json` read here (lenient: the rest goes to tfjs unchanged). */
const modelJsonSchema = z.looseObject({
  modelTopology: z.unknown(),
  weightsManifest: z.array(z.looseObject({ paths: z.array(z.string().min(1)), weights: z.array(z.unknown()) })),
});

/** Directories already routed, per tfjs instance (routers cannot be removed, so each is added once). */
const routedDirectories = new WeakMap<object, Set<string>>();

/**
 * Registers (once per directory) a load router with `tf` that serves `file://` model URLs inside `directory`.
 * @param directory a `file://` URL ending in `/`
 */
export function routeFileModels(tf: typeof tfjs, directory: string): void {
  if (!directory.startsWith('file://') || !directory.endsWith('/')) {
    throw new RangeError(`expected a file:// directory URL ending in '/', got ${directory}`);
  }
  let routed = routedDirectories.get(tf.io);
  if (routed === undefined) {
    routed = new Set();
    routedDirectories.set(tf.io, routed);
  }
  if (routed.has(directory)) return;
  routed.add(directory);
  // tfjs skips routers that answer null (IORouterRegistry.getHandlers), though `IORouter` is typed to return
  // a handler.
  tf.io.registerLoadRouter((url) => (isModelIn(url, directory) ? fileModelHandler(tf, url) : (null as unknown as tfjs.io.IOHandler)));
}

function isModelIn(url: string | string[], directory: string): url is string {
  return typeof url === 'string' && url.startsWith(directory) && url.endsWith('.json') && !url.slice(directory.length).includes('..');
}

function fileModelHandler(tf: typeof tfjs, url: string): tfjs.io.IOHandler {
  return {
    async load() {
      const parsed = modelJsonSchema.safeParse(JSON.parse(await readFile(fileURLToPath(url), 'utf8')));
      if (!parsed.success) throw new Error(`${url} is not a tfjs graph model: ${parsed.error.message}`);
      return tf.io.getModelArtifactsForJSON(parsed.data as tfjs.io.ModelJSON, async (manifest) => {
        const weightFiles = manifest.flatMap((group) => group.paths.map((path) => new URL(path, url)));
        const outside = weightFiles.find((file) => !file.href.startsWith(url.slice(0, url.lastIndexOf('/') + 1)));
        if (outside !== undefined) throw new Error(`${url} lists a weight file outside its directory: ${outside.href}`);
        const buffers = await Promise.all(weightFiles.map((file) => readFile(file)));
        const joined = Buffer.concat(buffers);
        const weightData = joined.buffer.slice(joined.byteOffset, joined.byteOffset + joined.byteLength) as ArrayBuffer;
        return [manifest.flatMap((group) => group.weights), weightData];
      });
    },
  };
}
