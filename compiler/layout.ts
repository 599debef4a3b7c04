/**
 * Layouts: the order in which a component walks query or key positions, so that its allowed
 * set becomes block-dense. A layout is pure index arithmetic over the natural order; tensors are
 * never copied or permuted.
 *
 * - `identity`: index i is position i (windows, rings, causal, random blocks).
 * - `residue(P)`: positions grouped by `pos mod P`, each class in increasing order:
 *   `0, P, 2P, ..., 1, 1+P, ...`. `stride(P)` allows exactly the pairs in the same class, so in
 *   this order it is block-diagonal and costs ~1/P of dense.
 * - `gather(tokens)`: index i is `tokens[i]` (the rows or columns of `global`).
 * @module
 */
import { z } from "zod";
import { assert } from "../dsl/errors.ts";

export const LayoutSchema = z.discriminatedUnion("kind", [
  z.object({ kind: z.literal("identity") }),
  z.object({ kind: z.literal("residue"), period: z.number().int().min(2) }),
  z.object({ kind: z.literal("gather"), tokens: z.array(z.number().int()) }),
]);
export type Layout = z.infer<typeof LayoutSchema>;

/**
 * What the tile classifier knows about one tile of a layout: the smallest box of positions
 * holding it, and for residue layouts which classes it spans.
 */
export interface TileSpan {
  /** Smallest and largest position in the tile. */
  lo: number;
  hi: number;
  /** True when the tile holds every position in `[lo, hi]`. */
  contiguous: boolean;
  /** Residue layouts: first and last class in the tile (contiguous classes); else -1. */
  classLo: number;
  classHi: number;
}

/**
 * Number of indices the layout walks.
 * @param layout the layout
 * @param n sequence length N
 * @returns N, or the number of gathered tokens
 * @example
 * ```ts
 * import { layoutCount } from "./layout.ts";
 * layoutCount({ kind: "gather", tokens: [0, 5] }, 100); // 2
 * ```
 */
export function layoutCount(layout: Layout, n: number): number {
  return layout.kind === "gather" ? layout.tokens.length : n;
}

/**
 * Residue layout geometry for N = a·P + b: classes `c < b` hold `a + 1` positions, the rest `a`.
 * @param period P
 * @param n N
 * @returns the long-class length `a + 1`, the number of long classes `b`, and the index where
 *   each class starts
 * @example
 * ```ts
 * import { residueGeometry } from "./layout.ts";
 * residueGeometry(3, 10).classStart(1); // 4: class 0 holds 0, 3, 6, 9
 * ```
 */
export function residueGeometry(period: number, n: number) {
  const short = Math.floor(n / period);
  const longCount = n % period;
  const long = short + 1;
  return {
    short,
    long,
    longCount,
    classStart: (c: number) =>
      c <= longCount ? c * long : longCount * long + (c - longCount) * short,
    classOf: (index: number) =>
      index < longCount * long
        ? Math.floor(index / long)
        : longCount + Math.floor((index - longCount * long) / Math.max(short, 1)),
  };
}

/**
 * Position of every index of the layout, in layout order.
 * @param layout the layout
 * @param n N
 * @returns an array of positions (length `layoutCount`)
 * @example
 * ```ts
 * import { layoutPositions } from "./layout.ts";
 * layoutPositions({ kind: "residue", period: 3 }, 7); // [0, 3, 6, 1, 4, 2, 5]
 * ```
 */
export function layoutPositions(layout: Layout, n: number): Int32Array {
  const out = new Int32Array(layoutCount(layout, n));
  switch (layout.kind) {
    case "identity":
      for (let i = 0; i < n; i++) out[i] = i;
      break;
    case "gather":
      out.set(layout.tokens);
      break;
    case "residue": {
      let i = 0;
      for (let c = 0; c < layout.period && c < n; c++) {
        for (let p = c; p < n; p += layout.period) out[i++] = p;
      }
      assert(i === n, "residue layout must visit every position once");
    }
  }
  return out;
}

/**
 * One `TileSpan` per tile of `tileSize` consecutive layout indices. O(N) work.
 * @param layout the layout
 * @param n N
 * @param tileSize indices per tile
 * @returns spans, tile 0 first
 * @example
 * ```ts
 * import { tileSpans } from "./layout.ts";
 * tileSpans({ kind: "identity" }, 100, 64)[1]; // { lo: 64, hi: 99, contiguous: true, ... }
 * ```
 */
export function tileSpans(layout: Layout, n: number, tileSize: number): TileSpan[] {
  const positions = layoutPositions(layout, n);
  const spans: TileSpan[] = [];
  const geometry = layout.kind === "residue" ? residueGeometry(layout.period, n) : undefined;
  for (let start = 0; start < positions.length; start += tileSize) {
    const end = Math.min(positions.length, start + tileSize);
    let lo = Infinity, hi = -Infinity;
    for (let i = start; i < end; i++) {
      lo = Math.min(lo, positions[i]);
      hi = Math.max(hi, positions[i]);
    }
    spans.push({
      lo,
      hi,
      contiguous: hi - lo + 1 === end - start,
      classLo: geometry ? geometry.classOf(start) : -1,
      classHi: geometry ? geometry.classOf(end - 1) : -1,
    });
  }
  return spans;
}

/** Short text for summaries: `identity`, `residue(16)`, `gather(64)`. */
export function layoutLabel(layout: Layout): string {
  return layout.kind === "identity"
    ? "identity"
    : layout.kind === "residue"
    ? `residue(${layout.period})`
    : `gather(${layout.tokens.length})`;
}
