/**
 * WGSL of the backward pass's kernels (plan_gradients.ts, DESIGN §6). Per branch softmax, with
 * P = exp(score - LSE) recomputed from the forward's LSE, dO_i = g dO and Δ = dO_i·O_i:
 *
 *   dV_k += P dO_i,   dS = P (dO_i·V_k - Δ) f'(s),   dQ_q += scale dS K_k,   dK_k += scale dS Q_q.
 *
 * `gradQuery` has one invocation per query row of a query tile, walks the component's BlockMask
 * row and stages each key tile's K and V; `gradKey` has one invocation per key of a key tile,
 * walks the transposed row for every query head of its key/value head and stages each query
 * tile's Q, dO and row statistics. Layouts, masks (with exclusions) and score modifiers are the
 * forward kernel's functions; the modifier's slope is written from the same program
 * (expression_slope_wgsl.ts). Sums are float32; each invocation adds its row into the output
 * once, so the result does not depend on timing.
 * @module
 */
import type { AttentionShape, Dtype } from "../../core/shape.ts";
import type { ParamBlock } from "../aux_data.ts";
import { codeSetOf, type HashLayout } from "../hash_layout.ts";
import { assert } from "../../core/errors.ts";
import type { GradientKernel } from "../kernel_plan.ts";
import type { Branch } from "../plan.ts";
import { branchLearns, GRADIENT_ROWS_WORKGROUP } from "../plan_gradients.ts";
import { type LearnableConstant, learnableOffsets } from "../../dsl/expression_check.ts";
import { ELEMENTWISE_WORKGROUP } from "../dispatch_sizes.ts";
import { HEADER_WORDS, RUN_WORDS, SLOT_WORDS } from "../schedule_buffer.ts";
import { allowedReadsHeadOrBatch, readsHash } from "../component_reads.ts";
import type { ComponentKernelOptions } from "./attention_wgsl.ts";
import { linearIndex } from "./elementwise_wgsl.ts";
import { declareScoreModifier } from "./expression_wgsl.ts";
import { declareConstantReads, declareScoreSlope } from "./expression_slope_wgsl.ts";
import { declareMember } from "./kernel_module_wgsl.ts";
import { declareCodeStaging } from "./code_staging_wgsl.ts";
import { declareHashRows } from "./predicate_wgsl.ts";
import { f32, ShaderModule } from "./shader_module.ts";

/** What a gradient kernel's WGSL depends on. */
export interface GradientKernelOptions {
  kernel: GradientKernel;
  shape: AttentionShape;
  dtype: Dtype;
  scale: number;
  branches: Branch[];
  /** Gated patterns: gates per head `[B, Hq, branches]` or per position. */
  gates?: { perPosition: boolean };
  /** The branch's normalised O: its buffer is bound; its first element there. */
  oOffset: number;
  /** Query and key tile sizes of the components' BlockMasks. */
  tileQ: number;
  tileK: number;
  /** The kernel's parameter block (layouts and masks read their numbers from aux). */
  params: ParamBlock;
  /** Where hashBucket codes and bucket order lie in the hash buffer. */
  hash: HashLayout;
  /** The learnable constants, in the order of their entries in a row's slot. */
  learnable: ReadonlyMap<string, LearnableConstant>;
}

/**
 * The WGSL of one gradient kernel.
 * @param o the kernel and what it reads
 * @returns the module text
 */
export function gradientKernel(o: GradientKernelOptions): string {
  switch (o.kernel.kind) {
    case "gradClear":
      return clearKernel(o);
    case "gradStats":
      return statsKernel(o);
    case "gradGates":
      return gatesKernel(o);
    case "gradQuery":
    case "gradKey":
      return tileKernel(o);
    case "gradUnpool":
      return unpoolKernel(o);
    case "gradConstants":
      return constantsKernel(o);
  }
}

/** The landmarks of a lowRank component, if its keys are. */
function landmarksOf(o: GradientKernelOptions) {
  const l = o.branches[o.kernel.branch].components[o.kernel.component].kLayout;
  return l.kind === "landmarks" ? l : undefined;
}

