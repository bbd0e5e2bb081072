import { sql, type RawBuilder, type SqlBool } from 'kysely';
import type { SqlDatabase } from './sql.ts';

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
   * and is left out whenever either is set. A time without an offset is UTC.
   */
  from?: string | undefined;
  to?: string | undefined;
}

/** A query word for the word index: matched whole, or (the query's last word, maybe cut short) as a prefix. */
export interface WordTerm {
  /** Letters and digits only (text-match.ts `queryWords`). */
  word: string;
  prefix: boolean;
}

/** A segment a full-text query matched, with the text it was matched on (for judging how well it matches). */
export interface TextMatch {
  /** The segment's rowid: stable while the segment exists, and the key every retriever ranks by. */
  segmentId: number;
  /** The database's full-text rank (FTS5 bm25 on SQLite, ts_rank on PostgreSQL, negated): lower is better. */
  rank: number;
  /** Caption, on-screen text, object names, label names and transcript, separated by white space. */
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
 * The same weighting for PostgreSQL's ts_rank, by the weight class each column's words carry in `search_words`
 * ({D, C, B, A}: object and label names C, on-screen text and transcript B, caption A).
 */
const TS_RANK_WEIGHTS = '{0.1, 0.5, 1.0, 0.5}';

/**
 * Matches ranked per query at most: the newest this many of the caller's segments that match. A query of words
 * found everywhere ("the", "person") would otherwise rank the whole library; this keeps its cost flat at any
 * size, and every query whose words are rarer than that is ranked over all its matches.
 */
export const MAX_RANKED_MATCHES = 20_000;

const SEGMENT_COUNT_TTL_MS = 60_000;

/** FTS5 query text: each word quoted (only letters and digits reach it), any of them. */
function fts5Query(terms: readonly WordTerm[]): string {
  return terms.map((term) => `"${term.word}"${term.prefix ? '*' : ''}`).join(' OR ');
}

/** tsquery text for to_tsquery('simple', ...): any of the words, the prefixes with `:*`. */
function tsQuery(terms: readonly WordTerm[]): string {
  return terms.map((term) => `${term.word}${term.prefix ? ':*' : ''}`).join(' | ');
}

/** A LIKE pattern holding `piece` anywhere (the pattern characters escaped). */
function containing(piece: string): string {
  return `%${piece.replace(/[\\%_]/g, (character) => `\\${character}`)}%`;
}

/**
 * The SQL behind video search: full-text matching with each database's own engine, joined to the segment's video
 * so the owner and the filters are applied inside the query, and lookups of segments by id for building results.
 * - SQLite: FTS5, a word index (unicode61) and a trigram index, ranked by bm25.
 * - PostgreSQL: the weighted `search_words` tsvector (GIN) ranked by ts_rank, and pg_trgm over `search_text`.
 */
export class SegmentSearchStore {
  readonly #database: SqlDatabase;
  #segmentCount: { value: number; at: number } | undefined;

  constructor(database: SqlDatabase) {
    this.#database = database;
  }

  /** Segments matching any of the words, best first, at most `limit`; without their text (`''`) when not needed. */
  async matchWords(scope: SegmentScope, terms: readonly WordTerm[], limit: number, withText = true): Promise<TextMatch[]> {
    if (terms.length === 0) return [];
    if (this.#database.dialect === 'sqlite') return this.#matchFts5('video_segments_fts', scope, fts5Query(terms), limit, withText);
    const query = sql`to_tsquery('simple', ${tsQuery(terms)})`;
    return this.#matchPostgres(
      scope,
      sql<SqlBool>`s.search_words @@ ${query}`,
      sql<number>`-ts_rank(${sql.raw(`'${TS_RANK_WEIGHTS}'`)}, s.search_words, ${query})`,
      limit,
      withText,
    );
  }

  /**
   * How many segments of the whole library (every owner: it is the same statistic bm25's IDF uses, and never
   * leaves the server) hold a word, counting no further than `cap`.
   */
  async countWordMatches(term: WordTerm, cap: number): Promise<number> {
    const matching =
      this.#database.dialect === 'sqlite'
        ? sql`SELECT 1 FROM video_segments_fts WHERE video_segments_fts MATCH ${fts5Query([term])} LIMIT ${cap}`
        : sql`SELECT 1 FROM video_segments WHERE search_words @@ to_tsquery('simple', ${tsQuery([term])}) LIMIT ${cap}`;
    const { rows } = await sql<{ count: number | string }>`SELECT count(*) AS count FROM (${matching}) AS matching`.execute(
      this.#database.db,
    );
    return Number(rows[0]?.count ?? 0);
  }

