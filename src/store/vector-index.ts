// The approximate-nearest-neighbour index over embeddings (segment text, keyframes, images), kept beside the
// database and rebuilt from it. Behind `VectorIndex`, so the library (LanceDB today) can be swapped.
//
// Why LanceDB (measured on 2 shared cores, 384-dim vectors of intrinsic dimension 16, recall@10 against exact
// search): at 100k, LanceDB IVF_HNSW_SQ built in 29 s (p95 2.8 ms, recall 0.986 at ef 64); usearch (f16) took
// 60-90 s (p95 0.9 ms, recall 0.994); hnswlib-node 117 s on its one thread (p95 6 ms, recall 0.993). At 1M only
// LanceDB builds within minutes (4.6 min through this module, p95 5 ms, recall 0.989: bench/ann.ts); usearch adds
// ~1.7k vectors/s there, 10+ min. LanceDB also persists by itself: every write is an atomic commit (a new
// manifest renamed into place), files are read on demand instead of loaded whole at start, and it filters on a
// column before the vector search, which the per-video filter uses. Writes are batched into commits (the
// debounce, `flushDelayMs`), and a crash loses only the batch, which the next sync restores from the database.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import type * as lancedb from '@lancedb/lancedb';
import { loadLanceDb, type LanceDb } from '../config/lancedb.ts';
import type * as ArrowModule from 'apache-arrow';

// LanceDB is CommonJS and checks `instanceof` on the Arrow classes it is given: it must get the CommonJS build of
// apache-arrow that it loads itself, not the ES module build an `import` here would load.
const arrow = createRequire(import.meta.url)('apache-arrow') as typeof ArrowModule;

/**
 * One vector. `id` is the row id of the table the vectors come from (`video_segments.rowid` for segment text,
 * the image's row id for images): one `VectorIndex` per such table and embedding model (a directory each, e.g.
 * `<data>/vectors/segment-text`), so ids never collide across kinds. Ids are immutable: a new embedding of the
 * same thing is a new row (delete + insert), which is what makes the staleness check below complete.
 */
export interface VectorEntry {
  id: number;
  vector: ArrayLike<number>;
  /** What a search can be narrowed to besides the owner: the segment's video id. */
  group?: string | undefined;
}

export interface VectorFilter {
  owner: string;
  /** Only vectors whose `group` is one of these (video ids). An empty list matches nothing. */
  groups?: readonly string[] | undefined;
}

export interface VectorMatch {
  id: number;
  /** Cosine similarity, -1..1. */
  score: number;
}

/**
 * A cheap fingerprint of an owner's rows: count, largest id and sum of ids. With ids that are never reused
 * (`INTEGER PRIMARY KEY AUTOINCREMENT`), any lost write changes it: a lost insert raises the largest id, a lost
 * delete changes the count. In SQLite: `SELECT count(*), max(id), total(id) ... WHERE owner = ?` (indexed).
 */
export interface VectorSummary {
  count: number;
  maxId: number;
  idSum: number;
}

/** Where an owner's vectors are rebuilt from: the database, which is the truth the index follows. */
export interface VectorSource {
  summary(owner: string): VectorSummary | Promise<VectorSummary>;
  /** The owner's vectors in id order; only those with an id above `after` when given. */
  rows(owner: string, after?: number): Iterable<VectorEntry> | AsyncIterable<VectorEntry>;
}

/** What `sync` found: the index matched the database, was patched to match it, or was built from it. */
export type SyncOutcome = 'fresh' | 'repaired' | 'rebuilt';

export interface VectorIndex {
  readonly dimensions: number;
  /** Adds or replaces a vector. Buffered: visible to `search` at once, on disk after the next flush. */
  add(owner: string, entry: VectorEntry): void;
  remove(owner: string, id: number): void;
  /** The `k` nearest vectors by cosine similarity, best first, among the filter's owner (and groups). */
  search(vector: ArrayLike<number>, k: number, filter: VectorFilter): Promise<VectorMatch[]>;
  /**
   * Compares the owner's vectors with the database's summary and repairs or rebuilds them when they differ (a
   * crash between the row and the index write, a deleted index). Runs by itself the first time an owner is used.
   */
  sync(owner: string): Promise<SyncOutcome>;
  /** Writes buffered changes now. */
  flush(): Promise<void>;
  close(): Promise<void>;
}

