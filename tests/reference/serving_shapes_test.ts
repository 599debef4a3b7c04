/**
 * The reference on DESIGN §1's serving shapes, against itself on the plain shapes it was built
 * for: queries against a longer key sequence are the matching rows of a full call (at the default
 * bottom-right offset and at explicit ones), a value head dim of its own splits into plain
 * calls by columns, and packed sequences are their sequences run one by one; gradients agree
 * with central finite differences; bad offsets and lengths are refused by name.
 */
import assert from "node:assert/strict";
import type { Pattern } from "../../dsl/schema.ts";
import { reference, referenceGradients } from "../../runtime/reference/mod.ts";
import type { ReferenceInput } from "../../runtime/reference/reference.ts";
import { type AttentionShape, sequenceSizes } from "../../core/shape.ts";
import { normalTensor } from "../../runtime/seeded_random.ts";

const PATTERNS: [string, Pattern][] = [
  ["causal", { kind: "causal" }],
  ["ring", { kind: "ring", radius: 3 }],
  ["stride", { kind: "stride", period: 4 }],
  ["window ∪ random", {
    kind: "union",
    of: [{ kind: "window", left: 2, right: 1 }, {
      kind: "random",
      blocks: 1,
      blockSize: 4,
      seed: 2,
    }],
  }],
  ["lowRank ∩ causal", {
    kind: "intersect",
    of: [{ kind: "lowRank", rank: 3 }, { kind: "causal" }],
  }],
  ["hashBucket", { kind: "hashBucket", buckets: 4, rounds: 2, seed: 1 }],
  ["predicate on q, k, n, h", {
    kind: "predicate",
    expr: "(q, k, n, h) => (q + k + h) % 3 != 0 && k < n - 1",
  }],
  ["scored", {
    kind: "scored",
    pattern: { kind: "causal" },
    score: { expr: "(s, q, k, h, b, n) => s - 0.1 * (q - k) + 0.01 * n" },
  }],
  ["gated", {
    kind: "gated",
    branches: [{ kind: "ring", radius: 2 }, { kind: "stride", period: 3 }],
  }],
];

const B = 2, Hq = 2, Hkv = 1, N = 13, D = 4;

/** Rows `from..from+count` of every (batch, head) of a `[B, H, N, width]` tensor. */
function rows(
  x: ArrayLike<number>,
  heads: number,
  n: number,
  width: number,
  from: number,
  count: number,
) {
  const out: number[] = [];
  for (let bh = 0; bh < heads; bh++) {
    for (let r = from; r < from + count; r++) {
      for (let c = 0; c < width; c++) out.push(x[(bh * n + r) * width + c]);
    }
  }
  return out;
}

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let worst = 0;
  for (let i = 0; i < a.length; i++) {
    if (a[i] === b[i]) continue; // equal infinities (an empty row's lse)
    worst = Math.max(worst, Math.abs(a[i] - b[i]));
  }
  return worst;
}

const q = normalTensor(B * Hq * N * D, 1), k = normalTensor(B * Hkv * N * D, 2);
const v = normalTensor(B * Hkv * N * D, 3);

for (const [name, pattern] of PATTERNS) {
  Deno.test(`queries against longer keys are the matching rows of the full call: ${name}`, () => {
    const shape = { batch: B, headsQ: Hq, headsKV: Hkv, seqLen: N, headDim: D };
    const full = reference({ pattern, shape, q, k, v });
    const branches = pattern.kind === "gated" ? pattern.branches.length : 1;
    const chunks: [number, number, number | undefined][] = [
      [N - 1, 1, undefined],
      [N - 5, 5, undefined],
      [3, 4, 3],
      [0, 2, 0],
    ];
    for (const [from, count, offset] of chunks) {
      const part = reference({
        pattern,
        shape: { ...shape, seqLen: count, kvSeqLen: N },
        q: rows(q, B * Hq, N, D, from, count),
        k,
        v,
        queryOffset: offset,
      });
      const where = `rows ${from}..${from + count - 1}`;
      assert.ok(
        maxDiff(part.o, rows(full.o, B * Hq, N, D, from, count)) < 1e-12,
        `o, ${where}`,
      );
      assert.ok(
        maxDiff(
          part.lse,
          rows(full.lse, branches * B * Hq, N, 1, from, count),
        ) < 1e-12,
        `lse, ${where}`,
      );
    }
  });
}

Deno.test("a value head dim of its own: the output's columns are plain calls on V's columns", () => {
  const pattern: Pattern = {
    kind: "union",
    of: [{ kind: "causal" }, { kind: "stride", period: 5 }],
  };
  const Dv = 2 * D;
  const wide = normalTensor(B * Hkv * N * Dv, 9);
  const shape = { batch: B, headsQ: Hq, headsKV: Hkv, seqLen: N, headDim: D };
  const out = reference({ pattern, shape: { ...shape, valueDim: Dv }, q, k, v: wide });
  for (const half of [0, 1]) {
    const columns: number[] = [];
    for (let r = 0; r < B * Hkv * N; r++) {
      for (let c = 0; c < D; c++) columns.push(wide[r * Dv + half * D + c]);
    }
    const plain = reference({ pattern, shape, q, k, v: columns });
    const got: number[] = [];
    for (let r = 0; r < B * Hq * N; r++) {
      for (let c = 0; c < D; c++) got.push(out.o[r * Dv + half * D + c]);
    }
    assert.ok(maxDiff(got, plain.o) < 1e-12, `columns ${half * D}..${half * D + D - 1}`);
    assert.deepEqual([...out.lse], [...plain.lse]);
  }
});

