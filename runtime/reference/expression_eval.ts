/**
 * The CPU reference's interpreter for predicates and score modifiers: it runs the same checked
 * `Program` the kernels are generated from, in float64, with Weft's semantics (DESIGN §2: `%`
 * is the mathematical modulo; `Math.floor(a / b)` of integers is floor division). The program
 * is turned into nested closures once, so each pair costs a few calls.
 * @module
 */
import { type Expr, type InputName, learnableReads, type Program } from "../../dsl/expression.ts";

type Value = number | boolean;
/** One call's state: the free inputs, a registered mask's parameters, the locals so far. */
interface Frame {
  inputs: Record<InputName, number>;
  params: number[];
  locals: Value[];
}
type Eval = (f: Frame) => Value;

/**
 * Mathematical modulo (DESIGN §2): in `[0, |m|)` whatever the signs.
 * @param a an integer
 * @param m a nonzero integer
 * @returns `a mod |m|`
 * @example
 * ```ts
 * import { floorMod } from "./expression_eval.ts";
 * floorMod(-7, 3); // 2
 * ```
 */
export function floorMod(a: number, m: number): number {
  const size = Math.abs(m);
  return a - size * Math.floor(a / size);
}

/**
 * A predicate as a function of the pair, for one (head, batch).
 * @param p the predicate's program
 * @param n N
 * @param head the query head `h`
 * @param batch the batch index `b`
 * @returns `(q, k) => allowed`
 * @example
 * ```ts
 * import { compileExpression } from "../../dsl/expression_parse.ts";
 * import { predicateFunction } from "./expression_eval.ts";
 * const allowed = predicateFunction(compileExpression({ expr: "(q - k) % 3 == 0" }, "mask"), 16);
 * console.log(allowed(1, 4), allowed(1, 5)); // true false
 * ```
 */
export function predicateFunction(
  p: Program,
  n: number,
  head = 0,
  batch = 0,
): (q: number, k: number) => boolean {
  const run = programFunction(p);
  const frame: Frame = {
    inputs: { q: 0, k: 0, n, h: head, b: batch, s: 0 },
    params: [],
    locals: [],
  };
  return (q, k) => {
    frame.inputs.q = q;
    frame.inputs.k = k;
    return run(frame) as boolean;
  };
}

/**
 * A score modifier as a function.
 * @param p the modifier's program
 * @param n N
 * @returns `(s, q, k, h, b) => modified score`
 * @example
 * ```ts
 * import { compileExpression } from "../../dsl/expression_parse.ts";
 * import { scoreFunction } from "./expression_eval.ts";
 * const f = scoreFunction(compileExpression({ expr: "s - Math.abs(q - k)" }, "score"), 16);
 * f(1.5, 2, 5, 0, 0); // -1.5
 * ```
 */
export function scoreFunction(
  p: Program,
  n: number,
): (s: number, q: number, k: number, h: number, b: number) => number {
  const run = programFunction(p);
  const frame: Frame = { inputs: { q: 0, k: 0, n, h: 0, b: 0, s: 0 }, params: [], locals: [] };
  return (s, q, k, h, b) => {
    const inputs = frame.inputs;
    inputs.s = s, inputs.q = q, inputs.k = k, inputs.h = h, inputs.b = b;
    return run(frame) as number;
  };
}

const compiled = new WeakMap<Program, Eval>();

/** Evaluates the locals in order, then the result. */
function programFunction(p: Program): Eval {
  let run = compiled.get(p);
  if (run) return run;
  const locals = p.locals.map((l) => node(l.value, p));
  const result = node(p.result, p);
  run = (f) => {
    f.locals.length = 0;
    for (let i = 0; i < locals.length; i++) f.locals.push(locals[i](f));
    return result(f);
  };
  compiled.set(p, run);
  return run;
}