export interface VectorIndexOptions {
  /** The index's own directory; one table per owner inside. */
  directory: string;
  dimensions: number;
  source: VectorSource;
  /**
   * Buffered changes are written this long after the first of them, as one commit.
   * @default 1000
   */
  flushDelayMs?: number;
  /**
   * Flush at once when this many changes are buffered.
   * @default 10000
   */
  maxPending?: number;
  /**
   * An owner's vectors get an ANN index once they are this many; below it an exact scan is as fast (~2 ms).
   * @default 10000
   */
  indexThreshold?: number;
  /**
   * Rows added since the ANN index was built are searched exactly; past this many they are folded into it.
   * @default 20000
   */
  reindexAfter?: number;
  /**
   * A search narrowed to groups scans the matching rows exactly when they are at most this many (10k rows of a
   * 1M table: p95 ~40 ms); above, it searches the ANN index with the filter applied first, faster but not exact
   * (the fewer rows match, the more of the graph's paths the filter cuts).
   * @default 20000
   */
  exactScanLimit?: number;
  /**
   * HNSW candidate list size per search: recall against latency (ef 64: recall@10 0.975, 128: 0.986 at 1M).
   * @default 128
   */
  searchEf?: number;
  /**
   * A search checks, at most this often per owner, whether the database holds vectors this index lacks or lost
   * (written or deleted by another process: a worker, another API process) and catches up before answering. The
   * database is the index every process shares; each process's files are its cache of it.
   * @default 2000
   */
  catchUpMs?: number;
  /**
   * HNSW candidate list size while building.
   * @default 64
   */
  buildEf?: number;
  /**
   * Called when a background flush or index maintenance fails; the changes stay buffered and are retried.
   * @default emits a process warning
   */
  onError?: (error: unknown) => void;
}

/** Checks a vector's size and values; an index holds one dimension for life. */
export function checkVector(vector: ArrayLike<number>, dimensions: number): void {
  if (vector.length !== dimensions) {
    throw new RangeError(`vector has ${vector.length} dimensions; this index holds ${dimensions}`);
  }
  let norm = 0;
  for (let i = 0; i < dimensions; i++) {
    const value = vector[i]!;
    if (!Number.isFinite(value)) throw new RangeError('vector holds a value that is not a finite number');
    norm += value * value;
  }
  if (norm === 0) throw new RangeError('vector is all zeros: its cosine similarity is undefined');
}

function cosine(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let dot = 0;
  let normA = 0;
  let normB = 0;
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!;
    const y = b[i]!;
    dot += x * y;
    normA += x * x;
    normB += y * y;
  }
  return dot / Math.sqrt(normA * normB);
}

// Each owner has its own table, so owner isolation is structural and an owner's search never reads another
// owner's rows: no filtered scan over everyone, and a small owner's exact scan stays small.
const tableName = (owner: string): string => `o_${createHash('sha256').update(owner).digest('hex').slice(0, 40)}`;

const sqlString = (value: string): string => `'${value.replaceAll("'", "''")}'`;

/** A buffered change: the entry to write, or null to delete. */
type Change = VectorEntry | null;

