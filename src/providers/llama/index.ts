/**
 * The embedded `llama` provider: GGUF models run by llama.cpp through `@fugood/llama.node`, in a child process.
 *
 * - Loading is lazy (the first request loads; concurrent first requests share that load), eager with
 *   `preload`, and undone after `idleUnloadMs` without requests. Each loaded model runs in an engine process of
 *   its own (see {@link EngineProcess}): llama.cpp writes its log straight to stderr, which would break the
 *   server's JSON log lines, and the binding dereferences a null context when llama.cpp rejects a file (and
 *   llama.cpp aborts on some malformed ones), so a bad download must crash that process, not the server.
 * - Requests run as parallel sequences of one context (the binding's `parallel` API), `parallel` at a time;
 *   `queueSize` more may wait, and the next is refused with a 429.
 * - Prompts use the GGUF's own chat template (Jinja, with llama.cpp's tool-call grammars and parser). A GGUF
 *   without one (base models) gets the plain format of {@link formatPlainPrompt}; templates without tool
 *   support get a JSON tool-call fallback (see `convert-request.ts`).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { open, stat } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { basename } from 'node:path';
import { z } from 'zod';
import { OcularError, validationError } from '../../spec/errors.ts';
import type { PromptMessage, ResponseFormat } from '../../spec/messages.ts';
import { normalizeVector, type Capabilities, type GenerateResult, type LanguageModel, type ProviderRequest } from '../../spec/provider.ts';
import type { StreamPart } from '../../spec/stream-parts.ts';
import {
  baseModelSettingsSchema,
  createToolCallId,
  resolveCapabilities,
  type ProviderDefinition,
} from '../../provider-utils/provider-definition.ts';
import { RequestQueue, type ReleaseSlot } from '../../provider-utils/request-queue.ts';
import {
  buildToolCallSchema,
  buildToolInstructions,
  convertMessages,
  convertSampling,
  convertToolChoice,
  convertTools,
  formatPlainPrompt,
  PLAIN_FORMAT_STOPS,
  SCHEMA_ONLY_TEMPLATE,
  type TemplateMessage,
} from './convert-request.ts';
import { completionResultSchema, convertResult, type CompletionResult, type OutputPlan } from './convert-response.ts';
import { TokenStreamConverter, type CompletionToken } from './convert-stream.ts';
import {
  closedError,
  contextOverflowError,
  describeLoadFailure,
  generationError,
  loadFailedError,
  mediaNotSupportedError,
  missingFileError,
  promptFormatError,
  type ModelLabel,
} from './errors.ts';

export const settingsSchema = baseModelSettingsSchema
  .omit({ apiKey: true, baseUrl: true, headers: true, timeoutMs: true, maxRetries: true, maxConnections: true })
  .extend({
    provider: z.literal('llama'),
    /** A display and catalog name (what `ocular models pull` takes); the file is `modelPath`. @default the file name */
    model: z.string().min(1).optional(),
    /** The GGUF model file. The model manager resolves catalog names to this path before the provider is built. */
    modelPath: z.string().min(1),
    /** A multimodal projector GGUF (mmproj) matching the model: enables image input, and audio when it supports it. */
    mmprojPath: z.string().min(1).optional(),
    /** Tokens of context per sequence, capped by the model's trained context. KV memory grows with `contextSize * parallel`. @default 8192 */
    contextSize: z.int().min(128).max(1_048_576).optional(),
    /** Layers offloaded to a GPU; `auto` offloads all of them when the binding finds a GPU, none otherwise. @default 'auto' */
    gpuLayers: z.union([z.int().min(0).max(100_000), z.literal('auto')]).optional(),
    /** CPU threads for generation. @default the binding's choice (half the cores) */
    threads: z.int().min(1).max(1024).optional(),
    /** Requests generated at once, as parallel sequences of one context. @default 4 with a GPU, 1 on CPU */
    parallel: z.int().min(1).max(64).optional(),
    /** Requests that may wait beyond the running ones; the next gets HTTP 429 with Retry-After. @default 8 */
    queueSize: z.int().min(0).max(100_000).optional(),
    /** Unload the weights after this long without requests; 0 keeps them loaded. @default 600000 (10 min) */
    idleUnloadMs: z.int().min(0).max(2_147_483_647).optional(),
    /** Load when the server starts instead of on the first request. @default false */
    preload: z.boolean().optional(),
    /** Write llama.cpp's own log lines to stderr, as JSON lines at level debug; off, they are dropped (a failed load still quotes the reason). @default false */
    nativeLog: z.boolean().optional(),
    /**
     * The GGUF is an embedding model (bge, nomic-embed, e5...): it turns text into vectors for `indexing.embeddingModel`
     * and does not chat (chat requests to it get 400). @default false
     */
    embedding: z.boolean().optional(),
    /** How an embedding model pools its token vectors into one. @default the GGUF's own `pooling_type` */
    pooling: z.enum(['mean', 'cls', 'last']).optional(),
    /** Which build of the binding to load: the default one (CPU on Linux, Metal on macOS), CUDA or Vulkan. @default 'default' */
    libVariant: z.enum(['default', 'cuda', 'vulkan']).optional(),
  });

export type LlamaSettings = z.infer<typeof settingsSchema>;

export const DEFAULTS = {
  contextSize: 8192,
  queueSize: 8,
  idleUnloadMs: 600_000,
  parallelWithGpu: 4,
  parallelOnCpu: 1,
  /** Layers to offload for "all of them": llama.cpp clamps it to the model's count. */
  allGpuLayers: 999,
  /** Longest a load may take in the engine process (large models on slow disks). */
  loadTimeoutMs: 600_000,
} as const;

