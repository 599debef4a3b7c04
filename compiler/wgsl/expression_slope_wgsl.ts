/**
 * WGSL for a score modifier's derivative with respect to the raw score `s`, which the backward
 * pass multiplies into dS (DESIGN §6): forward-mode differentiation of the same checked
 * `Program` the forward kernel and the reference run, node by node, beside the values
 * (`Emitter`). Integers, positions, comparisons, `%`, floor division, `Math.floor` and
 * registered masks have derivative 0; `abs` has the sign and `min`/`max` the chosen argument's,
 * almost everywhere, as in the reference's interpreter (`scoreDerivativeFunction`). Zeros are
 * folded away, so a modifier that only adds a bias to `s` differentiates to `1.0`.
 * @module
 */
import { type Expr, learnableReads, type Program } from "../../dsl/expression.ts";
import { scoreProgram } from "../../dsl/expression_check.ts";
import type { ScoreModifier } from "../../dsl/schema.ts";
import { integerPower } from "../../dsl/expression_intervals.ts";
import { Emitter, type ProgramN, safe } from "./expression_wgsl.ts";
import type { ShaderModule } from "./shader_module.ts";

/**
 * Declares `fn scoreModifierSlope(s: f32, q: i32, k: i32, h: i32, b: i32) -> f32`: ∂score/∂s
 * of a scored branch's modifier (`n: i32` last where N is a runtime value).
 * @param m the module being built
 * @param score the modifier
 * @param n N (the source's `n`): a number, or the name of a runtime i32 (`ProgramN`)
 * @param learned where its learnable constants start in the `learned` buffer (read there)
 * @returns the function name
 * @example
 * ```ts
 * import { ShaderModule } from "./shader_module.ts";
 * import { declareScoreSlope } from "./expression_slope_wgsl.ts";
 * declareScoreSlope(new ShaderModule(), { expr: "s * s - q" }, 64); // "scoreModifierSlope"
 * ```
 */
export function declareScoreSlope(
  m: ShaderModule,
  score: ScoreModifier,
  n: ProgramN,
  learned?: ReadonlyMap<string, number>,
): string {
  const program = scoreProgram(score);
  const slope = new SlopeEmitter(new Emitter(m, program, n, learned), program);
  const lines = program.locals.flatMap((l) => {
    const name = safe(l.name);
    return [
      `  let v_${name} = ${slope.values.emit(l.value)};`,
      ...(l.value.type === "real" ? [`  let d_${name} = ${slope.emit(l.value)};`] : []),
    ];
  });
  const source = program.source.split("\n").map((line) => `//   ${line}`.trimEnd());
  return m.declare(
    "scoreModifierSlope",
    `
// The derivative in s of the score modifier:
${source.join("\n")}
fn scoreModifierSlope(s: f32, q: i32, k: i32, h: i32, b: i32${runtimeN(n)}) -> f32 {
${[...lines, `  return ${slope.emit(program.result)};`].join("\n")}
}`,
  );
}

/**
 * Declares, for each read of a learnable constant in a scored branch's modifier (dsl
 * `learnableReads`), `fn scoreConstantReadI(s, q, k, h, b) -> ConstantRead`: the entry read
 * there and the score's derivative through that read, forward-mode from the read as from `s`
 * above. Returns the WGSL that adds `dScore` times each derivative into this row's slot of
 * `dConstRows` (`row * LEARNABLE` plus the constant's offset and the entry).
 * @param m the module being built
 * @param score the modifier
 * @param n N: a number, or the name of a runtime i32 (`ProgramN`), which the statements pass
 * @param offsets each learnable constant's first entry in a row's slot, and in `learned`
 * @returns the statements, or "" when the modifier reads nothing learnable
 * @example
 * ```ts
 * import { ShaderModule } from "./shader_module.ts";
 * import { declareConstantReads } from "./expression_slope_wgsl.ts";
 * const score = { expr: "s * c", constants: { c: 2 }, learnable: ["c"] };
 * declareConstantReads(new ShaderModule(), score, 64, new Map([["c", 0]])); // one read's add
 * ```
 */
export function declareConstantReads(
  m: ShaderModule,
  score: ScoreModifier,
  n: ProgramN,
  offsets: ReadonlyMap<string, number>,
): string {
  const program = scoreProgram(score);
  const reads = learnableReads(program);
  if (!reads.length) return "";
  m.declare(
    "constantRead",
    `
// One read of a learnable constant: the entry read, and the score's derivative through it.
struct ConstantRead { index: i32, slope: f32 }`,
  );
  const source = program.source.split("\n").map((line) => `//   ${line}`.trimEnd());
  return reads.map((read, r) => {
    const values = new Emitter(m, program, n, offsets);
    const slope = new SlopeEmitter(values, program, read);
    const lines = program.locals.flatMap((l) => {
      const name = safe(l.name);
      return [
        `  let v_${name} = ${values.emit(l.value)};`,
        ...(l.value.type === "real" ? [`  let d_${name} = ${slope.emit(l.value)};`] : []),
      ];
    });
    const name = m.declare(
      `scoreConstantRead${r}`,
      `
// Read ${r} of learnable ${read.array} (at "${
        read.origin.text.replace(/\s+/g, " ")
      }") in the score modifier:
${source.join("\n")}
fn scoreConstantRead${r}(s: f32, q: i32, k: i32, h: i32, b: i32${runtimeN(n)}) -> ConstantRead {
${lines.join("\n")}
  return ConstantRead(${values.emit(read.index)}, ${slope.emit(program.result)});
}`,
    );
    const at = `row * LEARNABLE + ${offsets.get(read.array)}u + u32(c${r}.index)`;
    const args = `s, q, k, h, b${typeof n === "string" ? `, ${n}` : ""}`;
    return `          { let c${r} = ${name}(${args}); dConstRows[${at}] += dScore * c${r}.slope; }`;
  }).join("\n");
}

