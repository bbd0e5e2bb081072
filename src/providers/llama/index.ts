/**
 * The embedded `llama` provider: GGUF models run in this process by llama.cpp through `@fugood/llama.node`.
 *
 * - Loading is lazy (the first request loads; concurrent first requests share that load), eager with
 *   `preload`, and undone after `idleUnloadMs` without requests. Before the first in-process load of a file,
 *   a child process loads it once: the binding dereferences a null context when llama.cpp rejects a file, and
 *   llama.cpp aborts on some malformed ones, so a bad download must crash a throwaway process, not the server.
 * - Requests run as parallel sequences of one context (the binding's `parallel` API), `parallel` at a time;
 *   `queueSize` more may wait, and the next is refused with a 429.
 * - Prompts use the GGUF's own chat template (Jinja, with llama.cpp's tool-call grammars and parser). A GGUF
 *   without one (base models) gets the plain format of {@link formatPlainPrompt}; templates without tool
 *   support get a JSON tool-call fallback (see `convert-request.ts`).
 */
import { spawn } from 'node:child_process';
import { open, stat } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { basename } from 'node:path';
import { z } from 'zod';
import { OcularError, validationError } from '../../spec/errors.ts';
import type { PromptMessage } from '../../spec/messages.ts';
import type { Capabilities, GenerateResult, LanguageModel, ProviderRequest } from '../../spec/provider.ts';
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
    /** Forward llama.cpp's log lines to stderr through the binding's log callback. @default false */
    nativeLog: z.boolean().optional(),
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
  /** Longest a first load may take in the probe process (large models on slow disks). */
  probeTimeoutMs: 600_000,
} as const;

// ---- the binding ----

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

interface CompletionHandle {
  requestId: number;
  promise: Promise<unknown>;
  stop(): void;
}

/** The part of a loaded binding context Ocular uses (`LlamaContextWrapper` in `@fugood/llama.node`). */
interface BindingContext {
  /** The native context: its formatter takes an explicit template and reports template errors as exceptions. */
  ctx: { getFormattedChat(messages: unknown[], template: string | undefined, params: Record<string, unknown>): FormattedChat | string };
  getModelInfo(): {
    metadata: Record<string, unknown>;
    chatTemplates?: {
      jinja?: { default?: boolean; toolUse?: boolean; defaultCaps?: { tools?: boolean }; toolUseCaps?: { tools?: boolean } };
    };
  };
  tokenize(text: string, options?: { media_paths?: string[] }): Promise<{ tokens: ArrayLike<number> }>;
  initMultimodal(options: { path: string; use_gpu?: boolean }): boolean;
  getMultimodalSupport(): { vision: boolean; audio: boolean };
  parallel: {
    enable(config: { n_parallel: number; n_batch?: number }): Promise<boolean>;
    disable(): void;
    completion(options: Record<string, unknown>, onToken?: (requestId: number, token: CompletionToken) => void): Promise<CompletionHandle>;
  };
  release(): Promise<void>;
}

interface Binding {
  loadModel(options: Record<string, unknown>): Promise<BindingContext>;
  toggleNativeLog(enable: boolean): Promise<void>;
  addNativeLogListener(listener: (level: string, text: string) => void): { remove(): void };
  getBackendDevicesInfo(variant?: string): Promise<Array<{ type: string; deviceName?: string }>>;
}

// The binding is CommonJS and ships TypeScript sources rather than declarations: `require` keeps tsc from
// type-checking those under this project's stricter options, and defers loading native code until a llama
// model is actually used.
const require = createRequire(import.meta.url);
const BINDING_MODULE = '@fugood/llama.node';
let binding: Binding | undefined;
const loadBinding = (): Binding => (binding ??= require(BINDING_MODULE) as Binding);

let logListener: { remove(): void } | undefined;

/** llama.cpp prints its load messages to stderr whatever this says; the callback adds the rest of its log. */
async function configureNativeLog(enabled: boolean): Promise<void> {
  const llama = loadBinding();
  await llama.toggleNativeLog(enabled);
  if (enabled && logListener === undefined) {
    logListener = llama.addNativeLogListener((level, text) =>
      process.stderr.write(`llama.cpp ${level}: ${text.endsWith('\n') ? text : `${text}\n`}`),
    );
  } else if (!enabled && logListener !== undefined) {
    logListener.remove();
    logListener = undefined;
  }
}

// ---- the load probe ----

/**
 * Loads the model (and projector) once in a child process with the options the server will use, and reports
 * what it found. CommonJS, so it runs with `node -e` and no loader.
 */
