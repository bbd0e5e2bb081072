import { z } from 'zod';
import type { AssetRecord } from '../../store/asset-store.ts';
import type { ConversationRecord, MemoryRecord, TurnRecord } from '../../store/conversation-store.ts';

// ---- requests ("Chat with Image" API: camelCase names as its clients send them) ----

/** Seed API clients send unset optional fields as null. */
const conversationType = z.literal('CHAT_WITH_IMAGE');

/** @default numOfSite 3, maxWord 300 */
export const DEFAULT_NUM_OF_SITE = 3;
export const DEFAULT_MAX_WORD = 300;

export const featuresRequestSchema = z.strictObject({
  type: conversationType,
  model: z.string().min(1).max(256).nullish(),
  /** Null or absent: start a new conversation. */
  conversationId: z.string().max(64).nullish(),
  promptObject: z.strictObject({
    prompt: z.string().refine((value) => value.trim() !== '', 'expected a non-empty prompt'),
    /** Keys of assets from `POST /api/assets`, shown to the model with this turn. */
    imageList: z.array(z.string().min(1).max(64)).max(1000).nullish(),
    /** Accepted for compatibility: every turn may mix text and assets. */
    isMixed: z.boolean().nullish(),
    webSearch: z.boolean().nullish(),
    /** Result pages read for a web search. @default 3 */
    numOfSite: z.int().min(1).max(10).nullish(),
    /** Words kept from each page. @default 300 */
    maxWord: z.int().min(10).max(5000).nullish(),
  }),
});

export type FeaturesRequest = z.infer<typeof featuresRequestSchema>;

export const featuresQuerySchema = z.looseObject({
  isStreaming: z.enum(['true', 'false']).optional(),
});

export const createConversationSchema = z.strictObject({
  type: conversationType,
  title: z.string().trim().min(1).max(200).nullish(),
  model: z.string().min(1).max(256).nullish(),
});

export const pageQuerySchema = z.strictObject({
  limit: z.coerce.number().int().min(1).max(100).default(20),
  offset: z.coerce.number().int().min(0).max(1_000_000_000).default(0),
});

export const exportQuerySchema = z.strictObject({
  format: z.enum(['markdown', 'json']).default('markdown'),
});

// ---- responses ----

export function toWireAsset(asset: AssetRecord, url: string, expiresAt: Date) {
  return {
    key: asset.key,
    kind: asset.kind,
    mime_type: asset.mediaType,
    size: asset.sizeBytes,
    width: asset.width,
    height: asset.height,
    duration_seconds: asset.durationSeconds,
    filename: asset.filename,
    created_at: asset.createdAt.toISOString(),
    url,
    url_expires_at: expiresAt.toISOString(),
  };
}

export function toWireConversation(conversation: ConversationRecord) {
  return {
    uuid: conversation.id,
    type: conversation.type,
    title: conversation.title,
    model: conversation.model,
    created_at: conversation.createdAt.toISOString(),
    updated_at: conversation.updatedAt.toISOString(),
    turn_count: conversation.turnCount,
    usage: { input_tokens: conversation.inputTokens, output_tokens: conversation.outputTokens },
  };
}

export function toWireAnswer(turn: TurnRecord) {
  return {
    id: turn.id,
    role: 'assistant' as const,
    content: turn.answer,
    model: turn.model,
    finish_reason: turn.finishReason,
    usage: { input_tokens: turn.inputTokens, output_tokens: turn.outputTokens },
    latency_ms: turn.latencyMs,
    sources: turn.sources,
    created_at: turn.createdAt.toISOString(),
  };
}

/** A turn as the two messages it is: the prompt with its asset keys, and the answer. */
export function toWireMessages(turn: TurnRecord) {
  return [
    {
      id: `${turn.id}-prompt`,
      role: 'user' as const,
      content: turn.prompt,
      imageList: turn.assetKeys,
      created_at: turn.createdAt.toISOString(),
    },
    toWireAnswer(turn),
  ];
}

export function toWireMemory(memory: MemoryRecord) {
  return { id: memory.id, text: memory.text, conversation_id: memory.conversationId, created_at: memory.createdAt.toISOString() };
}

/** A conversation as a Markdown document: its turns in order, each answer with its model, usage and latency. */
export function toMarkdown(conversation: ConversationRecord, turns: readonly TurnRecord[]): string {
  const lines = [`# ${conversation.title ?? 'Untitled conversation'}`, ''];
  lines.push(
    `Conversation ${conversation.id}, started ${conversation.createdAt.toISOString()}; ` +
      `${conversation.inputTokens} input and ${conversation.outputTokens} output tokens in all.`,
    '',
  );
  for (const turn of turns) {
    lines.push(`## User`, '', turn.prompt, '');
    if (turn.assetKeys.length > 0) lines.push(`Assets: ${turn.assetKeys.map((key) => `\`${key}\``).join(', ')}`, '');
    lines.push(
      `## Assistant (${turn.model})`,
      '',
      turn.answer,
      '',
      `_${turn.finishReason}; ${turn.inputTokens} input + ${turn.outputTokens} output tokens; ${turn.latencyMs} ms_`,
      '',
    );
    if (turn.sources.length > 0) {
      lines.push('Sources:', '', ...turn.sources.map((source) => `${source.index}. [${source.title}](${source.url})`), '');
    }
  }
  return lines.join('\n');
}
