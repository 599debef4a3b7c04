/**
 * WGSL that reads pattern parameters (periods, radii, windows, aux offsets) from the kernel's
 * slots in the aux buffer at run time instead of baking them in as constants. Changing a number
 * then changes only the aux buffer: the WGSL, apart from its comments, stays the same and the
 * pipeline is reused. The comment on each `let` still names the number, for a reader.
 * @module
 */
import type { ParamBlock } from "../aux_data.ts";
import type { ShaderModule } from "./shader_module.ts";

/** Builds the `let` lines that read parameters at the top of one WGSL function. */
export class ParamReader {
  /** The `let` lines, in slot order, each with a comment naming the value it holds now. */
  readonly lines: string[] = [];

  /**
   * @param m the module being built (the reading helpers are declared in it on first use)
   * @param params the kernel's parameter block
   * @param unique suffix each name with its slot (for functions reading several of a kind)
   */
  constructor(
    readonly m: ShaderModule,
    readonly params: ParamBlock,
    readonly unique = false,
  ) {}

  /**
   * Adds an unsigned parameter and a `let` reading it.
   * @param name the WGSL name (suffixed with the slot when `unique`)
   * @param value the value this pattern has
   * @param note what the value is, for the comment
   * @returns the WGSL name
   * @example
   * ```ts
   * import { AuxData } from "../aux_data.ts";
   * import { RandomTables } from "../random_table.ts";
   * import { ShaderModule } from "./shader_module.ts";
   * import { ParamReader } from "./params_wgsl.ts";
   * const reader = new ParamReader(new ShaderModule(), new AuxData(64, new RandomTables(64)).paramBlock());
   * reader.unsigned("period", 16, "stride(16)"); // "period"
   * reader.lines; // ["  let period = param(0u); // stride(16)"]
   * ```
   */
  unsigned(name: string, value: number, note: string): string {
    if (this.params.aux.constants) return this.#constant(name, `${value}u`, note);
    return this.#read(name, "param", this.params.unsigned(value), note);
  }

  /** Like `unsigned`, for an i32 (stored as its two's complement). */
  signed(name: string, value: number, note: string): string {
    if (this.params.aux.constants) return this.#constant(name, `${value}`, note);
    return this.#read(name, "signedParam", this.params.signed(value), note);
  }

  /** Like `unsigned`, for the aux offset of a data item (`aux.tokens`, `bitset`, ...). */
  dataOffset(name: string, data: number, note: string): string {
    // Baking constants, no parameter region precedes the data: the offset is final.
    if (this.params.aux.constants) return this.#constant(name, `${data}u`, note);
    return this.#read(name, "param", this.params.dataOffset(data), note);
  }

  #read(name: string, helper: "param" | "signedParam", slot: number, note: string): string {
    declareParamReader(this.m, this.params, helper);
    return this.#line(this.unique ? `${name}${slot}` : name, `${helper}(${slot}u)`, note);
  }

  #constant(name: string, literal: string, note: string): string {
    return this.#line(this.unique ? `${name}${this.lines.length}` : name, literal, note);
  }

  #line(id: string, value: string, note: string): string {
    this.lines.push(`  let ${id} = ${value}; // ${note}`);
    return id;
  }
}

function declareParamReader(
  m: ShaderModule,
  params: ParamBlock,
  helper: "param" | "signedParam",
): void {
  m.declare(
    "PARAMS",
    `
// This kernel's pattern parameters start at aux[PARAMS]: runtime values, so a pattern of the
// same structure with other numbers runs on the same pipeline.
const PARAMS = ${params.base}u;`,
  );
  m.declare(
    helper,
    helper === "param"
      ? `
fn param(slot: u32) -> u32 {
  return aux[PARAMS + slot];
}`
      : `
// Signed parameters are stored as their two's complement.
fn signedParam(slot: u32) -> i32 {
  return bitcast<i32>(aux[PARAMS + slot]);
}`,
  );
}
