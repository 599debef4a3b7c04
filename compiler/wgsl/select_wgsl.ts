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
import { importancePhase } from "./select_logits_wgsl.ts";
import type { SelectChoice, SelectGeometry, SelectPick } from "../select_attention.ts";

/**
 * The block means of K, float32 vec4s `[B·Hkv, D / 4, count]`: one invocation per vec4 of a
 * mean; a vec4 of the head dim is contiguous over the blocks, so the choice's invocations, which
 * take consecutive blocks, read it coalesced.
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
  let i = linearIndex(wg, lid, ${groupsX}u); // (head, vec4, block) of the means
  if (i >= ${g.heads * g.count * g.d4}u) { return; }
  let j = i % COUNT;
  let d = (i / COUNT) % D4;
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
 * its rows, (position, query head) pairs. First each position's importance of its competing
 * blocks, computed as the choice's `logits` form says (select_logits_wgsl.ts); then its forced
 * blocks, and its other candidates picked most important first (ties to the lower block) by its
 * W / TP invocations, as `pick` says (SelectPick). Every sum has a fixed order: the same bits
 * every run. The workgroup walks tiles `x, x + gridX, ...` since N / TP may pass WebGPU's 65535
 * workgroups per dimension.
 * @param g the geometry
 * @param o the softmax scale, the x workgroups of the dispatch, and the tile: invocations,
 *   positions, how the logits are computed, how the blocks are picked
 * @returns the module text
 * @example
 * ```ts
 * import { selectBlocksKernel } from "./select_wgsl.ts";
 * selectBlocksKernel({ heads: 1, group: 2, n: 100, d4: 4, blockSize: 16, count: 7, blocks: 2,
 *   initial: 1, local: 1, causal: true, dtype: "f32" },
 *   { scale: 0.25, groupsX: 13, invocations: 64, positions: 8,
 *     logits: { kind: "held", slots: 1 }, pick: { kind: "lanes", lanes: 8, directive: false } });
 * ```
 */
export function selectBlocksKernel(
  g: SelectGeometry,
  o: { scale: number; groupsX: number } & SelectChoice,
): string {
  const T = g.dtype, W = o.invocations, TP = o.positions;
  const form = o.logits.kind === "held"
    ? `${o.logits.slots} block slots per invocation, logits held in registers`
    : `logits recomputed in two passes, chunks of ${o.logits.chunk} blocks`;
  const m = new ShaderModule().comment(
    `Weft select: ${g.blocks} of ${g.count} blocks of ${g.blockSize} rows per position ` +
      `(N=${g.n}, ${g.initial} initial, ${g.local} local${g.causal ? ", causal" : ""}), ` +
      `importance summed over ${g.group} query heads; tiles of ${TP} positions, ${form}; ` +
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
  declareBlockRule(m, g);
  const phase = importancePhase(m, g, o);
  const pick = pickBlocks(m, o.pick);
  return m.render(`
const N = ${g.n}u;
const D4 = ${g.d4}u;
const GROUP = ${g.group}u;
const COUNT = ${g.count}u;
const BLOCKS = ${g.blocks}u;
const W = ${W}u;
const TP = ${TP}u;  // positions per tile
const PW = ${W / TP}u;  // invocations choosing each position's blocks
const ROUNDS = ${
    g.blocks - Math.min(g.initial, g.count)
  }u;  // slots past the initial blocks, one pick each
const GRID_X = ${o.groupsX}u;
const QSCALE = ${f32(o.scale * Math.LOG2E)}; // scale * log2(e): logits in base 2
const NO_SCORE = -1.0e30;  // below any real logit; never reaches exp2 unguarded
const EMPTY = 0xffffffffu;
${phase.constants}

var<workgroup> importance: array<f32, ${
    TP * g.count
  }>;  // [position, block]: -1 not competing, -2 kept
// The importance phase's scratch${o.pick.kind === "rounds" ? ", then the argmax (W)" : ""}.
var<workgroup> scratch: array<f32, ${Math.max(phase.scratch, o.pick.kind === "rounds" ? W : 1)}>;
${
    o.pick.kind === "rounds"
      ? `var<workgroup> bestBlock: array<u32, ${W}>;
`
      : ""
  }${phase.workgroup}
var<workgroup> chosen: array<u32, ${TP * g.blocks}>;
var<workgroup> chosenCount: array<u32, ${TP}>;

@compute @workgroup_size(${W})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let head = wg.y; // batch * Hkv + key/value head
  for (var tile = wg.x; tile * TP < N; tile += GRID_X) {
    let first = tile * TP;
    // Blocks that compete for some position of the tile: the rest are never scored.
    let end = competingBlocks(min(first + TP, N) - 1u);
    for (var e = t; e < TP * COUNT; e += W) { importance[e] = -1.0; }
${phase.body}
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

const NONE = Candidate(-1.0, COUNT);  // no candidate: loses to every competing block

/** A lane's best untaken candidates of its slice, best first (NONE past the slice's). */
struct Cached { c0: Candidate, c1: Candidate, c2: Candidate, c3: Candidate }

/** The four best competing, untaken blocks of start, start + LANES, ... below end of p. */
fn bestOfSlice(p: u32, start: u32, end: u32) -> Cached {
  var c = Cached(NONE, NONE, NONE, NONE);
  for (var j = start; j < end; j += LANES) {
    var x = Candidate(importance[p * COUNT + j], j);
    if (x.value < 0.0) { continue; }  // not competing (-1) or already kept (-2)
    // Insertion into the sorted four: x sinks past every entry it does not beat.
    if (beats(x, c.c0)) { let y = c.c0; c.c0 = x; x = y; }
    if (beats(x, c.c1)) { let y = c.c1; c.c1 = x; x = y; }
    if (beats(x, c.c2)) { let y = c.c2; c.c2 = x; x = y; }
    if (beats(x, c.c3)) { c.c3 = x; }
  }
  return c;
}`,
  );
  const masks: number[] = [];
  for (let mask = 1; mask < pick.lanes; mask *= 2) masks.push(mask);
  return `    // The most important of the other candidates, one per slot, by the position's first LANES
    // invocations, one subgroup's: each keeps the best four of its slice (blocks pl + LANES i)
    // in registers; a butterfly gives every lane the slot's winner (the greater, ties to the
    // lower block: one total order, so every lane ends with the same); its owner marks it
    // taken and moves up its next best, rescanning its slice only once all four are taken. No
    // barrier: each importance is read and written by its owner lane only. The position's other
    // invocations (PW > LANES) have empty slices. Every slot's butterfly runs, keeping the
    // shuffles in uniform control flow.
    let p = t / PW;
    let pl = t % PW;
    let lanesEnd = select(0u, end, pl < LANES && first + p < N);
    var taken = select(0u, chosenCount[p], first + p < N);
    var mine = bestOfSlice(p, pl, lanesEnd);
    var cached = 4u;  // of mine's entries not yet taken
    for (var round = 0u; round < ROUNDS; round++) {
      var win = mine.c0;
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
          mine = Cached(mine.c1, mine.c2, mine.c3, NONE);
          cached--;
          if (cached == 0u) {
            mine = bestOfSlice(p, pl, lanesEnd);
            cached = 4u;
          }
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
