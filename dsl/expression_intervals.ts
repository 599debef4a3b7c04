/**
 * Interval analysis of a predicate or score program: given a box of inputs (a tile's query and
 * key positions, N, the heads and batches), every subexpression gets an interval `[lo, hi]`
 * holding all the values it can take there; a comparison gets `[1, 1]` (true for every
 * pair), `[0, 0]` (false for every pair) or `[0, 1]` (unknown). The rules only ever widen, so
 * a verdict of true or false holds for every element of the box: the tile classifier calls a
 * tile FULL or EMPTY only then, and PARTIAL otherwise. The same walk, over all positions,
 * checks a program's integers against i32, its divisors against 0 and its indices against
 * their arrays (`expression_domain.ts`).
 *
 * `%` by a constant `M` uses congruences where the layout gives them: in residue order
 * (`residue(P)` with `M` dividing `P`) a tile's positions lie in a few classes mod `P`, so
 * `(q - k) % M` is known per tile even when `q - k` spans many multiples of `M`.
 * @module
 */
import type { Expr, Program } from "./expression.ts";

/** A closed interval; booleans are 0 (false) and 1 (true). Bounds may be infinite. */
export interface Interval {
  lo: number;
  hi: number;
}

/** Residue classes of a tile: every position `x` has `x ≡ c (mod period)` for a `c` in `[lo, hi]`. */
export interface ClassRange {
  period: number;
  lo: number;
  hi: number;
}

/** The inputs' ranges. */
export interface Box {
  q: Interval;
  k: Interval;
  n: number;
  h: Interval;
  b: Interval;
  s: Interval;
  qClasses?: ClassRange;
  kClasses?: ClassRange;
}

/** Called for every evaluated node with its interval and its operands' (domain checks). */
export type NodeCheck = (
  e: Expr,
  value: Interval,
  operands: Interval[],
  /** The program `e` belongs to (a registered mask's, inside a call), and that mask's name. */
  within: { program: Program; mask?: string },
) => void;

const ANY: Interval = { lo: -Infinity, hi: Infinity };
const TRUE: Interval = { lo: 1, hi: 1 };
const FALSE: Interval = { lo: 0, hi: 0 };
const UNKNOWN: Interval = { lo: 0, hi: 1 };

interface Frame {
  program: Program;
  box: Box;
  params: Interval[];
  locals: Interval[];
  check?: NodeCheck;
  mask?: string;
  /** Inside a registered mask: the call's argument expressions, in the caller's frame. */
  caller?: { args: Expr[]; frame: Frame };
}

/**
 * The interval of a program's result over a box.
 * @param p the program
 * @param box the inputs' ranges
 * @param check optional visitor of every node (for domain checks)
 * @returns `[lo, hi]`; for a predicate `[1, 1]` true everywhere, `[0, 0]` false everywhere
 * @example
 * ```ts
 * import { compileExpression } from "./expression_parse.ts";
 * import { programInterval } from "./expression_intervals.ts";
 * const p = compileExpression({ expr: "Math.abs(q - k) <= 4" }, "mask");
 * const box = (q0: number, q1: number, k0: number, k1: number) => ({
 *   q: { lo: q0, hi: q1 }, k: { lo: k0, hi: k1 }, n: 64,
 *   h: { lo: 0, hi: 0 }, b: { lo: 0, hi: 0 }, s: { lo: 0, hi: 0 },
 * });
 * programInterval(p, box(8, 9, 7, 10)); // { lo: 1, hi: 1 }: every pair allowed
 * programInterval(p, box(0, 7, 8, 15)); // { lo: 0, hi: 1 }: some are
 * ```
 */
export function programInterval(p: Program, box: Box, check?: NodeCheck): Interval {
  return run({ program: p, box, params: [], locals: [], check });
}

function run(f: Frame): Interval {
  for (const l of f.program.locals) f.locals.push(evaluate(l.value, f));
  return evaluate(f.program.result, f);
}