/** A landmark's dK and dV, shared equally by the rows it is the mean of. */
function unpoolKernel(o: GradientKernelOptions): string {
  const l = landmarksOf(o)!;
  const m = new ShaderModule().comment(
    `Weft gradients: lowRank(${l.rank}) landmarks' dK and dV to their segments' rows`,
  );
  constants(m, o);
  m.declare(
    "bindings",
    `
@group(0) @binding(0) var<storage, read> dLandmark: array<f32>; // dK, then dV, per landmark
@group(0) @binding(1) var<storage, read_write> dkv: array<f32>; // dK, then dV, per key row`,
  );
  return m.render(`
const SEGMENT = ${l.segment}u;      // rows per landmark (the last may have fewer)
const COUNT = ${l.count}u;         // landmarks per key/value head
const LANDMARK_ROWS = ${o.shape.batch * o.shape.headsKV * l.count}u;

@compute @workgroup_size(${GRADIENT_ROWS_WORKGROUP})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row = (wg.y * ${o.kernel.workgroups[0]}u + wg.x) * ${GRADIENT_ROWS_WORKGROUP}u + lid;
  if (row >= KEY_ROWS) { return; }
  let j = (row % N) / SEGMENT;
  let landmark = (row / N) * COUNT + j;
  let share = 1.0 / f32(min(N, (j + 1u) * SEGMENT) - j * SEGMENT);
  for (var d = 0u; d < D; d++) {
    dkv[row * D + d] += share * dLandmark[landmark * D + d];
    dkv[(KEY_ROWS + row) * D + d] += share * dLandmark[(LANDMARK_ROWS + landmark) * D + d];
  }
}`);
}

function constants(m: ShaderModule, o: GradientKernelOptions): void {
  const { batch, headsQ, headsKV, seqLen, headDim } = o.shape;
  m.declare(
    "constants",
    `
const N = ${seqLen}u;
const D = ${headDim}u;
const D4 = D / 4u; // vec4s of a row
const HQ = ${headsQ}u;
const HKV = ${headsKV}u;
const GROUP = ${headsQ / headsKV}u; // query heads per key/value head
const ROWS = ${batch * headsQ * seqLen}u;   // query rows of one branch: B * Hq * N
const KEY_ROWS = ${batch * headsKV * seqLen}u; // key rows: B * Hkv * N
const BRANCHES = ${o.branches.length}u;
const SCALE = ${f32(o.scale)};${
      o.learnable.size
        ? `\nconst LEARNABLE = ${learnableEntries(o)}u; // learnable constants' entries`
        : ""
    }`,
  );
}

/** Entries of all learnable constants (a row's slot in dConstRows). */
function learnableEntries(o: GradientKernelOptions): number {
  return [...o.learnable.values()].reduce((sum, c) => sum + c.size, 0);
}

/**
 * A learnable constant's gradient: the sum of every query row's share, one workgroup per
 * entry, in a fixed order (strided partial sums, then a tree), so the bits never change.
 */
function constantsKernel(o: GradientKernelOptions): string {
  const m = new ShaderModule().comment(
    `Weft gradients: learnable constants (${[...o.learnable.keys()].join(", ")}), rows summed`,
  );
  constants(m, o);
  m.declare(
    "bindings",
    `
@group(0) @binding(0) var<storage, read> dConstRows: array<f32>; // per query row, every entry
@group(0) @binding(1) var<storage, read_write> dConstants: array<f32>;`,
  );
  return m.render(`
var<workgroup> partial: array<f32, ${GRADIENT_ROWS_WORKGROUP}>;

@compute @workgroup_size(${GRADIENT_ROWS_WORKGROUP})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let entry = wg.x;
  var sum = 0.0;
  for (var row = lid; row < ROWS; row += ${GRADIENT_ROWS_WORKGROUP}u) {
    sum += dConstRows[row * LEARNABLE + entry];
  }
  partial[lid] = sum;
  workgroupBarrier();
  for (var half = ${GRADIENT_ROWS_WORKGROUP / 2}u; half > 0u; half /= 2u) {
    if (lid < half) { partial[lid] += partial[lid + half]; }
    workgroupBarrier();
  }
  if (lid == 0u) { dConstants[entry] = partial[0]; }
}`);
}

/** dQ and dK/dV to zero, as vec4s. */
function clearKernel(o: GradientKernelOptions): string {
  const m = new ShaderModule().comment("Weft gradients: clear dQ, dK and dV");
  constants(m, o);
  m.declare(
    "bindings",
    `
