/**
 * Density of a compiled plan: the fraction of `(q, k)` pairs each branch allows, read off the
 * BlockMasks rather than counted over all N² pairs. A FULL tile contributes its area; a PARTIAL
 * tile is counted element by element with the component's predicate (its atoms, minus what
 * earlier components of the branch allow) evaluated on the positions its layouts walk. The
 * components of a branch are disjoint, so their counts add up to the branch's allowed set.
 * @module
 */
import { layoutPositions } from "../compiler/layout.ts";
import type { Component, Plan } from "../compiler/plan.ts";
import { componentAllows } from "../cli/_component_allows.ts";

/** What a plan allows. */
export interface PlanDensity {
  /** Allowed pairs of each branch (one entry when not gated). */
  allowedPairs: number[];
  /**
   * Pairs computed per N²: the branches' allowed pairs summed (a gated pattern evaluates each
   * branch's pairs separately, so its work is the sum; in [0, branches]).
   */
  density: number;
}

/**
 * Counts the pairs a plan allows from its BlockMasks: O(visited tiles + elements of PARTIAL
 * tiles), never O(N²) unless the schedule itself is.
 * @param plan a compiled plan (`compiled.plan`)
 * @returns allowed pairs per branch and the density (all branches' pairs per N²)
 * @example
 * ```ts
 * import { planPattern } from "../compiler/plan.ts";
 * import { planDensity } from "./density.ts";
 * const plan = planPattern({ kind: "causal" }, 100, { tileQ: 64, tileK: 32 });
 * planDensity(plan).allowedPairs; // [5050]
 * ```
 */
export function planDensity(plan: Plan): PlanDensity {
  const allowedPairs = plan.branches.map((b) =>
    b.components.reduce((sum, c) => sum + componentPairs(c, plan.n), 0)
  );
  const total = allowedPairs.reduce((s, x) => s + x, 0);
  return { allowedPairs, density: total / (plan.n * plan.n) };
}

/**
 * Pairs one component allows: FULL tiles by area, PARTIAL tiles pair by pair.
 * @param c the component (atoms, exclusions, layouts, BlockMask)
 * @param n sequence length N
 * @returns the number of allowed pairs
 * @example
 * ```ts
 * import { planPattern } from "../compiler/plan.ts";
 * import { componentPairs } from "./density.ts";
 * const plan = planPattern({ kind: "ring", radius: 1 }, 64, { tileQ: 64, tileK: 32 });
 * componentPairs(plan.branches[0].components[0], 64); // 192
 * ```
 */
export function componentPairs(c: Component, n: number): number {
  // A hashBucket round's pairs depend on the data: counted from the codes (hash_density.ts).
  if (c.qLayout.kind === "sorted") return NaN;
  const qPos = layoutPositions(c.qLayout, n);
  const kPos = layoutPositions(c.kLayout, n);
  const { offsets, kvStart, kvLength, partial, tileQ, tileK } = c.mask;
  const allows = componentAllows(c, n);
  let total = 0;
  for (let t = 0; t + 1 < offsets.length; t++) {
    const q0 = t * tileQ, q1 = Math.min(qPos.length, q0 + tileQ);
    for (let r = offsets[t]; r < offsets[t + 1]; r++) {
      const k0 = kvStart[r] * tileK;
      const k1 = Math.min(kPos.length, (kvStart[r] + kvLength[r]) * tileK);
      if (partial[r] === 0) {
        total += (q1 - q0) * (k1 - k0); // a FULL run: its whole area at once
        continue;
      }
      for (let i = q0; i < q1; i++) {
        for (let j = k0; j < k1; j++) if (allows(qPos[i], kPos[j])) total++;
      }
    }
  }
  return total;
}
