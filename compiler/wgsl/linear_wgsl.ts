/**
 * WGSL of a linear branch's steps (DESIGN §2, plan_linear.ts): the module's bindings and
 * constants, φ of every row, and the two-level scan over chunks (forward, or reversed for the
 * backward); the cooperative chunk sums and output are in linear_tiles_wgsl.ts, the backward's
 * other steps in linear_gradient_wgsl.ts. Sums are float32 whatever the inputs' type.
 * @module
 */
import { type AttentionShape, type Dtype, sequenceSizes } from "../../core/shape.ts";
import { ELEMENTWISE_WORKGROUP } from "../dispatch_sizes.ts";
import type { BufferName, LinearKernel } from "../kernel_plan.ts";
import { LINEAR_WORKGROUP, linearSlots } from "../plan_linear.ts";
import { linearIndex } from "./elementwise_wgsl.ts";
import { f32, ShaderModule } from "./shader_module.ts";
import { linearGradientMain } from "./linear_gradient_wgsl.ts";
import { chunkSumsMain, declareSeenSums, outputMain } from "./linear_tiles_wgsl.ts";

/** What a linear step's writer needs besides the kernel. */
export interface LinearKernelOptions {
  kernel: LinearKernel;
  shape: AttentionShape;
  dtype: Dtype;
  scale: number;
  /** Query row `i` is key position `queryOffset + i`. */
  queryOffset: number;
  /** Constant step bounds (GPUs unroll them); false hides them from the compiler (llvmpipe). */
  unroll?: boolean;
  /** A gated call's branch count and gate layout (gradRows reads its gate). */
  gates?: { branches: number; perPosition: boolean };
  /** The branch's pattern in short, for the header. */
  label: string;
}

/**
 * The WGSL module of one linear step.
 * @param o the kernel and the call
 * @returns the module text
 * @example
 * ```ts ignore
 * linearKernel({ kernel, shape, dtype: "f32", scale: 0.125, queryOffset: 0, label: "linear(elu1)" });
 * ```
 */
export function linearKernel(o: LinearKernelOptions): string {
  const k = o.kernel;
  const m = new ShaderModule()
    .comment(`Weft ${o.label}: ${k.label}`)
    .comment(
      `${k.features} features, ${k.causal ? "causal" : "every key"}, chunks of ${k.chunk} ` +
        `positions (${k.chunks}), ${o.dtype} inputs, float32 sums`,
    );
  const t = k.tile;
  if (t) {
    m.comment(
      `tile: ${t.rows} rows x ${t.valueTile} columns, ${t.block} a step, ` +
        `${t.invocations} invocations, ${t.bytes} bytes of workgroup memory`,
    );
  }
  if (o.dtype === "f16") m.enable("f16");
  m.declare("bindings", bindings(k.bindings, o.dtype));
  m.declare("constants", constants(o));
  m.declare(
    "stateAt",
    `
// A chunk's sums, per (batch, key/value head) and slot (chunk c, CHUNKS + segment s, or TOTAL):
// S = Σ φ(K) Vᵀ as M rows of DV, then z = Σ φ(K) as M values.
fn stateAt(kvHead: u32, slot: u32) -> u32 {
  return (kvHead * SLOTS + slot) * STATE;
}`,
  );
  switch (k.step) {
    case "features":
      return m.render(featuresMain(m, o));
    case "chunkSums":
      return m.render(chunkSumsMain(m, o));
    case "scan":
    case "gradScan":
      return m.render(scanMain({ segments: false, reverse: k.step === "gradScan" }));
    case "scanSegments":
    case "gradScanSegments":
      return m.render(scanMain({ segments: true, reverse: k.step === "gradScanSegments" }));
    case "output":
      return m.render(k.tile ? outputMain(m, o) : rowOutputMain(m, o));
    default:
      linearIndex(m);
      return m.render(linearGradientMain(m, o));
  }
}

