import type { ServerResponse } from 'node:http';
import { sendJson, startFakeUpstream, type FakeUpstream, type RecordedRequest } from './fake-upstream.ts';

export function completion(
  content: string | null,
  options: { finishReason?: string; toolCalls?: unknown[]; usage?: [number, number] } = {},
) {
  const [prompt, completionTokens] = options.usage ?? [11, 7];
  return {
    id: 'chatcmpl-upstream',
    object: 'chat.completion',
    created: 1_700_000_000,
    model: 'upstream-model',
    choices: [
      {
        index: 0,
        message: { role: 'assistant', content, ...(options.toolCalls ? { tool_calls: options.toolCalls } : {}) },
        finish_reason: options.finishReason ?? 'stop',
      },
    ],
    usage: { prompt_tokens: prompt, completion_tokens: completionTokens, total_tokens: prompt + completionTokens },
  };
}

export function chunk(delta: unknown, finishReason: string | null = null) {
  return {
    id: 'chatcmpl-upstream',
    object: 'chat.completion.chunk',
    created: 1_700_000_000,
    model: 'upstream-model',
    choices: [{ index: 0, delta, finish_reason: finishReason }],
  };
}

/**
 * Writes a Chat Completions stream for `deltas`, splitting the bytes at awkward places (mid-line, mid-UTF-8)
 * so the parser downstream is exercised on arbitrary chunk boundaries.
 */
export async function streamCompletion(
  response: ServerResponse,
  deltas: string[],
  options: { finishReason?: string; splitEvery?: number; delayMs?: number; usage?: [number, number]; omitEnd?: boolean } = {},
): Promise<void> {
  const [prompt, completionTokens] = options.usage ?? [11, deltas.length];
  const events = [
    chunk({ role: 'assistant', content: '' }),
    ...deltas.map((text) => chunk({ content: text })),
    ...(options.omitEnd
      ? []
      : [
          chunk({}, options.finishReason ?? 'stop'),
          {
            id: 'chatcmpl-upstream',
            object: 'chat.completion.chunk',
            choices: [],
            usage: { prompt_tokens: prompt, completion_tokens: completionTokens },
          },
        ]),
  ];
  const text = events.map((event) => `data: ${JSON.stringify(event)}\n\n`).join('') + (options.omitEnd ? '' : 'data: [DONE]\n\n');
  const bytes = Buffer.from(text, 'utf8');
  response.writeHead(200, { 'content-type': 'text/event-stream' });
  const step = options.splitEvery ?? 7;
  for (let offset = 0; offset < bytes.length; offset += step) {
    if (response.destroyed) return;
    response.write(bytes.subarray(offset, offset + step));
    if (options.delayMs) await new Promise((resolve) => setTimeout(resolve, options.delayMs));
  }
  response.end();
}

export type Behaviour = (request: RecordedRequest, response: ServerResponse) => void | Promise<void>;

/** An OpenAI-compatible upstream whose behaviour each test sets. */
export async function startOpenAiUpstream(): Promise<FakeUpstream & { behave(next: Behaviour): void }> {
  let behaviour: Behaviour = (_request, response) => sendJson(response, 200, completion('hello'));
  const upstream = await startFakeUpstream((request, response) => behaviour(request, response));
  return { ...upstream, behave: (next) => (behaviour = next) };
}

/**
 * Indexing with only a caption model (`model`, served by a fake upstream): every offline analyzer off, so a test
 * video indexes in moments; `extra` adds or overrides settings.
 */
export function captionOnlyIndexing(model: string, extra: Record<string, unknown> = {}) {
  return {
    captionModel: model,
    ocr: { enabled: false },
    objects: { enabled: false },
    vad: { enabled: false },
    labels: { enabled: false },
    speech: { enabled: false },
    ...extra,
  };
}
