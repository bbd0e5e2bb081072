import type { Generated } from 'kysely';

/**
 * The metadata database's tables as the typed query layer (Kysely) sees them, the same on SQLite and PostgreSQL.
 * Times are milliseconds since the epoch (INTEGER / BIGINT), flags are 0 or 1 (INTEGER), JSON is TEXT, vectors
 * are little-endian float32 bytes (BLOB / BYTEA). `rowid` is SQLite's implicit row id; PostgreSQL has an identity
 * column of that name where the code orders or joins by it, so one query serves both.
 */
export interface Tables {
  api_keys: ApiKeysTable;
  jobs: JobsTable;
  video_groups: VideoGroupsTable;
  videos: VideosTable;
  video_segments: VideoSegmentsTable;
  segment_embeddings: SegmentEmbeddingsTable;
  images: ImagesTable;
  assets: AssetsTable;
  conversations: ConversationsTable;
  conversation_turns: ConversationTurnsTable;
  memories: MemoriesTable;
  video_summaries: VideoSummariesTable;
  clips: ClipsTable;
  keyframe_embeddings: KeyframeEmbeddingsTable;
  image_embeddings: ImageEmbeddingsTable;
  server_secrets: ServerSecretsTable;
  blob_claims: BlobClaimsTable;
}

/** SQLite's implicit row id, and PostgreSQL's identity column standing in for it. */
type RowId = Generated<number>;

export interface ApiKeysTable {
  id: string;
  name: string;
  prefix: string;
  hash: string;
  owner: string | null;
  created_at: number;
  revoked_at: number | null;
}

export interface JobsTable {
  rowid: RowId;
  id: string;
  kind: string;
  key: string | null;
  payload: string;
  status: 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled';
  attempts: Generated<number>;
  max_attempts: number;
  progress: Generated<number>;
  error: string | null;
  run_at: number;
  lease_owner: string | null;
  lease_expires_at: number | null;
  cancel_requested: Generated<number>;
  created_at: number;
  updated_at: number;
}

export interface VideoGroupsTable {
  owner: string;
  id: string;
  name: string;
  metadata: Generated<string>;
  webhook_url: string | null;
  webhook_secret: string | null;
  created_at: number;
  updated_at: number;
}

export interface VideosTable {
  rowid: RowId;
  id: string;
  owner: string;
  group_id: string;
  name: string;
  status: 'pending' | 'indexing' | 'indexed' | 'failed';
  progress: Generated<number>;
  stage: string | null;
  error: string | null;
  index_requested: number;
  thumbnails: number;
  indexing_type: string | null;
  metadata: string;
  plan: string | null;
  start_timestamp: string | null;
  webhook_url: string | null;
  webhook_secret: string | null;
  job_id: string | null;
  created_at: number;
  updated_at: number;
}

export interface VideoSegmentsTable {
  rowid: RowId;
  video_id: string;
  seq: number;
  start_seconds: number;
  end_seconds: number;
  keyframes: string;
  ocr_text: string;
  objects: string;
  object_names: string;
  labels: string;
  label_names: string;
  transcript: string;
  speech: string;
  has_speech: number | null;
  caption: string;
  thumbnail: string | null;
}

export interface SegmentEmbeddingsTable {
  id: Generated<number>;
  segment_id: number;
  owner: string;
  video_id: string;
  model: string;
  vector: Uint8Array;
}

export interface ImagesTable {
  rowid: RowId;
  id: string;
  owner: string;
  name: string;
  media_type: string;
  width: number;
  height: number;
  size_bytes: number;
  metadata: string;
  status: 'pending' | 'indexing' | 'indexed' | 'failed';
  index_requested: number;
  error: string | null;
  job_id: string | null;
  caption: Generated<string>;
  ocr_text: Generated<string>;
  detections: Generated<string>;
  object_names: Generated<string>;
  labels: Generated<string>;
  label_names: Generated<string>;
  created_at: number;
  updated_at: number;
}

export interface AssetsTable {
  rowid: RowId;
  key: string;
  owner: string;
  kind: 'image' | 'video' | 'audio' | 'pdf';
  media_type: string;
  size_bytes: number;
  width: number | null;
  height: number | null;
  duration_seconds: number | null;
  filename: string | null;
  created_at: number;
}

export interface ConversationsTable {
  rowid: RowId;
  id: string;
  owner: string;
  type: string;
  title: string | null;
  model: string | null;
  created_at: number;
  updated_at: number;
}

export interface ConversationTurnsTable {
  rowid: RowId;
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
  sources: Generated<string>;
  created_at: number;
}

export interface MemoriesTable {
  rowid: RowId;
  id: string;
  owner: string;
  text: string;
  conversation_id: string | null;
  created_at: number;
}

export interface VideoSummariesTable {
  video_id: string;
  summary: string;
  model: string;
  created_at: number;
}

export interface ClipsTable {
  rowid: RowId;
  id: string;
  owner: string;
  status: 'queued' | 'processing' | 'completed' | 'failed';
  stage: string | null;
  progress: Generated<number>;
  error: string | null;
  request: string;
  plan: string | null;
  outputs: Generated<string>;
  job_id: string | null;
  created_at: number;
  updated_at: number;
}

export interface KeyframeEmbeddingsTable {
  id: Generated<number>;
  segment_id: number;
  owner: string;
  video_id: string;
  time_seconds: number;
  model: string;
  vector: Uint8Array;
}

export interface ImageEmbeddingsTable {
  id: Generated<number>;
  image_id: string;
  owner: string;
  kind: 'picture' | 'text';
  model: string;
  vector: Uint8Array;
}

/** Secrets every process sharing the database must agree on (shared-secrets.ts). */
export interface ServerSecretsTable {
  name: string;
  value: Uint8Array;
  created_at: number;
}

export interface BlobClaimsTable {
  name: string;
  holder: string;
  heartbeat_at: number;
}
