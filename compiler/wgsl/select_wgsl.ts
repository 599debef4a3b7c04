/**
 * WGSL of `select`'s pre-passes (DESIGN §2): the block means of K, then each position's kept
 * blocks. The choice reads the means in float32 whatever the dtype; the kept blocks, ascending
 * and padded with `0xffffffff`, are what the attention kernel walks and what the runtime reads
 * back (`selectedBlocks`).
 * @module
 */
import { ELEMENTWISE_WORKGROUP } from "../dispatch_sizes.ts";
import { linearIndex } from "./elementwise_wgsl.ts";
import { f32, ShaderModule } from "./shader_module.ts";
import type { SelectChoice, SelectGeometry, SelectPick } from "../select_attention.ts";

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
 * Each position's kept blocks, `[B·Hkv, N, blocks]` u32: one workgroup per tile of TP
 * consecutive positions and key/value head, so the block means are read once per tile for all
 * its rows, (position, query head) pairs. Invocation t holds row `t % R` (R = TP·GROUP) in
 * registers, its Q pre-scaled, and takes the blocks `t / R, t / R + C, ...` (C = W / R block
 * lanes): consecutive invocations read the same block mean, one load for a whole subgroup. Two
 * passes over the logits (base 2), which are recomputed rather than stored: the first keeps
 * each row's running maximum and sum, merged over the block lanes in order; the second writes
 * each row's probabilities of a chunk of blocks to workgroup memory, where one invocation per
 * (position, block) adds its heads in order into the importance. Then each position's forced
 * blocks, and its other candidates picked most important first (ties to the lower block) by
 * its W / TP invocations, as `pick` says (SelectPick). Every sum has a fixed order: the same
 * bits every run.
 * The workgroup walks tiles `x, x + gridX, ...` since N / TP may pass WebGPU's 65535
 * workgroups per dimension.
 * @param g the geometry
 * @param o the softmax scale, the x workgroups of the dispatch, and the tile: invocations,
 *   positions, blocks per invocation of a chunk, where the Q row lives, how the blocks are
 *   picked
 * @returns the module text
 * @example
 * ```ts
 * import { selectBlocksKernel } from "./select_wgsl.ts";
 * selectBlocksKernel({ heads: 1, group: 2, n: 100, d4: 4, blockSize: 16, count: 7, blocks: 2,
 *   initial: 1, local: 1, causal: true, dtype: "f32" },
 *   { scale: 0.25, groupsX: 13, invocations: 256, positions: 8, chunk: 8, rowQ: "value",
 *     pick: { kind: "lanes", lanes: 32, directive: false } });
 * ```
 */