// ---- the engine process ----

/** Formatting result of the binding's chat formatter (Jinja templates). */
interface FormattedChat {
  prompt: string;
  chat_format?: number;
  grammar?: string;
  grammar_lazy?: boolean;
  grammar_triggers?: Array<{ type: number; value: string; token: number }>;
  generation_prompt?: string;
  thinking_forced_open?: boolean;
  thinking_start_tag?: string;
  thinking_end_tag?: string;
  preserved_tokens?: string[];
  additional_stops?: string[];
  chat_parser?: string;
}

/** What the engine process learned while loading. */
const loadedSchema = z.object({
  /** Tokens per sequence: `contextSize` capped by the GGUF's `<arch>.context_length`. */
  contextSize: z.number().int().positive(),
  metadata: z.record(z.string(), z.unknown()),
  jinja: z
    .object({
      default: z.boolean().optional(),
      toolUse: z.boolean().optional(),
      defaultCaps: z.object({ tools: z.boolean().optional() }).optional(),
      toolUseCaps: z.object({ tools: z.boolean().optional() }).optional(),
    })
    .optional(),
  vision: z.boolean(),
  audio: z.boolean(),
});

type LoadedEngine = z.infer<typeof loadedSchema>;

/** Messages from the engine process (see ENGINE_SCRIPT). */
const engineMessageSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('result'), id: z.number(), value: z.unknown() }),
  z.object({ type: z.literal('error'), id: z.number(), message: z.string(), stage: z.enum(['model', 'projector']).optional() }),
  z.object({
    type: z.literal('tokens'),
    tokens: z.array(z.tuple([z.number(), z.object({ token: z.string(), content: z.string().optional() })])),
  }),
  z.object({ type: z.literal('stage'), stage: z.enum(['model', 'projector']) }),
]);

/**
 * The engine process: loads the binding and one model, and runs what the parent asks (`call` messages) over the
 * IPC channel. CommonJS, so it runs with `node -e` and no loader. Tokens go back in one message per turn of its
 * event loop rather than one per token: a small model generates faster than single messages are worth sending.
 */
const ENGINE_SCRIPT = `
const binding = require(process.argv[1]);
let context;
let parallelEnabled = false;
const completions = new Map();
const send = (message) => { if (process.connected) process.send(message); };
let tokens = [];
const flush = () => { if (tokens.length > 0) { send({ type: 'tokens', tokens }); tokens = []; } };
const fail = (stage, message) => Object.assign(new Error(message), { stage });
const methods = {
  devices: (variant) => binding.getBackendDevicesInfo(variant),
  async load(options, projector, nParallel) {
    send({ type: 'stage', stage: 'model' });
    const info = await binding.loadLlamaModelInfo(options.model);
    const trained = Number(info[info['general.architecture'] + '.context_length']) || null;
    const contextSize = Math.min(options.n_ctx, trained || options.n_ctx);
    try { context = await binding.loadModel({ ...options, n_ctx: contextSize }); }
    catch (error) { throw fail('model', String((error && error.message) || error)); }
    let support = { vision: false, audio: false };
    if (projector) {
      send({ type: 'stage', stage: 'projector' });
      let ok = false;
      try { ok = context.initMultimodal(projector); support = context.getMultimodalSupport(); }
      catch (error) { throw fail('projector', String((error && error.message) || error)); }
      if (!ok) throw fail('projector', 'the projector could not be initialised');
    }
    // An embedding context answers embedding() calls; the parallel completion slots are for generation.
    if (!options.embedding) {
      await context.parallel.enable({ n_parallel: nParallel });
      parallelEnabled = true;
    }
    const { metadata, chatTemplates } = context.getModelInfo();
    return { contextSize, metadata, jinja: chatTemplates && chatTemplates.jinja, vision: !!support.vision, audio: !!support.audio };
  },
  // JSON over the channel turns an absent template into null; the binding wants undefined for the GGUF's own.
  format: (messages, template, params) => context.ctx.getFormattedChat(messages, template === null ? undefined : template, params),
  async countTokens(text, options) { return (await context.tokenize(text, options)).tokens.length; },
  // embd_normalize 2: each vector scaled to unit length (Euclidean norm). The cache is cleared before each text:
  // the binding reuses the previous prompt's cached prefix, and a pooled vector of only the new tokens differs
  // (the same text measured 0.37 cosine against itself after another one, on a trained model).
  async embed(texts) {
    const vectors = [];
    for (const text of texts) {
      context.clearCache();
      vectors.push(Array.from((await context.embedding(text, { embd_normalize: 2 })).embedding));
    }
    return vectors;
  },
  async complete(id, options, streaming) {
    const entry = { stopped: false, handle: undefined };
    completions.set(id, entry);
    try {
      const onToken = streaming ? (_request, token) => {
        if (tokens.length === 0) setImmediate(flush);
        tokens.push([id, { token: token.token, content: token.content }]);
      } : undefined;
      entry.handle = await context.parallel.completion(options, onToken);
      if (entry.stopped) entry.handle.stop();
      const result = await entry.handle.promise;
      flush();
      return result;
    } finally {
      completions.delete(id);
    }
  },
  async release() {
    if (parallelEnabled) context.parallel.disable();
    await context.release();
    setImmediate(() => process.exit(0));
  },
};
process.on('message', async (message) => {
  if (message.type === 'stop') {
    const entry = completions.get(message.id);
    if (!entry) return;
    entry.stopped = true;
    if (entry.handle) entry.handle.stop();
    return;
  }
  try {
    send({ type: 'result', id: message.id, value: await methods[message.method](...message.args) });
  } catch (error) {
    send({ type: 'error', id: message.id, message: String((error && error.message) || error), stage: error && error.stage });
  }
});
// The server is gone (or let go of this engine): the model goes with it.
process.on('disconnect', () => process.exit(0));
`;