@group(0) @binding(0) var<storage, read_write> dq: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> dkv: array<vec4<f32>>; // dK, then dV${
      o.learnable.size
        ? "\n@group(0) @binding(2) var<storage, read_write> dConstRows: array<f32>; // per row"
        : ""
    }`,
  );
  linearIndex(m);
  return m.render(`
@compute @workgroup_size(${ELEMENTWISE_WORKGROUP})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = linearIndex(wg, lid, ${o.kernel.workgroups[0]}u);
  if (i < ROWS * D / 4u) { dq[i] = vec4<f32>(0.0); }
  if (i < 2u * KEY_ROWS * D / 4u) { dkv[i] = vec4<f32>(0.0); }${
    o.learnable.size ? "\n  if (i < ROWS * LEARNABLE) { dConstRows[i] = 0.0; }" : ""
  }
}`);
}

/** The gate of branch `i` at (bh, q) as WGSL, or 1 where not gated. */
function gateRead(o: GradientKernelOptions, bh: string, q: string, i: string): string {
  if (!o.gates) return "1.0";
  return o.gates.perPosition
    ? `gates[(${bh} * N + ${q}) * BRANCHES + ${i}]`
    : `gates[${bh} * BRANCHES + ${i}]`;
}

/**
 * Per row of branch b: its LSE, gate and Δ = g dO·O_b, at `gradStats[(b * ROWS + row) * 4]`.
 */
function statsKernel(o: GradientKernelOptions): string {
  const b = o.kernel.branch;
  const m = new ShaderModule().comment(
    `Weft gradients: branch ${b} row statistics (LSE, gate, Δ = g dO·O)`,
  );
  if (o.dtype === "f16") m.enable("f16");
  constants(m, o);
  m.declare(
    "bindings",
    `
@group(0) @binding(0) var<storage, read> dO: array<${o.dtype}>;
@group(0) @binding(1) var<storage, read> oBranch: array<f32>; // the branch's normalised O
@group(0) @binding(2) var<storage, read> lse: array<f32>;${
      o.gates
        ? `
@group(0) @binding(3) var<storage, read> gates: array<f32>;
@group(0) @binding(4) var<storage, read_write> gradStats: array<f32>;`
        : `
@group(0) @binding(3) var<storage, read_write> gradStats: array<f32>;`
    }`,
  );
  return m.render(`
@compute @workgroup_size(${GRADIENT_ROWS_WORKGROUP})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row = (wg.y * ${o.kernel.workgroups[0]}u + wg.x) * ${GRADIENT_ROWS_WORKGROUP}u + lid;
  if (row >= ROWS) { return; }
  let g = ${gateRead(o, "(row / N)", "(row % N)", `${b}u`)};
  var dot = 0.0;
  for (var d = 0u; d < D; d++) {
    dot += f32(dO[row * D + d]) * oBranch[${o.oOffset}u + row * D + d];
  }
  let at = (${b}u * ROWS + row) * 4u;
  gradStats[at] = lse[${b}u * ROWS + row];
  gradStats[at + 1u] = g;
  gradStats[at + 2u] = g * dot;
}`);
}

/** dgates: `dO·O_i` per (row, branch), or summed over the rows of a head. */
function gatesKernel(o: GradientKernelOptions): string {
  const perPosition = o.gates!.perPosition;
  const m = new ShaderModule().comment(
    `Weft gradients: gates, dO·O_i ${perPosition ? "per position" : "summed per head"}`,
  );
  if (o.dtype === "f16") m.enable("f16");
  constants(m, o);
  m.declare(
    "bindings",
    `
@group(0) @binding(0) var<storage, read> dO: array<${o.dtype}>;
@group(0) @binding(1) var<storage, read> branchO: array<f32>; // [branches, B, Hq, N, D]
@group(0) @binding(2) var<storage, read_write> dgates: array<f32>;`,
  );
  const rows = perPosition ? "1u" : "N";
  return m.render(`
