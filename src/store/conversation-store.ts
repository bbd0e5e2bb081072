import type { Statement } from 'better-sqlite3';
import type { Db } from './database.ts';
import type { Page } from './video-store.ts';

export interface ConversationRecord {
  id: string;
  owner: string;
  /** `CHAT_WITH_IMAGE`. */
  type: string;
  /** Null until the first turn gives one, when the client set none. */
  title: string | null;
  /** The model the conversation was opened with (each turn records the one that answered). */
  model: string | null;
  createdAt: Date;
  updatedAt: Date;
  /** Turns so far, and their usage summed. */
  turnCount: number;
  inputTokens: number;
  outputTokens: number;
}

/** A web page an answer was given, numbered as the model was told to cite it. */
export interface TurnSource {
  index: number;
  title: string;
  url: string;
}

/** One exchange: the user's prompt with its assets, and the answer. */
export interface TurnRecord {
  /** Also the assistant message's id. */
  id: string;
  conversationId: string;
  seq: number;
  prompt: string;
  assetKeys: string[];
  answer: string;
  model: string;
  /** The model's, or `cancelled` when the client went away mid-answer (the answer is what had arrived). */
  finishReason: string;
  inputTokens: number;
  outputTokens: number;
  latencyMs: number;
  sources: TurnSource[];
  createdAt: Date;
}

export type NewTurn = Omit<TurnRecord, 'seq' | 'createdAt'>;

export interface MemoryRecord {
  id: string;
  owner: string;
  text: string;
  conversationId: string | null;
  createdAt: Date;
}

interface ConversationRow {
  id: string;
  owner: string;
  type: string;
  title: string | null;
  model: string | null;
  created_at: number;
  updated_at: number;
  turn_count: number;
  input_tokens: number;
  output_tokens: number;
}

interface TurnRow {
  id: string;
  conversation_id: string;
  seq: number;
  prompt: string;
  asset_keys: string;
  answer: string;
  model: string;
  finish_reason: string;
  input_tokens: number;
  output_tokens: number;
  latency_ms: number;
  sources: string;
  created_at: number;
}

interface MemoryRow {
  id: string;
  owner: string;
  text: string;
  conversation_id: string | null;
  created_at: number;
}

const CONVERSATION_COLUMNS = `c.*,
  (SELECT count(*) FROM conversation_turns t WHERE t.conversation_id = c.id) AS turn_count,
  (SELECT coalesce(sum(input_tokens), 0) FROM conversation_turns t WHERE t.conversation_id = c.id) AS input_tokens,
  (SELECT coalesce(sum(output_tokens), 0) FROM conversation_turns t WHERE t.conversation_id = c.id) AS output_tokens`;

function toConversation(row: ConversationRow): ConversationRecord {
  return {
    id: row.id,
    owner: row.owner,
    type: row.type,
    title: row.title,
    model: row.model,
    createdAt: new Date(row.created_at),
    updatedAt: new Date(row.updated_at),
    turnCount: row.turn_count,
    inputTokens: row.input_tokens,
    outputTokens: row.output_tokens,
  };
}

function toTurn(row: TurnRow): TurnRecord {
  return {
    id: row.id,
    conversationId: row.conversation_id,
    seq: row.seq,
    prompt: row.prompt,
    assetKeys: JSON.parse(row.asset_keys) as string[],
    answer: row.answer,
    model: row.model,
    finishReason: row.finish_reason,
    inputTokens: row.input_tokens,
    outputTokens: row.output_tokens,
    latencyMs: row.latency_ms,
    sources: JSON.parse(row.sources) as TurnSource[],
    createdAt: new Date(row.created_at),
  };
}

function toMemory(row: MemoryRow): MemoryRecord {
  return { id: row.id, owner: row.owner, text: row.text, conversationId: row.conversation_id, createdAt: new Date(row.created_at) };
}

/** Conversations, their turns and the owners' memory notes; the owner is in every lookup a client can reach. */
export class ConversationStore {
  readonly #db: Db;
  readonly #insert: Statement;
  readonly #get: Statement<[string, string], ConversationRow>;
  readonly #list: Statement<[string, number, number], ConversationRow>;
  readonly #count: Statement<[string], number>;
  readonly #delete: Statement<[string, string]>;
  readonly #setTitle: Statement<[string, string]>;
  readonly #touch: Statement<[number, string]>;
  readonly #insertTurn: Statement;
  readonly #nextSeq: Statement<[string], number>;
  readonly #turns: Statement<[string], TurnRow>;
  readonly #insertMemory: Statement;
  readonly #memories: Statement<[string, number, number], MemoryRow>;
  readonly #allMemories: Statement<[string, number], MemoryRow>;
  readonly #memoryCount: Statement<[string], number>;
  readonly #deleteMemory: Statement<[string, string]>;
  readonly #deleteMemories: Statement<[string]>;
  readonly #pruneMemories: Statement<[string, string, number]>;

