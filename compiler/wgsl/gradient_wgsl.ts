/**
 * WGSL of the backward pass's kernels (plan_gradients.ts, DESIGN §6). Per branch softmax, with
 * P = exp(score - LSE) recomputed from the forward's LSE, dO_i = g dO and Δ = dO_i·O_i:
 *
 *   dV_k += P dO_i,   dS = P (dO_i·V_k - Δ) f'(s),   dQ_q += scale dS K_k,   dK_k += scale dS Q_q.
 *
 * The tile kernels, gradQuery and gradKey, are in gradient_tile_wgsl.ts, and paged K and V's
 * sum into the pool in gradient_pages_wgsl.ts; here are the row kernels around them (clear,
 * statistics, gates, landmarks, learnable constants). Sums are
 * float32, in a fixed order, so the result does not depend on timing.
 * @module
 */
import { GRADIENT_ROWS_WORKGROUP, SUM_WORKGROUP } from "../plan_gradients.ts";
import { ELEMENTWISE_WORKGROUP } from "../dispatch_sizes.ts";
import { linearIndex } from "./elementwise_wgsl.ts";
import { ShaderModule } from "./shader_module.ts";
import {
  gradientConstants,
  type GradientKernelOptions,
  rowsPerHead,
  valueWidths,
} from "./gradient_common_wgsl.ts";
import { gradientTileKernel } from "./gradient_tile_wgsl.ts";
import { pagesKernel } from "./gradient_pages_wgsl.ts";

export type { GradientKernelOptions };

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
      return gradientTileKernel(o);
    case "gradUnpool":
      return unpoolKernel(o);
    case "gradConstants":
      return constantsKernel(o);
    case "gradPages":
      return pagesKernel(o);
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
  gradientConstants(m, o);
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
${
    valueWidths(o).dim === "D"
      ? `  for (var d = 0u; d < D; d++) {
    dkv[row * D + d] += share * dLandmark[landmark * D + d];
    dkv[(KEY_ROWS + row) * D + d] += share * dLandmark[(LANDMARK_ROWS + landmark) * D + d];
  }`
      : `  for (var d = 0u; d < D; d++) {
    dkv[row * D + d] += share * dLandmark[landmark * D + d];
  }
  // dV's rows are DV long, after every row of dK.
  for (var d = 0u; d < DV; d++) {
    dkv[KEY_ROWS * D + row * DV + d] += share * dLandmark[LANDMARK_ROWS * D + landmark * DV + d];
  }`
  }
}`);
}

/**
 * A learnable constant's gradient: the sum of every query row's share, one workgroup per
 * entry, in a fixed order (strided partial sums, then a tree), so the bits never change.
 */
function constantsKernel(o: GradientKernelOptions): string {
  const m = new ShaderModule().comment(
    `Weft gradients: learnable constants (${[...o.learnable.keys()].join(", ")}), rows summed`,
  );
  gradientConstants(m, o);
  m.declare(
    "bindings",
    `
@group(0) @binding(0) var<storage, read> dConstRows: array<f32>; // per query row, every entry
@group(0) @binding(1) var<storage, read_write> dConstants: array<f32>;`,
  );
  return m.render(`
var<workgroup> partial: array<f32, ${SUM_WORKGROUP}>;

@compute @workgroup_size(${SUM_WORKGROUP})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let entry = wg.x;
  var sum = 0.0;
  for (var row = lid; row < ROWS; row += ${SUM_WORKGROUP}u) {
    sum += dConstRows[row * LEARNABLE + entry];
  }
${treeSum("dConstants[entry]")}
}`);
}

/**
 * Each invocation's `sum` added in a tree over workgroup memory (`partial`, SUM_WORKGROUP
 * wide): a fixed order, so the same bits on every run. Invocation 0 writes the total.
 */
function treeSum(target: string): string {
  return `  partial[lid] = sum;
  workgroupBarrier();
  for (var half = ${SUM_WORKGROUP / 2}u; half > 0u; half /= 2u) {
    if (lid < half) { partial[lid] += partial[lid + half]; }
    workgroupBarrier();
  }
  if (lid == 0u) { ${target} = partial[0]; }`;
}

/** dQ and dK/dV to zero, as vec4s. */
function clearKernel(o: GradientKernelOptions): string {
  const m = new ShaderModule().comment("Weft gradients: clear dQ, dK and dV");
  gradientConstants(m, o);
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
  if (i < ${
    valueWidths(o).dim === "D" ? "2u * KEY_ROWS * D / 4u" : "KEY_ROWS * (D + DV) / 4u"
  }) { dkv[i] = vec4<f32>(0.0); }${
    o.learnable.size ? "\n  if (i < ROWS * LEARNABLE) { dConstRows[i] = 0.0; }" : ""
  }
}`);
}

