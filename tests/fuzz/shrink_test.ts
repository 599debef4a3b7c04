/**
 * Shrinking, with a stand-in runtime whose answers are wrong exactly when the pattern holds a
 * `stride`: a large failing case shrinks to the stride alone at the smallest shape.
 */
import assert from "node:assert/strict";
import type { Pattern } from "../../dsl/schema.ts";
import { reference } from "../../runtime/reference/mod.ts";
import type { Runtime } from "../../runtime/runtime.ts";
import { checkCase, type FuzzCase, shrinkCase } from "./fuzz_case.ts";

const hasStride = (p: Pattern): boolean =>
  p.kind === "stride" ||
  (p.kind === "union" || p.kind === "intersect") && p.of.some(hasStride) ||
  p.kind === "gated" && p.branches.some(hasStride);

const brokenOnStride = {
  compile: (pattern: Pattern, options: { shape: FuzzCase["shape"] }) => ({ pattern, ...options }),
  // deno-lint-ignore require-await
  run: async (c: { pattern: Pattern; shape: FuzzCase["shape"] }, inputs: any) => {
    const gates = inputs.gates &&
      {
        data: inputs.gates,
        shape: [
          c.shape.batch,
          c.shape.headsQ,
          c.pattern.kind === "gated" ? c.pattern.branches.length : 1,
        ],
      };
    const { o, lse } = reference({ pattern: c.pattern, shape: c.shape, ...inputs, gates });
    if (hasStride(c.pattern)) o[0] += 1;
    return { o, lse, peakBufferBytes: 0 };
  },
} as unknown as Runtime;

Deno.test("a failing case shrinks to its smallest failing part", async () => {
  const big: FuzzCase = {
    pattern: {
      kind: "gated",
      branches: [
        { kind: "union", of: [{ kind: "ring", radius: 3 }, { kind: "stride", period: 5 }] },
        { kind: "intersect", of: [{ kind: "causal" }, { kind: "window", left: 4, right: 0 }] },
      ],
    },
    shape: { batch: 2, headsQ: 4, headsKV: 2, seqLen: 31, headDim: 8 },
    magnitude: 4,
    seed: 7,
    runtimeGates: true,
  };
  assert.equal((await checkCase(brokenOnStride, big)).status, "mismatch");
  const small = await shrinkCase(brokenOnStride, big);
  assert.deepEqual(small, {
    pattern: { kind: "stride", period: 5 },
    shape: { batch: 1, headsQ: 1, headsKV: 1, seqLen: 1, headDim: 4 },
    magnitude: 1,
    seed: 7,
    runtimeGates: false,
  });
  // A case without the fault passes.
  const fine = {
    ...big,
    pattern: big.pattern.kind === "gated" ? big.pattern.branches[1] : big.pattern,
  };
  assert.equal((await checkCase(brokenOnStride, fine)).status, "ok");
});

Deno.test("shrinking keeps a value head dim the kernels take", async () => {
  const big: FuzzCase = {
    pattern: { kind: "union", of: [{ kind: "causal" }, { kind: "stride", period: 3 }] },
    shape: { batch: 2, headsQ: 4, headsKV: 1, seqLen: 16, headDim: 192, valueDim: 128 },
    magnitude: 1,
    seed: 3,
    runtimeGates: false,
  };
  assert.equal((await checkCase(brokenOnStride, big)).status, "mismatch");
  // D and Dv both reach 4, and Dv then equals D, so it is left out.
  const small = await shrinkCase(brokenOnStride, big);
  assert.deepEqual(small.shape, { batch: 1, headsQ: 1, headsKV: 1, seqLen: 1, headDim: 4 });
});
