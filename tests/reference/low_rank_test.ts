/**
 * lowRank in the reference, checked by hand (DESIGN §2): landmark geometry, pooled keys joining
 * a union's softmax, the causal rule on a landmark's last row, and the refusals.
 */
import assert from "node:assert/strict";
import { PatternError, PlanError } from "../../core/errors.ts";
import { landmarkGeometry } from "../../dsl/low_rank.ts";
import { compile } from "../../compiler/mod.ts";
import { reference } from "../../runtime/reference/mod.ts";
import type { Pattern } from "../../dsl/schema.ts";

Deno.test("landmark geometry: L = ceil(N / m), empty segments dropped", () => {
  assert.deepEqual(landmarkGeometry(10, 4), { segment: 3, count: 4 });
  assert.deepEqual(landmarkGeometry(10, 6), { segment: 2, count: 5 });
  assert.deepEqual(landmarkGeometry(10, 10), { segment: 1, count: 10 });
  assert.deepEqual(landmarkGeometry(10, 99), { segment: 1, count: 10 });
  assert.deepEqual(landmarkGeometry(1, 1), { segment: 1, count: 1 });
});

// N = 4, D = 1, rank 2: segments {0, 1} and {2, 3}.
const shape = { batch: 1, headsQ: 1, headsKV: 1, seqLen: 4, headDim: 1 };
const q = [0, 0, 0, 1], k = [1, 3, 0, 2], v = [2, 4, 6, 10];

Deno.test("lowRank alone: each query averages the landmark values by softmax of pooled keys", () => {
  const { o, lse } = reference({ pattern: { kind: "lowRank", rank: 2 }, shape, q, k, v });
  // Landmarks: K (2, 1), V (3, 8). q = 0 weighs them equally: O = 5.5, lse = log 2.
  assert.ok(Math.abs(o[0] - 5.5) < 1e-12);
  assert.ok(Math.abs(lse[0] - Math.LN2) < 1e-12);
  // q = 1: scores 2 and 1; weights e^2 and e^1.
  const w = [Math.exp(2), Math.exp(1)];
  assert.ok(Math.abs(o[3] - (3 * w[0] + 8 * w[1]) / (w[0] + w[1])) < 1e-12);
  assert.ok(Math.abs(lse[3] - Math.log(w[0] + w[1])) < 1e-12);
});

Deno.test("in a union the landmarks join the token keys' softmax; causal waits for the segment", () => {
  const pattern: Pattern = {
    kind: "intersect",
    of: [{
      kind: "union",
      of: [{ kind: "window", left: 0, right: 0 }, { kind: "lowRank", rank: 2 }],
    }, {
      kind: "causal",
    }],
  };
  const { o, lse } = reference({ pattern, shape, q, k, v });
  // q = 0: its own key (score 0, value 2) only; landmark 0 ends at row 1 > 0.
  assert.equal(o[0], 2);
  assert.equal(lse[0], 0);
  // q = 1: own key (score 0, v 4) and landmark 0 (score 0, v 3): mean 3.5.
  assert.ok(Math.abs(o[1] - 3.5) < 1e-12);
  assert.ok(Math.abs(lse[1] - Math.LN2) < 1e-12);
  // q = 3: own key (score 2, v 10), landmark 0 (2, v 3), landmark 1 (1, v 8).
  const w = [Math.exp(2), Math.exp(2), Math.exp(1)];
  const want = (10 * w[0] + 3 * w[1] + 8 * w[2]) / (w[0] + w[1] + w[2]);
  assert.ok(Math.abs(o[3] - want) < 1e-12);
});

Deno.test("lowRank refusals name the field", () => {
  const kernelShape = { ...shape, headDim: 4 };
  assert.throws(
    () => compile({ kind: "lowRank", rank: 0 }, { shape: kernelShape }),
    (e: Error) =>
      e instanceof PatternError &&
      /pattern\.rank: lowRank rank must be an integer in \[1, /.test(e.message),
  );
  const windowed = {
    kind: "intersect",
    of: [{ kind: "window", left: 1, right: 1 }, { kind: "lowRank", rank: 2 }],
  };
  for (
    const run of [
      () => compile(windowed, { shape: kernelShape }),
      () => reference({ pattern: windowed as never, shape, q, k, v }),
    ]
  ) {
    assert.throws(
      run,
      (e: Error) =>
        e instanceof PlanError &&
        /pattern\.of\[0\]: window is intersected with pattern\.of\[1\] \(lowRank\)/.test(e.message),
    );
  }
  const twoRanks = {
    kind: "intersect",
    of: [{ kind: "lowRank", rank: 2 }, { kind: "lowRank", rank: 3 }],
  };
  assert.throws(() => compile(twoRanks, { shape: kernelShape }), PlanError);
});
