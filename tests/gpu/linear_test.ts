/**
 * Linear attention on the device (plan_linear.ts, linear_wgsl.ts) against the float64
 * reference: O and LSE within 1e-4 (float32) and dQ, dK, dV and the gates' gradient within 1e-4
 * of the largest gradient, for elu1 and favor, causal (a chunked scan over several chunks, the
 * last partial) and not, MHA, GQA with two batches and MQA, Dv apart from D, queries among longer
 * keys, and a gated mix with a softmax branch; float16 where the adapter has shader-f16. The
 * cooperative output tiles (what GPUs run) are checked over the same cases and one of several
 * chunks, a partial last chunk and two value tiles, with `unroll` forcing that form.
 */
import assert from "node:assert/strict";
import { PlanError, ShapeError } from "../../core/errors.ts";
import { type AttentionShape, sequenceSizes } from "../../core/shape.ts";
import type { Pattern } from "../../dsl/schema.ts";
import { reference, referenceGradients } from "../../runtime/reference/mod.ts";
import { createRuntime } from "../../runtime/runtime.ts";
import { normalTensor } from "../../runtime/seeded_random.ts";
import { gradientError, maxAbsError, maxLseError } from "../../cli/_common.ts";

const rt = await createRuntime({ autotune: false });
addEventListener("unload", () => rt.destroy());

interface LinearCase {
  name: string;
  pattern: Pattern;
  shape: AttentionShape;
  gates?: "head" | "position";
  queryOffset?: number;
}

const CASES: LinearCase[] = [
  {
    name: "favor, causal, GQA with two batches, three chunks",
    pattern: { kind: "linear", featureMap: "favor", features: 12, seed: 3, causal: true },
    shape: { batch: 2, headsQ: 4, headsKV: 2, seqLen: 150, headDim: 8 },
  },
  {
    name: "elu1 over every key, MQA, Dv 12 of D 8",
    pattern: { kind: "linear", featureMap: "elu1" },
    shape: { batch: 1, headsQ: 3, headsKV: 1, seqLen: 70, headDim: 8, valueDim: 12 },
  },
  {
    name: "gated window and causal elu1, gates per position",
    pattern: {
      kind: "gated",
      branches: [{ kind: "window", left: 6, right: 0 }, {
        kind: "linear",
        featureMap: "elu1",
        causal: true,
      }],
    },
    shape: { batch: 1, headsQ: 2, headsKV: 2, seqLen: 90, headDim: 8 },
    gates: "position",
  },
  {
    name: "causal favor, 5 queries at offset 140 among 150 keys",
    pattern: { kind: "linear", featureMap: "favor", features: 8, causal: true },
    shape: { batch: 1, headsQ: 2, headsKV: 1, seqLen: 5, kvSeqLen: 150, headDim: 8 },
  },
];

/**
 * The kernels' O, LSE and gradients against the reference's, in the call's dtype; `unroll`
 * true picks the GPU form (cooperative output tiles) on a software adapter too.
 */
async function linearError(c: LinearCase, dtype: "f32" | "f16", unroll?: boolean) {
  const { shape } = c;
  const { nq, nk, d, dv } = sequenceSizes(shape);
  const { batch: B, headsQ: Hq, headsKV: Hkv } = shape;
  const round = (x: Float32Array) => dtype === "f16" ? Float32Array.from(Float16Array.from(x)) : x;
  const branches = c.pattern.kind === "gated" ? c.pattern.branches.length : 0;
  const gateShape = c.gates === "position" ? [B, Hq, nq, branches] : [B, Hq, branches];
  const gates = c.gates
    ? Float32Array.from(normalTensor(gateShape.reduce((a, x) => a * x), 5), (x) => 0.5 + 0.2 * x)
    : undefined;
  const q = round(normalTensor(B * Hq * nq * d, 1)), k = round(normalTensor(B * Hkv * nk * d, 2));
  const v = round(normalTensor(B * Hkv * nk * dv, 3)),
    dO = round(normalTensor(B * Hq * nq * dv, 4));
  const compiled = rt.compile(c.pattern, {
    shape,
    dtype,
    backward: true,
    queryOffset: c.queryOffset,
    gatesPerPosition: c.gates === "position",
    unroll,
  });
  const got = await rt.run(compiled, { q, k, v, dO, gates });
  const input = {
    pattern: c.pattern,
    shape,
    q,
    k,
    v,
    queryOffset: c.queryOffset,
    gates: gates && { data: gates, shape: gateShape },
  };
  const want = reference(input);
  const grads = gradientError(got.gradients!, referenceGradients({ ...input, dO }));
  return {
    o: maxAbsError(got.o, want.o),
    lse: maxLseError(got.lse, want.lse),
    gradients: grads.worst / grads.largest,
  };
}

