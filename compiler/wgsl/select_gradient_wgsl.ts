/**
 * WGSL of a select branch's backward pass (select_gradients.ts, DESIGN §6), over the blocks the
 * forward kept. With `P = exp(s - LSE)` recomputed from the forward's LSE (base 2 here: scores
 * carry `scale * log2(e)`), the gate g, `Δ = g dO·O` (gradStats) and `dS = P (g dO·V - Δ)`:
 *
 *   dQ_q += scale Σ dS K_k  (selectGradQuery),   dV_k += Σ P g dO_q,  dK_k += scale Σ dS Q_q
 *   (selectGradKey).
 *
 * Loads convert to float32 whatever the dtype; sums are float32 in a fixed order. Loop bounds
 * are constants or read with `workgroupUniformLoad`, so every barrier is in uniform control flow.
 * @module
 */
import { declareNegativeInfinity, f32, ShaderModule } from "./shader_module.ts";
import { linearIndex } from "./elementwise_wgsl.ts";
import { ELEMENTWISE_WORKGROUP, SELECT_WORKGROUP } from "../dispatch_sizes.ts";
import type { SelectGeometry } from "../select_attention.ts";
import { selectWords } from "../select_gradients.ts";

/** What the tile walks read besides the geometry. */
export interface SelectGradientOptions {
  /** The softmax scale. */
  scale: number;
  /** Keys per staged tile. */
  tileK: number;
  /** selectGradKey: rows per step. */
  rows: number;
  /** x workgroups of the dispatch. */
  groupsX: number;
  /** The branch: its statistics are `gradStats[(branch * ROWS + row) * 4]`. */
  branch: number;
  /** Query rows of one branch, `B·Hq·N`. */
  queryRows: number;
}

/**
 * Each position's kept blocks as a bitset: one invocation per word.
 * @param g the geometry
 * @param groupsX x workgroups of the dispatch
 * @returns the module text
 * @example
 * ```ts
 * import { selectBitsKernel } from "./select_gradient_wgsl.ts";
 * selectBitsKernel({ heads: 1, group: 2, n: 100, d4: 4, blockSize: 16, count: 7, blocks: 2,
 *   initial: 0, local: 0, causal: true, dtype: "f32" }, 1);
 * ```
 */
export function selectBitsKernel(g: SelectGeometry, groupsX: number): string {
  const words = selectWords(g);
  const m = new ShaderModule().comment(
    `Weft select gradients: ${g.blocks} kept of ${g.count} blocks as ${words}-word bitsets`,
  );
  m.declare(
    "bindings",
    `
@group(0) @binding(0) var<storage, read> kept: array<u32>;
@group(0) @binding(1) var<storage, read_write> bits: array<u32>;`,
  );
  linearIndex(m);
  return m.render(`
const WORDS = ${words}u;
const BLOCKS = ${g.blocks}u;

@compute @workgroup_size(${ELEMENTWISE_WORKGROUP})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = linearIndex(wg, lid, ${groupsX}u); // (head, position, word)
  if (i >= ${g.heads * g.n * words}u) { return; }
  let w = i % WORDS;
  let row = i / WORDS;
  var word = 0u;
  for (var s = 0u; s < BLOCKS; s++) {
    let block = kept[row * BLOCKS + s]; // 0xffffffff: an empty slot, in no word
    if (block != 0xffffffffu && block / 32u == w) { word |= 1u << (block % 32u); }
  }
  bits[i] = word;
}`);
}