/** Each bound buffer's WGSL name and type. */
const VARIABLES: Record<string, (t: Dtype) => [string, string]> = {
  q: (t) => ["qIn", `array<vec4<${t}>>`],
  k: (t) => ["kIn", `array<vec4<${t}>>`],
  v: (t) => ["vIn", `array<vec4<${t}>>`],
  dO: (t) => ["dOIn", `array<vec4<${t}>>`],
  linearW: () => ["projection", "array<vec4<f32>>"],
  linearPhi: () => ["phi", "array<f32>"],
  linearState: () => ["state", "array<f32>"],
  linearGradState: () => ["state", "array<f32>"],
  linearRows: () => ["rowStats", "array<f32>"],
  o: () => ["oRows", "array<vec4<f32>>"],
  branchO: () => ["oRows", "array<vec4<f32>>"],
  lse: () => ["lse", "array<f32>"],
  gates: () => ["gates", "array<f32>"],
  dq: () => ["dq", "array<vec4<f32>>"],
  dkv: () => ["dkv", "array<vec4<f32>>"],
};

function bindings(list: { buffer: BufferName; writable: boolean }[], dtype: Dtype): string {
  return "\n" + list.map((b, i) => {
    const [name, type] = VARIABLES[b.buffer.replace(/\d+$/, "")](dtype);
    const access = b.writable ? "read_write" : "read";
    return `@group(0) @binding(${i}) var<storage, ${access}> ${name}: ${type};`;
  }).join("\n");
}

function constants(o: LinearKernelOptions): string {
  const k = o.kernel, s = o.shape;
  const { nq, nk, d, dv } = sequenceSizes(s);
  const rowsQ = s.batch * s.headsQ * nq;
  return `
const HQ = ${s.headsQ}u;
const HKV = ${s.headsKV}u;
const GROUP = ${s.headsQ / s.headsKV}u;  // query heads per key/value head
const NQ = ${nq}u;
const NK = ${nk}u;
const OFFSET = ${o.queryOffset}u;  // query row i is key position OFFSET + i
const D4 = ${d / 4}u;
const DV = ${dv}u;
const DV4 = ${dv / 4}u;
const M = ${k.features}u;  // features per row
const CAUSAL = ${k.causal};
const CHUNK = ${k.chunk}u;  // positions per chunk
const CHUNKS = ${k.chunks}u;
const SEGMENT = ${k.segment}u;  // chunks per scan segment
const SEGMENTS = ${Math.ceil(k.chunks / k.segment)}u;
const TOTAL = ${k.chunks + Math.ceil(k.chunks / k.segment)}u;  // the slot of every chunk's sums
const SLOTS = ${linearSlots(k.chunks)}u;  // each chunk's sums, each segment's, the total
const STATE = ${k.features * (dv + 1)}u;  // M * (DV + 1)
const QROWS = ${rowsQ}u;
const KEY_PHI = ${rowsQ * k.features}u;  // φ of K rows follow φ of Q rows
const ROOT = ${f32(Math.sqrt(o.scale))};  // favor: x' = x * sqrt(scale)
const NORM = ${f32(1 / Math.sqrt(k.features))};  // favor: 1 / sqrt(M)
const O_BASE = ${k.oBase}u;
const LSE_BASE = ${k.lseBase}u;`;
}

/** φ of each (row, feature): Q rows, then K rows. */
function featuresMain(m: ShaderModule, o: LinearKernelOptions): string {
  const k = o.kernel;
  const { nk } = sequenceSizes(o.shape);
  const rows = k.workgroups;
  linearIndex(m);
  m.declare(
    "inputRow",
    `
fn inputRow(row: u32, d: u32) -> vec4<f32> {
  if (row < QROWS) { return vec4<f32>(qIn[row * D4 + d]); }
  return vec4<f32>(kIn[(row - QROWS) * D4 + d]);
}`,
  );
  const phi = k.featureMap === "elu1"
    ? `
  // elu(x) + 1
  let x = inputRow(row, f / 4u)[f % 4u];
  phi[i] = select(exp(x), x + 1.0, x > 0.0);`
    : `
  // exp(W x' - |x'|² / 2) / sqrt(M), x' = x * sqrt(scale)
  var square = 0.0;
  var projected = 0.0;
  for (var d = 0u; d < D4; d++) {
    let x = inputRow(row, d) * ROOT;
    square += dot(x, x);
    projected += dot(projection[f * D4 + d], x);
  }
  phi[i] = exp(projected - 0.5 * square) * NORM;`;
  return `
@compute @workgroup_size(${ELEMENTWISE_WORKGROUP})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = linearIndex(wg, lid, ${rows[0]}u);  // (row, feature)
  if (i >= ${(o.shape.batch * o.shape.headsKV * nk) * k.features}u + KEY_PHI) { return; }
  let row = i / M;
  let f = i % M;${phi}
}`;
}

