/** Sampled rows of the reference equal the same rows of the full reference (gated, GQA). */
import assert from "node:assert/strict";
import type { Pattern } from "../../dsl/schema.ts";
import { reference, referenceRows } from "../../runtime/reference/mod.ts";
import { normalTensor } from "../../runtime/seeded_random.ts";

Deno.test("referenceRows matches the full reference row for row", () => {
  const shape = { batch: 2, headsQ: 4, headsKV: 2, seqLen: 37, headDim: 4 };
  const pattern: Pattern = {
    kind: "gated",
    branches: [{ kind: "ring", radius: 4 }, { kind: "stride", period: 5 }],
    gates: [0.3, 0.7],
  };
  const q = normalTensor(2 * 4 * 37 * 4, 1), k = normalTensor(2 * 2 * 37 * 4, 2);
  const v = normalTensor(2 * 2 * 37 * 4, 3);
  const full = reference({ pattern, shape, q, k, v });
  const rows = [{ b: 0, h: 0, q: 0 }, { b: 1, h: 3, q: 36 }, { b: 1, h: 2, q: 17 }];
  for (const row of referenceRows({ pattern, shape, q, k, v }, rows)) {
    const at = (row.b * 4 + row.h) * 37 + row.q;
    assert.deepEqual(Array.from(row.o), Array.from(full.o.subarray(at * 4, at * 4 + 4)));
    assert.deepEqual(row.lse, [0, 1].map((i) => full.lse[i * 2 * 4 * 37 + at]));
  }
  assert.throws(
    () => referenceRows({ pattern, shape, q, k, v }, [{ b: 2, h: 0, q: 0 }]),
    /Bad row/,
  );
});