/** Constants and bindings the two tile walks share. */
function walkModule(
  g: SelectGeometry,
  o: SelectGradientOptions,
  what: string,
  last: string,
): ShaderModule {
  const T = g.dtype;
  const m = new ShaderModule().comment(
    `Weft select gradients: ${what}; ${g.blocks} kept blocks of ${g.blockSize} keys ` +
      `(N=${g.n}${g.causal ? ", causal" : ""}), ${g.group} query heads per key/value head, ` +
      `key tiles of ${o.tileK}${o.rows ? `, ${o.rows} rows per step` : ""}; workgroup ` +
      `${SELECT_WORKGROUP}`,
  );
  if (T === "f16") m.enable("f16");
  m.declare(
    "bindings",
    `
@group(0) @binding(0) var<storage, read> qIn: array<vec4<${T}>>;
@group(0) @binding(1) var<storage, read> kIn: array<vec4<${T}>>;
@group(0) @binding(2) var<storage, read> vIn: array<vec4<${T}>>;
@group(0) @binding(3) var<storage, read> dO: array<vec4<${T}>>;
${last}
@group(0) @binding(5) var<storage, read> gradStats: array<f32>; // per row: LSE, gate, Δ
`,
  );
  declareNegativeInfinity(m);
  m.declare(
    "constants",
    `
const N = ${g.n}u;
const D4 = ${g.d4}u;
const GROUP = ${g.group}u;
const BLOCKS = ${g.blocks}u;
const BLOCK = ${g.blockSize}u;
const COUNT = ${g.count}u;
const TK = ${o.tileK}u;
const TILES = ${Math.ceil(g.blockSize / o.tileK)}u; // key tiles per block
const W = ${SELECT_WORKGROUP}u;
const GRID_X = ${o.groupsX}u;
const STATS = ${o.branch * o.queryRows}u; // the branch's first row of gradStats
const QSCALE = ${f32(o.scale * Math.LOG2E)}; // scale * log2(e): scores in base 2
const LOG2E = ${f32(Math.LOG2E)};

/** Key key is attended by position pos: inside N${g.causal ? " and at or before pos" : ""}. */
fn keyAllowed(key: u32, pos: u32) -> bool {
  return key < N${g.causal ? " && key <= pos" : ""};
}`,
  );
  return m;
}

/**
 * dQ of one select branch, query-major: one workgroup per (position, key/value head).
 * @param g the geometry
 * @param o scale, tile, dispatch and where the branch's statistics lie
 * @returns the module text
 * @example
 * ```ts
 * import { selectGradQueryKernel } from "./select_gradient_wgsl.ts";
 * selectGradQueryKernel({ heads: 1, group: 2, n: 100, d4: 4, blockSize: 16, count: 7,
 *   blocks: 2, initial: 0, local: 1, causal: true, dtype: "f32" },
 *   { scale: 0.25, tileK: 16, rows: 0, groupsX: 100, branch: 0, queryRows: 200 });
 * ```
 */
export function selectGradQueryKernel(g: SelectGeometry, o: SelectGradientOptions): string {
  const pairs = g.group * g.d4;
  const m = walkModule(
    g,
    o,
    "dQ over each position's kept blocks",
    `@group(0) @binding(4) var<storage, read> kept: array<u32>;
@group(0) @binding(6) var<storage, read_write> dq: array<vec4<f32>>;`,
  );
  return m.render(`
const PAIRS = ${pairs}u; // (query head, vec4) pairs of dQ per position
const OWN = ${Math.ceil(pairs / SELECT_WORKGROUP)}u; // of them per invocation
const SCALE = ${f32(o.scale)};

var<workgroup> qs: array<vec4<f32>, ${pairs}>;  // Q * QSCALE
var<workgroup> dos: array<vec4<f32>, ${pairs}>; // g dO
var<workgroup> ks: array<vec4<f32>, ${o.tileK * g.d4}>;
var<workgroup> vs: array<vec4<f32>, ${o.tileK * g.d4}>;
var<workgroup> dsTile: array<f32, ${g.group * o.tileK}>;
var<workgroup> lse2: array<f32, ${g.group}>;  // LSE * log2(e)
var<workgroup> delta: array<f32, ${g.group}>;
var<workgroup> blockList: array<u32, ${g.blocks}>;

@compute @workgroup_size(${SELECT_WORKGROUP})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let head = wg.y; // batch * Hkv + key/value head; its query heads are head * GROUP + h
  for (var pos = wg.x; pos < N; pos += GRID_X) {
    for (var i = t; i < PAIRS; i += W) {
      let row = (head * GROUP + i / D4) * N + pos;
      qs[i] = vec4<f32>(qIn[row * D4 + i % D4]) * QSCALE;
      dos[i] = vec4<f32>(dO[row * D4 + i % D4]) * gradStats[(STATS + row) * 4u + 1u];
    }
    if (t < GROUP) {
      let at = (STATS + (head * GROUP + t) * N + pos) * 4u;
      lse2[t] = gradStats[at] * LOG2E;
      delta[t] = gradStats[at + 2u];
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
          var ds = 0.0;
          if (block != 0xffffffffu && k < inBlock && keyAllowed(first + k, pos) &&
              lse2[h] != negativeInfinity()) {
            var s = 0.0;
            var dp = 0.0;
            for (var d = 0u; d < D4; d++) {
              s += dot(qs[h * D4 + d], ks[k * D4 + d]);
              dp += dot(dos[h * D4 + d], vs[k * D4 + d]);
            }
            ds = exp2(s - lse2[h]) * (dp - delta[h]);
          }
          dsTile[i] = ds;
        }
        workgroupBarrier();
        for (var i = 0u; i < OWN; i++) {
          let pair = t + i * W;
          if (pair < PAIRS) {
            let h = pair / D4;
            let d = pair % D4;
            var a = acc[i];
            for (var k = 0u; k < TK; k++) { a += dsTile[h * TK + k] * ks[k * D4 + d]; }
            acc[i] = a;
          }
        }
        workgroupBarrier();
      }
    }
    for (var i = 0u; i < OWN; i++) {
      let pair = t + i * W;
      if (pair < PAIRS) {
        let at = ((head * GROUP + pair / D4) * N + pos) * D4 + pair % D4;
        dq[at] = dq[at] + acc[i] * SCALE;
      }
    }
    workgroupBarrier();
  }
}`);
}

