/**
 * WGSL of `gradPages` (plan_gradients.ts, DESIGN §6): a paged call's dK and dV in the pool's
 * shape. The tile kernels add dK and dV into contiguous rows `[B, Hkv, Nk, D]` (then Dv), one
 * owner per element; this pass gives each vec4 of the pool `[pages, Hkv, pageSize, D]` (then
 * Dv) one invocation, which sums the rows that name its page, read from the block table
 * inverted on the host (`pageReferences`, core/paged_kv.ts): entries `b * COLUMNS + c` in
 * ascending order, so a page that several sequences share is summed in one fixed order and the
 * bits never change; a page no position names, and rows past Nk, get 0. The pool's page count
 * is read from the output's length and the x workgroup count from the dispatch, so a grown
 * pool reuses the pipeline, as in the forward kernels.
 * @module
 */
import { assert } from "../../core/errors.ts";
import { ELEMENTWISE_WORKGROUP } from "../dispatch_sizes.ts";
import {
  gradientConstants,
  type GradientKernelOptions,
  valueWidths,
} from "./gradient_common_wgsl.ts";
import { ShaderModule } from "./shader_module.ts";

/**
 * The WGSL of `gradPages`.
 * @param o the kernel, the shape and the pool's page size and table columns
 * @returns the module text
 */
export function pagesKernel(o: GradientKernelOptions): string {
  assert(o.pool !== undefined, "gradPages without paged K and V");
  const { pageSize, columns } = o.pool;
  const V4 = valueWidths(o).vec4s; // D4, or DV4 where V has a head dim of its own
  const m = new ShaderModule().comment(
    `Weft gradients: dK and dV summed into pages of ${pageSize} through the inverted block table`,
  );
  gradientConstants(m, o);
  m.declare(
    "bindings",
    `
@group(0) @binding(0) var<storage, read> dkv: array<vec4<f32>>; // dK [B, Hkv, N, D], then dV
@group(0) @binding(1) var<storage, read> pageRefs: array<u32>; // B * COLUMNS refs, then starts
@group(0) @binding(2) var<storage, read_write> dkvPages: array<vec4<f32>>; // the pools: dK, dV`,
  );
  return m.render(`
const PAGE_SIZE = ${pageSize}u;
const COLUMNS = ${columns}u; // ceil(N / PAGE_SIZE): table entries per sequence
const REFS = ${o.shape.batch * columns}u; // B * COLUMNS refs, then each page's first ref
const ROW_VEC4S = D4 + ${V4}; // a row of dK and one of dV

@compute @workgroup_size(${ELEMENTWISE_WORKGROUP})
fn main(
  @builtin(workgroup_id) wg: vec3<u32>,
  @builtin(num_workgroups) groups: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let i = (wg.y * groups.x + wg.x) * ${ELEMENTWISE_WORKGROUP}u + lid;
  // The pool's rows (pages * HKV * PAGE_SIZE) from its length: no page count in the text.
  let poolRows = arrayLength(&dkvPages) / ROW_VEC4S;
  if (i >= poolRows * ROW_VEC4S) { return; }
  // dK's pool first, then dV's; in dkv, dV's rows start after KEY_ROWS rows of dK.
  let isV = i >= poolRows * D4;
  let width = select(D4, ${V4}, isV);
  let at = select(i, i - poolRows * D4, isV);
  let base = select(0u, KEY_ROWS * D4, isV);
  let row = at / width;
  let d = at % width;
  let page = row / (HKV * PAGE_SIZE);
  let head = (row / PAGE_SIZE) % HKV;
  let r = row % PAGE_SIZE;
  var sum = vec4<f32>(0.0);
  for (var j = pageRefs[REFS + page]; j < pageRefs[REFS + page + 1u]; j++) {
    let entry = pageRefs[j];           // b * COLUMNS + c, ascending
    let position = (entry % COLUMNS) * PAGE_SIZE + r;
    if (position < N) {
      sum += dkv[base + (((entry / COLUMNS) * HKV + head) * N + position) * width + d];
    }
  }
  dkvPages[i] = sum;
}`);
}
