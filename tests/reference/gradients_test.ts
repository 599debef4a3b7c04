/**
 * The reference's analytic gradients against central finite differences of the reference
 * itself, for every kind and composition: for the loss `Σ dO ∘ O`, each element of q, k, v and
 * runtime gates is nudged both ways, and the difference quotient must agree with the analytic
 * gradient to 1e-6 of the largest gradient magnitude.
 */
import assert from "node:assert/strict";
import type { Pattern } from "../../dsl/schema.ts";
import { reference, referenceGradients } from "../../runtime/reference/mod.ts";
import { normalTensor } from "../../runtime/seeded_random.ts";

type Shape = { batch: number; headsQ: number; headsKV: number; seqLen: number; headDim: number };

const STEP = 1e-5;

/** Largest |analytic - finite difference| over every input, relative to the largest gradient. */
function gradientCheck(
  pattern: Pattern,
  shape: Shape,
  gates?: { perPosition: boolean },
): { worst: number; largest: number } {
  const { batch: B, headsQ: Hq, headsKV: Hkv, seqLen: N, headDim: D } = shape;
  const q = Float64Array.from(normalTensor(B * Hq * N * D, 1));
  const k = Float64Array.from(normalTensor(B * Hkv * N * D, 2));
  const v = Float64Array.from(normalTensor(B * Hkv * N * D, 3));
  const dO = Float64Array.from(normalTensor(B * Hq * N * D, 4));
  const branches = pattern.kind === "gated" ? pattern.branches.length : 0;
  const gateShape = gates?.perPosition ? [B, Hq, N, branches] : [B, Hq, branches];
  const g = gates
    ? Float64Array.from(normalTensor(gateShape.reduce((a, x) => a * x), 5), (x) => 0.5 + 0.2 * x)
    : undefined;
  // hashBucket codes are fixed by the forward: every nudged call uses the original ones.
  const { hashCodes } = reference({ pattern, shape, q, k, v });
  const loss = () => {
    const { o } = reference({
      pattern,
      shape,
      q,
      k,
      v,
      hashCodes,
      gates: g && { data: g, shape: gateShape },
    });
    let sum = 0;
    for (let i = 0; i < o.length; i++) sum += dO[i] * o[i];
    return sum;
  };
  const analytic = referenceGradients({
    pattern,
    shape,
    q,
    k,
    v,
    dO,
    hashCodes,
    gates: g && { data: g, shape: gateShape },
  });
  assert.equal(analytic.dgates !== undefined, g !== undefined, "dgates exactly for runtime gates");
  const pairs: [Float64Array, Float64Array][] = [
    [q, analytic.dq],
    [k, analytic.dk],
    [v, analytic.dv],
    ...(g ? [[g, analytic.dgates!] as [Float64Array, Float64Array]] : []),
  ];
  let worst = 0, largest = 0;
  for (const [x, grad] of pairs) {
    for (let i = 0; i < x.length; i++) {
      const saved = x[i];
      x[i] = saved + STEP;
      const up = loss();
      x[i] = saved - STEP;
      const down = loss();
      x[i] = saved;
      worst = Math.max(worst, Math.abs((up - down) / (2 * STEP) - grad[i]));
      largest = Math.max(largest, Math.abs(grad[i]));
    }
  }
  return { worst, largest };
}

const MHA: Shape = { batch: 1, headsQ: 2, headsKV: 2, seqLen: 9, headDim: 4 };
const GQA: Shape = { batch: 2, headsQ: 2, headsKV: 1, seqLen: 9, headDim: 4 };
const MQA: Shape = { batch: 1, headsQ: 3, headsKV: 1, seqLen: 8, headDim: 3 };

