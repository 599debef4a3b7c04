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
import { declareBlockRule, forcedBlocks, keptInOrder, pickBlocks } from "./select_pick_wgsl.ts";
import type { SelectChoice, SelectGeometry } from "../select_attention.ts";

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
  const buffered = o.importance === "buffer";
  m.declare(
    "bindings",
    `
@group(0) @binding(0) var<storage, read> qIn: array<vec4<${T}>>;
@group(0) @binding(1) var<storage, read> means: array<vec4<f32>>;
${
      buffered
        ? "@group(0) @binding(2) var<storage, read_write> importance: array<f32>;"
        : "@group(0) @binding(2) var<storage, read_write> kept: array<u32>;"
    }`,
  );
  declareBlockRule(m, g);
  // Where position p of the tile keeps its importances: the workgroup's array, or the buffer.
  const row = buffered
    ? (p: string) => `(head * N + first + ${p}) * COUNT`
    : (p: string) => `${p} * COUNT`;
  const phase = importancePhase(m, g, o, row);
  const picking = buffered ? "" : `
${forcedBlocks(g, row)}
${pickBlocks(m, o.pick, row)}
${keptInOrder()}`;
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

${
    buffered
      ? ""
      : `var<workgroup> importance: array<f32, ${
        TP * g.count
      }>;  // [position, block]: -1 not competing, -2 kept
`
  }// The importance phase's scratch${o.pick.kind === "rounds" ? ", then the argmax (W)" : ""}.
var<workgroup> scratch: array<f32, ${
    Math.max(phase.scratch, o.pick.kind === "rounds" && !buffered ? W : 1)
  }>;
${
    o.pick.kind === "rounds" && !buffered
      ? `var<workgroup> bestBlock: array<u32, ${W}>;
`
      : ""
  }${phase.workgroup}${
    buffered ? "" : `
var<workgroup> chosen: array<u32, ${TP * g.blocks}>;
var<workgroup> chosenCount: array<u32, ${TP}>;`
  }

@compute @workgroup_size(${W})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let head = wg.y; // batch * Hkv + key/value head
  for (var tile = wg.x; tile * TP < N; tile += GRID_X) {
    let first = tile * TP;
    // Blocks that compete for some position of the tile: the rest are never scored.
    let end = competingBlocks(min(first + TP, N) - 1u);
${
    buffered
      ? "    // Only the competing blocks' importances are written: the pick reads no others."
      : "    for (var e = t; e < TP * COUNT; e += W) { importance[e] = -1.0; }"
  }
${phase.body}${picking}
    workgroupBarrier();  // the next tile overwrites the tile's rows${
    buffered ? "" : ", importances and choice"
  }
  }
}`);
}
