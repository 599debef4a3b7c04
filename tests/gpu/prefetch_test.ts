/**
 * The key loop with the next K/V tile prefetched into registers (the default) and the plain one
 * (each tile loaded between two barriers) both match the float64 reference: across runs of
 * FULL and PARTIAL tiles, wrap-around, merged components, staged hash codes, and tiles whose
 * element count is not a multiple of the workgroup size (guarded slots).
 */
import assert from "node:assert/strict";
import type { Pattern } from "../../dsl/schema.ts";
import { reference } from "../../runtime/reference/mod.ts";
import { createRuntime } from "../../runtime/runtime.ts";
import { normalTensor } from "../../runtime/seeded_random.ts";

const rt = await createRuntime({ autotune: false });

const cases: {
  name: string;
  pattern: Pattern;
  n: number;
  headDim: number;
  tileQ: number;
  tileK: number;
}[] = [
  {
    name: "ring (wraps at both ends)",
    pattern: { kind: "ring", radius: 20 },
    n: 300,
    headDim: 64,
    tileQ: 32,
    tileK: 16,
  },
  {
    name: "union of window and stride (two components, merged)",
    pattern: {
      kind: "union",
      of: [{ kind: "window", left: 33, right: 5 }, { kind: "stride", period: 7 }],
    },
    n: 257,
    headDim: 64,
    tileQ: 16,
    tileK: 16,
  },
  {
    name: "hashBucket, 2 rounds (staged codes, bucket ranges)",
    pattern: { kind: "hashBucket", buckets: 8, rounds: 2, seed: 3 },
    n: 160,
    headDim: 64,
    tileQ: 32,
    tileK: 16,
  },
  // 8 keys x 5 vec4s = 40 elements over 16 invocations: the last slot is guarded.
  {
    name: "causal, D = 20 (uneven slots)",
    pattern: { kind: "causal" },
    n: 150,
    headDim: 20,
    tileQ: 32,
    tileK: 8,
  },
];

for (const c of cases) {
  Deno.test(`prefetched and plain key loops match the reference: ${c.name}`, async () => {
    const shape = { batch: 2, headsQ: 2, headsKV: 1, seqLen: c.n, headDim: c.headDim };
    const q = normalTensor(2 * 2 * c.n * c.headDim, 1);
    const k = normalTensor(2 * c.n * c.headDim, 2);
    const v = normalTensor(2 * c.n * c.headDim, 3);
    for (const prefetch of [true, false]) {
      const compiled = rt.compile(c.pattern, {
        shape,
        tiles: { tileQ: c.tileQ, tileK: c.tileK },
        prefetch,
      });
      const wgsl = compiled.passes.map((p) => p.wgsl).join("\n");
      assert.equal(
        /var nextK0 =/.test(wgsl),
        prefetch,
        `prefetch=${prefetch}: WGSL has the loop asked for`,
      );
      const got = await rt.run(compiled, { q, k, v });
      const want = reference({ pattern: c.pattern, shape, q, k, v, hashCodes: got.hashCodes });
      let err = 0;
      for (let i = 0; i < got.o.length; i++) err = Math.max(err, Math.abs(got.o[i] - want.o[i]));
      assert.ok(err < 2e-5, `prefetch=${prefetch}: max |O - reference| = ${err}`);
      for (let i = 0; i < got.lse.length; i++) {
        assert.ok(Math.abs(got.lse[i] - want.lse[i]) < 2e-5, `prefetch=${prefetch}: lse[${i}]`);
      }
    }
  });
}

Deno.test("prefetch is the default for tiles of at most 4 vec4s of K per invocation", () => {
  const shape = { batch: 1, headsQ: 1, headsKV: 1, seqLen: 128, headDim: 64 };
  const wgsl = (tiles: { tileQ: number; tileK: number }) =>
    rt.compile({ kind: "ring", radius: 8 }, { shape, tiles }).passes.map((p) => p.wgsl).join("\n");
  assert.match(wgsl({ tileQ: 32, tileK: 16 }), /var nextK0 =/); // 16 x 16 vec4s over 128 invocations
  assert.doesNotMatch(wgsl({ tileQ: 8, tileK: 16 }), /var nextK0 =/); // 16 x 16 over 32: 8 each
});

addEventListener("unload", () => rt.destroy());
