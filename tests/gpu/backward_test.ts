/**
 * The backward pass on the device (plan_gradients.ts, gradient_wgsl.ts) against the float64
 * reference's analytic gradients (themselves held to finite differences in
 * tests/reference/gradients_test.ts): dQ, dK, dV and the runtime gates' gradient within 1e-4
 * of the largest gradient (float32), for every kind (lowRank through its pooling, hashBucket on
 * the forward's codes), their unions, intersections, scored and gated forms, on MHA, GQA with
 * two batches and MQA, at padded N; two runs give the same bits.
 */
import assert from "node:assert/strict";
import { ShapeError } from "../../core/errors.ts";
import type { Pattern } from "../../dsl/schema.ts";
import { referenceGradients } from "../../runtime/reference/mod.ts";
import { createRuntime } from "../../runtime/runtime.ts";
import { normalTensor } from "../../runtime/seeded_random.ts";
import { constantGradientError, gradientError } from "../../cli/_common.ts";

const rt = await createRuntime({ autotune: false });
addEventListener("unload", () => rt.destroy());

type Shape = { batch: number; headsQ: number; headsKV: number; seqLen: number; headDim: number };
const MHA: Shape = { batch: 1, headsQ: 2, headsKV: 2, seqLen: 45, headDim: 8 };
const GQA: Shape = { batch: 2, headsQ: 2, headsKV: 1, seqLen: 37, headDim: 8 };
const MQA: Shape = { batch: 1, headsQ: 3, headsKV: 1, seqLen: 29, headDim: 12 };

/** Largest |GPU - reference| of every gradient, relative to the largest reference gradient. */
async function backwardError(
  pattern: Pattern,
  shape: Shape,
  o: { gates?: "head" | "position"; tiles?: { tileQ: number; tileK: number } } = {},
) {
  const { batch: B, headsQ: Hq, headsKV: Hkv, seqLen: N, headDim: D } = shape;
  const branches = pattern.kind === "gated" ? pattern.branches.length : 0;
  const gateShape = o.gates === "position" ? [B, Hq, N, branches] : [B, Hq, branches];
  const gates = o.gates
    ? Float32Array.from(normalTensor(gateShape.reduce((a, x) => a * x), 5), (x) => 0.5 + 0.2 * x)
    : undefined;
  const q = normalTensor(B * Hq * N * D, 1), k = normalTensor(B * Hkv * N * D, 2);
  const v = normalTensor(B * Hkv * N * D, 3), dO = normalTensor(B * Hq * N * D, 4);
  const compiled = rt.compile(pattern, {
    shape,
    backward: true,
    tiles: o.tiles,
    gatesPerPosition: o.gates === "position",
  });
  const out = await rt.run(compiled, { q, k, v, dO, gates });
  const got = out.gradients!;
  // hashBucket: the allowed set the kernels used (tests/gpu/golden_test.ts checks the codes).
  const want = referenceGradients({
    pattern,
    shape,
    q,
    k,
    v,
    dO,
    gates: gates && { data: gates, shape: gateShape },
    hashCodes: out.hashCodes,
  });
  // A length mismatch or a NaN is an infinite error.
  const { worst, largest } = gradientError(got, want);
  return { worst, largest, got, constants: constantError(got.dConstants, want.dConstants) };
}

/**
 * Learnable constants' gradients against the reference's (cli/_common.ts): undefined when the
 * pattern learns none, and then the call returns none either.
 */
function constantError(
  got: Record<string, number | Float32Array> | undefined,
  want: Record<string, number | Float64Array> | undefined,
): { worst: number; largest: number } | undefined {
  if (!want) {
    assert.equal(got, undefined, "no learnable constants, no dConstants");
    return undefined;
  }
  assert.deepEqual(Object.keys(got ?? {}).sort(), Object.keys(want).sort());
  return constantGradientError(got, want);
}

/** A modifier with learnable constants: a number read twice, and ALiBi-like slopes per head. */
const learnt = (a: number, slopes: number[]): Pattern => ({
  kind: "scored",
  pattern: { kind: "causal" },
  score: {
    expr: "(s, q, k, h) => s * (1 + a * Math.tanh(s)) - slopes[h] * Math.abs(q - k) + a",
    constants: { a, slopes },
    learnable: ["a", "slopes"],
  },
});
const LEARNT = learnt(0.2, [0.05, 0.03]);

