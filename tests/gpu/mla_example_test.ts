/**
 * examples/mla.ts at a small size: multi-head latent attention's shapes (one key/value head,
 * D = 192, Dv = 128, V the latent half of K) through a prompt and a decoding step under a causal
 * and a sparse pattern, each call within 1e-4 of the float64 reference.
 */
import assert from "node:assert/strict";
import { createRuntime } from "../../runtime/runtime.ts";
import { LATENT, mlaCache, PATTERNS, ROPE, runMla } from "../../examples/mla.ts";

Deno.test("MLA's cache: K is each position's latent then its rotary key, V the latent", () => {
  const latent = Float32Array.from({ length: 2 * LATENT }, (_, i) => i);
  const rope = Float32Array.from({ length: 2 * ROPE }, (_, i) => -1 - i);
  const { k, v } = mlaCache(latent, rope);
  assert.equal(k.length, 2 * (LATENT + ROPE));
  assert.deepEqual(k.subarray(LATENT + ROPE, LATENT + ROPE + LATENT), latent.subarray(LATENT));
  assert.deepEqual(k.subarray(2 * LATENT + ROPE), rope.subarray(ROPE));
  assert.deepEqual(v, latent);
});

Deno.test("examples/mla.ts: a prompt and a decoding step match the reference", async () => {
  const rt = await createRuntime({ autotune: false });
  try {
    const calls = await runMla(rt, { prompt: 12, steps: 1 });
    assert.equal(calls.length, 2 * PATTERNS.length);
    for (const c of calls) {
      assert.ok(c.error <= 1e-4, `${c.pattern}, ${c.queries} of ${c.keys} keys: ${c.error}`);
    }
    assert.deepEqual(calls.map((c) => [c.queries, c.keys]), [[12, 12], [1, 13], [12, 12], [1, 13]]);
  } finally {
    rt.destroy();
  }
});