  /** Segments in the library, recounted at most once a minute (a count walks an index). */
  async segmentCount(): Promise<number> {
    const now = Date.now();
    if (this.#segmentCount === undefined || now - this.#segmentCount.at > SEGMENT_COUNT_TTL_MS) {
      const row = await this.#database.db
        .selectFrom('video_segments')
        .select((eb) => eb.fn.countAll<number | string>().as('count'))
        .executeTakeFirst();
      this.#segmentCount = { value: Number(row?.count ?? 0), at: now };
    }
    return this.#segmentCount.value;
  }

  /** Segments holding any of these substrings (case-insensitively), those holding more of them first. */
  async matchTrigrams(scope: SegmentScope, pieces: readonly string[], limit: number): Promise<TextMatch[]> {
    if (pieces.length === 0) return [];
    if (this.#database.dialect === 'sqlite') {
      const query = pieces.map((piece) => `"${piece.replaceAll('"', '""')}"`).join(' OR ');
      return this.#matchFts5('video_segments_trigram', scope, query, limit, true);
    }
    const tests = pieces.map((piece) => sql<SqlBool>`s.search_text ILIKE ${containing(piece)}`);
    const held = sql.join(
      tests.map((test) => sql`(${test})::int`),
      sql` + `,
    );
    return this.#matchPostgres(scope, sql<SqlBool>`(${sql.join(tests, sql` OR `)})`, sql<number>`-(${held})`, limit, true);
  }

  async #matchFts5(table: string, scope: SegmentScope, query: string, limit: number, withText: boolean): Promise<TextMatch[]> {
    // FTS5 walks the matches newest first (its rowid order, no sort), the owner and filters are checked on the
    // way, and the walk stops after MAX_RANKED_MATCHES of them. They are ranked first and their text read after,
    // so the sorter holds an id and a number per match, not every matching segment's text.
    const filters = this.#scopeSql(scope);
    const text = withText
      ? sql`s.caption || char(10) || s.ocr_text || char(10) || s.object_names || char(10) || s.label_names || char(10) || s.transcript`
      : sql`''`;
    const { rows } = await sql<{ segment_id: number; rank: number; text: string }>`
      WITH scanned AS (
        SELECT f.rowid AS segment_id, bm25(${sql.table(table)}, ${sql.raw(BM25_WEIGHTS)}) AS rank
        FROM ${sql.table(table)} f
        JOIN video_segments s ON s.rowid = f.rowid
        JOIN videos v ON v.id = s.video_id
        WHERE ${sql.table(table)} MATCH ${query} AND v.owner = ${scope.owner}${filters}
        ORDER BY f.rowid DESC LIMIT ${sql.lit(MAX_RANKED_MATCHES)}
      ),
      ranked AS (SELECT segment_id, rank FROM scanned ORDER BY rank LIMIT ${limit})
      SELECT r.segment_id, r.rank, ${text} AS text
      FROM ranked r JOIN video_segments s ON s.rowid = r.segment_id
      ORDER BY r.rank`.execute(this.#database.db);
    return rows.map((row) => ({ segmentId: row.segment_id, rank: row.rank, text: row.text }));
  }

  async #matchPostgres(
    scope: SegmentScope,
    matches: RawBuilder<SqlBool>,
    rank: RawBuilder<number>,
    limit: number,
    withText: boolean,
  ): Promise<TextMatch[]> {
    // As on SQLite: the newest MAX_RANKED_MATCHES matches in scope are ranked, then the best are read in full.
    const filters = this.#scopeSql(scope);
    const { rows } = await sql<{ segment_id: number; rank: number; text: string }>`
      WITH scanned AS (
        SELECT s.rowid AS segment_id, ${rank} AS rank
        FROM video_segments s JOIN videos v ON v.id = s.video_id
        WHERE ${matches} AND v.owner = ${scope.owner}${filters}
        ORDER BY s.rowid DESC LIMIT ${sql.lit(MAX_RANKED_MATCHES)}
      ),
      ranked AS (SELECT segment_id, rank FROM scanned ORDER BY rank LIMIT ${limit})
      SELECT r.segment_id, r.rank, ${withText ? sql`s.search_text` : sql`''`} AS text
      FROM ranked r JOIN video_segments s ON s.rowid = r.segment_id
      ORDER BY r.rank, r.segment_id`.execute(this.#database.db);
    return rows.map((row) => ({ segmentId: row.segment_id, rank: row.rank, text: row.text }));
  }

  /** The scope's filters besides the owner, as ` AND ...` clauses over `s` (segment) and `v` (video). */
  #scopeSql(scope: SegmentScope): RawBuilder<unknown> {
    const clauses: RawBuilder<unknown>[] = [];
    if (scope.videoIds !== undefined) clauses.push(sql`v.id IN (${this.#list(scope.videoIds)})`);
    if (scope.groupIds !== undefined) clauses.push(sql`v.group_id IN (${this.#list(scope.groupIds)})`);
    if (scope.from !== undefined)
      clauses.push(sql`${this.#epoch(sql`v.start_timestamp`)} + s.end_seconds >= ${this.#epoch(sql`${scope.from}`)}`);
    if (scope.to !== undefined)
      clauses.push(sql`${this.#epoch(sql`v.start_timestamp`)} + s.start_seconds <= ${this.#epoch(sql`${scope.to}`)}`);
    return sql.join(
      clauses.map((clause) => sql` AND ${clause}`),
      sql``,
    );
  }