// Each kind once, mostly inside compositions (dense, window, ring and predicates appear in the
// unions, intersections and gated cases): llvmpipe compiles every case's kernels afresh in CI.
const CASES: [string, Pattern, Shape, { gates?: "head" | "position" }?][] = [
  ["causal (GQA, two batches)", { kind: "causal" }, GQA],
  ["stride (residue order)", { kind: "stride", period: 6 }, GQA],
  ["global (gathered rows)", { kind: "global", tokens: [0, 7, 30] }, MHA],
  ["random blocks", { kind: "random", blocks: 2, blockSize: 8, seed: 3 }, GQA],
  [
    "scored (the modifier's slope; learnable a number and per-head slopes)",
    LEARNT,
    GQA,
  ],
  [
    "window ∪ lowRank (through the pooling)",
    { kind: "union", of: [{ kind: "window", left: 2, right: 2 }, { kind: "lowRank", rank: 5 }] },
    GQA,
  ],
  [
    "lowRank ∩ causal",
    { kind: "intersect", of: [{ kind: "lowRank", rank: 4 }, { kind: "causal" }] },
    MHA,
  ],
  ["hashBucket (bucket order, codes from the forward)", {
    kind: "hashBucket",
    buckets: 4,
    rounds: 2,
    seed: 3,
  }, GQA],
  [
    "window ∪ hashBucket (codes in the mask)",
    {
      kind: "union",
      of: [{ kind: "window", left: 2, right: 2 }, {
        kind: "hashBucket",
        buckets: 4,
        rounds: 1,
        seed: 5,
      }],
    },
    MHA,
  ],
  ["hashBucket, uniform weights", {
    kind: "hashBucket",
    buckets: 4,
    rounds: 2,
    seed: 1,
    weights: "uniform",
  }, MQA],
  [
    "ring ∪ stride (two components)",
    { kind: "union", of: [{ kind: "ring", radius: 3 }, { kind: "stride", period: 7 }] },
    MHA,
  ],
  [
    "window ∩ predicate",
    {
      kind: "intersect",
      of: [{ kind: "window", left: 9, right: 9 }, { kind: "predicate", expr: "(q + k) % 3 != 0" }],
    },
    GQA,
  ],
  [
    "gated, JSON gates",
    {
      kind: "gated",
      branches: [{ kind: "ring", radius: 4 }, { kind: "stride", period: 5 }],
      gates: [0.7, 0.3],
    },
    MHA,
  ],
  [
    "gated, runtime gates per head",
    { kind: "gated", branches: [{ kind: "causal" }, { kind: "window", left: 3, right: 3 }] },
    GQA,
    { gates: "head" },
  ],
  [
    "gated, runtime gates per position, a scored branch",
    {
      kind: "gated",
      branches: [
        { kind: "stride", period: 4 },
        {
          kind: "scored",
          pattern: { kind: "dense" },
          score: {
            // A bias added to a whole row would cancel in the softmax: this one scales |s|.
            expr: "(s, q, k, h) => -Math.abs(s) * width[h]",
            constants: { width: [1, 0.8, 1.2] },
            learnable: ["width"],
          },
        },
      ],
    },
    MQA,
    { gates: "position" },
  ],
];

for (const [name, pattern, shape, options] of CASES) {
  Deno.test(`backward on the device matches the reference: ${name}`, async () => {
    const { worst, largest, constants } = await backwardError(pattern, shape, options);
    assert.ok(largest > 1e-2, `the gradients are not all zero (largest ${largest})`);
    assert.ok(worst <= 1e-4 * largest, `max |GPU - reference| ${worst}, largest ${largest}`);
    if (constants) {
      assert.ok(constants.largest > 1e-2, `dConstants not all zero (${constants.largest})`);
      assert.ok(
        constants.worst <= 1e-4 * constants.largest,
        `dConstants: max |GPU - reference| ${constants.worst}, largest ${constants.largest}`,
      );
    }
  });
}

