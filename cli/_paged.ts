/**
 * `deno task run --block-table`: paged K and V from `.npy` files (DESIGN §1). K
 * `[pages, Hkv, pageSize, D]` and V `[pages, Hkv, pageSize, Dv]` with a block table
 * `[B, maxPages]` of int32 or uint32 page indices; the key count Nk is not in any tensor's shape
 * (the pages hold up to `maxPages * pageSize` keys), so `--kv-seq-len` gives it.
 * @module
 */
import type { AttentionShape } from "../compiler/mod.ts";
import { ShapeError } from "../core/errors.ts";
import { checkPagedKv, gatherPages, type PagedKv, tableColumns } from "../core/paged_kv.ts";
import { sequenceSizes } from "../core/shape.ts";
import { readNpy } from "./npy.ts";
import { integerFlag, readFlagFile, type Tensor, UsageError } from "./_common.ts";

/** A block table as read: its `[B, maxPages]` shape and its entries. */
export interface BlockTable {
  shape: number[];
  data: Int32Array | Uint32Array;
}

/**
 * Reads `--block-table`: a 2-D int32 (`<i4`) or uint32 (`<u4`) `.npy` file.
 * @param path the file
 * @returns its shape and entries
 * @throws {UsageError} missing or unreadable file, another dtype, not 2-D
 * @example
 * ```ts ignore
 * import { readBlockTable } from "./_paged.ts";
 * const table = await readBlockTable("bt.npy");
 * ```
 */
export async function readBlockTable(path: string): Promise<BlockTable> {
  const bytes = await readFlagFile(path, "block-table");
  let array;
  try {
    array = readNpy(bytes);
  } catch (error) {
    throw new UsageError(
      `--block-table ${path}: ${(error as Error).message}; page indices are int32 ` +
        `(.astype(np.int32))`,
    );
  }
  if (array.dtype !== "i4" && array.dtype !== "u4") {
    throw new UsageError(
      `--block-table ${path} has dtype <${array.dtype}, expected int32 (<i4) or uint32 (<u4) ` +
        `page indices; convert with .astype(np.int32)`,
    );
  }
  if (array.shape.length !== 2) {
    throw new UsageError(
      `--block-table ${path} must be 2-D [B, maxPages], got [${array.shape.join(", ")}]`,
    );
  }
  return { shape: array.shape, data: array.data as Int32Array | Uint32Array };
}

/**
 * The shape and page layout paged tensors agree on: Q `[B, Hq, Nq, D]`, K
 * `[pages, Hkv, pageSize, D]`, V `[pages, Hkv, pageSize, Dv]`, the table `[B, maxPages]` and
 * Nk from `--kv-seq-len`. The table's entries are checked later, with the call (checkShape).
 * @throws {ShapeError} a disagreement, naming the tensor and the dimension, or a page size
 *   the kernels do not take; {UsageError} a table too short for `--kv-seq-len`
 */
export function pagedShapeOf(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  table: BlockTable,
  kvSeqLen: number,
): { shape: AttentionShape; paged: PagedKv } {
  const dims = (shape: readonly number[]) => `[${shape.join(", ")}]`;
  const layouts = {
    q: "[B, Hq, Nq, D]",
    k: "[pages, Hkv, pageSize, D]",
    v: "[pages, Hkv, pageSize, Dv]",
  };
  for (const [name, t] of [["q", q], ["k", k], ["v", v]] as const) {
    if (t.shape.length !== 4) {
      throw new ShapeError(
        `Bad shape: ${name} must be 4-D ${layouts[name]} with --block-table, got ${dims(t.shape)}`,
      );
    }
  }
  const disagree = (what: string, a: string, b: string) => {
    throw new ShapeError(
      `Bad shape: ${what} (${a}, ${b}; q ${layouts.q}, paged k ${layouts.k}, paged v ` +
        `${layouts.v}, block table [B, maxPages])`,
    );
  };
  const [batch, headsQ, seqLen, headDim] = q.shape;
  const [pages, headsKV, pageSize] = k.shape;
  if (k.shape[3] !== headDim) {
    disagree(
      `k headDim D is ${k.shape[3]} but q's is ${headDim}`,
      `q ${dims(q.shape)}`,
      `k ${dims(k.shape)}`,
    );
  }
  for (const axis of [0, 1, 2]) {
    if (v.shape[axis] !== k.shape[axis]) {
      const what = ["pages", "heads Hkv", "pageSize"][axis];
      disagree(
        `v ${what} is ${v.shape[axis]} but k's is ${k.shape[axis]}`,
        `k ${dims(k.shape)}`,
        `v ${dims(v.shape)}`,
      );
    }
  }
  if (table.shape[0] !== batch) {
    disagree(
      `block table batch B is ${table.shape[0]} but q's is ${batch}`,
      `q ${dims(q.shape)}`,
      `block table ${dims(table.shape)}`,
    );
  }
  const valueDim = v.shape[3];
  const shape: AttentionShape = {
    batch,
    headsQ,
    headsKV,
    seqLen,
    headDim,
    ...(kvSeqLen === seqLen ? {} : { kvSeqLen }),
    ...(valueDim === headDim ? {} : { valueDim }),
  };
  const columns = tableColumns(shape, pageSize);
  if (table.shape[1] < columns) {
    throw new UsageError(
      `--kv-seq-len ${kvSeqLen} spans ceil(${kvSeqLen} / ${pageSize}) = ${columns} pages, but ` +
        `the block table has ${table.shape[1]} per sequence: give the table's pages for every key`,
    );
  }
  const paged = { pageSize, pages };
  checkPagedKv(paged);
  return { shape, paged };
}

/**
 * K and V gathered out of their pages into `[B, Hkv, Nk, D]` and `[B, Hkv, Nk, Dv]`: what the
 * float64 reference of `--verify` takes.
 */
export function gatheredKv(
  shape: AttentionShape,
  paged: PagedKv,
  table: BlockTable,
  k: Tensor,
  v: Tensor,
): { k: Tensor; v: Tensor } {
  const { nk, d, dv } = sequenceSizes(shape);
  const gather = (t: Tensor, width: number): Tensor => ({
    shape: [shape.batch, shape.headsKV, nk, width],
    data: gatherPages(t.data, table.data, { shape, pageSize: paged.pageSize, width }),
  });
  return { k: gather(k, d), v: gather(v, dv) };
}

/**
 * `--kv-seq-len` with `--block-table`, both or neither.
 * @returns Nk for a paged call
 */
export function checkPagedFlags(
  values: Record<string, unknown>,
  tablePath: string | undefined,
): number | undefined {
  const kvSeqLen = integerFlag(values["kv-seq-len"] as string | undefined, "kv-seq-len", {
    min: 1,
  });
  if (tablePath === undefined) {
    if (kvSeqLen !== undefined) {
      throw new UsageError(
        "--kv-seq-len goes with --block-table (paged K and V); contiguous k and v give Nk " +
          "by their shape",
      );
    }
    return undefined;
  }
  if (kvSeqLen === undefined) {
    throw new UsageError(
      `--block-table needs --kv-seq-len: the pages hold up to maxPages * pageSize keys per ` +
        `sequence; say how many the sequences have`,
    );
  }
  return kvSeqLen;
}

/** What the kernels read K and V from, in one line. */
export function pagedLine(paged: PagedKv, path: string, table: BlockTable): string {
  return `K and V: ${paged.pages} pages of ${paged.pageSize} positions, read through ` +
    `--block-table ${path} [${table.shape.join(", ")}]`;
}
