/**
 * CI's share of the fuzzer: 500 random cases on this machine's adapter (llvmpipe in CI), every
 * one within tolerance of the float64 reference. A small pool of skeletons and shapes keeps the
 * number of distinct kernels, and so llvmpipe's compile time, bounded: this seed's pool compiles
 * 363 kernels and covers every kind, hashBucket included (the fewest of seeds 1-400 that cover
 * all 14; pools vary from about 150 to 2000 kernels: a deep skeleton expands into many
 * components, predicates bake their constants in, and each hashBucket code set adds 4 pre-passes). `deno task fuzz` on a GPU runs the wide version.
 */
import assert from "node:assert/strict";
import { createRuntime } from "../../runtime/runtime.ts";
import { fuzz, SEQ_LENS } from "./fuzz.ts";
import { KINDS } from "../../dsl/schema.ts";

Deno.test("fuzz: 500 random cases match the float64 reference", async () => {
  const rt = await createRuntime();
  try {
    const summary = await fuzz(rt, {
      cases: 500,
      seed: 235,
      skeletons: 7,
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
    for (const kind of KINDS) {
      assert.ok(summary.kinds.includes(kind), `no ${kind} in ${summary.kinds}`);
    }
  } finally {
    rt.destroy();
  }
});

Deno.test("fuzz: 60 cases with a value head dim of its own match, gradients too", async () => {
  const rt = await createRuntime();
  try {
    // Dv of 4 and 12 against D = 8: MLA's shapes in small (this seed's shapes all have one
    // key/value head). Small dims and a pool of about 100 kernels keep llvmpipe near 30 s.
    const summary = await fuzz(rt, {
      cases: 60,
      seed: 21,
      skeletons: 2,
      shapes: 2,
      seqLens: SEQ_LENS,
      headDims: [8],
      valueDims: [4, 12],
      grad: true,
    });
    const failures = summary.mismatches.map((m) =>
      `${JSON.stringify(m.shrunk)}: ${m.result.detail}`
    );
    assert.deepEqual(failures, []);
    assert.equal(summary.ok + summary.refused, 60);
    assert.ok(summary.ownValueDim > 0, "no case had valueDim != headDim");
  } finally {
    rt.destroy();
  }
});
