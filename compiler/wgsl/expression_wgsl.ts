/**
 * WGSL for predicates and score modifiers written in TypeScript: each checked `Program` becomes
 * one function whose body mirrors the source (a `let` per `const`, one `return`), with the
 * source itself above it as a comment. Integers are i32 (the domain check proved they fit),
 * reals f32, and every operator is parenthesised, so WGSL's precedence rules never differ from
 * TypeScript's. `%` and `Math.floor(a / b)` go through helpers that use unsigned division only:
 * llvmpipe miscompiles signed `%` on negative operands, and DESIGN §2 wants the mathematical
 * modulo anyway. Captured arrays become module-scope `const` arrays.
 * @module
 */
import type { Expr, Program } from "../../dsl/expression.ts";
import { predicateProgram, scoreProgram } from "../../dsl/expression_check.ts";
import type { ScoreModifier } from "../../dsl/schema.ts";
import type { Atom } from "../atoms.ts";
import { integerPower } from "../../dsl/expression_intervals.ts";
import { f32, type ShaderModule } from "./shader_module.ts";
import { readsHeadOrBatch } from "../component_reads.ts";

type PredicateAtom = Extract<Atom, { kind: "predicate" }>;

/**
 * N as a program sees it: a number baked into the WGSL, or the name of an i32 the function takes
 * as a parameter (packed sequences, whose `n` is each sequence's key count).
 */
export type ProgramN = number | string;

/** The parameter list's `n`, where N is a runtime value. */
function nParams(n: ProgramN): string[] {
  return typeof n === "string" ? [n] : [];
}

/**
 * Declares a predicate atom's function and returns the call for pair `(q, k)`.
 * @param m the module being built
 * @param atom the predicate
 * @param n N (the source's `n`): a number, or the name of a runtime i32 (`ProgramN`)
 * @returns a boolean WGSL expression in `q`, `k` (and `n`, `h`, `b` where it takes them)
 * @example
 * ```ts
 * import { ShaderModule } from "./shader_module.ts";
 * import { predicateCall } from "./expression_wgsl.ts";
 * predicateCall(new ShaderModule(), { kind: "predicate", expr: "(q - k) % 3 == 0" }, 64);
 * // "predicate_xxxxxx(q, k)", and the module declares floorMod and predicate_xxxxxx
 * ```
 */
export function predicateCall(m: ShaderModule, atom: PredicateAtom, n: ProgramN): string {
  const program = predicateProgram(atom);
  const name = `predicate_${programHash(program)}`;
  const params = ["q", "k", ...nParams(n), ...(readsHeadOrBatch(atom) ? ["h", "b"] : [])];
  declareProgram(m, program, n, {
    name,
    signature: `${params.map((p) => `${p}: i32`).join(", ")}) -> bool`,
    what: "Predicate written in TypeScript",
  });
  return `${name}(${params.join(", ")})`;
}

/**
 * Declares `fn scoreModifier(s: f32, q: i32, k: i32, h: i32, b: i32) -> f32` for a scored
 * branch: the raw score `s = scale * q·k` in, the score the softmax uses out (`n: i32` last
 * where N is a runtime value).
 * @param m the module being built
 * @param score the modifier
 * @param n N (the source's `n`): a number, or the name of a runtime i32 (`ProgramN`)
 * @param learned where its learnable constants start in the `learned` buffer (read there)
 * @returns the function name
 * @example
 * ```ts
 * import { ShaderModule } from "./shader_module.ts";
 * import { declareScoreModifier } from "./expression_wgsl.ts";
 * declareScoreModifier(new ShaderModule(), { expr: "(s) => 30 * Math.tanh(s / 30)" }, 64); // "scoreModifier"
 * ```
 */
