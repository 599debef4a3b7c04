/**
 * WGSL of `select`'s attention (NSA's selected branch): one workgroup per (position, key/value
 * head) whose rows are the group's query heads, so the key blocks a group kept are loaded once
 * for all its heads, as NSA's kernel does. For each kept block, in tiles of `tileK` keys, the
 * workgroup stages K and V, scores every (head, key) pair, updates each head's running maximum
 * and sum (online softmax, base 2), and adds P·V into accumulators each invocation holds for a
 * few (head, vec4) pairs of O. Loop bounds are constants (kept slots times tiles per block), so
 * every barrier is in uniform control flow; an empty slot or a key past N or the position
 * (under causal) scores -inf and adds nothing.
 * @module
 */
import { declareNegativeInfinity, f32, ShaderModule } from "./shader_module.ts";
import { SELECT_WORKGROUP } from "../dispatch_sizes.ts";
import type { SelectGeometry } from "../select_attention.ts";

/**
 * The attention kernel of one select branch.
 * @param g the geometry
 * @param o scale, keys per tile, x workgroups, and where the branch's O (vec4s) and LSE lie
 * @returns the module text
 * @example
 * ```ts
 * import { selectAttentionKernel } from "./select_attention_wgsl.ts";
 * selectAttentionKernel({ heads: 1, group: 2, n: 100, d4: 4, blockSize: 16, count: 7,
 *   blocks: 2, initial: 0, local: 1, causal: true, dtype: "f32" },
 *   { scale: 0.25, tileK: 16, groupsX: 100, oBase: 0, lseBase: 0 });
 * ```
 */
