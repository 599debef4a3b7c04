/**
 * A complete grid (every layout a permutation of [0, N), natural or residue order, and N a
 * multiple of both tile sizes) has no padding, so its kernels drop the padding tests and mask
 * PARTIAL tiles only; in natural order positions are plain arithmetic. Each case runs once on a
 * complete grid and once with N = 184, which pads the last tiles, and both match the float64
 * reference: bands that wrap, a causal edge, a predicate that is PARTIAL everywhere, residue
 * order (stride), two components in one module, a gated mix, and the plain key loop.
 */
import assert from "node:assert/strict";
import type { Pattern } from "../../dsl/schema.ts";
import { parseKernelShapeName } from "../../compiler/mod.ts";
import { reference } from "../../runtime/reference/mod.ts";
import { createRuntime } from "../../runtime/runtime.ts";
import { normalTensor } from "../../runtime/seeded_random.ts";

const rt = await createRuntime({ autotune: false });

/** The padding test of the general kernel's mask; a complete grid's kernel has none. */
const PADDING_TEST = /m0_0 = q0 >= 0 && k0 >= 0/;

const cases: { name: string; pattern: Pattern; tileQ: number; tileK: number; prefetch: boolean }[] =
  [
    {
      name: "ring (wraps)",
      pattern: { kind: "ring", radius: 20 },
      tileQ: 32,
      tileK: 16,
      prefetch: true,
    },
    {
      name: "window, 64-row tiles",
      pattern: { kind: "window", left: 33, right: 5 },
      tileQ: 64,
      tileK: 16,
      prefetch: true,
    },
    {
      name: "causal, plain key loop",
      pattern: { kind: "causal" },
      tileQ: 32,
      tileK: 16,
      prefetch: false,
    },
    {
      name: "predicate, PARTIAL everywhere",
      pattern: { kind: "predicate", expr: "Math.abs(q - k) % 11 < 4" },
      tileQ: 32,
      tileK: 16,
      prefetch: true,
    },
    { name: "dense", pattern: { kind: "dense" }, tileQ: 32, tileK: 32, prefetch: true },
    {
      name: "stride, residue order",
      pattern: { kind: "stride", period: 3 },
      tileQ: 32,
      tileK: 16,
      prefetch: true,
    },
    {
      name: "ring and stride, one module",
      pattern: { kind: "union", of: [{ kind: "ring", radius: 10 }, { kind: "stride", period: 3 }] },
      tileQ: 32,
      tileK: 16,
      prefetch: false,
    },
    {
      name: "gated ring and stride",
      pattern: {
        kind: "gated",
        branches: [{ kind: "ring", radius: 6 }, { kind: "stride", period: 4 }],
        gates: [0.6, 0.4],
      },
      tileQ: 32,
      tileK: 16,
      prefetch: true,
    },
  ];

for (const c of cases) {
  Deno.test(`complete grid and padded grid match the reference: ${c.name}`, async () => {
    for (const n of [192, 184]) {
      const complete = n % c.tileQ === 0 && n % c.tileK === 0;
      const shape = { batch: 2, headsQ: 2, headsKV: 1, seqLen: n, headDim: 16 };
      const q = normalTensor(2 * 2 * n * 16, 1);
      const k = normalTensor(2 * n * 16, 2);
      const v = normalTensor(2 * n * 16, 3);
      const compiled = rt.compile(c.pattern, {
        shape,
        tiles: { tileQ: c.tileQ, tileK: c.tileK },
        prefetch: c.prefetch,
      });
      const kernels = compiled.passes.filter((p) => /Weft attention kernel/.test(p.wgsl));
      assert.ok(kernels.length >= 1);
      for (const p of kernels) {
        assert.equal(
          PADDING_TEST.test(p.wgsl),
          !complete,
          `N = ${n}, ${p.label}: the kernel tests for padding only where there is some`,
        );
      }
      const got = await rt.run(compiled, { q, k, v });
      const want = reference({ pattern: c.pattern, shape, q, k, v });
      let err = 0;
      for (let i = 0; i < got.o.length; i++) err = Math.max(err, Math.abs(got.o[i] - want.o[i]));
      assert.ok(err < 2e-5, `N = ${n}: max |O - reference| = ${err}`);
      for (let i = 0; i < got.lse.length; i++) {
        assert.ok(Math.abs(got.lse[i] - want.lse[i]) < 2e-5, `N = ${n}: lse[${i}]`);
      }
    }
  });
}

// The float16 kernels of the H200's tuned shapes (needs shader-f16; llvmpipe's GL path has none).
Deno.test({
  name: "complete and padded float16 grids of 64x32 tiles match the reference",
  ignore: !rt.info.shaderF16,
  fn: async () => {
    const patterns: Pattern[] = [
      { kind: "ring", radius: 40 },
      { kind: "causal" },
      { kind: "stride", period: 8 },
      {
        kind: "union",
        of: [{ kind: "window", left: 70, right: 0 }, { kind: "stride", period: 16 }],
      },
    ];
    for (const name of ["64x32x2c4", "64x32x2"]) {
      const tiles = parseKernelShapeName(name, 64)!;
      for (const n of [512, 504]) {
        const shape = { batch: 1, headsQ: 2, headsKV: 1, seqLen: n, headDim: 64 };
        const q = normalTensor(2 * n * 64, 11), k = normalTensor(n * 64, 12);
        const v = normalTensor(n * 64, 13);
        for (const pattern of patterns) {
          const compiled = rt.compile(pattern, { shape, dtype: "f16", tiles });
          const got = await rt.run(compiled, { q, k, v });
          const half = (x: Float32Array) => Float16Array.from(x);
          const want = reference({ pattern, shape, q: half(q), k: half(k), v: half(v) });
          let err = 0;
          for (let i = 0; i < want.o.length; i++) {
            err = Math.max(err, Math.abs(Number(got.o[i]) - want.o[i]));
          }
          assert.ok(err <= 5e-3, `${name}, N = ${n}, ${pattern.kind}: max |O - reference| ${err}`);
        }
      }
    }
  },
});

addEventListener("unload", () => rt.destroy());
