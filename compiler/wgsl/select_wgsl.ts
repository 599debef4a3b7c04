/**
 * WGSL of `select`'s pre-passes (DESIGN §2): the block means of K, then each position's kept
 * blocks. The choice reads the means in float32 whatever the dtype; the kept blocks, ascending
 * and padded with `0xffffffff`, are what the attention kernel walks and what the runtime reads
 * back (`selectedBlocks`).
 * @module
 */
import { ELEMENTWISE_WORKGROUP } from "../dispatch_sizes.ts";
import { linearIndex } from "./elementwise_wgsl.ts";
import { declareNegativeInfinity, f32, ShaderModule } from "./shader_module.ts";
import { SELECT_WORKGROUP } from "../dispatch_sizes.ts";
import type { SelectGeometry } from "../select_attention.ts";

/**
 * The block means of K, float32 `[B·Hkv, count, D]`: one invocation per vec4 of a mean.
 * @param g the geometry
 * @param groupsX x workgroups of the dispatch
 * @returns the module text
 * @example
 * ```ts
 * import { blockMeansKernel } from "./select_wgsl.ts";
 * blockMeansKernel({ heads: 1, group: 2, n: 100, d4: 4, blockSize: 16, count: 7, blocks: 2,
 *   initial: 0, local: 0, causal: true, dtype: "f32" }, 1);
 * ```
 */
export function blockMeansKernel(g: SelectGeometry, groupsX: number): string {
  const T = g.dtype;
  const m = new ShaderModule().comment(
    `Weft select pre-pass: means of K over ${g.count} blocks of ${g.blockSize} rows (N=${g.n})`,
  );
  if (T === "f16") m.enable("f16");
  m.declare(
    "bindings",
    `
@group(0) @binding(0) var<storage, read> kIn: array<vec4<${T}>>;
@group(0) @binding(1) var<storage, read_write> means: array<vec4<f32>>;`,
  );
  linearIndex(m);
  return m.render(`
const N = ${g.n}u;
const D4 = ${g.d4}u;
const BLOCK = ${g.blockSize}u;
const COUNT = ${g.count}u;

@compute @workgroup_size(${ELEMENTWISE_WORKGROUP})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = linearIndex(wg, lid, ${groupsX}u); // (head, block, vec4) of the means
  if (i >= ${g.heads * g.count * g.d4}u) { return; }
  let d = i % D4;
  let j = (i / D4) % COUNT;
  let head = i / (D4 * COUNT);
  let first = j * BLOCK;
  let end = min(N, first + BLOCK);
  var sum = vec4<f32>(0.0);
  for (var row = first; row < end; row++) { sum += vec4<f32>(kIn[(head * N + row) * D4 + d]); }
  means[i] = sum / f32(end - first);
}`);
}

/**
 * Each position's kept blocks, `[B·Hkv, N, blocks]` u32: one workgroup per (position, key/value
 * head). Per query head of the group, the block logits (base 2), their maximum and sum by tree
 * reductions, and each block's probability added to its importance in workgroup memory; then
 * the forced blocks, and rounds of an argmax (ties to the lower block) over the other
 * candidates. The workgroup walks positions `x, x + gridX, ...` since N may pass WebGPU's
 * 65535 workgroups per dimension.
 * @param g the geometry
 * @param o the softmax scale and the x workgroups of the dispatch
 * @returns the module text
 * @example
 * ```ts
 * import { selectBlocksKernel } from "./select_wgsl.ts";
 * selectBlocksKernel({ heads: 1, group: 2, n: 100, d4: 4, blockSize: 16, count: 7, blocks: 2,
 *   initial: 1, local: 1, causal: true, dtype: "f32" }, { scale: 0.25, groupsX: 100 });
 * ```
 */
