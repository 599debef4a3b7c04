/**
 * WGSL of a linear branch's backward steps (DESIGN §6, plan_linear.ts). With `a = r dO`,
 * `r = g / den` and `β = -g dO·O / den` per query row, the gradient of `w = φ(Q)·φ(K)` is
 * `t = a·V + β`: a query's φ gradient is `Σ_k t φ(K_k)` over its keys, a key's `Σ_q t φ(Q_q)`
 * over the queries that see it, and `dV_k = Σ_q w a`. The feature map's pullback then gives dQ
 * and dK: elu1 `φ'(x) = 1` or `exp(x)`; favor `∂φ_f/∂x = sqrt(scale) φ_f (W_f - x')`.
 * @module
 */
import { sequenceSizes } from "../../core/shape.ts";
import { ELEMENTWISE_WORKGROUP } from "../dispatch_sizes.ts";
import { LINEAR_WORKGROUP } from "../plan_linear.ts";
import type { LinearKernelOptions } from "./linear_wgsl.ts";
import type { ShaderModule } from "./shader_module.ts";
import { declareSeenSums } from "./linear_tiles_wgsl.ts";

/**
 * The entry point of a backward step (gradRows, gradChunkSums, gradQuery or gradKey).
 * @param m the module, for its helpers
 * @param o the kernel and the call
 * @returns the entry point's WGSL
 */
export function linearGradientMain(m: ShaderModule, o: LinearKernelOptions): string {
  const k = o.kernel;
  const { d, dv } = sequenceSizes(o.shape);
  const arrays = { D4: d / 4, DV4: dv / 4 };
  switch (k.step) {
    case "gradRows":
      return rowsMain(o);
    case "gradChunkSums":
      m.declare("dOAt", DO_AT);
      return chunkSumsMain();
    case "gradQuery":
      declareSeenSums(m);
      m.declare("pullback", pullback(o, arrays.D4));
      return queryMain(o, arrays);
    case "gradKey":
      declareSeenSums(m);
      m.declare("pullback", pullback(o, arrays.D4));
      return keyMain(o, arrays);
    default:
      throw new Error(`Weft internal error: ${k.step} is no backward step of a linear branch`);
  }
}

const DO_AT = `
fn dOAt(row: u32, e: u32) -> f32 {
  return f32(dOIn[row * DV4 + e / 4u][e % 4u]);
}`;

/** Per query row: `r = g / den` and `β = -g dO·O / den`, den the forward's `exp(lse)`. */
function rowsMain(o: LinearKernelOptions): string {
  const gate = o.gates
    ? o.gates.perPosition
      ? `gates[row * ${o.gates.branches}u + ${o.kernel.branch}u]`
      : `gates[(row / NQ) * ${o.gates.branches}u + ${o.kernel.branch}u]`
    : "1.0";
  return `
@compute @workgroup_size(${ELEMENTWISE_WORKGROUP})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row = linearIndex(wg, lid, ${o.kernel.workgroups[0]}u);
  if (row >= QROWS) { return; }
  var dotOut = 0.0;
  for (var e = 0u; e < DV4; e++) {
    dotOut += dot(vec4<f32>(dOIn[row * DV4 + e]), oRows[O_BASE + row * DV4 + e]);
  }
  let gate = ${gate};
  let den = exp(lse[LSE_BASE + row]);
  rowStats[2u * row] = gate / den;
  rowStats[2u * row + 1u] = -gate * dotOut / den;
}`;
}

/**
 * Each chunk of query positions: `Σ φ(Q) aᵀ` (M rows of DV) and `Σ β φ(Q)` (M), over every
 * query head of the key/value head, in the forward's state layout.
 */
function chunkSumsMain(): string {
  return `
@compute @workgroup_size(${LINEAR_WORKGROUP})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let chunk = wg.x;
  let kvHead = wg.y;
  let heads = (kvHead / HKV) * HQ + (kvHead % HKV) * GROUP;  // its first query head
  let first = max(chunk * CHUNK, OFFSET);   // positions before OFFSET are no query's
  let end = min(chunk * CHUNK + CHUNK, NK);
  let out = stateAt(kvHead, chunk);
  for (var e = lid; e < STATE; e += ${LINEAR_WORKGROUP}u) {
    var sum = 0.0;
    for (var g = 0u; g < GROUP; g++) {
      for (var p = first; p < end; p++) {
        let row = (heads + g) * NQ + p - OFFSET;
        if (e < M * DV) {
          sum += phi[row * M + e / DV] * rowStats[2u * row] * dOAt(row, e % DV);
        } else {
          sum += phi[row * M + e - M * DV] * rowStats[2u * row + 1u];
        }
      }
    }
    state[out + e] = sum;
  }
}`;
}

