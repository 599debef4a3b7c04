/**
 * Packed sequences through the kernels (DESIGN §1, §5), against the float64 reference: several
 * sequences of unequal lengths off the tile grid, a sequence of one row, keys longer than
 * queries (kvSeqLens != seqLens) and the square case (a complete and a padded grid), for
 * causal, window, ring (whose wrap must be each sequence's n), stride, a union with global
 * tokens, an intersection, a predicate and a score modifier that read n, and a gated pattern:
 * O within 1e-4, LSE within 1e-4 of max(1, |LSE|). The backward pass on packed sequences
 * (seqLens == kvSeqLens; V of D's head dim or its own, below and above) matches the
 * reference's gradients within 1e-4 of the largest, learnable score constants that read n
 * included. New lengths on a compiled pattern build no
 * pipeline, forward or backward; a call past one binding runs in parts with its lengths; the
 * runtime refuses lengths that do not fit, naming the field.
 */
import assert from "node:assert/strict";
import { type AttentionShape, packedPlan } from "../../compiler/mod.ts";
import { packedSequences } from "../../core/packed_sequences.ts";
import { ShapeError } from "../../core/errors.ts";
import { sequenceSizes } from "../../core/shape.ts";
import type { Pattern } from "../../dsl/schema.ts";
import { reference, referenceGradients } from "../../runtime/reference/mod.ts";
import { createRuntime, FALLBACK_TILES, type Runtime } from "../../runtime/runtime.ts";
import { normalTensor } from "../../runtime/seeded_random.ts";
import { maxAbsError, maxLseError } from "../../cli/_common.ts";

const rt = await createRuntime({ autotune: false });
addEventListener("unload", () => rt.destroy());

/** Lengths of packed sequences: query rows and key rows of each. */
interface Lengths {
  seqLens: number[];
  kvSeqLens?: number[];
}

/** Keys longer than queries; a one-row sequence; nothing on the tiles (8x8 on llvmpipe). */
const PREFILL: Lengths = { seqLens: [5, 1, 13, 3], kvSeqLens: [9, 1, 17, 6] };
/** Square, N = 24: a complete grid at 8x8 tiles. */
const SQUARE: Lengths = { seqLens: [7, 1, 12, 4] };
/** Square, N = 25: a padded grid. */
const PADDED: Lengths = { seqLens: [6, 10, 9] };
/** Square, N = 24: a sequence long enough for tiles of its own only, which may be FULL. */
const LONG: Lengths = { seqLens: [3, 21] };

const CASES: { name: string; pattern: Pattern; lengths: Lengths[] }[] = [
  { name: "dense", pattern: { kind: "dense" }, lengths: [LONG, PREFILL] },
  { name: "causal", pattern: { kind: "causal" }, lengths: [PREFILL, SQUARE, LONG] },
  { name: "window(3, 1)", pattern: { kind: "window", left: 3, right: 1 }, lengths: [PADDED] },
  {
    name: "ring(2), wrapping at each sequence",
    pattern: { kind: "ring", radius: 2 },
    lengths: [
      PREFILL,
      SQUARE,
    ],
  },
  {
    name: "stride(3) in natural order",
    pattern: { kind: "stride", period: 3 },
    lengths: [PREFILL],
  },
  {
    name: "window(2, 0) ∪ global([0])",
    pattern: {
      kind: "union",
      of: [{ kind: "window", left: 2, right: 0 }, { kind: "global", tokens: [0] }],
    },
    lengths: [PREFILL, PADDED],
  },
  {
    name: "causal ∩ window(4, 0)",
    pattern: {
      kind: "intersect",
      of: [{ kind: "causal" }, { kind: "window", left: 4, right: 0 }],
    },
    lengths: [SQUARE],
  },
  {
    name: "a predicate reading n",
    pattern: { kind: "predicate", expr: "(q, k, n) => k <= q || k >= n - 2" },
    lengths: [PREFILL],
  },
  {
    name: "a score modifier reading n",
    pattern: {
      kind: "scored",
      pattern: { kind: "causal" },
      score: { expr: "(s, q, k, h, b, n) => s - 0.1 * (q - k) + 0.05 * n" },
    },
    lengths: [PREFILL],
  },
  {
    name: "gated ring(1) and causal",
    pattern: { kind: "gated", branches: [{ kind: "ring", radius: 1 }, { kind: "causal" }] },
    lengths: [SQUARE],
  },
];

const HEAD_DIM = 16;

/** The shape of lengths: batch 1, GQA (2 query heads per key/value head). */
function shapeOf(l: Lengths, heads = { headsQ: 2, headsKV: 1 }): AttentionShape {
  const nq = l.seqLens.reduce((a, b) => a + b);
  const nk = (l.kvSeqLens ?? l.seqLens).reduce((a, b) => a + b);
  return {
    batch: 1,
    ...heads,
    seqLen: nq,
    headDim: HEAD_DIM,
    ...(nk > nq ? { kvSeqLen: nk } : {}),
  };
}