/** The gate of branch `i` at (bh, query row) as WGSL, or 1 where not gated. */
function gateRead(o: GradientKernelOptions, bh: string, row: string, i: string): string {
  if (!o.gates) return "1.0";
  return o.gates.perPosition
    ? `gates[(${bh} * ${rowsPerHead(o)} + ${row}) * BRANCHES + ${i}]`
    : `gates[${bh} * BRANCHES + ${i}]`;
}

/**
 * Per row of branch b: its LSE, gate and Δ = g dO·O_b, at `gradStats[(b * ROWS + row) * 4]`.
 */
function statsKernel(o: GradientKernelOptions): string {
  const b = o.kernel.branch, V = valueWidths(o).dim;
  const m = new ShaderModule().comment(
    `Weft gradients: branch ${b} row statistics (LSE, gate, Δ = g dO·O)`,
  );
  if (o.dtype === "f16") m.enable("f16");
  gradientConstants(m, o);
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
  let g = ${gateRead(o, `(row / ${rowsPerHead(o)})`, `(row % ${rowsPerHead(o)})`, `${b}u`)};
  var dot = 0.0;
  for (var d = 0u; d < ${V}; d++) {
    dot += f32(dO[row * ${V} + d]) * oBranch[${o.oOffset}u + row * ${V} + d];
  }
  let at = (${b}u * ROWS + row) * 4u;
  gradStats[at] = lse[${b}u * ROWS + row];
  gradStats[at + 1u] = g;
  gradStats[at + 2u] = g * dot;
}`);
}

/** dgates: `dO·O_i` per (row, branch), or summed over the rows of a head. */
function gatesKernel(o: GradientKernelOptions): string {
  const perPosition = o.gates!.perPosition, V = valueWidths(o).dim;
  const m = new ShaderModule().comment(
    `Weft gradients: gates, dO·O_i ${perPosition ? "per position" : "summed per head"}`,
  );
  if (o.dtype === "f16") m.enable("f16");
  gradientConstants(m, o);
  m.declare(
    "bindings",
    `
@group(0) @binding(0) var<storage, read> dO: array<${o.dtype}>;
@group(0) @binding(1) var<storage, read> branchO: array<f32>; // [branches, B, Hq, ${
      rowsPerHead(o)
    }, ${V}]
@group(0) @binding(2) var<storage, read_write> dgates: array<f32>;`,
  );
  if (!perPosition) return headGatesKernel(o, m, V);
  return m.render(`
@compute @workgroup_size(${GRADIENT_ROWS_WORKGROUP})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let item = (wg.y * ${o.kernel.workgroups[0]}u + wg.x) * ${GRADIENT_ROWS_WORKGROUP}u + lid;
  if (item >= ROWS * BRANCHES) { return; }
  let i = item % BRANCHES;             // the branch
  let r = item / BRANCHES;             // the row
  var sum = 0.0;
  for (var d = 0u; d < ${V}; d++) {
    sum += f32(dO[r * ${V} + d]) * branchO[(i * ROWS + r) * ${V} + d];
  }
  dgates[item] = sum;
}`);
}

/**
 * A per-head gate's gradient is one dot product of a head's dO with its branch's O, both
 * contiguous (rows x value dim): a workgroup per (head, branch), its invocations striding the
 * elements (coalesced), then a tree over workgroup memory. The order is fixed, so the bits are.
 */
function headGatesKernel(o: GradientKernelOptions, m: ShaderModule, V: string): string {
  const rows = rowsPerHead(o);
  return m.render(`
var<workgroup> partial: array<f32, ${SUM_WORKGROUP}>;

@compute @workgroup_size(${SUM_WORKGROUP})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let item = wg.y * ${o.kernel.workgroups[0]}u + wg.x; // (batch, head) * BRANCHES + branch
  if (item >= ROWS / ${rows} * BRANCHES) { return; }    // the whole workgroup returns
  let i = item % BRANCHES;             // the branch
  let head = item / BRANCHES;          // batch * Hq + query head
  let count = ${rows} * ${V};             // the head's elements
  let dOFirst = head * count;
  let oFirst = (i * ROWS + head * ${rows}) * ${V};
  var sum = 0.0;
  for (var e = lid; e < count; e += ${SUM_WORKGROUP}u) {
    sum += f32(dO[dOFirst + e]) * branchO[oFirst + e];
  }
${treeSum("dgates[item]")}
}`);
}
