// Tokens per second of the embedded llama provider through Ocular's HTTP API (/openai/v1/chat/completions,
// streamed) against the same completions run straight on @fugood/llama.node, same model, same run, rounds
// interleaved. The model is `--model PATH` (or OCULAR_BENCH_LLAMA_MODEL), else llama2.c's stories260K from
// ../shared/models when present, else a tiny random-weight model written to the OS temp directory.
//
// Ocular runs in this process (startServer), not in a child like gateway-overhead; its llama model runs in the
// provider's engine process, as it does in the server. llama.cpp decodes on its own native threads and JS only
// relays tokens, so what matters is whether that relay (the engine's IPC channel, provider, stream guard, SSE
// encoding, a real loopback HTTP hop) keeps pace with decoding. The two paths take turns, same model, same run.
//
// Run alone with `node bench/llama-throughput.ts [--model PATH]`.
import { createRequire } from 'node:module';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { createParser } from 'eventsource-parser';
import { z } from 'zod';
import { parseConfig } from '../src/config/load-config.ts';
import { readEnvironment, type ServerSettings } from '../src/config/settings.ts';
import { convertMessages, convertSampling, formatPlainPrompt, PLAIN_FORMAT_STOPS } from '../src/providers/llama/convert-request.ts';
import { createLogger } from '../src/server/logger.ts';
import { startServer } from '../src/server/serve.ts';
import type { PromptMessage } from '../src/spec/messages.ts';
import { writeTinyLlamaGguf } from '../test/helpers/gguf-writer.ts';
import { formatRate, median, printTable, verdict } from './report.ts';

export interface LlamaThroughputOptions {
  /** A GGUF model; see the header for the default. */
  modelPath?: string | undefined;
}

/** The target: Ocular's tokens/s over the binding's, for prompt processing and for generation. */
const TARGET_RATIO = 0.95;

const PLAN = {
  rounds: 7,
  /** Prompt size aimed at (the story is repeated to about this many tokens of the model's tokenizer). */
  promptTokens: 1000,
  maxTokens: 256,
  contextSize: 2048,
};

const STORIES = fileURLToPath(new URL('../../shared/models/stories260K/stories260K.gguf', import.meta.url));
const SENTENCE = 'The little dog ran to the park and saw a big red ball under the tree. ';
const PREFIX = 'Once upon a time';

// ---- the direct path ----

interface Timing {
  promptTokens: number;
  outputTokens: number;
  firstTokenMs: number;
  lastTokenMs: number;
  text: string;
}

interface DirectContext {
  ctx: { getFormattedChat(messages: unknown[], template: undefined, params: Record<string, unknown>): { prompt: string } | string };
  getModelInfo(): { metadata: Record<string, unknown>; chatTemplates?: { jinja?: { default?: boolean } } };
  tokenize(text: string): Promise<{ tokens: ArrayLike<number> }>;
  parallel: {
    enable(config: { n_parallel: number }): Promise<boolean>;
    disable(): void;
    completion(
      options: Record<string, unknown>,
      onToken: (requestId: number, token: { token: string }) => void,
    ): Promise<{ promise: Promise<unknown> }>;
  };
  release(): Promise<void>;
}

const directResultSchema = z.object({ text: z.string(), timings: z.object({ prompt_n: z.number(), predicted_n: z.number() }) });

// The binding ships TypeScript sources, not declarations: loaded untyped, like the provider does.
const require = createRequire(import.meta.url);
const binding = require('@fugood/llama.node') as {
  loadModel(options: Record<string, unknown>): Promise<DirectContext>;
  toggleNativeLog(enable: boolean): Promise<void>;
};

/** Sentences in the user turn, set once the tokenizer is known. */
let sentences = 1;

function conversation(round: number): PromptMessage[] {
  // Each round starts differently, so no path reuses a cached prompt prefix from its previous round.
  const story = `Story number ${round}. ${SENTENCE.repeat(sentences)}`;
  return [
    { role: 'user', content: [{ type: 'text', text: `${story}\nTell me another story.` }] },
    { role: 'assistant', content: PREFIX },
  ];
}

/** The prompt the provider builds for a continued answer: the template's (or plain) prompt, then the prefix. */
function buildPrompt(context: DirectContext, messages: PromptMessage[]): { prompt: string; stop: string[] } {
  const converted = convertMessages(messages, { continuation: true });
  const info = context.getModelInfo();
  if (typeof info.metadata['tokenizer.chat_template'] === 'string' && info.chatTemplates?.jinja?.default === true) {
    const formatted = context.ctx.getFormattedChat(converted.messages, undefined, { jinja: true, add_generation_prompt: true });
    return { prompt: (typeof formatted === 'string' ? formatted : formatted.prompt) + (converted.prefix ?? ''), stop: [] };
  }
  return { prompt: formatPlainPrompt(converted.messages, converted.prefix), stop: [...PLAIN_FORMAT_STOPS] };
}

