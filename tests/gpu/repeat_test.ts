/**
 * Benchmarks time `submit(repeat)`: the whole call encoded several times back to back. Every
 * repetition must recompute the same result, including kernels that merge into what earlier
 * components wrote and the gated blend, so the output after three repetitions still matches
 * the float64 reference.
 */
import assert from "node:assert/strict";
import { AttentionCall } from "../../runtime/attention_call.ts";
import { reference } from "../../runtime/reference/mod.ts";
import { createRuntime } from "../../runtime/runtime.ts";
import { normalTensor } from "../../runtime/seeded_random.ts";

const shape = { batch: 1, headsQ: 2, headsKV: 1, seqLen: 96, headDim: 16 };
const inputs = {
  q: normalTensor(2 * 96 * 16, 21),
  k: normalTensor(96 * 16, 22),
  v: normalTensor(96 * 16, 23),
};
const rt = await createRuntime({ autotune: false });
addEventListener("unload", () => rt.destroy());

const PATTERNS: [string, unknown][] = [
  ["union of ring and stride (merging components)", {
    kind: "union",
    of: [{ kind: "ring", radius: 5 }, { kind: "stride", period: 7 }],
  }],
  ["gated πAttention (branches, blend)", {
    kind: "gated",
    branches: [{ kind: "ring", radius: 5 }, { kind: "stride", period: 7 }],
    gates: [0.25, 0.75],
  }],
  ["global rows (a cleared branch)", { kind: "global", tokens: [0, 50] }],
];

for (const [name, pattern] of PATTERNS) {
  Deno.test(`submit(3) recomputes the same output: ${name}`, async () => {
    const compiled = rt.compile(pattern, { shape });
    const call = await AttentionCall.create(rt.device, rt.pipelines, compiled, inputs, false);
    try {
      await call.submit(3);
      const out = await call.read();
      const ref = reference({ pattern: pattern as never, shape, ...inputs });
      let worst = 0;
      for (let i = 0; i < ref.o.length; i++) worst = Math.max(worst, Math.abs(out.o[i] - ref.o[i]));
      assert.ok(worst <= 1e-4, `max |O - O_ref| = ${worst}`);
      for (let i = 0; i < ref.lse.length; i++) {
        const a = out.lse[i], e = ref.lse[i];
        assert.ok(a === e || Math.abs(a - e) <= 1e-4, `lse[${i}] = ${a}, reference ${e}`);
      }
    } finally {
      call.destroy();
    }
  });
}