export function selectAttentionKernel(
  g: SelectGeometry,
  o: { scale: number; tileK: number; groupsX: number; oBase: number; lseBase: number },
): string {
  const T = g.dtype, W = SELECT_WORKGROUP, TK = o.tileK;
  const pairs = g.group * g.d4;
  const m = new ShaderModule().comment(
    `Weft select attention: ${g.blocks} kept blocks of ${g.blockSize} keys per position ` +
      `(N=${g.n}${g.causal ? ", causal" : ""}), rows = ${g.group} query heads of a key/value ` +
      `head, key tiles of ${TK}; workgroup ${W}`,
  );
  if (T === "f16") m.enable("f16");
  m.declare(
    "bindings",
    `
@group(0) @binding(0) var<storage, read> qIn: array<vec4<${T}>>;
@group(0) @binding(1) var<storage, read> kIn: array<vec4<${T}>>;
@group(0) @binding(2) var<storage, read> vIn: array<vec4<${T}>>;
@group(0) @binding(3) var<storage, read> kept: array<u32>;
@group(0) @binding(4) var<storage, read_write> oOut: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> lseOut: array<f32>;`,
  );
  declareNegativeInfinity(m);
  return m.render(`
const N = ${g.n}u;
const D4 = ${g.d4}u;
const GROUP = ${g.group}u;
const BLOCKS = ${g.blocks}u;
const BLOCK = ${g.blockSize}u;
const TK = ${TK}u;
const TILES = ${Math.ceil(g.blockSize / TK)}u; // key tiles per block
const W = ${W}u;
const GRID_X = ${o.groupsX}u;
const PAIRS = ${pairs}u; // (query head, vec4) pairs of O per position
const OWN = ${Math.ceil(pairs / W)}u; // of them per invocation
const QSCALE = ${f32(o.scale * Math.LOG2E)}; // scale * log2(e): scores in base 2
const LN2 = ${f32(Math.LN2)};

var<workgroup> qs: array<vec4<f32>, ${g.group * g.d4}>;
var<workgroup> ks: array<vec4<f32>, ${TK * g.d4}>;
var<workgroup> vs: array<vec4<f32>, ${TK * g.d4}>;
var<workgroup> p: array<f32, ${g.group * TK}>;
var<workgroup> rowMax: array<f32, ${g.group}>;
var<workgroup> rowSum: array<f32, ${g.group}>;
var<workgroup> rowScale: array<f32, ${g.group}>;
var<workgroup> blockList: array<u32, ${g.blocks}>;

/** Key key of a kept block is attended by position pos: inside N${
    g.causal ? " and at or before pos" : ""
  }. */
fn keyAllowed(key: u32, pos: u32) -> bool {
  return key < N${g.causal ? " && key <= pos" : ""};
}

@compute @workgroup_size(${W})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let head = wg.y; // batch * Hkv + key/value head; its query heads are head * GROUP + h
  for (var pos = wg.x; pos < N; pos += GRID_X) {
    for (var i = t; i < PAIRS; i += W) {
      qs[i] = vec4<f32>(qIn[((head * GROUP + i / D4) * N + pos) * D4 + i % D4]) * QSCALE;
    }
    if (t < GROUP) {
      rowMax[t] = negativeInfinity();
      rowSum[t] = 0.0;
    }
    if (t < BLOCKS) { blockList[t] = kept[(head * N + pos) * BLOCKS + t]; }
    var acc: array<vec4<f32>, OWN>;
    for (var i = 0u; i < OWN; i++) { acc[i] = vec4<f32>(0.0); }
    workgroupBarrier();
    for (var slot = 0u; slot < BLOCKS; slot++) {
      let block = blockList[slot]; // 0xffffffff: an empty slot
      for (var tile = 0u; tile < TILES; tile++) {
        let first = block * BLOCK + tile * TK;
        let inBlock = min(TK, BLOCK - tile * TK);
        for (var i = t; i < TK * D4; i += W) {
          let key = first + i / D4;
          var kv = vec4<f32>(0.0);
          var vv = vec4<f32>(0.0);
          if (block != 0xffffffffu && i / D4 < inBlock && key < N) {
            kv = vec4<f32>(kIn[(head * N + key) * D4 + i % D4]);
            vv = vec4<f32>(vIn[(head * N + key) * D4 + i % D4]);
          }
          ks[i] = kv;
          vs[i] = vv;
        }
        workgroupBarrier();
        for (var i = t; i < GROUP * TK; i += W) {
          let h = i / TK;
          let k = i % TK;
          var s = negativeInfinity();
          if (block != 0xffffffffu && k < inBlock && keyAllowed(first + k, pos)) {
            var dotted = 0.0;
            for (var d = 0u; d < D4; d++) { dotted += dot(qs[h * D4 + d], ks[k * D4 + d]); }
            s = dotted;
          }
          p[i] = s;
        }
        workgroupBarrier();
        // Each head's new running maximum (a short serial scan per head), then every
        // invocation exponentiates its own (head, key) scores: the exp2s run in parallel.
        if (t < GROUP) {
          let old = rowMax[t];
          var top = old;
          for (var k = 0u; k < TK; k++) { top = max(top, p[t * TK + k]); }
          rowMax[t] = top;
          rowScale[t] = select(1.0, exp2(old - top), top != negativeInfinity());
        }
        workgroupBarrier();
        for (var i = t; i < GROUP * TK; i += W) {
          let top = rowMax[i / TK];
          p[i] = select(0.0, exp2(p[i] - top), top != negativeInfinity());
        }
        workgroupBarrier();
        // P·V into O; the invocation of a head's first vec4 also carries its running sum.
        for (var i = 0u; i < OWN; i++) {
          let pair = t + i * W;
          if (pair < PAIRS) {
            let h = pair / D4;
            let d = pair % D4;
            var a = acc[i] * rowScale[h];
            var added = 0.0;
            for (var k = 0u; k < TK; k++) {
              let e = p[h * TK + k];
              a += e * vs[k * D4 + d];
              added += e;
            }
            acc[i] = a;
            if (d == 0u) { rowSum[h] = rowSum[h] * rowScale[h] + added; }
          }
        }
        workgroupBarrier();
      }
    }
    for (var i = 0u; i < OWN; i++) {
      let pair = t + i * W;
      if (pair < PAIRS) {
        let h = pair / D4;
        let sum = rowSum[h];
        var out = vec4<f32>(0.0);
        if (sum > 0.0) { out = acc[i] / sum; }
        oOut[${o.oBase}u + ((head * GROUP + h) * N + pos) * D4 + pair % D4] = out;
      }
    }
    if (t < GROUP) {
      let sum = rowSum[t];
      var lse = negativeInfinity();
      if (sum > 0.0) { lse = (rowMax[t] + log2(sum)) * LN2; }
      lseOut[${o.lseBase}u + (head * GROUP + t) * N + pos] = lse;
    }
    workgroupBarrier();
  }
}`);
}
