/**
 * The decode combine pass (compiler/decode.ts): per head, query row and value vec4, the key
 * chunks' partial results merge by log-sum-exp, `lse = log Σ e^lse_s` and
 * `O = Σ e^(lse_s - lse) O_s`, then into what earlier components of the branch wrote (a clear
 * pass always runs first). One invocation per output vec4, so a decoding step's few rows still
 * spread over the GPU.
 * @module
 */
import { queriesConstants } from "./kernel_refs.ts";
import type { QueryRange } from "../query_tiles.ts";
import { ParamReader } from "./params_wgsl.ts";
import type { ParamBlock } from "../aux_data.ts";
import { declareNegativeInfinity, ShaderModule } from "./shader_module.ts";
import { declareCombineBindings } from "./split_combine_wgsl.ts";
import { ELEMENTWISE_WORKGROUP } from "../dispatch_sizes.ts";
import { NO_QUERY_ROW } from "../decode.ts";

/** What one decode combine merges and where the result goes. */
export interface DecodeCombineOptions {
  queries: QueryRange;
  /** O's row in vec4s (Dv / 4). */
  dv4: number;
  /** Batch × query heads. */
  heads: number;
  chunks: number;
  /**
   * The query rows the decode kernel covered (its geometry's `slotRows`, NO_QUERY_ROW padding):
   * only these rows merge, since the partial buffers hold other components' rows too.
   */
  slotRows: readonly number[];
  /** Merge into the branch's rows, write them outright, or write float16 O (kernel_plan.ts). */
  output: "merge" | "write" | "o16";
  /** Element offsets of the branch's O and LSE slices. */
  oBase: number;
  lseBase: number;
  params: ParamBlock;
  label: string;
}

/**
 * WGSL of a decode combine pass.
 * @param o the sizes, offsets and chunk count
 * @returns the module text
 * @example
 * ```ts ignore
 * const wgsl = decodeCombineKernel({ queries, dv4: 32, heads: 32, chunks: 64, ... });
 * ```
 */
export function decodeCombineKernel(o: DecodeCombineOptions): string {
  const merges = o.output === "merge";
  const m = new ShaderModule()
    .comment(`Weft decode combine: ${o.label}`)
    .comment(
      "each query row's key chunks merged by log-sum-exp, one invocation per O vec4" +
        (merges ? "" : o.output === "o16" ? ", written as float16 O" : ", written outright"),
    );
  if (o.output === "o16") m.enable("f16");
  declareCombineBindings(m, o.output === "o16" ? "f16" : "f32");
  m.declare(
    "constants",
    `${queriesConstants(o.queries)}
const DV4 = ${o.dv4}u;
const BH = ${o.heads}u;
const SLOT_ENTRIES = ${o.slotRows.length}u; // query slots of the listed tiles
const NO_QUERY = ${NO_QUERY_ROW}u;`,
  );
  const negInf = declareNegativeInfinity(m);
  const reader = new ParamReader(m, o.params);
  reader.unsigned("chunks", o.chunks, "key chunks per query row");
  const slotRows = reader.dataOffset(
    "slotRows",
    o.params.aux.tileList(o.slotRows),
    `aux offset of the ${o.slotRows.length} query slot(s) the decode kernel covered`,
  );
  return m.render(`
@compute @workgroup_size(${ELEMENTWISE_WORKGROUP})
fn main(
  @builtin(workgroup_id) wg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
  @builtin(num_workgroups) groups: vec3<u32>,
) {
${reader.lines.join("\n")}
  // A row's DV4 invocations share a workgroup: each reads the earlier LSE before a barrier,
  // and only then does one of them write the merged one.
  let rowsPerGroup = ${ELEMENTWISE_WORKGROUP}u / DV4;
  // Entry e = (slot, head): the slot's query row, for every batch·head.
  let entry = (wg.y * groups.x + wg.x) * rowsPerGroup + lid / DV4;
  let dd = lid % DV4;
  var live = lid < rowsPerGroup * DV4 && entry < SLOT_ENTRIES * BH;
  let bh = entry % BH;
  var i = NO_QUERY;
  if (live) { i = aux[${slotRows} + entry / BH]; }
  live = live && i != NO_QUERY;
  let row = bh * NQ + i;
  var most = ${negInf}();${
    merges
      ? `
  var earlier = ${negInf}();`
      : ""
  }
  // Chunks four at a time: their loads in flight together.
  if (live) {
    var s = 0u;
    for (; s + 3u < chunks; s += 4u) {
      most = max(
        most,
        max(
          max(splitLse[(s * BH + bh) * NQ + i], splitLse[((s + 1u) * BH + bh) * NQ + i]),
          max(splitLse[((s + 2u) * BH + bh) * NQ + i], splitLse[((s + 3u) * BH + bh) * NQ + i]),
        ),
      );
    }
    for (; s < chunks; s++) { most = max(most, splitLse[(s * BH + bh) * NQ + i]); }
${
    merges
      ? `    earlier = lseOut[${o.lseBase}u + row];
`
      : ""
  }  }
${
    merges
      ? `  workgroupBarrier();
  // No chunk allowed anything: keep the earlier rows.
  if (!live || most == ${negInf}()) { return; }`
      : `  if (!live) { return; }
  // No chunk allowed anything: the row is empty (O = 0, LSE = -inf).
  if (most == ${negInf}()) {
    oOut[${o.oBase}u + row * DV4 + dd] = ${o.output === "o16" ? "vec4<f16>" : "vec4<f32>"}(0.0);
    if (dd == 0u) { lseOut[${o.lseBase}u + row] = most; }
    return;
  }`
  }
  var sum = 0.0;
  var acc = vec4<f32>(0.0);
  var s = 0u;
  for (; s + 3u < chunks; s += 4u) {
    let part0 = (s * BH + bh) * NQ + i;
    let part1 = part0 + BH * NQ;
    let part2 = part1 + BH * NQ;
    let part3 = part2 + BH * NQ;
    let w0 = exp(splitLse[part0] - most);
    let w1 = exp(splitLse[part1] - most);
    let w2 = exp(splitLse[part2] - most);
    let w3 = exp(splitLse[part3] - most);
    sum += (w0 + w1) + (w2 + w3);
    acc += (w0 * splitO[part0 * DV4 + dd] + w1 * splitO[part1 * DV4 + dd]) +
      (w2 * splitO[part2 * DV4 + dd] + w3 * splitO[part3 * DV4 + dd]);
  }
  for (; s < chunks; s++) {
    let part = (s * BH + bh) * NQ + i;
    let w = exp(splitLse[part] - most);
    sum += w;
    acc += w * splitO[part * DV4 + dd];
  }
  let lse = most + log(sum);
  let at = ${o.oBase}u + row * DV4 + dd;
${
    merges
      ? `  // Merge with what earlier components wrote: weight 0 for -inf on either side.
  let merged = max(earlier, lse) + log(1.0 + exp(-abs(earlier - lse)));
  oOut[at] = exp(earlier - merged) * oOut[at] + exp(lse - merged) * (acc / sum);
  if (dd == 0u) { lseOut[${o.lseBase}u + row] = merged; }`
      : `  oOut[at] = ${o.output === "o16" ? "vec4<f16>(acc / sum)" : "acc / sum"};
  if (dd == 0u) { lseOut[${o.lseBase}u + row] = lse; }`
  }
}`);
}