@compute @workgroup_size(${GRADIENT_ROWS_WORKGROUP})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let item = (wg.y * ${o.kernel.workgroups[0]}u + wg.x) * ${GRADIENT_ROWS_WORKGROUP}u + lid;
  if (item >= ${perPosition ? "ROWS" : "ROWS / N"} * BRANCHES) { return; }
  let i = item % BRANCHES;             // the branch
  let first = (item / BRANCHES) * ${rows}; // its first row
  var sum = 0.0;
  for (var r = first; r < first + ${rows}; r++) {
    for (var d = 0u; d < D; d++) {
      sum += f32(dO[r * D + d]) * branchO[(i * ROWS + r) * D + d];
    }
  }
  dgates[item] = sum;
}`);
}

/** gradQuery (one invocation per query row) and gradKey (one per key row). */
function tileKernel(o: GradientKernelOptions): string {
  const k = o.kernel, branch = o.branches[k.branch], c = branch.components[k.component];
  const queryMajor = k.kind === "gradQuery";
  const landmarks = landmarksOf(o);
  const m = new ShaderModule().comment(
    `Weft gradients: branch ${k.branch} component ${k.component}, ` +
      (queryMajor ? "dQ, query-major" : "dK and dV, key-major over the transposed mask"),
  );
  m.comment(`tile ${o.tileQ}x${o.tileK}, N=${o.shape.seqLen}, D=${o.shape.headDim}, ${o.dtype}`);
  if (o.dtype === "f16") m.enable("f16");
  constants(m, o);
  m.declare(
    "bindings",
    `
@group(0) @binding(0) var<storage, read> qIn: array<vec4<${o.dtype}>>;
@group(0) @binding(1) var<storage, read> kIn: array<vec4<${o.dtype}>>;
@group(0) @binding(2) var<storage, read> vIn: array<vec4<${o.dtype}>>;
@group(0) @binding(3) var<storage, read> dO: array<vec4<${o.dtype}>>;
@group(0) @binding(4) var<storage, read> schedule: array<u32>; // the gradient schedule
@group(0) @binding(5) var<storage, read> aux: array<u32>;
@group(0) @binding(6) var<storage, read> gradStats: array<f32>; // per branch row: LSE, g, Δ
@group(0) @binding(7) var<storage, read_write> ${queryMajor ? "dq" : "dkv"}: array<vec4<f32>>; ${
      queryMajor ? "" : `// dK, then dV, per ${landmarks ? "landmark" : "key row"}`
    }`,
  );
  const keyRows = landmarks ? landmarks.count : o.shape.seqLen;
  m.declare(
    "keyRows",
    `
const KV_ROWS = ${keyRows}u; // key rows per key/value head${
      landmarks ? ` (the pooled landmarks of lowRank(${landmarks.rank}))` : ""
    }`,
  );
  const hashed = readsHash(c);
  if (hashed) {
    // Bucket order and same-bucket masks read the codes of this head's rows (queryRow, keyRow).
    m.declare(
      "hashBinding",
      `
@group(0) @binding(8) var<storage, read> hash: array<u32>; // codes, bucket order`,
    );
    declareHashRows(m);
  }
  const member = {
    component: c,
    shape: o.shape,
    n: o.shape.seqLen, // the backward pass runs square calls only: every position is a query
    hash: o.hash,
  } as unknown as ComponentKernelOptions;
  const { qPos, kPos } = declareMember(m, member, o.params, "allowed");
  const codes = declareCodeStaging(m, member);
  const allowed = `allowed(q, k${allowedReadsHeadOrBatch(c) ? ", h, b" : ""}${
    codes ? `, ${codes.queryCodes}(q), ${codes.keyCodes}(k)` : ""
  })`;
  // A branch that reads learnable constants reads them from the learned buffer, and its
  // query-major pass adds each row's share of their gradients into dConstRows.
  const learns = branchLearns(branch);
  const offsets = learns ? learnableOffsets(o.learnable) : undefined;
  if (branch.score) {
    declareScoreModifier(m, branch.score, o.shape.seqLen, offsets);
    declareScoreSlope(m, branch.score, o.shape.seqLen, offsets);
  }
  const constantReads = queryMajor && offsets
    ? declareConstantReads(m, branch.score!, o.shape.seqLen, offsets)
    : "";
  if (learns) {
    const next = hashed ? 9 : 8;
    m.declare(
      "learnedBindings",
      queryMajor
        ? `
@group(0) @binding(${next}) var<storage, read_write> dConstRows: array<f32>; // per row
@group(0) @binding(${next + 1}) var<storage, read> learned: array<f32>; // learnable constants`
        : `
@group(0) @binding(${next}) var<storage, read> learned: array<f32>; // learnable constants`,
    );
  }
  const scored = branch.uniform
    ? "// Uniform weights (the ANNA estimator): every score is 0, whatever Q and K.\n" +
      "        let sm = 0.0;\n        let slope = 0.0;"
    : branch.score
    ? "let sm = scoreModifier(s, q, k, h, b);\n        let slope = scoreModifierSlope(s, q, k, h, b);"
    : "let sm = s;\n        let slope = 1.0;";
  return m.render(
    queryMajor ? queryKernel(o, qPos, kPos, hashed) : keyKernel(o, qPos, kPos, hashed),
  )
    .replaceAll("ALLOWED", allowed)
    .replaceAll("SCORED", scored)
    .replaceAll("CONSTANT_READS\n", constantReads ? `${constantReads}\n` : "");
}

