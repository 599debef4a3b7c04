/**
 * CI's share of the fuzzer: 500 random cases on this machine's adapter (llvmpipe in CI), every
 * one within tolerance of the float64 reference. A small pool of skeletons and shapes keeps the
 * number of distinct kernels, and so llvmpipe's compile time, bounded: this seed's pool compiles
 * 78 kernels, 69 s from a cold shader cache on 2 cores (seeds vary from 78 to 589 kernels: a
 * deep skeleton expands into many components). `deno task fuzz` on a GPU runs the wide version.
 */
import assert from "node:assert/strict";
import { createRuntime } from "../../runtime/runtime.ts";
import { fuzz, SEQ_LENS } from "./fuzz.ts";

Deno.test("fuzz: 500 random cases match the float64 reference", async () => {
  const rt = await createRuntime();
  try {
    const summary = await fuzz(rt, {
      cases: 500,
      seed: 14,
      skeletons: 6,
      shapes: 2,
      seqLens: SEQ_LENS,
      headDims: [4, 8],
    });
    const failures = summary.mismatches.map((m) =>
      `${JSON.stringify(m.shrunk)}: ${m.result.detail}`
    );
    assert.deepEqual(failures, []);
    assert.equal(summary.ok + summary.refused, 500);
    // The pool must exercise every leaf kind and every combinator.
    const kinds = ["dense", "causal", "window", "ring", "stride", "global", "random", "lowRank"];
    for (const kind of [...kinds, "union", "intersect", "gated"]) {
      assert.ok(summary.kinds.includes(kind), `no ${kind} in ${summary.kinds}`);
    }
  } finally {
    rt.destroy();
  }
});
