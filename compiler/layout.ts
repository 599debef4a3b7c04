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
 * - `sorted`: positions in bucket order of one hashBucket round (a stable sort of the codes,
 *   made on the GPU per head): a bucket's queries, and its keys, are each one run of indices.
 *   Only the kernel knows the positions; the compiler sees every tile as spanning all of N.
 * @module
 */
import { z } from "zod";
import { assert } from "../core/errors.ts";
import type { Expect, SameType } from "../core/same_type.ts";

export const LayoutSchema = z.discriminatedUnion("kind", [
  z.object({ kind: z.literal("identity") }),
  z.object({ kind: z.literal("residue"), period: z.number().int().min(2) }),
  z.object({ kind: z.literal("gather"), tokens: z.array(z.number().int()) }),
  /** Keys that are lowRank landmarks: index i is landmark i of `count` (not a position). */
  z.object({
    kind: z.literal("landmarks"),
    rank: z.number().int(),
    segment: z.number().int(),
    count: z.number().int(),
  }),
  /** Bucket order of hashBucket round `round` (codes and order in the `hash` buffer). */
  z.object({
    kind: z.literal("sorted"),
    side: z.enum(["q", "k"]),
    buckets: z.number().int(),
    seed: z.number().int(),
    round: z.number().int(),
  }),
]);
/**
 * The order a component walks query or key positions in (the module comment says what each
 * kind is); written out (checked against `LayoutSchema` below) so that the documentation can
 * show it.
 */
export type Layout =
  | { kind: "identity" }
  /** Positions grouped by `pos mod period` (period >= 2), each class in increasing order. */
  | { kind: "residue"; period: number }
  /** Index i is `tokens[i]`. */
  | { kind: "gather"; tokens: number[] }
  /** Keys that are lowRank landmarks: index i is landmark i of `count` (not a position). */
  | { kind: "landmarks"; rank: number; segment: number; count: number }
  /** Bucket order of hashBucket round `round` (codes and order in the `hash` buffer). */
  | { kind: "sorted"; side: "q" | "k"; buckets: number; seed: number; round: number };

type _LayoutMatchesSchema = Expect<SameType<Layout, z.infer<typeof LayoutSchema>>>;

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
  return layout.kind === "gather"
    ? layout.tokens.length
    : layout.kind === "landmarks"
    ? layout.count
    : n;
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
      break;
    }
    case "landmarks":
      // Landmark indices: keys of their own, not sequence positions.
      for (let i = 0; i < layout.count; i++) out[i] = i;
      break;
    case "sorted":
      // Known only on the GPU, after the hash pre-pass.
      out.fill(-1);
  }
  return out;
}

/**
 * The span of any run of consecutive layout indices `[start, end)`: one tile, or several tiles
 * taken together. O(1) for identity and residue layouts and for sorted gathered tokens (what
 * `global` gives), O(end - start) for unsorted ones.
 * @param layout the layout
 * @param n N
 * @returns a function of `start` and `end` (`start < end <= layoutCount`) giving the span
 * @example
 * ```ts
 * import { indexSpan } from "./layout.ts";
 * const span = indexSpan({ kind: "residue", period: 4 }, 16); // 0, 4, 8, 12, 1, 5, 9, 13, ...
 * span(2, 6); // { lo: 1, hi: 12, contiguous: false, classLo: 0, classHi: 1 }: 8, 12, 1, 5
 * ```
 */
export function indexSpan(layout: Layout, n: number): (start: number, end: number) => TileSpan {
  if (layout.kind === "identity" || layout.kind === "landmarks") {
    return (start, end) => ({ lo: start, hi: end - 1, contiguous: true, classLo: -1, classHi: -1 });
  }
  if (layout.kind === "sorted") {
    // Any index may hold any position.
    return () => ({ lo: 0, hi: n - 1, contiguous: false, classLo: -1, classHi: -1 });
  }
  const box = layout.kind === "residue" ? residueBox(layout.period, n) : gatherBox(layout);
  return (start, end) => {
    const { lo, hi, classLo, classHi } = box(start, end);
    return { lo, hi, contiguous: hi - lo + 1 === end - start, classLo, classHi };
  };
}

/**
 * One `TileSpan` per tile of `tileSize` consecutive layout indices (`indexSpan` of each tile).
 * @param layout the layout
 * @param n N
 * @param tileSize indices per tile
 * @returns spans, tile 0 first
 * @example
 * ```ts
 * import { tileSpans } from "./layout.ts";
 * tileSpans({ kind: "identity" }, 100, 64)[1]; // { lo: 64, hi: 99, contiguous: true, ... }
 * tileSpans({ kind: "residue", period: 3 }, 7, 4)[0]; // { lo: 0, hi: 6, contiguous: false, classLo: 0, classHi: 1 }
 * ```
 */
