import { randomUUID } from 'node:crypto';
import type { ChatService } from '../chat/chat-service.ts';
import type { ModelRegistry } from '../chat/model-registry.ts';
import type { ConversationSettings, Limits, MemorySettings } from '../config/schema.ts';
import { OcularError, validationError } from '../spec/errors.ts';
import type { ChatMessage, ChatRequest, MediaReference, TextPart, Usage } from '../spec/messages.ts';
import type { Capabilities } from '../spec/provider.ts';
import type { StreamPart } from '../spec/stream-parts.ts';
import type { AssetRecord } from '../store/asset-store.ts';
import type { ConversationRecord, ConversationStore, MemoryRecord, TurnRecord, TurnSource } from '../store/conversation-store.ts';
import type { Page } from '../store/video-store.ts';
import type { AssetLibrary } from './assets.ts';
import { estimateTextTokens, fitHistory, type HistoryTurn } from './context-window.ts';
import { MemoryFilter, memoryInstructions, recallNotes } from './memory.ts';
import { formatSources, HOW_TO_CONFIGURE_SEARCH, type WebSearch, type WebSource } from './web-search.ts';

/** The one conversation type there is ("Chat with Image"). */
export const CHAT_WITH_IMAGE = 'CHAT_WITH_IMAGE';

/** Longest title kept, in characters; one made from a first prompt is cut at a word before it. */
export const MAX_TITLE_CHARS = 80;

/** What `finish_reason` a turn gets when its client went away mid-answer. */
export const CANCELLED = 'cancelled';

export interface ConversationServiceOptions {
  chat: ChatService;
  models: ModelRegistry;
  store: ConversationStore;
  assets: AssetLibrary;
  settings: ConversationSettings;
  memory: MemorySettings;
  limits: Pick<Limits, 'maxMediaPerTurn' | 'maxMessages'>;
  /** Absent when `search.provider` is not configured. */
  webSearch?: WebSearch | undefined;
}

export interface TurnRequest {
  owner: string;
  /** Null or absent: a new conversation. */
  conversationId?: string | null | undefined;
  /** @default the conversation's model, else the server's default */
  model?: string | undefined;
  prompt: string;
  assetKeys: readonly string[];
  webSearch: boolean;
  numOfSite: number;
  maxWord: number;
}

export interface TurnAnswer {
  conversation: ConversationRecord;
  turn: TurnRecord;
}

export interface TurnStream {
  conversationId: string;
  /** The id the stored answer will have. */
  messageId: string;
  model: string;
  sources: TurnSource[];
  /**
   * The answer's text as it comes (memory markers cut out), then `finish` once the turn is stored, or `error`.
   * Cancelling it (the client went away) aborts the upstream and stores what had arrived as a cancelled turn.
   */
  parts: ReadableStream<StreamPart>;
}

/** Everything a turn needs, checked and gathered before the model is called. */
interface PreparedTurn {
  conversation: ConversationRecord;
  /** Made by this turn: removed again when the turn fails before anything is stored. */
  created: boolean;
  modelName: string;
  request: ChatRequest;
  sources: TurnSource[];
  memory: MemoryFilter | undefined;
  started: number;
}

/** A title from the first prompt: its first line, cut at a word boundary. */
export function titleFrom(prompt: string): string {
  const line = prompt.trim().split('\n')[0]!.replace(/\s+/g, ' ');
  if (line.length <= MAX_TITLE_CHARS) return line;
  const cut = line.slice(0, MAX_TITLE_CHARS - 1);
  const space = cut.lastIndexOf(' ');
  return `${space > MAX_TITLE_CHARS / 2 ? cut.slice(0, space) : cut}…`;
}

function notFound(id: string): OcularError {
  return new OcularError('not_found_error', `no conversation with id "${id}"`, { param: 'conversationId' });
}

/**
 * An error the chat service raised about the turn's own media part (`messages.<last>.content.<n>`) names the
 * request field the client sent instead: the turn's assets come first in that message, in `imageList` order.
 */
function toTurnError(error: unknown, lastMessage: number): unknown {
  if (!(error instanceof OcularError) || error.param === undefined) return error;
  const match = /^messages\.(\d+)\.content\.(\d+)/.exec(error.param);
  if (!match || Number(match[1]) !== lastMessage) return error;
  const param = `promptObject.imageList.${match[2]}`;
  return new OcularError(error.type, error.message.replace(match[0], param), { param, cause: error });
}

const CONVERSATION_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * Conversations kept on the server ("Chat with Image"): the client sends only each new prompt with the keys of
 * assets it uploaded once; the history goes to the model with it, trimmed to the model's context, through the
 * same ChatService (models, media pipeline, limits) as `/v1/chat`. Every turn is stored with the model that
 * answered, its usage and latency. Optionally with web search results (cited by number) and long-term memory.
 */
