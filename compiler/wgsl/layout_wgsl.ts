/**
 * WGSL for layouts: a function from a layout index to a sequence position, -1 past the end.
 * @module
 */
import type { AuxData } from "../aux_data.ts";
import { type Layout, layoutCount, residueGeometry } from "../layout.ts";
import type { ShaderModule } from "./shader_module.ts";

/**
 * Declares the position function of a layout and returns its name.
 * @param m the module being built
 * @param layout the layout
 * @param n N
 * @param aux aux data (gathered layouts read their tokens from it)
 * @returns the WGSL function name, `fn name(i: u32) -> i32`
 * @example
 * ```ts
 * import { ShaderModule } from "./shader_module.ts";
 * import { declareLayout } from "./layout_wgsl.ts";
 * declareLayout(new ShaderModule(), { kind: "identity" }, 100, undefined as never); // "identityPosition"
 * ```
 */
export function declareLayout(m: ShaderModule, layout: Layout, n: number, aux: AuxData): string {
  const count = layoutCount(layout, n);
  switch (layout.kind) {
    case "identity":
      return m.declare(
        "identityPosition",
        `
fn identityPosition(i: u32) -> i32 {
  return select(-1, i32(i), i < ${count}u);
}`,
      );
    case "residue": {
      const g = residueGeometry(layout.period, n);
      const name = `residuePosition${layout.period}`;
      // Classes c < LONG_CLASSES hold LONG positions, the rest SHORT: N = SHORT * P + LONG_CLASSES.
      return m.declare(
        name,
        `
// Residue order for stride(${layout.period}): index i -> class c, rank r -> position c + r * ${layout.period}.
fn ${name}(i: u32) -> i32 {
  if (i >= ${count}u) { return -1; }
  let longSpan = ${g.longCount}u * ${g.long}u;
  if (i < longSpan) {
    return i32(i / ${g.long}u + (i % ${g.long}u) * ${layout.period}u);
  }
  let j = i - longSpan;
  return i32(${g.longCount}u + j / ${Math.max(g.short, 1)}u + (j % ${
          Math.max(g.short, 1)
        }u) * ${layout.period}u);
}`,
      );
    }
    case "gather": {
      const offset = aux.tokens(layout.tokens);
      const name = `gatherPosition${offset}`;
      return m.declare(
        name,
        `
// Gathered layout: ${count} token positions stored in aux[${offset}..].
fn ${name}(i: u32) -> i32 {
  if (i >= ${count}u) { return -1; }
  return i32(aux[${offset}u + i]);
}`,
      );
    }
  }
}
