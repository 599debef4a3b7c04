/**
 * Tile classification by interval arithmetic: for a block of queries and a block of keys, is an
 * atom's allowed set empty, full or partial there? Every answer is sound for any subset of the
 * span's box, so it holds for identity, residue and gathered tiles alike; residue layouts add
 * class ranges, which make `stride` exact. No element is tested here.
 * @module
 */
import { type Atom, Coverage } from "./atoms.ts";
import type { Layout, TileSpan } from "./layout.ts";
import { classifyPredicate, type HeadBatchRange } from "./predicate_classify.ts";
import type { RandomTables } from "./random_table.ts";

/** What the classifier needs besides the two spans. */
export interface ClassifyContext {
  n: number;
  qLayout: Layout;
  kLayout: Layout;
  random: RandomTables;
  /** Heads and batches the schedule serves (predicates may read `h` and `b`); default any. */
  domain?: HeadBatchRange;
}

/** Random-block tiles spanning more query blocks than this are called PARTIAL unexamined. */
const MAX_RANDOM_QUERY_BLOCKS = 64;

/**
 * Coverage of one atom over the block `q in qs, k in ks`.
 * @param atom the rule
 * @param qs the query tile's span
 * @param ks the key tile's span
 * @param ctx N, the layouts and the random tables
 * @returns Empty, Full or Partial
 * @example
 * ```ts
 * import { classifyAtom } from "./classify.ts";
 * import { RandomTables } from "./random_table.ts";
 * const span = (lo: number, hi: number) => ({ lo, hi, contiguous: true, classLo: -1, classHi: -1 });
 * const ctx = { n: 128, qLayout: { kind: "identity" as const }, kLayout: { kind: "identity" as const }, random: new RandomTables(128) };
 * classifyAtom({ kind: "causal" }, span(64, 127), span(0, 63), ctx); // Coverage.Full
 * ```
 */
export function classifyAtom(
  atom: Atom,
  qs: TileSpan,
  ks: TileSpan,
  ctx: ClassifyContext,
): Coverage {
  const dMin = qs.lo - ks.hi;
  const dMax = qs.hi - ks.lo;
  switch (atom.kind) {
    case "dense":
      return Coverage.Full;
    case "causal":
    case "window":
    case "ring": {
      const allowed = differenceIntervals(atom, ctx.n);
      return allowed ? byDifference(dMin, dMax, allowed) : Coverage.Full;
    }
    case "stride":
      return classifyStride(atom.period, qs, ks, dMin, dMax, ctx);
    case "globalRows":
      return classifyMembership(atom.tokens, qs, ctx.qLayout);
    case "globalCols":
      return classifyMembership(atom.tokens, ks, ctx.kLayout);
    case "random":
      return classifyRandom(atom, qs, ks, ctx);
    case "lowRank":
      // Over landmark keys (landmark_mask.ts classifies those components); no token pair.
      return Coverage.Full;
    case "hashRound":
      // Depends on the data: only the kernel, with the codes, can tell.
      return Coverage.Partial;
    case "predicate":
      return classifyPredicate(atom, qs, ks, ctx);
  }
}

/**
 * Coverage of a conjunction: Empty if any atom is, Full if all are.
 * @param atoms the conjunction (a component's atoms)
 * @param qs query span
 * @param ks key span
 * @param ctx classifier context
 * @returns the combined coverage
 * @example
 * ```ts
 * import { classifyAll } from "./classify.ts";
 * import { RandomTables } from "./random_table.ts";
 * const span = (lo: number, hi: number) => ({ lo, hi, contiguous: true, classLo: -1, classHi: -1 });
 * const ctx = { n: 128, qLayout: { kind: "identity" as const }, kLayout: { kind: "identity" as const }, random: new RandomTables(128) };
 * classifyAll([{ kind: "causal" }, { kind: "window", left: 8, right: 0 }], span(64, 127), span(0, 63), ctx); // Coverage.Partial
 * ```
 */
export function classifyAll(
  atoms: readonly Atom[],
  qs: TileSpan,
  ks: TileSpan,
  ctx: ClassifyContext,
): Coverage {
  let all = Coverage.Full;
  for (let i = 0; i < atoms.length; i++) {
    const c = classifyAtom(atoms[i], qs, ks, ctx);
    if (c === Coverage.Empty) return Coverage.Empty;
    if (c === Coverage.Partial) all = Coverage.Partial;
  }
  return all;
}

/**
 * Several consecutive key tiles taken together: the span of all their indices (`indexSpan`),
 * the first and the last tile's own spans, and whether tile boxes only move right from the
 * first tile to the last (identity and sorted gathered layouts, or inside one residue class).
 */
export interface KeyRangeSpan extends TileSpan {
  first: TileSpan;
  last: TileSpan;
  increasing: boolean;
}

