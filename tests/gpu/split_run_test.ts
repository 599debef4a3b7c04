/**
 * Tensors over the binding cap run in parts of whole heads: the assembled O and LSE match the
 * float64 reference (GQA, per-position gates, several batches), the peak buffer bytes are one
 * part's, and a call that cannot be cut small enough is refused naming the limit.
 */
import assert from "node:assert/strict";
import { DeviceError } from "../../core/errors.ts";
import type { Pattern } from "../../dsl/schema.ts";
import { reference } from "../../runtime/reference/mod.ts";
import { createRuntime } from "../../runtime/runtime.ts";
import { normalTensor } from "../../runtime/seeded_random.ts";
import { largestBinding } from "../../runtime/split_run.ts";

const shape = { batch: 2, headsQ: 4, headsKV: 2, seqLen: 40, headDim: 8 };
const pattern: Pattern = {
  kind: "gated",
  branches: [{ kind: "ring", radius: 3 }, { kind: "stride", period: 6 }],
};

function maxError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

Deno.test("a call over the binding cap runs head group by head group and matches", async () => {
  // One kv head (two query heads) of one batch fits; the whole call does not.
  const part = { ...shape, batch: 1, headsQ: 2, headsKV: 1 };
  const cap = largestBinding(part, "f32", 2);
  assert.ok(largestBinding(shape, "f32", 2) > cap);
  const rt = await createRuntime({ autotune: false, maxBindingBytes: cap });
  try {
    const compiled = rt.compile(pattern, { shape, gatesPerPosition: true });
    assert.deepEqual(compiled.split?.part, part);
    const q = normalTensor(2 * 4 * 40 * 8, 1), k = normalTensor(2 * 2 * 40 * 8, 2);
    const v = normalTensor(2 * 2 * 40 * 8, 3);
    const gates = normalTensor(2 * 4 * 40 * 2, 4).map((x) => 1 / (1 + Math.exp(-x)));
    const got = await rt.run(compiled, { q, k, v, gates });
    const want = reference({
      pattern,
      shape,
      q,
      k,
      v,
      gates: { data: gates, shape: [2, 4, 40, 2] },
    });
    assert.equal(got.o.length, want.o.length);
    assert.equal(got.lse.length, want.lse.length);
    assert.ok(maxError(got.o, want.o) <= 1e-4, `O error ${maxError(got.o, want.o)}`);
    assert.ok(maxError(got.lse, want.lse) <= 1e-4, `LSE error ${maxError(got.lse, want.lse)}`);
    assert.ok(got.peakBufferBytes > 0 && got.peakBufferBytes < 4 * cap);
    await assert.rejects(
      () => rt.prepare(compiled, { q, k, v, gates }),
      (e: Error) => e instanceof DeviceError && /runs in 4 parts; use run\(\)/.test(e.message),
    );
  } finally {
    rt.destroy();
  }
});

Deno.test("a call that one head cannot hold is refused naming the limit", async () => {
  const rt = await createRuntime({ autotune: false, maxBindingBytes: 1000 });
  try {
    assert.throws(
      () => rt.compile(pattern, { shape }),
      (e: Error) =>
        e instanceof DeviceError &&
        /one batch of one key\/value head \(2 query heads\) at N=40, D=8 needs a \d+-byte buffer, over maxStorageBufferBindingSize \(1000\)/
          .test(e.message),
    );
  } finally {
    rt.destroy();
  }
});