/**
 * dK and dV of one select branch, key-major: one workgroup per (key block, key/value head).
 * @param g the geometry
 * @param o scale, tile, rows per step, dispatch and where the branch's statistics lie
 * @returns the module text
 * @example
 * ```ts
 * import { selectGradKeyKernel } from "./select_gradient_wgsl.ts";
 * selectGradKeyKernel({ heads: 1, group: 2, n: 100, d4: 4, blockSize: 16, count: 7,
 *   blocks: 2, initial: 0, local: 1, causal: true, dtype: "f32" },
 *   { scale: 0.25, tileK: 16, rows: 8, groupsX: 7, branch: 0, queryRows: 200 });
 * ```
 */
export function selectGradKeyKernel(g: SelectGeometry, o: SelectGradientOptions): string {
  const R = o.rows, W = SELECT_WORKGROUP;
  const pairs = o.tileK * g.d4;
  const m = walkModule(
    g,
    o,
    "dK and dV over each block's positions that kept it",
    `@group(0) @binding(4) var<storage, read> bits: array<u32>; // kept blocks per position
@group(0) @binding(6) var<storage, read_write> dkv: array<vec4<f32>>; // dK, then dV`,
  );
  return m.render(`
const R = ${R}u; // (position, query head) rows per step
const WORDS = ${selectWords(g)}u;
const PAIRS = ${pairs}u; // (key, vec4) pairs of a tile's dK and dV
const OWN = ${Math.ceil(pairs / W)}u; // of them per invocation
const KEY_ROWS = ${g.heads * g.n}u;
const LN2 = ${f32(Math.LN2)}; // dK = scale Σ dS Q = ln 2 Σ dS (Q * QSCALE)

var<workgroup> ks: array<vec4<f32>, ${pairs}>;
var<workgroup> vs: array<vec4<f32>, ${pairs}>;
var<workgroup> qs: array<vec4<f32>, ${R * g.d4}>;  // Q * QSCALE
var<workgroup> dos: array<vec4<f32>, ${R * g.d4}>; // g dO
var<workgroup> pTile: array<f32, ${R * o.tileK}>;
var<workgroup> dsTile: array<f32, ${R * o.tileK}>;
var<workgroup> rowLse2: array<f32, ${R}>;
var<workgroup> rowDelta: array<f32, ${R}>;
var<workgroup> rowPos: array<u32, ${R}>;
var<workgroup> scan: array<u32, ${W}>;   // inclusive prefix sum of the chunk's hits
var<workgroup> hitPos: array<u32, ${W}>; // the chunk's positions that kept the block, ascending
var<workgroup> hitCount: u32;

@compute @workgroup_size(${W})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let head = wg.y; // batch * Hkv + key/value head
  for (var j = wg.x; j < COUNT; j += GRID_X) {
    for (var tile = 0u; tile < TILES; tile++) {
      let first = j * BLOCK + tile * TK;
      let inBlock = min(TK, BLOCK - tile * TK);
      for (var i = t; i < PAIRS; i += W) {
        let key = first + i / D4;
        var kv = vec4<f32>(0.0);
        var vv = vec4<f32>(0.0);
        if (i / D4 < inBlock && key < N) {
          kv = vec4<f32>(kIn[(head * N + key) * D4 + i % D4]);
          vv = vec4<f32>(vIn[(head * N + key) * D4 + i % D4]);
        }
        ks[i] = kv;
        vs[i] = vv;
      }
      var accK: array<vec4<f32>, OWN>;
      var accV: array<vec4<f32>, OWN>;
      for (var i = 0u; i < OWN; i++) {
        accK[i] = vec4<f32>(0.0);
        accV[i] = vec4<f32>(0.0);
      }
      // ${
    g.causal
      ? "Under causal, a position before the tile's first key sees none of it."
      : "Every position may have kept the block."
  }
      for (var base = ${g.causal ? "min(first, N)" : "0u"}; base < N; base += W) {
        let pos = base + t;
        var hit = 0u;
        if (pos < N) { hit = (bits[(head * N + pos) * WORDS + j / 32u] >> (j % 32u)) & 1u; }
        scan[t] = hit;
        workgroupBarrier();
        for (var offset = 1u; offset < W; offset *= 2u) {
          var add = 0u;
          if (t >= offset) { add = scan[t - offset]; }
          workgroupBarrier();
          scan[t] += add;
          workgroupBarrier();
        }
        if (hit == 1u) { hitPos[scan[t] - 1u] = pos; }
        if (t == W - 1u) { hitCount = scan[t]; }
        let rows = workgroupUniformLoad(&hitCount) * GROUP; // (hit, query head) rows
        for (var r0 = 0u; r0 < rows; r0 += R) {
          for (var i = t; i < R * D4; i += W) {
            let r = r0 + i / D4;
            var qv = vec4<f32>(0.0);
            var dv = vec4<f32>(0.0);
            if (r < rows) {
              let row = (head * GROUP + r % GROUP) * N + hitPos[r / GROUP];
              qv = vec4<f32>(qIn[row * D4 + i % D4]) * QSCALE;
              dv = vec4<f32>(dO[row * D4 + i % D4]) * gradStats[(STATS + row) * 4u + 1u];
            }
            qs[i] = qv;
            dos[i] = dv;
          }
          if (t < R) {
            var lse = negativeInfinity();
            var d = 0.0;
            var p = 0xffffffffu;
            if (r0 + t < rows) {
              p = hitPos[(r0 + t) / GROUP];
              let at = (STATS + (head * GROUP + (r0 + t) % GROUP) * N + p) * 4u;
              lse = gradStats[at] * LOG2E;
              d = gradStats[at + 2u];
            }
            rowLse2[t] = lse;
            rowDelta[t] = d;
            rowPos[t] = p;
          }
          workgroupBarrier();
          for (var i = t; i < R * TK; i += W) {
            let r = i / TK;
            let k = i % TK;
            var p = 0.0;
            var ds = 0.0;
            if (rowPos[r] != 0xffffffffu && k < inBlock && keyAllowed(first + k, rowPos[r]) &&
                rowLse2[r] != negativeInfinity()) {
              var s = 0.0;
              var dp = 0.0;
              for (var d = 0u; d < D4; d++) {
                s += dot(qs[r * D4 + d], ks[k * D4 + d]);
                dp += dot(dos[r * D4 + d], vs[k * D4 + d]);
              }
              p = exp2(s - rowLse2[r]);
              ds = p * (dp - rowDelta[r]);
            }
            pTile[i] = p;
            dsTile[i] = ds;
          }
          workgroupBarrier();
          for (var i = 0u; i < OWN; i++) {
            let pair = t + i * W;
            if (pair < PAIRS) {
              let k = pair / D4;
              let d = pair % D4;
              var a = accK[i];
              var b = accV[i];
              for (var r = 0u; r < R; r++) {
                a += dsTile[r * TK + k] * qs[r * D4 + d];
                b += pTile[r * TK + k] * dos[r * D4 + d];
              }
              accK[i] = a;
              accV[i] = b;
            }
          }
          workgroupBarrier();
        }
        workgroupBarrier();
      }
      for (var i = 0u; i < OWN; i++) {
        let pair = t + i * W;
        let key = first + pair / D4;
        if (pair < PAIRS && pair / D4 < inBlock && key < N) {
          let at = (head * N + key) * D4 + pair % D4;
          dkv[at] = dkv[at] + accK[i] * LN2;
          dkv[KEY_ROWS * D4 + at] = dkv[KEY_ROWS * D4 + at] + accV[i];
        }
      }
      workgroupBarrier();
    }
  }
}`);
}
