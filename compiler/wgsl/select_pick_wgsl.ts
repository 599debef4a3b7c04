/**
 * The picking half of `select`'s choice (DESIGN §2): each position's forced blocks, the most
 * important of its other candidates (SelectPick), and its kept blocks written in ascending
 * order. The choice kernel (select_wgsl.ts) runs these on the importances in its workgroup
 * memory; where the importances go to a buffer, the selectPick kernel here runs them with one
 * subgroup of lanes per position, many positions in flight, so that the rounds of shuffles of
 * one position overlap with the others' instead of holding a scoring workgroup at a barrier.
 * Both read `importance[row + j]`, `row` the position's first, and keep their picks in the
 * workgroup's `chosen` and `chosenCount`.
 * @module
 */
import type { SelectGeometry, SelectPick } from "../select_attention.ts";
import { ShaderModule } from "./shader_module.ts";

/**
 * WGSL of the forced blocks (the initial ones, then the local ones after them) of the tile's
 * positions, invocation t taking position t: into `chosen`, marked kept (-2) in the importances.
 * @param g the geometry
 * @param row where position p's importances start, as WGSL
 * @returns the WGSL, ending with a barrier
 */
export function forcedBlocks(g: SelectGeometry, row: (p: string) => string): string {
  return `    // Forced blocks take the first slots: the initial ones, then the local ones after them.
    if (t < TP && first + t < N) {
      let own = (first + t) / ${g.blockSize}u;
      var taken = 0u;
      for (var j = 0u; j < min(${g.initial}u, COUNT); j++) {
        chosen[t * BLOCKS + taken] = j;
        importance[${row("t")} + j] = -2.0;
        taken++;
      }
      for (var j = max(${g.initial}u, own + 1u - min(own + 1u, ${g.local}u)); j <= own; j++) {
        chosen[t * BLOCKS + taken] = j;
        importance[${row("t")} + j] = -2.0;
        taken++;
      }
      chosenCount[t] = taken;
    }
    workgroupBarrier();
`;
}

/**
 * WGSL that picks each position's blocks past the forced ones (SelectPick), reading the tile's
 * importances (candidates >= 0, the forced -2) below `end` and appending to `chosen` after the
 * `chosenCount` forced ones. Position p's invocations are `p PW .. p PW + PW - 1`.
 * @param m the module
 * @param pick how
 * @param row where position p's importances start, as WGSL
 * @returns the WGSL
 */
export function pickBlocks(
  m: ShaderModule,
  pick: SelectPick,
  row: (p: string) => string,
): string {
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
        let x = importance[${row("p")} + j];
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
        importance[${row("p")} + bestBlock[t]] = -2.0;
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

/**
 * The four best competing, untaken blocks of start, start + LANES, ... below end of the
 * position whose importances start at row.
 */
fn bestOfSlice(row: u32, start: u32, end: u32) -> Cached {
  var c = Cached(NONE, NONE, NONE, NONE);
  for (var j = start; j < end; j += LANES) {
    var x = Candidate(importance[row + j], j);
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
    let row = ${row("p")};
    var mine = bestOfSlice(row, pl, lanesEnd);
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
          importance[row + win.block] = -2.0;
          mine = Cached(mine.c1, mine.c2, mine.c3, NONE);
          cached--;
          if (cached == 0u) {
            mine = bestOfSlice(row, pl, lanesEnd);
            cached = 4u;
          }
        }
      }
    }
    if (pl == 0u && first + p < N) { chosenCount[p] = taken; }
    workgroupBarrier();`;
}

/**
 * WGSL that writes the tile's kept blocks to `kept`, ascending, as the attention kernel and the
 * caller read them: each kept block's rank among its position's (they are distinct), empty
 * slots last.
 * @returns the WGSL
 */
export function keptInOrder(): string {
  return `    for (var e = t; e < TP * BLOCKS; e += W) {
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
`;
}

/**
 * The selectPick kernel (module comment): one workgroup of SELECT_PICK_WORKGROUP invocations per
 * tile of W / LANES consecutive positions of a key/value head, one subgroup of LANES per
 * position, reading `importance` `[B·Hkv, N, count]` (written by the choice kernel for each
 * position's competing blocks) and writing `kept` `[B·Hkv, N, blocks]`.
 * @param g the geometry
 * @param o the x workgroups of the dispatch, the invocations and the pick (subgroup lanes)
 * @returns the module text
 * @example
 * ```ts
 * import { selectPickKernel } from "./select_pick_wgsl.ts";
 * selectPickKernel({ heads: 1, group: 2, n: 100, d4: 4, blockSize: 16, count: 7, blocks: 2,
 *   initial: 1, local: 1, causal: true, dtype: "f32" },
 *   { groupsX: 13, invocations: 256, pick: { kind: "lanes", lanes: 32, directive: false } });
 * ```
 */
export function selectPickKernel(
  g: SelectGeometry,
  o: { groupsX: number; invocations: number; pick: Extract<SelectPick, { kind: "lanes" }> },
): string {
  const W = o.invocations, TP = W / o.pick.lanes;
  const m = new ShaderModule().comment(
    `Weft select pick: ${g.blocks} of ${g.count} blocks of ${g.blockSize} rows per position ` +
      `(N=${g.n}, ${g.initial} initial, ${g.local} local${g.causal ? ", causal" : ""}) from ` +
      `their importances; ${TP} positions per workgroup, a subgroup of ${o.pick.lanes} lanes ` +
      `each; workgroup ${W}`,
  );
  m.declare(
    "bindings",
    `
@group(0) @binding(0) var<storage, read_write> importance: array<f32>;
@group(0) @binding(1) var<storage, read_write> kept: array<u32>;`,
  );
  declareBlockRule(m, g);
  const row = (p: string) => `(head * N + first + ${p}) * COUNT`;
  return m.render(`
const N = ${g.n}u;
const COUNT = ${g.count}u;
const BLOCKS = ${g.blocks}u;
const W = ${W}u;
const TP = ${TP}u;  // positions per workgroup
const PW = ${o.pick.lanes}u;  // invocations choosing each position's blocks: one subgroup's
const ROUNDS = ${
    g.blocks - Math.min(g.initial, g.count)
  }u;  // slots past the initial blocks, one pick each
const GRID_X = ${o.groupsX}u;
const EMPTY = 0xffffffffu;

var<workgroup> chosen: array<u32, ${TP * g.blocks}>;
var<workgroup> chosenCount: array<u32, ${TP}>;

@compute @workgroup_size(${W})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let head = wg.y; // batch * Hkv + key/value head
  for (var tile = wg.x; tile * TP < N; tile += GRID_X) {
    let first = tile * TP;
    // The competing blocks of the invocation's position: the only importances written.
    let end = competingBlocks(min(first + t / PW, N - 1u));
${forcedBlocks(g, row)}
${pickBlocks(m, o.pick, row)}
${keptInOrder()}
    workgroupBarrier();  // the next tile overwrites the choice
  }
}`);
}

/**
 * `competingBlocks(pos)`, the rule of dsl/select.ts `selectRule`: block j competes for pos
 * where j < competingBlocks(pos) (under causal, once its last row is <= pos).
 */
export function declareBlockRule(m: ShaderModule, g: SelectGeometry): void {
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