  /** A list for `IN (...)`; an empty one matches nothing. */
  #list(values: readonly (string | number)[]): RawBuilder<unknown> {
    return values.length === 0 ? sql`NULL` : sql.join(values.map((value) => sql`${value}`));
  }

  /** Seconds since the epoch of an ISO 8601 text (a time without an offset is UTC); NULL stays NULL. */
  #epoch(text: RawBuilder<unknown>): RawBuilder<number> {
    if (this.#database.dialect === 'sqlite') return sql<number>`((julianday(${text}) - 2440587.5) * 86400.0)`;
    // timestamptz reads the offset when there is one; without, the text is read as a UTC wall-clock time.
    return sql<number>`extract(epoch FROM (CASE WHEN ${text} ~ '(Z|z|[+-][0-9]{2}(:?[0-9]{2})?)$' THEN (${text})::timestamptz
      ELSE ((${text})::timestamp AT TIME ZONE 'UTC') END))`;
  }

  /** Which of these segments are inside `scope` (owner and every filter); for retrievers that rank outside SQL. */
  async inScope(scope: SegmentScope, segmentIds: readonly number[]): Promise<Set<number>> {
    if (segmentIds.length === 0) return new Set();
    const { rows } = await sql<{ segment_id: number }>`
      SELECT s.rowid AS segment_id FROM video_segments s JOIN videos v ON v.id = s.video_id
      WHERE s.rowid IN (${this.#list(segmentIds)}) AND v.owner = ${scope.owner}${this.#scopeSql(scope)}`.execute(this.#database.db);
    return new Set(rows.map((row) => row.segment_id));
  }

  /** Where each of these segments sits; ids of other owners' (or deleted) segments are left out. */
  async spans(owner: string, segmentIds: readonly number[]): Promise<SegmentSpan[]> {
    if (segmentIds.length === 0) return [];
    const rows = await this.#segments(owner, segmentIds)
      .select(['s.rowid as segment_id', 's.video_id', 's.seq', 's.start_seconds', 's.end_seconds'])
      .execute();
    return rows.map(toSpan);
  }

  /** What results show of these segments; ids of other owners' (or deleted) segments are left out. */
  async details(owner: string, segmentIds: readonly number[]): Promise<SegmentDetail[]> {
    if (segmentIds.length === 0) return [];
    const rows = await this.#segments(owner, segmentIds)
      .select([
        's.rowid as segment_id',
        's.video_id',
        's.seq',
        's.start_seconds',
        's.end_seconds',
        's.caption',
        's.transcript',
        'v.name as video_name',
      ])
      .execute();
    return rows.map((row) => ({ ...toSpan(row), videoName: row.video_name, caption: row.caption, transcript: row.transcript }));
  }

  #segments(owner: string, segmentIds: readonly number[]) {
    return this.#database.db
      .selectFrom('video_segments as s')
      .innerJoin('videos as v', 'v.id', 's.video_id')
      .where('s.rowid', 'in', [...segmentIds])
      .where('v.owner', '=', owner);
  }
}

function toSpan(row: { segment_id: number; video_id: string; seq: number; start_seconds: number; end_seconds: number }): SegmentSpan {
  return { segmentId: row.segment_id, videoId: row.video_id, seq: row.seq, startSeconds: row.start_seconds, endSeconds: row.end_seconds };
}