function evaluate(e: Expr, f: Frame): Interval {
  let operands: Interval[] = [];
  let value: Interval;
  switch (e.op) {
    case "input":
      value = e.name === "n" ? point(f.box.n) : f.box[e.name];
      break;
    case "param":
      value = f.params[e.index];
      break;
    case "local":
      value = f.locals[e.index];
      break;
    case "literal":
      value = typeof e.value === "boolean" ? (e.value ? TRUE : FALSE) : point(e.value);
      break;
    case "element": {
      operands = [evaluate(e.index, f)];
      value = elementRange(f.program.arrays[e.array].values, operands[0]);
      break;
    }
    case "neg":
      operands = [evaluate(e.arg, f)];
      value = negate(operands[0]);
      break;
    case "not":
      operands = [evaluate(e.arg, f)];
      value = { lo: 1 - operands[0].hi, hi: 1 - operands[0].lo };
      break;
    case "select": {
      operands = [evaluate(e.cond, f), evaluate(e.then, f), evaluate(e.else, f)];
      const [c, t, o] = operands;
      value = c.lo === 1 ? t : c.hi === 0 ? o : hull(t, o);
      break;
    }
    case "binary":
      operands = [evaluate(e.a, f), evaluate(e.b, f)];
      value = binary(e.fn, operands[0], operands[1]);
      if (e.fn === "mod") value = congruentModulo(e, value, operands[1], f);
      break;
    case "math":
      operands = e.args.map((a) => evaluate(a, f));
      value = math(e.fn, operands, e.args);
      break;
    case "call": {
      operands = e.args.map((a) => evaluate(a, f));
      const callee = f.program.masks[e.mask];
      const caller = { args: e.args, frame: f };
      value = run({ ...f, program: callee, params: operands, locals: [], mask: e.mask, caller });
      break;
    }
  }
  f.check?.(e, value, operands, f);
  return value;
}

/**
 * Narrows `a % M` (constant `M`) by a congruence: an interval `c` with `a ≡ x (mod M)` for some
 * `x` in `c`, for every value `a` takes, gives a second sound range `c mod M`; the true range
 * lies in both.
 */
function congruentModulo(
  e: Extract<Expr, { op: "binary" }>,
  value: Interval,
  divisor: Interval,
  f: Frame,
): Interval {
  if (divisor.lo !== divisor.hi || divisor.lo === 0 || !Number.isFinite(divisor.lo)) return value;
  const c = residues(e.a, Math.abs(divisor.lo), f);
  if (!c) return value;
  const other = modulo(c, divisor);
  return { lo: Math.max(value.lo, other.lo), hi: Math.min(value.hi, other.hi) };
}

/** A congruence interval of `e` modulo `size`, or undefined when none is narrower to find. */
function residues(e: Expr, size: number, f: Frame): Interval | undefined {
  switch (e.op) {
    case "input": {
      const classes = e.name === "q" ? f.box.qClasses : e.name === "k" ? f.box.kClasses : undefined;
      return classes && classes.period % size === 0
        ? { lo: classes.lo, hi: classes.hi }
        : undefined;
    }
    case "local":
      return residues(f.program.locals[e.index].value, size, f) ?? f.locals[e.index];
    case "param": // a registered mask's parameter: the argument, in the caller's frame
      return f.caller && residues(f.caller.args[e.index], size, f.caller.frame);
    case "literal":
      return typeof e.value === "number" ? point(e.value) : undefined;
    case "neg": {
      const r = residues(e.arg, size, f);
      return r && negate(r);
    }
    case "binary": {
      if (e.fn !== "+" && e.fn !== "-" && e.fn !== "*") return undefined;
      const a = residues(e.a, size, f), b = residues(e.b, size, f);
      if (!a && !b) return undefined;
      const ra = a ?? evaluate(e.a, f), rb = b ?? evaluate(e.b, f);
      if (e.fn === "*") {
        return e.a.op === "literal" || e.b.op === "literal" ? times(ra, rb) : undefined;
      }
      return e.fn === "+" ? plus(ra, rb) : minus(ra, rb);
    }
    default:
      return undefined;
  }
}