const CASES: [string, Pattern, Shape, { perPosition: boolean }?][] = [
  ["dense", { kind: "dense" }, MHA],
  ["causal (GQA, two batches)", { kind: "causal" }, GQA],
  ["window", { kind: "window", left: 2, right: 1 }, MHA],
  ["ring (wraps)", { kind: "ring", radius: 2 }, MQA],
  ["stride", { kind: "stride", period: 3 }, GQA],
  ["global", { kind: "global", tokens: [0, 4] }, MHA],
  ["random blocks", { kind: "random", blocks: 1, blockSize: 3, seed: 5 }, MHA],
  [
    "window ∪ lowRank (through the pooling)",
    { kind: "union", of: [{ kind: "window", left: 1, right: 1 }, { kind: "lowRank", rank: 3 }] },
    GQA,
  ],
  [
    "lowRank ∩ causal",
    { kind: "intersect", of: [{ kind: "lowRank", rank: 4 }, { kind: "causal" }] },
    MHA,
  ],
  ["hashBucket (codes fixed)", { kind: "hashBucket", buckets: 4, rounds: 2, seed: 1 }, GQA],
  [
    "hashBucket, uniform weights",
    { kind: "hashBucket", buckets: 2, rounds: 1, seed: 3, weights: "uniform" },
    MHA,
  ],
  ["predicate", { kind: "predicate", expr: "(q + 2 * k) % 3 != 1" }, MQA],
  [
    "scored (derivative of the checked program)",
    {
      kind: "scored",
      pattern: { kind: "causal" },
      score: {
        expr: "s * (1 + 0.3 * Math.tanh(s)) - 0.05 * Math.abs(q - k) + (k % 2 == 0 ? s : 0)",
      },
    },
    GQA,
  ],
  [
    "ring ∪ stride",
    { kind: "union", of: [{ kind: "ring", radius: 1 }, { kind: "stride", period: 4 }] },
    MHA,
  ],
  [
    "window ∩ stride",
    {
      kind: "intersect",
      of: [{ kind: "window", left: 4, right: 4 }, { kind: "stride", period: 2 }],
    },
    GQA,
  ],
  [
    "gated, JSON gates",
    {
      kind: "gated",
      branches: [{ kind: "ring", radius: 1 }, { kind: "stride", period: 3 }],
      gates: [0.7, 0.3],
    },
    MHA,
  ],
  [
    "gated, runtime gates per head",
    { kind: "gated", branches: [{ kind: "window", left: 1, right: 0 }, { kind: "dense" }] },
    GQA,
    { perPosition: false },
  ],
  [
    "gated, runtime gates per position, a scored branch",
    {
      kind: "gated",
      branches: [
        { kind: "causal" },
        { kind: "scored", pattern: { kind: "dense" }, score: { expr: "-Math.abs(s)" } },
      ],
    },
    MQA,
    { perPosition: true },
  ],
];

for (const [name, pattern, shape, gates] of CASES) {
  Deno.test(`reference gradients match finite differences: ${name}`, () => {
    const { worst, largest } = gradientCheck(pattern, shape, gates);
    assert.ok(largest > 1e-3, `the gradients are not all zero (largest ${largest})`);
    assert.ok(worst <= 1e-6 * largest, `max |analytic - finite difference| ${worst}`);
  });
}

Deno.test("a row with no allowed key has no gradient, and dO of the wrong size is refused", () => {
  const shape = { batch: 1, headsQ: 1, headsKV: 1, seqLen: 4, headDim: 2 };
  const x = [1, 2, 3, 4, 5, 6, 7, 8];
  // Only rows 0 and 1 see keys (global rows).
  const pattern: Pattern = {
    kind: "intersect",
    of: [{ kind: "predicate", expr: "q < 2" }, { kind: "dense" }],
  };
  const g = referenceGradients({ pattern, shape, q: x, k: x, v: x, dO: x });
  assert.deepEqual([...g.dq.slice(4)], [0, 0, 0, 0]);
  assert.throws(
    () => referenceGradients({ pattern, shape, q: x, k: x, v: x, dO: [1, 2] }),
    /dO has 2 elements, expected B\*Hq\*N\*D = 8/,
  );
});