/**
 * Coverage of a conjunction on every key tile of a range at once: EMPTY, FULL or PARTIAL when
 * every tile of the range, classified on its own by `classifyAll`, gets that answer; undefined
 * when the tiles may differ (split the range). EMPTY and FULL follow from `classifyAll` on the
 * merged span, because a tile's box lies inside it; PARTIAL needs each PARTIAL atom to be so on
 * every tile (`partialOnEveryTile`).
 * @param atoms the conjunction (a component's atoms, or one exclusion)
 * @param qs query span
 * @param ks the key tiles' span
 * @param ctx classifier context
 * @returns the coverage every tile shares, or undefined
 * @example
 * ```ts
 * import { classifyRange } from "./classify.ts";
 * import { RandomTables } from "./random_table.ts";
 * const span = (lo: number, hi: number) => ({ lo, hi, contiguous: true, classLo: -1, classHi: -1 });
 * const tiles = (lo: number, hi: number) => // identity key tiles of 32 from lo to hi
 *   ({ ...span(lo, hi), first: span(lo, lo + 31), last: span(hi - 31, hi), increasing: true });
 * const ctx = { n: 4096, qLayout: { kind: "identity" as const }, kLayout: { kind: "identity" as const }, random: new RandomTables(4096) };
 * classifyRange([{ kind: "stride", period: 16 }], span(0, 63), tiles(0, 4095), ctx); // Coverage.Partial
 * classifyRange([{ kind: "causal" }], span(0, 63), tiles(0, 4095), ctx); // undefined: split it
 * // Key tiles 64..95 and 96..127 both straddle the diagonal of queries 64..127:
 * classifyRange([{ kind: "causal" }], span(64, 127), tiles(64, 127), ctx); // Coverage.Partial
 * ```
 */
export function classifyRange(
  atoms: readonly Atom[],
  qs: TileSpan,
  ks: KeyRangeSpan,
  ctx: ClassifyContext,
): Coverage | undefined {
  let all: Coverage | undefined = Coverage.Full;
  for (let i = 0; i < atoms.length; i++) {
    const c = classifyAtom(atoms[i], qs, ks, ctx);
    if (c === Coverage.Empty) return Coverage.Empty;
    if (c === Coverage.Partial && all !== undefined) {
      all = partialOnEveryTile(atoms[i], qs, ks, ctx) ? Coverage.Partial : undefined;
    }
  }
  return all;
}

/**
 * Whether `classifyAtom` calls every key tile of the range `ks` PARTIAL for the query span `qs`.
 * Only answers that hold for any such tile count, so false means "not known".
 */
function partialOnEveryTile(
  atom: Atom,
  qs: TileSpan,
  ks: KeyRangeSpan,
  ctx: ClassifyContext,
): boolean {
  switch (atom.kind) {
    case "causal":
    case "window":
    case "ring":
      return ks.increasing && touchesWithoutHolding(differenceIntervals(atom, ctx.n)!, qs, ks);
    case "globalRows": // the answer depends on the query span alone
      return classifyMembership(atom.tokens, qs, ctx.qLayout) === Coverage.Partial;
    case "random": {
      const s = atom.blockSize;
      return Math.floor(qs.hi / s) - Math.floor(qs.lo / s) >= MAX_RANDOM_QUERY_BLOCKS;
    }
    case "stride": {
      if (atom.period === 1) return false;
      if (sameResidue(atom.period, ctx)) {
        // Every tile's classes lie in the query tile's, which are several: never FULL.
        return qs.classLo < qs.classHi && qs.classLo <= ks.classLo && ks.classHi <= qs.classHi;
      }
      // Every tile's difference range is at least as wide as the query tile's: P wide, it holds
      // a multiple of P; wider than one point, it is not FULL.
      if (qs.hi - qs.lo >= atom.period - 1) return true;
      // Moving right, every tile's difference range holds [qs.lo - first.hi, qs.hi - last.lo]:
      // if that holds a multiple of P and more than one point, so does each tile's.
      const dMin = qs.lo - ks.first.hi, dMax = qs.hi - ks.last.lo;
      return ks.increasing && dMin < dMax && Math.ceil(dMin / atom.period) * atom.period <= dMax;
    }
    default:
      return false;
  }
}

/**
 * For atoms allowed on intervals of the difference `d = q - k` (`byDifference`), over tiles
 * moving right: a tile's difference range `[qs.lo - hi, qs.hi - lo]` slides left, both ends
 * at once. So if the first and the last tile touch one allowed interval `[a, b]`, every tile
 * between does; and none lies inside it (nor, touching it, inside another) if the first one
 * reaches below `a`, the last one above `b`, or the query tile alone is wider than `b - a`.
 */
function touchesWithoutHolding(
  allowed: readonly (readonly [number, number])[],
  qs: TileSpan,
  ks: KeyRangeSpan,
): boolean {
  const firstMin = qs.lo - ks.first.hi, firstMax = qs.hi - ks.first.lo;
  const lastMin = qs.lo - ks.last.hi, lastMax = qs.hi - ks.last.lo;
  for (let i = 0; i < allowed.length; i++) {
    const a = allowed[i][0], b = allowed[i][1];
    const touches = firstMax >= a && firstMin <= b && lastMax >= a && lastMin <= b;
    if (touches && (firstMin < a || lastMax > b || qs.hi - qs.lo > b - a)) return true;
  }
  return false;
}

