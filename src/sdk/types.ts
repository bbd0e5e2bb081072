// The wire formats of Ocular's API, written out by hand (the SDK imports nothing from the server). Request and
// response fields keep the wire's snake_case, as openai-node does, so what the README's curl examples send is
// what these types describe.

// ---- chat (Reka Chat API, POST /v1/chat) ----

export type ChatContentPart =
  | { type: 'text'; text: string }
  /** An http(s) URL or a `data:` URL. */
  | { type: 'image_url'; image_url: string }
  | { type: 'video_url'; video_url: string }
  | { type: 'audio_url'; audio_url: string }
  | { type: 'pdf_url'; pdf_url: string };

export interface ToolCall {
  id: string;
  name: string;
  /** The arguments the model chose, as JSON. */
  parameters: unknown;
}

export type ChatMessage =
  | { role: 'user'; content: string | ChatContentPart[] }
  | { role: 'system'; content: string }
  | { role: 'assistant'; content: string | null; tool_calls?: ToolCall[] | undefined }
  | { role: 'tool_output'; content: Array<{ tool_call_id: string; output: unknown }> };

export interface ToolDefinition {
  name: string;
  description?: string | undefined;
  /** JSON Schema of the arguments. */
  parameters?: Record<string, unknown> | undefined;
}

export interface ChatCreateParams {
  /** A model id or alias the server serves; the server's default model when absent. */
  model?: string | undefined;
  messages: ChatMessage[];
  /** @default 1024 */
  max_tokens?: number | undefined;
  temperature?: number | undefined;
  top_p?: number | undefined;
  top_k?: number | undefined;
  seed?: number | undefined;
  stop?: string | string[] | undefined;
  frequency_penalty?: number | undefined;
  presence_penalty?: number | undefined;
  tools?: ToolDefinition[] | undefined;
  tool_choice?: 'auto' | 'tool' | 'none' | undefined;
  use_search_engine?: boolean | undefined;
}

export type FinishReason = 'stop' | 'length' | 'tool_calls' | 'context' | (string & {});

export interface ChatUsage {
  input_tokens: number;
  output_tokens: number;
}

export interface ChatResponse {
  id: string;
  model: string;
  responses: Array<{
    finish_reason: FinishReason;
    message: { role: 'assistant'; content: string; tool_calls?: ToolCall[] | undefined };
  }>;
  usage: ChatUsage;
}

/** One event of a chat stream. Reka's format repeats the whole text so far in every chunk (`content`). */
export interface ChatStreamChunk {
  id: string;
  model: string;
  responses: Array<{
    chunk: { role: 'assistant'; content: string; tool_calls?: ToolCall[] | undefined };
    finish_reason: FinishReason | null;
  }>;
  /** On the last chunk only. */
  usage?: ChatUsage | undefined;
}

/** What a finished chat stream said. */
export interface ChatStreamResult {
  id: string;
  model: string;
  text: string;
  finishReason: FinishReason | null;
  toolCalls: ToolCall[];
  usage: ChatUsage | undefined;
}

// ---- models ----

export interface Model {
  id: string;
  object?: 'model' | undefined;
  created?: number | undefined;
  owned_by?: string | undefined;
}

// ---- lists ----

export interface PageParams {
  /** @default 20, at most 100 */
  limit?: number | undefined;
  /** @default 0 */
  offset?: number | undefined;
}

export interface Page<Item> {
  results: Item[];
  total: number;
  limit: number;
  offset: number;
}

// ---- videos ----

export type IndexingStatus = 'pending' | 'indexing' | 'indexed' | 'failed';

export interface Video {
  video_id: string;
  video_name: string;
  /** A signed URL of the source file (no API key needed; it expires). */
  url: string;
  indexing_status: IndexingStatus;
  /** 0..1 */
  indexing_progress: number;
  indexing_stage: string | null;
  error?: string | undefined;
  metadata: {
    video_name: string;
    duration: number | null;
    width: number | null;
    height: number | null;
    avg_fps: number | null;
    codec: string | null;
    size_bytes: number | null;
    has_audio: boolean | null;
    thumbnail: string | null;
    video_start_absolute_timestamp: string | null;
  };
  indexing_type: string | null;
  group_id: string;
  enable_thumbnails: boolean;
  created_at: string;
  updated_at: string;
}

