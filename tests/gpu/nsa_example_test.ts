/**
 * examples/nsa.ts at its small size: NSA's three gated branches (compressed, selected, sliding
 * window) under GQA; the GPU's kept blocks agree with the float64 importances and O and LSE
 * match the reference on them within 1e-4; the forced blocks are always kept.
 */
import assert from "node:assert/strict";
import { createRuntime } from "../../runtime/runtime.ts";
import { runNsa, SMALL_SIZES } from "../../examples/nsa.ts";

Deno.test("examples/nsa.ts: the kept blocks and O match the reference", async () => {
  const rt = await createRuntime({ autotune: false });
  try {
    const shape = { batch: 1, headsQ: 4, headsKV: 2, seqLen: 256, headDim: 32 };
    const run = await runNsa(rt, shape, SMALL_SIZES);
    assert.equal(run.disagreements, 0);
    assert.ok(run.errorO <= 1e-4, `max |O - ref| ${run.errorO}`);
    assert.ok(run.errorLse <= 1e-4, `LSE ${run.errorLse}`);
    const { blocks } = run.kept, s = SMALL_SIZES.blockSize;
    for (let row = 0; row < shape.headsKV * shape.seqLen; row++) {
      const kept = [...run.kept.chosen.subarray(row * blocks, (row + 1) * blocks)];
      const own = Math.floor((row % shape.seqLen) / s);
      assert.ok(kept.includes(0) && kept.includes(own), `row ${row} keeps ${kept}`);
    }
  } finally {
    rt.destroy();
  }
});
