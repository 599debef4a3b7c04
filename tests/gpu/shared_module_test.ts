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
import { memberSettings } from "../compiler/_member_settings.ts";
import { referenceError } from "./_reference_error.ts";

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

/** Max |O - reference| of a pattern at N = 160 (float16: against the float16-rounded inputs). */
function hashError(pattern: Pattern, dtype: "f32" | "f16") {
  // Float16 at the H200's tuned shape; float32 small, for llvmpipe's LLVM.
  return referenceError(pattern, {
    n: 160,
    headDim: dtype === "f16" ? 64 : 32,
    dtype,
    tiles: dtype === "f16"
      ? { tileQ: 64, tileK: 32, threads: 128, rowsPerThread: 2 }
      : { tileQ: 16, tileK: 16 },
    seeds: [51, 52, 53],
  });
}

const threeRounds: Pattern = { kind: "hashBucket", buckets: 8, rounds: 3, seed: 7 };
// The window excludes the hash pairs: it stages codes too, but walks its BlockMask's runs.
const windowAndHash: Pattern = {
  kind: "union",
  of: [{ kind: "hashBucket", buckets: 4, rounds: 2, seed: 2 }, {
    kind: "window",
    left: 9,
    right: 9,
  }],
};

Deno.test("shared module: a hashBucket's rounds are one module and match the reference", async () => {
  const { err, kernels, modules } = await hashError(threeRounds, "f32");
  assert.equal(kernels.length, 3);
  assert.equal(new Set(kernels.map((p) => p.wgsl)).size, 1, "one module for three rounds");
  // Each round reads its own part of the hash buffer.
  assert.equal(new Set(kernels.map((p) => memberSettings(p)!.ORDER_AT)).size, 3);
  // The sort's four passes and the rounds' kernel.
  assert.equal(modules, 5);
  assert.ok(err < 2e-5, `max |O - reference| = ${err}`);
  const mixed = await hashError(windowAndHash, "f32");
  assert.equal(mixed.kernels.length, 3);
  assert.equal(new Set(mixed.kernels.map((p) => p.wgsl)).size, 2, "rounds share; the window not");
  assert.ok(mixed.err < 2e-5, `window and hash: max |O - reference| = ${mixed.err}`);
});

Deno.test({
  name: "shared module: float16 hashBucket rounds match the reference",
  ignore: !(await hasShaderF16()),
  fn: async () => {
    for (const pattern of [threeRounds, windowAndHash]) {
      const { err } = await hashError(pattern, "f16");
      assert.ok(err <= 5e-3, `${JSON.stringify(pattern)}: max |O - reference| = ${err}`);
    }
  },
});

async function hasShaderF16(): Promise<boolean> {
  const rt = await createRuntime({ autotune: false });
  const has = rt.info.shaderF16;
  rt.destroy();
  return has;
}
