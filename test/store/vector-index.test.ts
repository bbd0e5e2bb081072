import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, sep } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  openVectorIndex,
  type VectorEntry,
  type VectorIndex,
  type VectorIndexOptions,
  type VectorSource,
} from '../../src/store/vector-index.ts';

/** The database side, as the lead's embedding table will hold it: ids never reused, vectors as float32 blobs. */
class EmbeddingTable implements VectorSource {
  readonly db = new Database(':memory:');
  rowsRead = 0;
  /** Makes the next summary fail, as an unreachable database would. */
  failNext = false;

  constructor() {
    this.db.exec(`CREATE TABLE embeddings (
      id INTEGER PRIMARY KEY AUTOINCREMENT, owner TEXT NOT NULL, video_id TEXT NOT NULL, vector BLOB NOT NULL
    ); CREATE INDEX embeddings_owner ON embeddings (owner, id);`);
  }

  insert(owner: string, videoId: string, vector: readonly number[]): VectorEntry {
    const blob = Buffer.from(Float32Array.from(vector).buffer);
    const { lastInsertRowid } = this.db
      .prepare('INSERT INTO embeddings (owner, video_id, vector) VALUES (?, ?, ?)')
      .run(owner, videoId, blob);
    return { id: Number(lastInsertRowid), vector, group: videoId };
  }

  delete(id: number): void {
    this.db.prepare('DELETE FROM embeddings WHERE id = ?').run(id);
  }

  summary(owner: string) {
    if (this.failNext) {
      this.failNext = false;
      throw new Error('database unavailable');
    }
    const row = this.db
      .prepare('SELECT count(*) AS count, coalesce(max(id), 0) AS maxId, total(id) AS idSum FROM embeddings WHERE owner = ?')
      .get(owner) as {
      count: number;
      maxId: number;
      idSum: number;
    };
    return row;
  }

  *rows(owner: string, after = 0): Iterable<VectorEntry> {
    for (const row of this.db
      .prepare('SELECT id, video_id, vector FROM embeddings WHERE owner = ? AND id > ? ORDER BY id')
      .iterate(owner, after) as Iterable<{ id: number; video_id: string; vector: Buffer }>) {
      this.rowsRead += 1;
      const vector = new Float32Array(row.vector.buffer.slice(row.vector.byteOffset, row.vector.byteOffset + row.vector.byteLength));
      yield { id: row.id, vector, group: row.video_id };
    }
  }
}

/** Deterministic pseudo-random unit-ish vectors (mulberry32). */
function randomVectors(count: number, dimensions: number, seed: number): number[][] {
  let state = seed >>> 0;
  const next = (): number => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = Math.imul(state ^ (state >>> 15), state | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296 - 0.5;
  };
  return Array.from({ length: count }, () => Array.from({ length: dimensions }, next));
}

/** The index files LanceDB wrote (under each table's `_indices`). */
function listIndexFiles(root: string): string[] {
  return readdirSync(root, { recursive: true, encoding: 'utf8' }).filter((path) => path.split(sep).includes('_indices'));
}

let directory: string;
let table: EmbeddingTable;
let index: VectorIndex | undefined;

beforeEach(() => {
  directory = mkdtempSync(join(tmpdir(), 'ocular-vectors-'));
  table = new EmbeddingTable();
});

afterEach(async () => {
  await index?.close();
  index = undefined;
  table.db.close();
  rmSync(directory, { recursive: true, force: true });
});

async function open(options: Partial<VectorIndexOptions> = {}): Promise<VectorIndex> {
  index = await openVectorIndex({ directory, dimensions: 4, source: table, flushDelayMs: 10_000, ...options });
  return index;
}

/** Writes the row, then the index, as the indexer will. */
function write(owner: string, videoId: string, vector: readonly number[]): number {
  const entry = table.insert(owner, videoId, vector);
  index!.add(owner, entry);
  return entry.id;
}

