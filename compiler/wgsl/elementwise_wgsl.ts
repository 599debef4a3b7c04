/**
 * The small elementwise kernels around the attention kernels: clearing a branch's accumulators
 * (O = 0, LSE = -inf) and blending gated branches (`out = sum_i g_i * out_i`).
 * @module
 */
import { type AttentionShape, sequenceSizes } from "../../core/shape.ts";
import { declareNegativeInfinity, ShaderModule } from "./shader_module.ts";
import { ELEMENTWISE_WORKGROUP } from "../dispatch_sizes.ts";

/** Declares `linearIndex`: the flat invocation index of a 2D dispatch of elementwise workgroups. */
export function linearIndex(m: ShaderModule): void {
  m.declare(
    "linearIndex",
    `
fn linearIndex(wg: vec3<u32>, lid: u32, groupsX: u32) -> u32 {
  return (wg.y * groupsX + wg.x) * ${ELEMENTWISE_WORKGROUP}u + lid;
}`,
  );
}

/**
 * WGSL that sets `rows` LSE entries to -inf and their O rows to zero, from the given offsets.
 * @param o rows to clear, O's head dim / 4 (Dv / 4), element offsets, the x workgroup count
 * @returns the module text
 * @example
 * ```ts
 * import { clearKernel } from "./elementwise_wgsl.ts";
 * clearKernel({ rows: 64, d4: 16, oBase: 0, lseBase: 0, groupsX: 1 });
 * ```
 */
export function clearKernel(
  o: { rows: number; d4: number; oBase: number; lseBase: number; groupsX: number },
): string {
  const m = new ShaderModule().comment(`Weft clear: ${o.rows} rows to O = 0, LSE = -inf`);
  m.declare(
    "bindings",
    `
@group(0) @binding(0) var<storage, read_write> oOut: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> lseOut: array<f32>;`,
  );
  linearIndex(m);
  declareNegativeInfinity(m);
  return m.render(`
@compute @workgroup_size(${ELEMENTWISE_WORKGROUP})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row = linearIndex(wg, lid, ${o.groupsX}u);
  if (row >= ${o.rows}u) { return; }
  lseOut[${o.lseBase}u + row] = negativeInfinity();
  for (var d = 0u; d < ${o.d4}u; d++) {
    oOut[${o.oBase}u + row * ${o.d4}u + d] = vec4<f32>(0.0);
  }
}`);
}

/**
 * WGSL that converts the float32 output accumulator to the float16 output tensor.
 * @param o number of vec4s and the x workgroup count
 * @returns the module text
 * @example
 * ```ts
 * import { castKernel } from "./elementwise_wgsl.ts";
 * castKernel({ count: 1024, groupsX: 4 });
 * ```
 */
export function castKernel(o: { count: number; groupsX: number }): string {
  const m = new ShaderModule().comment("Weft cast: O float32 -> float16").enable("f16");
  m.declare(
    "bindings",
    `
@group(0) @binding(0) var<storage, read> oIn: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> oOut: array<vec4<f16>>;`,
  );
  linearIndex(m);
  return m.render(`
@compute @workgroup_size(${ELEMENTWISE_WORKGROUP})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = linearIndex(wg, lid, ${o.groupsX}u);
  if (i >= ${o.count}u) { return; }
  oOut[i] = vec4<f16>(oIn[i]);
}`);
}

/**
 * WGSL that blends the branches' outputs with gates.
 * @param o shape, branch count, whether gates vary per position, the x workgroup count
 * @returns the module text
 * @example
 * ```ts
 * import { blendKernel } from "./elementwise_wgsl.ts";
 * blendKernel({ shape: { batch: 1, headsQ: 2, headsKV: 2, seqLen: 8, headDim: 32 }, branches: 2, perPosition: false, groupsX: 1 });
 * ```
 */
export function blendKernel(
  o: { shape: AttentionShape; branches: number; perPosition: boolean; groupsX: number },
): string {
  const { shape } = o;
  const rows = shape.batch * shape.headsQ * shape.seqLen;
  const d4 = sequenceSizes(shape).dv / 4;
  const m = new ShaderModule()
    .comment(`Weft gated blend: out = sum of ${o.branches} branch outputs times their gates`)
    .comment(`gates ${o.perPosition ? "[B, Hq, N, branches]" : "[B, Hq, branches]"}`);
  m.declare(
    "bindings",
    `
@group(0) @binding(0) var<storage, read> branchOut: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> gates: array<f32>;
@group(0) @binding(2) var<storage, read_write> oOut: array<vec4<f32>>;`,
  );
  linearIndex(m);
  const gateRow = o.perPosition ? "row" : `row / ${shape.seqLen}u`;
  return m.render(`
@compute @workgroup_size(${ELEMENTWISE_WORKGROUP})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = linearIndex(wg, lid, ${o.groupsX}u);   // one vec4 of one output row
  if (i >= ${rows * d4}u) { return; }
  let row = i / ${d4}u;                            // (batch * Hq + head) * N + position
  let gateBase = (${gateRow}) * ${o.branches}u;
  var sum = vec4<f32>(0.0);
  for (var b = 0u; b < ${o.branches}u; b++) {
    sum += gates[gateBase + b] * branchOut[b * ${rows * d4}u + i];
  }
  oOut[i] = sum;
}`);
}