const PROBE_SCRIPT = `
const [bindingPath, optionsJson, projectorJson] = process.argv.slice(1);
const report = (value) => process.stdout.write('\\n@@ocular-probe ' + JSON.stringify(value) + '\\n');
(async () => {
  const binding = require(bindingPath);
  await binding.toggleNativeLog(false);
  const context = await binding.loadModel(JSON.parse(optionsJson));
  const metadata = context.getModelInfo().metadata;
  report({ stage: 'model', trainedContext: Number(metadata[metadata['general.architecture'] + '.context_length']) || null });
  const projector = JSON.parse(projectorJson);
  if (projector) {
    try {
      context.initMultimodal(projector);
      const support = context.getMultimodalSupport();
      report({ stage: 'projector', vision: !!support.vision, audio: !!support.audio });
    } catch (error) {
      report({ stage: 'projector-error', message: String((error && error.message) || error) });
    }
  }
  await context.release();
  process.exit(0);
})().catch((error) => {
  report({ stage: 'error', message: String((error && error.message) || error) });
  process.exit(1);
});
`;

const probeLineSchema = z.discriminatedUnion('stage', [
  z.object({ stage: z.literal('model'), trainedContext: z.number().int().positive().nullable() }),
  z.object({ stage: z.literal('projector'), vision: z.boolean(), audio: z.boolean() }),
  z.object({ stage: z.literal('projector-error'), message: z.string() }),
  z.object({ stage: z.literal('error'), message: z.string() }),
]);

interface ProbeReport {
  trainedContext: number | undefined;
  vision: boolean;
  audio: boolean;
}

type ProbeOutcome = { ok: true; report: ProbeReport } | { ok: false; what: 'model' | 'projector'; detail: string };

/** Keeps the end of a child's output: the reason for a failure is printed last. */
const PROBE_LOG_LIMIT = 64 * 1024;

