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

  /** Adds a declaration under a name; a second add of the same name is ignored. */
  declare(name: string, code: string): string {
    if (!this.#declarations.has(name)) this.#declarations.set(name, code.trim());
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

/** Indents every line of `code` by `spaces`. */
export function indent(code: string, spaces: number): string {
  const pad = " ".repeat(spaces);
  return code.split("\n").map((l) => (l ? pad + l : l)).join("\n");
}
