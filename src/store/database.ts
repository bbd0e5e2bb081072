import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';

export type Db = Database.Database;

/** Schema steps, applied in order; `PRAGMA user_version` records how many have run. Never edit a shipped step. */
const MIGRATIONS: readonly string[] = [
  `CREATE TABLE api_keys (
     id TEXT PRIMARY KEY,
     name TEXT NOT NULL,
     prefix TEXT NOT NULL,
     hash TEXT NOT NULL UNIQUE,
     created_at INTEGER NOT NULL,
     revoked_at INTEGER
   ) STRICT;`,
  // The durable job queue (src/jobs). `key` makes enqueueing idempotent while a job with it is live; a running
  // job belongs to `lease_owner` until `lease_expires_at`, after which it is taken to have died with its process.
  `CREATE TABLE jobs (
     id TEXT PRIMARY KEY,
     kind TEXT NOT NULL,
     key TEXT,
     payload TEXT NOT NULL,
     status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
     attempts INTEGER NOT NULL DEFAULT 0,
     max_attempts INTEGER NOT NULL,
     progress REAL NOT NULL DEFAULT 0,
     error TEXT,
     run_at INTEGER NOT NULL,
     lease_owner TEXT,
     lease_expires_at INTEGER,
     cancel_requested INTEGER NOT NULL DEFAULT 0,
     created_at INTEGER NOT NULL,
     updated_at INTEGER NOT NULL
   ) STRICT;
   CREATE INDEX jobs_status_run_at ON jobs (status, run_at);
   CREATE UNIQUE INDEX jobs_live_key ON jobs (key) WHERE key IS NOT NULL AND status IN ('queued', 'running');
   CREATE INDEX jobs_kind_created ON jobs (kind, created_at);`,
  // The video library. Every row belongs to an owner (an API key's, see api-keys.ts); `owner` is in each lookup.
  // A segment's `seq` is its position in the video's deterministic segment plan, so re-indexing after a crash
  // replaces rows instead of adding them. The FTS table indexes segment text with the segment's rowid.
  `ALTER TABLE api_keys ADD COLUMN owner TEXT;
   CREATE TABLE video_groups (
     owner TEXT NOT NULL,
     id TEXT NOT NULL,
     name TEXT NOT NULL,
     metadata TEXT NOT NULL DEFAULT '',
     webhook_url TEXT,
     webhook_secret TEXT,
     created_at INTEGER NOT NULL,
     updated_at INTEGER NOT NULL,
     PRIMARY KEY (owner, id)
   ) STRICT;
   CREATE TABLE videos (
     id TEXT PRIMARY KEY,
     owner TEXT NOT NULL,
     group_id TEXT NOT NULL,
     name TEXT NOT NULL,
     status TEXT NOT NULL CHECK (status IN ('pending', 'indexing', 'indexed', 'failed')),
     progress REAL NOT NULL DEFAULT 0,
     stage TEXT,
     error TEXT,
     index_requested INTEGER NOT NULL,
     thumbnails INTEGER NOT NULL,
     indexing_type TEXT,
     metadata TEXT NOT NULL,
     plan TEXT,
     start_timestamp TEXT,
     webhook_url TEXT,
     webhook_secret TEXT,
     job_id TEXT,
     created_at INTEGER NOT NULL,
     updated_at INTEGER NOT NULL,
     FOREIGN KEY (owner, group_id) REFERENCES video_groups (owner, id)
   ) STRICT;
   CREATE INDEX videos_owner_created ON videos (owner, created_at, id);
   CREATE INDEX videos_owner_group ON videos (owner, group_id);
   CREATE TABLE video_segments (
     video_id TEXT NOT NULL REFERENCES videos (id) ON DELETE CASCADE,
     seq INTEGER NOT NULL,
     start_seconds REAL NOT NULL,
     end_seconds REAL NOT NULL,
     keyframes TEXT NOT NULL,
     ocr_text TEXT NOT NULL,
     objects TEXT NOT NULL,
     object_names TEXT NOT NULL,
     labels TEXT NOT NULL,
     label_names TEXT NOT NULL,
     transcript TEXT NOT NULL,
     speech TEXT NOT NULL,
     has_speech INTEGER,
     caption TEXT NOT NULL,
     thumbnail TEXT,
     UNIQUE (video_id, seq)
   ) STRICT;
   CREATE VIRTUAL TABLE video_segments_fts USING fts5(
     caption, ocr_text, object_names, label_names, transcript,
     content = 'video_segments', content_rowid = 'rowid', tokenize = 'unicode61 remove_diacritics 2'
   );
   CREATE TRIGGER video_segments_ai AFTER INSERT ON video_segments BEGIN
     INSERT INTO video_segments_fts (rowid, caption, ocr_text, object_names, label_names, transcript)
     VALUES (new.rowid, new.caption, new.ocr_text, new.object_names, new.label_names, new.transcript);
   END;
   CREATE TRIGGER video_segments_ad AFTER DELETE ON video_segments BEGIN
     INSERT INTO video_segments_fts (video_segments_fts, rowid, caption, ocr_text, object_names, label_names, transcript)
     VALUES ('delete', old.rowid, old.caption, old.ocr_text, old.object_names, old.label_names, old.transcript);
   END;
   CREATE TRIGGER video_segments_au AFTER UPDATE ON video_segments BEGIN
     INSERT INTO video_segments_fts (video_segments_fts, rowid, caption, ocr_text, object_names, label_names, transcript)
     VALUES ('delete', old.rowid, old.caption, old.ocr_text, old.object_names, old.label_names, old.transcript);
     INSERT INTO video_segments_fts (rowid, caption, ocr_text, object_names, label_names, transcript)
     VALUES (new.rowid, new.caption, new.ocr_text, new.object_names, new.label_names, new.transcript);
   END;`,
  // Typo-tolerant search (segment-search.ts): the same segment text indexed as character trigrams, so a query
  // with an OCR slip or a typo still shares most of its trigrams with the text. Filled from the rows already
  // indexed ('rebuild' reads the content table) and kept in step by triggers like the word index.
  `CREATE VIRTUAL TABLE video_segments_trigram USING fts5(
     caption, ocr_text, object_names, label_names, transcript,
     content = 'video_segments', content_rowid = 'rowid', tokenize = 'trigram remove_diacritics 1'
   );
   INSERT INTO video_segments_trigram (video_segments_trigram) VALUES ('rebuild');
   CREATE TRIGGER video_segments_trigram_ai AFTER INSERT ON video_segments BEGIN
     INSERT INTO video_segments_trigram (rowid, caption, ocr_text, object_names, label_names, transcript)
     VALUES (new.rowid, new.caption, new.ocr_text, new.object_names, new.label_names, new.transcript);
   END;
   CREATE TRIGGER video_segments_trigram_ad AFTER DELETE ON video_segments BEGIN
     INSERT INTO video_segments_trigram (video_segments_trigram, rowid, caption, ocr_text, object_names, label_names, transcript)
     VALUES ('delete', old.rowid, old.caption, old.ocr_text, old.object_names, old.label_names, old.transcript);
   END;
   CREATE TRIGGER video_segments_trigram_au AFTER UPDATE ON video_segments BEGIN
     INSERT INTO video_segments_trigram (video_segments_trigram, rowid, caption, ocr_text, object_names, label_names, transcript)
     VALUES ('delete', old.rowid, old.caption, old.ocr_text, old.object_names, old.label_names, old.transcript);
     INSERT INTO video_segments_trigram (rowid, caption, ocr_text, object_names, label_names, transcript)
     VALUES (new.rowid, new.caption, new.ocr_text, new.object_names, new.label_names, new.transcript);
   END;`,
  // Semantic search (segment-embeddings.ts): one text embedding per segment, the truth the vector index is
  // rebuilt from. `id` is never reused (AUTOINCREMENT) and keys the vector index; a segment whose text changes
  // loses its embedding (re-indexing upserts the row), and the embedding job makes a new one with a new id.
  `CREATE TABLE segment_embeddings (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     segment_id INTEGER NOT NULL UNIQUE,
     owner TEXT NOT NULL,
     video_id TEXT NOT NULL,
     model TEXT NOT NULL,
     vector BLOB NOT NULL
   ) STRICT;
   CREATE INDEX segment_embeddings_owner ON segment_embeddings (owner, id);
   CREATE TRIGGER video_segments_embeddings_ad AFTER DELETE ON video_segments BEGIN
     DELETE FROM segment_embeddings WHERE segment_id = old.rowid;
   END;
   CREATE TRIGGER video_segments_embeddings_au AFTER UPDATE OF caption, ocr_text, object_names, label_names, transcript ON video_segments
   WHEN old.caption IS NOT new.caption OR old.ocr_text IS NOT new.ocr_text OR old.object_names IS NOT new.object_names
     OR old.label_names IS NOT new.label_names OR old.transcript IS NOT new.transcript
   BEGIN
     DELETE FROM segment_embeddings WHERE segment_id = old.rowid;
   END;`,
  // The image library (image-store.ts). Like videos, every row belongs to an owner. The analyzers' findings are
  // written when the image's indexing job ends; the trigram index over their text (as for segments, so OCR
  // slips and typos still match) is kept in step by triggers.
  `CREATE TABLE images (
     id TEXT PRIMARY KEY,
     owner TEXT NOT NULL,
     name TEXT NOT NULL,
     media_type TEXT NOT NULL,
     width INTEGER NOT NULL,
     height INTEGER NOT NULL,
     size_bytes INTEGER NOT NULL,
     metadata TEXT NOT NULL,
     status TEXT NOT NULL CHECK (status IN ('pending', 'indexing', 'indexed', 'failed')),
     index_requested INTEGER NOT NULL,
     error TEXT,
     job_id TEXT,
     caption TEXT NOT NULL DEFAULT '',
     ocr_text TEXT NOT NULL DEFAULT '',
     detections TEXT NOT NULL DEFAULT '[]',
     object_names TEXT NOT NULL DEFAULT '',
     labels TEXT NOT NULL DEFAULT '[]',
     label_names TEXT NOT NULL DEFAULT '',
     created_at INTEGER NOT NULL,
     updated_at INTEGER NOT NULL
   ) STRICT;
   CREATE INDEX images_owner_created ON images (owner, created_at);
   CREATE VIRTUAL TABLE images_trigram USING fts5(
     caption, ocr_text, object_names, label_names,
     content = 'images', content_rowid = 'rowid', tokenize = 'trigram remove_diacritics 1'
   );
   CREATE TRIGGER images_trigram_ai AFTER INSERT ON images BEGIN
     INSERT INTO images_trigram (rowid, caption, ocr_text, object_names, label_names)
     VALUES (new.rowid, new.caption, new.ocr_text, new.object_names, new.label_names);
   END;
   CREATE TRIGGER images_trigram_ad AFTER DELETE ON images BEGIN
     INSERT INTO images_trigram (images_trigram, rowid, caption, ocr_text, object_names, label_names)
     VALUES ('delete', old.rowid, old.caption, old.ocr_text, old.object_names, old.label_names);
   END;
   CREATE TRIGGER images_trigram_au AFTER UPDATE OF caption, ocr_text, object_names, label_names ON images BEGIN
     INSERT INTO images_trigram (images_trigram, rowid, caption, ocr_text, object_names, label_names)
     VALUES ('delete', old.rowid, old.caption, old.ocr_text, old.object_names, old.label_names);
     INSERT INTO images_trigram (rowid, caption, ocr_text, object_names, label_names)
     VALUES (new.rowid, new.caption, new.ocr_text, new.object_names, new.label_names);
   END;`,
  // Conversations with image assets (conversation-store.ts, asset-store.ts): assets uploaded once and referred to
  // by key, conversations of turns (a prompt with its asset keys and the answer, with model, usage and latency),
  // and per-owner memory notes. Every row belongs to an owner.
  `CREATE TABLE assets (
     key TEXT PRIMARY KEY,
     owner TEXT NOT NULL,
     kind TEXT NOT NULL CHECK (kind IN ('image', 'video', 'audio', 'pdf')),
     media_type TEXT NOT NULL,
     size_bytes INTEGER NOT NULL,
     width INTEGER,
     height INTEGER,
     duration_seconds REAL,
     filename TEXT,
     created_at INTEGER NOT NULL
   ) STRICT;
   CREATE INDEX assets_owner_created ON assets (owner, created_at);
   CREATE TABLE conversations (
     id TEXT PRIMARY KEY,
     owner TEXT NOT NULL,
     type TEXT NOT NULL,
     title TEXT,
     model TEXT,
     created_at INTEGER NOT NULL,
     updated_at INTEGER NOT NULL
   ) STRICT;
   CREATE INDEX conversations_owner_updated ON conversations (owner, updated_at);
   CREATE TABLE conversation_turns (
     id TEXT PRIMARY KEY,
     conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
     seq INTEGER NOT NULL,
     prompt TEXT NOT NULL,
     asset_keys TEXT NOT NULL,
     answer TEXT NOT NULL,
     model TEXT NOT NULL,
     finish_reason TEXT NOT NULL,
     input_tokens INTEGER NOT NULL,
     output_tokens INTEGER NOT NULL,
     latency_ms INTEGER NOT NULL,
     sources TEXT NOT NULL DEFAULT '[]',
     created_at INTEGER NOT NULL,
     UNIQUE (conversation_id, seq)
   ) STRICT;
   CREATE TABLE memories (
     id TEXT PRIMARY KEY,
     owner TEXT NOT NULL,
     text TEXT NOT NULL,
     conversation_id TEXT,
     created_at INTEGER NOT NULL
   ) STRICT;
   CREATE INDEX memories_owner_created ON memories (owner, created_at);`,
  // Video QA: one whole-video summary per indexed video, written by indexing when a caption model is configured.
  `CREATE TABLE video_summaries (
     video_id TEXT PRIMARY KEY REFERENCES videos (id) ON DELETE CASCADE,
     summary TEXT NOT NULL,
     model TEXT NOT NULL,
     created_at INTEGER NOT NULL
   ) STRICT;`,
  // Clip generation (clip-store.ts): one row per request, owned like a video. `request` is the validated body,
  // `plan` the moments chosen (so a resumed job renders the same ones) and `outputs` the files rendered so far.
  `CREATE TABLE clips (
     id TEXT PRIMARY KEY,
     owner TEXT NOT NULL,
     status TEXT NOT NULL CHECK (status IN ('queued', 'processing', 'completed', 'failed')),
     stage TEXT,
     progress REAL NOT NULL DEFAULT 0,
     error TEXT,
     request TEXT NOT NULL,
     plan TEXT,
     outputs TEXT NOT NULL DEFAULT '[]',
     job_id TEXT,
     created_at INTEGER NOT NULL,
     updated_at INTEGER NOT NULL
   ) STRICT;
   CREATE INDEX clips_owner_created ON clips (owner, created_at, id);`,
  // Image embeddings (image-embeddings.ts), the truth their vector indexes are rebuilt from: one CLIP vector per
  // keyframe of a segment, and per library image one CLIP vector of its picture ('picture') and one text
  // embedding of its caption and on-screen text ('text'). Ids are never reused and key the vector indexes; rows
  // go with their segment or image, and with a change of what they were made from.
  `CREATE TABLE keyframe_embeddings (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     segment_id INTEGER NOT NULL,
     owner TEXT NOT NULL,
     video_id TEXT NOT NULL,
     time_seconds REAL NOT NULL,
     model TEXT NOT NULL,
     vector BLOB NOT NULL
   ) STRICT;
   CREATE INDEX keyframe_embeddings_owner ON keyframe_embeddings (owner, model, id);
   CREATE INDEX keyframe_embeddings_segment ON keyframe_embeddings (segment_id, model);
   CREATE TRIGGER video_segments_keyframe_embeddings_ad AFTER DELETE ON video_segments BEGIN
     DELETE FROM keyframe_embeddings WHERE segment_id = old.rowid;
   END;
   CREATE TRIGGER video_segments_keyframe_embeddings_au AFTER UPDATE OF keyframes ON video_segments
   WHEN old.keyframes IS NOT new.keyframes
   BEGIN
     DELETE FROM keyframe_embeddings WHERE segment_id = old.rowid;
   END;
   CREATE TABLE image_embeddings (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     image_id TEXT NOT NULL,
     owner TEXT NOT NULL,
     kind TEXT NOT NULL CHECK (kind IN ('picture', 'text')),
     model TEXT NOT NULL,
     vector BLOB NOT NULL,
     UNIQUE (image_id, kind)
   ) STRICT;
   CREATE INDEX image_embeddings_owner ON image_embeddings (owner, kind, model, id);
   CREATE TRIGGER images_embeddings_ad AFTER DELETE ON images BEGIN
     DELETE FROM image_embeddings WHERE image_id = old.id;
   END;
   CREATE TRIGGER images_embeddings_au AFTER UPDATE OF caption, ocr_text, object_names, label_names ON images
   WHEN old.caption IS NOT new.caption OR old.ocr_text IS NOT new.ocr_text
     OR old.object_names IS NOT new.object_names OR old.label_names IS NOT new.label_names
   BEGIN
     DELETE FROM image_embeddings WHERE image_id = old.id AND kind = 'text';
   END;`,
  // Secrets every process sharing the database must agree on (shared-secrets.ts): the URL signing key and the
  // webhook secret, copied from the first process's data dir.
  `CREATE TABLE server_secrets (
     name TEXT PRIMARY KEY,
     value BLOB NOT NULL,
     created_at INTEGER NOT NULL
   ) STRICT;`,
  // Claims on blobs in a shared store (blob-claims.ts): what a process that died was writing or removing.
  `CREATE TABLE blob_claims (
     name TEXT PRIMARY KEY,
     holder TEXT NOT NULL,
     heartbeat_at INTEGER NOT NULL
   ) STRICT;
   CREATE INDEX blob_claims_heartbeat ON blob_claims (heartbeat_at);`,
];