function runProbe(loadOptions: Record<string, unknown>, projector: { path: string; use_gpu: boolean } | undefined): Promise<ProbeOutcome> {
  return new Promise((resolve) => {
    const child = spawn(
      process.execPath,
      ['-e', PROBE_SCRIPT, require.resolve(BINDING_MODULE), JSON.stringify(loadOptions), JSON.stringify(projector ?? null)],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let log = '';
    const lines: Array<z.infer<typeof probeLineSchema>> = [];
    let pending = '';
    const keep = (text: string): void => {
      log = (log + text).slice(-PROBE_LOG_LIMIT);
    };
    child.stdout.setEncoding('utf8').on('data', (text: string) => {
      keep(text);
      pending += text;
      const parts = pending.split('\n');
      pending = parts.pop()!;
      for (const line of parts) {
        if (!line.startsWith('@@ocular-probe ')) continue;
        let json: unknown;
        try {
          json = JSON.parse(line.slice('@@ocular-probe '.length));
        } catch {
          continue;
        }
        const parsed = probeLineSchema.safeParse(json);
        if (parsed.success) lines.push(parsed.data);
      }
    });
    child.stderr.setEncoding('utf8').on('data', keep);
    const timer = setTimeout(() => child.kill('SIGKILL'), DEFAULTS.probeTimeoutMs);
    const finish = (code: number | null, signal: NodeJS.Signals | null, spawnError?: Error): void => {
      clearTimeout(timer);
      const model = lines.find((line) => line.stage === 'model');
      if (!model || model.stage !== 'model') {
        const failure = lines.find((line) => line.stage === 'error');
        const detail = spawnError
          ? `the loader process could not start: ${spawnError.message}`
          : signal === 'SIGKILL' && code === null
            ? `loading did not finish within ${DEFAULTS.probeTimeoutMs / 1000} s`
            : describeLoadFailure(log, { code, signal }) + (failure && failure.stage === 'error' ? ` (${failure.message})` : '');
        resolve({ ok: false, what: 'model', detail });
        return;
      }
      const report: ProbeReport = { trainedContext: model.trainedContext ?? undefined, vision: false, audio: false };
      if (projector) {
        const result = lines.find((line) => line.stage === 'projector' || line.stage === 'projector-error');
        if (!result || result.stage !== 'projector') {
          const detail = result?.stage === 'projector-error' ? result.message : describeLoadFailure(log, { code, signal });
          resolve({ ok: false, what: 'projector', detail });
          return;
        }
        report.vision = result.vision;
        report.audio = result.audio;
      }
      resolve({ ok: true, report });
    };
    child.once('error', (error) => finish(null, null, error));
    child.once('close', (code, signal) => finish(code, signal));
  });
}

/** Successful probes, by the files' identity and the load options: a reload after an idle unload skips the child. */
const probeCache = new Map<string, ProbeReport>();

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

/** A loaded context and what Ocular learned about it. */
interface Engine {
  context: BindingContext;
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

async function fileIdentity(path: string): Promise<string> {
  const info = await stat(path);
  return `${path}:${info.size}:${info.mtimeMs}`;
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
    const end = (last: StreamPart[] | { error: unknown }): void => {
      if (done) return;
      done = true;
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

  /** A queue slot and a loaded engine; the release also restarts the idle countdown. */
  async #begin(request: ProviderRequest, signal: AbortSignal): Promise<{ engine: Engine; release: ReleaseSlot }> {
    if (this.#closed) throw closedError(this.#label.id);
    this.#checkMedia(request.messages, undefined);
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
      this.#checkMedia(request.messages, engine);
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
        () => {
          if (this.#engine === loading) this.#loaded = true;
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

    const llama = loadBinding();
    await configureNativeLog(settings.nativeLog ?? false);
    const hasGpu = await detectGpu(settings.libVariant);
    const gpuLayers =
      settings.gpuLayers === undefined || settings.gpuLayers === 'auto' ? (hasGpu ? DEFAULTS.allGpuLayers : 0) : settings.gpuLayers;
    const requestedContext = settings.contextSize ?? DEFAULTS.contextSize;
    const loadOptions: Record<string, unknown> = {
      model: settings.modelPath,
      n_ctx: requestedContext,
      n_gpu_layers: gpuLayers,
      // The binding gives each of the n_parallel sequences its own n_ctx (unified KV would split one n_ctx).
      n_parallel: parallelFor(settings, hasGpu),
      kv_unified: false,
      ...(settings.threads === undefined ? {} : { n_threads: settings.threads }),
      ...(settings.libVariant === undefined || settings.libVariant === 'default' ? {} : { lib_variant: settings.libVariant }),
    };
    const projector = projectorPath === undefined ? undefined : { path: projectorPath, use_gpu: gpuLayers > 0 };

    const key = JSON.stringify([
      await fileIdentity(settings.modelPath),
      projectorPath === undefined ? null : await fileIdentity(projectorPath),
      loadOptions,
      projector ?? null,
    ]);
    let report = probeCache.get(key);
    if (report === undefined) {
      const outcome = await runProbe(loadOptions, projector);
      if (!outcome.ok) {
        throw loadFailedError(outcome.what, outcome.what === 'model' ? settings.modelPath : projectorPath!, this.#label, outcome.detail);
      }
      report = outcome.report;
      probeCache.set(key, report);
    }

    const contextSize = Math.min(requestedContext, report.trainedContext ?? requestedContext);
    let context: BindingContext;
    try {
      context = await llama.loadModel({ ...loadOptions, n_ctx: contextSize });
    } catch (error) {
      throw loadFailedError('model', settings.modelPath, this.#label, (error as Error).message);
    }
    this.#loadCount++;
    let vision = false;
    let audio = false;
    if (projector) {
      try {
        if (!context.initMultimodal(projector)) throw new Error('the projector could not be initialised');
        ({ vision, audio } = context.getMultimodalSupport());
      } catch (error) {
        await context.release().catch(() => {});
        throw loadFailedError('projector', projector.path, this.#label, (error as Error).message);
      }
    }
    try {
      const parallel = loadOptions.n_parallel as number;
      await context.parallel.enable({ n_parallel: parallel });
      this.#queue.concurrency = parallel;
      const info = context.getModelInfo();
      const jinja = info.chatTemplates?.jinja;
      const hasTemplate =
        typeof info.metadata['tokenizer.chat_template'] === 'string' && (jinja?.default === true || jinja?.toolUse === true);
      const engine: Engine = {
        context,
        contextSize,
        template: hasTemplate ? 'jinja' : 'plain',
        nativeTools: hasTemplate && (jinja?.defaultCaps?.tools === true || jinja?.toolUseCaps?.tools === true),
        vision,
        audio,
      };
      if (this.#closed) {
        await releaseEngine(engine);
        throw closedError(this.#label.id);
      }
      return engine;
    } catch (error) {
      if (error instanceof OcularError) throw error;
      await context.release().catch(() => {});
      throw loadFailedError('model', settings.modelPath, this.#label, (error as Error).message);
    }
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
      const formatted = this.#format(
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
      const formatted = this.#format(
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

    const prompt = options.prompt as string;
    const mediaPaths = converted.mediaPaths;
    this.#assertOpen();
    const tokenized = await engine.context.tokenize(prompt, mediaPaths.length > 0 ? { media_paths: mediaPaths } : {});
    const promptTokens = tokenized.tokens.length;
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
  #format(
    engine: Engine,
    messages: TemplateMessage[] | Array<{ role: string; content: string }>,
    template: string | undefined,
    params: Record<string, unknown>,
    param: 'messages' | 'tools',
  ): FormattedChat {
    let formatted: FormattedChat | string;
    this.#assertOpen();
    try {
      formatted = engine.context.ctx.getFormattedChat(messages, template, {
        jinja: true,
        enable_thinking: true,
        reasoning_format: 'none',
        ...params,
      });
    } catch (error) {
      throw promptFormatError(this.#label.id, (error as Error).message, param);
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
    let handle: CompletionHandle;
    try {
      handle = await engine.context.parallel.completion(options, onToken === undefined ? undefined : (_requestId, token) => onToken(token));
    } catch (error) {
      throw generationError(this.#label.id, error);
    }
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
  if (!engine) return;
  engine.context.parallel.disable();
  await engine.context.release();
}

/** Whether the binding build has a GPU to offload to (no CUDA/Vulkan device in the default Linux build). */
async function detectGpu(variant: LlamaSettings['libVariant']): Promise<boolean> {
  try {
    const devices = await loadBinding().getBackendDevicesInfo(variant ?? 'default');
    return devices.some((device) => /gpu/i.test(device.type));
  } catch {
    return false;
  }
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
