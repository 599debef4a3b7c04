/**
 * The checked form of a predicate or score modifier written in TypeScript: a small typed
 * expression tree (`Program`) that the CPU reference interprets, the compiler classifies tiles
 * with (interval analysis) and lowers to WGSL. All three read the same tree, so kernel and
 * oracle come from one source.
 *
 * The language is a subset of TypeScript with Weft's semantics (not JavaScript's where the two
 * differ):
 * - values are integers (i32), reals (f32 on the GPU, float64 in the reference) or booleans;
 *   `q, k, n, h, b` are integers, a score's `s` is real;
 * - `+ - *` keep integers integers; `%` takes integers and is the mathematical modulo (never
 *   negative, DESIGN §2); `Math.floor(a / b)` of integers is exact integer floor division;
 *   any other `/` is real division (score modifiers only: predicates hold no reals);
 * - comparisons give booleans; `&& || !` and `?:` conditions take booleans only (no
 *   truthiness); `Math.abs/min/max/floor`, and in scores `Math.exp/log/tanh/sqrt/pow`;
 * - `const` locals, captured constants (numbers, and numeric arrays indexed by an integer)
 *   passed explicitly in `constants`, and calls to registered masks.
 * @module
 */

/** Kinds of value. */
export type ValueType = "int" | "real" | "bool";

/** What an expression is written for. */
export type ExpressionRole = "mask" | "score" | "registered";

/** The free names each role's source may use, in the builder's parameter order. */
export const ROLE_INPUTS = {
  /** `mask((q, k, n, h, b) => boolean)`. */
  mask: ["q", "k", "n", "h", "b"],
  /** `score((s, q, k, h, b, n) => number)`. */
  score: ["s", "q", "k", "h", "b", "n"],
  /** A registered mask is a function of its own parameters only. */
  registered: [],
} as const satisfies Record<ExpressionRole, readonly string[]>;

/** A free input: a position (q, k), N, the query head h, the batch b, the raw score s. */
export type InputName = "q" | "k" | "n" | "h" | "b" | "s";

/** Captured constants: numbers and numeric arrays, by the name the source uses. */
export type Constants = Record<string, number | number[]>;

/** Binary operators after checking (`floorDiv` is `Math.floor(a / b)` of two integers). */
export type BinaryOp =
  | "+"
  | "-"
  | "*"
  | "/"
  | "floorDiv"
  | "mod"
  | "<"
  | "<="
  | ">"
  | ">="
  | "=="
  | "!="
  | "&&"
  | "||";

/** Math functions after checking. */
export type MathFn = "abs" | "min" | "max" | "floor" | "exp" | "log" | "tanh" | "sqrt" | "pow";

/** Where a node came from, for messages: its 1-based line in the function and its text. */
export interface Origin {
  line: number;
  text: string;
}

/** One checked node; `type` is its value kind (integers are promoted to reals where mixed). */
export type Expr =
  & { type: ValueType; origin: Origin }
  & (
    | { op: "input"; name: InputName }
    | { op: "param"; index: number; name: string }
    | { op: "local"; index: number; name: string }
    | { op: "literal"; value: number | boolean }
    | { op: "element"; array: string; index: Expr }
    | { op: "neg"; arg: Expr }
    | { op: "not"; arg: Expr }
    | { op: "binary"; fn: BinaryOp; a: Expr; b: Expr }
    | { op: "select"; cond: Expr; then: Expr; else: Expr }
    | { op: "math"; fn: MathFn; args: Expr[] }
    | { op: "call"; mask: string; args: Expr[] }
  );

/** A numeric array constant: its values and whether all of them are integers. */
export interface ArrayConstant {
  values: number[];
  type: "int" | "real";
  /**
   * A learnable constant (a score modifier's `learnable`): real, and its gradient is taken. A
   * learnable number is held as a one-entry array (`scalar`), read at index 0.
   */
  learnable?: "scalar" | "array";
}

/** A checked function: `const` locals in order, then the result. */
export interface Program {
  role: ExpressionRole;
  /** The source as given (a function's text or a bare expression). */
  source: string;
  /** Registered masks: parameter names, bound positionally to the call's arguments. */
  params: string[];
  locals: { name: string; value: Expr }[];
  result: Expr;
  /** Array constants the program indexes (scalars are folded into literals). */
  arrays: Record<string, ArrayConstant>;
  /** Registered masks the program (or a mask it calls) calls, checked, by name. */
  masks: Record<string, Program>;
}

/**
 * Calls `f` on every node of `e`, parents first.
 * @param e the root
 * @param f the visitor
 * @example
 * ```ts
 * import { type Expr, forEachNode } from "./expression.ts";
 * const origin = { line: 1, text: "q" };
 * const q: Expr = { op: "input", name: "q", type: "int", origin };
 * let count = 0;
 * forEachNode({ op: "neg", arg: q, type: "int", origin }, () => count++);
 * console.log(count); // 2
 * ```
 */
export function forEachNode(e: Expr, f: (e: Expr) => void): void {
  f(e);
  for (const child of children(e)) forEachNode(child, f);
}

/**
 * The direct children of a node.
 * @param e a node
 * @returns its operands, in order
 * @example
 * ```ts
 * import { children } from "./expression.ts";
 * children({ op: "literal", value: 1, type: "int", origin: { line: 1, text: "1" } }); // []
 * ```
 */
export function children(e: Expr): Expr[] {
  switch (e.op) {
    case "input":
    case "param":
    case "local":
    case "literal":
      return [];
    case "element":
      return [e.index];
    case "neg":
    case "not":
      return [e.arg];
    case "binary":
      return [e.a, e.b];
    case "select":
      return [e.cond, e.then, e.else];
    case "math":
    case "call":
      return e.args;
  }
}

/**
 * Every node of a program's own body (locals, then the result), not of the masks it calls.
 * @param p the program
 * @param f the visitor
 * @example
 * ```ts ignore
 * forEachProgramNode(program, (e) => console.log(e.op));
 * ```
 */
export function forEachProgramNode(p: Program, f: (e: Expr) => void): void {
  for (const l of p.locals) forEachNode(l.value, f);
  forEachNode(p.result, f);
}

/**
 * The free inputs a program reads, its called masks included (they read none: they only see
 * their arguments).
 * @param p the program
 * @returns the set of input names
 * @example
 * ```ts ignore
 * inputsOf(compileExpression({ expr: "q % 2 == h" }, "mask")); // Set { "q", "h" }
 * ```
 */
export function inputsOf(p: Program): Set<InputName> {
  const used = new Set<InputName>();
  forEachProgramNode(p, (e) => {
    if (e.op === "input") used.add(e.name);
  });
  return used;
}

/**
 * The reads of learnable constants in a program (locals, then the result), in order.
 * @param p a checked program
 * @returns the `element` nodes whose array is learnable
 * @example
 * ```ts
 * import { compileExpression } from "./expression_parse.ts";
 * import { learnableReads } from "./expression.ts";
 * const p = compileExpression({ expr: "s * c", constants: { c: 2 }, learnable: ["c"] }, "score");
 * learnableReads(p).length; // 1
 * ```
 */
export function learnableReads(p: Program): Extract<Expr, { op: "element" }>[] {
  const reads: Extract<Expr, { op: "element" }>[] = [];
  for (const root of [...p.locals.map((l) => l.value), p.result]) {
    forEachNode(root, (e) => {
      if (e.op === "element" && p.arrays[e.array].learnable) reads.push(e);
    });
  }
  return reads;
}
