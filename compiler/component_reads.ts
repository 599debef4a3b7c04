/**
 * What a component's kernel reads beyond Q, K and V, asked by planning (which kernels may share
 * a module or a pass, which bind the hash buffer) and by the WGSL that declares those reads:
 * the query head and batch (TypeScript predicates that name `h` or `b`), and hashBucket codes.
 * @module
 */
import { hashCodeKey } from "../dsl/hash_bucket.ts";
import { inputsOf } from "../dsl/expression.ts";
import { predicateProgram } from "../dsl/expression_check.ts";
import type { Atom } from "./atoms.ts";
import type { Component } from "./plan.ts";

/**
 * Whether a predicate atom reads the query head or the batch: then it, and the `allowed`
 * function that calls it, take `h` and `b` as well as `q` and `k`.
 * @param atom any atom
 * @returns true for a predicate that reads `h` or `b`
 * @example
 * ```ts
 * import { readsHeadOrBatch } from "./component_reads.ts";
 * readsHeadOrBatch({ kind: "predicate", expr: "(q + h) % 2 == 0" }); // true
 * ```
 */
export function readsHeadOrBatch(atom: Atom): boolean {
  if (atom.kind !== "predicate") return false;
  const used = inputsOf(predicateProgram(atom));
  return used.has("h") || used.has("b");
}

/**
 * Whether a component's `allowed` reads the query head and batch (`allowed(q, k, h, b)`):
 * when one of its predicates, or an earlier component's, does.
 * @param options the component's atoms and exclusions
 * @returns true when `allowed` takes `h` and `b`
 * @example
 * ```ts
 * import { allowedReadsHeadOrBatch } from "./component_reads.ts";
 * allowedReadsHeadOrBatch({ atoms: [{ kind: "causal" }], exclusions: [] }); // false
 * ```
 */
export function allowedReadsHeadOrBatch(options: {
  atoms: readonly Atom[];
  exclusions: readonly (readonly Atom[])[];
}): boolean {
  return [options.atoms, ...options.exclusions].some((atoms) => atoms.some(readsHeadOrBatch));
}

/**
 * Names one round of one code set: the unit a kernel stages codes of.
 * @example
 * ```ts
 * import { codeRef } from "./component_reads.ts";
 * codeRef({ seed: 1, buckets: 64, round: 0 }); // "seed 1, 64 buckets/0"
 * ```
 */
export function codeRef(a: { seed: number; buckets: number; round: number }): string {
  return `${hashCodeKey(a)}/${a.round}`;
}

/**
 * The hashBucket rounds a component's predicate reads (its own and its exclusions'), each once.
 * @param c the component's atoms and exclusions
 * @returns `codeRef`s in first-use order
 */
export function hashRoundsRead(
  c: { atoms: readonly Atom[]; exclusions: readonly (readonly Atom[])[] },
): string[] {
  const refs: string[] = [];
  for (const a of [c.atoms, ...c.exclusions].flat()) {
    if (a.kind === "hashRound" && !refs.includes(codeRef(a))) refs.push(codeRef(a));
  }
  return refs;
}

/**
 * The hashBucket rounds whose codes a kernel stages: every round its predicate reads, when
 * they fit a vec4<u32> (else `allowed` reads them from the hash buffer pair by pair).
 */
export function stagedCodes(c: Component): string[] {
  const refs = readsHash(c) ? hashRoundsRead(c) : [];
  return refs.length <= 4 ? refs : [];
}

/** Whether a component's kernel binds the hash buffer (its atoms or exclusions hash). */
export function readsHash(c: Component): boolean {
  return [c.atoms, ...c.exclusions].some((atoms) => atoms.some((a) => a.kind === "hashRound"));
}