/**
 * The tiles a workgroup walks: a bucket-ordered (hashBucket) component's bucket range, else the
 * runs of its row of the gradient schedule.
 */
function walk(o: GradientKernelOptions, queryMajor: boolean, body: string): string {
  const c = o.branches[o.kernel.branch].components[o.kernel.component];
  return c.kLayout.kind === "sorted" ? bucketWalk(o, queryMajor, body) : runs(o, "wg.x", body);
}

/**
 * A bucket-ordered component's tiles, read from the forward's codes as its forward does
 * (key_loop_wgsl.ts, `bucketRange`): this tile's rows, in bucket order, span buckets
 * `first..last`, so the other side's rows that share a bucket with them are one range of that
 * side's bucket order, `[starts[first], starts[last + 1])`, every tile of it PARTIAL (the
 * same-bucket mask picks the pairs). Query-major: this query tile's keys (kvHead's starts);
 * key-major: this key tile's queries (query head bh's starts).
 */
function bucketWalk(o: GradientKernelOptions, queryMajor: boolean, body: string): string {
  const l = o.branches[o.kernel.branch].components[o.kernel.component].kLayout;
  assert(l.kind === "sorted", "a bucket walk of a static mask");
  const set = codeSetOf(o.hash, l);
  const n = o.shape.seqLen, rows = set.rowsQ + set.rowsK, starts = set.buckets + 1;
  const round = l.round * rows;
  // This side's sorts: query rows first in a round, then key rows.
  const mine = queryMajor
    ? { row: "bh", first: round }
    : { row: "kvRow", first: round + set.rowsQ };
  const other = queryMajor
    ? { row: "kvHead", first: round + set.rowsQ, tile: "TILE_K" }
    : { row: "bh", first: round, tile: "TILE_Q" };
  const tile = queryMajor ? "TILE_Q" : "TILE_K";
  return `  // Bucket order (round ${l.round}): this tile's rows span buckets first..last; the other
  // side's rows of those buckets are one range of its bucket order, every tile PARTIAL.
  let orderAt = ${set.order + mine.first * n}u + ${mine.row} * N;
  let firstRow = hash[orderAt + wg.x * ${tile}];
  let lastRow = hash[orderAt + min(N, wg.x * ${tile} + ${tile}) - 1u];
  let codesAt = ${set.codes + mine.first * n}u + ${mine.row} * N;
  let firstBucket = hash[codesAt + firstRow];
  let lastBucket = hash[codesAt + lastRow];
  let startsAt = ${set.starts + other.first * starts}u + ${other.row} * ${starts}u;
  let tileEnd = (hash[startsAt + lastBucket + 1u] + ${other.tile} - 1u) / ${other.tile};
  let partial = true;
  for (var tile = hash[startsAt + firstBucket] / ${other.tile}; tile < tileEnd; tile++) {
${body}
  }`;
}