async function runDirect(context: DirectContext, round: number): Promise<Timing> {
  const { prompt, stop } = buildPrompt(context, conversation(round));
  const sampling = convertSampling({ maxTokens: PLAN.maxTokens, temperature: 0, seed: 1, messages: [] });
  let firstTokenMs: number | undefined;
  let lastTokenMs = 0;
  const started = performance.now();
  const handle = await context.parallel.completion({ prompt, ...sampling, stop }, () => {
    lastTokenMs = performance.now() - started;
    firstTokenMs ??= lastTokenMs;
  });
  const result = directResultSchema.parse(await handle.promise);
  if (firstTokenMs === undefined) throw new Error('the direct completion produced no token');
  return { promptTokens: result.timings.prompt_n, outputTokens: result.timings.predicted_n, firstTokenMs, lastTokenMs, text: result.text };
}

// ---- the Ocular path ----

const chunkSchema = z.object({
  choices: z.array(z.object({ delta: z.object({ content: z.string().nullish() }).nullish() })),
  usage: z.object({ prompt_tokens: z.number(), completion_tokens: z.number() }).nullish(),
});

async function runOcular(url: string, apiKey: string, round: number): Promise<Timing> {
  const messages = conversation(round).map((message) =>
    message.role === 'user'
      ? { role: 'user', content: message.content.map((part) => (part.type === 'text' ? part.text : '')).join('') }
      : message,
  );
  const body = JSON.stringify({
    model: 'bench',
    messages,
    max_tokens: PLAN.maxTokens,
    temperature: 0,
    seed: 1,
    stream: true,
    stream_options: { include_usage: true },
  });
  const started = performance.now();
  const response = await fetch(`${url}/openai/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${apiKey}` },
    body,
  });
  if (response.status !== 200) throw new Error(`Ocular answered ${response.status}: ${(await response.text()).slice(0, 300)}`);
  let firstTokenMs: number | undefined;
  let lastTokenMs = 0;
  let text = '';
  let usage: { prompt_tokens: number; completion_tokens: number } | undefined;
  const parser = createParser({
    onEvent: (event) => {
      if (event.data === '[DONE]') return;
      const chunk = chunkSchema.parse(JSON.parse(event.data));
      const delta = chunk.choices.map((choice) => choice.delta?.content ?? '').join('');
      if (delta !== '') {
        lastTokenMs = performance.now() - started;
        firstTokenMs ??= lastTokenMs;
        text += delta;
      }
      if (chunk.usage) usage = chunk.usage;
    },
  });
  const decoder = new TextDecoder();
  const reader = response.body!.getReader();
  for (let next = await reader.read(); !next.done; next = await reader.read()) parser.feed(decoder.decode(next.value, { stream: true }));
  if (firstTokenMs === undefined || usage === undefined) throw new Error('the Ocular stream carried no text or no usage');
  return { promptTokens: usage.prompt_tokens, outputTokens: usage.completion_tokens, firstTokenMs, lastTokenMs, text };
}

// ---- report ----

/** Prompt tokens over the time to the first token; generated tokens after the first over the time between first and last. */
const promptRate = (timing: Timing): number => timing.promptTokens / (timing.firstTokenMs / 1000);
const generationRate = (timing: Timing): number => (timing.outputTokens - 1) / ((timing.lastTokenMs - timing.firstTokenMs) / 1000);

// ---- the bench ----

