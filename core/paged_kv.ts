/**
 * Paged K and V (DESIGN §1): the keys and values live in a pool of pages, K
 * `[pages, Hkv, pageSize, D]` and V `[pages, Hkv, pageSize, Dv]`, and a block table
 * `[B, maxPages]` of page indices says where each sequence's positions are: key position `p` of
 * batch `b` is row `p % pageSize` of page `table[b, floor(p / pageSize)]`, the convention of
 * vLLM's and FlexAttention's paged attention. The page size is part of the compiled kernels;
 * the pool's page count and the table are data. Shared by the compiler (its checks), the runtime
 * (the table's checks and upload) and whoever checks a paged call against the reference, which
 * takes the gathered contiguous K and V.
 * @module
 */
import { DataError, ShapeError } from "./errors.ts";
import { type AttentionShape, sequenceSizes } from "./shape.ts";

/** How paged K and V are laid out: the compile option `paged`. */
export interface PagedKv {
  /**
   * Key positions per page: a power of two from 1 to `MAX_PAGE_SIZE`. A constant of the
   * kernels: `kvRow` splits a position into page and row with a shift and a mask.
   */
  pageSize: number;
  /**
   * Pages in the pool, at least 1: K holds `pages * Hkv * pageSize * D` elements and V
   * `pages * Hkv * pageSize * Dv`. Only buffer sizes depend on it, never the WGSL, so a pool
   * that grows reuses the compiled pipelines.
   */
  pages: number;
}

/** The largest page size the kernels take. */
export const MAX_PAGE_SIZE = 65536;

/**
 * Checks the `paged` compile option against the call's shape.
 * @param paged the option
 * @throws {ShapeError} naming `paged.pageSize` or `paged.pages`
 * @example
 * ```ts
 * import { checkPagedKv } from "./paged_kv.ts";
 * checkPagedKv({ pageSize: 16, pages: 64 }); // fine
 * ```
 */
export function checkPagedKv(paged: PagedKv): void {
  const { pageSize, pages } = paged;
  if (
    !Number.isInteger(pageSize) || pageSize < 1 || pageSize > MAX_PAGE_SIZE ||
    (pageSize & (pageSize - 1)) !== 0
  ) {
    throw new ShapeError(
      `Bad options: paged.pageSize must be a power of two from 1 to ${MAX_PAGE_SIZE} ` +
        `(positions per page), got ${pageSize}`,
    );
  }
  if (!Number.isInteger(pages) || pages < 1) {
    throw new ShapeError(
      `Bad options: paged.pages must be an integer >= 1 (the pages in K's and V's pool), ` +
        `got ${pages}`,
    );
  }
}

/**
 * The block table columns a call reads: `ceil(Nk / pageSize)` pages per sequence.
 * @param shape the call's sizes
 * @param pageSize positions per page
 * @returns the pages one sequence of `Nk` keys spans
 * @example
 * ```ts
 * import { tableColumns } from "./paged_kv.ts";
 * tableColumns({ batch: 1, headsQ: 1, headsKV: 1, seqLen: 1, headDim: 8, kvSeqLen: 33 }, 16); // 3
 * ```
 */
export function tableColumns(shape: AttentionShape, pageSize: number): number {
  return Math.ceil(sequenceSizes(shape).nk / pageSize);
}

/**
 * Checks paged K and V and the block table of one call: K and V hold whole pages, the table
 * is `[B, maxPages]` with `maxPages >= ceil(Nk / pageSize)`, and every entry the call reads
 * (the first `ceil(Nk / pageSize)` of each row) is a page of the pool. Entries past those are
 * neither read nor checked, so a table padded to a longest sequence can be passed as it is.
 * @param shape the call's sizes
 * @param paged the layout
 * @param inputs k, v and the block table (its flat entries, row-major)
 * @throws {ShapeError} a length that disagrees, naming the tensor; {DataError} an entry that
 *   is not a page index, naming its row and column
 * @example
 * ```ts
 * import { checkPagedInputs } from "./paged_kv.ts";
 * const shape = { batch: 2, headsQ: 1, headsKV: 1, seqLen: 1, headDim: 4, kvSeqLen: 5 };
 * const k = new Float32Array(3 * 4 * 4); // 3 pages of 4 rows
 * checkPagedInputs(shape, { pageSize: 4, pages: 3 }, { k, v: k, blockTable: [0, 2, 1, 0] });
 * ```
 */
