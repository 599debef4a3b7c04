/**
 * The backward pass on serving shapes (DESIGN §1, §6): queries that are some of the key
 * positions (a decoding step, prefill chunks at the default and at an explicit offset) and a
 * value head dim of its own, against the float64 reference's gradients (held to finite
 * differences in tests/reference/serving_shapes_test.ts): dQ `[B, Hq, Nq, D]`, dK
 * `[B, Hkv, Nk, D]`, dV `[B, Hkv, Nk, Dv]` and the runtime gates' gradient within 1e-4 of the
 * largest gradient (float32). The cases cover natural, residue, bucket and landmark layouts, a
 * union, a gated pattern, MHA, GQA and MQA; two runs give the same bits; float16 runs where the
 * adapter has shader-f16 (within 1e-2). llvmpipe compiles each case's gradient kernels afresh,
 * so the cases are few and small.
 */
import assert from "node:assert/strict";
import type { AttentionShape } from "../../compiler/mod.ts";
import { ShapeError } from "../../core/errors.ts";
import { sequenceSizes } from "../../core/shape.ts";
import type { Pattern } from "../../dsl/schema.ts";
import { referenceGradients } from "../../runtime/reference/mod.ts";
import { createRuntime } from "../../runtime/runtime.ts";
import { normalTensor } from "../../runtime/seeded_random.ts";
import { gradientError } from "../../cli/_common.ts";

const rt = await createRuntime({ autotune: false });
addEventListener("unload", () => rt.destroy());

interface Case {
  name: string;
  pattern: Pattern;
  shape: AttentionShape;
  queryOffset?: number;
  gates?: "position";
}

/** Seeded Q, K, V, dO (and per-position gates) at a case's shape. */
function inputsOf(c: Case) {
  const { nq, nk, d, dv } = sequenceSizes(c.shape);
  const { batch: B, headsQ: Hq, headsKV: Hkv } = c.shape;
  const branches = c.pattern.kind === "gated" ? c.pattern.branches.length : 0;
  const gateShape = [B, Hq, nq, branches];
  return {
    q: normalTensor(B * Hq * nq * d, 1),
    k: normalTensor(B * Hkv * nk * d, 2),
    v: normalTensor(B * Hkv * nk * dv, 3),
    dO: normalTensor(B * Hq * nq * dv, 4),
    gates: c.gates
      ? {
        data: Float32Array.from(normalTensor(B * Hq * nq * branches, 5), (x) => 0.5 + 0.2 * x),
        shape: gateShape,
      }
      : undefined,
  };
}

/** Runs a case forward and backward; returns the gradients' error, the kernels and the bits. */
async function backwardError(c: Case) {
  const compiled = rt.compile(c.pattern, {
    shape: c.shape,
    queryOffset: c.queryOffset,
    gatesPerPosition: c.gates === "position",
    backward: true,
  });
  const x = inputsOf(c);
  const out = await rt.run(compiled, { ...x, gates: x.gates?.data });
  const got = out.gradients!;
  const { batch: B, headsQ: Hq, headsKV: Hkv } = c.shape;
  const { nq, nk, d, dv } = sequenceSizes(c.shape);
  assert.equal(got.dq.length, B * Hq * nq * d, "dQ is [B, Hq, Nq, D]");
  assert.equal(got.dk.length, B * Hkv * nk * d, "dK is [B, Hkv, Nk, D]");
  assert.equal(got.dv.length, B * Hkv * nk * dv, "dV is [B, Hkv, Nk, Dv]");
  // hashBucket: the allowed set the kernels used (serving_shapes_test.ts checks the codes).
  const want = referenceGradients({
    pattern: c.pattern,
    shape: c.shape,
    queryOffset: c.queryOffset,
    ...x,
    hashCodes: out.hashCodes,
  });
  return { ...gradientError(got, want), got, kernels: compiled.kernelPlan.kernels };
}

