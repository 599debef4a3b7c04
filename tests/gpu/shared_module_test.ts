/**
 * A pattern whose component kernels share a module (compiler/kernel_groups.ts) creates that
 * module once and one pipeline per kernel, a fused kernel (compiler/run_fusion.ts) walks each of
 * its components with that component's mask, and the result matches the float64 reference.
 */
import assert from "node:assert/strict";
import type { Pattern } from "../../dsl/schema.ts";
import { reference } from "../../runtime/reference/mod.ts";
import { createRuntime } from "../../runtime/runtime.ts";
import { normalTensor } from "../../runtime/seeded_random.ts";

async function checkAgainstReference(
  pattern: Pattern,
  expect: { labels: string[]; modules: number; pipelines: number },
) {
  const rt = await createRuntime({ autotune: false });
  try {
    const n = 160, d = 32;
    const shape = { batch: 1, headsQ: 2, headsKV: 2, seqLen: n, headDim: d };
    const compiled = rt.compile(pattern, { shape, tiles: { tileQ: 16, tileK: 16 }, keySplits: 2 });
    const q = normalTensor(2 * n * d, 31), k = normalTensor(2 * n * d, 32);
    const v = normalTensor(2 * n * d, 33);
    const got = await rt.run(compiled, { q, k, v });
    assert.deepEqual(compiled.passes.map((p) => p.label), expect.labels);
    assert.deepEqual({ modules: rt.pipelines.modules, pipelines: rt.pipelines.misses }, {
      modules: expect.modules,
      pipelines: expect.pipelines,
    });
    const want = reference({ pattern, shape, q, k, v });
    let err = 0;
    for (let i = 0; i < got.o.length; i++) err = Math.max(err, Math.abs(got.o[i] - want.o[i]));
    assert.ok(err < 2e-5, `max |O - reference| = ${err}`);
  } finally {
    rt.destroy();
  }
}

Deno.test("shared module: BigBird with scattered global tokens, three kernels in one module", async () => {
  // Window and random blocks: one fused kernel (run_fusion.ts); the global columns gathered;
  // the global rows split K. The split-K combine pass has its own module.
  await checkAgainstReference({
    kind: "union",
    of: [
      { kind: "window", left: 7, right: 7 },
      { kind: "global", tokens: [0, 3, 100] },
      { kind: "random", blocks: 2, blockSize: 16, seed: 2 },
    ],
  }, {
    labels: [
      "branch 0 components 0+1",
      "branch 0 component 2",
      "branch 0 component 3, key tiles in 2 chunks",
      "branch 0 component 3: combine 2 chunks",
    ],
    modules: 2,
    pipelines: 4,
  });
});

Deno.test("shared module: BigBird with a whole tile of global tokens fuses three components", async () => {
  // Tokens 0..15 fill key tile 0: the global columns stay in natural order and join the
  // window's and random blocks' kernel, whose tiles overlap theirs (each masks its own pairs).
  await checkAgainstReference({
    kind: "union",
    of: [
      { kind: "window", left: 20, right: 9 },
      { kind: "global", tokens: Array.from({ length: 16 }, (_, i) => i) },
      { kind: "random", blocks: 3, blockSize: 16, seed: 5 },
    ],
  }, {
    labels: [
      "branch 0 components 0+1+2",
      "branch 0 component 3, key tiles in 2 chunks",
      "branch 0 component 3: combine 2 chunks",
    ],
    modules: 2,
    pipelines: 3,
  });
});

Deno.test("shared module: two masks that read the head and batch fuse into one kernel", async () => {
  // The fused kernel passes h and b to whichever member's mask a run names.
  await checkAgainstReference({
    kind: "union",
    of: [
      { kind: "predicate", expr: "(q, k, n, h) => k <= q && q - k <= 4 + 3 * h" },
      { kind: "predicate", expr: "(q, k, n, h, b) => k > q && k - q <= 2 + h + b" },
    ],
  }, {
    labels: ["branch 0 components 0+1"],
    modules: 1,
    pipelines: 1,
  });
});
