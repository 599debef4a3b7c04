/**
 * The combine pass of a split component (compiler/key_split.ts): per head and query row, the
 * chunks' partial results merge by log-sum-exp, `lse = log Σ e^lse_s` and
 * `O = Σ e^(lse_s - lse) O_s`, then into what earlier components of the branch wrote, exactly
 * as a component's own epilogue merges. A gathered component never writes a branch's rows
 * first (a clear pass or an earlier component did), so the combine always merges.
 * @module
 */
import type { ParamBlock } from "../aux_data.ts";
import type { Layout } from "../layout.ts";
import { declareLayout, declareQueryLayout } from "./layout_wgsl.ts";
import type { QueryRange } from "../query_tiles.ts";
import { queriesConstants, queryRowOf } from "./kernel_refs.ts";
import { ParamReader } from "./params_wgsl.ts";
import { linearIndex } from "./elementwise_wgsl.ts";
import { declareNegativeInfinity, ShaderModule } from "./shader_module.ts";
import { ELEMENTWISE_WORKGROUP } from "../dispatch_sizes.ts";

/** What one combine pass merges and where the result goes. */
export interface SplitCombineOptions {
  /** The component's query layout (gathered): partial row i is the query at position `qPos(i)`. */
  qLayout: Layout;
  /** N, the key positions. */
  n: number;
  /** Where the call's queries are some of the positions: partial rows of others are skipped. */
  queries?: QueryRange;
  /** O's row in vec4s (Dv / 4). */
  d4: number;
  /** Batch × query heads. */
  heads: number;
  chunks: number;
  /** Partial rows per chunk and head (query tiles × tileQ). */
  rows: number;
  /** Element offsets of the branch's O and LSE slices. */
  oBase: number;
  lseBase: number;
  params: ParamBlock;
  label: string;
}

/**
 * The bindings of a pass that merges key chunks' partial rows (this one, and the decode
 * combine): the partial O and LSE, aux, and the O and LSE it merges into.
 * @param m the module
 * @param o O's element type (the decode combine may write float16 O directly)
 */
export function declareCombineBindings(m: ShaderModule, o: "f32" | "f16" = "f32"): void {
  m.declare(
    "bindings",
    `
@group(0) @binding(0) var<storage, read> splitO: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> splitLse: array<f32>;
@group(0) @binding(2) var<storage, read> aux: array<u32>;
@group(0) @binding(3) var<storage, read_write> oOut: array<vec4<${o}>>;
@group(0) @binding(4) var<storage, read_write> lseOut: array<f32>;`,
  );
}

/**
 * WGSL of a combine pass.
 * @param o the layout, sizes, offsets and merge mode
 * @returns the module text
 * @example
 * ```ts ignore
 * const wgsl = splitCombineKernel({ qLayout, n, d4: 16, heads: 8, chunks: 64, rows: 64, ... });
 * ```
 */
export function splitCombineKernel(o: SplitCombineOptions): string {
  const m = new ShaderModule()
    .comment(`Weft split-K combine: ${o.label}`)
    .comment("each query row's key chunks merged by log-sum-exp");
  declareCombineBindings(m);
  m.declare(
    "constants",
    `
const N = ${o.n}u;${queriesConstants(o.queries)}
const D4 = ${o.d4}u;
const BH = ${o.heads}u;`,
  );
  linearIndex(m);
  declareNegativeInfinity(m);
  const layout = declareLayout(m, o.qLayout, o.n, o.params);
  const qPos = o.queries ? declareQueryLayout(m, o.qLayout, layout) : layout;
  // The chunk count and the partial rows are numbers, read at run time (no new pipeline).
  const reader = new ParamReader(m, o.params);
  reader.unsigned("splits", o.chunks, "key chunks per query row");
  reader.unsigned("splitRows", o.rows, "partial rows per chunk and head");
  return m.render(`
@compute @workgroup_size(${ELEMENTWISE_WORKGROUP})
fn main(
  @builtin(workgroup_id) wg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
  @builtin(num_workgroups) groups: vec3<u32>, // the dispatch follows the token count
) {
${reader.lines.join("\n")}
  let index = linearIndex(wg, lid, groups.x);
  if (index >= BH * splitRows) { return; }
  let bh = index / splitRows;
  let i = index % splitRows;
  let q = ${qPos}(i);
  if (q < 0) { return; }
  let row = ${o.lseBase}u + ${queryRowOf(o, "q")};
  let outBase = ${o.oBase}u + (${queryRowOf(o, "q")}) * D4;
  var most = negativeInfinity();
  for (var s = 0u; s < splits; s++) { most = max(most, splitLse[(s * BH + bh) * splitRows + i]); }
  if (most == negativeInfinity()) { return; } // no chunk allowed anything: keep earlier rows
  var sum = 0.0;
  for (var s = 0u; s < splits; s++) { sum += exp(splitLse[(s * BH + bh) * splitRows + i] - most); }
  let lse = most + log(sum);
  // Merge with what earlier components wrote (a clear pass or a component always ran first):
  // weight 0 for -inf on either side.
  let earlier = lseOut[row];
  let merged = max(earlier, lse) + log(1.0 + exp(-abs(earlier - lse)));
  let wEarlier = exp(earlier - merged);
  let wOwn = exp(lse - merged);
  for (var d = 0u; d < D4; d++) {
    var acc = vec4<f32>(0.0);
    for (var s = 0u; s < splits; s++) {
      let part = (s * BH + bh) * splitRows + i;
      acc += exp(splitLse[part] - lse) * splitO[part * D4 + d];
    }
    oOut[outBase + d] = wEarlier * oOut[outBase + d] + wOwn * acc;
  }
  lseOut[row] = merged;
}`);
}
