/**
 * The subgroup-matrix path (QKᵀ and P·V on the matrix units) against the float64 reference, on
 * every kind of layout and kernel: residue order, bucket order, gathered rows, landmarks,
 * split-K, fused runs, shared modules, predicates, score modifiers, gates; every matrix shape
 * the device offers at several head dims; query tiles staged in parts and bands split between
 * two subgroups; padded and complete grids; with and without the prefetched key loop. Runs where the device has subgroup matrices (Dawn, `WEFT_BACKEND=dawn`,
 * on a GPU that lists them); elsewhere the tests are ignored.
 */
import assert from "node:assert/strict";
import {
  kernelFits,
  kernelShapeName,
  parseKernelShapeName,
  tuningCandidates,
} from "../../compiler/mod.ts";
import type { Pattern } from "../../dsl/schema.ts";
import { compileLimits } from "../../runtime/device.ts";
import { reference } from "../../runtime/reference/mod.ts";
import { createRuntime } from "../../runtime/runtime.ts";
import { normalTensor } from "../../runtime/seeded_random.ts";

const rt = await createRuntime({ autotune: false });
addEventListener("unload", () => rt.destroy());
const ignore = rt.info.matrices.length === 0 || !rt.info.shaderF16;

const PATTERNS: [string, Pattern][] = [
  ["dense", { kind: "dense" }],
  ["causal", { kind: "causal" }],
  ["ring (wraps)", { kind: "ring", radius: 40 }],
  ["window", { kind: "window", left: 70, right: 3 }],
  ["stride (residue order)", { kind: "stride", period: 7 }],
  [
    "ring ∪ stride (fused, shared module)",
    { kind: "union", of: [{ kind: "ring", radius: 30 }, { kind: "stride", period: 5 }] },
  ],
  ["global (gathered rows, split-K)", { kind: "global", tokens: [0, 3, 100, 101] }],
  ["random blocks", { kind: "random", blocks: 2, blockSize: 32, seed: 7 }],
  [
    "window ∪ lowRank (landmarks)",
    { kind: "union", of: [{ kind: "window", left: 20, right: 20 }, { kind: "lowRank", rank: 16 }] },
  ],
  ["hashBucket (bucket order)", { kind: "hashBucket", buckets: 8, rounds: 2, seed: 3 }],
  ["predicate", { kind: "predicate", expr: "(q + 2 * k) % 3 == 0 || k == 0" }],
  [
    "scored causal (score modifier)",
    { kind: "scored", pattern: { kind: "causal" }, score: { expr: "s - 0.01 * (q - k)" } },
  ],
  [
    "gated ring / stride",
    { kind: "gated", branches: [{ kind: "ring", radius: 16 }, { kind: "stride", period: 9 }] },
  ],
];

/** Largest |O - ref| and |LSE - ref| of one float16 call. */
async function errors(
  pattern: Pattern,
  n: number,
  headDim: number,
  options: Record<string, unknown> = {},
) {
  const shape = { batch: 1, headsQ: 2, headsKV: 1, seqLen: n, headDim };
  const compiled = rt.compile(pattern, { shape, dtype: "f16", ...options });
  const h = (x: Float32Array) => Float16Array.from(x);
  const q = h(normalTensor(2 * n * headDim, 11)), k = h(normalTensor(n * headDim, 12));
  const v = h(normalTensor(n * headDim, 13));
  const got = await rt.run(compiled, { q, k, v });
  const want = reference({ pattern, shape, q, k, v, hashCodes: got.hashCodes });
  return { ...largestErrors(got, want), matrix: compiled.kernel.matrix !== undefined };
}

/** Largest |O - ref| and |LSE - ref|. */
function largestErrors(
  got: { o: ArrayLike<number | bigint>; lse: ArrayLike<number> },
  want: { o: ArrayLike<number>; lse: ArrayLike<number> },
) {
  let o = 0, lse = 0;
  for (let i = 0; i < want.o.length; i++) o = Math.max(o, Math.abs(Number(got.o[i]) - want.o[i]));
  for (let i = 0; i < want.lse.length; i++) lse = Math.max(lse, Math.abs(got.lse[i] - want.lse[i]));
  return { o, lse };
}