export class ConversationService {
  readonly #chat: ChatService;
  readonly #models: ModelRegistry;
  readonly #store: ConversationStore;
  readonly #assets: AssetLibrary;
  readonly #settings: ConversationSettings;
  readonly #memory: MemorySettings;
  readonly #limits: ConversationServiceOptions['limits'];
  readonly #webSearch: WebSearch | undefined;

  constructor(options: ConversationServiceOptions) {
    this.#chat = options.chat;
    this.#models = options.models;
    this.#store = options.store;
    this.#assets = options.assets;
    this.#settings = options.settings;
    this.#memory = options.memory;
    this.#limits = options.limits;
    this.#webSearch = options.webSearch;
  }

  get memoryEnabled(): boolean {
    return this.#memory.enabled;
  }

  /** The configured models (ids and aliases) with what they accept and the context they are given. */
  listModels(): Array<{ id: string; provider: string; upstreamModel: string; capabilities: Capabilities; contextTokens: number }> {
    return this.#models.names.map((id) => {
      const { model } = this.#models.resolve(id);
      return {
        id,
        provider: model.provider,
        upstreamModel: model.upstreamModel,
        capabilities: model.capabilities,
        contextTokens: this.#contextTokens(id),
      };
    });
  }

  #contextTokens(modelName: string): number {
    return this.#settings.modelContextTokens[modelName] ?? this.#settings.contextTokens;
  }

  async create(
    owner: string,
    fields: { type: string; title?: string | undefined; model?: string | undefined },
  ): Promise<ConversationRecord> {
    if (fields.model !== undefined) this.#models.resolve(fields.model);
    return this.#store.create({
      id: randomUUID(),
      owner,
      type: fields.type,
      title: fields.title === undefined ? null : fields.title,
      model: fields.model ?? null,
    });
  }

  async get(owner: string, id: string): Promise<ConversationRecord> {
    const conversation = CONVERSATION_ID.test(id) ? await this.#store.get(owner, id) : undefined;
    if (!conversation) throw notFound(id);
    return conversation;
  }

  async turns(owner: string, id: string): Promise<TurnRecord[]> {
    return this.#store.turns((await this.get(owner, id)).id);
  }

  list(owner: string, limit: number, offset: number): Promise<Page<ConversationRecord>> {
    return this.#store.list(owner, limit, offset);
  }

  async delete(owner: string, id: string): Promise<void> {
    await this.get(owner, id);
    await this.#store.delete(owner, id);
  }

  memories(owner: string, limit: number, offset: number): Promise<Page<MemoryRecord>> {
    return this.#store.memories(owner, limit, offset);
  }

  async deleteMemory(owner: string, id: string): Promise<void> {
    if (!(await this.#store.deleteMemory(owner, id))) throw new OcularError('not_found_error', `no memory note with id "${id}"`);
  }

  deleteMemories(owner: string): Promise<number> {
    return this.#store.deleteMemories(owner);
  }

  /** Answers one turn and stores it. */
  async answer(request: TurnRequest, signal: AbortSignal): Promise<TurnAnswer> {
    const prepared = await this.#prepare(request, signal);
    try {
      const result = await this.#chat.generate(prepared.request, signal);
      let text = result.text;
      if (prepared.memory) text = prepared.memory.push(text) + prepared.memory.end();
      const turn = await this.#saveTurn(prepared, request, { text, finishReason: result.finishReason, usage: result.usage });
      if (!turn) throw notFound(prepared.conversation.id);
      return { conversation: await this.get(request.owner, prepared.conversation.id), turn };
    } catch (error) {
      await this.#discard(prepared);
      throw toTurnError(error, prepared.request.messages.length - 1);
    }
  }

  /** Starts a streamed turn; rejects (before anything is sent) when the request or the upstream fails early. */
  async stream(request: TurnRequest, signal: AbortSignal): Promise<TurnStream> {
    const prepared = await this.#prepare(request, signal);
    let source: ReadableStream<StreamPart>;
    try {
      ({ parts: source } = await this.#chat.stream(prepared.request, signal));
    } catch (error) {
      await this.#discard(prepared);
      throw toTurnError(error, prepared.request.messages.length - 1);
    }
    const messageId = randomUUID();
    const reader = source.getReader();
    let text = '';
    let stored = false;
    // Stores the turn once; the text is final when this returns its promise (the memory filter's tail included).
    const save = async (finishReason: string, usage: Usage): Promise<TurnRecord | undefined> => {
      if (stored) return undefined;
      stored = true;
      if (prepared.memory) text += prepared.memory.end();
      return this.#saveTurn(prepared, request, { text, finishReason, usage }, messageId);
    };
    // One source part per call, reporting whether it produced anything: a pull that enqueues nothing would
    // leave the reader waiting (the stream does not call pull again by itself).
    const step = async (controller: ReadableStreamDefaultController<StreamPart>): Promise<boolean> => {
      let next: ReadableStreamReadResult<StreamPart>;
      try {
        next = await reader.read();
      } catch (error) {
        await save('error', { inputTokens: 0, outputTokens: 0 });
        controller.error(error);
        return true;
      }
      if (next.done) {
        // The upstream ended without a finish part (guardStream reports that as an error part first).
        await save('error', { inputTokens: 0, outputTokens: 0 });
        controller.close();
        return true;
      }
      const part = next.value;
      switch (part.type) {
        case 'text-delta': {
          const visible = prepared.memory ? prepared.memory.push(part.text) : part.text;
          text += visible;
          if (visible === '') return false;
          controller.enqueue({ type: 'text-delta', text: visible });
          return true;
        }
        case 'tool-call':
          return false;
        case 'finish': {
          const before = text.length;
          const saving = save(part.finishReason, part.usage);
          if (text.length > before) controller.enqueue({ type: 'text-delta', text: text.slice(before) });
          await saving;
          controller.enqueue(part);
          return true;
        }
        case 'error':
          await save('error', { inputTokens: 0, outputTokens: 0 });
          controller.enqueue(part);
          return true;
      }
    };
    const parts = new ReadableStream<StreamPart>({
      pull: async (controller) => {
        while (!(await step(controller))) {
          // nothing to show yet (a held-back memory marker, a tool call): read on
        }
      },
      cancel: async (reason) => {
        await save(CANCELLED, { inputTokens: 0, outputTokens: 0 }).catch(() => undefined);
        await reader.cancel(reason).catch(() => undefined);
      },
    });
    return { conversationId: prepared.conversation.id, messageId, model: prepared.modelName, sources: prepared.sources, parts };
  }

  async #prepare(request: TurnRequest, signal: AbortSignal): Promise<PreparedTurn> {
    const started = performance.now();
    const prompt = request.prompt.trim();
    if (prompt === '') throw validationError('promptObject.prompt must not be empty', 'promptObject.prompt');
    if (prompt.length > this.#settings.maxPromptChars) {
      throw validationError(
        `promptObject.prompt is longer than ${this.#settings.maxPromptChars} characters (conversations.maxPromptChars)`,
        'promptObject.prompt',
      );
    }
    if (request.assetKeys.length > this.#limits.maxMediaPerTurn) {
      throw validationError(
        `too many assets in one turn: ${request.assetKeys.length}, at most ${this.#limits.maxMediaPerTurn} (limits.maxMediaPerTurn)`,
        'promptObject.imageList',
      );
    }
    const existing = request.conversationId == null ? undefined : await this.get(request.owner, request.conversationId);
    if (existing && existing.turnCount >= this.#settings.maxTurns) {
      throw validationError(
        `this conversation has reached ${this.#settings.maxTurns} turns (conversations.maxTurns); start a new one`,
        'conversationId',
      );
    }
    const modelName = request.model ?? existing?.model ?? this.#models.defaultModel;
    const resolved = this.#models.resolve(modelName); // unknown model: 404 before anything is stored
    const assets: AssetRecord[] = [];
    for (const [index, key] of request.assetKeys.entries()) {
      assets.push(await this.#assets.get(request.owner, key, `promptObject.imageList.${index}`));
    }
    if (request.webSearch && !this.#webSearch) throw validationError(HOW_TO_CONFIGURE_SEARCH, 'promptObject.webSearch');

    const sources: WebSource[] =
      request.webSearch && this.#webSearch
        ? await this.#webSearch.search({ query: prompt, numOfSite: request.numOfSite, maxWord: request.maxWord }, signal)
        : [];
    const recalled = this.#memory.enabled
      ? recallNotes(await this.#store.recentMemories(request.owner, 1000), prompt, this.#memory.maxRecalled)
      : [];
    const system = this.#memory.enabled ? memoryInstructions(recalled) : undefined;
    const current = this.#currentText(prompt, sources);
    const budget = {
      contextTokens: this.#contextTokens(resolved.name),
      maxTokens: this.#settings.maxTokens,
      mediaTokens: this.#settings.mediaTokens,
    };
    const fixed =
      (system === undefined ? 0 : estimateTextTokens(system)) + estimateTextTokens(current) + assets.length * budget.mediaTokens;
    // Each turn is two messages; the newest that the message limit allows (the system prompt and this turn aside).
    const maxHistory = Math.max(0, Math.floor((this.#limits.maxMessages - 2) / 2));
    const pastTurns = existing ? (await this.#store.turns(existing.id)).slice(-maxHistory) : [];
    const history: HistoryTurn[] = [];
    for (const turn of pastTurns) history.push(await this.#historyTurn(request.owner, turn, resolved.name, resolved.model.capabilities));
    const fitted = fitHistory(history, fixed, budget);

    const messages: ChatMessage[] = [];
    if (system !== undefined) messages.push({ role: 'system', content: system });
    for (const turn of fitted.turns) {
      const note = turn.droppedMedia > 0 ? `\n\n[${turn.droppedMedia} attachment(s) of this message left out to fit the context]` : '';
      messages.push({ role: 'user', content: [...turn.media, { type: 'text', text: turn.prompt + note }] });
      messages.push({ role: 'assistant', content: turn.answer === '' ? '[the answer was interrupted]' : turn.answer });
    }
    const currentContent: Array<TextPart | MediaReference> = [
      ...assets.map((asset) => this.#mediaOf(asset)),
      { type: 'text', text: current },
    ];
    messages.push({ role: 'user', content: currentContent });

    const conversation =
      existing ??
      (await this.#store.create({ id: randomUUID(), owner: request.owner, type: CHAT_WITH_IMAGE, title: null, model: resolved.name }));
    return {
      conversation,
      created: existing === undefined,
      modelName: resolved.name,
      request: { model: resolved.name, messages, maxTokens: this.#settings.maxTokens },
      sources: sources.map(({ index, title, url }) => ({ index, title, url })),
      memory: this.#memory.enabled ? new MemoryFilter() : undefined,
      started,
    };
  }

  #currentText(prompt: string, sources: readonly WebSource[]): string {
    if (sources.length === 0) return prompt;
    return (
      `Web search results for the question below, numbered:\n\n${formatSources(sources)}\n\n` +
      `Answer the question using these results where they help, and cite the ones you use as [n].\n\nQuestion: ${prompt}`
    );
  }

  #mediaOf(asset: AssetRecord): MediaReference {
    return { type: 'media', kind: asset.kind, url: `asset:${asset.key}`, ...this.#assets.held(asset.key) };
  }

  /**
   * A stored turn as history: its assets that still exist and that this turn's model can see (after a switch to
   * a model without image input, earlier images are left out rather than failing every later turn); what is
   * left out is named in the text instead.
   */
  async #historyTurn(owner: string, turn: TurnRecord, modelName: string, capabilities: Capabilities): Promise<HistoryTurn> {
    const media: MediaReference[] = [];
    const gone: string[] = [];
    const unseen: string[] = [];
    for (const key of turn.assetKeys) {
      const asset = await this.#assets.find(owner, key);
      if (!asset) gone.push(key);
      else if ((asset.kind === 'image' && !capabilities.image) || (asset.kind === 'video' && !capabilities.video && !capabilities.image)) {
        unseen.push(key);
      } else media.push(this.#mediaOf(asset));
    }
    let note = gone.length > 0 ? `\n\n[attachment(s) since deleted: ${gone.join(', ')}]` : '';
    if (unseen.length > 0) note += `\n\n[${unseen.length} attachment(s) not shown: model "${modelName}" does not take them]`;
    return { prompt: turn.prompt + note, media, answer: turn.answer };
  }

  async #saveTurn(
    prepared: PreparedTurn,
    request: TurnRequest,
    answer: { text: string; finishReason: string; usage: Usage },
    id: string = randomUUID(),
  ): Promise<TurnRecord | undefined> {
    // Deleted while the model answered: the answer has nowhere to go (nor have its memory notes).
    if (!(await this.#store.get(request.owner, prepared.conversation.id))) return undefined;
    const turn = await this.#store.addTurn(
      {
        id,
        conversationId: prepared.conversation.id,
        prompt: request.prompt.trim(),
        assetKeys: [...request.assetKeys],
        answer: answer.text,
        model: prepared.modelName,
        finishReason: answer.finishReason,
        inputTokens: answer.usage.inputTokens,
        outputTokens: answer.usage.outputTokens,
        latencyMs: Math.round(performance.now() - prepared.started),
        sources: prepared.sources,
      },
      titleFrom(request.prompt),
    );
    for (const note of prepared.memory?.notes ?? []) {
      await this.#store.addMemory(
        { id: randomUUID(), owner: request.owner, text: note, conversationId: prepared.conversation.id },
        this.#memory.maxNotes,
      );
    }
    return turn;
  }

  /** A turn that failed before anything was stored: a conversation it opened goes again. */
  async #discard(prepared: PreparedTurn): Promise<void> {
    if (prepared.created && (await this.#store.turns(prepared.conversation.id)).length === 0) {
      await this.#store.delete(prepared.conversation.owner, prepared.conversation.id);
    }
  }
}