describe('vector index', () => {
  it('ranks by cosine similarity, before and after the buffered changes reach disk', async () => {
    const vectors = await open();
    const same = write('alice', 'v1', [2, 0, 0, 0]); // same direction, other length: cosine 1
    const near = write('alice', 'v1', [0.9, 0.1, 0, 0]);
    const orthogonal = write('alice', 'v2', [0, 1, 0, 0]);
    const opposite = write('alice', 'v2', [-1, 0, 0, 0]);
    const expected = [same, near, orthogonal, opposite];

    const buffered = await vectors.search([1, 0, 0, 0], 10, { owner: 'alice' });
    expect(buffered.map((match) => match.id)).toEqual(expected);
    expect(buffered[0]!.score).toBeCloseTo(1, 5);
    expect(buffered[1]!.score).toBeCloseTo(0.9 / Math.hypot(0.9, 0.1), 5);
    expect(buffered[2]!.score).toBeCloseTo(0, 5);
    expect(buffered[3]!.score).toBeCloseTo(-1, 5);

    await vectors.flush();
    const stored = await vectors.search([1, 0, 0, 0], 10, { owner: 'alice' });
    expect(stored.map((match) => match.id)).toEqual(expected);
    for (const [i, match] of stored.entries()) expect(match.score).toBeCloseTo(buffered[i]!.score, 5);
    expect((await vectors.search([1, 0, 0, 0], 2, { owner: 'alice' })).map((match) => match.id)).toEqual([same, near]);
  });

  it('removes vectors, whether buffered or on disk, and replaces one added again', async () => {
    const vectors = await open();
    const first = write('alice', 'v1', [1, 0, 0, 0]);
    const second = write('alice', 'v1', [0, 1, 0, 0]);
    await vectors.flush();
    const third = write('alice', 'v1', [0, 0, 1, 0]);

    vectors.remove('alice', first); // on disk
    vectors.remove('alice', third); // still buffered
    expect((await vectors.search([1, 0, 0, 0], 10, { owner: 'alice' })).map((match) => match.id)).toEqual([second]);
    await vectors.flush();
    expect((await vectors.search([1, 0, 0, 0], 10, { owner: 'alice' })).map((match) => match.id)).toEqual([second]);

    // Same id, new vector: the old one must not linger beside it.
    vectors.add('alice', { id: second, vector: [0, 0, 0, 1], group: 'v1' });
    await vectors.flush();
    const matches = await vectors.search([0, 0, 0, 1], 10, { owner: 'alice' });
    expect(matches).toHaveLength(1);
    expect(matches[0]!.score).toBeCloseTo(1, 5);
  });

  it('keeps owners apart and narrows to the given videos', async () => {
    const vectors = await open();
    const alice = write('alice', 'v1', [1, 0, 0, 0]);
    const aliceOther = write('alice', 'v2', [0.5, 0.5, 0, 0]);
    const bob = write('bob', 'v1', [1, 0, 0, 0]);
    for (const flushed of [false, true]) {
      if (flushed) await vectors.flush();
      expect((await vectors.search([1, 0, 0, 0], 10, { owner: 'alice' })).map((match) => match.id)).toEqual([alice, aliceOther]);
      expect((await vectors.search([1, 0, 0, 0], 10, { owner: 'bob' })).map((match) => match.id)).toEqual([bob]);
      expect(await vectors.search([1, 0, 0, 0], 10, { owner: 'carol' })).toEqual([]);
      expect((await vectors.search([1, 0, 0, 0], 10, { owner: 'alice', groups: ['v2'] })).map((match) => match.id)).toEqual([aliceOther]);
      expect(await vectors.search([1, 0, 0, 0], 10, { owner: 'alice', groups: ["it's not there"] })).toEqual([]);
      expect(await vectors.search([1, 0, 0, 0], 10, { owner: 'alice', groups: [] })).toEqual([]);
    }
  });

  it('persists across close and open without reading the database again', async () => {
    let vectors = await open();
    const id = write('alice', 'v1', [0, 0, 1, 0]);
    await vectors.close(); // flushes
    vectors = await open();
    expect(await vectors.sync('alice')).toBe('fresh');
    expect(table.rowsRead).toBe(0);
    expect((await vectors.search([0, 0, 1, 0], 1, { owner: 'alice' })).map((match) => match.id)).toEqual([id]);
  });

  it('rebuilds from the database when the index is deleted while closed', async () => {
    let vectors = await open();
    const ids = [write('alice', 'v1', [1, 0, 0, 0]), write('alice', 'v1', [0, 1, 0, 0])];
    await vectors.close();
    rmSync(directory, { recursive: true });

    vectors = await open();
    // The first use of an owner syncs it: the search already sees the rebuilt rows.
    expect((await vectors.search([0, 1, 0, 0], 10, { owner: 'alice' })).map((match) => match.id)).toEqual([ids[1], ids[0]]);
    expect(table.rowsRead).toBe(2);
    expect(await vectors.sync('alice')).toBe('rebuilt'); // the first sync's outcome
    expect(await vectors.sync('alice')).toBe('fresh');
  });

  it('repairs a stale index: rows written or deleted in the database whose index write was lost', async () => {
    let vectors = await open();
    const kept = write('alice', 'v1', [1, 0, 0, 0]);
    const deleted = write('alice', 'v1', [0, 1, 0, 0]);
    await vectors.close();
    // A crash between the row and the index write, both ways: a row the index never got, a delete it missed.
    const lost = table.insert('alice', 'v2', [0, 0, 1, 0]).id;
    table.delete(deleted);

    vectors = await open();
    expect(await vectors.sync('alice')).toBe('repaired');
    expect((await vectors.search([0, 1, 0.1, 0], 10, { owner: 'alice' })).map((match) => match.id)).toEqual([lost, kept]);
    await vectors.close();
    vectors = await open();
    expect(await vectors.sync('alice')).toBe('fresh');
  });

  it('retries a failed first sync, keeping the changes made meanwhile and the index on disk', async () => {
    let vectors = await open();
    const first = write('alice', 'v1', [1, 0, 0, 0]);
    await vectors.close();

    table.failNext = true;
    vectors = await open();
    const second = write('alice', 'v1', [0, 1, 0, 0]);
    await expect(vectors.search([1, 0, 0, 0], 10, { owner: 'alice' })).rejects.toThrow('database unavailable');
    await vectors.flush(); // must not create the owner's table afresh over the one on disk
    expect((await vectors.search([1, 0, 0, 0], 10, { owner: 'alice' })).map((match) => match.id)).toEqual([first, second]);
    await vectors.close();

    vectors = await open();
    expect(await vectors.sync('alice')).toBe('fresh');
    expect((await vectors.search([1, 0, 0, 0], 10, { owner: 'alice' })).map((match) => match.id)).toEqual([first, second]);
  });

  it('catches up with vectors another process wrote or deleted, checking the database at most every catchUpMs', async () => {
    // Two processes: each its own index files, one database between them.
    const worker = await open({ catchUpMs: 60_000 });
    const elsewhere = mkdtempSync(join(tmpdir(), 'ocular-vectors-'));
    const api = await openVectorIndex({ directory: elsewhere, dimensions: 4, source: table, flushDelayMs: 10_000, catchUpMs: 100 });
    try {
      const first = write('alice', 'v1', [1, 0, 0, 0]);
      expect((await api.search([1, 0, 0, 0], 5, { owner: 'alice' })).map((match) => match.id)).toEqual([first]); // its first sync
      const second = write('alice', 'v2', [0.9, 0.1, 0, 0]);
      const rowsBefore = table.rowsRead;
      // Within the interval the API process answers from what it holds, without asking the database.
      expect((await api.search([1, 0, 0, 0], 5, { owner: 'alice' })).map((match) => match.id)).toEqual([first]);
      await new Promise((resolve) => setTimeout(resolve, 150));
      expect((await api.search([1, 0, 0, 0], 5, { owner: 'alice' })).map((match) => match.id)).toEqual([first, second]);
      expect(table.rowsRead - rowsBefore).toBe(1); // only the new row
      // A deletion elsewhere (the video removed through the other process) is caught up with too.
      table.delete(first);
      worker.remove('alice', first);
      await new Promise((resolve) => setTimeout(resolve, 150));
      expect((await api.search([1, 0, 0, 0], 5, { owner: 'alice' })).map((match) => match.id)).toEqual([second]);
      // Nothing changed since: a check costs one summary, no rows read.
      const rowsAfter = table.rowsRead;
      await new Promise((resolve) => setTimeout(resolve, 150));
      await api.search([1, 0, 0, 0], 5, { owner: 'alice' });
      expect(table.rowsRead).toBe(rowsAfter);
    } finally {
      await api.close();
      rmSync(elsewhere, { recursive: true, force: true });
    }
  });

  it('refuses vectors of another size, and rebuilds an index opened with another size', async () => {
    let vectors = await open();
    expect(() => vectors.add('alice', { id: 1, vector: [1, 0, 0] })).toThrow(RangeError);
    expect(() => vectors.add('alice', { id: 1, vector: [0, 0, 0, 0] })).toThrow(RangeError);
    expect(() => vectors.add('alice', { id: 1, vector: [Number.NaN, 0, 0, 0] })).toThrow(RangeError);
    await expect(vectors.search([1, 0, 0, 0, 0], 1, { owner: 'alice' })).rejects.toThrow(RangeError);
    write('alice', 'v1', [1, 0, 0, 0]);
    await vectors.close();

    // The model changed to 3 dimensions: the 4-dimension table is dropped and built from the (new) rows.
    table.db.exec('DELETE FROM embeddings');
    const id = table.insert('alice', 'v1', [0, 1, 0]).id;
    vectors = await open({ dimensions: 3 });
    expect(await vectors.sync('alice')).toBe('rebuilt');
    expect((await vectors.search([0, 1, 0], 1, { owner: 'alice' })).map((match) => match.id)).toEqual([id]);
  });

  it('builds the ANN index past its threshold and keeps it up to date', async () => {
    const dimensions = 16;
    const data = randomVectors(400, dimensions, 7);
    const vectors = await open({ dimensions, indexThreshold: 300, exactScanLimit: 50 });
    const ids = data.map((vector, i) => write('alice', `v${i % 4}`, vector));
    await vectors.flush();
    expect(listIndexFiles(directory)).not.toEqual([]);
    // Each stored vector is its own nearest neighbour, found through the index.
    for (const i of [0, 137, 399]) {
      const [best] = await vectors.search(data[i]!, 1, { owner: 'alice' });
      expect(best!.id).toBe(ids[i]);
      expect(best!.score).toBeCloseTo(1, 3);
    }
    // Narrowed to one video: 100 rows, over exactScanLimit, so the filtered ANN search runs.
    const inVideo = await vectors.search(data[5]!, 5, { owner: 'alice', groups: ['v1'] });
    expect(inVideo[0]!.id).toBe(ids[5]);
    for (const match of inVideo) expect(ids.indexOf(match.id) % 4).toBe(1);

    vectors.remove('alice', ids[137]!);
    const added = write('alice', 'v9', data[137]!);
    await vectors.flush();
    expect((await vectors.search(data[137]!, 1, { owner: 'alice' }))[0]!.id).toBe(added);
  });
});