export function checkPagedInputs(
  shape: AttentionShape,
  paged: PagedKv,
  inputs: { k: ArrayLike<number>; v: ArrayLike<number>; blockTable?: ArrayLike<number> },
): void {
  const { pageSize, pages } = paged;
  const { d, dv } = sequenceSizes(shape);
  const { headsKV: Hkv, batch: B } = shape;
  const pool = `pages*Hkv*pageSize`;
  for (const [name, width, dim] of [["k", d, "D"], ["v", dv, "Dv"]] as const) {
    const expected = pages * Hkv * pageSize * width;
    if (inputs[name].length !== expected) {
      throw new ShapeError(
        `Bad shape: paged ${name} has ${inputs[name].length} elements, expected ` +
          `${pool}*${dim} = ${pages}*${Hkv}*${pageSize}*${width} = ${expected} ` +
          `([pages, Hkv, pageSize, ${dim}])`,
      );
    }
  }
  const table = inputs.blockTable;
  const columns = tableColumns(shape, pageSize);
  if (table === undefined) {
    throw new ShapeError(
      `Bad input: blockTable is required: the call was compiled with paged K and V; give ` +
        `[B, maxPages] page indices with maxPages >= ceil(Nk / pageSize) = ${columns}`,
    );
  }
  const maxPages = table.length / B;
  if (!Number.isInteger(maxPages) || maxPages < columns) {
    throw new ShapeError(
      `Bad shape: blockTable has ${table.length} elements, expected [B, maxPages] with ` +
        `B = ${B} and maxPages >= ceil(Nk / pageSize) = ${columns}`,
    );
  }
  for (let b = 0; b < B; b++) {
    for (let c = 0; c < columns; c++) {
      const page = table[b * maxPages + c];
      if (!Number.isInteger(page) || page < 0 || page >= pages) {
        throw new DataError(
          `Bad input: blockTable[${b}, ${c}] is ${page}; the entries a call reads must be ` +
            `page indices in [0, pages) = [0, ${pages})`,
        );
      }
    }
  }
}

/**
 * The block table as the kernels read it: `[B, ceil(Nk / pageSize)]` u32 page indices, the
 * columns past those dropped, so the WGSL's row stride does not depend on the caller's
 * `maxPages`. The table must have passed `checkPagedInputs`.
 * @param shape the call's sizes
 * @param pageSize positions per page
 * @param blockTable `[B, maxPages]`, row-major
 * @returns the table's first `ceil(Nk / pageSize)` columns
 * @example
 * ```ts
 * import { compactBlockTable } from "./paged_kv.ts";
 * const shape = { batch: 2, headsQ: 1, headsKV: 1, seqLen: 1, headDim: 4, kvSeqLen: 5 };
 * compactBlockTable(shape, 4, [0, 2, 9, 1, 0, 9]); // Uint32Array [0, 2, 1, 0]
 * ```
 */
export function compactBlockTable(
  shape: AttentionShape,
  pageSize: number,
  blockTable: ArrayLike<number>,
): Uint32Array {
  const columns = tableColumns(shape, pageSize);
  const maxPages = blockTable.length / shape.batch;
  const out = new Uint32Array(shape.batch * columns);
  for (let b = 0; b < shape.batch; b++) {
    for (let c = 0; c < columns; c++) out[b * columns + c] = blockTable[b * maxPages + c];
  }
  return out;
}

