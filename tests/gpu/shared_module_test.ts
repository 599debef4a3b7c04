/**
 * A pattern whose component kernels share a module (compiler/kernel_groups.ts) creates that
 * module once and one pipeline per member, and each member still computes its own components:
 * the result matches the float64 reference.
 */
import assert from "node:assert/strict";
import type { Pattern } from "../../dsl/schema.ts";
import { reference } from "../../runtime/reference/mod.ts";
import { createRuntime } from "../../runtime/runtime.ts";
import { normalTensor } from "../../runtime/seeded_random.ts";

Deno.test("shared module: BigBird's four kernels are one module, four pipelines", async () => {
  const rt = await createRuntime({ autotune: false });
  try {
    const pattern: Pattern = {
      kind: "union",
      of: [
        { kind: "window", left: 7, right: 7 },
        { kind: "global", tokens: [0, 3, 100] },
        { kind: "random", blocks: 2, blockSize: 16, seed: 2 },
      ],
    };
    const n = 160, d = 32;
    const shape = { batch: 1, headsQ: 2, headsKV: 2, seqLen: n, headDim: d };
    const compiled = rt.compile(pattern, { shape, tiles: { tileQ: 16, tileK: 16 }, keySplits: 2 });
    const q = normalTensor(2 * n * d, 31), k = normalTensor(2 * n * d, 32);
    const v = normalTensor(2 * n * d, 33);
    const got = await rt.run(compiled, { q, k, v });
    // Four component kernels in one module, and the split-K combine pass in its own.
    assert.equal(compiled.passes.length, 5);
    assert.deepEqual({ modules: rt.pipelines.modules, pipelines: rt.pipelines.misses }, {
      modules: 2,
      pipelines: 5,
    });
    const want = reference({ pattern, shape, q, k, v });
    let err = 0;
    for (let i = 0; i < got.o.length; i++) err = Math.max(err, Math.abs(got.o[i] - want.o[i]));
    assert.ok(err < 2e-5, `max |O - reference| = ${err}`);
  } finally {
    rt.destroy();
  }
});
