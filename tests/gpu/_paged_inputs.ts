/**
 * Paged K and V for tests: a contiguous K (or V) laid into a pool of pages in a shuffled order,
 * with spare pages and the rows past Nk of each sequence's last page filled with NaN, so that a
 * kernel reading any row the block table does not name turns its output into NaN.
 */
import { type AttentionShape, sequenceSizes } from "../../core/shape.ts";
import { tableColumns } from "../../core/paged_kv.ts";

/** A seeded shuffled block table: `[B, columns + padding]`, padding entries a junk value. */
export interface PagedLayout {
  pageSize: number;
  /** Pages in the pool: every sequence's pages and `spare` more. */
  pages: number;
  /** `[B, maxPages]`, maxPages = ceil(Nk / pageSize) + padding columns of junk. */
  blockTable: Int32Array;
}

/**
 * Draws a pool and a table: each (batch, column) gets a distinct page, in a seeded shuffle of
 * the pool, so no sequence's pages are in order and some pages are never named.
 * @param shape the call's sizes
 * @param o page size, spare pages, padding columns and the shuffle's seed
 * @returns the layout
 */
export function shuffledLayout(
  shape: AttentionShape,
  o: { pageSize: number; spare: number; padding: number; seed: number },
): PagedLayout {
  const columns = tableColumns(shape, o.pageSize);
  const used = shape.batch * columns;
  const pages = used + o.spare;
  // Fisher-Yates over the pool with a small LCG: the first `used` pages are the sequences'.
  const order = Array.from({ length: pages }, (_, i) => i);
  let state = o.seed >>> 0;
  for (let i = pages - 1; i > 0; i--) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    const j = state % (i + 1);
    [order[i], order[j]] = [order[j], order[i]];
  }
  const maxPages = columns + o.padding;
  const blockTable = new Int32Array(shape.batch * maxPages).fill(-7); // padding: never read
  for (let b = 0; b < shape.batch; b++) {
    for (let c = 0; c < columns; c++) blockTable[b * maxPages + c] = order[b * columns + c];
  }
  return { pageSize: o.pageSize, pages, blockTable };
}

/**
 * Lays contiguous K or V `[B, Hkv, Nk, width]` into the pool `[pages, Hkv, pageSize, width]`
 * by the table; every element the table does not cover is NaN.
 */
export function toPages<T extends Float32Array | Float16Array>(
  contiguous: T,
  shape: AttentionShape,
  layout: PagedLayout,
  width: number,
): T {
  const { nk } = sequenceSizes(shape);
  const { batch: B, headsKV: Hkv } = shape;
  const { pageSize, pages, blockTable } = layout;
  const maxPages = blockTable.length / B;
  const out = new (contiguous.constructor as new (n: number) => T)(
    pages * Hkv * pageSize * width,
  );
  out.fill(NaN);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < Hkv; h++) {
      for (let p = 0; p < nk; p++) {
        const page = blockTable[b * maxPages + Math.floor(p / pageSize)];
        const to = ((page * Hkv + h) * pageSize + p % pageSize) * width;
        const from = ((b * Hkv + h) * nk + p) * width;
        out.set(contiguous.subarray(from, from + width) as never, to);
      }
    }
  }
  return out;
}
