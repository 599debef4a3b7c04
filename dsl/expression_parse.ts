/**
 * TypeScript source -> checked `Program` (see `expression.ts` for the language). The source is
 * parsed with ts-morph and walked once; anything outside the subset (loops, strings,
 * `Date.now()`, assignments, `let`, `this`, ...) is refused with a `PatternError` naming its
 * line (1-based within the function or expression) and the construct. Parsing and the refused
 * constructs are expression_syntax.ts; typing names and expressions is expression_typing.ts.
 * @module
 */
import { PatternError } from "../core/errors.ts";
import type { ts } from "ts-morph";
import type { Constants, Program } from "./expression.ts";
import { SyntaxKind, tsc, withParsed } from "./expression_syntax.ts";
import { Checker } from "./expression_typing.ts";

/** The JSON of a predicate or score: source, captured constants, registered masks it calls. */
export interface ExpressionSource {
  /** A bare expression, or an arrow or function expression whose parameters bind in order. */
  expr: string;
  /** The numbers (and numeric arrays) the source refers to by name. */
  constants?: Constants;
  /** The source of every registered mask it calls, by name, so the JSON stands alone. */
  masks?: Record<string, MaskSource>;
}

/** A registered mask as stored in a pattern: a function's source and its own constants. */
export interface MaskSource {
  /** The mask function's source, `(...positions) => boolean`. */
  expr: string;
  /** The numbers (and numeric arrays) its source refers to by name. */
  constants?: Constants;
}

const cache = new Map<string, Program>();

/**
 * Checks a predicate (`role` "mask") or score modifier (`"score"`) and returns its program.
 * Results are cached by source, so every stage may call this freely.
 * @param source the expression or function source, its constants and registered masks
 * @param role what the source is written for
 * @returns the checked program
 * @throws {PatternError} "line L: <construct> ..." for anything outside the subset
 * @example
 * ```ts
 * import { compileExpression } from "./expression_parse.ts";
 * const p = compileExpression({ expr: "(q, k) => Math.abs(q - k) <= W", constants: { W: 4 } }, "mask");
 * console.log(p.result.type); // "bool"
 * ```
 */
export function compileExpression(
  source: ExpressionSource & { learnable?: string[] },
  role: "mask" | "score",
): Program {
  const key = JSON.stringify([
    role,
    source.expr,
    source.constants ?? {},
    source.masks ?? {},
    source.learnable ?? [],
  ]);
  let program = cache.get(key);
  if (!program) {
    program = new Checker(source.masks ?? {}, []).program(source, role);
    cache.set(key, program);
  }
  return program;
}

/**
 * Checks a registered mask: a function of its own (integer) parameters returning a boolean,
 * which may call the masks in `masks`.
 * @param name the name calls use
 * @param source the function's source and constants
 * @param masks masks it may call
 * @returns the checked program
 * @throws {PatternError} "mask NAME: line L: ..." for anything outside the subset
 * @example
 * ```ts
 * import { compileMask } from "./expression_parse.ts";
 * compileMask("near", { expr: "(a, b) => Math.abs(a - b) <= 2" }, {}).params; // ["a", "b"]
 * ```
 */
export function compileMask(
  name: string,
  source: MaskSource,
  masks: Record<string, MaskSource>,
): Program {
  try {
    return new Checker(masks, [name]).program(source, "registered");
  } catch (e) {
    if (!(e instanceof PatternError) || e.message.startsWith("mask ")) throw e;
    throw new PatternError(`mask ${name}: ${e.message}`);
  }
}

/**
 * The plain function names a source calls (candidates for registered masks), in order.
 * @param expr a function's or expression's source
 * @returns distinct callee identifiers; `Math.abs` and the like are not plain names
 * @throws {PatternError} when the source does not parse
 * @example
 * ```ts
 * import { calledNames } from "./expression_parse.ts";
 * calledNames("(q, k) => near(q, k) || Math.abs(q - k) == 7"); // ["near"]
 * ```
 */
export function calledNames(expr: string): string[] {
  const names: string[] = [];
  withParsed(expr, (root) =>
    root.forEachDescendant((node) => {
      if (node.getKind() !== SyntaxKind.CallExpression) return;
      const callee = (node.compilerNode as ts.CallExpression).expression;
      if (tsc.isIdentifier(callee) && !names.includes(callee.text)) names.push(callee.text);
    }));
  return names;
}
