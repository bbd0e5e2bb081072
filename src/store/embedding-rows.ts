import type { VectorEntry, VectorSummary } from './vector-index.ts';

/** Joins the text columns that are embedded, as a query parameter (the same on both databases). */
export const NEWLINE = '\n';

/** Rows a vector index is rebuilt from are read this many at a time (by id), never all at once. */
const ROWS_PAGE = 1_000;

/** A vector as stored: little-endian float32 bytes (SQLite BLOB, PostgreSQL bytea). */
export function toBytes(vector: Float32Array): Buffer {
  return Buffer.from(vector.buffer, vector.byteOffset, vector.byteLength);
}

export function toVector(bytes: Uint8Array): Float32Array {
  // Copied: bytes from the database may not be 4-byte aligned for a Float32Array view.
  const copy = new Uint8Array(bytes);
  return new Float32Array(copy.buffer, 0, copy.byteLength / 4);
}

/** `count(*)`, `max(id)` and `sum(id)` of an owner's embeddings, as either database returns them. */
export function toSummary(row: { count: unknown; max_id: unknown; id_sum: unknown } | undefined): VectorSummary {
  return { count: Number(row?.count ?? 0), maxId: Number(row?.max_id ?? 0), idSum: Number(row?.id_sum ?? 0) };
}

/**
 * Every row above id `from` that `page` returns, a page at a time in id order (`page(after)`: the next rows with an
 * id above `after`).
 */
export async function* pagedRows<Row extends { id: number }>(
  from: number,
  page: (after: number, limit: number) => Promise<Row[]>,
  toEntry: (row: Row) => VectorEntry,
): AsyncIterable<VectorEntry> {
  let after = from;
  for (;;) {
    const rows = await page(after, ROWS_PAGE);
    for (const row of rows) yield toEntry(row);
    if (rows.length < ROWS_PAGE) return;
    after = rows.at(-1)!.id;
  }
}
