/**
 * Element truth of atoms and components, written from DESIGN §2 independently of the compiler:
 * what the schedule tests hold every BlockMask to.
 * @module
 */
import type { Atom } from "../../compiler/atoms.ts";
import type { Component } from "../../compiler/plan.ts";
import { lowbias32 } from "../../core/hash.ts";
import { allowedMask } from "../../runtime/reference/mod.ts";

/** Element truth of one atom, written from DESIGN §2 independently of the compiler. */
export function atomAllows(a: Atom, q: number, k: number, n: number): boolean {
  const mod = (x: number, m: number) => ((x % m) + m) % m;
  switch (a.kind) {
    case "dense":
      return true;
    case "causal":
      return k <= q;
    case "window":
      return q - a.left <= k && k <= q + a.right;
    case "ring":
      return Math.min(Math.abs(q - k), n - Math.abs(q - k)) <= a.radius;
    case "stride":
      return mod(q - k, a.period) === 0;
    case "globalRows":
      return a.tokens.includes(q);
    case "globalCols":
      return a.tokens.includes(k);
    case "random": {
      const nkb = Math.ceil(n / a.blockSize), qb = Math.floor(q / a.blockSize);
      const kb = Math.floor(k / a.blockSize);
      for (let j = 0; j < a.blocks; j++) {
        const h = lowbias32((a.seed + lowbias32((qb + lowbias32(j)) >>> 0)) >>> 0);
        if (h % nkb === kb) return true;
      }
      return false;
    }
    case "lowRank":
      throw new Error("lowRank atoms are over landmark keys, not token pairs");
    case "hashRound":
      throw new Error("hashBucket rounds depend on the data: their schedule is built on the GPU");
    case "predicate": // the source is the definition; the reference's interpreter runs it
      return allowedMask(a, n)(q, k);
  }
}

/** Whether a component allows `(q, k)`: every atom of it does, and no earlier component. */
export function componentAllows(c: Component, q: number, k: number, n: number): boolean {
  return c.atoms.every((a) => atomAllows(a, q, k, n)) &&
    !c.exclusions.some((e) => e.every((a) => atomAllows(a, q, k, n)));
}