export interface VideoListParams extends PageParams {
  group_id?: string | undefined;
  indexing_status?: IndexingStatus | undefined;
}

export interface Deleted {
  deleted: true;
}

export interface VideoSegment {
  segment_index: number;
  start_timestamp: number;
  end_timestamp: number;
  plain_text_caption: string;
  plain_text_transcript: string;
  ocr_text: string;
  objects: Array<{ class_name: string; count: number; confidence: number }>;
  labels: Array<{ label: string; confidence: number }>;
  has_speech: boolean;
  thumbnail_url: string;
  keyframes: Array<{ timestamp: number; url: string }>;
}

/** An event of `GET /v1/videos/{id}/events`. */
export interface IndexingEvent {
  video_id: string;
  indexing_status: IndexingStatus;
  stage: string | null;
  /** 0..1 */
  indexing_progress: number;
  /** 0..100, one decimal. */
  percent: number;
  error?: string | undefined;
}

export interface VideoSearchParams {
  query: string;
  /** @default 10, at most 100 */
  max_results?: number | null | undefined;
  /** Results scoring below it (0..1) are left out. */
  threshold?: number | null | undefined;
  offset?: number | null | undefined;
  video_ids?: string[] | null | undefined;
  group_ids?: string[] | null | undefined;
  /** ISO 8601; compared with the videos' absolute start timestamps. */
  start_time?: string | null | undefined;
  end_time?: string | null | undefined;
}

export interface VideoSearchHit {
  video_chunk_id: string;
  video_id: string;
  video_title: string;
  /** 0..1 */
  score: number;
  /** Seconds from the video's start. */
  start_timestamp: number;
  end_timestamp: number;
  plain_text_caption: string;
  plain_text_transcript: string;
  /** The video's signed URL with a `#t=start,end` media fragment. */
  s3_presigned_url: string;
  thumbnail_url: string;
}

export interface VideoSearchResponse {
  results: VideoSearchHit[];
  total_results: number;
}

// ---- video groups ----

export interface VideoGroup {
  group_id: string;
  name: string;
  metadata: unknown;
  webhook_url: string | null;
  created_at: string;
  updated_at: string;
}

export interface VideoGroupCreateParams {
  name: string;
  /** Free text or a JSON object, at most 500 characters once serialised. */
  metadata?: string | Record<string, unknown> | undefined;
  webhook_url?: string | undefined;
  webhook_secret?: string | undefined;
}

export interface VideoGroupUpdateParams {
  name?: string | undefined;
  metadata?: string | Record<string, unknown> | undefined;
  webhook_url?: string | null | undefined;
  webhook_secret?: string | null | undefined;
}

// ---- images ----

export interface ImageMetadata {
  caption: string;
  ocr_text: string;
  detection_metadata: Array<{ class_name: string; confidence: number; bounding_box: [number, number, number, number] }>;
  labels: Array<{ label: string; confidence: number }>;
}

export interface Image {
  image_id: string;
  image_url: string;
  image_name: string;
  /** 0: not indexed, 1: queued or indexing, 2: indexed, 3: failed. */
  indexing_status: 0 | 1 | 2 | 3;
  status: IndexingStatus | 'not_indexed';
  error?: string | undefined;
  /** Seconds since the epoch. */
  upload_timestamp: number;
  media_type: string;
  width: number;
  height: number;
  size_bytes: number;
  metadata: Record<string, unknown>;
  image_metadata: ImageMetadata;
}

export interface ImageSearchParams {
  query: string;
  /** @default 10 */
  max_results?: number | null | undefined;
  threshold?: number | null | undefined;
}

export interface ImageSearchHit {
  image_id: string;
  image_url: string;
  score: number;
  upload_timestamp: number;
  image_metadata: ImageMetadata;
}