export function selectBlocksKernel(
  g: SelectGeometry,
  o: { scale: number; groupsX: number; logitHeads?: number },
): string {
  const T = g.dtype;
  const W = SELECT_WORKGROUP;
  const HC = o.logitHeads ?? 1;
  const m = new ShaderModule().comment(
    `Weft select: ${g.blocks} of ${g.count} blocks of ${g.blockSize} rows per position ` +
      `(N=${g.n}, ${g.initial} initial, ${g.local} local${g.causal ? ", causal" : ""}), ` +
      `importance summed over ${g.group} query heads, logits of ${HC} per pass over the means; ` +
      `workgroup ${W}`,
  );
  if (T === "f16") m.enable("f16");
  m.declare(
    "bindings",
    `
@group(0) @binding(0) var<storage, read> qIn: array<vec4<${T}>>;
@group(0) @binding(1) var<storage, read> means: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> kept: array<u32>;`,
  );
  declareNegativeInfinity(m);
  declareBlockRule(m, g);
  return m.render(`
const N = ${g.n}u;
const D4 = ${g.d4}u;
const GROUP = ${g.group}u;
const COUNT = ${g.count}u;
const BLOCKS = ${g.blocks}u;
const W = ${W}u;
const GRID_X = ${o.groupsX}u;
const QSCALE = ${f32(o.scale * Math.LOG2E)}; // scale * log2(e): logits in base 2
const HC = ${HC}u; // query heads whose logits one pass over the means computes

var<workgroup> qs: array<vec4<f32>, ${g.group * g.d4}>;
var<workgroup> logit: array<f32, ${HC * g.count}>; // [head of the pass, block]
var<workgroup> importance: array<f32, ${g.count}>;
var<workgroup> best: array<f32, ${W}>;
var<workgroup> bestBlock: array<u32, ${W}>;
var<workgroup> chosen: array<u32, ${g.blocks}>;

/** Tree reduction of best[] (max) into best[0]; every invocation takes part. */
fn reduceMax(t: u32) {
  for (var stride = W / 2u; stride > 0u; stride = stride / 2u) {
    if (t < stride) { best[t] = max(best[t], best[t + stride]); }
    workgroupBarrier();
  }
}

/** Tree reduction of best[] (sum) into best[0]. */
fn reduceSum(t: u32) {
  for (var stride = W / 2u; stride > 0u; stride = stride / 2u) {
    if (t < stride) { best[t] = best[t] + best[t + stride]; }
    workgroupBarrier();
  }
}

/** Argmax of (best, bestBlock) into slot 0: the higher importance, then the lower block. */
fn reduceArgmax(t: u32) {
  for (var stride = W / 2u; stride > 0u; stride = stride / 2u) {
    if (t < stride) {
      let a = best[t];
      let b = best[t + stride];
      if (b > a || (b == a && bestBlock[t + stride] < bestBlock[t])) {
        best[t] = b;
        bestBlock[t] = bestBlock[t + stride];
      }
    }
    workgroupBarrier();
  }
}

@compute @workgroup_size(${W})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let head = wg.y; // batch * Hkv + key/value head
  for (var pos = wg.x; pos < N; pos += GRID_X) {
    for (var j = t; j < COUNT; j += W) { importance[j] = 0.0; }
    for (var h = 0u; h < GROUP; h++) {
      // Query head (kv head * GROUP + h) of the same batch: its Q row, pre-scaled.
      let qRow = ((head * GROUP + h) * N + pos) * D4;
      for (var d = t; d < D4; d += W) { qs[h * D4 + d] = vec4<f32>(qIn[qRow + d]) * QSCALE; }
    }
    workgroupBarrier();
    for (var h0 = 0u; h0 < GROUP; h0 += HC) {
      // The logits of heads h0.. of the pass: each block's mean is read once for all of them.
      for (var j = t; j < COUNT; j += W) {
        var acc: array<f32, HC>;
        for (var c = 0u; c < HC; c++) { acc[c] = 0.0; }
        if (competes(j, pos)) {
          for (var d = 0u; d < D4; d++) {
            let mean = means[(head * COUNT + j) * D4 + d];
            for (var c = 0u; c < HC; c++) {
              acc[c] += dot(qs[min(h0 + c, GROUP - 1u) * D4 + d], mean);
            }
          }
        }
        for (var c = 0u; c < HC; c++) {
          logit[c * COUNT + j] = select(negativeInfinity(), acc[c], competes(j, pos));
        }
      }
      workgroupBarrier();
      for (var c = 0u; c < HC; c++) {
        if (h0 + c >= GROUP) { break; }
        let at = c * COUNT; // this head's logits
        var top = negativeInfinity();
        for (var j = t; j < COUNT; j += W) { top = max(top, logit[at + j]); }
        best[t] = top;
        workgroupBarrier();
        reduceMax(t);
        let rowMax = best[0];
        workgroupBarrier();
        var part = 0.0;
        for (var j = t; j < COUNT; j += W) {
          if (competes(j, pos)) { part += exp2(logit[at + j] - rowMax); }
        }
        best[t] = part;
        workgroupBarrier();
        reduceSum(t);
        let total = best[0];
        workgroupBarrier();
        if (total > 0.0) {
          for (var j = t; j < COUNT; j += W) {
            if (competes(j, pos)) { importance[j] += exp2(logit[at + j] - rowMax) / total; }
          }
        }
        workgroupBarrier();
      }
    }
    // Forced blocks take the first slots.
    var taken = 0u;
    for (var j = 0u; j < COUNT; j++) {
      if (forced(j, pos)) {
        if (t == 0u) { chosen[taken] = j; }
        taken++;
      }
    }
    // The most important of the other candidates, one per round (importances are >= 0, taken
    // ones -2). Every round runs, so that the barriers stay in uniform control flow.
    var count = taken;
    for (var round = taken; round < BLOCKS; round++) {
      var mine = -1.0;
      var mineBlock = COUNT;
      for (var j = t; j < COUNT; j += W) {
        if (competes(j, pos) && !forced(j, pos) && importance[j] > mine) {
          mine = importance[j];
          mineBlock = j;
        }
      }
      best[t] = mine;
      bestBlock[t] = mineBlock;
      workgroupBarrier();
      reduceArgmax(t);
      let winner = bestBlock[0];
      let found = best[0] >= 0.0;
      workgroupBarrier();
      if (found) {
        if (t == 0u) {
          chosen[count] = winner;
          importance[winner] = -2.0;
        }
        count++;
      }
      workgroupBarrier();
    }
    workgroupBarrier();
    if (t == 0u) {
      // Ascending order for the attention kernel and the caller; insertion sort of <= 64.
      for (var a = 1u; a < count; a++) {
        let x = chosen[a];
        var b = a;
        while (b > 0u && chosen[b - 1u] > x) {
          chosen[b] = chosen[b - 1u];
          b--;
        }
        chosen[b] = x;
      }
      let out = (head * N + pos) * BLOCKS;
      for (var s = 0u; s < BLOCKS; s++) { kept[out + s] = select(0xffffffffu, chosen[s], s < count); }
    }
    workgroupBarrier();
  }
}`);
}

/** `competes(j, pos)` and `forced(j, pos)`: the rule of dsl/select.ts `selectRule`. */
function declareBlockRule(m: ShaderModule, g: SelectGeometry): void {
  const lastRow = `min(${g.n}u, (j + 1u) * ${g.blockSize}u) - 1u`;
  m.declare(
    "blockRule",
    `
/** Block j competes for position pos${
      g.causal ? ": under causal, once its last row is <= pos" : ""
    }. */
fn competes(j: u32, pos: u32) -> bool {
  return ${g.causal ? `${lastRow} <= pos` : "j < " + g.count + "u"};
}

/** Block j is always kept: one of the first ${g.initial}, or of the ${g.local} ending at pos's. */
fn forced(j: u32, pos: u32) -> bool {
  let own = pos / ${g.blockSize}u;
  return j < ${g.initial}u || (j <= own && j + ${g.local}u > own);
}`,
  );
}
