/**
 * Which kernels are written for a complete grid (no padding: `gridOf`), read from their WGSL:
 * the general kernel tests every pair for padding (`q0 >= 0 && k0 >= 0`), a complete one does
 * not, and in natural order it computes key positions instead of staging them in `kPosition`.
 * The numbers of both kinds are checked against the reference in tests/gpu/complete_grid_test.ts.
 */
import assert from "node:assert/strict";
import { compile } from "../../compiler/mod.ts";

const PADDING_TEST = /m0_0 = q0 >= 0 && k0 >= 0/;
const STAGED_POSITIONS = /kPosition\[j\] =/;

/** Per attention pass: "complete" or "padded", and "natural" where positions are computed. */
function grids(pattern: unknown, seqLen: number): string[] {
  const shape = { batch: 1, headsQ: 2, headsKV: 2, seqLen, headDim: 32 };
  return compile(pattern, { shape, tiles: { tileQ: 32, tileK: 16 } }).passes
    .filter((p) => /Weft attention kernel/.test(p.wgsl))
    .map((p) =>
      (PADDING_TEST.test(p.wgsl) ? "padded" : "complete") +
      (STAGED_POSITIONS.test(p.wgsl) ? "" : " natural")
    );
}

Deno.test("natural order with N a multiple of both tiles: complete, positions computed", () => {
  assert.deepEqual(grids({ kind: "ring", radius: 8 }, 256), ["complete natural"]);
  assert.deepEqual(grids({ kind: "dense" }, 256), ["complete natural"]);
  assert.deepEqual(grids({ kind: "causal" }, 256), ["complete natural"]);
});

Deno.test("N not a multiple of a tile size: padded, only the last tiles masked as if PARTIAL", () => {
  const shape = { batch: 1, headsQ: 1, headsKV: 1, seqLen: 200, headDim: 32 };
  const wgsl = (pattern: unknown) =>
    compile(pattern, { shape, tiles: { tileQ: 32, tileK: 16 } }).passes[0].wgsl;
  assert.deepEqual(grids({ kind: "ring", radius: 8 }, 248), ["padded natural"]); // 248 % 32 = 24
  assert.deepEqual(grids({ kind: "ring", radius: 8 }, 200), ["padded natural"]); // 200 % 16 = 8
  // The last query tile is 6 (rows 192-223), the last key tile starts at 192.
  assert.match(
    wgsl({ kind: "ring", radius: 8 }),
    /if \(isPartial \|\| qTileIndex == 6u \|\| kTileStart == 192u\)/,
  );
  // A padded grid clamps its loads to real rows instead of selecting zeros.
  assert.match(wgsl({ kind: "ring", radius: 8 }), /min\(nextStart \+ i \/ D4, N - 1u\)/);
  assert.deepEqual(grids({ kind: "stride", period: 7 }, 250), ["padded"]);
});

Deno.test("residue order is a permutation of [0, N): complete, positions staged", () => {
  assert.deepEqual(grids({ kind: "stride", period: 7 }, 256), ["complete"]);
  // Two components in one module: complete only if both are; natural only if both are.
  assert.deepEqual(
    grids({ kind: "union", of: [{ kind: "ring", radius: 8 }, { kind: "stride", period: 4 }] }, 256),
    ["complete", "complete"],
  );
});

Deno.test("gathered tokens, landmarks, bucket order and score modifiers keep the padding tests", () => {
  const global = grids({ kind: "global", tokens: [0, 5, 9] }, 256);
  assert.ok(global.length > 0 && global.every((g) => g === "padded"), global.join(", "));
  assert.deepEqual(
    grids({
      kind: "union",
      of: [{ kind: "window", left: 8, right: 8 }, { kind: "lowRank", rank: 16 }],
    }, 256)
      .at(-1),
    "padded",
  );
  assert.deepEqual(grids({ kind: "hashBucket", buckets: 4, rounds: 1, seed: 1 }, 256), ["padded"]);
  assert.deepEqual(
    grids({
      kind: "scored",
      pattern: { kind: "causal" },
      score: { expr: "(s, q, k) => s - 0.01 * Math.abs(q - k)" },
    }, 256),
    ["padded"],
  );
});