function inputsOf(shape: AttentionShape, seed = 1) {
  const { nq, nk, dv } = sequenceSizes(shape);
  return {
    q: normalTensor(shape.headsQ * nq * HEAD_DIM, seed),
    k: normalTensor(shape.headsKV * nk * HEAD_DIM, seed + 1),
    v: normalTensor(shape.headsKV * nk * dv, seed + 2),
  };
}

/** Runs packed lengths on the kernels and the reference; returns both and the errors. */
async function packedError(runtime: Runtime, pattern: Pattern, l: Lengths, heads?: {
  headsQ: number;
  headsKV: number;
}) {
  const shape = shapeOf(l, heads);
  // The fallback adapter's tiles on every device: the FULL-tile check below counts at them.
  const compiled = runtime.compile(pattern, { shape, packed: true, tiles: FALLBACK_TILES });
  const x = inputsOf(shape);
  const got = await runtime.run(compiled, { ...x, ...l });
  const want = reference({ pattern, shape, ...x, ...l });
  // Which kinds of tile the call walked: FULL ones need no mask at all.
  const sequences = packedSequences(shape, l.seqLens, l.kvSeqLens);
  const plan = packedPlan(compiled.plan, sequences, shape);
  const full = plan.branches.some((b) => b.components.some((c) => c.mask.partial.includes(0)));
  return {
    compiled,
    full,
    o: maxAbsError(got.o, want.o),
    lse: maxLseError(got.lse, want.lse),
    want,
  };
}

function withinTolerance(err: { o: number; lse: number }, what: string): void {
  assert.ok(err.o <= 1e-4, `${what}: max |O - reference| ${err.o}`);
  assert.ok(err.lse <= 1e-4, `${what}: max LSE error relative to max(1, |LSE|) ${err.lse}`);
}

for (const c of CASES) {
  Deno.test(`packed sequences on the kernels: ${c.name}`, async () => {
    for (const l of c.lengths) {
      const err = await packedError(rt, c.pattern, l);
      withinTolerance(err, `${c.name} at ${JSON.stringify(l)}`);
      if (l === LONG) assert.ok(err.full, "a FULL tile is walked (without a mask)");
      for (const k of err.compiled.kernelPlan.kernels) {
        if (k.kind === "attention") assert.ok(k.packed, `${k.label}: a packed kernel`);
      }
    }
  });
}

Deno.test("packed sequences: the ring wraps at each sequence's n, not at Nk", () => {
  // Were the wrap at Nk, the ring would be a window(2, 2) inside each sequence: the two differ.
  const shape = shapeOf(PREFILL), x = inputsOf(shape);
  const ring = reference({ pattern: { kind: "ring", radius: 2 }, shape, ...x, ...PREFILL });
  const band = reference({
    pattern: { kind: "window", left: 2, right: 2 },
    shape,
    ...x,
    ...PREFILL,
  });
  assert.ok(maxAbsError(Float32Array.from(ring.o), band.o) > 0.1, "the wrap is exercised");
});

Deno.test("packed sequences: new lengths run on the compiled pipelines", async () => {
  const pattern: Pattern = {
    kind: "union",
    of: [{ kind: "causal" }, { kind: "global", tokens: [0] }],
  };
  const shape = shapeOf(PREFILL), x = inputsOf(shape);
  const compiled = rt.compile(pattern, { shape, packed: true });
  const runs: Lengths[] = [
    PREFILL,
    { seqLens: [3, 7, 2, 10], kvSeqLens: [4, 11, 8, 10] },
    { seqLens: [22], kvSeqLens: [33] },
    { seqLens: [1, 1, 20], kvSeqLens: [1, 1, 31] },
    // A sequence whose keys no query of the call reads.
    { seqLens: [3, 0, 7, 2, 10], kvSeqLens: [4, 5, 8, 6, 10] },
  ];
  let misses: number | undefined;
  for (const l of runs) {
    const hits = rt.pipelines.hits;
    const got = await rt.run(compiled, { ...x, ...l });
    const want = reference({ pattern, shape, ...x, ...l });
    withinTolerance(
      { o: maxAbsError(got.o, want.o), lse: maxLseError(got.lse, want.lse) },
      JSON.stringify(l),
    );
    if (misses === undefined) {
      misses = rt.pipelines.misses; // the first lengths built the pipelines
      continue;
    }
    assert.equal(rt.pipelines.misses, misses, `${JSON.stringify(l)}: no new pipeline`);
    assert.equal(rt.pipelines.hits - hits, compiled.passes.length, "every pass a cache hit");
  }
  // Without lengths: one sequence of every row, its queries the last positions.
  const got = await rt.run(compiled, x);
  const want = reference({ pattern, shape, ...x });
  assert.ok(maxAbsError(got.o, want.o) <= 1e-4, "one sequence by default");
  assert.equal(rt.pipelines.misses, misses, "no new pipeline for the default either");
});

