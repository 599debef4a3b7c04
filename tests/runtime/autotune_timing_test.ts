/**
 * How the autotuner times one candidate: the warm-up is dropped, GPU milliseconds are used as
 * given, the wall clock stands in when there are none, and a candidate clearly slower than the
 * best so far stops early. No adapter needed: submissions are fakes.
 */
import assert from "node:assert/strict";
import { timeSubmissions } from "../../runtime/autotune.ts";

/** A fake submission returning the given GPU times in turn, counting calls. */
function fake(times: (number | undefined)[]) {
  const calls = { n: 0 };
  const submit = () => Promise.resolve(times[calls.n++]);
  return { submit, calls };
}

Deno.test("the first candidate: one warm-up dropped, three timed samples", async () => {
  const { submit, calls } = fake([50, 2, 3, 1]);
  assert.deepEqual(await timeSubmissions(submit, Infinity), [2, 3, 1]);
  assert.equal(calls.n, 4);
});

Deno.test("a candidate within 1.5x of the best gets all its samples", async () => {
  const { submit, calls } = fake([50, 4.4, 2.9, 3.1]);
  assert.deepEqual(await timeSubmissions(submit, 3), [4.4, 2.9, 3.1]);
  assert.equal(calls.n, 4);
});

Deno.test("a candidate clearly slower than the best stops after one sample", async () => {
  const { submit, calls } = fake([50, 4.6, 1, 1]);
  assert.deepEqual(await timeSubmissions(submit, 3), [4.6]);
  assert.equal(calls.n, 2);
});

Deno.test("without GPU times the wall clock around each submission counts", async () => {
  const submit = () =>
    new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 20));
  const samples = await timeSubmissions(submit, Infinity);
  assert.equal(samples.length, 3);
  for (const s of samples) assert.ok(s >= 15 && s < 2000, `${s}`);
});
