/**
 * Kernel shapes with fewer columns than the widest split (each invocation owning more keys and
 * output dims, like the float16 default 64x32x2c4 at D = 64) match the float64 reference.
 */
import assert from "node:assert/strict";
import { kernelShapeName, parseKernelShapeName } from "../../compiler/mod.ts";
import type { Pattern } from "../../dsl/schema.ts";
import { reference } from "../../runtime/reference/mod.ts";
import { createRuntime } from "../../runtime/runtime.ts";
import { normalTensor } from "../../runtime/seeded_random.ts";

const rt = await createRuntime({ autotune: false });

// Kept to two patterns and two shapes: llvmpipe compiles each kernel for seconds.
const patterns: Pattern[] = [
  { kind: "ring", radius: 11 },
  { kind: "union", of: [{ kind: "window", left: 20, right: 3 }, { kind: "stride", period: 5 }] },
];

for (const name of ["16x16x2c2", "16x8x1c2"]) {
  Deno.test(`column split ${name} matches the reference`, async () => {
    const d = 32, n = 131;
    const kernel = parseKernelShapeName(name, d)!;
    assert.equal(kernelShapeName(kernel, d), name, "not the widest split");
    const shape = { batch: 1, headsQ: 2, headsKV: 1, seqLen: n, headDim: d };
    const q = normalTensor(2 * n * d, 31), k = normalTensor(n * d, 32), v = normalTensor(n * d, 33);
    for (const pattern of patterns) {
      const got = await rt.run(rt.compile(pattern, { shape, tiles: kernel }), { q, k, v });
      const want = reference({ pattern, shape, q, k, v });
      let err = 0;
      for (let i = 0; i < want.o.length; i++) err = Math.max(err, Math.abs(got.o[i] - want.o[i]));
      assert.ok(err < 2e-5, `${pattern.kind}: max |O - reference| = ${err}`);
    }
  });
}

addEventListener("unload", () => rt.destroy());