  constructor(db: Db) {
    this.#db = db;
    this.#insert = db.prepare(
      `INSERT INTO conversations (id, owner, type, title, model, created_at, updated_at)
       VALUES (@id, @owner, @type, @title, @model, @now, @now)`,
    );
    this.#get = db.prepare(`SELECT ${CONVERSATION_COLUMNS} FROM conversations c WHERE c.owner = ? AND c.id = ?`);
    this.#list = db.prepare(
      `SELECT ${CONVERSATION_COLUMNS} FROM conversations c WHERE c.owner = ? ORDER BY c.updated_at DESC, c.rowid DESC LIMIT ? OFFSET ?`,
    );
    this.#count = db.prepare<[string], number>('SELECT count(*) FROM conversations WHERE owner = ?').pluck();
    this.#delete = db.prepare('DELETE FROM conversations WHERE owner = ? AND id = ?');
    this.#setTitle = db.prepare('UPDATE conversations SET title = ? WHERE id = ? AND title IS NULL');
    this.#touch = db.prepare('UPDATE conversations SET updated_at = ? WHERE id = ?');
    this.#insertTurn = db.prepare(
      `INSERT INTO conversation_turns (id, conversation_id, seq, prompt, asset_keys, answer, model, finish_reason,
         input_tokens, output_tokens, latency_ms, sources, created_at)
       VALUES (@id, @conversationId, @seq, @prompt, @assetKeys, @answer, @model, @finishReason,
         @inputTokens, @outputTokens, @latencyMs, @sources, @now)`,
    );
    this.#nextSeq = db
      .prepare<[string], number>('SELECT coalesce(max(seq), -1) + 1 FROM conversation_turns WHERE conversation_id = ?')
      .pluck();
    this.#turns = db.prepare('SELECT * FROM conversation_turns WHERE conversation_id = ? ORDER BY seq');
    this.#insertMemory = db.prepare(
      'INSERT INTO memories (id, owner, text, conversation_id, created_at) VALUES (@id, @owner, @text, @conversationId, @now)',
    );
    this.#memories = db.prepare('SELECT * FROM memories WHERE owner = ? ORDER BY created_at DESC, rowid DESC LIMIT ? OFFSET ?');
    this.#allMemories = db.prepare('SELECT * FROM memories WHERE owner = ? ORDER BY created_at DESC, rowid DESC LIMIT ?');
    this.#memoryCount = db.prepare<[string], number>('SELECT count(*) FROM memories WHERE owner = ?').pluck();
    this.#deleteMemory = db.prepare('DELETE FROM memories WHERE owner = ? AND id = ?');
    this.#deleteMemories = db.prepare('DELETE FROM memories WHERE owner = ?');
    this.#pruneMemories = db.prepare(
      `DELETE FROM memories WHERE owner = ? AND rowid NOT IN
         (SELECT rowid FROM memories WHERE owner = ? ORDER BY created_at DESC, rowid DESC LIMIT ?)`,
    );
  }

  create(conversation: { id: string; owner: string; type: string; title: string | null; model: string | null }): ConversationRecord {
    this.#insert.run({ ...conversation, now: Date.now() });
    return this.get(conversation.owner, conversation.id)!;
  }

  get(owner: string, id: string): ConversationRecord | undefined {
    const row = this.#get.get(owner, id);
    return row && toConversation(row);
  }

  /** The owner's conversations, the most recently active first. */
  list(owner: string, limit: number, offset: number): Page<ConversationRecord> {
    return { items: this.#list.all(owner, limit, offset).map(toConversation), total: this.#count.get(owner)! };
  }

  /** Removes the conversation and its turns. */
  delete(owner: string, id: string): boolean {
    return this.#delete.run(owner, id).changes > 0;
  }

  /** Appends a turn (numbered after the last), gives the conversation `title` when it has none, and marks it active. */
  addTurn(turn: NewTurn, title: string): TurnRecord {
    const now = Date.now();
    const id = this.#db.transaction(() => {
      const seq = this.#nextSeq.get(turn.conversationId)!;
      this.#insertTurn.run({ ...turn, seq, assetKeys: JSON.stringify(turn.assetKeys), sources: JSON.stringify(turn.sources), now });
      this.#setTitle.run(title, turn.conversationId);
      this.#touch.run(now, turn.conversationId);
      return turn.id;
    })();
    return this.turns(turn.conversationId).find((stored) => stored.id === id)!;
  }

  /** Every turn of a conversation, in order. */
  turns(conversationId: string): TurnRecord[] {
    return this.#turns.all(conversationId).map(toTurn);
  }

  /** Saves a note, then drops the owner's oldest beyond `keep`. */
  addMemory(memory: { id: string; owner: string; text: string; conversationId: string | null }, keep: number): void {
    this.#db.transaction(() => {
      this.#insertMemory.run({ ...memory, now: Date.now() });
      this.#pruneMemories.run(memory.owner, memory.owner, keep);
    })();
  }

  memories(owner: string, limit: number, offset: number): Page<MemoryRecord> {
    return { items: this.#memories.all(owner, limit, offset).map(toMemory), total: this.#memoryCount.get(owner)! };
  }

  /** The owner's newest notes, at most `limit`, for choosing which to recall. */
  recentMemories(owner: string, limit: number): MemoryRecord[] {
    return this.#allMemories.all(owner, limit).map(toMemory);
  }

  deleteMemory(owner: string, id: string): boolean {
    return this.#deleteMemory.run(owner, id).changes > 0;
  }

  deleteMemories(owner: string): number {
    return this.#deleteMemories.run(owner).changes;
  }
}