export function selectBlocksKernel(
  g: SelectGeometry,
  o: { scale: number; groupsX: number } & SelectChoice,
): string {
  const T = g.dtype, W = o.invocations, TP = o.positions;
  const R = TP * g.group, C = Math.floor(W / R), CB = C * o.chunk;
  const m = new ShaderModule().comment(
    `Weft select: ${g.blocks} of ${g.count} blocks of ${g.blockSize} rows per position ` +
      `(N=${g.n}, ${g.initial} initial, ${g.local} local${g.causal ? ", causal" : ""}), ` +
      `importance summed over ${g.group} query heads; tiles of ${TP} positions, ${R} rows x ` +
      `${C} block lanes, chunks of ${CB} blocks; workgroup ${W}`,
  );
  if (T === "f16") m.enable("f16");
  m.declare(
    "bindings",
    `
@group(0) @binding(0) var<storage, read> qIn: array<vec4<${T}>>;
@group(0) @binding(1) var<storage, read> means: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> kept: array<u32>;`,
  );
  declareBlockRule(m, g);
  const D = Array.from({ length: g.d4 }, (_, d) => d);
  // Four interleaved partial sums, so the dot products do not wait on one another, added in a
  // fixed order. Constant indices keep the Q row in registers: a value (SSA) certainly, a
  // private array where the driver promotes it.
  const ways = Math.min(4, g.d4);
  const partial = (w: number) =>
    D.filter((d) => d % ways === w).map((d) => `dot(q[${d}], means[at + ${d}u])`).join(" + ");
  const byValue = o.rowQ === "value";
  m.declare(
    "blockLogit",
    `${
      byValue ? "" : `
var<private> q: array<vec4<f32>, ${g.d4}>;  // the invocation's row of Q, scaled
`
    }
/** The logit (base 2) of the invocation's row${
      byValue ? " q" : ""
    } against the mean of block j of head. */
fn blockLogit(head: u32, j: u32${byValue ? `, q: array<vec4<f32>, ${g.d4}>` : ""}) -> f32 {
  let at = (head * ${g.count}u + j) * ${g.d4}u;
${D.slice(0, ways).map((w) => `  let part${w} = ${partial(w)};`).join("\n")}
  return ${D.slice(0, ways).map((w) => `part${w}`).join(" + ")};
}`,
  );
  const qArg = byValue ? ", q" : "";
  const loadQ = byValue
    ? `    let q = array<vec4<f32>, ${g.d4}>(
${D.map((d) => `      vec4<f32>(qIn[qRow + ${d}u]) * QSCALE,`).join("\n")}
    );`
    : D.map((d) => `    q[${d}] = vec4<f32>(qIn[qRow + ${d}u]) * QSCALE;`).join("\n");
  const pick = pickBlocks(m, o.pick);
  return m.render(`
const N = ${g.n}u;
const D4 = ${g.d4}u;
const GROUP = ${g.group}u;
const COUNT = ${g.count}u;
const BLOCKS = ${g.blocks}u;
const W = ${W}u;
const TP = ${TP}u;  // positions per tile
const R = ${R}u;  // rows of a tile: (position, query head), position-major
const C = ${C}u;  // block lanes: invocation t takes row t % R, blocks t / R + C i
const CB = ${CB}u;  // blocks per chunk of the second pass: ${o.chunk} per invocation
const PW = ${W / TP}u;  // invocations choosing each position's blocks
const ROUNDS = ${
    g.blocks - Math.min(g.initial, g.count)
  }u;  // slots past the initial blocks, one pick each
const GRID_X = ${o.groupsX}u;
const QSCALE = ${f32(o.scale * Math.LOG2E)}; // scale * log2(e): logits in base 2
const NO_SCORE = -1.0e30;  // below any real logit; never reaches exp2 unguarded
const EMPTY = 0xffffffffu;

var<workgroup> importance: array<f32, ${
    TP * g.count
  }>;  // [position, block]: -1 not competing, -2 kept
// Per-lane row statistics (2 C R), the second pass's probabilities (R rows of CB + 1, the
// padding keeps both their writers and their readers on distinct banks), the argmax (W).
var<workgroup> scratch: array<f32, ${Math.max(2 * C * R, R * (CB + 1), W)}>;
${
    o.pick.kind === "rounds"
      ? `var<workgroup> bestBlock: array<u32, ${W}>;\n`
      : ""
  }var<workgroup> rowMax: array<f32, ${R}>;
var<workgroup> rowSum: array<f32, ${R}>;
var<workgroup> chosen: array<u32, ${TP * g.blocks}>;
var<workgroup> chosenCount: array<u32, ${TP}>;

@compute @workgroup_size(${W})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let head = wg.y; // batch * Hkv + key/value head
  let r = t % R;
  let lane = t / R;  // C or more: no row, only barriers in the logit passes
  let h = r % GROUP;
  for (var tile = wg.x; tile * TP < N; tile += GRID_X) {
    let first = tile * TP;
    let pos = min(first + r / GROUP, N - 1u);  // a row past N repeats the last and is not written
    let rowEnd = competingBlocks(pos);
    // Blocks that compete for some position of the tile: the rest are never scored.
    let end = competingBlocks(min(first + TP, N) - 1u);
    for (var e = t; e < TP * COUNT; e += W) { importance[e] = -1.0; }
    // The row's query, scaled, in registers.
    let qRow = ((head * GROUP + h) * N + pos) * D4;
${loadQ}
    // Pass 1: the row's running maximum and sum over this lane's blocks.
    var most = NO_SCORE;
    var total = 0.0;
    if (lane < C) {
      for (var j = lane; j < rowEnd; j += C) {
        // total * exp2(most - top) + exp2(logit - top) with one exp2: one of the two is 1.
        let logit = blockLogit(head, j${qArg});
        let gap = logit - most;
        let e = exp2(-abs(gap));
        total = select(total + e, total * e + 1.0, gap > 0.0);
        most = max(most, logit);
      }
      scratch[lane * R + r] = most;
      scratch[(C + lane) * R + r] = total;
    }
    workgroupBarrier();
    if (t < R) {
      // The lanes' statistics merged in lane order.
      var top = NO_SCORE;
      for (var c = 0u; c < C; c++) { top = max(top, scratch[c * R + t]); }
      var sum = 0.0;
      for (var c = 0u; c < C; c++) { sum += scratch[(C + c) * R + t] * exp2(scratch[c * R + t] - top); }
      rowMax[t] = top;
      rowSum[t] = sum;
    }
    workgroupBarrier();
    // Pass 2: a chunk's probabilities by row, then each (position, block)'s heads in order.
    for (var base = 0u; base < end; base += CB) {
      if (lane < C) {
        let top = rowMax[r];
        let sum = rowSum[r];
        for (var i = 0u; i < CB; i += C) {
          let j = base + i + lane;
          var prob = 0.0;
          if (j < rowEnd && sum > 0.0) {
            prob = exp2(blockLogit(head, j${qArg}) - top) / sum;
          }
          scratch[r * (CB + 1u) + i + lane] = prob;
        }
      }
      workgroupBarrier();
      for (var e = t; e < TP * CB; e += W) {
        let p = e / CB;
        let j = base + e % CB;
        if (first + p < N && j < competingBlocks(first + p)) {
          var added = 0.0;
          for (var k = 0u; k < GROUP; k++) { added += scratch[(p * GROUP + k) * (CB + 1u) + e % CB]; }
          importance[p * COUNT + j] = added;
        }
      }
      workgroupBarrier();
    }
    // Forced blocks take the first slots: the initial ones, then the local ones after them.
    if (t < TP && first + t < N) {
      let own = (first + t) / ${g.blockSize}u;
      var taken = 0u;
      for (var j = 0u; j < min(${g.initial}u, COUNT); j++) {
        chosen[t * BLOCKS + taken] = j;
        importance[t * COUNT + j] = -2.0;
        taken++;
      }
      for (var j = max(${g.initial}u, own + 1u - min(own + 1u, ${g.local}u)); j <= own; j++) {
        chosen[t * BLOCKS + taken] = j;
        importance[t * COUNT + j] = -2.0;
        taken++;
      }
      chosenCount[t] = taken;
    }
    workgroupBarrier();
${pick}
    // Ascending order for the attention kernel and the caller: each kept block's rank among
    // its position's (they are distinct), empty slots last.
    for (var e = t; e < TP * BLOCKS; e += W) {
      let p = e / BLOCKS;
      let s = e % BLOCKS;
      if (first + p < N) {
        let count = chosenCount[p];
        let out = (head * N + first + p) * BLOCKS;
        if (s < count) {
          let x = chosen[p * BLOCKS + s];
          var rank = 0u;
          for (var k = 0u; k < count; k++) { rank += select(0u, 1u, chosen[p * BLOCKS + k] < x); }
          kept[out + rank] = x;
        } else {
          kept[out + s] = EMPTY;
        }
      }
    }
    workgroupBarrier();  // the next tile overwrites the importances and the choice
  }
}`);
}

