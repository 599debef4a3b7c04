/**
 * WGSL of the lowRank pre-pass: landmark j of each (batch, key/value head) is the mean of K (and
 * V) over rows `[j·segment, min(N, (j+1)·segment))`, summed in float32 whatever the dtype. One
 * invocation per landmark vec4; the segment loop reads consecutive rows, through the block
 * table where K and V are paged. The landmarks it writes are contiguous either way.
 * @module
 */
import { ShaderModule } from "./shader_module.ts";
import { linearIndex } from "./elementwise_wgsl.ts";
import { ELEMENTWISE_WORKGROUP } from "../dispatch_sizes.ts";
import { declareKvRow, type PagedRows } from "./kv_row_wgsl.ts";

/**
 * The pooling kernel for one rank.
 * @param o K/V heads (B·Hkv), N, D/4 and Dv/4 (K's and V's rows), segment length and landmark
 *   count, dtype, x workgroups, and paged K and V's layout where they are paged
 * @returns the module text
 * @example
 * ```ts
 * import { poolingKernel } from "./pooling_wgsl.ts";
 * poolingKernel({ heads: 2, n: 100, d4: 16, dv4: 16, segment: 4, count: 25, dtype: "f32", groupsX: 13 });
 * ```
 */
export function poolingKernel(o: {
  heads: number;
  n: number;
  d4: number;
  dv4: number;
  segment: number;
  count: number;
  dtype: "f32" | "f16";
  groupsX: number;
  paged?: PagedRows;
}): string {
  const T = o.dtype;
  const m = new ShaderModule().comment(
    `Weft lowRank pre-pass: ${o.count} landmarks of ${o.segment} rows each (N=${o.n}), ` +
      `means of K and V per key/value head`,
  );
  if (T === "f16") m.enable("f16");
  m.declare(
    "bindings",
    `
@group(0) @binding(0) var<storage, read> kIn: array<vec4<${T}>>;
@group(0) @binding(1) var<storage, read> vIn: array<vec4<${T}>>;
@group(0) @binding(2) var<storage, read_write> kOut: array<vec4<${T}>>;
@group(0) @binding(3) var<storage, read_write> vOut: array<vec4<${T}>>;`,
  );
  linearIndex(m);
  if (o.paged) declareKvRow(m, o.paged);
  if (o.dv4 !== o.d4) return m.render(pooledApart(o));
  return m.render(`
const N = ${o.n}u;
const D4 = ${o.d4}u;
const SEGMENT = ${o.segment}u;
const COUNT = ${o.count}u;

@compute @workgroup_size(${ELEMENTWISE_WORKGROUP})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = linearIndex(wg, lid, ${o.groupsX}u); // (head, landmark, vec4) of the output
  if (i >= ${o.heads * o.count * o.d4}u) { return; }
  let d = i % D4;
  let j = (i / D4) % COUNT;
  let head = i / (D4 * COUNT);
  let first = j * SEGMENT;
  let end = min(N, first + SEGMENT);
  var k = vec4<f32>(0.0);
  var v = vec4<f32>(0.0);
  for (var row = first; row < end; row++) {
    let src = ${keyValueRow(o)} * D4 + d;
    k += vec4<f32>(kIn[src]);
    v += vec4<f32>(vIn[src]);
  }
  let rows = f32(end - first);
  kOut[i] = vec4<${T}>(k / rows);
  vOut[i] = vec4<${T}>(v / rows);
}`);
}

/**
 * The body where V's rows are not as wide as K's (a value head dim of its own): one invocation
 * per vec4 of the wider row, pooling K where its row has that vec4 and V where its row has.
 */
function pooledApart(o: Parameters<typeof poolingKernel>[0]): string {
  const T = o.dtype;
  const width = Math.max(o.d4, o.dv4);
  return `
const N = ${o.n}u;
const D4 = ${o.d4}u;              // K's rows, in vec4s
const DV4 = ${o.dv4}u;             // V's rows
const WIDTH = ${width}u;           // the wider of the two: one invocation per vec4 of it
const SEGMENT = ${o.segment}u;
const COUNT = ${o.count}u;

@compute @workgroup_size(${ELEMENTWISE_WORKGROUP})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = linearIndex(wg, lid, ${o.groupsX}u); // (head, landmark, vec4) of the wider row
  if (i >= ${o.heads * o.count * width}u) { return; }
  let d = i % WIDTH;
  let j = (i / WIDTH) % COUNT;
  let head = i / (WIDTH * COUNT);
  let first = j * SEGMENT;
  let end = min(N, first + SEGMENT);
  let rows = f32(end - first);
  if (d < D4) {
    var k = vec4<f32>(0.0);
    for (var row = first; row < end; row++) { k += vec4<f32>(kIn[${keyValueRow(o)} * D4 + d]); }
    kOut[(head * COUNT + j) * D4 + d] = vec4<${T}>(k / rows);
  }
  if (d < DV4) {
    var v = vec4<f32>(0.0);
    for (var row = first; row < end; row++) { v += vec4<f32>(vIn[${keyValueRow(o)} * DV4 + d]); }
    vOut[(head * COUNT + j) * DV4 + d] = vec4<${T}>(v / rows);
  }
}`;
}

/** The row of K and V that the segment loop reads: contiguous, or through the block table. */
function keyValueRow(o: { paged?: PagedRows }): string {
  return o.paged ? "kvRow(head, row)" : "(head * N + row)";
}
