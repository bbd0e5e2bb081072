import { randomUUID } from 'node:crypto';
import type { z } from 'zod';
import type { Limits } from '../config/schema.ts';
import { OcularError, validationError } from '../spec/errors.ts';
import type { ChatMessage, ChatRequest, ChatResult, PromptMessage, Usage } from '../spec/messages.ts';
import type { LanguageModel, ProviderRequest } from '../spec/provider.ts';
import type { StreamPart } from '../spec/stream-parts.ts';
import { findStop, guardStream } from './guard-stream.ts';
import { MediaResolver } from './media-resolver.ts';
import type { ModelRegistry } from './model-registry.ts';
import { checkStructuredAnswer, compileResponseFormat, correctionPrompt } from './structured-output.ts';

/** The `param`s errors about `response_format` and its schema are reported under. */
const RESPONSE_FORMAT_PARAM = 'response_format';
const SCHEMA_PARAM = 'response_format.json_schema.schema';

export interface PreparedChat {
  id: string;
  /** The model name to report back: what the client asked for, or the default's id. */
  modelName: string;
  model: LanguageModel;
  request: ProviderRequest;
  /** The compiled `responseFormat`, when the request asks for structured output. */
  validator?: z.ZodType | undefined;
}

export interface ChatStream {
  id: string;
  modelName: string;
  parts: ReadableStream<StreamPart>;
}

/** Told of every call to a model (for metrics): what it cost when it answered, what went wrong when it did not. */
export interface ChatObserver {
  /** `seconds` until the answer was complete (a stream's last part). */
  answered(model: string, usage: Usage, seconds: number): void;
  failed(model: string, error: unknown, seconds: number): void;
}

/** Chat behaviour shared by every wire format: model choice, limits, media, continuation and stop strings. */
export class ChatService {
  readonly #models: ModelRegistry;
  readonly #limits: Limits;
  readonly #media: MediaResolver;
  readonly #observer: ChatObserver | undefined;

  constructor(models: ModelRegistry, limits: Limits, media: MediaResolver, observer?: ChatObserver) {
    this.#models = models;
    this.#limits = limits;
    this.#media = media;
    this.#observer = observer;
  }

  get modelNames(): readonly string[] {
    return this.#models.names;
  }

  /** The model a request naming `model` (the default when absent) would use, and what it accepts; 400 for an unknown one. */
  describeModel(model: string | undefined): { name: string; capabilities: LanguageModel['capabilities'] } {
    const resolved = this.#models.resolve(model);
    return { name: resolved.name, capabilities: resolved.model.capabilities };
  }

  /** Validates the request against the model and limits, and resolves its media. */
  async prepare(request: ChatRequest, signal: AbortSignal): Promise<PreparedChat> {
    const { name, model } = this.#models.resolve(request.model);
    if (request.messages.length === 0) throw validationError('messages must contain at least one message', 'messages');
    if (request.messages.length > this.#limits.maxMessages) {
      throw validationError(`too many messages: at most ${this.#limits.maxMessages} are allowed (limits.maxMessages)`, 'messages');
    }
    if (request.maxTokens > this.#limits.maxOutputTokens) {
      throw validationError(`max_tokens must be at most ${this.#limits.maxOutputTokens} (limits.maxOutputTokens)`, 'max_tokens');
    }
    if (request.useSearchEngine) {
      throw validationError('use_search_engine is not available: no search backend is configured on this server', 'use_search_engine');
    }
    if (request.tools && request.tools.length > 0 && !model.capabilities.tools) {
      throw validationError(`model "${name}" does not support tools`, 'tools');
    }
    request.messages.forEach((message, index) => this.#checkMediaCount(message, index));
    const validator = request.responseFormat && compileResponseFormat(request.responseFormat, SCHEMA_PARAM);
    const messages = MediaResolver.hasMedia(request.messages)
      ? await this.#media.resolve(request.messages, { name, capabilities: model.capabilities }, signal)
      : (request.messages as PromptMessage[]); // no media parts: the two message types coincide
    const last = messages.at(-1)!;
    let continuation = false;
    if (last.role === 'assistant') {
      if (last.toolCalls && last.toolCalls.length > 0) {
        throw validationError('the last message is an assistant tool call: send its tool_output next', `messages.${messages.length - 1}`);
      }
      if (last.content === '') messages.pop();
      else continuation = true;
      if (messages.length === 0) throw validationError('messages must contain a user message', 'messages');
    }
    if (continuation && validator !== undefined) {
      throw validationError('response_format cannot be combined with continuing a final assistant message', RESPONSE_FORMAT_PARAM);
    }
    const { model: _model, messages: _messages, useSearchEngine: _search, ...options } = request;
    return { id: randomUUID(), modelName: name, model, request: { ...options, messages, continuation }, validator };
  }

  #checkMediaCount(message: ChatMessage, index: number): void {
    if (message.role !== 'user') return;
    const count = message.content.filter((part) => part.type === 'media').length;
    if (count > this.#limits.maxMediaPerTurn) {
      throw validationError(
        `too many media parts in one user turn: ${count}, at most ${this.#limits.maxMediaPerTurn} are allowed (limits.maxMediaPerTurn)`,
        `messages.${index}.content`,
      );
    }
  }

