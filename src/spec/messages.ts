/**
 * Canonical chat types. Wire formats (Reka, OpenAI) parse into these; providers convert from them.
 * No I/O here.
 */

export const MEDIA_KINDS = ['image', 'video', 'audio', 'pdf'] as const;
export type MediaKind = (typeof MEDIA_KINDS)[number];

export interface TextPart {
  type: 'text';
  text: string;
}

/** Media as the client referenced it: an http(s) or data: URL, not yet fetched or decoded. */
export interface MediaReference {
  type: 'media';
  kind: MediaKind;
  url: string;
  /**
   * A file this server already holds (a conversation asset), read instead of fetching `url`. Never set from a
   * request body: only services put it there.
   */
  localPath?: string | undefined;
  /** The bytes of a held file kept elsewhere (an asset in an S3 store), read instead of fetching `url`. Services only. */
  localData?: (() => Promise<Buffer>) | undefined;
}

/** Media resolved to bytes, ready for a provider: base64 so adapters can embed it without re-encoding. */
export interface MediaContent {
  type: 'media';
  kind: MediaKind;
  /** IANA media type, e.g. `image/png`. */
  mediaType: string;
  /** Base64 (standard alphabet) of the bytes. */
  data: string;
}

export interface ToolCall {
  id: string;
  name: string;
  /** Parsed JSON arguments. */
  arguments: unknown;
}

export interface ToolDefinition {
  name: string;
  description?: string | undefined;
  /** JSON Schema of the arguments object. */
  parameters: Record<string, unknown>;
}

/** `auto`: the model decides; `none`: no tool calls; `required`: at least one call; `{name}`: that tool. */
export type ToolChoice = 'auto' | 'none' | 'required' | { name: string };

export type Message<Media> =
  | { role: 'system'; content: string }
  | { role: 'user'; content: Array<TextPart | Media> }
  | { role: 'assistant'; content: string; toolCalls?: ToolCall[] | undefined }
  | { role: 'tool'; toolCallId: string; content: string };

/** A message as the client sent it. */
export type ChatMessage = Message<MediaReference>;
/** A message as a provider receives it. */
export type PromptMessage = Message<MediaContent>;

export interface SamplingOptions {
  /** @default 1024 */
  maxTokens: number;
  temperature?: number | undefined;
  topP?: number | undefined;
  topK?: number | undefined;
  seed?: number | undefined;
  stop?: string[] | undefined;
  frequencyPenalty?: number | undefined;
  presencePenalty?: number | undefined;
  /**
   * Asks for output that is one JSON value matching `schema` (or any JSON object). Providers that can constrain
   * decoding do (`response_format`, a grammar, the vendor's option); others put it in the prompt. The chat
   * service validates the answer either way.
   */
  responseFormat?: ResponseFormat | undefined;
}

/** Structured output: a JSON Schema the answer must match, or (`json_object`) any JSON object. */
export type ResponseFormat =
  | {
      type: 'json_schema';
      /** A short name for the schema (OpenAI requires one: letters, digits, `_` and `-`). */
      name: string;
      schema: Record<string, unknown>;
      /** OpenAI's strict mode, passed on to upstreams that take it. */
      strict?: boolean | undefined;
    }
  | { type: 'json_object' };

/** A validated chat request, independent of the wire format it arrived in. */
export interface ChatRequest extends SamplingOptions {
  /** The model id or alias the client asked for; the server's default when absent. */
  model?: string | undefined;
  messages: ChatMessage[];
  tools?: ToolDefinition[] | undefined;
  toolChoice?: ToolChoice | undefined;
  useSearchEngine?: boolean | undefined;
}

export type FinishReason = 'stop' | 'length' | 'context' | 'tool_call';

export interface Usage {
  inputTokens: number;
  outputTokens: number;
}

export interface ChatResult {
  id: string;
  /** The model id the client used (alias kept as given). */
  model: string;
  text: string;
  toolCalls: ToolCall[];
  finishReason: FinishReason;
  usage: Usage;
}
