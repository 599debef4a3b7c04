/**
 * Where a kernel finds a row of K or V. Contiguous K `[B, Hkv, Nk, D]` holds key/value head
 * `kvHead` (batch · Hkv + head) at position `p` in row `kvHead * Nk + p`; paged K
 * `[pages, Hkv, pageSize, D]` (DESIGN §1) holds it in page `blockTable[batch, p / pageSize]`,
 * row `p % pageSize` of that head's block. A paged kernel asks one WGSL function, `kvRow`, for
 * every row of K or V it reads (the attention kernels' tile loads and edge pairs, the lowRank
 * pooling, the hashBucket codes); contiguous kernels keep their own arithmetic, a base per
 * head plus the position, so their WGSL is what it would be without paging. Only the address
 * changes, never the order of the arithmetic, so a paged call gives the contiguous call's bits.
 * @module
 */
import type { ShaderModule } from "./shader_module.ts";

/** What a kernel reading K and V through the block table is compiled with. */
export interface PagedRows {
  /** Key positions per page (a power of two: the division and modulo are a shift and a mask). */
  pageSize: number;
  /** The block table's row length as uploaded, `ceil(N / pageSize)`. */
  columns: number;
  /** Hkv: each page holds `pageSize` rows of every key/value head. */
  headsKV: number;
  /** The block table's binding in this kernel (the kernel plan binds it last). */
  binding: number;
}

/**
 * Declares the block table's binding and `fn kvRow(kvHead: u32, position: u32) -> u32`: the
 * row index of key/value head `kvHead` (batch · Hkv + head, counted as contiguous K counts
 * them) at key position `position < N`, in rows of D (K) or Dv (V) values, so that vec4 `d` of
 * the row is `kIn[kvRow(kvHead, position) * D4 + d]` (V: `* DV4`). The pool's page count and the
 * table's entries are not in the text: a grown pool or a new table reuses the pipeline.
 * @param m the module
 * @param paged the page size, table columns, Hkv and the table's binding
 * @returns the function's name
 * @example
 * ```ts
 * import { ShaderModule } from "./shader_module.ts";
 * import { declareKvRow } from "./kv_row_wgsl.ts";
 * const m = new ShaderModule();
 * declareKvRow(m, { pageSize: 16, columns: 8, headsKV: 2, binding: 7 }); // "kvRow"
 * ```
 */
export function declareKvRow(m: ShaderModule, paged: PagedRows): string {
  m.declare(
    "blockTable",
    `
@group(0) @binding(${paged.binding}) var<storage, read> blockTable: array<u32>; // [B, TABLE_COLUMNS]`,
  );
  return m.declare(
    "kvRow",
    `
// Paged K and V (DESIGN §1): pages [pages, Hkv, PAGE_SIZE, D] (V: Dv), and blockTable[b, c]
// is the page holding positions c * PAGE_SIZE .. c * PAGE_SIZE + PAGE_SIZE - 1 of batch b.
const PAGE_SIZE = ${paged.pageSize}u;
const PAGE_HEADS = ${paged.headsKV}u;     // Hkv: a page holds PAGE_SIZE rows of every head
const TABLE_COLUMNS = ${paged.columns}u;  // ceil(N / PAGE_SIZE): pages per sequence

// Row of key/value head kvHead (batch * Hkv + head) at a position < N, in rows of D (K) or
// Dv (V) values: K's vec4 d of it is kIn[kvRow(kvHead, position) * D4 + d].
fn kvRow(kvHead: u32, position: u32) -> u32 {
  let page = blockTable[(kvHead / PAGE_HEADS) * TABLE_COLUMNS + position / PAGE_SIZE];
  return (page * PAGE_HEADS + kvHead % PAGE_HEADS) * PAGE_SIZE + position % PAGE_SIZE;
}`,
  );
}

/**
 * The vec4 index an attention kernel reads K or V at: vec4 `column` of the row at key position
 * `position` of the workgroup's key/value head. Contiguous: `kvBase + position * D4 + column`
 * (V of its own width: `vBase`, `DV4`), with `position` written as the caller gives it
 * (parenthesised where it is a sum); paged: `kvRow(kvHead, position) * D4 + column`.
 * @param paged whether the kernel reads K and V through the block table
 * @param position the key position, a u32 expression
 * @param column the vec4 within the row
 * @param width `D4` (K, and V as wide as K) or `DV4` (V of its own width)
 * @returns the WGSL expression
 * @example
 * ```ts
 * import { kvSource } from "./kv_row_wgsl.ts";
 * kvSource(false, "u32(k)", "i % D4"); // "kvBase + u32(k) * D4 + i % D4"
 * kvSource(true, "(kTileStart + j)", "i % D4"); // "kvRow(kvHead, kTileStart + j) * D4 + i % D4"
 * ```
 */
export function kvSource(
  paged: boolean,
  position: string,
  column: string,
  width: "D4" | "DV4" = "D4",
): string {
  if (paged) return `kvRow(kvHead, ${unwrapped(position)}) * ${width} + ${column}`;
  return `${width === "D4" ? "kvBase" : "vBase"} + ${position} * ${width} + ${column}`;
}

/** `(x)` as `x` where the outer parentheses enclose the whole expression; else unchanged. */
function unwrapped(expression: string): string {
  if (!expression.startsWith("(")) return expression;
  let depth = 0;
  for (let i = 0; i < expression.length; i++) {
    if (expression[i] === "(") depth++;
    else if (expression[i] === ")") depth--;
    if (depth === 0) return i === expression.length - 1 ? expression.slice(1, -1) : expression;
  }
  return expression;
}