export async function runLlamaThroughput(options: LlamaThroughputOptions = {}): Promise<void> {
  const scratch = mkdtempSync(join(tmpdir(), 'ocular-bench-llama-'));
  const requested = options.modelPath ?? readEnvironment().OCULAR_BENCH_LLAMA_MODEL;
  const modelPath =
    requested ?? (existsSync(STORIES) ? STORIES : writeTinyLlamaGguf(join(scratch, 'tiny.gguf'), { endless: true, asciiOnly: true }));
  const modelName =
    requested === undefined && modelPath === STORIES ? 'stories260K' : requested === undefined ? 'generated tiny llama' : modelPath;
  const apiKey = 'ocu_bench_llama_throughput_key_0123456789';
  let server: Awaited<ReturnType<typeof startServer>> | undefined;
  let direct: DirectContext | undefined;
  try {
    const settings: ServerSettings = {
      host: '127.0.0.1',
      port: 0,
      logLevel: 'silent',
      binaries: { searchPath: '' },
      dataDir: scratch,
      configPath: undefined,
      envApiKeys: [apiKey],
      auth: true,
      config: parseConfig(
        {
          models: [
            {
              id: 'bench',
              provider: 'llama',
              modelPath,
              contextSize: PLAN.contextSize,
              parallel: 1,
              gpuLayers: 0,
              idleUnloadMs: 0,
              preload: true,
            },
          ],
        },
        {},
      ),
    };
    process.stdout.write(`llama-throughput: loading ${modelName} twice (Ocular's model and a direct context)...\n`);
    server = await startServer(settings, createLogger('silent'));
    await binding.toggleNativeLog(false);
    direct = await binding.loadModel({ model: modelPath, n_ctx: PLAN.contextSize, n_gpu_layers: 0, n_parallel: 1, kv_unified: false });
    await direct.parallel.enable({ n_parallel: 1 });
    const tokensPerTenSentences = (await direct.tokenize(SENTENCE.repeat(10))).tokens.length;
    sentences = Math.max(1, Math.round((PLAN.promptTokens * 10) / tokensPerTenSentences));

    // Warm-up, and the check that both paths do the same work: the same prompt gives the same text.
    const warmDirect = await runDirect(direct, 0);
    const warmOcular = await runOcular(server.url, apiKey, 0);
    if (warmDirect.text !== warmOcular.text || warmDirect.promptTokens !== warmOcular.promptTokens) {
      throw new Error(
        `the paths did different work: direct ${warmDirect.promptTokens} prompt tokens, ${JSON.stringify(warmDirect.text.slice(0, 80))}; ` +
          `Ocular ${warmOcular.promptTokens}, ${JSON.stringify(warmOcular.text.slice(0, 80))}`,
      );
    }

    process.stdout.write(`llama-throughput: ${PLAN.rounds} rounds, direct and Ocular interleaved...\n`);
    const runs: Record<'direct' | 'Ocular', Timing[]> = { direct: [], Ocular: [] };
    for (let round = 1; round <= PLAN.rounds; round++) {
      runs.direct.push(await runDirect(direct, round));
      runs.Ocular.push(await runOcular(server.url, apiKey, round));
    }

    const summary = (timings: Timing[]) => ({
      prompt: median(timings.map(promptRate)),
      generation: median(timings.map(generationRate)),
      firstTokenMs: median(timings.map((timing) => timing.firstTokenMs)),
      totalMs: median(timings.map((timing) => timing.lastTokenMs)),
      promptTokens: median(timings.map((timing) => timing.promptTokens)),
      outputTokens: median(timings.map((timing) => timing.outputTokens)),
    });
    const directSummary = summary(runs.direct);
    const ocularSummary = summary(runs.Ocular);
    const promptRatio = ocularSummary.prompt / directSummary.prompt;
    const generationRatio = ocularSummary.generation / directSummary.generation;

    process.stdout.write(
      `\nLlama throughput: ${modelName}, ${directSummary.promptTokens} prompt tokens, ${directSummary.outputTokens} generated, ` +
        `CPU, one sequence, medians of ${PLAN.rounds} rounds\n\n`,
    );
    printTable([
      ['path', 'prompt tok/s', 'generation tok/s', 'first token ms', 'last token ms'],
      ...(
        [
          ['direct binding', directSummary],
          ['Ocular (HTTP, streamed)', ocularSummary],
        ] as const
      ).map(([name, result]) => [
        name,
        formatRate(result.prompt),
        formatRate(result.generation),
        result.firstTokenMs.toFixed(1),
        result.totalMs.toFixed(1),
      ]),
    ]);
    process.stdout.write('\n');
    printTable([
      ['target', 'Ocular / direct', 'goal', 'result'],
      ['prompt tokens/s', `${promptRatio.toFixed(3)}x`, `>= ${TARGET_RATIO}x`, verdict(promptRatio >= TARGET_RATIO)],
      ['generation tokens/s', `${generationRatio.toFixed(3)}x`, `>= ${TARGET_RATIO}x`, verdict(generationRatio >= TARGET_RATIO)],
    ]);
    process.stdout.write('\n');
  } finally {
    await server?.close(1_000);
    if (direct) {
      direct.parallel.disable();
      await direct.release();
    }
    rmSync(scratch, { recursive: true, force: true });
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { values } = parseArgs({ options: { model: { type: 'string' } } });
  await runLlamaThroughput({ modelPath: values.model });
}
