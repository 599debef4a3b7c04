/**
 * Query rows read from global memory at every key tile (`globalQuery`) and a query tile staged
 * in workgroup memory both match the float64 reference, for every kind of query layout:
 * natural order with no padding and padded, residue order (stride), gathered global rows (and
 * their split-K chunks), bucket order (hashBucket), and a gated mix. The default is memory in
 * float32, so the other tests run it; this one keeps the staged tile (float16's choice for
 * dense, causal and global rows) checked on adapters without shader-f16.
 */
import assert from "node:assert/strict";
import type { Pattern } from "../../dsl/schema.ts";
import { reference } from "../../runtime/reference/mod.ts";
import { createRuntime } from "../../runtime/runtime.ts";
import { normalTensor } from "../../runtime/seeded_random.ts";

const rt = await createRuntime({ autotune: false });

const STAGED = /var<workgroup> qTile/;

const cases: { name: string; pattern: Pattern; n: number }[] = [
  { name: "ring, complete grid", pattern: { kind: "ring", radius: 21 }, n: 192 },
  { name: "window, padded grid", pattern: { kind: "window", left: 30, right: 9 }, n: 184 },
  { name: "stride, residue order", pattern: { kind: "stride", period: 5 }, n: 192 },
  { name: "global rows and columns", pattern: { kind: "global", tokens: [0, 7, 150] }, n: 192 },
  {
    name: "hashBucket, bucket order",
    pattern: { kind: "hashBucket", buckets: 4, rounds: 1, seed: 3 },
    n: 128,
  },
  {
    name: "gated causal and ring",
    pattern: {
      kind: "gated",
      branches: [{ kind: "causal" }, { kind: "ring", radius: 9 }],
      gates: [0.3, 0.7],
    },
    n: 160,
  },
];

for (const c of cases) {
  Deno.test(`query rows from memory and from a staged tile match the reference: ${c.name}`, async () => {
    const n = c.n;
    const shape = { batch: 1, headsQ: 2, headsKV: 1, seqLen: n, headDim: 16 };
    const q = normalTensor(2 * n * 16, 41), k = normalTensor(n * 16, 42);
    const v = normalTensor(n * 16, 43);
    const want = reference({ pattern: c.pattern, shape, q, k, v });
    for (const globalQuery of [true, false]) {
      const compiled = rt.compile(c.pattern, {
        shape,
        tiles: { tileQ: 32, tileK: 16 },
        globalQuery,
      });
      const kernels = compiled.passes.filter((p) => /Weft attention kernel/.test(p.wgsl));
      assert.ok(kernels.length >= 1);
      for (const p of kernels) {
        assert.equal(STAGED.test(p.wgsl), !globalQuery, `${p.label}: the query tile's place`);
      }
      const got = await rt.run(compiled, { q, k, v });
      let err = 0;
      for (let i = 0; i < got.o.length; i++) err = Math.max(err, Math.abs(got.o[i] - want.o[i]));
      assert.ok(err < 2e-5, `globalQuery ${globalQuery}: max |O - reference| = ${err}`);
    }
  });
}
