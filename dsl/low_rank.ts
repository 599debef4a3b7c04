/**
 * Landmarks of `lowRank` (DESIGN §2): their count and segments, and where a lowRank may stand.
 * Landmarks are keys of their own, not positions, so the only rules that can restrict them are
 * those DESIGN defines on them: `causal` (landmark `j` only once its last row is `<= q`) and
 * `dense`. Intersecting a lowRank with a rule over key positions (window, stride, ...) has no
 * meaning and is refused rather than silently allowing nothing.
 * @module
 */
import { PlanError } from "../core/errors.ts";
import type { Pattern } from "./schema.ts";

/**
 * Segment length and landmark count of `lowRank(rank)` at N.
 * @param n sequence length N
 * @param rank the pattern's rank
 * @returns `segment = ceil(N / rank)` rows per landmark, `count = ceil(N / segment)` landmarks
 * @example
 * ```ts
 * import { landmarkGeometry } from "./low_rank.ts";
 * landmarkGeometry(10, 4); // { segment: 3, count: 4 }: rows 0-2, 3-5, 6-8, 9
 * landmarkGeometry(10, 6); // { segment: 2, count: 5 }: empty segments are dropped
 * ```
 */
export function landmarkGeometry(n: number, rank: number): { segment: number; count: number } {
  const segment = Math.ceil(n / rank);
  return { segment, count: Math.ceil(n / segment) };
}

/**
 * The last row of landmark `j`'s segment: under `causal`, query `q` sees the landmark when this
 * is `<= q`.
 * @example
 * ```ts
 * import { landmarkLastRow } from "./low_rank.ts";
 * landmarkLastRow(10, 3, 3); // 9
 * ```
 */
export function landmarkLastRow(n: number, segment: number, j: number): number {
  return Math.min(n, (j + 1) * segment) - 1;
}

/**
 * Refuses a lowRank intersected with a rule over key positions. Intersections distribute over
 * unions (`intersect(union(window, lowRank), causal)` is `window ∩ causal` or `lowRank ∩ causal`,
 * which is fine), so the check is on each AND of leaves: one holding a lowRank may hold only
 * causal, dense and lowRanks of the same rank.
 * @param pattern a parsed pattern
 * @param where its JSON path, for the message
 * @throws {PlanError} naming the path of the offending member
 * @example
 * ```ts
 * import { checkLowRankPlacement } from "./low_rank.ts";
 * checkLowRankPlacement({ kind: "intersect", of: [{ kind: "lowRank", rank: 4 }, { kind: "causal" }] }); // fine
 * ```
 */
export function checkLowRankPlacement(pattern: Pattern, where = "pattern"): void {
  if (pattern.kind === "scored") {
    if (JSON.stringify(pattern.pattern).includes('"lowRank"')) {
      throw new PlanError(
        `Cannot plan pattern: ${where}: a score modifier over lowRank landmarks is not defined ` +
          `(its k would be a landmark, not a position); score the token pattern in a branch of its own`,
      );
    }
    return;
  }
  if (pattern.kind === "gated") {
    pattern.branches.forEach((b, i) => checkLowRankPlacement(b, `${where}.branches[${i}]`));
    return;
  }
  for (const term of terms(pattern, where)) {
    const ranks = term.filter((l) => l.kind === "lowRank");
    if (ranks.length === 0) continue;
    const other = term.find((l) =>
      l.kind !== "lowRank" && l.kind !== "causal" && l.kind !== "dense"
    );
    const rank = ranks.find((l) => l.rank !== ranks[0].rank);
    const bad = other ?? rank;
    if (bad) {
      throw new PlanError(
        `Cannot plan pattern: ${bad.path}: ${bad.kind} is intersected with ${ranks[0].path} ` +
          `(lowRank); landmarks can only be intersected with causal, dense or the same lowRank ` +
          `(DESIGN §2)`,
      );
    }
  }
}

interface Leaf {
  kind: string;
  rank?: number;
  path: string;
}

/** The pattern as an OR of ANDs of leaves (with their paths); at most 4096 terms. */
function terms(p: Pattern, path: string): Leaf[][] {
  switch (p.kind) {
    case "union":
      return p.of.flatMap((c, i) => terms(c, `${path}.of[${i}]`));
    case "intersect": {
      let acc: Leaf[][] = [[]];
      p.of.forEach((c, i) => {
        const next = terms(c, `${path}.of[${i}]`);
        acc = acc.flatMap((a) => next.map((b) => [...a, ...b]));
        if (acc.length > 4096) {
          throw new PlanError(`Cannot plan pattern: ${path}: expands to over 4096 terms`);
        }
      });
      return acc;
    }
    case "gated":
      throw new PlanError(`Cannot plan pattern: ${path}: gated may only be the outermost pattern`);
    case "lowRank":
      return [[{ kind: p.kind, rank: p.rank, path }]];
    default:
      return [[{ kind: p.kind, path }]];
  }
}