/** The walk over one schedule row's runs, each tile `tile` with `partial` set. */
function runs(o: GradientKernelOptions, row: string, body: string): string {
  return `  // The runs of this row of the gradient schedule (slot ${o.kernel.scheduleSlot}).
  let slot = ${HEADER_WORDS}u + ${SLOT_WORDS}u * ${o.kernel.scheduleSlot}u;
  let rowsAt = schedule[slot];
  let runsAt = schedule[slot + 1u];
  for (var run = schedule[rowsAt + ${row}]; run < schedule[rowsAt + ${row} + 1u]; run++) {
    let head = schedule[runsAt + ${RUN_WORDS}u * run]; // start << 1 | partial
    let partial = (head & 1u) == 1u;
    for (var tile = head >> 1u; tile < (head >> 1u) + schedule[runsAt + ${RUN_WORDS}u * run + 1u]; tile++) {
${body}
    }
  }`;
}

function queryKernel(
  o: GradientKernelOptions,
  qPos: string,
  kPos: string,
  hashed: boolean,
): string {
  const b = o.kernel.branch;
  const body = `      workgroupBarrier();             // every read of the previous tile is done
      for (var i = lid; i < TILE_K * D4; i += TILE_Q) {
        let j = i / D4;
        let kp = ${kPos}(tile * TILE_K + j);
        if (i % D4 == 0u) { kPosition[j] = kp; }
        let src = (kvHead * KV_ROWS + u32(max(kp, 0))) * D4 + i % D4;
        kTile[i] = select(vec4<f32>(0.0), vec4<f32>(kIn[src]), kp >= 0);
        vTile[i] = select(vec4<f32>(0.0), vec4<f32>(vIn[src]), kp >= 0);
      }
      workgroupBarrier();
      // A condition, not \`continue\`: the barriers must stay in uniform control flow.
      for (var j = 0u; j < TILE_K; j++) {
        let k = kPosition[j];
        if (q >= 0 && k >= 0 && (!partial || ALLOWED)) {
          var qk = 0.0;
          var dp = 0.0;
          for (var d = 0u; d < D4; d++) {
            qk += dot(qRow[d], kTile[j * D4 + d]);
            dp += dot(dORow[d], vTile[j * D4 + d]);
          }
          let s = SCALE * qk;
          SCORED
          let dScore = exp(sm - lse) * (dp - delta); // ∂loss/∂score
          let dS = dScore * slope;
CONSTANT_READS
          for (var d = 0u; d < D4; d++) { acc[d] += dS * kTile[j * D4 + d]; }
        }
      }`;
  return `
const TILE_Q = ${o.tileQ}u;
const TILE_K = ${o.tileK}u;
var<workgroup> kTile: array<vec4<f32>, ${o.tileK * o.shape.headDim / 4}>;
var<workgroup> vTile: array<vec4<f32>, ${o.tileK * o.shape.headDim / 4}>;
var<workgroup> kPosition: array<i32, ${o.tileK}>;

@compute @workgroup_size(${o.tileQ})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let bh = wg.y;                      // batch * HQ + query head
  let h = i32(bh % HQ);
  let b = i32(bh / HQ);
  let kvHead = (bh / HQ) * HKV + (bh % HQ) / GROUP;${
    hashed
      ? "\n  queryRow = bh;                     // whose codes and bucket order to read\n  keyRow = kvHead;"
      : ""
  }
  let q = ${qPos}(wg.x * TILE_Q + lid); // -1 past the end of the layout
  let row = bh * N + u32(max(q, 0));
  let stats = (${b}u * ROWS + row) * 4u;
  let lse = gradStats[stats];
  let g = gradStats[stats + 1u];
  let delta = gradStats[stats + 2u];
  var qRow: array<vec4<f32>, ${o.shape.headDim / 4}>;
  var dORow: array<vec4<f32>, ${o.shape.headDim / 4}>;
  var acc: array<vec4<f32>, ${o.shape.headDim / 4}>;
  for (var d = 0u; d < D4; d++) {
    qRow[d] = vec4<f32>(qIn[row * D4 + d]);
    dORow[d] = g * vec4<f32>(dO[row * D4 + d]);
    acc[d] = vec4<f32>(0.0);
  }
${walk(o, true, body)}
  if (q < 0) { return; }
  for (var d = 0u; d < D4; d++) { dq[row * D4 + d] += SCALE * acc[d]; }
}`;
}