/**
 * `pullback(row, f, g, phiF)`: adds feature f's gradient g into the row's gradient `grad`
 * (D4 vec4s); `finish` then applies what the whole row needs (favor's `-Σ g φ x'` term).
 */
function pullback(o: LinearKernelOptions, d4: number): string {
  if (o.kernel.featureMap === "elu1") {
    return `
// elu1: φ'(x) = 1 for x > 0, else exp(x); feature f is element f of the row.
fn pullback(x: vec4<f32>, f: u32, g: f32, phiF: f32, grad: ptr<function, array<vec4<f32>, ${d4}>>,
            total: ptr<function, f32>) {
  let v = x[f % 4u];
  (*grad)[f / 4u][f % 4u] += g * select(exp(v), 1.0, v > 0.0);
}`;
  }
  return `
// favor: ∂φ_f/∂x' = φ_f (W_f - x'); the -x' part is summed in total and applied once per row.
fn pullback(x: vec4<f32>, f: u32, g: f32, phiF: f32, grad: ptr<function, array<vec4<f32>, ${d4}>>,
            total: ptr<function, f32>) {
  let s = g * phiF;
  *total += s;
  for (var d = 0u; d < D4; d++) { (*grad)[d] += s * projection[f * D4 + d]; }
}`;
}

/** The row's gradient from its accumulated parts: favor's chain through x' = x sqrt(scale). */
function finish(o: LinearKernelOptions, input: string, row: string): string {
  return o.kernel.featureMap === "elu1"
    ? `grad[d]`
    : `ROOT * (grad[d] - total * ROOT * vec4<f32>(${input}[${row} * D4 + d]))`;
}

/** The element x of a row that elu1's pullback reads (favor reads none: x = 0). */
function elementOf(o: LinearKernelOptions, input: string, row: string): string {
  return o.kernel.featureMap === "elu1"
    ? `vec4<f32>(${input}[${row} * D4 + f / 4u])`
    : "vec4<f32>(0.0)";
}

/** Each query row's dQ: its chunk's prefix sums, then its own chunk's keys directly. */
function queryMain(o: LinearKernelOptions, a: { D4: number; DV4: number }): string {
  const k = o.kernel;
  const direct = k.causal
    ? `
    for (var key = first; key <= p; key++) {
      g += t[key - first] * phi[KEY_PHI + (kvHead * NK + key) * M + f];
    }`
    : "";
  const pairs = k.causal
    ? `
  // This chunk's keys up to the query: t = a·V + β per key.
  var t: array<f32, ${k.chunk}>;
  for (var key = first; key <= p; key++) {
    var x = beta;
    for (var e = 0u; e < DV4; e++) { x += dot(a[e], vec4<f32>(vIn[(kvHead * NK + key) * DV4 + e])); }
    t[key - first] = x;
  }`
    : "";
  return `
@compute @workgroup_size(${ELEMENTWISE_WORKGROUP})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row = linearIndex(wg, lid, ${k.workgroups[0]}u);
  if (row >= QROWS) { return; }
  let bh = row / NQ;
  let p = OFFSET + row % NQ;
  let kvHead = (bh / HQ) * HKV + (bh % HQ) / GROUP;
  let slot = select(CHUNKS, p / CHUNK, CAUSAL);
  let first = slot * CHUNK;
  let beta = rowStats[2u * row + 1u];
  var a: array<vec4<f32>, ${a.DV4}>;
  for (var e = 0u; e < DV4; e++) { a[e] = rowStats[2u * row] * vec4<f32>(dOIn[row * DV4 + e]); }${pairs}
  var grad: array<vec4<f32>, ${a.D4}>;
  var total = 0.0;
  for (var f = 0u; f < M; f++) {
    // ∂loss/∂φ(Q)_f = Σ_e S[f, e] a[e] + β z[f] (+ this chunk's keys)
    var g = beta * seenSums(kvHead, slot, M * DV + f);
    for (var e = 0u; e < DV4; e++) {
      g += dot(seenVec4(kvHead, slot, f * DV + 4u * e), a[e]);
    }${direct}
    pullback(${elementOf(o, "qIn", "row")}, f, g, phi[row * M + f], &grad, &total);
  }
  for (var d = 0u; d < D4; d++) { dq[row * D4 + d] += ${finish(o, "qIn", "row")}; }
}`;
}

