/**
 * The fused attention kernel of one component (FlashAttention-2 forward, float32).
 *
 * One workgroup per (query tile, batch·head); one invocation per query row, its scaled query
 * and output accumulator in registers. For each key tile of its BlockMask row the workgroup
 * stages K and V in workgroup memory, each invocation computes its scores, the tile's row max,
 * and rescales its running sum and accumulator once per tile (online softmax, exp2 with
 * `scale * log2(e)` folded into the query). O is normalised once at the end, then written or
 * merged by log-sum-exp into what earlier components of the branch wrote.
 * @module
 */
import { atomLabel } from "../atoms.ts";
import type { AuxData } from "../aux_data.ts";
import { layoutLabel } from "../layout.ts";
import type { Component } from "../plan.ts";
import type { AttentionShape } from "../shape.ts";
import { declareLayout } from "./layout_wgsl.ts";
import { declareAllowed } from "./predicate_wgsl.ts";
import { f32, ShaderModule } from "./shader_module.ts";

/** Where a component kernel finds its schedule and writes its result. */
export interface ComponentKernelOptions {
  component: Component;
  shape: AttentionShape;
  scale: number;
  aux: AuxData;
  /** Word offsets of this component's row pointers and entries in the schedule buffer. */
  scheduleOffsets: number;
  scheduleEntries: number;
  /** Element offsets of this branch's slice of the O and LSE buffers. */
  oBase: number;
  lseBase: number;
  /** Merge into what earlier components wrote (false: overwrite; the first one covers all rows). */
  merge: boolean;
  /** Constant loop bounds (GPUs unroll them); false reads them from the schedule header. */
  unroll: boolean;
  label: string;
}

const LOG2E = Math.LOG2E;

/**
 * WGSL of one component's attention kernel.
 * @param o the component, shape, scale, aux data, buffer offsets and merge mode
 * @returns the module text
 * @example
 * ```ts ignore
 * const wgsl = componentKernel({ component, shape, scale, aux, ... });
 * ```
 */
export function componentKernel(o: ComponentKernelOptions): string {
  const { component: c, shape } = o;
  const { tileQ, tileK } = c.mask;
  const n = shape.seqLen, d4 = shape.headDim / 4;
  const m = new ShaderModule()
    .comment(`Weft attention kernel: ${o.label}`)
    .comment(
      `allowed: ${c.atoms.map(atomLabel).join(" & ")}` +
        (c.exclusions.length ? `, minus ${c.exclusions.length} earlier component(s)` : ""),
    )
    .comment(`layouts: q ${layoutLabel(c.qLayout)}, k ${layoutLabel(c.kLayout)}`)
    .comment(
      `tile ${tileQ}x${tileK}, workgroup ${tileQ}, N=${n}, D=${shape.headDim}, ` +
        `Hq=${shape.headsQ}, Hkv=${shape.headsKV}, float32`,
    );
  m.declare(
    "bindings",
    `
@group(0) @binding(0) var<storage, read> qIn: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> kIn: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> vIn: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> schedule: array<u32>;
@group(0) @binding(4) var<storage, read> aux: array<u32>;
@group(0) @binding(5) var<storage, read_write> oOut: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> lseOut: array<f32>;`,
  );
  m.declare(
    "constants",
    `
const N = ${n}u;
const D4 = ${d4}u;          // head dim / 4: rows are read as vec4
const HQ = ${shape.headsQ}u;
const HKV = ${shape.headsKV}u;
const GROUP = ${shape.headsQ / shape.headsKV}u; // query heads per key/value head
const TILE_Q = ${tileQ}u;
const TILE_K = ${tileK}u;
const SCORE_SCALE = ${f32(o.scale * LOG2E)}; // scale * log2(e): scores live in the exp2 domain
const NO_SCORE = -1.0e30;   // below any real score; never reaches exp2 unguarded
const LN2 = ${f32(Math.LN2)};`,
  );
  m.declare(
    "workgroupMemory",
    `
var<workgroup> kTile: array<vec4<f32>, ${tileK * d4}>;
var<workgroup> vTile: array<vec4<f32>, ${tileK * d4}>;
var<workgroup> kPosition: array<i32, ${tileK}>;`,
  );
  m.declare(
    "negativeInfinity",
    `
// WGSL has no infinity literal; LSE of an empty row is -inf (DESIGN §1).
fn negativeInfinity() -> f32 {
  return bitcast<f32>(0xff800000u);
}`,
  );
  const qPos = declareLayout(m, c.qLayout, n, o.aux);
  const kPos = declareLayout(m, c.kLayout, n, o.aux);
  declareAllowed(m, { atoms: c.atoms, exclusions: c.exclusions, n, aux: o.aux });
  return m.render(entryPoint(o, qPos, kPos));
}