export function declareScoreModifier(
  m: ShaderModule,
  score: ScoreModifier,
  n: ProgramN,
  learned?: ReadonlyMap<string, number>,
): string {
  const runtimeN = nParams(n).map((p) => `, ${p}: i32`).join("");
  return declareProgram(m, scoreProgram(score), n, {
    name: "scoreModifier",
    signature: `s: f32, q: i32, k: i32, h: i32, b: i32${runtimeN}) -> f32`,
    what: "Score modifier written in TypeScript (s = scale * q·k)",
  }, learned);
}

function declareProgram(
  m: ShaderModule,
  program: Program,
  n: ProgramN,
  o: { name: string; signature: string; what: string },
  learned?: ReadonlyMap<string, number>,
): string {
  const emitter = new Emitter(m, program, n, learned);
  const lines = program.locals.map((l) => `  let v_${safe(l.name)} = ${emitter.emit(l.value)};`);
  const result = program.role === "score"
    ? emitter.real(program.result)
    : emitter.emit(program.result);
  const source = program.source.split("\n").map((line) => `//   ${line}`.trimEnd());
  return m.declare(
    o.name,
    `
// ${o.what}:
${source.join("\n")}
fn ${o.name}(${o.signature} {
${[...lines, `  return ${result};`].join("\n")}
}`,
  );
}

/** Turns one program's nodes into WGSL expressions, declaring helpers, arrays and callees. */
export class Emitter {
  /**
   * @param m the module
   * @param program the checked program
   * @param n N: a number, or the name of the runtime i32 that holds it (`ProgramN`)
   * @param learned where each learnable constant starts in the `learned` buffer; their reads
   *   come from there, so new values need no new WGSL
   */
  constructor(
    readonly m: ShaderModule,
    readonly program: Program,
    readonly n: ProgramN,
    readonly learned: ReadonlyMap<string, number> = new Map(),
  ) {}

  /** The node as an f32 expression (integers converted). */
  real(e: Expr): string {
    if (e.type !== "int") return this.emit(e);
    return e.op === "literal" ? paren(f32(e.value as number)) : `f32(${this.emit(e)})`;
  }

  emit(e: Expr): string {
    switch (e.op) {
      case "input":
        return e.name === "n" ? `${this.n}` : e.name;
      case "param":
      case "local":
        return `v_${safe(e.name)}`;
      case "literal":
        if (typeof e.value === "boolean") return `${e.value}`;
        return paren(e.type === "int" ? `${e.value}` : f32(e.value));
      case "element": {
        const at = this.learned.get(e.array);
        if (at !== undefined && this.program.arrays[e.array].learnable) {
          const index = e.index.op === "literal"
            ? `${e.index.value}u`
            : `u32(${this.emit(e.index)})`;
          return `learned[${at}u + ${index}]`;
        }
        return `${this.#array(e.array)}[${this.emit(e.index)}]`;
      }
      case "neg":
        return `(-${this.emit(e.arg)})`;
      case "not":
        return `(!${this.emit(e.arg)})`;
      case "select": {
        const arm = (x: Expr) => e.type === "real" ? this.real(x) : this.emit(x);
        return `select(${arm(e.else)}, ${arm(e.then)}, ${this.emit(e.cond)})`;
      }
      case "binary":
        return this.#binary(e);
      case "math":
        return this.#math(e);
      case "call": {
        const name = this.#callee(e.mask);
        return `${name}(${e.args.map((a) => this.emit(a)).join(", ")})`;
      }
    }
  }

