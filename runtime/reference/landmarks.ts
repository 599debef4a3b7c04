/**
 * The reference's view of `lowRank` (DESIGN §2): pooled landmark rows in float64 and which
 * landmarks a query may see. A landmark is a key of its own, brought in only by `lowRank(m)`;
 * intersected with it, `causal` admits landmark j once its last row is `<= q` and `dense` is
 * neutral (rules over positions are refused beforehand). A union member without a lowRank (even
 * `dense`, which allows every token key) brings no landmarks.
 * @module
 */
import { landmarkGeometry, landmarkLastRow } from "../../dsl/low_rank.ts";
import type { Pattern } from "../../dsl/schema.ts";

/** `(q, j) => whether landmark j of this rank is allowed for query q`. */
export type LandmarkFn = (q: number, j: number) => boolean;

/** The distinct lowRank ranks in a (non-gated) pattern, ascending. */
export function landmarkRanks(p: Pattern): number[] {
  const ranks = new Set<number>();
  const visit = (x: Pattern) => {
    if (x.kind === "lowRank") ranks.add(x.rank);
    if (x.kind === "union" || x.kind === "intersect") x.of.forEach(visit);
  };
  visit(p);
  return [...ranks].sort((a, b) => a - b);
}

/**
 * Which landmarks of `rank` a query sees under pattern `p`.
 * @param p a non-gated pattern
 * @param n N
 * @param rank the lowRank rank
 * @returns the predicate over (query, landmark index)
 */
export function landmarkAllows(p: Pattern, n: number, rank: number): LandmarkFn {
  const { segment } = landmarkGeometry(n, rank);
  const none: LandmarkFn = () => false, all: LandmarkFn = () => true;
  const hasLowRank = (x: Pattern): boolean =>
    x.kind === "lowRank" || (x.kind === "union" || x.kind === "intersect") && x.of.some(hasLowRank);
  // A member without a lowRank restricts landmarks only inside an intersect (causal waits for the
  // segment's end, dense is neutral); on its own, or in a union, it brings no landmarks.
  const filter = (x: Pattern): LandmarkFn => {
    switch (x.kind) {
      case "dense":
        return all;
      case "causal":
        return (q, j) => landmarkLastRow(n, segment, j) <= q;
      case "union":
      case "intersect": {
        const members = x.of.map(filter);
        return x.kind === "union"
          ? (q, j) => members.some((f) => f(q, j))
          : (q, j) => members.every((f) => f(q, j));
      }
      default:
        return none; // rules over positions: intersecting them with a lowRank is refused
    }
  };
  const admits = (x: Pattern): LandmarkFn => {
    switch (x.kind) {
      case "lowRank":
        return x.rank === rank ? all : none;
      case "union": {
        const members = x.of.filter(hasLowRank).map(admits);
        return (q, j) => members.some((f) => f(q, j));
      }
      case "intersect": {
        if (!x.of.some(hasLowRank)) return none;
        const members = x.of.map((c) => hasLowRank(c) ? admits(c) : filter(c));
        return (q, j) => members.every((f) => f(q, j));
      }
      default:
        return none;
    }
  };
  return admits(p);
}

/**
 * Landmark rows: the mean of `x`'s rows over each segment, per (batch, head), in float64.
 * @param x `[heads, N, D]` flattened (heads = B·Hkv)
 * @param heads B·Hkv
 * @param n N
 * @param d D
 * @param rank the lowRank rank
 * @param rows where a head's N rows are: `start` rows into each head's `stride` rows (a packed
 *   sequence's keys); default the whole head
 * @returns `[heads, count, D]`
 */
export function poolLandmarks(
  x: ArrayLike<number>,
  heads: number,
  n: number,
  d: number,
  rank: number,
  rows: { stride: number; start: number } = { stride: n, start: 0 },
): Float64Array {
  const { segment, count } = landmarkGeometry(n, rank);
  const out = new Float64Array(heads * count * d);
  for (let h = 0; h < heads; h++) {
    const base = h * rows.stride + rows.start;
    for (let j = 0; j < count; j++) {
      const first = j * segment, end = Math.min(n, first + segment);
      for (let r = first; r < end; r++) {
        for (let c = 0; c < d; c++) out[(h * count + j) * d + c] += x[(base + r) * d + c];
      }
      for (let c = 0; c < d; c++) out[(h * count + j) * d + c] /= end - first;
    }
  }
  return out;
}
