import type { Statement } from 'better-sqlite3';
import type { Db } from './database.ts';

/**
 * Which segments a search may return. `owner` is always applied; the other filters only narrow it. Every
 * filter is part of the SQL, so a candidate cap counts only segments the caller may see.
 */
export interface SegmentScope {
  owner: string;
  /** Only these videos (ids of other owners match nothing). */
  videoIds?: readonly string[] | undefined;
  /** Only videos in these groups. */
  groupIds?: readonly string[] | undefined;
  /**
   * ISO 8601 instants: only segments whose absolute time range (the video's `video_start_absolute_timestamp`
   * plus the segment's offsets) overlaps [from, to]. A video without a start timestamp has no absolute time
   * and is left out whenever either is set. Parsed by SQLite, so a time without an offset is UTC.
   */
  from?: string | undefined;
  to?: string | undefined;
}

/** A segment a full-text query matched, with the text it was matched on (for judging how well it matches). */
export interface TextMatch {
  /** The segment's rowid: stable while the segment exists, and the key every retriever ranks by. */
  segmentId: number;
  /** FTS5 bm25: lower (more negative) is better. */
  bm25: number;
  /** Caption, on-screen text, object names, label names and transcript, newline-separated. */
  text: string;
}

/** Where a segment sits, for merging neighbours into one result. */
export interface SegmentSpan {
  segmentId: number;
  videoId: string;
  seq: number;
  startSeconds: number;
  endSeconds: number;
}

/** What a search result shows of a segment. */
export interface SegmentDetail extends SegmentSpan {
  videoName: string;
  caption: string;
  transcript: string;
}

/**
 * Per-column bm25 weights, in the FTS tables' column order (caption, ocr_text, object_names, label_names,
 * transcript): text read off the screen and spoken words are what people search for by their exact words;
 * the factual caption repeats them, so it counts once more at the base weight.
 */
const BM25_WEIGHTS = '1.0, 2.0, 1.0, 1.0, 1.5';

/**
 * Matches ranked per query at most: the newest this many of the caller's segments that match. A query of words
 * found everywhere ("the", "person") would otherwise rank the whole library; this keeps its cost flat at any
 * size, and every query whose words are rarer than that is ranked over all its matches.
 */
export const MAX_RANKED_MATCHES = 20_000;

const SEGMENT_COUNT_TTL_MS = 60_000;

const SEARCHABLE_TEXT = `s.caption || char(10) || s.ocr_text || char(10) || s.object_names || char(10) || s.label_names || char(10) || s.transcript`;

type FtsTable = 'video_segments_fts' | 'video_segments_trigram';

interface MatchRow {
  segment_id: number;
  bm25: number;
  text: string;
}

interface SpanRow {
  segment_id: number;
  video_id: string;
  seq: number;
  start_seconds: number;
  end_seconds: number;
}

interface DetailRow extends SpanRow {
  video_name: string;
  caption: string;
  transcript: string;
}

/** The WHERE clauses a scope adds (besides owner), with their parameters; lists travel as one JSON array each. */
function scopeClauses(scope: SegmentScope): { shape: string; sql: string[]; values: unknown[] } {
  const sql: string[] = [];
  const values: unknown[] = [];
  let shape = '';
  if (scope.videoIds !== undefined) {
    sql.push('v.id IN (SELECT value FROM json_each(?))');
    values.push(JSON.stringify(scope.videoIds));
    shape += 'v';
  }
  if (scope.groupIds !== undefined) {
    sql.push('v.group_id IN (SELECT value FROM json_each(?))');
    values.push(JSON.stringify(scope.groupIds));
    shape += 'g';
  }
  // julianday() reads ISO 8601 with or without an offset; day 2440587.5 is the unix epoch.
  const absolute = '(julianday(v.start_timestamp) - 2440587.5) * 86400.0';
  if (scope.from !== undefined) {
    sql.push(`${absolute} + s.end_seconds >= (julianday(?) - 2440587.5) * 86400.0`);
    values.push(scope.from);
    shape += 'f';
  }
  if (scope.to !== undefined) {
    sql.push(`${absolute} + s.start_seconds <= (julianday(?) - 2440587.5) * 86400.0`);
    values.push(scope.to);
    shape += 't';
  }
  return { shape, sql, values };
}

/**
 * The SQL behind video search: full-text matching over the word index (unicode61) and the trigram index, each
 * joined to its segment and video so the owner and the filters are applied inside the query, and lookups of
 * segments by id for building results. FTS decides which rows are visited; the joins go through primary keys.
 */
export class SegmentSearchStore {
  readonly #db: Db;
  /** Statements by (table, scope shape): a handful of shapes, each prepared once. */
  readonly #matchStatements = new Map<string, Statement<unknown[], MatchRow>>();
  readonly #scopeStatements = new Map<string, Statement<unknown[], number>>();
  readonly #spansStatement: Statement<[string, string], SpanRow>;
  readonly #detailsStatement: Statement<[string, string], DetailRow>;
  readonly #countWordMatches: Statement<[string, number], number>;
  readonly #countSegments: Statement<[], number>;
  #segmentCount: { value: number; at: number } | undefined;