/**
 * Calls `visit` with the flat range of every row of a paged tensor that a call reads: for each
 * batch, key/value head and position `p < Nk`, the `width` elements of row `p % pageSize` of
 * page `table[b, floor(p / pageSize)]`, consecutive positions of a page as one range. A page
 * two sequences share is visited for each.
 */
function forEachReadRange(
  shape: AttentionShape,
  pageSize: number,
  blockTable: ArrayLike<number>,
  width: number,
  visit: (from: number, to: number, destination: number) => void,
): void {
  const { nk } = sequenceSizes(shape);
  const { batch: B, headsKV: Hkv } = shape;
  const columns = tableColumns(shape, pageSize);
  const maxPages = blockTable.length / B;
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < Hkv; h++) {
      for (let c = 0; c < columns; c++) {
        const page = blockTable[b * maxPages + c];
        const rows = Math.min(pageSize, nk - c * pageSize);
        const from = ((page * Hkv + h) * pageSize) * width;
        const destination = ((b * Hkv + h) * nk + c * pageSize) * width;
        visit(from, from + rows * width, destination);
      }
    }
  }
}

/**
 * Gathers paged K (or V) into the contiguous layout `[B, Hkv, Nk, width]`: what the float64
 * reference, `deno task run --verify` and the tests compare a paged call with. Pages the table
 * does not name, and rows past `Nk` of the last page, are not read.
 * @param pages `[pages, Hkv, pageSize, width]`
 * @param blockTable `[B, maxPages]` page indices, row-major (checked by `checkPagedInputs`)
 * @param o the call's shape, the page size and the row width (D for K, Dv for V)
 * @returns a new array of the same element type
 * @example
 * ```ts
 * import { gatherPages } from "./paged_kv.ts";
 * const shape = { batch: 1, headsQ: 1, headsKV: 1, seqLen: 1, headDim: 1, kvSeqLen: 3 };
 * // Two pages of two rows, the sequence's first page second in the pool.
 * gatherPages(new Float32Array([20, 30, 0, 10]), [1, 0], { shape, pageSize: 2, width: 1 });
 * // Float32Array [0, 10, 20]
 * ```
 */
export function gatherPages<T extends Float32Array | Float16Array | Float64Array>(
  pages: T,
  blockTable: ArrayLike<number>,
  o: { shape: AttentionShape; pageSize: number; width: number },
): T {
  const { batch: B, headsKV: Hkv } = o.shape;
  const out = new (pages.constructor as new (n: number) => T)(
    B * Hkv * sequenceSizes(o.shape).nk * o.width,
  );
  forEachReadRange(o.shape, o.pageSize, blockTable, o.width, (from, to, destination) => {
    out.set(pages.subarray(from, to) as never, destination);
  });
  return out;
}

/**
 * The first non-finite entry among the rows of a paged tensor that a call reads, if any: a
 * pool's unused pages (and rows past `Nk`) may hold anything, since no kernel reads them.
 * @param pages `[pages, Hkv, pageSize, width]`
 * @param blockTable `[B, maxPages]` (checked by `checkPagedInputs`)
 * @param o the call's shape, the page size and the row width
 * @returns the flat index of the first NaN or infinite entry read, or -1
 * @example
 * ```ts
 * import { firstNonFiniteRead } from "./paged_kv.ts";
 * const shape = { batch: 1, headsQ: 1, headsKV: 1, seqLen: 1, headDim: 1, kvSeqLen: 2 };
 * firstNonFiniteRead(new Float32Array([NaN, NaN, 1, 2]), [1], { shape, pageSize: 2, width: 1 }); // -1
 * ```
 */
export function firstNonFiniteRead(
  pages: ArrayLike<number>,
  blockTable: ArrayLike<number>,
  o: { shape: AttentionShape; pageSize: number; width: number },
): number {
  let found = -1;
  forEachReadRange(o.shape, o.pageSize, blockTable, o.width, (from, to) => {
    for (let i = from; i < to && found < 0; i++) {
      // x - x is NaN exactly when x is NaN or infinite.
      if (pages[i] - pages[i] !== 0) found = i;
    }
  });
  return found;
}

