/**
 * The element-level truth of one planned component: every atom allows the pair and no earlier
 * component of its branch does. Leaf atoms go through `allowedMask` (DESIGN §2); the two halves
 * of `global`, which have no pattern of their own, are membership tests. Used to count a
 * plan's allowed pairs and to draw its mask from PARTIAL tiles without an N² scan.
 * @module
 */
import type { Atom } from "../compiler/atoms.ts";
import type { Component } from "../compiler/plan.ts";
import type { Pattern } from "../dsl/schema.ts";
import { type AllowedFn, allowedMask } from "../runtime/reference/allowed.ts";
import { landmarkLastRow } from "../dsl/low_rank.ts";

/**
 * The predicate of a component, exclusions included.
 * @param c the component (atoms and the atoms of each earlier component)
 * @param n sequence length N
 * @returns `(q, k) => allowed`
 * @example
 * ```ts
 * import { planPattern } from "../compiler/plan.ts";
 * import { componentAllows } from "./_component_allows.ts";
 * const plan = planPattern({ kind: "union", of: [{ kind: "causal" }, { kind: "ring", radius: 1 }] }, 8, { tileQ: 8, tileK: 8 });
 * componentAllows(plan.branches[0].components[1], 8)(0, 1); // true: ring allows it, causal does not
 * ```
 */
export function componentAllows(c: Component, n: number): AllowedFn {
  const l = c.kLayout;
  // Landmark components: k is a landmark index (DESIGN §2's lowRank rules).
  const segment = l.kind === "landmarks" ? l.segment : undefined;
  const own = conjunction(c.atoms, n, segment);
  const earlier = c.exclusions.map((atoms) => conjunction(atoms, n, segment));
  return (q, k) => own(q, k) && !earlier.some((e) => e(q, k));
}

function conjunction(atoms: readonly Atom[], n: number, segment?: number): AllowedFn {
  const tests = atoms.map((a) =>
    segment === undefined ? atomAllows(a, n) : landmarkAtom(a, n, segment)
  );
  return (q, k) => tests.every((t) => t(q, k));
}

function atomAllows(a: Atom, n: number): AllowedFn {
  if (a.kind === "globalRows" || a.kind === "globalCols") {
    const member = new Uint8Array(n);
    for (const t of a.tokens) member[t] = 1;
    return a.kind === "globalRows" ? (q) => member[q] === 1 : (_q, k) => member[k] === 1;
  }
  return allowedMask(a as Pattern, n);
}

/** An atom over (query, landmark index): lowRank and dense allow all, causal once the segment ends. */
function landmarkAtom(a: Atom, n: number, segment: number): AllowedFn {
  if (a.kind === "causal") return (q, j) => landmarkLastRow(n, segment, j) <= q;
  return () => a.kind === "lowRank" || a.kind === "dense";
}