function node(e: Expr, p: Program): Eval {
  switch (e.op) {
    case "input": {
      const name = e.name;
      return (f) => f.inputs[name];
    }
    case "param": {
      const i = e.index;
      return (f) => f.params[i];
    }
    case "local": {
      const i = e.index;
      return (f) => f.locals[i];
    }
    case "literal": {
      const v = e.value;
      return () => v;
    }
    case "element": {
      const values = p.arrays[e.array].values, index = node(e.index, p), name = e.array;
      return (f) => {
        const i = index(f) as number;
        if (!(i >= 0 && i < values.length)) {
          throw new RangeError(
            `Weft reference: ${name}[${i}] is outside its ${values.length} entries`,
          );
        }
        return values[i];
      };
    }
    case "neg": {
      const a = node(e.arg, p);
      return (f) => -(a(f) as number);
    }
    case "not": {
      const a = node(e.arg, p);
      return (f) => !a(f);
    }
    case "select": {
      const c = node(e.cond, p), t = node(e.then, p), o = node(e.else, p);
      return (f) => c(f) ? t(f) : o(f);
    }
    case "binary":
      return binary(e.fn, node(e.a, p), node(e.b, p));
    case "math":
      return math(e.fn, e.args.map((a) => node(a, p)));
    case "call": {
      const callee = p.masks[e.mask];
      const run = programFunction(callee);
      const args = e.args.map((a) => node(a, p));
      return (f) => {
        const frame: Frame = {
          inputs: f.inputs,
          params: args.map((a) => a(f) as number),
          locals: [],
        };
        return run(frame);
      };
    }
  }
}

function binary(fn: Extract<Expr, { op: "binary" }>["fn"], a: Eval, b: Eval): Eval {
  type N = number;
  switch (fn) {
    case "+":
      return (f) => (a(f) as N) + (b(f) as N);
    case "-":
      return (f) => (a(f) as N) - (b(f) as N);
    case "*":
      return (f) => (a(f) as N) * (b(f) as N);
    case "/":
      return (f) => (a(f) as N) / (b(f) as N);
    case "floorDiv":
      // Exact for i32 operands: the quotient's distance from an integer is above float64's ulp.
      return (f) => Math.floor((a(f) as N) / (b(f) as N));
    case "mod":
      return (f) => floorMod(a(f) as N, b(f) as N);
    case "<":
      return (f) => (a(f) as N) < (b(f) as N);
    case "<=":
      return (f) => (a(f) as N) <= (b(f) as N);
    case ">":
      return (f) => (a(f) as N) > (b(f) as N);
    case ">=":
      return (f) => (a(f) as N) >= (b(f) as N);
    case "==":
      return (f) => a(f) === b(f);
    case "!=":
      return (f) => a(f) !== b(f);
    case "&&":
      return (f) => (a(f) as boolean) && (b(f) as boolean);
    case "||":
      return (f) => (a(f) as boolean) || (b(f) as boolean);
  }
}

function math(fn: Extract<Expr, { op: "math" }>["fn"], args: Eval[]): Eval {
  const [a, b] = args;
  type N = number;
  switch (fn) {
    case "abs":
      return (f) => Math.abs(a(f) as N);
    case "min":
      return (f) => Math.min(...args.map((x) => x(f) as N));
    case "max":
      return (f) => Math.max(...args.map((x) => x(f) as N));
    case "floor":
      return (f) => Math.floor(a(f) as N);
    case "exp":
      return (f) => Math.exp(a(f) as N);
    case "log":
      return (f) => Math.log(a(f) as N);
    case "tanh":
      return (f) => Math.tanh(a(f) as N);
    case "sqrt":
      return (f) => Math.sqrt(a(f) as N);
    case "pow":
      return (f) => Math.pow(a(f) as N, b(f) as N);
  }
}

/**
 * A score modifier's derivative with respect to the raw score `s`, by forward-mode
 * differentiation of the same checked program the kernels are generated from: every node
 * carries its value and its derivative. Integer parts (positions, `%`, floor division,
 * comparisons, registered masks) and `Math.floor` have derivative 0; `abs` has the sign,
 * `min`/`max` the chosen argument's, almost everywhere.
 * @param p the modifier's program
 * @param n N
 * @returns `(s, q, k, h, b) => ∂score/∂s`
 * @example
 * ```ts
 * import { compileExpression } from "../../dsl/expression_parse.ts";
 * import { scoreDerivativeFunction } from "./expression_eval.ts";
 * const df = scoreDerivativeFunction(compileExpression({ expr: "s * s - q" }, "score"), 16);
 * df(1.5, 2, 5, 0, 0); // 3
 * ```
 */
