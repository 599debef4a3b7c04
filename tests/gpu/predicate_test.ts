/**
 * TypeScript predicates on the GPU agree with the reference's interpreter pair for pair: random
 * predicates full of negative operands (`%`, `Math.floor(a / b)` of `k - q`, ...) that read
 * positions, N, the head and the batch run through the kernels with Q = 0, so every allowed key
 * weighs the same and LSE is `log |A(q)|`: one pair allowed on one side only moves LSE by at
 * least `log(54/53)`, far above the tolerance.
 */
import assert from "node:assert/strict";
import { reference } from "../../runtime/reference/mod.ts";
import { createRuntime } from "../../runtime/runtime.ts";
import { mulberry32, normalTensor } from "../../runtime/seeded_random.ts";
import { randomPredicate } from "../compiler/_random_predicate.ts";

const shape = { batch: 2, headsQ: 2, headsKV: 1, seqLen: 53, headDim: 16 };
const q = new Float32Array(shape.batch * shape.headsQ * shape.seqLen * shape.headDim);
const k = normalTensor(shape.batch * shape.seqLen * shape.headDim, 31);
const v = normalTensor(shape.batch * shape.seqLen * shape.headDim, 32);

/** Largest |a - b|; infinities (empty rows) must agree exactly. */
function maxAbsError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  assert.equal(actual.length, expected.length);
  let worst = 0;
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i], e = expected[i];
    if (!Number.isFinite(a) || !Number.isFinite(e)) {
      if (a !== e) return Infinity;
    } else worst = Math.max(worst, Math.abs(a - e));
  }
  return worst;
}

const rt = await createRuntime();
addEventListener("unload", () => rt.destroy());

Deno.test("random predicates: kernel allowed sets equal the interpreter's (Q = 0)", async (t) => {
  const rand = mulberry32(4242);
  // Negative dividends and divisors on purpose, then random ones.
  const fixed = [
    "Math.floor((k - q) / 3) % 4 == 1",
    "(k - q) % -5 == 2 || Math.floor((q - 2 * k) / -7) > -3",
    "(q, k, n, h, b) => { const d = k - q - h * 3 + b; return d % 3 == 0 || d < -40; }",
  ];
  let run = 0;
  while (run < 9) {
    const expr = fixed[run] ?? randomPredicate(rand, { headBatch: run % 2 === 1 });
    const pattern = { kind: "predicate" as const, expr };
    const expected = reference({ pattern, shape, q, k, v });
    // Only predicates that allow some pairs and refuse others say anything.
    const empty = expected.lse.filter((x) => x === -Infinity).length;
    const full = expected.lse.filter((x) => Math.abs(x - Math.log(shape.seqLen)) < 1e-9).length;
    if (empty === expected.lse.length || full === expected.lse.length) continue;
    run++;
    await t.step(expr, async () => {
      const out = await rt.run(rt.compile(pattern, { shape }), { q, k, v });
      assert.ok(maxAbsError(out.lse, expected.lse) <= 1e-4, `${expr}: LSE (|A(q)|) differs`);
      assert.ok(maxAbsError(out.o, expected.o) <= 1e-4, `${expr}: O differs`);
    });
  }
});
