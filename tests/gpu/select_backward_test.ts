/**
 * The backward pass through `select` (select_gradients.ts) against the float64 reference's
 * gradients given the blocks the forward kept (`selectedBlocks`; those gradients are held to
 * finite differences in tests/reference): dQ, dK, dV and the runtime gates' gradient within
 * 1e-4 of the largest gradient in float32 and 1e-2 in float16 (on the float16-rounded inputs,
 * where the adapter has shader-f16); two runs give the same bits.
 */
import assert from "node:assert/strict";
import type { AttentionShape } from "../../core/shape.ts";
import type { Pattern } from "../../dsl/schema.ts";
import { referenceGradients } from "../../runtime/reference/mod.ts";
import { createRuntime } from "../../runtime/runtime.ts";
import { normalTensor } from "../../runtime/seeded_random.ts";
import { gradientError } from "../../cli/_common.ts";

const rt = await createRuntime({ autotune: false });
addEventListener("unload", () => rt.destroy());

const causalSelect = (s: number, n: number, initial = 0, local = 0): Pattern => ({
  kind: "intersect",
  of: [{ kind: "causal" }, { kind: "select", blockSize: s, blocks: n, initial, local }],
});

const CASES: [string, Pattern, AttentionShape, boolean?][] = [
  [
    "causal, forced blocks, GQA, two batches, a short last block",
    causalSelect(8, 3, 1, 1),
    { batch: 2, headsQ: 4, headsKV: 2, seqLen: 45, headDim: 8 },
  ],
  [
    "dense, MHA, blocks past the candidates, blocks of 5",
    { kind: "select", blockSize: 5, blocks: 9 },
    { batch: 1, headsQ: 2, headsKV: 2, seqLen: 33, headDim: 8 },
  ],
  [
    "gated beside a window and lowRank, runtime gates, MQA",
    {
      kind: "gated",
      branches: [
        { kind: "intersect", of: [{ kind: "lowRank", rank: 6 }, { kind: "causal" }] },
        causalSelect(4, 2, 1, 1),
        { kind: "window", left: 6, right: 0 },
      ],
    },
    { batch: 1, headsQ: 3, headsKV: 1, seqLen: 29, headDim: 8 },
    true,
  ],
];

async function run(pattern: Pattern, shape: AttentionShape, dtype: "f32" | "f16", gated = false) {
  const { batch: B, headsQ: Hq, headsKV: Hkv, seqLen: N, headDim: D } = shape;
  const round = (x: Float32Array) => dtype === "f16" ? Float32Array.from(Float16Array.from(x)) : x;
  const q = round(normalTensor(B * Hq * N * D, 1)), k = round(normalTensor(B * Hkv * N * D, 2));
  const v = round(normalTensor(B * Hkv * N * D, 3)), dO = round(normalTensor(B * Hq * N * D, 4));
  const branches = pattern.kind === "gated" ? pattern.branches.length : 0;
  const gateShape = [B, Hq, branches];
  const gates = gated
    ? Float32Array.from(normalTensor(B * Hq * branches, 5), (x) => 0.5 + 0.2 * x)
    : undefined;
  const out = await rt.run(rt.compile(pattern, { shape, dtype, backward: true }), {
    q,
    k,
    v,
    dO,
    gates,
  });
  const want = referenceGradients({
    pattern,
    shape,
    q,
    k,
    v,
    dO,
    gates: gates && { data: gates, shape: gateShape },
    selectedBlocks: out.selectedBlocks,
  });
  return { ...gradientError(out.gradients!, want), got: out.gradients! };
}

for (const [name, pattern, shape, gated] of CASES) {
  Deno.test(`select backward, float32: ${name}`, async () => {
    const { worst, largest } = await run(pattern, shape, "f32", gated);
    assert.ok(largest > 1e-2, `the gradients are not all zero (largest ${largest})`);
    assert.ok(worst <= 1e-4 * largest, `max |GPU - reference| ${worst}, largest ${largest}`);
  });
}

Deno.test({
  name: "select backward, float16: every case within 1e-2 of the largest gradient",
  ignore: !rt.info.shaderF16,
  fn: async () => {
    for (const [name, pattern, shape, gated] of CASES) {
      const { worst, largest } = await run(pattern, shape, "f16", gated);
      assert.ok(worst <= 1e-2 * largest, `${name}: max |GPU - reference| ${worst} of ${largest}`);
    }
  },
});

Deno.test("select backward: the same bits on every run", async () => {
  const [, pattern, shape] = CASES[0];
  const first = await run(pattern, shape, "f32");
  const again = await run(pattern, shape, "f32");
  for (const name of ["dq", "dk", "dv"] as const) {
    assert.deepEqual(again.got[name], first.got[name], `${name} differs between runs`);
  }
});