  /**
   * Answers in one piece. With a `responseFormat`, the answer is validated: an invalid one is asked for once
   * more (the model told what was wrong), and a second invalid one is a 502 saying what did not match. A
   * valid answer's text is its JSON (a Markdown fence around it removed). Tool calls are not validated.
   */
  async generate(request: ChatRequest, signal: AbortSignal): Promise<ChatResult> {
    const prepared = await this.prepare(request, signal);
    const first = await this.#complete(prepared, signal);
    if (prepared.validator === undefined || first.toolCalls.length > 0) return first;
    const checked = checkStructuredAnswer(first.text, prepared.validator, SCHEMA_PARAM);
    if ('json' in checked) return { ...first, text: checked.json };
    const retry: PreparedChat = {
      ...prepared,
      request: {
        ...prepared.request,
        messages: [
          ...prepared.request.messages,
          { role: 'assistant', content: first.text },
          { role: 'user', content: [{ type: 'text', text: correctionPrompt(checked.problem, request.responseFormat!) }] },
        ],
      },
    };
    const second = await this.#complete(retry, signal);
    const usage = {
      inputTokens: first.usage.inputTokens + second.usage.inputTokens,
      outputTokens: first.usage.outputTokens + second.usage.outputTokens,
    };
    if (second.toolCalls.length > 0) return { ...second, usage };
    const rechecked = checkStructuredAnswer(second.text, prepared.validator, SCHEMA_PARAM);
    if ('json' in rechecked) return { ...second, text: rechecked.json, usage };
    throw new OcularError('upstream_error', `the model's answer did not match response_format twice; last time ${rechecked.problem}`);
  }

  async #complete(prepared: PreparedChat, signal: AbortSignal): Promise<ChatResult> {
    const started = performance.now();
    let result;
    try {
      result = await prepared.model.generate(prepared.request, signal);
    } catch (error) {
      this.#observer?.failed(prepared.modelName, error, (performance.now() - started) / 1000);
      throw error;
    }
    this.#observer?.answered(prepared.modelName, result.usage, (performance.now() - started) / 1000);
    let { text, finishReason } = result;
    const stops = prepared.request.stop?.filter((stop) => stop !== '') ?? [];
    const stopAt = findStop(text, stops);
    if (stopAt !== -1) {
      text = text.slice(0, stopAt);
      finishReason = 'stop';
    }
    return { id: prepared.id, model: prepared.modelName, text, toolCalls: result.toolCalls, finishReason, usage: result.usage };
  }

  /**
   * Starts a streamed answer; rejects (before any byte is sent) when the request or the upstream fails early.
   * With a `responseFormat` the answer is buffered: it is generated and validated as `generate` does (retry
   * included), then streamed as one text delta, so an invalid answer is a plain 502 rather than a stream that
   * breaks off after sending JSON the client cannot use.
   */
  async stream(request: ChatRequest, signal: AbortSignal): Promise<ChatStream> {
    if (request.responseFormat !== undefined) {
      const result = await this.generate(request, signal);
      return { id: result.id, modelName: result.model, parts: streamResult(result) };
    }
    const prepared = await this.prepare(request, signal);
    const stopped = new AbortController();
    const upstreamSignal = AbortSignal.any([signal, stopped.signal]);
    const started = performance.now();
    let source: ReadableStream<StreamPart>;
    try {
      source = await prepared.model.stream(prepared.request, upstreamSignal);
    } catch (error) {
      this.#observer?.failed(prepared.modelName, error, (performance.now() - started) / 1000);
      throw error;
    }
    const parts = guardStream(source, { stop: prepared.request.stop, onStop: () => stopped.abort(), signal: upstreamSignal });
    return { id: prepared.id, modelName: prepared.modelName, parts: this.#observed(parts, prepared.modelName, started) };
  }
  /** The parts as they are, telling the observer how the stream ended. */
  #observed(parts: ReadableStream<StreamPart>, model: string, started: number): ReadableStream<StreamPart> {
    const observer = this.#observer;
    if (observer === undefined) return parts;
    const seconds = (): number => (performance.now() - started) / 1000;
    return parts.pipeThrough(
      new TransformStream<StreamPart, StreamPart>({
        transform(part, controller) {
          if (part.type === 'finish') observer.answered(model, part.usage, seconds());
          else if (part.type === 'error') observer.failed(model, part.error, seconds());
          controller.enqueue(part);
        },
      }),
    );
  }
}

/** A finished answer as stream parts. */
function streamResult(result: ChatResult): ReadableStream<StreamPart> {
  const parts: StreamPart[] = [
    ...(result.text === '' ? [] : [{ type: 'text-delta' as const, text: result.text }]),
    ...result.toolCalls.map((toolCall) => ({ type: 'tool-call' as const, toolCall })),
    { type: 'finish', finishReason: result.finishReason, usage: result.usage },
  ];
  return new ReadableStream({
    start(controller) {
      for (const part of parts) controller.enqueue(part);
      controller.close();
    },
  });
}