Deno.test({
  name: "every pattern kind on the device's first matrix shape (padded and complete grids)",
  ignore,
  fn: async (t) => {
    for (const [name, pattern] of PATTERNS) {
      for (const n of [333, 1024]) {
        await t.step(`${name}, N = ${n}`, async () => {
          const e = await errors(pattern, n, 64);
          assert.ok(e.matrix, "compiled for the matrix path");
          assert.ok(e.o <= 5e-3 && e.lse <= 5e-3, `max |O - ref| ${e.o}, |LSE - ref| ${e.lse}`);
        });
      }
    }
  },
});

Deno.test({
  name: "every matrix shape the device offers, at head dims 16 to 128, prefetched or not",
  ignore,
  fn: async (t) => {
    const limits = compileLimits(rt.device, rt.info);
    const pattern: Pattern = {
      kind: "union",
      of: [{ kind: "window", left: 50, right: 50 }, { kind: "stride", period: 6 }],
    };
    for (const d of [16, 32, 64, 128]) {
      for (const tiles of tuningCandidates(d, limits, "f16", 12).filter((s) => s.matrix)) {
        for (const prefetch of [false, true]) {
          await t.step(`D = ${d}, ${kernelShapeName(tiles, d)}, prefetch ${prefetch}`, async () => {
            const e = await errors(pattern, 300, d, { tiles, prefetch });
            assert.ok(e.matrix);
            assert.ok(e.o <= 5e-3 && e.lse <= 5e-3, `max |O - ref| ${e.o}, |LSE - ref| ${e.lse}`);
          });
        }
      }
    }
  },
});

Deno.test({
  name: "shapes the tuner does not offer yet: query tiles in parts (q), bands split (h)",
  ignore,
  fn: async (t) => {
    const limits = compileLimits(rt.device, rt.info);
    // Padded grids (N = 333) for every layout; complete ones (N = 1024, the bench's kind) for the
    // natural-order patterns. Each kernel is a cold pipeline build on the GPU: the list is short.
    const patterns: [string, Pattern, number[]][] = [
      ["dense", { kind: "dense" }, [333, 1024]],
      ["ring (wraps)", { kind: "ring", radius: 40 }, [333, 1024]],
      [
        "window ∪ stride (residue order)",
        {
          kind: "union",
          of: [{ kind: "window", left: 50, right: 50 }, { kind: "stride", period: 6 }],
        },
        [333],
      ],
      ["global (gathered rows)", { kind: "global", tokens: [0, 3, 100, 101] }, [333]],
      ["hashBucket (bucket order)", { kind: "hashBucket", buckets: 8, rounds: 2, seed: 3 }, [333]],
    ];
    for (
      const [name, d] of [
        ["128x32x2c4.mma16x16x16s32q4", 64],
        ["128x32x2c4.mma16x16x16s32q2", 128],
        ["128x32x2c4.mma16x16x16s32h2", 64],
        ["64x32x1c4.mma16x16x16s32h2", 128],
        ["128x32x2c4.mma16x16x16s32q2h2", 128],
      ] as const
    ) {
      const tiles = parseKernelShapeName(name, d)!;
      if (!kernelFits(tiles, d, "f16", limits)) continue; // another GPU's matrices
      for (const [label, pattern, lengths] of patterns) {
        for (const n of lengths) {
          await t.step(`D = ${d}, ${name}, ${label}, N = ${n}`, async () => {
            const e = await errors(pattern, n, d, { tiles });
            assert.ok(e.matrix);
            assert.ok(e.o <= 5e-3 && e.lse <= 5e-3, `max |O - ref| ${e.o}, |LSE - ref| ${e.lse}`);
          });
        }
      }
    }
  },
});