  constructor(db: Db) {
    this.#db = db;
    this.#spansStatement = db.prepare(
      `SELECT s.rowid AS segment_id, s.video_id, s.seq, s.start_seconds, s.end_seconds
       FROM video_segments s JOIN videos v ON v.id = s.video_id
       WHERE s.rowid IN (SELECT value FROM json_each(?)) AND v.owner = ?`,
    );
    this.#countWordMatches = db
      .prepare<[string, number], number>('SELECT count(*) FROM (SELECT 1 FROM video_segments_fts WHERE video_segments_fts MATCH ? LIMIT ?)')
      .pluck();
    this.#countSegments = db.prepare<[], number>('SELECT count(*) FROM video_segments').pluck();
    this.#detailsStatement = db.prepare(
      `SELECT s.rowid AS segment_id, s.video_id, s.seq, s.start_seconds, s.end_seconds, s.caption, s.transcript, v.name AS video_name
       FROM video_segments s JOIN videos v ON v.id = s.video_id
       WHERE s.rowid IN (SELECT value FROM json_each(?)) AND v.owner = ?`,
    );
  }

  /**
   * Segments matching an FTS5 query over the word index, best bm25 first, at most `limit`; without their text
   * (`''`) when the caller has no use for it.
   */
  matchWords(scope: SegmentScope, ftsQuery: string, limit: number, withText = true): TextMatch[] {
    return this.#match('video_segments_fts', scope, ftsQuery, limit, withText);
  }

  /**
   * How many segments of the whole library (every owner: it is the same statistic bm25's IDF uses, and never
   * leaves the server) match an FTS5 query over the word index, counting no further than `cap`.
   */
  countWordMatches(ftsQuery: string, cap: number): number {
    return this.#countWordMatches.get(ftsQuery, cap)!;
  }

  /** Segments in the library, recounted at most once a minute (a count walks an index). */
  segmentCount(): number {
    const now = Date.now();
    if (this.#segmentCount === undefined || now - this.#segmentCount.at > SEGMENT_COUNT_TTL_MS) {
      this.#segmentCount = { value: this.#countSegments.get()!, at: now };
    }
    return this.#segmentCount.value;
  }

  /** Segments matching an FTS5 query over the trigram index (each phrase a substring), best bm25 first. */
  matchTrigrams(scope: SegmentScope, ftsQuery: string, limit: number): TextMatch[] {
    return this.#match('video_segments_trigram', scope, ftsQuery, limit, true);
  }

  #match(table: FtsTable, scope: SegmentScope, ftsQuery: string, limit: number, withText: boolean): TextMatch[] {
    const clauses = scopeClauses(scope);
    const key = `${table}:${clauses.shape}:${withText}`;
    let statement = this.#matchStatements.get(key);
    if (statement === undefined) {
      // FTS5 walks the matches newest first (its rowid order, no sort), the owner and filters are checked on the
      // way, and the walk stops after MAX_RANKED_MATCHES of them. They are ranked first and their text read
      // after, so the sorter holds an id and a number per match, not every matching segment's text.
      statement = this.#db.prepare<unknown[], MatchRow>(
        `WITH scanned AS (
           SELECT f.rowid AS segment_id, bm25(${table}, ${BM25_WEIGHTS}) AS bm25
           FROM ${table} f
           JOIN video_segments s ON s.rowid = f.rowid
           JOIN videos v ON v.id = s.video_id
           WHERE ${table} MATCH ? AND v.owner = ?${clauses.sql.map((clause) => ` AND ${clause}`).join('')}
           ORDER BY f.rowid DESC LIMIT ${MAX_RANKED_MATCHES}
         ),
         ranked AS (SELECT segment_id, bm25 FROM scanned ORDER BY bm25 LIMIT ?)
         SELECT r.segment_id, r.bm25, ${withText ? SEARCHABLE_TEXT : "''"} AS text
         FROM ranked r JOIN video_segments s ON s.rowid = r.segment_id
         ORDER BY r.bm25`,
      );
      this.#matchStatements.set(key, statement);
    }
    return statement
      .all(ftsQuery, scope.owner, ...clauses.values, limit)
      .map((row) => ({ segmentId: row.segment_id, bm25: row.bm25, text: row.text }));
  }

  /** Which of these segments are inside `scope` (owner and every filter); for retrievers that rank outside SQL. */
  inScope(scope: SegmentScope, segmentIds: readonly number[]): Set<number> {
    if (segmentIds.length === 0) return new Set();
    const clauses = scopeClauses(scope);
    const key = `scope:${clauses.shape}`;
    let statement = this.#scopeStatements.get(key);
    if (statement === undefined) {
      statement = this.#db
        .prepare<unknown[], number>(
          `SELECT s.rowid FROM video_segments s JOIN videos v ON v.id = s.video_id
           WHERE s.rowid IN (SELECT value FROM json_each(?)) AND v.owner = ?${clauses.sql.map((clause) => ` AND ${clause}`).join('')}`,
        )
        .pluck();
      this.#scopeStatements.set(key, statement);
    }
    return new Set(statement.all(JSON.stringify(segmentIds), scope.owner, ...clauses.values));
  }

  /** Where each of these segments sits; ids of other owners' (or deleted) segments are left out. */
  spans(owner: string, segmentIds: readonly number[]): SegmentSpan[] {
    if (segmentIds.length === 0) return [];
    return this.#spansStatement.all(JSON.stringify(segmentIds), owner).map(toSpan);
  }

  /** What results show of these segments; ids of other owners' (or deleted) segments are left out. */
  details(owner: string, segmentIds: readonly number[]): SegmentDetail[] {
    if (segmentIds.length === 0) return [];
    return this.#detailsStatement.all(JSON.stringify(segmentIds), owner).map((row) => ({
      ...toSpan(row),
      videoName: row.video_name,
      caption: row.caption,
      transcript: row.transcript,
    }));
  }
}

function toSpan(row: SpanRow): SegmentSpan {
  return { segmentId: row.segment_id, videoId: row.video_id, seq: row.seq, startSeconds: row.start_seconds, endSeconds: row.end_seconds };
}
