/**
 * WGSL for layouts: a function from a layout index to a sequence position, -1 past the end.
 * A residue layout's period and geometry and a gathered layout's token offset and count are
 * parameters read from aux, so they are not part of the WGSL.
 * @module
 */
import { assert } from "../../core/errors.ts";
import type { ParamBlock } from "../aux_data.ts";
import { type Layout, layoutCount, layoutLabel, residueGeometry } from "../layout.ts";
import { ParamReader } from "./params_wgsl.ts";
import { codeSetOf, type HashLayout } from "../hash_layout.ts";
import { declareHashRows } from "./predicate_wgsl.ts";
import type { ShaderModule } from "./shader_module.ts";

/**
 * Declares the position function of a layout and returns its name. Layouts with parameters
 * get a function of their own, named by their first parameter slot (structural, like the slot;
 * by their period or token offset when the numbers are baked in as constants).
 * @param m the module being built
 * @param layout the layout
 * @param n N
 * @param params the kernel's parameter block (gathered layouts also add their tokens to aux)
 * @returns the WGSL function name, `fn name(i: u32) -> i32`
 * @example
 * ```ts
 * import { AuxData } from "../aux_data.ts";
 * import { RandomTables } from "../random_table.ts";
 * import { ShaderModule } from "./shader_module.ts";
 * import { declareLayout } from "./layout_wgsl.ts";
 * const params = new AuxData(100, new RandomTables(100)).paramBlock();
 * declareLayout(new ShaderModule(), { kind: "identity" }, 100, params); // "identityPosition"
 * declareLayout(new ShaderModule(), { kind: "residue", period: 7 }, 100, params); // "residuePosition0"
 * ```
 */
export function declareLayout(
  m: ShaderModule,
  layout: Layout,
  n: number,
  params: ParamBlock,
  hash?: HashLayout,
): string {
  switch (layout.kind) {
    case "identity":
      return m.declare(
        "identityPosition",
        `
fn identityPosition(i: u32) -> i32 {
  return select(-1, i32(i), i < ${n}u);
}`,
      );
    case "residue": {
      const g = residueGeometry(layout.period, n);
      const name = `residuePosition${params.aux.constants ? layout.period : params.size}`;
      const reader = new ParamReader(m, params);
      const label = layoutLabel(layout);
      reader.unsigned("period", layout.period, label);
      reader.unsigned("longLength", g.long, `${label}: positions per long class`);
      reader.unsigned("longClasses", g.longCount, `${label}: N = short length * period + this`);
      reader.unsigned("shortLength", Math.max(g.short, 1), `${label}: positions per short class`);
      return m.declare(
        name,
        `
// Residue order for stride(${layout.period}): index i -> class c, rank r -> position c + r * period.
// Classes c < longClasses hold longLength positions, the rest one fewer.
fn ${name}(i: u32) -> i32 {
${reader.lines.join("\n")}
  if (i >= ${n}u) { return -1; }
  let longSpan = longClasses * longLength;
  if (i < longSpan) {
    return i32(i / longLength + (i % longLength) * period);
  }
  let j = i - longSpan;
  return i32(longClasses + j / shortLength + (j % shortLength) * period);
}`,
      );
    }
    case "landmarks":
      return m.declare(
        "landmarkIndex",
        `
// Keys are the ${layout.count} pooled landmarks of lowRank(${layout.rank}), not positions.
fn landmarkIndex(i: u32) -> i32 {
  return select(-1, i32(i), i < ${layout.count}u);
}`,
      );
    case "sorted": {
      assert(hash, "a bucket-order layout without its hash layout");
      const set = codeSetOf(hash, layout);
      const rows = set.rowsQ + set.rowsK;
      const first = set.order + (layout.round * rows + (layout.side === "k" ? set.rowsQ : 0)) * n;
      const name = `bucketOrder${layout.side.toUpperCase()}${first}`;
      declareHashRows(m);
      return m.declare(
        name,
        `
// ${layout.side === "q" ? "Queries" : "Keys"} in bucket order of ${layoutLabel(layout)}:
// the GPU sort's order, ${layout.side === "q" ? "queryRow" : "keyRow"}'s sort from word ${first}.
fn ${name}(i: u32) -> i32 {
  if (i >= ${n}u) { return -1; }
  return i32(hash[${first}u + ${layout.side === "q" ? "queryRow" : "keyRow"} * ${n}u + i]);
}`,
      );
    }
    case "gather": {
      const count = layoutCount(layout, n);
      const offset = params.aux.tokens(layout.tokens);
      const name = `gatherPosition${params.aux.constants ? offset : params.size}`;
      const reader = new ParamReader(m, params);
      const label = layoutLabel(layout);
      reader.dataOffset("tokens", offset, `${label}: aux offset`);
      reader.unsigned("count", count, `${label}: token count`);
      return m.declare(
        name,
        `
// Gathered layout: ${count} token positions, sorted, stored in aux from offset \`tokens\`.
fn ${name}(i: u32) -> i32 {
${reader.lines.join("\n")}
  if (i >= count) { return -1; }
  return i32(aux[tokens + i]);
}`,
      );
    }
  }
}

/**
 * Declares a query layout's positions where the call's queries are some of the N key positions
 * (query_tiles.ts): the layout's own position, -1 (padding) outside the queries. A bucket order
 * sorts the call's queries only, so its indices past NQ are the padding.
 * @param m the module being built, whose constants hold NQ and QUERY_OFFSET
 * @param layout the query layout
 * @param base the layout's own position function (`declareLayout`)
 * @returns the WGSL function name, `fn name(i: u32) -> i32`
 * @example
 * ```ts
 * import { ShaderModule } from "./shader_module.ts";
 * import { declareQueryLayout } from "./layout_wgsl.ts";
 * const m = new ShaderModule();
 * declareQueryLayout(m, { kind: "identity" }, "identityPosition"); // "queriesOfIdentityPosition"
 * ```
 */
export function declareQueryLayout(m: ShaderModule, layout: Layout, base: string): string {
  const name = `queriesOf${base[0].toUpperCase()}${base.slice(1)}`;
  const body = layout.kind === "sorted"
    ? `  return select(-1, ${base}(i), i < NQ);`
    : `  let p = ${base}(i);
  return select(-1, p, p >= QUERY_OFFSET && p < QUERY_OFFSET + i32(NQ));`;
  return m.declare(
    name,
    `
// ${base} where the call's queries are key positions QUERY_OFFSET .. + NQ - 1:
// any other index is padding (-1), neither loaded nor stored.
fn ${name}(i: u32) -> i32 {
${body}
}`,
  );
}