/**
 * The intervals of `d = q - k` that causal, window and ring allow (disjoint, not adjacent,
 * ascending); undefined when every difference is allowed.
 * @param atom a causal, window or ring atom
 * @param n N
 * @returns the intervals, or undefined
 * @example
 * ```ts
 * import { differenceIntervals } from "./classify.ts";
 * differenceIntervals({ kind: "ring", radius: 2 }, 10); // [[-9, -8], [-2, 2], [8, 9]]
 * ```
 */
export function differenceIntervals(
  atom: Extract<Atom, { kind: "causal" | "window" | "ring" }>,
  n: number,
): readonly (readonly [number, number])[] | undefined {
  // Asked for every tile the planner classifies: built once per atom and N.
  const known = differences.get(atom);
  if (known && known.n === n) return known.intervals;
  const intervals = buildDifferenceIntervals(atom, n);
  differences.set(atom, { n, intervals });
  return intervals;
}

const differences = new WeakMap<
  Atom,
  { n: number; intervals: readonly (readonly [number, number])[] | undefined }
>();

function buildDifferenceIntervals(
  atom: Extract<Atom, { kind: "causal" | "window" | "ring" }>,
  n: number,
): [number, number][] | undefined {
  switch (atom.kind) {
    case "causal":
      return [[0, Infinity]];
    case "window":
      return [[-atom.right, atom.left]];
    case "ring": {
      const r = atom.radius;
      if (2 * r + 1 >= n) return undefined;
      return [[-(n - 1), -(n - r)], [-r, r], [n - r, n - 1]];
    }
  }
}

/** `allowed` is a list of disjoint, non-adjacent intervals of `d = q - k`. */
function byDifference(
  dMin: number,
  dMax: number,
  allowed: readonly (readonly [number, number])[],
): Coverage {
  let touches = false;
  for (let i = 0; i < allowed.length; i++) {
    const a = allowed[i][0], b = allowed[i][1];
    if (dMin >= a && dMax <= b) return Coverage.Full;
    if (dMax >= a && dMin <= b) touches = true;
  }
  return touches ? Coverage.Partial : Coverage.Empty;
}

function classifyStride(
  period: number,
  qs: TileSpan,
  ks: TileSpan,
  dMin: number,
  dMax: number,
  ctx: ClassifyContext,
): Coverage {
  if (period === 1) return Coverage.Full;
  if (sameResidue(period, ctx)) {
    if (qs.classHi < ks.classLo || ks.classHi < qs.classLo) return Coverage.Empty;
    if (qs.classLo === qs.classHi && ks.classLo === ks.classHi) return Coverage.Full;
    return Coverage.Partial;
  }
  // Is there a multiple of P in [dMin, dMax]?
  const first = Math.ceil(dMin / period) * period;
  if (first > dMax) return Coverage.Empty;
  return dMin === dMax ? Coverage.Full : Coverage.Partial;
}

/** Both layouts walk the residue classes of this period: stride is block-diagonal there. */
function sameResidue(period: number, ctx: ClassifyContext): boolean {
  return ctx.qLayout.kind === "residue" && ctx.kLayout.kind === "residue" &&
    ctx.qLayout.period === period && ctx.kLayout.period === period;
}

function classifyMembership(tokens: readonly number[], span: TileSpan, layout: Layout): Coverage {
  if (layout.kind === "gather" && layout.tokens === tokens) return Coverage.Full;
  const inBox = countInRange(tokens, span.lo, span.hi);
  if (inBox === 0) return Coverage.Empty;
  return inBox === span.hi - span.lo + 1 ? Coverage.Full : Coverage.Partial;
}

/** Number of sorted `tokens` in `[lo, hi]`. */
export function countInRange(tokens: readonly number[], lo: number, hi: number): number {
  return lowerBound(tokens, hi + 1) - lowerBound(tokens, lo);
}

function lowerBound(sorted: readonly number[], value: number): number {
  let a = 0, b = sorted.length;
  while (a < b) {
    const mid = (a + b) >> 1;
    if (sorted[mid] < value) a = mid + 1;
    else b = mid;
  }
  return a;
}

function classifyRandom(
  atom: Extract<Atom, { kind: "random" }>,
  qs: TileSpan,
  ks: TileSpan,
  ctx: ClassifyContext,
): Coverage {
  const s = atom.blockSize;
  const qb0 = Math.floor(qs.lo / s), qb1 = Math.floor(qs.hi / s);
  const kb0 = Math.floor(ks.lo / s), kb1 = Math.floor(ks.hi / s);
  if (qb1 - qb0 >= MAX_RANDOM_QUERY_BLOCKS) return Coverage.Partial;
  const table = ctx.random.get(atom);
  let anyFull = false, anyPartial = false, anyEmpty = false;
  for (let qb = qb0; qb <= qb1; qb++) {
    const hits = countInRange(table.drawnSorted(qb), kb0, kb1);
    if (hits === 0) anyEmpty = true;
    else if (hits === kb1 - kb0 + 1) anyFull = true;
    else anyPartial = true;
  }
  if (!anyFull && !anyPartial) return Coverage.Empty;
  return anyFull && !anyPartial && !anyEmpty ? Coverage.Full : Coverage.Partial;
}
