/**
 * The pattern-level checks of predicates and score modifiers: each source is compiled once at
 * the boundary (`parsePattern`), so a bad one fails there with its path, line and construct,
 * and `scored` sits only where a score can apply to a whole softmax.
 * @module
 */
import { PatternError } from "../core/errors.ts";
import { inputsOf, type Program } from "./expression.ts";
import { compileExpression } from "./expression_parse.ts";
import type { Pattern, PredicatePattern, ScoreModifier } from "./schema.ts";

/**
 * Compiles every predicate and score of a pattern and checks where `scored` appears: as the
 * outermost pattern or a gated branch (a score modifies one softmax, not part of one).
 * @param pattern a pattern that passed the zod schema
 * @throws {PatternError} "Cannot compile pattern: pattern.of[1].expr: line 2: ..."
 * @example
 * ```ts
 * import { checkExpressions } from "./expression_check.ts";
 * checkExpressions({ kind: "predicate", expr: "(q - k) % 3 == 0" }); // fine
 * ```
 */
export function checkExpressions(pattern: Pattern): void {
  visit(pattern, "pattern", true);
  learnableConstants(pattern);
}

/** A learnable constant of a pattern: where it is, and its shape. */
export interface LearnableConstant {
  /** The gated branch whose modifier holds it (0 when not gated). */
  branch: number;
  /** Its entries; `scalar` when it is a number (gradient a number), else an array's length. */
  size: number;
  scalar: boolean;
  /** Its values as given (a number as one entry). */
  values: number[];
}

/**
 * The learnable constants of a pattern's score modifiers, by name. Gradients are returned by
 * name, so a name is learnable in one modifier only.
 * @param pattern a parsed pattern
 * @returns name → branch and shape, in the modifiers' order
 * @throws {PatternError} when two modifiers learn constants of the same name
 * @example
 * ```ts
 * import { learnableConstants } from "./expression_check.ts";
 * learnableConstants({
 *   kind: "scored", pattern: { kind: "causal" },
 *   score: { expr: "s - c * (q - k)", constants: { c: 0.5 }, learnable: ["c"] },
 * }); // Map { "c" => { branch: 0, size: 1, scalar: true, values: [0.5] } }
 * ```
 */
export function learnableConstants(pattern: Pattern): Map<string, LearnableConstant> {
  const found = new Map<string, LearnableConstant>();
  const branches = pattern.kind === "gated" ? pattern.branches : [pattern];
  branches.forEach((p, branch) => {
    if (p.kind !== "scored") return;
    for (const name of p.score.learnable ?? []) {
      if (found.has(name)) {
        throw new PatternError(
          `Cannot compile pattern: learnable constant "${name}" is learnt by two score ` +
            "modifiers; gradients are returned by name, so give each its own name",
        );
      }
      const value = p.score.constants?.[name] ?? 0;
      found.set(name, {
        branch,
        size: Array.isArray(value) ? value.length : 1,
        scalar: !Array.isArray(value),
        values: Array.isArray(value) ? [...value] : [value],
      });
    }
  });
  return found;
}

function visit(p: Pattern, where: string, scoredAllowed: boolean): void {
  switch (p.kind) {
    case "predicate":
      predicateProgram(p, `${where}.expr`);
      return;
    case "scored":
      if (!scoredAllowed) {
        throw new PatternError(
          `Cannot compile pattern: ${where}: "scored" may only be the outermost pattern or a ` +
            `gated branch (a score modifier applies to a whole softmax); move it up`,
        );
      }
      scoreProgram(p.score, `${where}.score.expr`);
      visit(p.pattern, `${where}.pattern`, false);
      return;
    case "gated":
      p.branches.forEach((b, i) => visit(b, `${where}.branches[${i}]`, true));
      return;
    case "union":
    case "intersect":
      p.of.forEach((c, i) => visit(c, `${where}.of[${i}]`, false));
      return;
    default:
      return;
  }
}

/**
 * The checked program of a predicate pattern (or atom).
 * @param p the predicate
 * @param where its path, for messages
 * @returns the program (cached)
 * @throws {PatternError} naming `where`, the line and the construct
 * @example
 * ```ts
 * import { predicateProgram } from "./expression_check.ts";
 * predicateProgram({ expr: "k <= q" }).result.type; // "bool"
 * ```
 */
export function predicateProgram(
  p: Pick<PredicatePattern, "expr" | "constants" | "masks">,
  where = "pattern.expr",
): Program {
  return located(() => compileExpression(p, "mask"), where);
}

/**
 * The checked program of a score modifier.
 * @param s the modifier
 * @param where its path, for messages
 * @returns the program (cached)
 * @throws {PatternError} naming `where`, the line and the construct
 * @example
 * ```ts
 * import { scoreProgram } from "./expression_check.ts";
 * scoreProgram({ expr: "(s) => 30 * Math.tanh(s / 30)" }).result.type; // "real"
 * ```
 */
export function scoreProgram(s: ScoreModifier, where = "pattern.score.expr"): Program {
  return located(() => compileExpression(s, "score"), where);
}

function located(f: () => Program, where: string): Program {
  try {
    return f();
  } catch (e) {
    if (!(e instanceof PatternError) || e.message.startsWith("Cannot")) throw e;
    throw new PatternError(`Cannot compile pattern: ${where}: ${e.message}`);
  }
}

/**
 * Whether a pattern's allowed set depends on the head or the batch (a predicate reads `h` or
 * `b`): then the reference lists allowed keys per (batch, head), not once.
 * @param p a parsed pattern
 * @returns true when some predicate reads `h` or `b`
 * @example
 * ```ts
 * import { allowedSetUsesHeadOrBatch } from "./expression_check.ts";
 * allowedSetUsesHeadOrBatch({ kind: "predicate", expr: "q % 2 == h % 2" }); // true
 * ```
 */
export function allowedSetUsesHeadOrBatch(p: Pattern): boolean {
  switch (p.kind) {
    case "predicate": {
      const used = inputsOf(predicateProgram(p));
      return used.has("h") || used.has("b");
    }
    case "scored":
      return allowedSetUsesHeadOrBatch(p.pattern);
    case "gated":
      return p.branches.some(allowedSetUsesHeadOrBatch);
    case "union":
    case "intersect":
      return p.of.some(allowedSetUsesHeadOrBatch);
    default:
      return false;
  }
}

/**
 * Each learnable constant's first entry in the `learned` buffer (and in a row's share of their
 * gradients): the constants one after another, in `learnableConstants` order.
 * @param learnable from `learnableConstants`
 * @returns name → offset
 * @example
 * ```ts
 * import { learnableOffsets } from "./expression_check.ts";
 * learnableOffsets(new Map([
 *   ["c", { branch: 0, size: 1, scalar: true, values: [2] }],
 *   ["m", { branch: 0, size: 2, scalar: false, values: [1, 3] }],
 * ])); // Map { "c" => 0, "m" => 1 }
 * ```
 */
export function learnableOffsets(
  learnable: ReadonlyMap<string, LearnableConstant>,
): Map<string, number> {
  const offsets = new Map<string, number>();
  let at = 0;
  for (const [name, c] of learnable) {
    offsets.set(name, at);
    at += c.size;
  }
  return offsets;
}