for (const c of CASES) {
  Deno.test(`linear attention on the kernels: ${c.name}`, async () => {
    const err = await linearError(c, "f32");
    assert.ok(err.o <= 1e-4, `max |O - reference| ${err.o}`);
    assert.ok(err.lse <= 1e-4, `max LSE error relative to max(1, |LSE|) ${err.lse}`);
    assert.ok(err.gradients <= 1e-4, `gradients: max error / largest ${err.gradients}`);
    console.log(
      `${c.name}: O ${err.o.toExponential(1)}, gradients ${err.gradients.toExponential(1)}`,
    );
  });
}

Deno.test({
  name: "linear attention on the kernels in float16 (the float16 inputs' reference)",
  ignore: !rt.info.shaderF16,
  fn: async () => {
    for (const c of [CASES[0], CASES[2]]) {
      const err = await linearError(c, "f16");
      assert.ok(err.o <= 5e-3, `${c.name}: max |O - reference| ${err.o}`);
      assert.ok(err.lse <= 5e-3, `${c.name}: max LSE error ${err.lse}`);
      assert.ok(err.gradients <= 1e-2, `${c.name}: gradients ${err.gradients}`);
      console.log(
        `f16 ${c.name}: O ${err.o.toExponential(1)}, grads ${err.gradients.toExponential(1)}`,
      );
    }
  },
});

/** Several chunks with a partial last one (200 of 4 × 64), GQA, and Dv 136: two value tiles. */
const TILED: LinearCase = {
  name: "causal elu1, GQA, 200 positions, Dv 136",
  pattern: { kind: "linear", featureMap: "elu1", causal: true },
  shape: { batch: 1, headsQ: 4, headsKV: 2, seqLen: 200, headDim: 8, valueDim: 136 },
};

Deno.test({
  // llvmpipe's GL path (no shader-f16) takes minutes to compile the tiled causal output.
  name: "linear attention's cooperative output tiles (the GPU form) against the reference",
  ignore: rt.info.isFallback && !rt.info.shaderF16,
  fn: async () => {
    for (const c of [TILED, ...CASES]) {
      const err = await linearError(c, "f32", true);
      assert.ok(err.o <= 1e-4, `${c.name}: max |O - reference| ${err.o}`);
      assert.ok(err.lse <= 1e-4, `${c.name}: max LSE error ${err.lse}`);
      assert.ok(err.gradients <= 1e-4, `${c.name}: gradients ${err.gradients}`);
    }
    const err = await linearError(TILED, "f16", true);
    assert.ok(err.o <= 5e-3 && err.lse <= 5e-3, `f16: O ${err.o}, LSE ${err.lse}`);
    assert.ok(err.gradients <= 1e-2, `f16: gradients ${err.gradients}`);
  },
});

Deno.test("linear attention refuses packed sequences and paged K and V by name", () => {
  const shape = { batch: 1, headsQ: 2, headsKV: 2, seqLen: 64, headDim: 8 };
  const linear: Pattern = {
    kind: "gated",
    branches: [{ kind: "causal" }, { kind: "linear", featureMap: "elu1" }],
  };
  assert.throws(
    () => rt.compile(linear, { shape, packed: true }),
    (e) => e instanceof PlanError && /pattern\.branches\[1\] is linear/.test(e.message),
  );
  assert.throws(
    () => rt.compile(linear, { shape, paged: { pageSize: 16, pages: 8 } }),
    (e) => e instanceof ShapeError && /pattern\.branches\[1\] is linear/.test(e.message),
  );
});

Deno.test("a linear call whose sums pass one binding runs in parts by key/value head", async () => {
  // φ of every row takes (800 + 400) x 32 x 4 = 153600 bytes whole, 38400 per (batch, kv head).
  const small = await createRuntime({ autotune: false, maxBindingBytes: 40000 });
  try {
    const shape = { batch: 2, headsQ: 4, headsKV: 2, seqLen: 100, headDim: 8 };
    const pattern: Pattern = { kind: "linear", featureMap: "favor", features: 32, causal: true };
    const compiled = small.compile(pattern, { shape });
    assert.equal(compiled.split?.kvHeads, 1, "one key/value head per part");
    const q = normalTensor(800 * 8, 1), k = normalTensor(400 * 8, 2), v = normalTensor(400 * 8, 3);
    const got = await small.run(compiled, { q, k, v });
    const want = reference({ pattern, shape, q, k, v });
    assert.ok(
      maxAbsError(got.o, want.o) <= 1e-4,
      `max |O - reference| ${maxAbsError(got.o, want.o)}`,
    );
    assert.ok(maxLseError(got.lse, want.lse) <= 1e-4);
  } finally {
    small.destroy();
  }
});