export function scoreDerivativeFunction(
  p: Program,
  n: number,
): (s: number, q: number, k: number, h: number, b: number) => number {
  const evaluate = dualProgram(p, n, "s");
  return (s, q, k, h, b) => evaluate(s, q, k, h, b).result[1];
}

/**
 * A program's result with its derivative in `seed`, at (s, q, k, h, b): locals first, then the
 * result, in one frame (which the caller may read the locals' values from until the next call).
 */
function dualProgram(
  p: Program,
  n: number,
  seed: Seed,
): (s: number, q: number, k: number, h: number, b: number) => { result: Dual; frame: DualFrame } {
  const locals = p.locals.map((l) => dualNode(l.value, p, seed));
  const result = dualNode(p.result, p, seed);
  const frame: DualFrame = {
    inputs: { q: 0, k: 0, n, h: 0, b: 0, s: 0 },
    params: [],
    locals: [],
    duals: [],
  };
  return (s, q, k, h, b) => {
    const inputs = frame.inputs;
    inputs.s = s, inputs.q = q, inputs.k = k, inputs.h = h, inputs.b = b;
    frame.locals.length = 0;
    frame.duals.length = 0;
    for (const local of locals) {
      const [v, d] = local(frame);
      frame.locals.push(v);
      frame.duals.push(d);
    }
    return { result: result(frame), frame };
  };
}

/** One learnable constant's entry that a score reads, and the score's derivative in it. */
export interface ConstantSlope {
  /** The constant's name. */
  name: string;
  /** The entry (0 for a learnable number). */
  index: number;
  /** ∂score/∂entry through this read. */
  slope: number;
}

/**
 * A score modifier's derivatives with respect to its learnable constants: for each read of a
 * learnable entry in the program (`slopes[h]`, or a learnable number), the entry read at
 * (s, q, k, h, b) and the score's derivative through that read, by the same forward-mode
 * differentiation as `scoreDerivativeFunction`, seeded at the read. A constant read twice
 * gives two terms, which add.
 * @param p the modifier's program
 * @param n N
 * @returns `(s, q, k, h, b) => reads`, or undefined when nothing is learnable
 * @example
 * ```ts
 * import { compileExpression } from "../../dsl/expression_parse.ts";
 * import { scoreConstantSlopesFunction } from "./expression_eval.ts";
 * const p = compileExpression({
 *   expr: "(s, q, k, h) => s - m[h] * (q - k)", constants: { m: [0.5, 0.25] }, learnable: ["m"],
 * }, "score");
 * scoreConstantSlopesFunction(p, 16)!(1, 5, 2, 1, 0); // [{ name: "m", index: 1, slope: -3 }]
 * ```
 */
export function scoreConstantSlopesFunction(
  p: Program,
  n: number,
): ((s: number, q: number, k: number, h: number, b: number) => ConstantSlope[]) | undefined {
  const reads = learnableReads(p);
  if (!reads.length) return undefined;
  const terms = reads.map((read) => ({
    name: read.array,
    index: node(read.index, p),
    evaluate: dualProgram(p, n, read),
  }));
  return (s, q, k, h, b) =>
    terms.map((t) => {
      const { result, frame } = t.evaluate(s, q, k, h, b);
      return { name: t.name, index: t.index(frame) as number, slope: result[1] };
    });
}

/** A frame whose locals also carry their derivatives. */
interface DualFrame extends Frame {
  duals: number[];
}
/** A value and its derivative with respect to the seed (0 for booleans and integers). */
type Dual = [Value, number];
/** What a dual evaluation differentiates by: the raw score, or one learnable entry's read. */
type Seed = "s" | Expr;
type DualEval = (f: DualFrame) => Dual;

