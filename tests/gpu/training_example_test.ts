/**
 * The training examples at a small size: gradient descent through the GPU's forward and
 * backward passes recovers hidden πAttention gates (examples/train_pi_gates.ts) and hidden
 * ALiBi slopes, a score modifier's learnable constants (examples/train_alibi_slopes.ts).
 */
import assert from "node:assert/strict";
import { trainGates } from "../../examples/train_pi_gates.ts";
import { trainSlopes } from "../../examples/train_alibi_slopes.ts";
import { createRuntime } from "../../runtime/runtime.ts";

const rt = await createRuntime({ autotune: false });
addEventListener("unload", () => rt.destroy());

Deno.test("training the πAttention gates through the backward pass converges", async () => {
  const r = await trainGates(rt, { seqLen: 48, headDim: 8, heads: 2, steps: 80, rate: 0.05 });
  const first = r.losses[0], last = r.losses[r.losses.length - 1];
  assert.ok(last < first / 1000, `loss ${first} -> ${last}`);
  r.gates.forEach((g, h) => {
    assert.ok(Math.abs(g - r.target[h]) < 0.01, `head ${h}: gate ${g}, hidden ${r.target[h]}`);
  });
});

Deno.test("training ALiBi's slopes through their gradients converges, compiling nothing new", async () => {
  const r = await trainSlopes(rt, { seqLen: 48, headDim: 8, heads: 2, steps: 100, rate: 0.03 });
  const first = r.losses[0], last = r.losses[r.losses.length - 1];
  assert.ok(last < first / 100, `loss ${first} -> ${last}`);
  r.slopes.forEach((x, h) => {
    assert.ok(Math.abs(x - r.target[h]) < 0.01, `head ${h}: slope ${x}, hidden ${r.target[h]}`);
  });
  assert.equal(r.laterPipelines, 0, "new slopes reuse the first step's pipelines");
});
