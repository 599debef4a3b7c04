/**
 * Atoms: the leaf rules a plan is made of. A pattern's leaves become atoms, with one change:
 * `global` splits into `globalRows` (q in G) and `globalCols` (k in G), because each half is
 * dense in its own gathered layout while the whole is not dense in any one.
 * @module
 */
import { z } from "zod";
import type { Expect, SameType } from "../core/same_type.ts";
import {
  type CausalPattern,
  type DensePattern,
  type LowRankPattern,
  type PredicatePattern,
  PredicateSchema,
  type RandomPattern,
  type RingPattern,
  type StridePattern,
  type WindowPattern,
} from "../dsl/schema.ts";

export const AtomSchema = z.discriminatedUnion("kind", [
  z.object({ kind: z.literal("dense") }),
  z.object({ kind: z.literal("causal") }),
  z.object({ kind: z.literal("window"), left: z.number().int(), right: z.number().int() }),
  z.object({ kind: z.literal("ring"), radius: z.number().int() }),
  z.object({ kind: z.literal("stride"), period: z.number().int() }),
  /** Query position in `tokens` (sorted, unique). */
  z.object({ kind: z.literal("globalRows"), tokens: z.array(z.number().int()) }),
  /** Key position in `tokens` (sorted, unique). */
  z.object({ kind: z.literal("globalCols"), tokens: z.array(z.number().int()) }),
  z.object({
    kind: z.literal("random"),
    blocks: z.number().int(),
    blockSize: z.number().int(),
    seed: z.number().int(),
  }),
  /** Every pooled landmark of this rank (keys of their own: see dsl/low_rank.ts). */
  z.object({ kind: z.literal("lowRank"), rank: z.number().int() }),
  /**
   * Round `round` of a hashBucket: Q[q] and K[k] share a bucket of that round's planes. The
   * codes come from the GPU pre-pass (data-dependent); `uniform`: the ANNA weights.
   */
  z.object({
    kind: z.literal("hashRound"),
    buckets: z.number().int(),
    seed: z.number().int(),
    round: z.number().int(),
    uniform: z.boolean(),
  }),
  /** A predicate written in TypeScript: the pattern object itself (dsl/expression.ts). */
  PredicateSchema,
]);

/**
 * One allowed-set rule over positions `(q, k)`; a component allows the AND of its atoms. The
 * leaves keep their pattern's fields; written out (checked against `AtomSchema` below) so that
 * the documentation can show them.
 */
export type Atom =
  | DensePattern
  | CausalPattern
  | WindowPattern
  | RingPattern
  | StridePattern
  /** Query position in `tokens` (sorted, unique). */
  | { kind: "globalRows"; tokens: number[] }
  /** Key position in `tokens` (sorted, unique). */
  | { kind: "globalCols"; tokens: number[] }
  | RandomPattern
  /** Every pooled landmark of this rank (keys of their own: see dsl/low_rank.ts). */
  | LowRankPattern
  /**
   * Round `round` of a hashBucket: Q[q] and K[k] share a bucket of that round's planes. The
   * codes come from the GPU pre-pass (data-dependent); `uniform`: the ANNA weights.
   */
  | { kind: "hashRound"; buckets: number; seed: number; round: number; uniform: boolean }
  /** A predicate written in TypeScript: the pattern object itself (dsl/expression.ts). */
  | PredicatePattern;

type _AtomMatchesSchema = Expect<SameType<Atom, z.infer<typeof AtomSchema>>>;

/** Tile-level truth of an atom (or a conjunction) over a block of (q, k) pairs. */
export const enum Coverage {
  /** No pair in the block is allowed: the block is skipped. */
  Empty = 0,
  /** Every pair is allowed: the kernel does no mask work. */
  Full = 1,
  /** Some pairs are: the kernel evaluates the predicate per element. */
  Partial = 2,
}

/** Stable text for an atom, used in plan summaries and kernel header comments. */
export function atomLabel(a: Atom): string {
  switch (a.kind) {
    case "dense":
    case "causal":
      return a.kind;
    case "window":
      return `window(${a.left},${a.right})`;
    case "ring":
      return `ring(${a.radius})`;
    case "stride":
      return `stride(${a.period})`;
    case "globalRows":
      return `globalRows(${a.tokens.length} tokens)`;
    case "globalCols":
      return `globalCols(${a.tokens.length} tokens)`;
    case "random":
      return `random(${a.blocks}x${a.blockSize},seed ${a.seed})`;
    case "lowRank":
      return `lowRank(${a.rank})`;
    case "hashRound":
      return `hashBucket(${a.buckets}, seed ${a.seed}) round ${a.round}`;
    case "predicate":
      return predicateLabel(a.expr);
  }
}

/**
 * A predicate's source on one short line (labels go into WGSL `//` comments).
 * @param expr the source
 * @returns `predicate(...)`, at most about 60 characters
 * @example
 * ```ts
 * import { predicateLabel } from "./atoms.ts";
 * predicateLabel("(q, k) => {\n  return k <= q;\n}"); // "predicate((q, k) => { return k <= q; })"
 * ```
 */
export function predicateLabel(expr: string): string {
  const line = expr.replace(/\s+/g, " ").trim();
  return `predicate(${line.length > 60 ? line.slice(0, 57) + "..." : line})`;
}

/** Structural key: two atoms with the same key allow the same set. */
export function atomKey(a: Atom): string {
  return JSON.stringify(a);
}