interface OwnerState {
  owner: string;
  table: lancedb.Table | undefined;
  /** Resolves once the first sync is done; searches and writes wait for it. */
  ready: Promise<SyncOutcome>;
  /** Whether a `sync` call has been answered with the first sync's outcome. */
  readyReported: boolean;
  /** Until the first sync has succeeded nothing is written: the table on disk may not have been opened yet. */
  synced: boolean;
  syncFailed: boolean;
  /** Writes, syncs and maintenance for this owner run one after another on this chain. */
  chain: Promise<unknown>;
  pending: Map<number, Change>;
  /** Changes being written now; still shown to searches until the commit lands. */
  writing: Map<number, Change>;
  /** The largest id on disk: a new id above it cannot be there, so writing it needs no delete first. */
  maxId: number;
  hasVectorIndex: boolean;
  /** Rows the ANN index was trained on (its partitions); it is retrained when the owner outgrows them. */
  trainedRows: number;
  flushesSinceOptimize: number;
  timer: NodeJS.Timeout | undefined;
  /** What the index holds (disk and buffer), as of the last sync and this process's adds since; undefined: unknown. */
  known: VectorSummary | undefined;
  /** When a search last compared `known` with the database. */
  checkedAt: number;
}

class LanceVectorIndex implements VectorIndex {
  readonly dimensions: number;
  readonly #lance: LanceDb;
  readonly #connection: lancedb.Connection;
  readonly #directory: string;
  readonly #source: VectorSource;
  readonly #owners = new Map<string, OwnerState>();
  readonly #flushDelayMs: number;
  readonly #maxPending: number;
  readonly #indexThreshold: number;
  readonly #reindexAfter: number;
  readonly #exactScanLimit: number;
  readonly #searchEf: number;
  readonly #catchUpMs: number;
  readonly #buildEf: number;
  readonly #onError: (error: unknown) => void;
  readonly #schema: ArrowModule.Schema;
  #closed = false;

