/**
 * Which patterns run on packed sequences, and what each call's lengths must satisfy.
 *
 * A packed call's kernels walk the packed rows in natural order and test, per pair, that query
 * and key share a sequence and that the pattern allows their positions within it, with `n` its
 * key count (packed_mask.ts). That serves every kind whose allowed set is a rule on `(q, k, n)`:
 * dense, causal, window, ring, stride, global and predicates, in any union, intersection, gated
 * or scored pattern. Three kinds are refused, since what they allow is not such a rule:
 * `random` draws its blocks over the key blocks of `n` (a table per sequence length), a
 * `hashBucket` sorts whole heads into bucket order (not one sequence at a time), and a
 * `lowRank` pools landmarks over `n` keys (landmarks per sequence).
 * @module
 */
import type { Sequence } from "../core/packed_sequences.ts";
import { PlanError } from "../core/errors.ts";
import { checkExpressionDomain } from "../dsl/expression_domain.ts";
import type { Pattern } from "../dsl/schema.ts";

/** The leaf kinds a packed call runs, for messages. */
export const PACKED_KINDS = "dense, causal, window, ring, stride, global and predicate";

/**
 * Refuses a pattern that packed sequences cannot run, naming the leaf and what packing takes.
 * @param pattern a parsed pattern
 * @throws {PlanError} at the first random, hashBucket or lowRank leaf
 * @example
 * ```ts
 * import { checkPackable } from "./packed_patterns.ts";
 * checkPackable({ kind: "union", of: [{ kind: "causal" }, { kind: "ring", radius: 4 }] }); // fine
 * ```
 */
export function checkPackable(pattern: Pattern): void {
  visit(pattern, "pattern", (p, where) => {
    if (
      p.kind !== "random" && p.kind !== "hashBucket" && p.kind !== "lowRank" && p.kind !== "linear"
    ) return;
    throw new PlanError(
      `Cannot plan pattern for packed sequences: ${where} is ${p.kind}, ${WHY[p.kind]}; ` +
        `packing runs ${PACKED_KINDS} leaves in any union, intersection, gated or scored pattern`,
    );
  });
}

const WHY = {
  random: "whose blocks are drawn over each sequence's key blocks",
  hashBucket: "whose bucket order sorts whole heads, not one sequence at a time",
  lowRank: "whose landmarks are pooled over each sequence's keys",
  linear: "whose chunked sums run over whole heads, not one sequence at a time",
};

/**
 * Checks one call's lengths against the pattern, as the reference does at each sequence's key
 * count: every global token lies among each sequence's keys, and every predicate and score
 * modifier stays in i32 (and its domain) at each distinct key count.
 * @param pattern a parsed pattern that `checkPackable` accepts
 * @param sequences the call's sequences
 * @param domain the call's batch and query heads
 * @throws {PlanError} naming the token or expression, and the sequence
 * @example
 * ```ts
 * import { checkPackedLengths } from "./packed_patterns.ts";
 * const sequences = [{ qStart: 0, qLen: 3, kStart: 0, kLen: 3, offset: 0 }];
 * checkPackedLengths({ kind: "global", tokens: [0, 2] }, sequences, { batch: 1, headsQ: 2 });
 * ```
 */
export function checkPackedLengths(
  pattern: Pattern,
  sequences: readonly Sequence[],
  domain: { batch: number; headsQ: number },
): void {
  // The shortest sequence bounds every global token.
  let shortest = 0;
  sequences.forEach((s, i) => {
    if (s.kLen < sequences[shortest].kLen) shortest = i;
  });
  const n = sequences[shortest].kLen;
  visit(pattern, "pattern", (p, where) => {
    if (p.kind !== "global") return;
    const i = p.tokens.findIndex((t) => t >= n);
    if (i < 0) return;
    throw new PlanError(
      `Cannot plan pattern: ${where}.tokens[${i}]: global token must be < N (${n}), got ` +
        `${p.tokens[i]}: packed sequence ${shortest} has kvSeqLens ${n}, and every token must ` +
        "lie among each sequence's keys",
    );
  });
  for (const length of new Set(sequences.map((s) => s.kLen))) {
    checkExpressionDomain(pattern, { n: length, ...domain });
  }
}

/** Calls `f` on every pattern of the tree, with its path. */
function visit(p: Pattern, where: string, f: (p: Pattern, where: string) => void): void {
  f(p, where);
  switch (p.kind) {
    case "union":
    case "intersect":
      return p.of.forEach((c, i) => visit(c, `${where}.of[${i}]`, f));
    case "gated":
      return p.branches.forEach((b, i) => visit(b, `${where}.branches[${i}]`, f));
    case "scored":
      return visit(p.pattern, `${where}.pattern`, f);
  }
}
