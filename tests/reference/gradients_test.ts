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
  // hashBucket codes and select blocks are fixed by the forward: every nudged call uses the
  // original ones.
  const { hashCodes, selectedBlocks } = reference({ pattern, shape, q, k, v });
  const loss = () => {
    const { o } = reference({
      pattern,
      shape,
      q,
      k,
      v,
      hashCodes,
      selectedBlocks,
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
    selectedBlocks,
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
  ["select (blocks fixed)", { kind: "select", blockSize: 2, blocks: 2 }, MHA],
  [
    "select ∩ causal, forced blocks (GQA, blocks fixed)",
    {
      kind: "intersect",
      of: [{ kind: "causal" }, { kind: "select", blockSize: 2, blocks: 3, initial: 1, local: 1 }],
    },
    GQA,
  ],
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
  ["linear, elu1, causal (GQA)", { kind: "linear", featureMap: "elu1", causal: true }, GQA],
  ["linear, favor", { kind: "linear", featureMap: "favor", features: 5, seed: 3 }, MQA],
  [
    "gated window and causal favor, runtime gates per position",
    {
      kind: "gated",
      branches: [
        { kind: "window", left: 2, right: 0 },
        { kind: "linear", featureMap: "favor", features: 6, seed: 1, causal: true },
      ],
    },
    GQA,
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

/** The loss `Σ dO ∘ O` as a function of one learnable constant's entries. */
function constantCheck(
  pattern: Pattern,
  shape: Shape,
  withConstant: (name: string, value: number | number[]) => Pattern,
): { worst: number; largest: number; names: string[] } {
  const { batch: B, headsQ: Hq, headsKV: Hkv, seqLen: N, headDim: D } = shape;
  const q = normalTensor(B * Hq * N * D, 11), k = normalTensor(B * Hkv * N * D, 12);
  const v = normalTensor(B * Hkv * N * D, 13), dO = normalTensor(B * Hq * N * D, 14);
  const branches = pattern.kind === "gated" ? pattern.branches.length : 0;
  const gates = branches
    ? {
      data: Array.from({ length: B * Hq * branches }, (_, i) => 0.3 + 0.1 * (i % 3)),
      shape: [B, Hq, branches],
    }
    : undefined;
  const loss = (p: Pattern) => {
    const { o } = reference({ pattern: p, shape, q, k, v, gates });
    let sum = 0;
    for (let i = 0; i < o.length; i++) sum += dO[i] * o[i];
    return sum;
  };
  const { dConstants } = referenceGradients({ pattern, shape, q, k, v, dO, gates });
  assert.ok(dConstants, "learnable constants have gradients");
  const scored = (pattern.kind === "gated" ? pattern.branches : [pattern])
    .filter((b) => b.kind === "scored");
  let worst = 0, largest = 0;
  for (const b of scored) {
    for (const name of b.score.learnable ?? []) {
      const value = b.score.constants![name];
      const grad: number | Float64Array = dConstants[name];
      const entries = Array.isArray(value) ? value.length : 1;
      assert.equal(
        typeof grad === "number",
        !Array.isArray(value),
        `${name}: the constant's shape`,
      );
      for (let i = 0; i < entries; i++) {
        const nudged = (delta: number) =>
          Array.isArray(value) ? value.map((x, j) => j === i ? x + delta : x) : value + delta;
        const fd =
          (loss(withConstant(name, nudged(STEP))) - loss(withConstant(name, nudged(-STEP)))) /
          (2 * STEP);
        const analytic = typeof grad === "number" ? grad : grad[i];
        worst = Math.max(worst, Math.abs(fd - analytic));
        largest = Math.max(largest, Math.abs(analytic));
      }
    }
  }
  return { worst, largest, names: Object.keys(dConstants) };
}

/** A scored pattern (or a gated one's first branch) with its constants replaced. */
function rebuild(pattern: Pattern, name: string, value: number | number[]): Pattern {
  const swap = (p: Pattern): Pattern =>
    p.kind === "scored" && p.score.learnable?.includes(name)
      ? { ...p, score: { ...p.score, constants: { ...p.score.constants, [name]: value } } }
      : p;
  return pattern.kind === "gated"
    ? { ...pattern, branches: pattern.branches.map(swap) }
    : swap(pattern);
}

const CONSTANT_CASES: [string, Pattern, Shape, string[]][] = [
  [
    "ALiBi slopes per head (GQA)",
    {
      kind: "scored",
      pattern: { kind: "causal" },
      score: {
        expr: "(s, q, k, h) => s - slopes[h] * (q - k)",
        constants: { slopes: [0.5, 0.125] },
        learnable: ["slopes"],
      },
    },
    { batch: 1, headsQ: 2, headsKV: 1, seqLen: 9, headDim: 3 },
    ["slopes"],
  ],
  [
    "a learnable number read twice, beside a learnable array (soft-capping and a head bias)",
    {
      kind: "scored",
      pattern: { kind: "window", left: 3, right: 2 },
      score: {
        expr: "(s, q, k, h) => c * Math.tanh(s / c) + bias[h] * c",
        constants: { c: 2.5, bias: [0.3, -0.2], unused: 4 },
        learnable: ["c", "bias"],
      },
    },
    { batch: 2, headsQ: 2, headsKV: 2, seqLen: 7, headDim: 2 },
    ["c", "bias"],
  ],
  [
    "gated: a relative-position bias on the ring branch, runtime gates",
    {
      kind: "gated",
      branches: [
        {
          kind: "scored",
          pattern: { kind: "ring", radius: 2 },
          score: {
            expr:
              "(s, q, k) => { const d = k - q; return s + rel[Math.min(Math.max(d + 2, 0), 4)]; }",
            constants: { rel: [0.1, -0.3, 0.2, 0.4, -0.1] },
            learnable: ["rel"],
          },
        },
        { kind: "stride", period: 3 },
      ],
    },
    { batch: 1, headsQ: 2, headsKV: 1, seqLen: 8, headDim: 2 },
    ["rel"],
  ],
];

for (const [name, pattern, shape, names] of CONSTANT_CASES) {
  Deno.test(`learnable constants' gradients match finite differences: ${name}`, () => {
    const r = constantCheck(pattern, shape, (n, value) => rebuild(pattern, n, value));
    assert.deepEqual(r.names, names);
    assert.ok(r.largest > 1e-3, `the gradients are not all zero (largest ${r.largest})`);
    assert.ok(r.worst <= 1e-6 * r.largest, `max |analytic - finite difference| ${r.worst}`);
  });
}

Deno.test("learnable constants are checked: known, listed once, one modifier per name", () => {
  const scoredBy = (learnable: string[]): Pattern => ({
    kind: "scored",
    pattern: { kind: "causal" },
    score: { expr: "s * c", constants: { c: 2 }, learnable },
  });
  const x = [1, 2, 3, 4];
  const shape = { batch: 1, headsQ: 1, headsKV: 1, seqLen: 2, headDim: 2 };
  const run = (pattern: Pattern) => reference({ pattern, shape, q: x, k: x, v: x });
  assert.throws(() => run(scoredBy(["d"])), /learnable "d" is not one of the constants \(c\)/);
  assert.throws(() => run(scoredBy(["c", "c"])), /learnable "c" is listed twice/);
  assert.throws(
    () => run({ kind: "gated", branches: [scoredBy(["c"]), scoredBy(["c"])] }),
    /learnable constant "c" is learnt by two score modifiers/,
  );
  // Not learnable: no dConstants at all.
  const g = referenceGradients({ pattern: scoredBy([]), shape, q: x, k: x, v: x, dO: x });
  assert.equal(g.dConstants, undefined);
});
