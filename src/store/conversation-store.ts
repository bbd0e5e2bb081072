import type { Selectable } from 'kysely';
import { countRows, isUniqueViolation, type SqlDatabase } from './sql.ts';
import type { ConversationsTable, ConversationTurnsTable, MemoriesTable } from './tables.ts';
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

type ConversationRow = Selectable<ConversationsTable> & { turn_count: number; input_tokens: number; output_tokens: number };
type TurnRow = Selectable<ConversationTurnsTable>;
type MemoryRow = Selectable<MemoriesTable>;

/** Attempts at numbering a turn when another process appended one to the same conversation at the same moment. */
const TURN_SEQ_ATTEMPTS = 5;

function toConversation(row: ConversationRow): ConversationRecord {
  return {
    id: row.id,
    owner: row.owner,
    type: row.type,
    title: row.title,
    model: row.model,
    createdAt: new Date(row.created_at),
    updatedAt: new Date(row.updated_at),
    turnCount: Number(row.turn_count),
    inputTokens: Number(row.input_tokens),
    outputTokens: Number(row.output_tokens),
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
  readonly #database: SqlDatabase;

  constructor(database: SqlDatabase) {
    this.#database = database;
  }

  /** Conversations with their turn count and summed usage. */
  #conversations() {
    return this.#database.db
      .selectFrom('conversations as c')
      .selectAll('c')
      .select((eb) => [
        eb
          .selectFrom('conversation_turns as t')
          .whereRef('t.conversation_id', '=', 'c.id')
          .select(eb.fn.countAll<number>().as('n'))
          .as('turn_count'),
        eb
          .selectFrom('conversation_turns as t')
          .whereRef('t.conversation_id', '=', 'c.id')
          .select((inner) => inner.fn.coalesce(inner.fn.sum<number>('t.input_tokens'), inner.val(0)).as('n'))
          .as('input_tokens'),
        eb
          .selectFrom('conversation_turns as t')
          .whereRef('t.conversation_id', '=', 'c.id')
          .select((inner) => inner.fn.coalesce(inner.fn.sum<number>('t.output_tokens'), inner.val(0)).as('n'))
          .as('output_tokens'),
      ]);
  }

  async create(conversation: {
    id: string;
    owner: string;
    type: string;
    title: string | null;
    model: string | null;
  }): Promise<ConversationRecord> {
    const now = Date.now();
    await this.#database.db
      .insertInto('conversations')
      .values({ ...conversation, created_at: now, updated_at: now })
      .execute();
    return (await this.get(conversation.owner, conversation.id))!;
  }

  async get(owner: string, id: string): Promise<ConversationRecord | undefined> {
    const row = await this.#conversations().where('c.owner', '=', owner).where('c.id', '=', id).executeTakeFirst();
    return row && toConversation(row as ConversationRow);
  }

  /** The owner's conversations, the most recently active first. */
  async list(owner: string, limit: number, offset: number): Promise<Page<ConversationRecord>> {
    const rows = await this.#conversations()
      .where('c.owner', '=', owner)
      .orderBy('c.updated_at', 'desc')
      .orderBy('c.rowid', 'desc')
      .limit(limit)
      .offset(offset)
      .execute();
    const total = await countRows(this.#database.db.selectFrom('conversations').where('owner', '=', owner));
    return { items: rows.map((row) => toConversation(row as ConversationRow)), total };
  }

  /** Removes the conversation and its turns. */
  async delete(owner: string, id: string): Promise<boolean> {
    const result = await this.#database.db.deleteFrom('conversations').where('owner', '=', owner).where('id', '=', id).executeTakeFirst();
    return result.numDeletedRows > 0n;
  }

  /** Appends a turn (numbered after the last), gives the conversation `title` when it has none, and marks it active. */
  async addTurn(turn: NewTurn, title: string): Promise<TurnRecord> {
    for (let attempt = 1; ; attempt++) {
      const now = Date.now();
      try {
        await this.#database.db.transaction().execute(async (trx) => {
          const last = await trx
            .selectFrom('conversation_turns')
            .select((eb) => eb.fn.max('seq').as('seq'))
            .where('conversation_id', '=', turn.conversationId)
            .executeTakeFirst();
          const seq = last?.seq === null || last?.seq === undefined ? 0 : Number(last.seq) + 1;
          await trx
            .insertInto('conversation_turns')
            .values({
              id: turn.id,
              conversation_id: turn.conversationId,
              seq,
              prompt: turn.prompt,
              asset_keys: JSON.stringify(turn.assetKeys),
              answer: turn.answer,
              model: turn.model,
              finish_reason: turn.finishReason,
              input_tokens: turn.inputTokens,
              output_tokens: turn.outputTokens,
              latency_ms: turn.latencyMs,
              sources: JSON.stringify(turn.sources),
              created_at: now,
            })
            .execute();
          await trx.updateTable('conversations').set({ title }).where('id', '=', turn.conversationId).where('title', 'is', null).execute();
          await trx.updateTable('conversations').set({ updated_at: now }).where('id', '=', turn.conversationId).execute();
        });
        break;
      } catch (error) {
        // Two processes numbered a turn of the same conversation alike: the later one takes the next number.
        if (!isUniqueViolation(error) || attempt >= TURN_SEQ_ATTEMPTS) throw error;
      }
    }
    const row = await this.#database.db.selectFrom('conversation_turns').selectAll().where('id', '=', turn.id).executeTakeFirstOrThrow();
    return toTurn(row);
  }

  /** Every turn of a conversation, in order. */
  async turns(conversationId: string): Promise<TurnRecord[]> {
    const rows = await this.#database.db
      .selectFrom('conversation_turns')
      .selectAll()
      .where('conversation_id', '=', conversationId)
      .orderBy('seq')
      .execute();
    return rows.map(toTurn);
  }

  /** Saves a note, then drops the owner's oldest beyond `keep`. */
  async addMemory(memory: { id: string; owner: string; text: string; conversationId: string | null }, keep: number): Promise<void> {
    await this.#database.db.transaction().execute(async (trx) => {
      await trx
        .insertInto('memories')
        .values({ id: memory.id, owner: memory.owner, text: memory.text, conversation_id: memory.conversationId, created_at: Date.now() })
        .execute();
      await trx
        .deleteFrom('memories')
        .where('owner', '=', memory.owner)
        .where('rowid', 'not in', (eb) =>
          eb
            .selectFrom('memories')
            .select('rowid')
            .where('owner', '=', memory.owner)
            .orderBy('created_at', 'desc')
            .orderBy('rowid', 'desc')
            .limit(keep),
        )
        .execute();
    });
  }

  async memories(owner: string, limit: number, offset: number): Promise<Page<MemoryRecord>> {
    const rows = await this.#newestMemories(owner).limit(limit).offset(offset).execute();
    return { items: rows.map(toMemory), total: await countRows(this.#database.db.selectFrom('memories').where('owner', '=', owner)) };
  }

  /** The owner's newest notes, at most `limit`, for choosing which to recall. */
  async recentMemories(owner: string, limit: number): Promise<MemoryRecord[]> {
    return (await this.#newestMemories(owner).limit(limit).execute()).map(toMemory);
  }

  #newestMemories(owner: string) {
    return this.#database.db
      .selectFrom('memories')
      .selectAll()
      .where('owner', '=', owner)
      .orderBy('created_at', 'desc')
      .orderBy('rowid', 'desc');
  }

  async deleteMemory(owner: string, id: string): Promise<boolean> {
    const result = await this.#database.db.deleteFrom('memories').where('owner', '=', owner).where('id', '=', id).executeTakeFirst();
    return result.numDeletedRows > 0n;
  }

  async deleteMemories(owner: string): Promise<number> {
    const result = await this.#database.db.deleteFrom('memories').where('owner', '=', owner).executeTakeFirst();
    return Number(result.numDeletedRows);
  }
}