Deno.test("packed sequences are their sequences run one by one", () => {
  const seqLens = [3, 1, 5], kvSeqLens = [4, 6, 5];
  const nq = 9, nk = 15;
  const pq = normalTensor(Hq * nq * D, 4), pk = normalTensor(Hkv * nk * D, 5);
  const pv = normalTensor(Hkv * nk * 8, 6);
  for (const [name, pattern] of PATTERNS.filter(([n]) => n !== "hashBucket")) {
    const shape = {
      batch: 1,
      headsQ: Hq,
      headsKV: Hkv,
      seqLen: nq,
      headDim: D,
      kvSeqLen: nk,
      valueDim: 8,
    };
    const packed = reference({ pattern, shape, q: pq, k: pk, v: pv, seqLens, kvSeqLens });
    let qAt = 0, kAt = 0;
    seqLens.forEach((qLen, s) => {
      const kLen = kvSeqLens[s];
      const one = reference({
        pattern,
        shape: { ...shape, seqLen: qLen, kvSeqLen: kLen },
        q: rows(pq, Hq, nq, D, qAt, qLen),
        k: rows(pk, Hkv, nk, D, kAt, kLen),
        v: rows(pv, Hkv, nk, 8, kAt, kLen),
      });
      const branches = pattern.kind === "gated" ? pattern.branches.length : 1;
      assert.ok(
        maxDiff(rows(packed.o, Hq, nq, 8, qAt, qLen), one.o) < 1e-12,
        `${name}: sequence ${s} o`,
      );
      assert.ok(
        maxDiff(rows(packed.lse, branches * Hq, nq, 1, qAt, qLen), one.lse) < 1e-12,
        `${name}: sequence ${s} lse`,
      );
      qAt += qLen;
      kAt += kLen;
    });
  }
});

/**
 * Largest |analytic - central difference| of every input (and of runtime gates, when given per
 * position), and the largest gradient. hashBucket codes are fixed by the first forward.
 */
function finiteDifferences(
  pattern: Pattern,
  shape: AttentionShape,
  extra: Pick<ReferenceInput, "queryOffset" | "seqLens" | "kvSeqLens"> & {
    gatesPerPosition?: boolean;
  },
) {
  const { gatesPerPosition, ...call } = extra;
  const { nq, nk, dv } = sequenceSizes(shape);
  const branches = pattern.kind === "gated" ? pattern.branches.length : 0;
  const gateShape = [shape.batch, shape.headsQ, nq, branches];
  const gateData = gatesPerPosition
    ? Float64Array.from(normalTensor(gateShape.reduce((a, x) => a * x), 15), (x) => 0.5 + 0.2 * x)
    : undefined;
  const x = {
    q: Float64Array.from(normalTensor(shape.batch * shape.headsQ * nq * shape.headDim, 11)),
    k: Float64Array.from(normalTensor(shape.batch * shape.headsKV * nk * shape.headDim, 12)),
    v: Float64Array.from(normalTensor(shape.batch * shape.headsKV * nk * dv, 13)),
    ...(gateData ? { gates: { data: gateData, shape: gateShape } } : {}),
  };
  const { hashCodes } = reference({ pattern, shape, ...x, ...call });
  const dO = normalTensor(shape.batch * shape.headsQ * nq * dv, 14);
  const loss = () => {
    const { o } = reference({ pattern, shape, ...x, ...call, hashCodes });
    let sum = 0;
    for (let i = 0; i < o.length; i++) sum += dO[i] * o[i];
    return sum;
  };
  const g = referenceGradients({ pattern, shape, ...x, dO, ...call, hashCodes });
  assert.equal(g.dgates !== undefined, gateData !== undefined, "dgates exactly for runtime gates");
  let worst = 0, largest = 0;
  const inputs: [Float64Array, Float64Array][] = [[x.q, g.dq], [x.k, g.dk], [x.v, g.dv]];
  if (gateData) inputs.push([gateData, g.dgates!]);
  for (const [t, grad] of inputs) {
    assert.equal(grad.length, t.length);
    for (let i = 0; i < t.length; i++) {
      const saved = t[i];
      t[i] = saved + 1e-5;
      const up = loss();
      t[i] = saved - 1e-5;
      const down = loss();
      t[i] = saved;
      worst = Math.max(worst, Math.abs((up - down) / 2e-5 - grad[i]));
      largest = Math.max(largest, Math.abs(grad[i]));
    }
  }
  return { worst, largest };
}