Deno.test("backward at a second tile shape, and the same bits on every run", async () => {
  const pattern: Pattern = {
    kind: "union",
    of: [{ kind: "window", left: 4, right: 0 }, { kind: "stride", period: 5 }],
  };
  const first = await backwardError(pattern, GQA, { tiles: { tileQ: 16, tileK: 8 } });
  assert.ok(first.worst <= 1e-4 * first.largest, `max |GPU - reference| ${first.worst}`);
  const again = await backwardError(pattern, GQA, { tiles: { tileQ: 16, tileK: 8 } });
  for (const name of ["dq", "dk", "dv"] as const) {
    assert.deepEqual(again.got[name], first.got[name], `${name} differs between runs`);
  }
  // The learnable constants' sums run in a fixed order too.
  const learnt = [await backwardError(LEARNT, GQA), await backwardError(LEARNT, GQA)];
  assert.deepEqual(learnt[1].got.dConstants, learnt[0].got.dConstants, "dConstants differ");
});

Deno.test("new values of learnable constants reuse the pipelines: they live in a buffer", async () => {
  await backwardError(LEARNT, GQA); // the pipelines, if no earlier test built them
  const before = rt.pipelines.misses;
  const moved = learnt(-0.3, [0.4, 0.1]);
  const { worst, largest, constants } = await backwardError(moved, GQA);
  assert.equal(rt.pipelines.misses, before, "no pipeline built for new constant values");
  assert.ok(worst <= 1e-4 * largest, `max |GPU - reference| ${worst}`);
  assert.ok(constants && constants.worst <= 1e-4 * constants.largest, "dConstants");
});

Deno.test("dO is required, and shaped as O", async () => {
  const shape = MHA;
  const compiled = rt.compile({ kind: "causal" }, { shape, backward: true });
  const x = normalTensor(2 * 45 * 8, 1);
  await assert.rejects(
    () => rt.run(compiled, { q: x, k: x, v: x }),
    (e: Error) => e instanceof ShapeError && /dO is required/.test(e.message),
  );
  await assert.rejects(
    () => rt.run(compiled, { q: x, k: x, v: x, dO: x.subarray(1) }),
    (e: Error) =>
      e instanceof ShapeError && /dO has 719 elements, expected B\*Hq\*N\*D = 720/.test(e.message),
  );
});

// Float16 needs the adapter's shader-f16 (llvmpipe's GL path has none): inputs and dO in
// float16, sums in float32, within 1e-2 of the largest gradient of the reference on the same
// float16-rounded values.
Deno.test({
  name: "backward in float16 matches the reference within 1e-2",
  ignore: !rt.info.shaderF16,
  fn: async () => {
    const cases: [Pattern, Shape][] = [
      [{ kind: "causal" }, GQA],
      [{ kind: "union", of: [{ kind: "ring", radius: 3 }, { kind: "stride", period: 7 }] }, MHA],
      [{ kind: "hashBucket", buckets: 4, rounds: 2, seed: 3 }, GQA],
      [LEARNT, GQA],
    ];
    for (const [pattern, shape] of cases) {
      const { batch: B, headsQ: Hq, headsKV: Hkv, seqLen: N, headDim: D } = shape;
      const half = (count: number, seed: number) => Float16Array.from(normalTensor(count, seed));
      const q = half(B * Hq * N * D, 1), k = half(B * Hkv * N * D, 2);
      const v = half(B * Hkv * N * D, 3), dO = half(B * Hq * N * D, 4);
      const compiled = rt.compile(pattern, { shape, dtype: "f16", backward: true });
      const out = await rt.run(compiled, { q, k, v, dO });
      const want = referenceGradients({ pattern, shape, q, k, v, dO, hashCodes: out.hashCodes });
      const { worst, largest } = gradientError(out.gradients!, want);
      const label = JSON.stringify(pattern).slice(0, 60);
      assert.ok(
        worst <= 1e-2 * largest,
        `${label}: max |GPU - reference| ${worst}, largest ${largest}`,
      );
      const c = constantError(out.gradients!.dConstants, want.dConstants);
      if (c) {
        assert.ok(c.worst <= 1e-2 * c.largest, `${label}: dConstants ${c.worst} of ${c.largest}`);
      }
    }
  },
});