/**
 * Each key row's dK and dV: the suffix sums of the chunks after its own (or the total), then
 * its own chunk's queries at or after it directly, over every query head of its group.
 */
function keyMain(o: LinearKernelOptions, a: { D4: number; DV4: number }): string {
  const k = o.kernel;
  const { nk, d } = sequenceSizes(o.shape);
  const dvBase = o.shape.batch * o.shape.headsKV * nk * d / 4;
  const pairs = k.causal
    ? `
  // This chunk's queries at or after the key (every head of the group): u = a·V + β, and
  // dV += w a with w = φ(Q)·φ(K).
  var u: array<f32, ${(o.shape.headsQ / o.shape.headsKV) * k.chunk}>;
  let start = max(key, OFFSET);
  let end = min(first + CHUNK, NK);
  for (var g = 0u; g < GROUP; g++) {
    for (var q = start; q < end; q++) {
      let row = (heads + g) * NQ + q - OFFSET;
      var w = 0.0;
      for (var f = 0u; f < M; f++) { w += phi[row * M + f] * phi[KEY_PHI + kRow * M + f]; }
      let r = rowStats[2u * row];
      var x = rowStats[2u * row + 1u];
      for (var e = 0u; e < DV4; e++) {
        let ae = r * vec4<f32>(dOIn[row * DV4 + e]);
        x += dot(ae, values[e]);
        dv[e] += w * ae;
      }
      u[g * CHUNK + q - first] = x;
    }
  }`
    : "";
  const direct = k.causal
    ? `
    for (var g = 0u; g < GROUP; g++) {
      for (var q = start; q < end; q++) {
        g2 += u[g * CHUNK + q - first] * phi[((heads + g) * NQ + q - OFFSET) * M + f];
      }
    }`
    : "";
  return `
@compute @workgroup_size(${ELEMENTWISE_WORKGROUP})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let kRow = linearIndex(wg, lid, ${k.workgroups[0]}u);  // (batch * HKV + head) * NK + key
  if (kRow >= ${o.shape.batch * o.shape.headsKV * nk}u) { return; }
  let kvHead = kRow / NK;
  let key = kRow % NK;
  let heads = (kvHead / HKV) * HQ + (kvHead % HKV) * GROUP;  // its first query head
  let slot = select(CHUNKS, key / CHUNK, CAUSAL);
  let first = slot * CHUNK;
  var values: array<vec4<f32>, ${a.DV4}>;
  for (var e = 0u; e < DV4; e++) { values[e] = vec4<f32>(vIn[kRow * DV4 + e]); }
  var dv: array<vec4<f32>, ${a.DV4}>;${pairs}
  var grad: array<vec4<f32>, ${a.D4}>;
  var total = 0.0;
  for (var f = 0u; f < M; f++) {
    // ∂loss/∂φ(K)_f = Σ_e U[f, e] V[e] + y[f] (+ this chunk's queries); dV += φ(K)_f U[f, :]
    let phiF = phi[KEY_PHI + kRow * M + f];
    var g2 = seenSums(kvHead, slot, M * DV + f);
    for (var e = 0u; e < DV4; e++) {
      let sums = seenVec4(kvHead, slot, f * DV + 4u * e);
      g2 += dot(sums, values[e]);
      dv[e] += phiF * sums;
    }${direct}
    pullback(${elementOf(o, "kIn", "kRow")}, f, g2, phiF, &grad, &total);
  }
  for (var d = 0u; d < D4; d++) { dkv[kRow * D4 + d] += ${finish(o, "kIn", "kRow")}; }
  for (var e = 0u; e < DV4; e++) { dkv[${dvBase}u + kRow * DV4 + e] += dv[e]; }
}`;
}
