/**
 * Tile classification by interval arithmetic: for a block of queries and a block of keys, is an
 * atom's allowed set empty, full or partial there? Every answer is sound for any subset of the
 * span's box, so it holds for identity, residue and gathered tiles alike; residue layouts add
 * class ranges, which make `stride` exact. No element is tested here.
 * @module
 */
import { type Atom, Coverage } from "./atoms.ts";
import type { Layout, TileSpan } from "./layout.ts";
import type { RandomTables } from "./random_table.ts";

/** What the classifier needs besides the two spans. */
export interface ClassifyContext {
  n: number;
  qLayout: Layout;
  kLayout: Layout;
  random: RandomTables;
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
      return byDifference(dMin, dMax, [[0, Infinity]]);
    case "window":
      return byDifference(dMin, dMax, [[-atom.right, atom.left]]);
    case "ring": {
      const r = atom.radius, n = ctx.n;
      if (2 * r + 1 >= n) return Coverage.Full;
      return byDifference(dMin, dMax, [[-(n - 1), -(n - r)], [-r, r], [n - r, n - 1]]);
    }
    case "stride":
      return classifyStride(atom.period, qs, ks, dMin, dMax, ctx);
    case "globalRows":
      return classifyMembership(atom.tokens, qs, ctx.qLayout);
    case "globalCols":
      return classifyMembership(atom.tokens, ks, ctx.kLayout);
    case "random":
      return classifyRandom(atom, qs, ks, ctx);
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
  for (const atom of atoms) {
    const c = classifyAtom(atom, qs, ks, ctx);
    if (c === Coverage.Empty) return Coverage.Empty;
    if (c === Coverage.Partial) all = Coverage.Partial;
  }
  return all;
}

/** `allowed` is a list of disjoint, non-adjacent intervals of `d = q - k`. */
function byDifference(dMin: number, dMax: number, allowed: [number, number][]): Coverage {
  let touches = false;
  for (const [a, b] of allowed) {
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
  const sameResidue = ctx.qLayout.kind === "residue" && ctx.kLayout.kind === "residue" &&
    ctx.qLayout.period === period && ctx.kLayout.period === period;
  if (sameResidue) {
    if (qs.classHi < ks.classLo || ks.classHi < qs.classLo) return Coverage.Empty;
    if (qs.classLo === qs.classHi && ks.classLo === ks.classHi) return Coverage.Full;
    return Coverage.Partial;
  }
  // Is there a multiple of P in [dMin, dMax]?
  const first = Math.ceil(dMin / period) * period;
  if (first > dMax) return Coverage.Empty;
  return dMin === dMax ? Coverage.Full : Coverage.Partial;
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