function binary(fn: Extract<Expr, { op: "binary" }>["fn"], a: Interval, b: Interval): Interval {
  switch (fn) {
    case "+":
      return plus(a, b);
    case "-":
      return minus(a, b);
    case "*":
      return times(a, b);
    case "/":
      return b.lo <= 0 && b.hi >= 0 ? ANY : corners(a, b, (x, y) => x / y);
    case "floorDiv":
      // Floor is monotone and a / b is monotone in each operand where b keeps its sign.
      return b.lo <= 0 && b.hi >= 0 ? ANY : corners(a, b, (x, y) => Math.floor(x / y));
    case "mod":
      return modulo(a, b);
    case "<":
      return a.hi < b.lo ? TRUE : a.lo >= b.hi ? FALSE : UNKNOWN;
    case "<=":
      return a.hi <= b.lo ? TRUE : a.lo > b.hi ? FALSE : UNKNOWN;
    case ">":
      return binary("<", b, a);
    case ">=":
      return binary("<=", b, a);
    case "==":
      return a.lo === a.hi && b.lo === b.hi && a.lo === b.lo
        ? TRUE
        : a.hi < b.lo || b.hi < a.lo
        ? FALSE
        : UNKNOWN;
    case "!=": {
      const eq = binary("==", a, b);
      return { lo: 1 - eq.hi, hi: 1 - eq.lo };
    }
    case "&&":
      return { lo: Math.min(a.lo, b.lo), hi: Math.min(a.hi, b.hi) };
    case "||":
      return { lo: Math.max(a.lo, b.lo), hi: Math.max(a.hi, b.hi) };
  }
}

/** `a mod |m|` (in `[0, |m|)`), `a` being a congruence interval when `m` is a constant. */
function modulo(a: Interval, m: Interval): Interval {
  const size = Math.max(Math.abs(m.lo), Math.abs(m.hi));
  if (!Number.isFinite(size)) return { lo: 0, hi: Infinity };
  if (m.lo === m.hi && Number.isFinite(a.lo) && Number.isFinite(a.hi)) {
    if (Math.floor(a.lo / size) === Math.floor(a.hi / size)) {
      return {
        lo: a.lo - size * Math.floor(a.lo / size),
        hi: a.hi - size * Math.floor(a.hi / size),
      };
    }
  }
  // A non-negative a below every |m| is its own remainder.
  const smallest = m.lo > 0 ? m.lo : m.hi < 0 ? -m.hi : 0;
  if (a.lo >= 0 && a.hi < smallest) return a;
  return { lo: 0, hi: size - 1 };
}

function math(fn: Extract<Expr, { op: "math" }>["fn"], args: Interval[], exprs: Expr[]): Interval {
  const [a, b] = args;
  switch (fn) {
    case "abs":
      return a.lo >= 0 ? a : a.hi <= 0 ? negate(a) : { lo: 0, hi: Math.max(-a.lo, a.hi) };
    case "min":
      return args.reduce((x, y) => ({ lo: Math.min(x.lo, y.lo), hi: Math.min(x.hi, y.hi) }));
    case "max":
      return args.reduce((x, y) => ({ lo: Math.max(x.lo, y.lo), hi: Math.max(x.hi, y.hi) }));
    case "floor":
      return { lo: Math.floor(a.lo), hi: Math.floor(a.hi) };
    case "exp":
      return { lo: Math.exp(a.lo), hi: Math.exp(a.hi) };
    case "tanh":
      return { lo: Math.tanh(a.lo), hi: Math.tanh(a.hi) };
    case "sqrt":
      return a.lo < 0 ? { lo: 0, hi: a.hi < 0 ? 0 : Math.sqrt(a.hi) } : monotone(a, Math.sqrt);
    case "log":
      return a.lo <= 0
        ? { lo: -Infinity, hi: a.hi <= 0 ? -Infinity : Math.log(a.hi) }
        : monotone(a, Math.log);
    case "pow": {
      const e = exprs[1];
      if (e.op === "literal" && integerPower(e.value)) return power(a, e.value as number);
      return a.lo > 0 ? corners(a, b, Math.pow) : ANY;
    }
  }
}