  constructor(lance: LanceDb, connection: lancedb.Connection, options: VectorIndexOptions) {
    this.#lance = lance;
    this.#connection = connection;
    this.#directory = options.directory;
    this.dimensions = options.dimensions;
    this.#source = options.source;
    this.#flushDelayMs = options.flushDelayMs ?? 1000;
    this.#maxPending = options.maxPending ?? 10_000;
    this.#indexThreshold = options.indexThreshold ?? 10_000;
    this.#reindexAfter = options.reindexAfter ?? 20_000;
    this.#exactScanLimit = options.exactScanLimit ?? 20_000;
    this.#searchEf = options.searchEf ?? 128;
    this.#catchUpMs = options.catchUpMs ?? 2000;
    this.#buildEf = options.buildEf ?? 64;
    this.#onError = options.onError ?? ((error) => process.emitWarning(error instanceof Error ? error : String(error)));
    this.#schema = new arrow.Schema([
      new arrow.Field('id', new arrow.Int64(), false),
      new arrow.Field('grp', new arrow.Utf8(), true),
      new arrow.Field('vector', new arrow.FixedSizeList(this.dimensions, new arrow.Field('item', new arrow.Float32(), true)), false),
    ]);
  }

  add(owner: string, entry: VectorEntry): void {
    checkVector(entry.vector, this.dimensions);
    if (!Number.isSafeInteger(entry.id) || entry.id < 0) throw new RangeError(`vector id must be a non-negative integer, not ${entry.id}`);
    // Copied: the caller may reuse its buffer, and the search overlay computes on it until the flush.
    this.#change(owner, entry.id, { id: entry.id, vector: Float32Array.from(entry.vector), group: entry.group });
  }

  remove(owner: string, id: number): void {
    this.#change(owner, id, null);
  }

  #change(owner: string, id: number, change: Change): void {
    if (this.#closed) throw new Error('the vector index is closed');
    const state = this.#state(owner);
    // Ids only grow: a new id above the largest known adds one row; anything else (a replacement, a removal that
    // may not be there) leaves the summary unknown until the next sync.
    const known = state.known;
    state.known =
      change !== null && known !== undefined && id > known.maxId
        ? { count: known.count + 1, maxId: id, idSum: known.idSum + id }
        : undefined;
    state.pending.set(id, change);
    if (state.pending.size >= this.#maxPending) this.#scheduleFlush(state, 0);
    else if (state.timer === undefined) this.#scheduleFlush(state, this.#flushDelayMs);
  }

  #scheduleFlush(state: OwnerState, delayMs: number): void {
    clearTimeout(state.timer);
    state.timer = setTimeout(() => {
      state.timer = undefined;
      this.#flushOwner(state).catch(this.#onError);
    }, delayMs);
    // A process that exits with changes buffered loses them; the next sync repairs the index from the database.
    state.timer.unref();
  }

  async search(vector: ArrayLike<number>, k: number, filter: VectorFilter): Promise<VectorMatch[]> {
    checkVector(vector, this.dimensions);
    if (!Number.isInteger(k) || k < 1) throw new RangeError(`k must be a positive integer, not ${k}`);
    const groups = filter.groups === undefined ? undefined : new Set(filter.groups);
    if (groups?.size === 0) return [];
    const state = this.#state(filter.owner);
    await state.ready;
    await this.#catchUp(state);

    // Changes not yet on disk overlay the table: their ids are hidden from its answer and the buffered entries
    // are scored exactly here (they are few: at most maxPending plus one commit's worth).
    const overlay = new Map(state.writing);
    for (const [id, change] of state.pending) overlay.set(id, change);
    const matches: VectorMatch[] = [];
    for (const change of overlay.values()) {
      if (change === null || (groups !== undefined && !groups.has(change.group ?? ''))) continue;
      matches.push({ id: change.id, score: cosine(vector, change.vector) });
    }
    if (state.table !== undefined) {
      // Hidden ids can push true matches out of the table's top k: ask for more, bounded so a large overlay
      // (buffered during a long index build) cannot make every search huge; the result then may hold fewer.
      const limit = k + Math.min(overlay.size, 1000);
      for (const row of await this.#queryTable(state, state.table, vector, limit, groups)) {
        if (!overlay.has(row.id)) matches.push(row);
      }
    }
    return matches.sort((a, b) => b.score - a.score).slice(0, k);
  }

  async #queryTable(
    state: OwnerState,
    table: lancedb.Table,
    vector: ArrayLike<number>,
    limit: number,
    groups: ReadonlySet<string> | undefined,
  ): Promise<VectorMatch[]> {
    let query = table.vectorSearch(Float32Array.from(vector)).distanceType('cosine').limit(limit).select(['id', '_distance']);
    if (state.hasVectorIndex) query = query.ef(this.#searchEf);
    if (groups !== undefined) {
      const predicate = `grp IN (${[...groups].map(sqlString).join(', ')})`;
      query = query.where(predicate);
      // A few videos' segments are cheaper and exact to scan (the group's bitmap index finds them); a filter
      // matching much of the table keeps the ANN search, with the filter applied before it.
      if (!state.hasVectorIndex || (await table.countRows(predicate)) <= this.#exactScanLimit) query = query.bypassVectorIndex();
    }
    const rows = (await query.toArray()) as { id: bigint | number; _distance: number }[];
    // LanceDB's cosine distance is 1 - similarity.
    return rows.map((row) => ({ id: Number(row.id), score: 1 - row._distance }));
  }

  /** See `catchUpMs`: one summary query now and then; a full sync only when the database changed elsewhere. */
  async #catchUp(state: OwnerState): Promise<void> {
    if (Date.now() - state.checkedAt < this.#catchUpMs) return;
    state.checkedAt = Date.now();
    try {
      const expected = await this.#source.summary(state.owner);
      if (sameSummary(expected, state.known)) return;
      // Usually another process only added vectors: read those alone; anything else takes a full sync.
      if (await this.#enqueue(state, () => this.#appendNewer(state, expected))) return;
      await this.#enqueue(state, () => this.#syncOwner(state));
    } catch (error) {
      // The database or the index is unreachable for now: answer from what the index holds.
      this.#onError(error);
    }
  }

  /** Writes the database's vectors above the largest known id; true when that brings the index up to `expected`. */
  async #appendNewer(state: OwnerState, expected: VectorSummary): Promise<boolean> {
    const known = state.known;
    if (known === undefined || expected.maxId <= known.maxId || expected.count <= known.count) return false;
    const batch = new Map<number, Change>();
    let summary = known;
    for await (const row of this.#source.rows(state.owner, known.maxId)) {
      if (row.id <= known.maxId) continue; // a source that ignores `after`
      checkVector(row.vector, this.dimensions);
      batch.set(row.id, { id: row.id, vector: Float32Array.from(row.vector), group: row.group });
      summary = { count: summary.count + 1, maxId: Math.max(summary.maxId, row.id), idSum: summary.idSum + row.id };
    }
    if (batch.size > 0) await this.#write(state, batch);
    state.known = sameSummary(summary, expected) ? expected : undefined;
    return state.known !== undefined;
  }

  sync(owner: string): Promise<SyncOutcome> {
    const state = this.#state(owner);
    if (!state.readyReported) {
      state.readyReported = true;
      return state.ready;
    }
    return this.#enqueue(state, () => this.#syncOwner(state));
  }

  async flush(): Promise<void> {
    await Promise.all([...this.#owners.values()].map((state) => this.#flushOwner(state)));
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    await this.flush();
    this.#closed = true;
    for (const state of this.#owners.values()) {
      await state.chain.catch(() => undefined);
      state.table?.close();
    }
    this.#connection.close();
  }

  #state(owner: string): OwnerState {
    let state = this.#owners.get(owner);
    if (state === undefined) {
      const created: OwnerState = {
        owner,
        table: undefined,
        ready: Promise.resolve('fresh'),
        readyReported: false,
        synced: false,
        syncFailed: false,
        chain: Promise.resolve(),
        pending: new Map(),
        writing: new Map(),
        maxId: -1,
        hasVectorIndex: false,
        trainedRows: 0,
        flushesSinceOptimize: 0,
        timer: undefined,
        known: undefined,
        checkedAt: Date.now(),
      };
      this.#owners.set(owner, created);
      state = created;
      this.#startSync(state);
    } else if (state.syncFailed) {
      // The first sync failed (the database unreachable, a full disk): the owner's next use tries again.
      this.#startSync(state);
    }
    return state;
  }

  #startSync(state: OwnerState): void {
    state.syncFailed = false;
    state.readyReported = false;
    state.ready = this.#enqueue(state, async () => {
      const outcome = await this.#syncOwner(state);
      state.synced = true;
      if (state.pending.size > 0) this.#scheduleFlush(state, 0);
      return outcome;
    });
    state.ready.catch(() => {
      state.syncFailed = true;
    });
  }

  #enqueue<T>(state: OwnerState, task: () => Promise<T>): Promise<T> {
    const run = state.chain.then(task, task);
    state.chain = run.catch(() => undefined);
    return run;
  }

  #flushOwner(state: OwnerState): Promise<void> {
    clearTimeout(state.timer);
    state.timer = undefined;
    return this.#enqueue(state, async () => {
      if (state.pending.size === 0 || !state.synced) return;
      state.writing = state.pending;
      state.pending = new Map();
      try {
        await this.#write(state, state.writing);
      } catch (error) {
        // Kept for the next flush; newer changes to the same ids win.
        for (const [id, change] of state.writing) if (!state.pending.has(id)) state.pending.set(id, change);
        throw error;
      } finally {
        state.writing = new Map();
      }
      await this.#maintain(state);
    });
  }

  /** Applies changes: deletes every id that may be on disk, then appends the entries in one commit. */
  async #write(state: OwnerState, changes: ReadonlyMap<number, Change>): Promise<void> {
    const entries: VectorEntry[] = [];
    const stale: number[] = [];
    for (const [id, change] of changes) {
      if (change !== null) entries.push(change);
      if (change === null || id <= state.maxId) stale.push(id);
    }
    if (state.table !== undefined) {
      for (let start = 0; start < stale.length; start += 5000) {
        await state.table.delete(`id IN (${stale.slice(start, start + 5000).join(', ')})`);
      }
    }
    if (entries.length === 0) return;
    const batch = this.#toArrow(entries);
    if (state.table === undefined) state.table = await this.#connection.createTable(tableName(state.owner), batch);
    else await state.table.add(batch);
    for (const entry of entries) if (entry.id > state.maxId) state.maxId = entry.id;
    state.flushesSinceOptimize += 1;
  }

  #toArrow(entries: readonly VectorEntry[]): ArrowModule.Table {
    const ids = new BigInt64Array(entries.length);
    const vectors = new Float32Array(entries.length * this.dimensions);
    entries.forEach((entry, row) => {
      ids[row] = BigInt(entry.id);
      vectors.set(entry.vector, row * this.dimensions);
    });
    const vectorType = this.#schema.fields[2]!.type as ArrowModule.FixedSizeList<ArrowModule.Float32>;
    const child = arrow.makeData({ type: new arrow.Float32(), length: vectors.length, data: vectors });
    return new arrow.Table(this.#schema, {
      id: arrow.makeVector(ids),
      grp: arrow.vectorFromArray(
        entries.map((entry) => entry.group ?? null),
        new arrow.Utf8(),
      ),
      vector: arrow.makeVector(arrow.makeData({ type: vectorType, length: entries.length, nullCount: 0, child })),
    });
  }

  /**
   * Builds the ANN index once the owner is large enough, retrains it when the owner has grown fourfold since
   * (its partitions were sized for the rows it was trained on), folds new rows into it, compacts, prunes versions.
   */
  async #maintain(state: OwnerState): Promise<void> {
    const table = state.table;
    if (table === undefined) return;
    const rows = await table.countRows();
    if (state.hasVectorIndex ? rows >= 4 * state.trainedRows : rows >= this.#indexThreshold) {
      await table.createIndex('vector', {
        config: this.#lance.Index.hnswSq({ distanceType: 'cosine', m: 16, efConstruction: this.#buildEf }),
      });
      await table.createIndex('grp', { config: this.#lance.Index.bitmap() });
      await table.createIndex('id', { config: this.#lance.Index.btree() });
      state.hasVectorIndex = true;
      state.trainedRows = rows;
    }
    const unindexed = state.hasVectorIndex ? ((await table.indexStats('vector_idx'))?.numUnindexedRows ?? 0) : 0;
    // Each flush is a commit with its own small files: compact them, and drop old versions' files, now and then.
    if (unindexed >= this.#reindexAfter || state.flushesSinceOptimize >= 50) {
      // Versions older than a minute: a search still reading one would have to have run that long.
      await table.optimize({ cleanupOlderThan: new Date(Date.now() - 60_000) });
      state.flushesSinceOptimize = 0;
    }
  }

  async #syncOwner(state: OwnerState): Promise<SyncOutcome> {
    const name = tableName(state.owner);
    // LanceDB keeps a local table in `<name>.lance`; asking it would list every owner's table on each first use.
    if (state.table === undefined && existsSync(join(this.#directory, `${name}.lance`))) {
      const table = await this.#connection.openTable(name);
      const field = (await table.schema()).fields.find((candidate) => candidate.name === 'vector');
      if ((field?.type as ArrowModule.FixedSizeList | undefined)?.listSize === this.dimensions) {
        state.table = table;
        state.hasVectorIndex = (await table.listIndices()).some((index) => index.columns.includes('vector'));
        // Not stored: rows folded in since training count too, which only delays the next retraining.
        if (state.hasVectorIndex) state.trainedRows = (await table.indexStats('vector_idx'))?.numIndexedRows ?? 0;
      } else {
        // Another embedding size (the configured model changed): nothing in it is usable.
        table.close();
        await this.#connection.dropTable(name);
      }
    }
    const expected = await this.#source.summary(state.owner);
    const onDisk = state.table === undefined ? [] : await this.#readIds(state.table);
    state.maxId = summarize(onDisk).maxId;
    // Buffered changes count as written: the database row of an add waiting here is already committed (the
    // first add of an owner after a start is what triggers this sync), and a full scan for it would be waste.
    const present = new Set(onDisk);
    for (const [id, change] of state.pending) {
      if (change === null) present.delete(id);
      else present.add(id);
    }
    const actual = summarize(present);
    state.known = expected;
    state.checkedAt = Date.now();
    if (sameSummary(actual, expected)) return 'fresh';

    const rebuilding = state.table === undefined;
    // Rows the database has and the index lacks are appended; rows the index has and the database lost are
    // deleted. Rows present in both are kept, so a crash costs a few rows' work, not a full rebuild.
    const seen = new Set<number>();
    let batch = new Map<number, Change>();
    for await (const row of this.#source.rows(state.owner)) {
      seen.add(row.id);
      if (present.has(row.id)) continue;
      checkVector(row.vector, this.dimensions);
      batch.set(row.id, { id: row.id, vector: Float32Array.from(row.vector), group: row.group });
      // Large commits: each is a data file, and a rebuild of a million rows should not leave hundreds.
      if (batch.size >= 50_000) {
        await this.#write(state, batch);
        batch = new Map();
      }
    }
    for (const id of present) if (!seen.has(id)) batch.set(id, null);
    if (batch.size > 0) await this.#write(state, batch);
    state.flushesSinceOptimize = 0;
    await this.#maintain(state);
    return rebuilding ? 'rebuilt' : 'repaired';
  }

  async #readIds(table: lancedb.Table): Promise<number[]> {
    const ids: number[] = [];
    for (const batch of (await table.query().select(['id']).toArrow()).batches) {
      const column = batch.getChild('id');
      if (column === null) continue;
      for (const value of column.toArray() as BigInt64Array) ids.push(Number(value));
    }
    return ids;
  }
}

function sameSummary(a: VectorSummary, b: VectorSummary | undefined): boolean {
  return b !== undefined && a.count === b.count && a.maxId === b.maxId && a.idSum === b.idSum;
}

function summarize(ids: Iterable<number>): VectorSummary {
  let maxId = 0;
  let idSum = 0;
  let count = 0;
  for (const id of ids) {
    count += 1;
    if (id > maxId) maxId = id;
    idSum += id;
  }
  return { count, maxId, idSum };
}

/** Opens (creating if needed) a vector index in `options.directory`. Owners are synced on first use. */
export async function openVectorIndex(options: VectorIndexOptions): Promise<VectorIndex> {
  if (!Number.isInteger(options.dimensions) || options.dimensions < 1)
    throw new RangeError(`dimensions must be a positive integer, not ${options.dimensions}`);
  mkdirSync(options.directory, { recursive: true, mode: 0o700 });
  const lance = await loadLanceDb();
  return new LanceVectorIndex(lance, await lance.connect(options.directory), options);
}

/** A source of vectors whose dimensions are known once something is stored. */
export interface EmbeddingSource extends VectorSource {
  dimensions(): Promise<number | undefined>;
}

/**
 * A vector index opened on first use, in `directory`: its dimensions are those of the first vector stored (or
 * already in the database), which the model decides.
 */
export class LazyVectorIndex {
  readonly #directory: string;
  readonly #source: EmbeddingSource;
  #index: Promise<VectorIndex | undefined> | undefined;

  constructor(directory: string, source: EmbeddingSource) {
    this.#directory = directory;
    this.#source = source;
  }

  /** The index, or undefined while nothing has been embedded (and `dimensions` is not given). */
  open(dimensions?: number): Promise<VectorIndex | undefined> {
    if (this.#index === undefined) {
      const opening = (async () => {
        const known = (await this.#source.dimensions()) ?? dimensions;
        return known === undefined ? undefined : openVectorIndex({ directory: this.#directory, dimensions: known, source: this.#source });
      })();
      this.#index = opening;
      // Nothing to open yet, or a failed open: the next caller tries again.
      const retry = (): void => {
        if (this.#index === opening) this.#index = undefined;
      };
      opening.then((index) => index === undefined && retry(), retry);
    }
    return this.#index;
  }

  async close(): Promise<void> {
    const index = this.#index;
    this.#index = undefined;
    await (await index?.catch(() => undefined))?.close();
  }
}