Deno.test("gradients on serving shapes match finite differences", () => {
  const cases: [
    string,
    Pattern,
    Parameters<typeof finiteDifferences>[1],
    Parameters<typeof finiteDifferences>[2],
  ][] = [
    [
      "a prefill chunk (Nq 3 of Nk 9, offset 4), Dv 6, lowRank ∪ window, GQA",
      { kind: "union", of: [{ kind: "lowRank", rank: 3 }, { kind: "window", left: 1, right: 1 }] },
      { batch: 1, headsQ: 2, headsKV: 1, seqLen: 3, headDim: 2, kvSeqLen: 9, valueDim: 6 },
      { queryOffset: 4 },
    ],
    [
      "a decoding step (Nq 1 of Nk 7), Dv 8, gated stride and scored, gates per position, MQA",
      {
        kind: "gated",
        branches: [
          { kind: "stride", period: 3 },
          { kind: "scored", pattern: { kind: "causal" }, score: { expr: "-Math.abs(s)" } },
        ],
      },
      { batch: 1, headsQ: 2, headsKV: 1, seqLen: 1, headDim: 4, kvSeqLen: 7, valueDim: 8 },
      { gatesPerPosition: true },
    ],
    [
      "a chunk at the default offset (Nq 4 of Nk 9), Dv 2, hashBucket (codes fixed), GQA",
      { kind: "hashBucket", buckets: 2, rounds: 2, seed: 4 },
      { batch: 2, headsQ: 2, headsKV: 1, seqLen: 4, headDim: 3, kvSeqLen: 9, valueDim: 2 },
      {},
    ],
    [
      "packed: three sequences, causal ∪ lowRank",
      { kind: "union", of: [{ kind: "causal" }, { kind: "lowRank", rank: 2 }] },
      { batch: 1, headsQ: 1, headsKV: 1, seqLen: 6, headDim: 2, kvSeqLen: 10, valueDim: 3 },
      { seqLens: [2, 1, 3], kvSeqLens: [4, 2, 4] },
    ],
  ];
  for (const [name, pattern, shape, extra] of cases) {
    const { worst, largest } = finiteDifferences(pattern, shape, extra);
    assert.ok(largest > 1e-3, `${name}: gradients not all zero`);
    assert.ok(worst <= 1e-6 * largest, `${name}: max |analytic - finite difference| ${worst}`);
  }
});

Deno.test("serving shapes: bad offsets and lengths are refused by name", () => {
  const shape = { batch: 1, headsQ: 1, headsKV: 1, seqLen: 2, headDim: 4, kvSeqLen: 5 };
  const x = normalTensor(8, 1), kv = normalTensor(20, 2);
  const run = (extra: object, s: object = shape, qx = x) =>
    reference({
      pattern: { kind: "causal" },
      shape: s as typeof shape,
      q: qx,
      k: kv,
      v: kv,
      ...extra,
    });
  assert.throws(
    () => run({ queryOffset: 4 }),
    /queryOffset must be an integer in \[0, Nk - Nq\] = \[0, 3\]/,
  );
  assert.throws(() => run({ queryOffset: -1 }), /queryOffset must be an integer/);
  assert.throws(
    () => run({}, { ...shape, seqLen: 6, kvSeqLen: 5 }, normalTensor(24, 1)),
    /seqLen \(6 query rows\) must not exceed kvSeqLen \(5 keys\)/,
  );
  assert.throws(
    () => run({ seqLens: [1, 1], kvSeqLens: [2, 2] }),
    /seqLens sum to 2 and kvSeqLens to 4; the shape has seqLen 2 and kvSeqLen 5/,
  );
  assert.throws(
    () => run({ seqLens: [2], kvSeqLens: [1] }),
    /sequence 0 has seqLens 2 and kvSeqLens 1/,
  );
  assert.throws(() => run({ kvSeqLens: [5] }), /kvSeqLens needs seqLens/);
  assert.throws(
    () => run({ seqLens: [2], kvSeqLens: [5], queryOffset: 1 }),
    /queryOffset does not apply to packed sequences/,
  );
  assert.throws(
    () =>
      reference({
        pattern: { kind: "causal" },
        shape: { ...shape, batch: 2 },
        q: normalTensor(16, 1),
        k: normalTensor(40, 2),
        v: normalTensor(40, 2),
        seqLens: [2, 2],
        kvSeqLens: [5, 5],
      }),
    /packed sequences \(seqLens\) need batch = 1, got 2/,
  );
  assert.throws(
    () => run({}, shape, normalTensor(12, 1)),
    /q has 12 elements, expected B\*Hq\*Nq\*D = 8/,
  );
  assert.throws(
    () =>
      reference({
        pattern: { kind: "causal" },
        shape: { ...shape, valueDim: 3 },
        q: x,
        k: kv,
        v: kv,
      }),
    /v has 20 elements, expected B\*Hkv\*Nk\*Dv = 15/,
  );
});
