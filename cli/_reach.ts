/**
 * Reach: how many attention hops until every position has heard from every other. One layer
 * moves information from key k to query q when some branch allows (q, k); stacking layers
 * composes those edges. Computed by breadth-first search from every node of a graph over cells of
 * positions: exact at element level (N <= `EXACT_UP_TO`), else on the cell graph, which treats
 * the positions of one cell as one node and so can only under-count hops (a lower bound).
 * @module
 */
import type { Plan } from "../compiler/mod.ts";
import { cellCounts } from "./_cell_counts.ts";

/** Element-level (exact) reach up to this N; past it, cells of ceil(N / this) positions. */
export const EXACT_UP_TO = 1024;

/** What the search found. */
export interface Reach {
  /** Positions per node (1: exact). */
  cellSize: number;
  /** Hops until every node has reached every other; undefined when some never does. */
  hops?: number;
  /** Ordered (source, target) node pairs never connected, when `hops` is undefined. */
  unreachable: number;
  /** Nodes in the graph. */
  nodes: number;
}

/**
 * Reach of a plan's pattern (all branches together: every branch carries information).
 *
 * @param plan the plan
 * @returns hops, or how many node pairs never connect
 * @example
 * ```ts
 * import { planPattern } from "../compiler/plan.ts";
 * import { reach } from "./_reach.ts";
 * reach(planPattern({ kind: "ring", radius: 1 }, 8, { tileQ: 4, tileK: 4 })).hops; // 4
 * ```
 */
export function reach(plan: Plan): Reach {
  const counts = cellCounts(plan, EXACT_UP_TO);
  const { cells, cellSize } = counts;
  const words = Math.ceil(cells / 32);
  // heard[k] = the query nodes that attend some key of node k: information moves k -> q.
  const heard = new Uint32Array(cells * words);
  for (const c of counts.components) {
    for (let q = 0; q < cells; q++) {
      for (let k = 0; k < cells; k++) {
        if (c.counts[q * cells + k] > 0) heard[k * words + (q >>> 5)] |= 1 << (q & 31);
      }
    }
  }
  let hops = 0, unreachable = 0;
  const seen = new Uint32Array(words), frontier = new Uint32Array(words);
  const next = new Uint32Array(words);
  for (let s = 0; s < cells; s++) {
    seen.fill(0);
    frontier.fill(0);
    seen[s >>> 5] |= 1 << (s & 31);
    frontier[s >>> 5] |= 1 << (s & 31);
    let depth = 0, count = 1;
    while (count < cells) {
      next.fill(0);
      for (let w = 0; w < words; w++) {
        let bits = frontier[w];
        while (bits !== 0) {
          const node = w * 32 + (31 - Math.clz32(bits & -bits));
          bits &= bits - 1;
          const row = node * words;
          for (let v = 0; v < words; v++) next[v] |= heard[row + v] & ~seen[v];
        }
      }
      let added = 0;
      for (let w = 0; w < words; w++) {
        seen[w] |= next[w];
        frontier[w] = next[w];
        added += popcount(next[w]);
      }
      if (added === 0) break;
      count += added;
      depth++;
    }
    if (count < cells) unreachable += cells - count;
    hops = Math.max(hops, depth);
  }
  return { cellSize, hops: unreachable ? undefined : hops, unreachable, nodes: cells };
}

function popcount(x: number): number {
  x -= (x >>> 1) & 0x55555555;
  x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
  return (((x + (x >>> 4)) & 0x0f0f0f0f) * 0x01010101) >>> 24;
}

/**
 * Residue classes of the stride periods in a pattern: `stride(P)` alone splits N positions into
 * `min(P, N)` classes that never exchange information. seed 000's π-steps wrap around N, and
 * cyclic steps of P on a circle of N give `gcd(P, N)` classes; both are reported.
 *
 * @param plan the plan
 * @returns one line per distinct period
 * @example
 * ```ts
 * import { planPattern } from "../compiler/plan.ts";
 * import { strideClasses } from "./_reach.ts";
 * strideClasses(planPattern({ kind: "stride", period: 6 }, 20, { tileQ: 4, tileK: 4 }));
 * // ["stride(6): 6 residue classes of (q - k) mod 6; cyclic steps of 6 on 20 positions: gcd 2"]
 * ```
 */
export function strideClasses(plan: Plan): string[] {
  const periods = new Set<number>();
  for (const b of plan.branches) {
    for (const c of b.components) {
      for (const a of c.atoms) if (a.kind === "stride") periods.add(a.period);
    }
  }
  return [...periods].sort((a, b) => a - b).map((p) =>
    `stride(${p}): ${Math.min(p, plan.n)} residue classes of (q - k) mod ${p}; cyclic steps of ` +
    `${p} on ${plan.n} positions: gcd ${gcd(p, plan.n)}`
  );
}

function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}
