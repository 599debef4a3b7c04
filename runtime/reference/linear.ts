/**
 * Linear attention in the float64 reference (DESIGN §2), straight from its definition: for the
 * query at position p, `out = Σ_k w_k V_k / Σ_k w_k` with `w_k = φ(Q_q)·φ(K_k)` over the keys
 * `A(p)` (every key, or `k <= p` when causal), and `lse = log Σ_k w_k`, the log of its
 * normaliser. One row at a time, every key summed directly: the kernels' chunked scans are
 * checked against these plain sums.
 *
 * The backward pass, for `dO` (the branch's share, gate applied): with `a = dO / den` and
 * `β = -(dO·out) / den`, every pair adds `t_k = a·V_k + β` times the other side's φ to the
 * gradients of `φ(Q_q)` and `φ(K_k)`, and `w_k a` to `dV_k`; the feature map's pullback then
 * turns the φ gradients into dQ and dK.
 * @module
 */
import type { Sequence } from "../../core/packed_sequences.ts";
import { type AttentionShape, sequenceSizes } from "../../core/shape.ts";
import { featureMap } from "../../dsl/linear.ts";
import type { LinearPattern } from "../../dsl/schema.ts";

/** One linear branch's rows, as the reference and its gradients read them. */
export interface LinearRows {
  /** Writes query row q's output into `out` (Dv values) and returns its lse. */
  row(b: number, h: number, q: number, out: Float64Array): number;
  /**
   * Adds query row q's share of the gradients: into `dq` at once, into dV at once, and into
   * the keys' φ gradients, which `finish` pulls back into dK. Leaves the row's O in `out`.
   */
  backward(
    b: number,
    h: number,
    q: number,
    grads: { dO: Float64Array; dq: Float64Array; dv: Float64Array; out: Float64Array },
  ): void;
  /** Adds the keys' accumulated φ gradients, pulled back through φ, into `dk`. */
  finish(dk: Float64Array): void;
}

/**
 * The rows of one linear branch of a reference call.
 * @param p the linear pattern
 * @param o the call's tensors, shape, scale and sequences (each query row's in `sequenceOf`)
 * @returns its rows
 */
export function linearRows(p: LinearPattern, o: {
  q: ArrayLike<number>;
  k: ArrayLike<number>;
  v: ArrayLike<number>;
  shape: AttentionShape;
  scale: number;
  sequences: Sequence[];
  sequenceOf: Int32Array;
}): LinearRows {
  const { batch: B, headsQ: Hq, headsKV: Hkv } = o.shape;
  const { nq: Nq, nk: Nk, d: D, dv: Dv } = sequenceSizes(o.shape);
  const phi = featureMap(p, D, o.scale), m = phi.features;
  // φ of every key row, once.
  const keys = new Float64Array(B * Hkv * Nk * m);
  const row = new Float64Array(m);
  for (let r = 0; r < B * Hkv * Nk; r++) {
    phi.map(o.k, r * D, row);
    keys.set(row, r * m);
  }
  const dPhiKeys = new Float64Array(B * Hkv * Nk * m);
  const phiQ = new Float64Array(m), dPhiQ = new Float64Array(m);
  /** The key rows query row q sums over, and φ(Q) of the row (in phiQ). */
  const keysOf = (b: number, h: number, q: number) => {
    const seq = o.sequences[o.sequenceOf[q]], p0 = seq.offset + q - seq.qStart;
    phi.map(o.q, ((b * Hq + h) * Nq + q) * D, phiQ);
    // DESIGN §1: query head h reads kv head floor(h / (Hq / Hkv)).
    const first = (b * Hkv + Math.floor(h / (Hq / Hkv))) * Nk + seq.kStart;
    const last = p.causal ? Math.min(p0, seq.kLen - 1) : seq.kLen - 1;
    return { first, count: last + 1 };
  };
  const weight = (r: number) => {
    let w = 0;
    for (let f = 0; f < m; f++) w += phiQ[f] * keys[r * m + f];
    return w;
  };
  const forward = (b: number, h: number, q: number, out: Float64Array) => {
    out.fill(0);
    const { first, count } = keysOf(b, h, q);
    let den = 0;
    for (let j = 0; j < count; j++) {
      const r = first + j, w = weight(r);
      den += w;
      for (let e = 0; e < Dv; e++) out[e] += w * o.v[r * Dv + e];
    }
    if (count === 0) return -Infinity;
    for (let e = 0; e < Dv; e++) out[e] /= den;
    return Math.log(den);
  };
  return {
    row: forward,
    backward(b, h, q, g) {
      const lse = forward(b, h, q, g.out);
      if (lse === -Infinity) return;
      const { first, count } = keysOf(b, h, q);
      const den = Math.exp(lse);
      let dot = 0;
      for (let e = 0; e < Dv; e++) dot += g.dO[e] * g.out[e];
      const beta = -dot / den;
      dPhiQ.fill(0);
      for (let j = 0; j < count; j++) {
        const r = first + j, w = weight(r);
        let t = beta;
        for (let e = 0; e < Dv; e++) {
          const a = g.dO[e] / den;
          t += a * o.v[r * Dv + e];
          g.dv[r * Dv + e] += w * a;
        }
        for (let f = 0; f < m; f++) {
          dPhiQ[f] += t * keys[r * m + f];
          dPhiKeys[r * m + f] += t * phiQ[f];
        }
      }
      phi.pullback(o.q, ((b * Hq + h) * Nq + q) * D, phiQ, dPhiQ, g.dq);
    },
    finish(dk) {
      const gradient = new Float64Array(m);
      for (let r = 0; r < B * Hkv * Nk; r++) {
        row.set(keys.subarray(r * m, (r + 1) * m));
        gradient.set(dPhiKeys.subarray(r * m, (r + 1) * m));
        phi.pullback(o.k, r * D, row, gradient, dk);
      }
    },
  };
}
