import assert from "node:assert/strict";
import { PlanError } from "../../core/errors.ts";
import { favorProjection, featureMap, linearFeatureCount } from "../../dsl/linear.ts";
import type { LinearPattern, Pattern } from "../../dsl/schema.ts";
import { type AttentionShape, reference } from "../../runtime/reference/mod.ts";
import { normalTensor } from "../../runtime/seeded_random.ts";

/** DESIGN §2's linear attention as matrices: S = Σ φ(K) Vᵀ and z = Σ φ(K), then φ(Q)ᵀS / φ(Q)ᵀz. */
function byState(p: LinearPattern, shape: AttentionShape, q: number[], k: number[], v: number[]) {
  const { batch: B, headsQ: Hq, headsKV: Hkv, seqLen: N, headDim: D } = shape;
  const phi = featureMap(p, D, 1 / Math.sqrt(D)), m = phi.features;
  const o = new Float64Array(B * Hq * N * D);
  const fq = new Float64Array(m), fk = new Float64Array(m);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < Hq; h++) {
      const kv = b * Hkv + Math.floor(h * Hkv / Hq);
      const S = new Float64Array(m * D), z = new Float64Array(m);
      const addKey = (key: number) => {
        phi.map(k, (kv * N + key) * D, fk);
        for (let f = 0; f < m; f++) {
          z[f] += fk[f];
          for (let e = 0; e < D; e++) S[f * D + e] += fk[f] * v[(kv * N + key) * D + e];
        }
      };
      if (!p.causal) { for (let key = 0; key < N; key++) addKey(key); }
      for (let i = 0; i < N; i++) {
        if (p.causal) addKey(i);
        phi.map(q, ((b * Hq + h) * N + i) * D, fq);
        let den = 0;
        for (let f = 0; f < m; f++) den += fq[f] * z[f];
        for (let e = 0; e < D; e++) {
          let num = 0;
          for (let f = 0; f < m; f++) num += fq[f] * S[f * D + e];
          o[((b * Hq + h) * N + i) * D + e] = num / den;
        }
      }
    }
  }
  return o;
}

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
  return worst;
}

const GQA: AttentionShape = { batch: 2, headsQ: 4, headsKV: 2, seqLen: 11, headDim: 8 };
const inputs = (shape: AttentionShape, seed: number) => {
  const { batch: B, headsQ: Hq, headsKV: Hkv, seqLen: N, headDim: D } = shape;
  return {
    q: [...normalTensor(B * Hq * N * D, seed)],
    k: [...normalTensor(B * Hkv * N * D, seed + 1)],
    v: [...normalTensor(B * Hkv * N * D, seed + 2)],
  };
};

Deno.test("linear attention is φ(Q)ᵀS / φ(Q)ᵀz: elu1 and favor, causal or not, GQA", () => {
  const { q, k, v } = inputs(GQA, 1);
  for (
    const p of [
      { kind: "linear", featureMap: "elu1" },
      { kind: "linear", featureMap: "elu1", causal: true },
      { kind: "linear", featureMap: "favor", features: 16, seed: 9 },
      { kind: "linear", featureMap: "favor", features: 3, seed: 2, causal: true },
    ] satisfies LinearPattern[]
  ) {
    const got = reference({ pattern: p, shape: GQA, q, k, v });
    assert.ok(maxDiff(got.o, byState(p, GQA, q, k, v)) < 1e-12, JSON.stringify(p));
    assert.ok(got.lse.every(Number.isFinite), "the normaliser is positive: lse is finite");
  }
});

Deno.test("a causal linear chunk of queries is the full call's last rows", () => {
  const full: AttentionShape = { batch: 1, headsQ: 2, headsKV: 1, seqLen: 13, headDim: 4 };
  const { q, k, v } = inputs(full, 5);
  const pattern: Pattern = { kind: "linear", featureMap: "favor", features: 8, causal: true };
  const all = reference({ pattern, shape: full, q, k, v });
  const nq = 5, chunk = { ...full, seqLen: nq, kvSeqLen: 13 };
  const rows = (x: ArrayLike<number>, width: number) =>
    [0, 1].flatMap((h) => Array.from(x).slice((h * 13 + 13 - nq) * width, (h * 13 + 13) * width));
  const part = reference({ pattern, shape: chunk, q: rows(q, 4), k, v });
  assert.ok(maxDiff(part.o, rows(all.o, 4)) < 1e-12);
  assert.ok(maxDiff(part.lse, rows(all.lse, 1)) < 1e-12);
});

Deno.test("favor's projection is seeded standard normal; its features estimate softmax", () => {
  const w = favorProjection(7, 512, 64);
  let mean = 0, square = 0;
  for (const x of w) {
    mean += x / w.length;
    square += x * x / w.length;
  }
  assert.ok(Math.abs(mean) < 0.01 && Math.abs(square - 1) < 0.02, `${mean} ${square}`);
  assert.deepEqual(favorProjection(7, 3, 5), favorProjection(7, 3, 5));
  assert.notDeepEqual(favorProjection(7, 3, 5), favorProjection(8, 3, 5));
  // E[φ(q)·φ(k)] = exp(scale q·k) (Performer), so many features approach dense softmax. The
  // estimate's variance grows as exp(|q' + k'|²): small rows keep it small.
  const shape: AttentionShape = { batch: 1, headsQ: 1, headsKV: 1, seqLen: 16, headDim: 4 };
  const unit = inputs(shape, 3), v = unit.v;
  const [q, k] = [unit.q, unit.k].map((x) => x.map((y) => y / 2));
  const dense = reference({ pattern: { kind: "dense" }, shape, q, k, v });
  const favor = (features: number) =>
    reference({ pattern: { kind: "linear", featureMap: "favor", features }, shape, q, k, v });
  const near = maxDiff(favor(1024).o, dense.o), far = maxDiff(favor(4).o, dense.o);
  assert.ok(near < 0.05 && near < far, `1024 features ${near}, 4 features ${far}`);
});

Deno.test("elu1 has D features: another count is refused naming the field", () => {
  assert.equal(linearFeatureCount({ kind: "linear", featureMap: "elu1", features: 8 }, 8), 8);
  assert.throws(
    () => linearFeatureCount({ kind: "linear", featureMap: "elu1", features: 4 }, 8),
    (e) =>
      e instanceof PlanError &&
      /pattern\.features: elu1 maps each row to its own D = 8/.test(e.message),
  );
});