/**
 * The constant divisors of `%` in a program, registered masks included, at N: the divisors
 * whose interval over every input is one number (a literal, a constant, or a mask parameter
 * every call passes the same constant). In residue order modulo such a divisor, `(q - k) % P`
 * is constant on most tiles, so the planner tries that layout.
 * @param p the program
 * @param n N
 * @returns distinct divisors >= 2, in order of appearance
 * @example
 * ```ts
 * import { compileExpression } from "./expression_parse.ts";
 * import { constantDivisors } from "./expression_intervals.ts";
 * constantDivisors(compileExpression({ expr: "(q - k) % 3 == 0 && q % -4 != 1" }, "mask"), 64); // [3, 4]
 * ```
 */
export function constantDivisors(p: Program, n: number): number[] {
  const out: number[] = [];
  const any = { lo: 0, hi: 65535 };
  const box = { q: { lo: 0, hi: n - 1 }, k: { lo: 0, hi: n - 1 }, n, h: any, b: any, s: ANY };
  programInterval(p, box, (e, _value, operands) => {
    if (e.op !== "binary" || e.fn !== "mod") return;
    const d = operands[1];
    const size = Math.abs(d.lo);
    if (d.lo === d.hi && size >= 2 && Number.isFinite(size) && !out.includes(size)) out.push(size);
  });
  return out;
}

/**
 * Exponents the kernels lower to repeated multiplication (exact for any base sign, unlike WGSL's
 * `pow`, which is undefined for negative bases).
 * @param x an exponent
 * @returns whether `x` is an integer in `[0, 16]`
 * @example
 * ```ts
 * import { integerPower } from "./expression_intervals.ts";
 * integerPower(2); // true
 * ```
 */
export function integerPower(x: unknown): x is number {
  return typeof x === "number" && Number.isInteger(x) && x >= 0 && x <= 16;
}

function power(a: Interval, e: number): Interval {
  if (e === 0) return point(1);
  if (e % 2 === 1 || a.lo >= 0) return monotone(a, (x) => x ** e);
  if (a.hi <= 0) return { lo: a.hi ** e, hi: a.lo ** e };
  return { lo: 0, hi: Math.max(a.lo ** e, a.hi ** e) };
}

function elementRange(values: readonly number[], index: Interval): Interval {
  const lo = Math.max(0, index.lo), hi = Math.min(values.length - 1, index.hi);
  // An index past the array is refused by the domain check; until then, any entry may come.
  const from = lo <= hi ? lo : 0, to = lo <= hi ? hi : values.length - 1;
  let min = Infinity, max = -Infinity;
  for (let i = from; i <= to; i++) {
    min = Math.min(min, values[i]);
    max = Math.max(max, values[i]);
  }
  return { lo: min, hi: max };
}

function point(x: number): Interval {
  return { lo: x, hi: x };
}

function hull(a: Interval, b: Interval): Interval {
  return { lo: Math.min(a.lo, b.lo), hi: Math.max(a.hi, b.hi) };
}

function negate(a: Interval): Interval {
  return { lo: -a.hi, hi: -a.lo };
}

function plus(a: Interval, b: Interval): Interval {
  return { lo: a.lo + b.lo, hi: a.hi + b.hi };
}

function minus(a: Interval, b: Interval): Interval {
  return { lo: a.lo - b.hi, hi: a.hi - b.lo };
}

/** `0 * ±Infinity` is 0 here: an unbounded interval stands for finite values. */
function times(a: Interval, b: Interval): Interval {
  return corners(a, b, (x, y) => (x === 0 || y === 0 ? 0 : x * y));
}

function monotone(a: Interval, f: (x: number) => number): Interval {
  return { lo: f(a.lo), hi: f(a.hi) };
}

/** Extremes of `f` over the box when `f` is monotone in each operand; NaN widens to anything. */
function corners(a: Interval, b: Interval, f: (x: number, y: number) => number): Interval {
  const v = [f(a.lo, b.lo), f(a.lo, b.hi), f(a.hi, b.lo), f(a.hi, b.hi)];
  if (v.some(Number.isNaN)) return ANY;
  return { lo: Math.min(...v), hi: Math.max(...v) };
}
