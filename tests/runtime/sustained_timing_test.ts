import assert from "node:assert/strict";
import { sustainedRepeat, warmUp, WARMUP_TARGET_MS } from "../../runtime/sustained_timing.ts";

/** A call that takes `ms` of GPU time per repetition and records how it was submitted. */
function fakeCall(ms: number | undefined) {
  const repeats: number[] = [];
  return {
    repeats,
    submit: (repeat = 1) => {
      repeats.push(repeat);
      return Promise.resolve(ms);
    },
  };
}

Deno.test("warmUp keeps submitting until the GPU has worked the warm-up target", async () => {
  const call = fakeCall(5);
  const { repeat } = await warmUp(call, 2);
  assert.equal(repeat, sustainedRepeat(5));
  const work = call.repeats.reduce((sum, r) => sum + 5 * r, 0);
  assert.ok(work >= WARMUP_TARGET_MS, `warm-up work ${work} ms`);
  assert.deepEqual(call.repeats.slice(0, 2), [1, 8]);
});

Deno.test("warmUp repeats a short call up to the cap it is given", async () => {
  const short = fakeCall(0.05);
  assert.equal((await warmUp(short, 1)).repeat, 64);
  const capped = fakeCall(0.05);
  assert.equal((await warmUp(capped, 1, true, 4096)).repeat, 800); // 40 ms of 0.05 ms calls
  const work = capped.repeats.reduce((sum, r) => sum + 0.05 * r, 0);
  assert.ok(work >= WARMUP_TARGET_MS, `warm-up work ${work} ms`);
});

Deno.test("warmUp without GPU times, or not sustained, makes only the minimum submissions", async () => {
  const untimed = fakeCall(undefined);
  assert.equal((await warmUp(untimed, 3)).repeat, 1);
  assert.deepEqual(untimed.repeats, [1, 1, 1]);
  const software = fakeCall(5);
  assert.equal((await warmUp(software, 2, false)).repeat, 1);
  assert.deepEqual(software.repeats, [1, 1]);
});
