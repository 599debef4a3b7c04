/**
 * Numerical safety on the GPU: scores near ±1e4 stay finite and match the reference (online
 * softmax subtracts the running max before exp2), and two runs of one call on one adapter give
 * bitwise-identical O and LSE (no atomics, a fixed reduction order).
 */
import assert from "node:assert/strict";
import type { Pattern } from "../../dsl/schema.ts";
import { reference } from "../../runtime/reference/mod.ts";
import { createRuntime } from "../../runtime/runtime.ts";
import { normalTensor } from "../../runtime/seeded_random.ts";

const shape = { batch: 1, headsQ: 2, headsKV: 1, seqLen: 70, headDim: 16 };
const pattern: Pattern = {
  kind: "union",
  of: [{ kind: "window", left: 5, right: 5 }, { kind: "stride", period: 9 }],
};

Deno.test("scores near ±1e4 stay finite and match the float64 reference", async () => {
  const rt = await createRuntime({ autotune: false });
  try {
    // |q·k| * scale reaches about 1e4: q and k of norm ~200.
    const big = (n: number, seed: number) => normalTensor(n, seed).map((x) => 50 * x);
    const q = big(2 * 70 * 16, 11), k = big(70 * 16, 12), v = normalTensor(70 * 16, 13);
    const want = reference({ pattern, shape, q, k, v });
    let maxScore = 0;
    for (let i = 0; i < 70; i++) {
      for (let j = 0; j < 70; j++) {
        let s = 0;
        for (let d = 0; d < 16; d++) s += q[i * 16 + d] * k[j * 16 + d];
        maxScore = Math.max(maxScore, Math.abs(s / 4));
      }
    }
    assert.ok(maxScore > 5e3, `scores reach ${maxScore}`);
    const got = await rt.run(rt.compile(pattern, { shape }), { q, k, v });
    assert.ok(got.o.every(Number.isFinite) && got.lse.every(Number.isFinite));
    // Softmax at this scale is nearly one-hot; O matches to float32 rounding of the inputs.
    let errO = 0, errLse = 0;
    for (let i = 0; i < got.o.length; i++) errO = Math.max(errO, Math.abs(got.o[i] - want.o[i]));
    for (let i = 0; i < got.lse.length; i++) {
      errLse = Math.max(errLse, Math.abs(got.lse[i] - want.lse[i]) / Math.abs(want.lse[i]));
    }
    assert.ok(errO <= 1e-2, `O error ${errO}`);
    assert.ok(errLse <= 1e-5, `LSE relative error ${errLse}`);
  } finally {
    rt.destroy();
  }
});

Deno.test("repeated runs on one adapter are bitwise identical", async () => {
  const rt = await createRuntime({ autotune: false });
  try {
    const q = normalTensor(2 * 70 * 16, 1), k = normalTensor(70 * 16, 2);
    const v = normalTensor(70 * 16, 3);
    const call = await rt.prepare(rt.compile(pattern, { shape }), { q, k, v });
    await call.submit();
    const first = await call.read();
    await call.submit(3);
    const again = await call.read();
    call.destroy();
    assert.deepEqual(new Uint32Array(again.o.buffer), new Uint32Array(first.o.buffer));
    assert.deepEqual(new Uint32Array(again.lse.buffer), new Uint32Array(first.lse.buffer));
  } finally {
    rt.destroy();
  }
});
