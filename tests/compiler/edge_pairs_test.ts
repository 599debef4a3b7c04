/**
 * Edge pairs (compiler/edge_pairs.ts), read the way the kernel reads them: a row's first run
 * `A << 1 | 1`, `B | PAIR_BIT`, then its other runs. Every query tile still visits exactly its
 * BlockMask's tiles, once each; tile A holds no allowed pair in the lower half of the rows and B
 * none in the upper half (checked pair by pair); where a band allows it, one step is saved.
 */
import assert from "node:assert/strict";
import { forEachKeyTile } from "../../compiler/block_mask.ts";
import { compile } from "../../compiler/compile.ts";
import { PAIR_BIT, walksEdgePairs } from "../../compiler/edge_pairs.ts";
import { planPattern } from "../../compiler/plan.ts";
import { HEADER_WORDS, RUN_WORDS } from "../../compiler/schedule_buffer.ts";
import { words } from "./_buffers.ts";
import type { Pattern } from "../../dsl/schema.ts";

/** Slot 0's walk of query tile t: the pair (if any) and the other tiles with their kinds. */
function walk(words: Uint32Array, t: number) {
  const rowsAt = words[HEADER_WORDS], runsAt = words[HEADER_WORDS + 1];
  let run = words[rowsAt + t];
  const last = words[rowsAt + t + 1];
  let pair: [number, number] | undefined;
  if (run < last && (words[runsAt + RUN_WORDS * run + 1] & PAIR_BIT) !== 0) {
    const head = words[runsAt + RUN_WORDS * run];
    assert.equal(head & 1, 1, "a pair's tiles are PARTIAL");
    pair = [head >>> 1, (words[runsAt + RUN_WORDS * run + 1] & ~PAIR_BIT) >>> 0];
    run++;
  }
  const tiles: [number, boolean][] = [];
  for (; run < last; run++) {
    const head = words[runsAt + RUN_WORDS * run];
    const length = words[runsAt + RUN_WORDS * run + 1];
    assert.equal(length & PAIR_BIT, 0, "only a row's first run is a pair");
    for (let kt = head >>> 1; kt < (head >>> 1) + length; kt++) tiles.push([kt, (head & 1) === 1]);
  }
  return { pair, tiles };
}

/** The bands' own rule, pair by pair (DESIGN §2). */
function allows(p: { kind: string; [k: string]: unknown }, n: number, q: number, k: number) {
  if (p.kind === "ring") {
    const d = Math.abs(q - k);
    return Math.min(d, n - d) <= (p.radius as number);
  }
  return k - q >= -(p.left as number) && k - q <= (p.right as number);
}

Deno.test("edge pairs: every tile is walked once, and each pair tile is unseen by the other half", () => {
  const n = 1024;
  const bands = [
    { kind: "ring", radius: 1 },
    { kind: "ring", radius: 40 },
    { kind: "ring", radius: 128 },
    { kind: "ring", radius: 300 },
    { kind: "window", left: 0, right: 0 },
    { kind: "window", left: 70, right: 0 },
    { kind: "window", left: 5, right: 90 },
    { kind: "window", left: 256, right: 256 },
  ] as const;
  for (
    const tiles of [{ tileQ: 64, tileK: 32 }, { tileQ: 32, tileK: 16 }, { tileQ: 16, tileK: 32 }]
  ) {
    for (const band of bands) {
      // Alone, and as the first component of a union (the stride component excludes it).
      for (const pattern of [band, { kind: "union", of: [band, { kind: "stride", period: 7 }] }]) {
        const shape = { batch: 1, headsQ: 1, headsKV: 1, seqLen: n, headDim: 32 };
        const c = compile(pattern as Pattern, { shape, tiles: { ...tiles, rowsPerThread: 2 } });
        const mask = c.plan.branches[0].components[0].mask;
        const label = `${JSON.stringify(pattern)} ${tiles.tileQ}x${tiles.tileK}`;
        let pairs = 0;
        for (let t = 0; t < mask.qTiles; t++) {
          const want: [number, boolean][] = [];
          forEachKeyTile(mask, t, (kt, partial) => want.push([kt, partial]));
          const got = walk(words(c, "schedule"), t);
          const visited = [...got.tiles, ...got.pair ? got.pair.map((kt) => [kt, true]) : []]
            .sort((x, y) => (x[0] as number) - (y[0] as number));
          assert.deepEqual(visited, want, `${label} query tile ${t}`);
          if (!got.pair) continue;
          pairs++;
          const half = tiles.tileQ / 2;
          got.pair.forEach((kt, side) => {
            // Tile A (side 0): rows of the lower half see none of it; tile B: the upper half.
            let seenBySide = false;
            for (let r = 0; r < tiles.tileQ; r++) {
              for (let k = kt * tiles.tileK; k < (kt + 1) * tiles.tileK; k++) {
                const allowed = allows(band, n, t * tiles.tileQ + r, k);
                if (Math.floor(r / half) !== side) {
                  assert.ok(!allowed, `${label} tile ${kt} row ${r} key ${k}`);
                }
                seenBySide ||= allowed;
              }
            }
            assert.ok(seenBySide, `${label} pair tile ${kt} is seen by its half`);
          });
        }
        // Bands wider than a tile pair every query tile but, for windows, the first and last.
        if (band.kind === "ring" && tiles.tileQ === 64) assert.equal(pairs, mask.qTiles, label);
      }
    }
  }
});