/** Keeps the end of the engine's output: the reason for a failed load or a crash is printed last. */
const ENGINE_LOG_LIMIT = 64 * 1024;
/** How long a released engine may take to exit before it is killed. */
const ENGINE_EXIT_TIMEOUT_MS = 10_000;

/** A call that failed in the engine: its message, and the load stage it failed in. */
class EngineCallError extends Error {
  readonly stage: 'model' | 'projector' | undefined;
  constructor(message: string, stage: 'model' | 'projector' | undefined) {
    super(message);
    this.stage = stage;
  }
}

/** The engine process ended before answering: how it ended, and what it printed last. */
class EngineExitError extends Error {
  readonly detail: string;
  /** The load stage it was in, if it was loading. */
  readonly stage: 'model' | 'projector' | undefined;
  constructor(detail: string, stage: 'model' | 'projector' | undefined) {
    super(`the llama.cpp engine process ended: ${detail}`);
    this.detail = detail;
    this.stage = stage;
  }
}

interface PendingCall {
  resolve(value: unknown): void;
  reject(error: Error): void;
}

/**
 * One model loaded by llama.cpp in a process of its own. llama.cpp writes its log to the process's stderr
 * whatever the binding's log switch says (the switch only adds a copy for JS), and some malformed files abort
 * or crash it; in a child, its output is read here (and only shown with `nativeLog`) and a crash ends that
 * process, not the server. Calls and tokens cross the IPC channel; generation itself is untouched.
 */
class EngineProcess {
  readonly #child: ChildProcess;
  readonly #pending = new Map<number, PendingCall>();
  readonly #onToken = new Map<number, (token: CompletionToken) => void>();
  readonly #exitListeners: Array<() => void> = [];
  #nextId = 1;
  #log = '';
  #stage: 'model' | 'projector' | undefined;
  #exit: EngineExitError | undefined;
  #released = false;
  #loaded = false;
  readonly #exited: Promise<void>;