/**
 * WGSL that picks each position's blocks past the forced ones (SelectPick), reading the tile's
 * importances (candidates >= 0, the forced -2) and appending to `chosen` after the
 * `chosenCount` forced ones. Position p's invocations are `p PW .. p PW + PW - 1`.
 */
function pickBlocks(m: ShaderModule, pick: SelectPick): string {
  if (pick.kind === "forced") return "    // Timing variant: the forced blocks only.";
  if (pick.kind === "rounds") {
    return `    // The most important of the other candidates, one per round, by the position's PW
    // invocations (importances of candidates are >= 0). Every round runs, so that the barriers
    // stay in uniform control flow.
    let p = t / PW;
    let pl = t % PW;
    for (var round = 0u; round < ROUNDS; round++) {
      var mine = -1.0;
      var mineBlock = COUNT;
      for (var j = pl; j < end; j += PW) {
        let x = importance[p * COUNT + j];
        if (x > mine) {
          mine = x;
          mineBlock = j;
        }
      }
      scratch[t] = mine;
      bestBlock[t] = mineBlock;
      workgroupBarrier();
      for (var stride = PW / 2u; stride > 0u; stride = stride / 2u) {
        if (pl < stride) {
          let a = scratch[t];
          let b = scratch[t + stride];
          if (b > a || (b == a && bestBlock[t + stride] < bestBlock[t])) {
            scratch[t] = b;
            bestBlock[t] = bestBlock[t + stride];
          }
        }
        workgroupBarrier();
      }
      if (pl == 0u && first + p < N && scratch[t] >= 0.0 && chosenCount[p] < BLOCKS) {
        chosen[p * BLOCKS + chosenCount[p]] = bestBlock[t];
        importance[p * COUNT + bestBlock[t]] = -2.0;
        chosenCount[p] += 1u;
      }
      workgroupBarrier();
    }`;
  }
  if (pick.directive) m.enable("subgroups");
  m.declare(
    "pickLanes",
    `
const LANES = ${pick.lanes}u;  // a position's picking lanes, within one subgroup

/** A candidate block and its importance; the greater wins, ties to the lower block. */
struct Candidate { value: f32, block: u32 }

fn beats(a: Candidate, b: Candidate) -> bool {
  return a.value > b.value || (a.value == b.value && a.block < b.block);
}

/** The best candidate of blocks start, start + LANES, ... below end of position p, if any. */
fn bestOfSlice(p: u32, start: u32, end: u32) -> Candidate {
  var best = Candidate(-1.0, COUNT);
  for (var j = start; j < end; j += LANES) {
    let x = importance[p * COUNT + j];
    if (x > best.value) { best = Candidate(x, j); }
  }
  return best;
}`,
  );
  const masks: number[] = [];
  for (let mask = 1; mask < pick.lanes; mask *= 2) masks.push(mask);
  return `    // The most important of the other candidates, one per slot, by the position's first LANES
    // invocations, one subgroup's: each keeps the best of its slice (blocks pl + LANES i) in
    // registers; a butterfly gives every lane the slot's winner (the greater, ties to the lower
    // block: one total order, so every lane ends with the same); its owner marks it taken and
    // rescans. No barrier: each importance is read and written by its owner lane only. The
    // position's other invocations (PW > LANES) have empty slices. Every slot's butterfly runs,
    // keeping the shuffles in uniform control flow.
    let p = t / PW;
    let pl = t % PW;
    let lanesEnd = select(0u, end, pl < LANES && first + p < N);
    var taken = select(0u, chosenCount[p], first + p < N);
    var mine = bestOfSlice(p, pl, lanesEnd);
    for (var round = 0u; round < ROUNDS; round++) {
      var win = mine;
${
    masks.map((mask) =>
      `      let other${mask} = Candidate(subgroupShuffleXor(win.value, ${mask}u), ` +
      `subgroupShuffleXor(win.block, ${mask}u));
      if (beats(other${mask}, win)) { win = other${mask}; }`
    ).join("\n")
  }
      if (win.value >= 0.0 && taken < BLOCKS) {
        if (pl == 0u) { chosen[p * BLOCKS + taken] = win.block; }
        taken++;
        if (win.block % LANES == pl) {
          importance[p * COUNT + win.block] = -2.0;
          mine = bestOfSlice(p, pl, lanesEnd);
        }
      }
    }
    if (pl == 0u && first + p < N) { chosenCount[p] = taken; }
    workgroupBarrier();`;
}

/**
 * `competingBlocks(pos)`, the rule of dsl/select.ts `selectRule`: block j competes for pos
 * where j < competingBlocks(pos) (under causal, once its last row is <= pos).
 */
function declareBlockRule(m: ShaderModule, g: SelectGeometry): void {
  m.declare(
    "blockRule",
    `
/** How many blocks compete for position pos: 0 .. the result - 1${
      g.causal ? ", those whose last row is <= pos" : ""
    }. */
fn competingBlocks(pos: u32) -> u32 {
  return ${
      g.causal
        ? `select((pos + 1u) / ${g.blockSize}u, ${g.count}u, pos + 1u >= ${g.n}u)`
        : `${g.count}u`
    };
}`,
  );
}