Deno.test("edge pairs: ring(128) with 64x32 tiles takes 9 steps per query tile instead of 10", () => {
  const shape = { batch: 1, headsQ: 1, headsKV: 1, seqLen: 4096, headDim: 64 };
  const tiles = { tileQ: 64, tileK: 32, rowsPerThread: 2, threads: 128 };
  const c = compile({ kind: "ring", radius: 128 }, { shape, tiles });
  for (let t = 0; t < 64; t++) {
    const { pair, tiles: rest } = walk(words(c, "schedule"), t);
    // Keys 64t - 128 .. 64t - 97 (rows 0-31 only) and 64t + 160 .. 64t + 191 (rows 32-63).
    assert.deepEqual(pair, [(2 * t - 4 + 128) % 128, (2 * t + 5) % 128], `query tile ${t}`);
    assert.equal(rest.length, 8);
  }
  assert.deepEqual(c.edgePairs, [[64]], "every query tile saves a step");
  const off = compile({ kind: "ring", radius: 128 }, { shape, tiles, edgePairs: false });
  assert.deepEqual(off.edgePairs, [[0]]);
  assert.equal(walk(words(off, "schedule"), 5).pair, undefined);
  assert.equal(walk(words(off, "schedule"), 5).tiles.length, 10);
  assert.ok(!off.passes[0].wgsl.includes("PAIR_BIT"));
});

Deno.test("edge pairs: only bands in natural order on a complete grid walk them", () => {
  const plain = { rowsPerThread: 2, prefetch: true, plain: true, allRows: true };
  const component = (pattern: Pattern, n: number) =>
    planPattern(pattern, n, { tileQ: 64, tileK: 32 }).branches[0].components[0];
  const ring = component({ kind: "ring", radius: 40 }, 1024);
  assert.ok(walksEdgePairs(ring, { n: 1024, ...plain }));
  assert.ok(!walksEdgePairs(ring, { n: 1024, ...plain, prefetch: false }));
  assert.ok(!walksEdgePairs(ring, { n: 1024, ...plain, plain: false }));
  assert.ok(!walksEdgePairs(ring, { n: 1024, ...plain, rowsPerThread: 64 }), "halves split rows");
  assert.ok(!walksEdgePairs(ring, { n: 1024, ...plain, allRows: false }), "queries: some rows");
  for (
    const p of [{ kind: "dense" }, { kind: "causal" }, { kind: "stride", period: 16 }] as const
  ) {
    assert.ok(!walksEdgePairs(component(p, 1024), { n: 1024, ...plain }), p.kind);
  }
  const padded = component({ kind: "window", left: 40, right: 40 }, 1000);
  assert.ok(!walksEdgePairs(padded, { n: 1000, ...plain }), "N not a multiple of the tiles");
  // Through compile: a scored band keeps the plain kernel.
  const shape = { batch: 1, headsQ: 1, headsKV: 1, seqLen: 1024, headDim: 32 };
  const scored = compile({
    kind: "scored",
    pattern: { kind: "window", left: 40, right: 40 },
    score: { expr: "s * 0.5" },
  }, { shape, tiles: { tileQ: 64, tileK: 32 } });
  assert.ok(!scored.passes.some((p) => p.wgsl.includes("PAIR_BIT")));
});

Deno.test("edge pairs by default: float32 every band, float16 a pattern of one kernel", () => {
  const shape = { batch: 1, headsQ: 2, headsKV: 2, seqLen: 4096, headDim: 64 };
  const tiles = { tileQ: 64, tileK: 32, rowsPerThread: 2, threads: 128 };
  const pairs = (pattern: Pattern, dtype: "f32" | "f16", edgePairs?: boolean) =>
    compile(pattern, { shape, dtype, tiles, edgePairs }).passes
      .some((p) => p.wgsl.includes("PAIR_BIT"));
  const ring: Pattern = { kind: "ring", radius: 128 };
  const union: Pattern = { kind: "union", of: [ring, { kind: "stride", period: 16 }] };
  const gated: Pattern = { kind: "gated", branches: [ring, { kind: "stride", period: 16 }] };
  assert.ok(pairs(ring, "f16") && pairs(ring, "f32"));
  assert.ok(pairs(union, "f32") && pairs(gated, "f32"));
  // Two kernels in float16: the pair step's WGSL would cost more compile time than it saves.
  assert.ok(!pairs(union, "f16") && !pairs(gated, "f16"));
  assert.ok(pairs(union, "f16", true), "asked for, float16 pairs any band");
  assert.ok(!pairs(ring, "f32", false));
});
