/**
 * Edge pairs (compiler/edge_pairs.ts) on the GPU: a band's two half-seen corner tiles walked as
 * one step match the float64 reference in both forms (wide: both tiles side by side in the V
 * tile; narrow: the halves' P·V one after the other), alone, in a module shared with a kernel
 * that walks none (PAIRS), and next to a fused kernel (FUSED). Float32 everywhere; float16, at
 * the H200's tuned shape, where the adapter has shader-f16.
 */
import assert from "node:assert/strict";
import type { Pattern } from "../../dsl/schema.ts";
import { createRuntime } from "../../runtime/runtime.ts";
import { memberSettings } from "../compiler/_member_settings.ts";
import { referenceError } from "./_reference_error.ts";

const cases: { name: string; pattern: Pattern; shared: boolean }[] = [
  { name: "a ring that wraps", pattern: { kind: "ring", radius: 37 }, shared: false },
  {
    name: "a window clipped at both ends, sharing a module with a stride",
    pattern: {
      kind: "union",
      of: [{ kind: "window", left: 30, right: 5 }, {
        kind: "stride",
        period: 7,
      }],
    },
    shared: true,
  },
  {
    name: "a gated ring next to a fused window and random blocks",
    pattern: {
      kind: "gated",
      branches: [{ kind: "ring", radius: 20 }, {
        kind: "union",
        of: [{ kind: "window", left: 10, right: 3 }, {
          kind: "random",
          blocks: 2,
          blockSize: 16,
          seed: 3,
        }],
      }],
      gates: [0.4, 0.6],
    },
    shared: true,
  },
];

function pairError(pattern: Pattern, dtype: "f32" | "f16", form: "wide" | "narrow") {
  // Float16 at the H200's tuned shape; float32 small, for llvmpipe's LLVM.
  return referenceError(pattern, {
    n: 256,
    headDim: dtype === "f16" ? 64 : 32,
    dtype,
    tiles: dtype === "f16"
      ? { tileQ: 64, tileK: 32, threads: 128, rowsPerThread: 2 }
      : { tileQ: 32, tileK: 16 },
    seeds: [61, 62, 63],
    edgePairs: form,
    lse: true,
  });
}

for (const c of cases) {
  Deno.test(`edge pairs match the reference: ${c.name}`, async () => {
    for (const form of ["wide", "narrow"] as const) {
      const { err, kernels } = await pairError(c.pattern, "f32", form);
      assert.ok(kernels[0].wgsl.includes("PAIR_BIT"), `${form}: the first kernel walks pairs`);
      if (c.shared) {
        // Only the band's kernel walks pairs; its module holds them narrow.
        assert.equal(memberSettings(kernels[0])?.PAIRS, true);
        assert.equal(memberSettings(kernels[1])?.PAIRS, false);
        assert.ok(!kernels[0].wgsl.includes("PAIR_K"), "a shared module's pairs are narrow");
      } else {
        assert.equal(kernels[0].wgsl.includes("PAIR_K"), form === "wide");
      }
      assert.ok(err < 2e-5, `${form}: max |O - reference|, |LSE - reference| = ${err}`);
    }
  });
}

Deno.test({
  name: "edge pairs: float16 matches the reference in both forms",
  ignore: !(await hasShaderF16()),
  fn: async () => {
    for (const c of cases) {
      for (const form of ["wide", "narrow"] as const) {
        const { err } = await pairError(c.pattern, "f16", form);
        assert.ok(err <= 5e-3, `${c.name}, ${form}: max error ${err}`);
      }
    }
  },
});

async function hasShaderF16(): Promise<boolean> {
  const rt = await createRuntime({ autotune: false });
  const has = rt.info.shaderF16;
  rt.destroy();
  return has;
}
