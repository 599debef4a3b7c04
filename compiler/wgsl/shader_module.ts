/**
 * A WGSL module under construction: a header comment, declarations added once each and only
 * when used (helpers are never pasted twice), then the entry point.
 * @module
 */

/** Collects the pieces of one WGSL module in a deterministic order. */
export class ShaderModule {
  readonly #header: string[] = [];
  readonly #enables: string[] = [];
  readonly #declarations = new Map<string, string>();

  /** A line of the header comment (pattern, tile shape, workgroup size). */
  comment(line: string): this {
    this.#header.push(`// ${line}`);
    return this;
  }

  /** An `enable` directive (e.g. `f16`), which WGSL requires before any declaration. */
  enable(extension: string): this {
    if (!this.#enables.includes(extension)) this.#enables.push(extension);
    return this;
  }

  /**
   * Adds a declaration under a name; a second add of the same name and code is ignored. The same
   * name with other code is a compiler bug (two kernels sharing a module would read one of them).
   */
  declare(name: string, code: string): string {
    const known = this.#declarations.get(name);
    if (known === undefined) this.#declarations.set(name, code.trim());
    else if (known !== code.trim() && pipelineKey(known) !== pipelineKey(code)) {
      throw new Error(`Weft internal error: WGSL declaration ${name} added twice, differently`);
    }
    return name;
  }

  /** The full module text. */
  render(entryPoint: string): string {
    return [
      this.#header.join("\n") + this.#enables.map((e) => `\nenable ${e};`).join(""),
      ...this.#declarations.values(),
      entryPoint.trim(),
    ].join("\n\n") + "\n";
  }
}

/** Formats a number as a WGSL f32 literal (always with a decimal point or exponent). */
export function f32(x: number): string {
  if (!Number.isFinite(x)) throw new Error(`Weft internal error: non-finite WGSL literal ${x}`);
  const s = String(x);
  return /[.e]/.test(s) ? s : `${s}.0`;
}

/**
 * Declares `fn negativeInfinity() -> f32`: the LSE of an empty row (DESIGN §1), which WGSL can
 * only spell as a bit pattern.
 * @param m the module being built
 * @returns the function name
 * @example
 * ```ts
 * import { declareNegativeInfinity, ShaderModule } from "./shader_module.ts";
 * declareNegativeInfinity(new ShaderModule()); // "negativeInfinity"
 * ```
 */
export function declareNegativeInfinity(m: ShaderModule): string {
  return m.declare(
    "negativeInfinity",
    `
// WGSL has no infinity literal; LSE of an empty row is -inf (DESIGN §1). The bits are a
// \`let\`: Tint (Dawn) refuses a constant expression whose value is infinite.
fn negativeInfinity() -> f32 {
  let bits = 0xff800000u;
  return bitcast<f32>(bits);
}`,
  );
}

/**
 * What identifies a compiled pipeline: the WGSL without its comments and blank lines. Comments
 * may name the pattern's numbers for a reader (`// ring(128)`); the code itself reads them from
 * aux, so two patterns of the same structure at the same shape have the same key. A different
 * structure (another layout, atom kind or component count) is different code and compiles anew.
 * WGSL has no string literals, so every `//` starts a comment.
 * @param wgsl a module's text
 * @returns the text without `//` and `/* *\/` comments, trailing spaces and blank lines
 * @example
 * ```ts
 * import { pipelineKey } from "./shader_module.ts";
 * pipelineKey("// ring(128)\nlet r = signedParam(0u); // radius\n"); // "let r = signedParam(0u);"
 * ```
 */
export function pipelineKey(wgsl: string): string {
  return wgsl
    .replace(/\/\*[\s\S]*?\*\//g, "")
    .split("\n")
    .map((line) => line.replace(/\/\/.*$/, "").trimEnd())
    .filter((line) => line !== "")
    .join("\n");
}