Deno.test({
  name: "large scores: the matrices' float32 sums keep the softmax exact at magnitude 4",
  ignore,
  fn: async () => {
    const n = 512, d = 64;
    const shape = { batch: 1, headsQ: 1, headsKV: 1, seqLen: n, headDim: d };
    const h = (x: Float32Array) => Float16Array.from(x, (v) => 4 * v);
    const q = h(normalTensor(n * d, 21)), k = h(normalTensor(n * d, 22));
    const v = Float16Array.from(normalTensor(n * d, 23));
    const compiled = rt.compile({ kind: "causal" }, { shape, dtype: "f16" });
    assert.ok(compiled.kernel.matrix);
    const got = await rt.run(compiled, { q, k, v });
    const want = reference({ pattern: { kind: "causal" }, shape, q, k, v });
    const worst = largestErrors(got, want).o;
    assert.ok(worst <= 5e-3 * 16, `max |O - ref| ${worst}`);
  },
});

Deno.test({
  name: "rising maxima: O in matrices is rescaled whenever a row's max grows past 2^8",
  ignore,
  fn: async () => {
    // Keys grow along the sequence, so most rows' maxima rise tile after tile by more than the
    // lazy rescaling's margin (and by less, in between). Scores reach about 80 (log2 units), where
    // float16's rounding of the staged, pre-scaled Q alone moves O by 1e-2; the reference gets
    // those same queries, so what is checked is the rescaling.
    const n = 1024, d = 64, log2Scale = Math.LOG2E / Math.sqrt(d);
    const shape = { batch: 1, headsQ: 2, headsKV: 1, seqLen: n, headDim: d };
    const q = Float16Array.from(normalTensor(2 * n * d, 31), (v) => 2 * v);
    const k = Float16Array.from(
      normalTensor(n * d, 32),
      (v, i) => v * (1 + 6 * Math.floor(i / d) / n),
    );
    const v = Float16Array.from(normalTensor(n * d, 33));
    const staged = Float16Array.from(q, (x) => x * Float16Array.of(log2Scale)[0]);
    const qRef = Float64Array.from(staged, (x) => x / log2Scale);
    // Rows whose max over all keys passes their first tile's by more than 8 (log2): each is
    // rescaled at least once after its first tile (tiles are at most 64 keys).
    let rising = 0;
    for (let row = 0; row < 2 * n; row++) {
      let first = -Infinity, all = -Infinity;
      for (let key = 0; key < n; key++) {
        let s = 0;
        for (let e = 0; e < d; e++) s += qRef[row * d + e] * k[key * d + e];
        s *= log2Scale;
        if (key < 64) first = Math.max(first, s);
        all = Math.max(all, s);
      }
      if (all > first + 8) rising++;
    }
    assert.ok(rising > n, `${rising} of ${2 * n} rows rise past their first tile by 2^8`);
    // The default shape, and bands split between two subgroups (O rescaled in its split layout).
    const limits = compileLimits(rt.device, rt.info);
    const split = parseKernelShapeName("128x32x2c4.mma16x16x16s32h2", d)!;
    for (const tiles of [undefined, ...(kernelFits(split, d, "f16", limits) ? [split] : [])]) {
      for (
        const pattern of [{ kind: "dense" }, { kind: "window", left: 200, right: 0 }] as Pattern[]
      ) {
        const compiled = rt.compile(pattern, { shape, dtype: "f16", ...(tiles ? { tiles } : {}) });
        assert.ok(compiled.kernel.matrix);
        const got = await rt.run(compiled, { q, k, v });
        const { o, lse } = largestErrors(got, reference({ pattern, shape, q: qRef, k, v }));
        assert.ok(
          o <= 5e-3 && lse <= 5e-3,
          `${pattern.kind} ${tiles ? "h2" : ""}: max |O - ref| ${o}, |LSE - ref| ${lse}`,
        );
      }
    }
  },
});