function dualNode(e: Expr, p: Program, seed: Seed = "s"): DualEval {
  const constant = (): DualEval => {
    const value = node(e, p);
    return (f) => [value(f), 0];
  };
  switch (e.op) {
    case "input": {
      const name = e.name, d = name === "s" && seed === "s" ? 1 : 0;
      return (f) => [f.inputs[name], d];
    }
    case "local": {
      const i = e.index;
      return (f) => [f.locals[i], f.duals[i]];
    }
    case "neg": {
      const a = dualNode(e.arg, p, seed);
      return (f) => {
        const [v, d] = a(f);
        return [-(v as number), -d];
      };
    }
    case "select": {
      const c = node(e.cond, p), t = dualNode(e.then, p, seed), o = dualNode(e.else, p, seed);
      return (f) => c(f) ? t(f) : o(f);
    }
    case "binary":
      return dualBinary(e.fn, dualNode(e.a, p, seed), dualNode(e.b, p, seed)) ?? constant();
    case "math":
      return dualMath(e.fn, e.args.map((a) => dualNode(a, p, seed)));
    case "element": {
      if (e !== seed) return constant();
      const value = node(e, p);
      return (f) => [value(f), 1];
    }
    default:
      // Parameters, literals, array elements, negations of booleans and mask calls: no `s`.
      return constant();
  }
}

function dualBinary(
  fn: Extract<Expr, { op: "binary" }>["fn"],
  a: DualEval,
  b: DualEval,
): DualEval | undefined {
  type N = number;
  const both = (rule: (x: N, dx: N, y: N, dy: N) => Dual): DualEval => (f) => {
    const [x, dx] = a(f), [y, dy] = b(f);
    return rule(x as N, dx, y as N, dy);
  };
  switch (fn) {
    case "+":
      return both((x, dx, y, dy) => [x + y, dx + dy]);
    case "-":
      return both((x, dx, y, dy) => [x - y, dx - dy]);
    case "*":
      return both((x, dx, y, dy) => [x * y, dx * y + x * dy]);
    case "/":
      return both((x, dx, y, dy) => [x / y, (dx * y - x * dy) / (y * y)]);
    case "floorDiv":
      return both((x, _dx, y) => [Math.floor(x / y), 0]);
    case "mod":
      return both((x, _dx, y) => [floorMod(x, y), 0]); // integers only (expression_check)
    default:
      return undefined; // comparisons and logic: booleans
  }
}

function dualMath(fn: Extract<Expr, { op: "math" }>["fn"], args: DualEval[]): DualEval {
  type N = number;
  const [a, b] = args;
  const one = (rule: (x: N, dx: N) => Dual): DualEval => (f) => {
    const [x, dx] = a(f);
    return rule(x as N, dx);
  };
  switch (fn) {
    case "abs":
      return one((x, dx) => [Math.abs(x), Math.sign(x) * dx]);
    case "min":
    case "max":
      return (f) => {
        const all = args.map((x) => x(f));
        let best = all[0];
        for (const c of all) {
          if (fn === "min" ? (c[0] as N) < (best[0] as N) : (c[0] as N) > (best[0] as N)) best = c;
        }
        return best;
      };
    case "floor":
      return one((x) => [Math.floor(x), 0]);
    case "exp":
      return one((x, dx) => {
        const e = Math.exp(x);
        return [e, e * dx];
      });
    case "log":
      return one((x, dx) => [Math.log(x), dx / x]);
    case "tanh":
      return one((x, dx) => {
        const t = Math.tanh(x);
        return [t, (1 - t * t) * dx];
      });
    case "sqrt":
      return one((x, dx) => {
        const r = Math.sqrt(x);
        return [r, dx / (2 * r)];
      });
    case "pow":
      return (f) => {
        const [x, dx] = a(f), [y, dy] = b(f);
        const v = Math.pow(x as N, y as N);
        const dLog = dy === 0 ? 0 : v * Math.log(x as N) * dy;
        const dBase = dx === 0 ? 0 : (y as N) * Math.pow(x as N, (y as N) - 1) * dx;
        return [v, dBase + dLog];
      };
  }
}