/**
 * Applies the schema steps the database has not had yet, up to `target` (tests stop early to build a database
 * as an older Ocular left it). @default every step
 */
export function migrate(db: Db, target = MIGRATIONS.length): void {
  const current = db.pragma('user_version', { simple: true }) as number;
  if (current > MIGRATIONS.length) {
    throw new Error(`the database schema (version ${current}) is newer than this Ocular (version ${MIGRATIONS.length}); upgrade Ocular`);
  }
  const apply = db.transaction(() => {
    for (let version = current; version < Math.min(target, MIGRATIONS.length); version++) {
      db.exec(MIGRATIONS[version]!);
      db.pragma(`user_version = ${version + 1}`);
    }
  });
  apply.immediate();
}

/** Opens (creating if needed) `<dataDir>/ocular.db` in WAL mode and brings its schema up to date. */
/** The schema version this Ocular writes: the number of migration steps. */
export const SCHEMA_VERSION = MIGRATIONS.length;

/** The schema version of an open database (0 for a new one). */
export function schemaVersion(db: Db): number {
  return db.pragma('user_version', { simple: true }) as number;
}

/** A database whose schema is behind this Ocular's, opened with `migrate: false`. */
export class SchemaBehindError extends Error {
  readonly current: number;

  constructor(current: number, needed = SCHEMA_VERSION) {
    super(
      `the database schema is at version ${current}, this Ocular needs ${needed}: run \`ocular migrate\` (or start without --no-migrate)`,
    );
    this.name = 'SchemaBehindError';
    this.current = current;
  }
}

/**
 * Opens (creating) `<dataDir>/ocular.db` and brings its schema up to date, unless `migrate` is false: then a
 * schema that is behind is refused (`SchemaBehindError`), for deployments that migrate as a separate step.
 */
export function openDatabase(dataDir: string, options: { migrate?: boolean } = {}): Db {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const db = new Database(join(dataDir, 'ocular.db'));
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.pragma('busy_timeout = 5000');
  db.pragma('foreign_keys = ON');
  if (options.migrate === false) {
    const current = schemaVersion(db);
    if (current < SCHEMA_VERSION) {
      db.close();
      throw new SchemaBehindError(current);
    }
    migrate(db); // refuses a schema newer than this Ocular
  } else {
    migrate(db);
  }
  return db;
}