function keyKernel(
  o: GradientKernelOptions,
  qPos: string,
  kPos: string,
  hashed: boolean,
): string {
  const b = o.kernel.branch;
  const LAND = landmarksOf(o) ? "" : "+";
  const body = `      workgroupBarrier();             // every read of the previous tile is done
      for (var i = lid; i < TILE_Q * D4; i += TILE_K) {
        let j = i / D4;
        let qp = ${qPos}(tile * TILE_Q + j);
        let row = bh * N + u32(max(qp, 0));
        if (i % D4 == 0u) {
          qPosition[j] = qp;
          let stats = (${b}u * ROWS + row) * 4u;
          lseTile[j] = gradStats[stats];
          gateTile[j] = gradStats[stats + 1u];
          deltaTile[j] = gradStats[stats + 2u];
        }
        qTile[i] = select(vec4<f32>(0.0), vec4<f32>(qIn[row * D4 + i % D4]), qp >= 0);
        dOTile[i] = select(vec4<f32>(0.0), vec4<f32>(dO[row * D4 + i % D4]), qp >= 0);
      }
      workgroupBarrier();
      for (var j = 0u; j < TILE_Q; j++) {
        let q = qPosition[j];
        if (k >= 0 && q >= 0 && (!partial || ALLOWED)) {
          let g = gateTile[j];
          var qk = 0.0;
          var dp = 0.0;
          for (var d = 0u; d < D4; d++) {
            qk += dot(qTile[j * D4 + d], kRow[d]);
            dp += dot(dOTile[j * D4 + d], vRow[d]);
          }
          let s = SCALE * qk;
          SCORED
          let p = exp(sm - lseTile[j]);
          let dS = p * (g * dp - deltaTile[j]) * slope;
          for (var d = 0u; d < D4; d++) {
            dvAcc[d] += p * g * dOTile[j * D4 + d];
            dkAcc[d] += dS * qTile[j * D4 + d];
          }
        }
      }`;
  return `
const TILE_Q = ${o.tileQ}u;
const TILE_K = ${o.tileK}u;
var<workgroup> qTile: array<vec4<f32>, ${o.tileQ * o.shape.headDim / 4}>;
var<workgroup> dOTile: array<vec4<f32>, ${o.tileQ * o.shape.headDim / 4}>;
var<workgroup> qPosition: array<i32, ${o.tileQ}>;
var<workgroup> lseTile: array<f32, ${o.tileQ}>;
var<workgroup> gateTile: array<f32, ${o.tileQ}>;
var<workgroup> deltaTile: array<f32, ${o.tileQ}>;

@compute @workgroup_size(${o.tileK})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let kvRow = wg.y;                   // batch * HKV + key/value head
  let b = i32(kvRow / HKV);${
    hashed ? "\n  keyRow = kvRow;                    // whose codes and bucket order to read" : ""
  }
  let k = ${kPos}(wg.x * TILE_K + lid); // -1 past the end of the layout
  let row = kvRow * KV_ROWS + u32(max(k, 0));
  var kRow: array<vec4<f32>, ${o.shape.headDim / 4}>;
  var vRow: array<vec4<f32>, ${o.shape.headDim / 4}>;
  var dkAcc: array<vec4<f32>, ${o.shape.headDim / 4}>;
  var dvAcc: array<vec4<f32>, ${o.shape.headDim / 4}>;
  for (var d = 0u; d < D4; d++) {
    kRow[d] = vec4<f32>(kIn[row * D4 + d]);
    vRow[d] = vec4<f32>(vIn[row * D4 + d]);
    dkAcc[d] = vec4<f32>(0.0);
    dvAcc[d] = vec4<f32>(0.0);
  }
  // Every query head of this key/value head, one after another: their sums add here.
  for (var group = 0u; group < GROUP; group++) {
    let bh = (kvRow / HKV) * HQ + (kvRow % HKV) * GROUP + group;
    let h = i32(bh % HQ);${hashed ? "\n    queryRow = bh;" : ""}
${walk(o, false, body).split("\n").map((l) => "  " + l).join("\n")}
  }
  if (k < 0) { return; }
  // Landmarks are written (gradUnpool adds them to their rows next); key rows add.
  let rows = (KEY_ROWS / N) * KV_ROWS;
  for (var d = 0u; d < D4; d++) {
    dkv[row * D4 + d] ${LAND}= SCALE * dkAcc[d];
    dkv[(rows + row) * D4 + d] ${LAND}= dvAcc[d];
  }
}`;
}
