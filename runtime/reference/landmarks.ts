/**
 * The reference's view of `lowRank` (DESIGN §2): pooled landmark rows in float64 and which
 * landmarks a query may see. A landmark is a key of its own: `lowRank(m)` allows every landmark
 * of rank m, `causal` allows landmark j once its last row is `<= q`, `dense` allows all of them,
 * and rules over positions allow none (intersecting them with a lowRank is refused beforehand).
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
  const build = (x: Pattern): LandmarkFn => {
    switch (x.kind) {
      case "lowRank":
        return x.rank === rank ? () => true : () => false;
      case "dense":
        return () => true;
      case "causal":
        return (q, j) => landmarkLastRow(n, segment, j) <= q;
      case "union": {
        const members = x.of.map(build);
        return (q, j) => members.some((f) => f(q, j));
      }
      case "intersect": {
        const members = x.of.map(build);
        return (q, j) => members.every((f) => f(q, j));
      }
      default:
        return () => false;
    }
  };
  return build(p);
}

/**
 * Landmark rows: the mean of `x`'s rows over each segment, per (batch, head), in float64.
 * @param x `[heads, N, D]` flattened (heads = B·Hkv)
 * @param heads B·Hkv
 * @param n N
 * @param d D
 * @param rank the lowRank rank
 * @returns `[heads, count, D]`
 */
export function poolLandmarks(
  x: ArrayLike<number>,
  heads: number,
  n: number,
  d: number,
  rank: number,
): Float64Array {
  const { segment, count } = landmarkGeometry(n, rank);
  const out = new Float64Array(heads * count * d);
  for (let h = 0; h < heads; h++) {
    for (let j = 0; j < count; j++) {
      const first = j * segment, end = Math.min(n, first + segment);
      for (let r = first; r < end; r++) {
        for (let c = 0; c < d; c++) out[(h * count + j) * d + c] += x[(h * n + r) * d + c];
      }
      for (let c = 0; c < d; c++) out[(h * count + j) * d + c] /= end - first;
    }
  }
  return out;
}