function entryPoint(o: ComponentKernelOptions, qPos: string, kPos: string): string {
  const { tileQ } = o.component.mask;
  return `
@compute @workgroup_size(${tileQ})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  ${loopBounds(o.unroll)}
  let qTile = wg.x;
  let bh = wg.y;                      // batch * HQ + query head
  let kvHead = (bh / HQ) * HKV + (bh % HQ) / GROUP;
  let kvBase = kvHead * N * D4;
  let q = ${qPos}(qTile * TILE_Q + lid);
  let rowActive = q >= 0;

  var qRow: array<vec4<f32>, ${o.shape.headDim / 4}>;
  var acc: array<vec4<f32>, ${o.shape.headDim / 4}>;
  if (rowActive) {
    let qBase = (bh * N + u32(q)) * D4;
    for (var d = 0u; d < d4; d++) {
      qRow[d] = qIn[qBase + d] * SCORE_SCALE;
      acc[d] = vec4<f32>(0.0);
    }
  }
  var rowMax = NO_SCORE;
  var rowSum = 0.0;
  var scores: array<f32, ${o.component.mask.tileK}>;

  let first = schedule[${o.scheduleOffsets}u + qTile];
  let last = schedule[${o.scheduleOffsets}u + qTile + 1u];
  for (var e = first; e < last; e++) {
    let entry = schedule[${o.scheduleEntries}u + e];
    let kTileStart = (entry >> 1u) * TILE_K;
    let isPartial = (entry & 1u) == 1u;

    workgroupBarrier();               // the previous tile is no longer read
    // Positions first, once per key: layout index math stays out of the vec4 copy loop.
    for (var j = lid; j < TILE_K; j += TILE_Q) {
      kPosition[j] = ${kPos}(kTileStart + j);
    }
    workgroupBarrier();
    for (var i = lid; i < TILE_K * D4; i += TILE_Q) {
      let k = kPosition[i / D4];
      let src = kvBase + u32(max(k, 0)) * D4 + i % D4;
      kTile[i] = select(vec4<f32>(0.0), kIn[src], k >= 0);
      vTile[i] = select(vec4<f32>(0.0), vIn[src], k >= 0);
    }
    workgroupBarrier();

    if (rowActive) {
      var tileMax = NO_SCORE;
      for (var j = 0u; j < tileK; j++) {
        let k = kPosition[j];
        var s = NO_SCORE;
        if (k >= 0 && (!isPartial || allowed(q, k))) {
          var dot4 = vec4<f32>(0.0);
          for (var d = 0u; d < d4; d++) {
            dot4 += qRow[d] * kTile[j * D4 + d];
          }
          s = dot4.x + dot4.y + dot4.z + dot4.w;
        }
        scores[j] = s;
        tileMax = max(tileMax, s);
      }
      if (tileMax > NO_SCORE) {       // the tile holds at least one allowed key for this row
        let newMax = max(rowMax, tileMax);
        let rescale = exp2(rowMax - newMax);
        rowSum *= rescale;
        for (var d = 0u; d < d4; d++) {
          acc[d] *= rescale;
        }
        for (var j = 0u; j < tileK; j++) {
          if (scores[j] > NO_SCORE) {
            let p = exp2(scores[j] - newMax);
            rowSum += p;
            for (var d = 0u; d < d4; d++) {
              acc[d] += p * vTile[j * D4 + d];
            }
          }
        }
        rowMax = newMax;
      }
    }
  }

  if (!rowActive) { return; }
  let row = ${o.lseBase}u + bh * N + u32(q);
  let outBase = ${o.oBase}u + (bh * N + u32(q)) * D4;
  if (rowSum == 0.0) {
${
    o.merge
      ? "    return;                           // nothing allowed here: keep earlier components' result"
      : `    lseOut[row] = negativeInfinity();
    for (var d = 0u; d < d4; d++) {
      oOut[outBase + d] = vec4<f32>(0.0);
    }
    return;`
  }
  }
  let lse = (rowMax + log2(rowSum)) * LN2;
  let inv = 1.0 / rowSum;
${o.merge ? mergeEpilogue() : writeEpilogue()}
}`;
}

/**
 * Inner loop bounds. Constants let a GPU compiler unroll; on software adapters (llvmpipe)
 * unrolling made LLVM take 30-60 s per kernel, so there they come from the schedule header.
 */
function loopBounds(unroll: boolean): string {
  return unroll
    ? "let d4 = D4;\n  let tileK = TILE_K;"
    : "let d4 = schedule[0];            // == D4, opaque to the compiler: no unrolling\n  let tileK = schedule[1];         // == TILE_K";
}

function writeEpilogue(): string {
  return `  lseOut[row] = lse;
  for (var d = 0u; d < d4; d++) {
    oOut[outBase + d] = acc[d] * inv;
  }`;
}

/** Exact merge of two softmax partials: lse = logaddexp, O weighted by exp(lse_i - lse). */
function mergeEpilogue(): string {
  return `  let earlier = lseOut[row];
  let merged = max(earlier, lse) + log(1.0 + exp(-abs(earlier - lse)));
  let wEarlier = exp(earlier - merged); // 0 when earlier components allowed nothing (-inf)
  let wOwn = exp(lse - merged);
  lseOut[row] = merged;
  for (var d = 0u; d < d4; d++) {
    oOut[outBase + d] = wEarlier * oOut[outBase + d] + wOwn * inv * acc[d];
  }`;
}