// D = 16 throughout; Nk = 37 is no multiple of the 8x8 tiles, and the chunks of 11 and 5 rows
// cross tiles at their offsets.
const CASES: Case[] = [
  {
    name: "decoding (Nq 1 of Nk 37): causal, MQA, Dv 8",
    pattern: { kind: "causal" },
    shape: {
      batch: 1,
      headsQ: 2,
      headsKV: 1,
      seqLen: 1,
      headDim: 16,
      kvSeqLen: 37,
      valueDim: 8,
    },
  },
  {
    name: "a chunk at the default offset (Nq 11 of Nk 37): stride in residue order, GQA, Dv 24",
    pattern: { kind: "stride", period: 4 },
    shape: {
      batch: 2,
      headsQ: 4,
      headsKV: 2,
      seqLen: 11,
      headDim: 16,
      kvSeqLen: 37,
      valueDim: 24,
    },
  },
  {
    name: "a chunk at offset 5 (Nq 11 of Nk 37): window ∪ lowRank (landmarks), GQA",
    pattern: {
      kind: "union",
      of: [{ kind: "window", left: 3, right: 2 }, { kind: "lowRank", rank: 4 }],
    },
    shape: { batch: 1, headsQ: 4, headsKV: 2, seqLen: 11, headDim: 16, kvSeqLen: 37 },
    queryOffset: 5,
  },
  {
    name: "a chunk at offset 20 (Nq 5 of Nk 37): gated ring and stride, gates per position, Dv 8",
    pattern: {
      kind: "gated",
      branches: [{ kind: "ring", radius: 3 }, { kind: "stride", period: 5 }],
    },
    shape: {
      batch: 1,
      headsQ: 2,
      headsKV: 2,
      seqLen: 5,
      headDim: 16,
      kvSeqLen: 37,
      valueDim: 8,
    },
    queryOffset: 20,
    gates: "position",
  },
  {
    name: "a chunk at the default offset (Nq 5 of Nk 37): hashBucket (queries sorted alone), Dv 8",
    pattern: { kind: "hashBucket", buckets: 4, rounds: 1, seed: 2 },
    shape: {
      batch: 1,
      headsQ: 2,
      headsKV: 1,
      seqLen: 5,
      headDim: 16,
      kvSeqLen: 37,
      valueDim: 8,
    },
  },
];

for (const c of CASES) {
  Deno.test(`backward on serving shapes matches the reference: ${c.name}`, async () => {
    const { worst, largest, kernels } = await backwardError(c);
    assert.ok(largest > 1e-2, `the gradients are not all zero (largest ${largest})`);
    assert.ok(worst <= 1e-4 * largest, `max |GPU - reference| ${worst}, largest ${largest}`);
    if (c.shape.seqLen === 1) {
      // A decoding step's dQ pass runs one query tile per head, whatever Nk is.
      for (const k of kernels) {
        if (k.kind !== "gradQuery") continue;
        assert.deepEqual(k.workgroups, [k.tiling!.split, c.shape.batch * c.shape.headsQ]);
      }
    }
  });
}

// Float16 needs the adapter's shader-f16 (llvmpipe's GL path has none): inputs and dO in
// float16, sums in float32, within 1e-2 of the largest gradient of the reference on the same
// float16-rounded values.
Deno.test({
  name: "backward on serving shapes in float16 matches the reference within 1e-2",
  ignore: !rt.info.shaderF16,
  fn: async () => {
    for (const c of CASES) {
      const x = inputsOf(c);
      const [q, k, v, dO] = [x.q, x.k, x.v, x.dO].map((t) => Float16Array.from(t));
      const compiled = rt.compile(c.pattern, {
        shape: c.shape,
        queryOffset: c.queryOffset,
        gatesPerPosition: c.gates === "position",
        dtype: "f16",
        backward: true,
      });
      const out = await rt.run(compiled, { q, k, v, dO, gates: x.gates?.data });
      const want = referenceGradients({
        pattern: c.pattern,
        shape: c.shape,
        queryOffset: c.queryOffset,
        q,
        k,
        v,
        dO,
        gates: x.gates,
        hashCodes: out.hashCodes,
      });
      const { worst, largest } = gradientError(out.gradients!, want);
      assert.ok(worst <= 1e-2 * largest, `${c.name}: max |GPU - reference| ${worst} of ${largest}`);
    }
  },
});

Deno.test("backward on serving shapes: the same bits on a rerun", async () => {
  const first = await backwardError(CASES[3]);
  const again = await backwardError(CASES[3]);
  for (const name of ["dq", "dk", "dv", "dgates"] as const) {
    assert.deepEqual(again.got[name], first.got[name], `${name} differs between runs`);
  }
});

Deno.test("backward on serving shapes: dO is shaped as O, [B, Hq, Nq, Dv]", async () => {
  const c = CASES[0];
  const compiled = rt.compile(c.pattern, { shape: c.shape, backward: true });
  const { q, k, v } = inputsOf(c);
  await assert.rejects(
    () => rt.run(compiled, { q, k, v, dO: normalTensor(2 * 16, 4) }),
    (e: Error) =>
      e instanceof ShapeError &&
      /dO has 32 elements, expected B\*Hq\*Nq\*Dv = 16/.test(e.message),
  );
});