/**
 * One level of the exclusive scan over chunks, in place, an invocation per state entry: within
 * each segment of SEGMENT chunks, leaving the segment's total in its slot, or over those
 * segments' totals, leaving the total in TOTAL. In order it is a prefix (the chunks before each,
 * what a query sees); reversed, a suffix (the chunks after each, what a key is seen by).
 */
function scanMain(o: { segments: boolean; reverse: boolean }): string {
  const [first, count, last, head] = o.segments ? ["CHUNKS", "SEGMENTS", "TOTAL", "wg.y"] : [
    "(wg.y % SEGMENTS) * SEGMENT",
    "min(SEGMENT, CHUNKS - first)",
    "CHUNKS + wg.y % SEGMENTS",
    "wg.y / SEGMENTS",
  ];
  return `
@compute @workgroup_size(${LINEAR_WORKGROUP})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let e = wg.x * ${LINEAR_WORKGROUP}u + lid;
  if (e >= STATE) { return; }
  let kvHead = ${head};
  let first = ${first};  // the first slot scanned
  let count = ${count};
  var running = 0.0;
  for (var step = 0u; step < count; step++) {
    let at = stateAt(kvHead, first + ${o.reverse ? "count - 1u - step" : "step"}) + e;
    let sums = state[at];
    state[at] = running;
    running += sums;
  }
  state[stateAt(kvHead, ${last}) + e] = running;
}`;
}

/**
 * The output without a tile (software adapters, kernel_rules.ts's `linearOutputTiles`): one
 * invocation per query row reads its chunk's prefix (or the total), then its own chunk's keys
 * directly.
 */
function rowOutputMain(m: ShaderModule, o: LinearKernelOptions): string {
  linearIndex(m);
  declareSeenSums(m);
  const direct = o.kernel.causal
    ? `
  // This chunk's keys up to the query, pair by pair.
  for (var key = chunk * CHUNK; key <= p; key++) {
    let kRow = kvHead * NK + key;
    var w = 0.0;
    for (var f = 0u; f < M; f++) { w += phi[row * M + f] * phi[KEY_PHI + kRow * M + f]; }
    den += w;
    for (var e = 0u; e < DV4; e++) { acc[e] += w * vec4<f32>(vIn[kRow * DV4 + e]); }
  }`
    : "";
  return `
@compute @workgroup_size(${ELEMENTWISE_WORKGROUP})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row = linearIndex(wg, lid, ${o.kernel.workgroups[0]}u);  // (batch * HQ + head) * NQ + i
  if (row >= QROWS) { return; }
  let bh = row / NQ;
  let p = OFFSET + row % NQ;                 // the query's key position
  let kvHead = (bh / HQ) * HKV + (bh % HQ) / GROUP;
  let chunk = p / CHUNK;
  var acc: array<vec4<f32>, ${sequenceSizes(o.shape).dv / 4}>;
  var den = 0.0;
  for (var f = 0u; f < M; f++) {
    let a = phi[row * M + f];
    den += a * seenSums(kvHead, chunk, M * DV + f);
    for (var e = 0u; e < DV4; e++) { acc[e] += a * seenVec4(kvHead, chunk, f * DV + 4u * e); }
  }${direct}
  lse[LSE_BASE + row] = log(den);
  for (var e = 0u; e < DV4; e++) { oRows[O_BASE + row * DV4 + e] = acc[e] / den; }
}`;
}