  constructor(nativeLog: boolean) {
    this.#child = spawn(process.execPath, ['-e', ENGINE_SCRIPT, require.resolve(BINDING_MODULE)], {
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    });
    const lines = createLineReader((line) => {
      if (nativeLog) writeNativeLogLine(line);
    });
    for (const output of [this.#child.stdout!, this.#child.stderr!]) {
      output.setEncoding('utf8').on('data', (text: string) => {
        this.#log = (this.#log + text).slice(-ENGINE_LOG_LIMIT);
        lines(text);
      });
    }
    this.#child.on('message', (message: unknown) => this.#receive(message));
    this.#exited = new Promise((resolve) => {
      // Only a failed start reaches here: sends pass their errors to a callback.
      this.#child.on('error', (error) => this.#ended(`it could not start: ${error.message}`, resolve));
      this.#child.once('close', (code, signal) => {
        const loading = describeLoadFailure(this.#log, { code, signal });
        this.#ended(this.#loaded ? (signal === null ? `it exited with code ${code}` : `it crashed (${signal})`) : loading, resolve);
      });
    });
    // Idle, it does not keep the server's process alive; a call in flight does (see #ref).
    this.#unref();
  }

  /** Runs `method` in the engine. Rejects with EngineCallError when it throws there, EngineExitError when the process ends. */
  call(method: string, ...args: unknown[]): Promise<unknown> {
    return this.#call(this.#nextId++, method, args);
  }

  /** Queues a completion; `onToken`, when given, gets each token as it is generated. */
  complete(
    options: Record<string, unknown>,
    onToken: ((token: CompletionToken) => void) | undefined,
  ): { promise: Promise<unknown>; stop(): void } {
    // The call's id names the completion too: tokens and `stop` carry it.
    const id = this.#nextId++;
    if (onToken) this.#onToken.set(id, onToken);
    const promise = this.#call(id, 'complete', [id, options, onToken !== undefined]);
    return {
      promise,
      // Settles at once, as the binding's own stop does: an aborted stream fails its next read, whatever tokens
      // are still on their way. A closed channel means the process has ended, and with it the completion.
      stop: () => {
        const call = this.#pending.get(id);
        if (call === undefined) return;
        this.#settled(id);
        if (this.#child.connected) this.#child.send({ type: 'stop', id }, () => {});
        call.reject(new Error('Request cancelled'));
      },
    };
  }

  /** Called once, when the process has ended for whatever reason (at once if it has). */
  onExit(listener: () => void): void {
    if (this.#exit) listener();
    else this.#exitListeners.push(listener);
  }

  /** The model is loaded: an end from now on is a crash while serving, not a failed load. */
  markLoaded(): void {
    this.#stage = undefined;
    this.#loaded = true;
  }

  /** Frees the model and ends the process; kills it if it does not end in time. */
  async release(): Promise<void> {
    if (!this.#released && !this.#exit) {
      this.#released = true;
      await this.call('release').catch(() => {});
    }
    const timer = setTimeout(() => this.#child.kill('SIGKILL'), ENGINE_EXIT_TIMEOUT_MS);
    await this.#exited;
    clearTimeout(timer);
  }

  /** Ends the process at once (a load that takes too long). */
  kill(): void {
    this.#child.kill('SIGKILL');
  }

  #call(id: number, method: string, args: unknown[]): Promise<unknown> {
    if (this.#exit) return Promise.reject(this.#exit);
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.#ref();
      this.#child.send({ type: 'call', id, method, args }, (error) => {
        // A closed channel means the process is ending, and its end rejects the call (see #ended).
        if (!error || !this.#child.connected || !this.#pending.has(id)) return;
        this.#settled(id);
        reject(error);
      });
    });
  }

  #receive(raw: unknown): void {
    const parsed = engineMessageSchema.safeParse(raw);
    if (!parsed.success) return;
    const message = parsed.data;
    switch (message.type) {
      case 'tokens':
        for (const [id, token] of message.tokens) this.#onToken.get(id)?.(token);
        return;
      case 'stage':
        this.#stage = message.stage;
        return;
      case 'result':
      case 'error': {
        const call = this.#pending.get(message.id);
        if (!call) return;
        this.#settled(message.id);
        if (message.type === 'result') call.resolve(message.value);
        else call.reject(new EngineCallError(message.message, message.stage));
      }
    }
  }

  #settled(id: number): void {
    this.#pending.delete(id);
    this.#onToken.delete(id);
    if (this.#pending.size === 0) this.#unref();
  }

  #ended(detail: string, resolve: () => void): void {
    if (this.#exit) return;
    this.#exit = new EngineExitError(detail, this.#stage);
    const calls = [...this.#pending.values()];
    this.#pending.clear();
    this.#onToken.clear();
    for (const call of calls) call.reject(this.#exit);
    for (const listener of this.#exitListeners) listener();
    resolve();
  }

  // The channel and the pipes keep the event loop alive; only a call in flight should.
  #ref(): void {
    this.#child.ref();
    this.#child.channel?.ref();
  }

  #unref(): void {
    this.#child.unref();
    this.#child.channel?.unref();
    for (const output of [this.#child.stdout, this.#child.stderr]) (output as unknown as { unref?(): void } | null)?.unref?.();
  }
}

/** Calls `onLine` with each complete line of text fed in pieces. */
function createLineReader(onLine: (line: string) => void): (text: string) => void {
  let pending = '';
  return (text) => {
    pending += text;
    const lines = pending.split('\n');
    pending = lines.pop()!;
    for (const line of lines) if (line.trim() !== '') onLine(line);
  };
}

/** A llama.cpp log line as a JSON line on stderr, as the server's own log is written. */
function writeNativeLogLine(text: string): void {
  process.stderr.write(`${JSON.stringify({ time: new Date().toISOString(), level: 'debug', message: 'llama.cpp', text })}\n`);
}

// The binding is CommonJS and ships TypeScript sources rather than declarations; only its path is needed here,
// as the engine process loads it.
const require = createRequire(import.meta.url);
const BINDING_MODULE = '@fugood/llama.node';

/** Whether the binding build has a GPU to offload to (no CUDA/Vulkan device in the default Linux build). */
async function detectGpu(engine: EngineProcess, variant: LlamaSettings['libVariant']): Promise<boolean> {
  try {
    const devices = z.array(z.object({ type: z.string() }).loose()).parse(await engine.call('devices', variant ?? 'default'));
    return devices.some((device) => /gpu/i.test(device.type));
  } catch {
    return false;
  }
}

// ---- the model ----

export type LoadState = 'unloaded' | 'loading' | 'loaded' | 'closed';

/** A llama model as a `LanguageModel`, plus its load state for the model manager, the CLI and tests. */
export interface LlamaLanguageModel extends LanguageModel {
  readonly loadState: LoadState;
  /** Times the weights were loaded into this process (a reload after an idle unload counts again). */
  readonly loadCount: number;
  /** Loads now (what `preload` does at boot); rejects with `unavailable_error` when the files cannot be loaded. */
  load(): Promise<void>;
  /** Cancels running requests, refuses waiting ones and releases the weights. */
  close(): Promise<void>;
}

/** A loaded engine process and what Ocular learned about its model. */
interface Engine {
  process: EngineProcess;
  /** Tokens one request may use. */
  contextSize: number;
  /** `jinja`: the GGUF's chat template; `plain`: no template, the plain prompt format. */
  template: 'jinja' | 'plain';
  /** Whether the template renders tools (llama.cpp then builds the tool-call grammar and parser). */
  nativeTools: boolean;
  vision: boolean;
  audio: boolean;
}

interface PreparedCompletion {
  options: Record<string, unknown>;
  plan: OutputPlan;
}

/** Tokens a completion may run on after Ocular saw a stop string, before it is cancelled. */
const STOP_GRACE_TOKENS = 4;

const isFile = async (path: string): Promise<boolean> => (await stat(path).catch(() => undefined))?.isFile() ?? false;

/** The first bytes of a GGUF file. */
async function hasGgufMagic(path: string): Promise<boolean> {
  const file = await open(path, 'r');
  try {
    const { buffer, bytesRead } = await file.read(Buffer.alloc(4), 0, 4, 0);
    return bytesRead === 4 && buffer.toString('latin1') === 'GGUF';
  } finally {
    await file.close();
  }
}

/** The JSON Schema a grammar is built from: the client's, or for `json_object` any JSON object. */
function responseSchema(format: ResponseFormat): Record<string, unknown> {
  return format.type === 'json_object' ? { type: 'object' } : format.schema;
}

/** An aborted signal's reason as the error to throw (what an aborted fetch would throw). */
function abortReason(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException('This operation was aborted', 'AbortError');
}

class LlamaModel implements LlamaLanguageModel {
  readonly provider = 'llama';
  readonly upstreamModel: string;
  readonly capabilities: Capabilities;
  readonly #settings: LlamaSettings;
  readonly #label: ModelLabel;
  readonly #queue: RequestQueue;
  readonly #idleUnloadMs: number;
  #engine: Promise<Engine> | undefined;
  #loaded = false;
  #loadCount = 0;
  #unloading: Promise<void> | undefined;
  #idleTimer: NodeJS.Timeout | undefined;
  #closed = false;
  /** Stop functions of running completions, so `close()` can cancel them. */
  readonly #running = new Set<() => void>();

  constructor(settings: LlamaSettings) {
    this.#settings = settings;
    this.upstreamModel = settings.model ?? basename(settings.modelPath).replace(/\.gguf$/i, '');
    this.#label = { id: settings.id, pullName: settings.model ?? settings.id };
    this.capabilities = resolveCapabilities(
      { ...llama.defaultCapabilities, image: settings.mmprojPath !== undefined },
      settings.capabilities,
    );
    this.#idleUnloadMs = settings.idleUnloadMs ?? DEFAULTS.idleUnloadMs;
    this.embed = settings.embedding === true ? (inputs, signal) => this.#embed(inputs, signal) : undefined;
    // Until the first load finds out whether there is a GPU, an unset `parallel` queues as on CPU.
    this.#queue = new RequestQueue({
      concurrency: settings.parallel ?? DEFAULTS.parallelOnCpu,
      maxWaiting: settings.queueSize ?? DEFAULTS.queueSize,
      label: `model "${settings.id}"`,
    });
    // A failed preload is not fatal: the first request tries again and reports why it cannot load.
    if (settings.preload) this.load().catch(() => {});
  }

  get loadCount(): number {
    return this.#loadCount;
  }

  get loadState(): LoadState {
    if (this.#closed) return 'closed';
    if (this.#engine === undefined) return 'unloaded';
    return this.#loaded ? 'loaded' : 'loading';
  }

  async load(): Promise<void> {
    await this.#ensureLoaded();
    this.#scheduleIdleUnload();
  }

  /** Only on embedding models (`embedding: true`). */
  readonly embed: LanguageModel['embed'];

  async #embed(inputs: readonly string[], signal: AbortSignal): Promise<Float32Array[]> {
    const { engine, release } = await this.#acquire(signal);
    try {
      const vectors = z.array(z.array(z.number()).min(1)).length(inputs.length).parse(await engine.process.call('embed', inputs));
      return vectors.map((vector) => normalizeVector(Float32Array.from(vector)));
    } catch (error) {
      if (error instanceof OcularError) throw error;
      throw generationError(this.#label.id, error);
    } finally {
      release();
    }
  }

  async generate(request: ProviderRequest, signal: AbortSignal): Promise<GenerateResult> {
    const { engine, release } = await this.#begin(request, signal);
    try {
      const prepared = await this.#prepare(engine, request);
      const handle = await this.#submit(engine, prepared.options, signal);
      return convertResult(await handle.result, prepared.plan, createToolCallId);
    } finally {
      release();
    }
  }

  async stream(request: ProviderRequest, signal: AbortSignal): Promise<ReadableStream<StreamPart>> {
    const { engine, release } = await this.#begin(request, signal);
    let prepared: PreparedCompletion;
    try {
      prepared = await this.#prepare(engine, request);
    } catch (error) {
      release();
      throw error;
    }
    const converter = new TokenStreamConverter(prepared.plan, createToolCallId);
    let controller!: ReadableStreamDefaultController<StreamPart>;
    let done = false;
    let handle: SubmittedCompletion | undefined;
    // An abort errors the stream at once, dropping parts still queued in it (the engine's tokens arrive in
    // batches, so some usually are), as an aborted fetch body fails its next read.
    const onAbort = (): void => end({ error: abortReason(signal) });
    const end = (last: StreamPart[] | { error: unknown }): void => {
      if (done) return;
      done = true;
      signal.removeEventListener('abort', onAbort);
      release();
      if (Array.isArray(last)) {
        for (const part of last) controller.enqueue(part);
        controller.close();
      } else {
        controller.error(last.error);
      }
    };
    const parts = new ReadableStream<StreamPart>({
      start: (streamController) => {
        controller = streamController;
      },
      cancel: () => {
        handle?.stop();
        done = true;
        signal.removeEventListener('abort', onAbort);
        release();
      },
    });
    let tokensAfterStop = 0;
    const onToken = (token: CompletionToken): void => {
      if (done) return;
      for (const part of converter.push(token)) controller.enqueue(part);
      // llama.cpp stops on the same strings and then reports exact usage; should the match only exist in
      // the parsed text, the completion is cancelled a few tokens later and usage counted here.
      if (converter.stopped && ++tokensAfterStop > STOP_GRACE_TOKENS) {
        handle?.stop();
        end(converter.finishStopped());
      }
    };
    try {
      handle = await this.#submit(engine, prepared.options, signal, onToken);
    } catch (error) {
      release();
      throw error;
    }
    signal.addEventListener('abort', onAbort, { once: true });
    handle.result.then(
      (result) => end(converter.finish(result)),
      (error: unknown) => {
        // Aborts surface as a failed read, like an aborted fetch body; engine failures as an error part.
        if (signal.aborted) end({ error: abortReason(signal) });
        else end([{ type: 'error', error: error instanceof OcularError ? error : generationError(this.#label.id, error) }]);
      },
    );
    return parts;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#idleTimer);
    this.#queue.rejectWaiting(closedError(this.#label.id));
    for (const stop of this.#running) stop();
    const engine = this.#engine;
    this.#engine = undefined;
    this.#loaded = false;
    await this.#unloading;
    await releaseEngine(await engine?.catch(() => undefined));
  }

  // ---- lifecycle ----

  /** A queue slot and a loaded engine for a chat request; the release also restarts the idle countdown. */
  async #begin(request: ProviderRequest, signal: AbortSignal): Promise<{ engine: Engine; release: ReleaseSlot }> {
    if (this.#closed) throw closedError(this.#label.id);
    if (this.#settings.embedding === true) {
      throw validationError(`model "${this.#label.id}" is an embedding model: it turns text into vectors and does not chat`, 'model');
    }
    this.#checkMedia(request.messages, undefined);
    return this.#acquire(signal, (engine) => this.#checkMedia(request.messages, engine));
  }

  /** A queue slot and a loaded engine, checked by `check` once loaded; the release restarts the idle countdown. */
  async #acquire(signal: AbortSignal, check?: (engine: Engine) => void): Promise<{ engine: Engine; release: ReleaseSlot }> {
    if (this.#closed) throw closedError(this.#label.id);
    const releaseSlot = await this.#queue.acquire(signal);
    clearTimeout(this.#idleTimer);
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      releaseSlot();
      this.#scheduleIdleUnload();
    };
    try {
      const engine = await this.#ensureLoaded();
      if (signal.aborted) throw abortReason(signal);
      check?.(engine);
      return { engine, release };
    } catch (error) {
      release();
      throw error;
    }
  }

  #ensureLoaded(): Promise<Engine> {
    if (this.#closed) return Promise.reject(closedError(this.#label.id));
    if (this.#engine === undefined) {
      const loading = this.#loadEngine();
      this.#engine = loading;
      loading.then(
        (engine) => {
          if (this.#engine === loading) this.#loaded = true;
          // A crashed engine is forgotten: the next request loads the model again.
          engine.process.onExit(() => {
            if (this.#engine !== loading) return;
            this.#engine = undefined;
            this.#loaded = false;
          });
        },
        () => {
          // Forget a failed load so the next request tries again (the file may have been fixed meanwhile).
          if (this.#engine === loading) this.#engine = undefined;
        },
      );
    }
    return this.#engine;
  }

  async #loadEngine(): Promise<Engine> {
    await this.#unloading;
    const settings = this.#settings;
    const projectorPath = settings.mmprojPath;
    for (const [what, path] of [
      ['model', settings.modelPath],
      ['projector', projectorPath],
    ] as const) {
      if (path === undefined) continue;
      if (!(await isFile(path))) throw missingFileError(what, path, this.#label);
      if (!(await hasGgufMagic(path))) throw loadFailedError(what, path, this.#label, 'it does not start with the GGUF magic bytes');
    }

    const engine = new EngineProcess(settings.nativeLog ?? false);
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      engine.kill();
    }, DEFAULTS.loadTimeoutMs);
    let loaded: LoadedEngine;
    let parallel: number;
    try {
      const hasGpu = await detectGpu(engine, settings.libVariant);
      const gpuLayers =
        settings.gpuLayers === undefined || settings.gpuLayers === 'auto' ? (hasGpu ? DEFAULTS.allGpuLayers : 0) : settings.gpuLayers;
      parallel = parallelFor(settings, hasGpu);
      const loadOptions: Record<string, unknown> = {
        model: settings.modelPath,
        // Capped by the model's trained context in the engine, before the context is made.
        n_ctx: settings.contextSize ?? DEFAULTS.contextSize,
        n_gpu_layers: gpuLayers,
        // The binding gives each of the n_parallel sequences its own n_ctx (unified KV would split one n_ctx).
        n_parallel: parallel,
        kv_unified: false,
        ...(settings.threads === undefined ? {} : { n_threads: settings.threads }),
        ...(settings.libVariant === undefined || settings.libVariant === 'default' ? {} : { lib_variant: settings.libVariant }),
        ...(settings.embedding === true ? { embedding: true, ...(settings.pooling ? { pooling_type: settings.pooling } : {}) } : {}),
      };
      const projector = projectorPath === undefined ? null : { path: projectorPath, use_gpu: gpuLayers > 0 };
      loaded = loadedSchema.parse(await engine.call('load', loadOptions, projector, parallel));
    } catch (error) {
      engine.kill();
      const stage = error instanceof EngineCallError || error instanceof EngineExitError ? (error.stage ?? 'model') : 'model';
      const detail = timedOut
        ? `loading did not finish within ${DEFAULTS.loadTimeoutMs / 1000} s`
        : error instanceof EngineExitError
          ? error.detail
          : (error as Error).message;
      throw loadFailedError(stage, stage === 'model' ? settings.modelPath : projectorPath!, this.#label, detail);
    } finally {
      clearTimeout(timer);
    }
    engine.markLoaded();
    this.#loadCount++;
    this.#queue.concurrency = parallel;
    const jinja = loaded.jinja;
    const hasTemplate =
      typeof loaded.metadata['tokenizer.chat_template'] === 'string' && (jinja?.default === true || jinja?.toolUse === true);
    const result: Engine = {
      process: engine,
      contextSize: loaded.contextSize,
      template: hasTemplate ? 'jinja' : 'plain',
      nativeTools: hasTemplate && (jinja?.defaultCaps?.tools === true || jinja?.toolUseCaps?.tools === true),
      vision: loaded.vision,
      audio: loaded.audio,
    };
    if (this.#closed) {
      await releaseEngine(result);
      throw closedError(this.#label.id);
    }
    return result;
  }

  #scheduleIdleUnload(): void {
    clearTimeout(this.#idleTimer);
    if (this.#closed || this.#idleUnloadMs === 0 || !this.#queue.idle || this.#engine === undefined) return;
    this.#idleTimer = setTimeout(() => this.#unloadIfIdle(), this.#idleUnloadMs);
    this.#idleTimer.unref();
  }

  #unloadIfIdle(): void {
    if (!this.#queue.idle || this.#engine === undefined || !this.#loaded || this.#unloading) return;
    const engine = this.#engine;
    this.#engine = undefined;
    this.#loaded = false;
    this.#unloading = engine
      .then(releaseEngine, () => {})
      .catch(() => {})
      .finally(() => {
        this.#unloading = undefined;
      });
  }

  // ---- requests ----

  /**
   * Media needs a projector: without one (or before the engine says what it takes) images and audio are
   * refused by settings; once loaded, by what the projector supports. Video and PDFs never reach a llama
   * model when its capabilities are right (the media layer turns them into frames and text).
   */
  #checkMedia(messages: readonly PromptMessage[], engine: Engine | undefined): void {
    messages.forEach((message, index) => {
      if (message.role !== 'user') return;
      message.content.forEach((part, partIndex) => {
        if (part.type !== 'media') return;
        const supported =
          (part.kind === 'image' || part.kind === 'audio') &&
          this.#settings.mmprojPath !== undefined &&
          (engine === undefined || (part.kind === 'image' ? engine.vision : engine.audio));
        if (!supported) throw mediaNotSupportedError(this.#label.id, part.kind, `messages.${index}.content.${partIndex}`);
      });
    });
  }

  /** Builds the binding's completion options and how to read its output. */
  async #prepare(engine: Engine, request: ProviderRequest): Promise<PreparedCompletion> {
    const id = this.#label.id;
    const continuation = request.continuation === true;
    const offered = request.tools !== undefined && request.tools.length > 0 && request.toolChoice !== 'none' && !continuation;
    const choice = offered ? convertToolChoice(request.tools!, request.toolChoice) : undefined;
    if (choice && choice.tools.length === 0) {
      throw validationError(`tool_choice names a tool that is not in tools`, 'tool_choice');
    }
    const toolChoice = choice?.toolChoice === 'none' ? undefined : choice;
    const nativeTools = toolChoice !== undefined && engine.nativeTools && engine.template === 'jinja';
    const tools: OutputPlan['tools'] =
      toolChoice === undefined ? 'none' : nativeTools ? 'native' : toolChoice.toolChoice === 'required' ? 'json-required' : 'json';
    const converted = convertMessages(request.messages, {
      continuation,
      systemAddendum:
        toolChoice !== undefined && !nativeTools
          ? buildToolInstructions(toolChoice.tools, toolChoice.toolChoice === 'required' ? 'required' : 'auto')
          : undefined,
    });

    const stops = (request.stop ?? []).filter((stop) => stop !== '');
    let options: Record<string, unknown>;
    let source: OutputPlan['source'] = 'text';
    let trimStart = false;
    if (engine.template === 'jinja') {
      const formatted = await this.#format(
        engine,
        converted.messages,
        undefined,
        {
          add_generation_prompt: true,
          ...(nativeTools ? { tools: convertTools(toolChoice.tools), tool_choice: toolChoice.toolChoice, parallel_tool_calls: true } : {}),
        },
        nativeTools ? 'tools' : 'messages',
      );
      stops.push(...(formatted.additional_stops ?? []));
      if (converted.prefix !== undefined) {
        // Continuing: the prompt ends inside the assistant's turn, and the raw continuation is the answer.
        options = { prompt: formatted.prompt + converted.prefix };
      } else if (tools === 'json-required') {
        // The fallback's grammar replaces the template's, so the template's parser and prefill do not apply.
        options = { prompt: formatted.prompt };
      } else {
        source = 'content';
        options = {
          prompt: formatted.prompt,
          chat_format: formatted.chat_format,
          chat_parser: formatted.chat_parser,
          generation_prompt: formatted.generation_prompt,
          preserved_tokens: formatted.preserved_tokens,
          thinking_forced_open: formatted.thinking_forced_open,
          thinking_start_tag: formatted.thinking_start_tag,
          thinking_end_tag: formatted.thinking_end_tag,
          ...(formatted.grammar
            ? { grammar: formatted.grammar, grammar_lazy: formatted.grammar_lazy, grammar_triggers: formatted.grammar_triggers }
            : {}),
        };
      }
    } else {
      options = { prompt: formatPlainPrompt(converted.messages, converted.prefix) };
      trimStart = converted.prefix === undefined;
      stops.push(...PLAIN_FORMAT_STOPS);
    }
    if (tools === 'json-required') {
      const schema = buildToolCallSchema(toolChoice!.tools);
      const formatted = await this.#format(
        engine,
        [{ role: 'user', content: '' }],
        SCHEMA_ONLY_TEMPLATE,
        {
          add_generation_prompt: false,
          response_format: { type: 'json_schema', json_schema: { schema } },
        },
        'tools',
      );
      options.grammar = formatted.grammar;
    }
    if (request.responseFormat !== undefined && tools === 'none' && converted.prefix === undefined) {
      // Structured output: llama.cpp turns the JSON Schema into a grammar. A schema it cannot convert leaves the
      // answer unconstrained (the caller validates it anyway) rather than failing the request.
      const formatted = await this.#format(
        engine,
        [{ role: 'user', content: '' }],
        SCHEMA_ONLY_TEMPLATE,
        {
          add_generation_prompt: false,
          response_format: { type: 'json_schema', json_schema: { schema: responseSchema(request.responseFormat) } },
        },
        'messages',
      ).catch(() => undefined);
      if (formatted?.grammar) {
        options.grammar = formatted.grammar;
        delete options.grammar_lazy;
        delete options.grammar_triggers;
      }
    }

    const prompt = options.prompt as string;
    const mediaPaths = converted.mediaPaths;
    this.#assertOpen();
    const promptTokens = z
      .number()
      .parse(await engine.process.call('countTokens', prompt, mediaPaths.length > 0 ? { media_paths: mediaPaths } : {}));
    if (promptTokens >= engine.contextSize) throw contextOverflowError(id, promptTokens, engine.contextSize);

    return {
      options: {
        ...options,
        ...convertSampling(request),
        ...(stops.length > 0 ? { stop: stops } : {}),
        ...(mediaPaths.length > 0 ? { media_paths: mediaPaths } : {}),
      },
      plan: { source, stops, trimStart, tools, toolNames: toolChoice?.tools.map((tool) => tool.name) ?? [], promptTokens },
    };
  }

  /**
   * `close()` may release the context while a request awaits something (tokenizing); the binding must not be
   * called on a released context (it dereferences it), so every call site checks first, synchronously.
   */
  #assertOpen(): void {
    if (this.#closed) throw closedError(this.#label.id);
  }

  /** Runs llama.cpp's chat formatter; a template's `raise_exception` or an unsupported tool schema becomes a 400. */
  async #format(
    engine: Engine,
    messages: TemplateMessage[] | Array<{ role: string; content: string }>,
    template: string | undefined,
    params: Record<string, unknown>,
    param: 'messages' | 'tools',
  ): Promise<FormattedChat> {
    let formatted: FormattedChat | string;
    this.#assertOpen();
    try {
      formatted = (await engine.process.call('format', messages, template, {
        jinja: true,
        enable_thinking: true,
        reasoning_format: 'none',
        ...params,
      })) as FormattedChat | string;
    } catch (error) {
      if (error instanceof EngineCallError) throw promptFormatError(this.#label.id, error.message, param);
      throw generationError(this.#label.id, error);
    }
    return typeof formatted === 'string' ? { prompt: formatted } : formatted;
  }

  /** Queues the completion on a parallel sequence; aborting or closing stops it within a token. */
  async #submit(
    engine: Engine,
    options: Record<string, unknown>,
    signal: AbortSignal,
    onToken?: (token: CompletionToken) => void,
  ): Promise<SubmittedCompletion> {
    if (signal.aborted) throw abortReason(signal);
    this.#assertOpen();
    const handle = engine.process.complete(options, onToken);
    let stopped = false;
    const stop = (): void => {
      if (stopped) return;
      stopped = true;
      handle.stop();
    };
    this.#running.add(stop);
    signal.addEventListener('abort', stop, { once: true });
    const result = handle.promise.then(
      (raw): CompletionResult => {
        const parsed = completionResultSchema.safeParse(raw);
        if (!parsed.success) throw generationError(this.#label.id, new Error('the binding returned an unexpected result'));
        const { timings } = parsed.data;
        // The binding reports a prompt it could not place in the KV cache as an empty result.
        if ((timings?.prompt_n ?? 0) + (timings?.cache_n ?? 0) === 0 && (parsed.data.tokens_predicted ?? 0) === 0) {
          throw generationError(this.#label.id, new Error('llama.cpp could not process the prompt (see the server log)'));
        }
        return parsed.data;
      },
      (error: unknown) => {
        if (signal.aborted) throw abortReason(signal);
        if (this.#closed) throw closedError(this.#label.id);
        throw generationError(this.#label.id, error);
      },
    );
    const cleanup = (): void => {
      this.#running.delete(stop);
      signal.removeEventListener('abort', stop);
    };
    result.then(cleanup, cleanup);
    return { result, stop };
  }
}

interface SubmittedCompletion {
  result: Promise<CompletionResult>;
  stop(): void;
}

async function releaseEngine(engine: Engine | undefined): Promise<void> {
  await engine?.process.release();
}

function parallelFor(settings: LlamaSettings, hasGpu: boolean): number {
  return settings.parallel ?? (hasGpu ? DEFAULTS.parallelWithGpu : DEFAULTS.parallelOnCpu);
}

/** Builds a llama model; the provider definition's `create` returns the same object typed as a `LanguageModel`. */
export function createLlamaModel(settings: LlamaSettings): LlamaLanguageModel {
  return new LlamaModel(settings);
}

/**
 * The provider definition. Typed structurally rather than as `ProviderDefinition<LlamaSettings>`: `model` is
 * optional here (a display name; the weights are `modelPath`), which `BaseModelSettings` does not allow.
 */
export const llama: Omit<ProviderDefinition, 'settingsSchema' | 'create'> & {
  readonly settingsSchema: typeof settingsSchema;
  create(settings: LlamaSettings): LlamaLanguageModel;
} = {
  name: 'llama',
  settingsSchema,
  defaultCapabilities: { image: false, video: false, audio: false, pdf: false, tools: true },
  create: createLlamaModel,
};