/** The parameter list's `n: i32` where N is a runtime value. */
function runtimeN(n: ProgramN): string {
  return typeof n === "string" ? `, ${n}: i32` : "";
}

const ZERO = "0.0";

/** Sum and product of derivative terms, with zeros and ones folded away. */
function add(a: string, b: string, sign = "+"): string {
  if (b === ZERO) return a;
  if (a === ZERO) return sign === "+" ? b : `(-${b})`;
  return `(${a} ${sign} ${b})`;
}

function mul(a: string, b: string): string {
  if (a === ZERO || b === ZERO) return ZERO;
  if (a === "1.0") return b;
  if (b === "1.0") return a;
  return `(${a} * ${b})`;
}

/**
 * Each node's derivative in the seed (the raw score `s`, or one read of a learnable constant),
 * as a WGSL f32 expression over the values `Emitter` writes.
 */
class SlopeEmitter {
  constructor(
    readonly values: Emitter,
    readonly program: Program,
    readonly seed: "s" | Expr = "s",
  ) {}

  emit(e: Expr): string {
    if (e === this.seed) return "1.0";
    if (e.type !== "real") return ZERO; // integers and booleans do not move with s
    switch (e.op) {
      case "input":
        return e.name === "s" && this.seed === "s" ? "1.0" : ZERO;
      case "local":
        return `d_${safe(e.name)}`;
      case "neg": {
        const d = this.emit(e.arg);
        return d === ZERO ? ZERO : `(-${d})`;
      }
      case "select": {
        const t = this.emit(e.then), o = this.emit(e.else);
        return t === ZERO && o === ZERO ? ZERO : `select(${o}, ${t}, ${this.values.emit(e.cond)})`;
      }
      case "binary":
        return this.#binary(e);
      case "math":
        return this.#math(e);
      default:
        return ZERO; // literals, parameters, captured arrays, mask calls
    }
  }

  #binary(e: Extract<Expr, { op: "binary" }>): string {
    const v = (x: Expr) => this.values.real(x);
    const { a, b } = e, da = this.emit(a), db = this.emit(b);
    switch (e.fn) {
      case "+":
      case "-":
        return add(da, db, e.fn);
      case "*":
        return add(mul(da, v(b)), mul(v(a), db));
      case "/":
        return db === ZERO
          ? (da === ZERO ? ZERO : `(${da} / ${v(b)})`)
          : `((${mul(da, v(b))} - ${mul(v(a), db)}) / (${v(b)} * ${v(b)}))`;
      default:
        return ZERO; // floor division and % take integers
    }
  }

  #math(e: Extract<Expr, { op: "math" }>): string {
    const [a, b] = e.args;
    const v = (x: Expr) => this.values.real(x);
    const da = this.emit(a);
    switch (e.fn) {
      case "abs":
        return mul(`sign(${v(a)})`, da);
      case "floor":
        return ZERO;
      case "min":
      case "max": {
        // The derivative of the argument chosen, as `Emitter` nests min/max from the right.
        const pick = e.fn === "min" ? "<=" : ">=";
        const chain = (args: Expr[]): { value: string; slope: string } => {
          if (args.length === 1) return { value: v(args[0]), slope: this.emit(args[0]) };
          const rest = chain(args.slice(1));
          const here = v(args[0]), d = this.emit(args[0]);
          return {
            value: `${e.fn}(${here}, ${rest.value})`,
            slope: d === ZERO && rest.slope === ZERO
              ? ZERO
              : `select(${rest.slope}, ${d}, ${here} ${pick} ${rest.value})`,
          };
        };
        return chain(e.args).slope;
      }
      case "exp":
        return mul(`exp(${v(a)})`, da);
      case "log":
        return da === ZERO ? ZERO : `(${da} / ${v(a)})`;
      case "sqrt":
        return da === ZERO ? ZERO : `(${da} / (2.0 * sqrt(${v(a)})))`;
      case "tanh": {
        // The value clamps its argument (expression_wgsl.ts): outside ±10 the slope is 0.
        const x = `clamp(${v(a)}, -10.0, 10.0)`;
        return mul(`(1.0 - tanh(${x}) * tanh(${x}))`, da);
      }
      case "pow": {
        const db = this.emit(b);
        if (b.op === "literal" && integerPower(b.value)) {
          const n = b.value as number;
          if (n === 0 || da === ZERO) return ZERO;
          const base = v(a);
          const power = n === 1 ? "1.0" : `(${n}.0 * ${Array(n - 1).fill(base).join(" * ")})`;
          return mul(power, da);
        }
        const value = `pow(${v(a)}, ${v(b)})`;
        return add(
          mul(`(${v(b)} * pow(${v(a)}, ${v(b)} - 1.0))`, da),
          mul(`(${value} * log(${v(a)}))`, db),
        );
      }
    }
  }
}