export function tileSpans(layout: Layout, n: number, tileSize: number): readonly TileSpan[] {
  // Identity tiles depend on N and the tile size only; every component and layout trial of a
  // compile asks for them (thousands of spans at N = 65536), so they are kept, frozen.
  if (layout.kind === "identity") {
    const key = `${n}/${tileSize}`;
    let spans = identitySpans.get(key);
    if (!spans) {
      if (identitySpans.size >= 16) identitySpans.clear();
      spans = Object.freeze(buildTileSpans(layout, n, tileSize).map((s) => Object.freeze(s)));
      identitySpans.set(key, spans);
    }
    return spans;
  }
  return buildTileSpans(layout, n, tileSize);
}

const identitySpans = new Map<string, readonly TileSpan[]>();

function buildTileSpans(layout: Layout, n: number, tileSize: number): TileSpan[] {
  const count = layoutCount(layout, n);
  const span = indexSpan(layout, n);
  const spans: TileSpan[] = [];
  for (let start = 0; start < count; start += tileSize) {
    spans.push(span(start, Math.min(count, start + tileSize)));
  }
  return spans;
}

/** Box and classes of the residue-layout indices `[start, end)`, in O(1). */
function residueBox(period: number, n: number) {
  const g = residueGeometry(period, n);
  const position = (index: number, c: number) => c + (index - g.classStart(c)) * period;
  // The last position of class c: its length - 1 steps of P after c.
  const lastOfClass = (c: number) => c + ((c < g.longCount ? g.long : g.short) - 1) * period;
  return (start: number, end: number) => {
    const classLo = g.classOf(start), classHi = g.classOf(end - 1);
    if (classLo === classHi) {
      return { lo: position(start, classLo), hi: position(end - 1, classHi), classLo, classHi };
    }
    // Several classes: the first is walked from `start` to its end, later ones from their
    // first position `c`, the last one up to `end - 1`. Of the classes walked to their end
    // (classLo .. classHi - 1), the last long one and the last one end highest.
    let hi = Math.max(position(end - 1, classHi), lastOfClass(classHi - 1));
    if (classLo < g.longCount) hi = Math.max(hi, lastOfClass(Math.min(classHi, g.longCount) - 1));
    return { lo: Math.min(position(start, classLo), classLo + 1), hi, classLo, classHi };
  };
}

/**
 * Whether positions only grow along the layout (identity, and gathered tokens in ascending
 * order as `global` gives them): then any run of indices spans from its first to its last.
 * @param layout the layout
 * @returns true for identity and ascending gathers
 * @example
 * ```ts
 * import { layoutIncreasing } from "./layout.ts";
 * layoutIncreasing({ kind: "gather", tokens: [3, 1] }); // false
 * ```
 */
export function layoutIncreasing(layout: Layout): boolean {
  return layout.kind === "identity" ||
    (layout.kind === "gather" &&
      layout.tokens.every((t, i) => i === 0 || layout.tokens[i - 1] < t));
}

/** Box of the gathered indices `[start, end)`: the ends when the tokens are ascending. */
function gatherBox(layout: Extract<Layout, { kind: "gather" }>) {
  const tokens = layout.tokens, sorted = layoutIncreasing(layout);
  return (start: number, end: number) => {
    if (sorted) return { lo: tokens[start], hi: tokens[end - 1], classLo: -1, classHi: -1 };
    let lo = Infinity, hi = -Infinity;
    for (let i = start; i < end; i++) {
      lo = Math.min(lo, tokens[i]);
      hi = Math.max(hi, tokens[i]);
    }
    return { lo, hi, classLo: -1, classHi: -1 };
  };
}

/** Short text for summaries: `identity`, `residue(16)`, `gather(64)`. */
export function layoutLabel(layout: Layout): string {
  return layout.kind === "identity"
    ? "identity"
    : layout.kind === "residue"
    ? `residue(${layout.period})`
    : layout.kind === "landmarks"
    ? `landmarks(${layout.count} of lowRank(${layout.rank}))`
    : layout.kind === "sorted"
    ? `bucket order (hashBucket ${layout.buckets}, seed ${layout.seed}, round ${layout.round})`
    : `gather(${layout.tokens.length})`;
}