Deno.test("packed sequences: the backward pass matches the reference's gradients", async () => {
  const cases: { pattern: Pattern; lengths: Lengths[]; valueDim?: number }[] = [
    // Training on packed documents: new lengths reuse the backward's pipelines too.
    { pattern: { kind: "causal" }, lengths: [SQUARE, { seqLens: [2, 15, 6, 1] }] },
    // V and dO rows of their own head dim, below and above D.
    { pattern: { kind: "causal" }, lengths: [SQUARE], valueDim: 8 },
    { pattern: { kind: "window", left: 3, right: 1 }, lengths: [PADDED], valueDim: 32 },
    {
      pattern: {
        kind: "scored",
        pattern: {
          kind: "union",
          of: [{ kind: "ring", radius: 1 }, { kind: "global", tokens: [0] }],
        },
        score: {
          expr: "(s, q, k, h, b, n) => s - slopes[h] * Math.abs(q - k) + 0.02 * n",
          constants: { slopes: [0.25, 0.5] },
          learnable: ["slopes"],
        },
      },
      lengths: [PADDED],
    },
  ];
  for (const c of cases) {
    const shape = { ...shapeOf(c.lengths[0]), ...(c.valueDim ? { valueDim: c.valueDim } : {}) };
    const x = inputsOf(shape);
    const dO = normalTensor(shape.headsQ * shape.seqLen * sequenceSizes(shape).dv, 9);
    const compiled = rt.compile(c.pattern, { shape, packed: true, backward: true });
    let misses: number | undefined;
    for (const l of c.lengths) {
      const got = (await rt.run(compiled, { ...x, dO, ...l })).gradients!;
      const want = referenceGradients({ pattern: c.pattern, shape, ...x, dO, ...l });
      const what = `${JSON.stringify(c.pattern)} at ${JSON.stringify(l)}`;
      const largest = Math.max(...[want.dq, want.dk, want.dv].flatMap((g) => [...g].map(Math.abs)));
      for (const name of ["dq", "dk", "dv"] as const) {
        const err = maxAbsError(got[name], want[name]);
        assert.ok(err <= 1e-4 * largest, `${what}: ${name} off by ${err} (largest ${largest})`);
      }
      if (want.dConstants) {
        const slopes = want.dConstants.slopes as Float64Array;
        const err = maxAbsError(got.dConstants!.slopes as Float32Array, slopes);
        assert.ok(err <= 1e-4 * Math.max(...slopes.map(Math.abs)), `${what}: dslopes ${err}`);
      }
      if (misses !== undefined) assert.equal(rt.pipelines.misses, misses, `${what}: reused`);
      misses = rt.pipelines.misses;
    }
  }
});

Deno.test({
  name: "packed sequences in float16 (within 5e-3 of the float16 inputs' reference)",
  ignore: !rt.info.shaderF16,
  fn: async () => {
    const pattern: Pattern = { kind: "ring", radius: 2 };
    const shape = shapeOf(PREFILL);
    const compiled = rt.compile(pattern, { shape, packed: true, dtype: "f16" });
    const x = inputsOf(shape);
    const half = {
      q: Float16Array.from(x.q),
      k: Float16Array.from(x.k),
      v: Float16Array.from(x.v),
    };
    const got = await rt.run(compiled, { ...half, ...PREFILL });
    const want = reference({ pattern, shape, ...half, ...PREFILL });
    assert.ok(maxAbsError(got.o, want.o) <= 5e-3, `O ${maxAbsError(got.o, want.o)}`);
    assert.ok(maxLseError(got.lse, want.lse) <= 5e-3, "LSE");
  },
});

Deno.test("packed sequences run in parts of whole heads past one binding", async () => {
  // 3000 bytes hold one key/value head (two query heads) at Nq = 22, Nk = 33: two parts.
  const parts = await createRuntime({ autotune: false, maxBindingBytes: 3000 });
  try {
    const err = await packedError(parts, { kind: "causal" }, PREFILL, { headsQ: 4, headsKV: 2 });
    assert.equal(err.compiled.split?.kvHeads, 1, "one key/value head per part");
    withinTolerance(err, "in parts");
  } finally {
    parts.destroy();
  }
});

Deno.test("packed sequences: the runtime refuses lengths that do not fit, by name", async () => {
  const shape = shapeOf(PREFILL), x = inputsOf(shape);
  const packed = rt.compile({ kind: "causal" }, { shape, packed: true });
  const refused = async (run: () => Promise<unknown>, says: RegExp) =>
    await assert.rejects(run, (e) => e instanceof ShapeError && says.test(e.message));
  await refused(
    () => rt.run(packed, { ...x, seqLens: [5, 1, 13, 3], kvSeqLens: [9, 1, 17, 5] }),
    /seqLens sum to 22 and kvSeqLens to 32; the shape has seqLen 22 and kvSeqLen 33/,
  );
  await refused(
    () => rt.run(packed, { ...x, seqLens: [5, 17], kvSeqLens: [20, 13] }),
    /sequence 1 has seqLens 17 and kvSeqLens 13; .*0 <= seqLens\[s\] <= kvSeqLens\[s\]/,
  );
  await refused(
    () => rt.run(packed, { ...x, kvSeqLens: [33] }),
    /kvSeqLens needs seqLens/,
  );
  const plain = rt.compile({ kind: "causal" }, { shape });
  await refused(
    () => rt.run(plain, { ...x, ...PREFILL }),
    /seqLens gives packed sequences, but the pattern was compiled without packed: true/,
  );
});