/**
 * The block table inverted, for the backward pass's gradients with respect to the pool (DESIGN
 * §6): which (batch, column) entries name each page. Words `[B * columns refs, pages + 1
 * starts]`, `columns = ceil(Nk / pageSize)`: page `g`'s references are
 * `refs[starts[g] .. starts[g + 1] - 1]`, each the flat entry `b * columns + c`, ascending, so
 * a page that several sequences share is summed in one fixed order. The refs come first so that
 * their offset depends on the call's shape only, not on the pool's page count. Built by one
 * counting pass over the entries a call reads: linear in the table and the pool.
 * @param shape the call's sizes
 * @param paged the page size and the pool's page count
 * @param blockTable `[B, maxPages]`, row-major (checked by `checkPagedInputs`)
 * @returns the words of the `pageRefs` buffer
 * @example
 * ```ts
 * import { pageReferences } from "./paged_kv.ts";
 * const shape = { batch: 2, headsQ: 1, headsKV: 1, seqLen: 1, headDim: 4, kvSeqLen: 5 };
 * // Both sequences start with page 2; page 1 is named by no one.
 * pageReferences(shape, { pageSize: 4, pages: 4 }, [2, 0, 2, 3]);
 * // Uint32Array [1, 0, 2, 3, 0, 1, 1, 3, 4] (refs 1 | 0, 2 | 3; starts 0, 1, 1, 3, 4)
 * ```
 */
export function pageReferences(
  shape: AttentionShape,
  paged: PagedKv,
  blockTable: ArrayLike<number>,
): Uint32Array {
  const columns = tableColumns(shape, paged.pageSize);
  const entries = shape.batch * columns;
  const table = compactBlockTable(shape, paged.pageSize, blockTable);
  const words = new Uint32Array(entries + paged.pages + 1);
  const starts = words.subarray(entries);
  for (const page of table) starts[page + 1]++;
  for (let g = 0; g < paged.pages; g++) starts[g + 1] += starts[g];
  // Entries in ascending order, each at its page's next free slot.
  const next = starts.slice(0, paged.pages);
  table.forEach((page, entry) => words[next[page]++] = entry);
  return words;
}

/**
 * Sums contiguous rows `[B, Hkv, Nk, width]` into a pool `[pages, Hkv, pageSize, width]` by the
 * table, the inverse of `gatherPages` for gradients: row `p % pageSize` of page
 * `table[b, floor(p / pageSize)]` gets the sum of every (batch, position) that names it, and
 * rows no position names are 0. Float64 by default: what a paged backward pass's dK and dV are
 * compared with, from the reference's gradients of the gathered K and V.
 * @param rows `[B, Hkv, Nk, width]`
 * @param blockTable `[B, maxPages]` (checked by `checkPagedInputs`)
 * @param o the call's shape, the page size, the pool's page count and the row width
 * @returns a new Float64Array `[pages, Hkv, pageSize, width]`
 * @example
 * ```ts
 * import { scatterPages } from "./paged_kv.ts";
 * const shape = { batch: 2, headsQ: 1, headsKV: 1, seqLen: 1, headDim: 1, kvSeqLen: 2 };
 * // Both sequences' two positions are page 1.
 * scatterPages([1, 2, 10, 20], [1, 1], { shape, pageSize: 2, pages: 2, width: 1 });
 * // Float64Array [0, 0, 11, 22]
 * ```
 */
export function scatterPages(
  rows: ArrayLike<number>,
  blockTable: ArrayLike<number>,
  o: { shape: AttentionShape; pageSize: number; pages: number; width: number },
): Float64Array {
  const out = new Float64Array(o.pages * o.shape.headsKV * o.pageSize * o.width);
  forEachReadRange(o.shape, o.pageSize, blockTable, o.width, (from, to, source) => {
    for (let i = from; i < to; i++) out[i] += rows[source + i - from];
  });
  return out;
}