  #binary(e: Extract<Expr, { op: "binary" }>): string {
    const { a, b } = e;
    switch (e.fn) {
      case "floorDiv":
        declareFloorDiv(this.m);
        return `floorDiv(${this.emit(a)}, ${this.emit(b)})`;
      case "mod":
        declareFloorMod(this.m);
        return `floorMod(${this.emit(a)}, ${this.emit(b)})`;
      case "&&":
      case "||":
        return `(${this.emit(a)} ${e.fn} ${this.emit(b)})`;
      default: {
        // Mixed integer and real operands compare or combine as reals, as in TypeScript.
        const real = e.fn === "/" || a.type === "real" || b.type === "real";
        const side = (x: Expr) => real ? this.real(x) : this.emit(x);
        return `(${side(a)} ${e.fn} ${side(b)})`;
      }
    }
  }

  #math(e: Extract<Expr, { op: "math" }>): string {
    const [a, b] = e.args;
    const arg = (x: Expr) => e.type === "real" ? this.real(x) : this.emit(x);
    switch (e.fn) {
      case "abs":
      case "floor":
        return `${e.fn}(${arg(a)})`;
      case "min":
      case "max":
        return e.args.map(arg).reduceRight((rest, x) => `${e.fn}(${x}, ${rest})`);
      case "exp":
      case "log":
      case "sqrt":
        return `${e.fn}(${this.real(a)})`;
      case "tanh":
        // |x| > 10 gives tanh = ±1 in f32; clamping keeps tanh's exp() from overflowing to NaN.
        return `tanh(clamp(${this.real(a)}, -10.0, 10.0))`;
      case "pow": {
        if (b.op === "literal" && integerPower(b.value)) {
          // Repeated multiplication: exact for negative bases, where WGSL's pow is undefined.
          const base = this.real(a);
          return b.value === 0 ? "1.0" : `(${Array(b.value).fill(base).join(" * ")})`;
        }
        return `pow(${this.real(a)}, ${this.real(b)})`;
      }
    }
  }

  #array(name: string): string {
    const array = this.program.arrays[name];
    const type = array.type === "int" ? "i32" : "f32";
    const id = `${safe(name)}_${hash(JSON.stringify(array))}`;
    const values = array.values.map((v) => array.type === "int" ? `${v}` : f32(v));
    return this.m.declare(
      id,
      `
// Captured constant ${name} (${values.length} entries).
const ${id} = array<${type}, ${values.length}>(${values.join(", ")});`,
    );
  }

  #callee(name: string): string {
    const callee = this.program.masks[name];
    const id = `mask_${safe(name)}_${programHash(callee)}`;
    const params = callee.params.map((p) => `v_${safe(p)}: i32`).join(", ");
    return declareProgram(this.m, callee, this.n, {
      name: id,
      signature: `${params}) -> bool`,
      what: `Registered mask ${name}`,
    });
  }
}

function declareFloorDiv(m: ShaderModule): void {
  m.declare(
    "floorDiv",
    `
// Math.floor(a / b) of integers, b != 0 (checked at compile time). Unsigned division only:
// llvmpipe miscompiled signed division and remainder of negative operands.
fn floorDiv(a: i32, b: i32) -> i32 {
  let size = u32(abs(b));
  let quotient = i32(u32(abs(a)) / size);
  if ((a < 0) == (b < 0)) { return quotient; }
  let exact = u32(quotient) * size == u32(abs(a));
  return -quotient - select(1, 0, exact);
}`,
  );
}

function declareFloorMod(m: ShaderModule): void {
  m.declare(
    "floorMod",
    `
// The mathematical modulo of DESIGN §2, m != 0: in [0, |m|) whatever the signs. Unsigned
// remainder only: llvmpipe miscompiled signed % of negative operands.
fn floorMod(a: i32, m: i32) -> i32 {
  let size = u32(abs(m));
  let r = u32(abs(a)) % size;
  return select(i32(r), i32((size - r) % size), a < 0);
}`,
  );
}

function paren(text: string): string {
  return text.startsWith("-") ? `(${text})` : text;
}

/** A JavaScript identifier as a WGSL one (`$` is not allowed there). */
export function safe(name: string): string {
  return name.replace(/\$/g, "_S");
}

/** Over the whole checked program: scalar constants live in its literals. */
function programHash(p: Program): string {
  return hash(JSON.stringify(p));
}

/** FNV-1a, six hex digits: stable WGSL names for a program's functions and arrays. */
function hash(text: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return (h >>> 0).toString(16).padStart(8, "0").slice(0, 6);
}
