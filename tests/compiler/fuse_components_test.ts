/**
 * Fused components: the union of BlockMasks against a tile-by-tile union of random masks, and
 * which components the planner fuses (natural layouts, consecutive) and which it keeps apart.
 * The element-level exactness of fused schedules is checked with every other plan in
 * schedule_test.ts, and on the GPU by the golden and fuzz tests.
 */
import assert from "node:assert/strict";
import type { BlockMask } from "../../compiler/block_mask.ts";
import { forEachKeyTile } from "../../compiler/block_mask.ts";
import { unionBlockMask } from "../../compiler/fuse_components.ts";
import { layoutLabel } from "../../compiler/layout.ts";
import { planPattern } from "../../compiler/plan.ts";
import { termsLabel } from "../../compiler/atoms.ts";
import { mulberry32 } from "../../runtime/seeded_random.ts";

/** A mask from per-tile kinds (0 skipped, 1 FULL, 2 PARTIAL), runs maximal. */
function maskOf(kinds: number[][], kTiles: number): BlockMask {
  const offsets = [0], start: number[] = [], length: number[] = [], partial: number[] = [];
  for (const row of kinds) {
    for (let kt = 0; kt < kTiles; kt++) {
      if (row[kt] === 0) continue;
      const p = row[kt] === 2 ? 1 : 0, last = start.length - 1;
      if (
        last >= offsets[offsets.length - 1] && partial[last] === p &&
        start[last] + length[last] === kt
      ) {
        length[last]++;
      } else {
        start.push(kt);
        length.push(1);
        partial.push(p);
      }
    }
    offsets.push(start.length);
  }
  return {
    qTiles: kinds.length,
    kTiles,
    tileQ: 4,
    tileK: 4,
    offsets: Uint32Array.from(offsets),
    kvStart: Uint32Array.from(start),
    kvLength: Uint32Array.from(length),
    partial: Uint8Array.from(partial),
  };
}

function kindsOf(m: BlockMask): number[][] {
  return Array.from({ length: m.qTiles }, (_, t) => {
    const row = new Array<number>(m.kTiles).fill(0);
    forEachKeyTile(m, t, (kt, p) => {
      assert.equal(row[kt], 0, `tile (${t}, ${kt}) listed twice`);
      row[kt] = p ? 2 : 1;
    });
    return row;
  });
}

Deno.test("the union of BlockMasks is the tile-by-tile union, FULL over PARTIAL, runs maximal", () => {
  const rand = mulberry32(20261201);
  for (let trial = 0; trial < 300; trial++) {
    const qTiles = 1 + Math.floor(rand() * 6), kTiles = 1 + Math.floor(rand() * 40);
    const count = 1 + Math.floor(rand() * 4);
    // Runs of one kind, so that masks have long runs as well as single tiles.
    const kinds = Array.from({ length: count }, () =>
      Array.from({ length: qTiles }, () => {
        const row: number[] = [];
        while (row.length < kTiles) {
          const k = Math.floor(rand() * 3), len = 1 + Math.floor(rand() * 6);
          for (let i = 0; i < len && row.length < kTiles; i++) row.push(k);
        }
        return row;
      }));
    const union = unionBlockMask(kinds.map((k) => maskOf(k, kTiles)));
    const want = Array.from(
      { length: qTiles },
      (_, t) =>
        Array.from({ length: kTiles }, (_, kt) => {
          const all = kinds.map((k) => k[t][kt]);
          return all.includes(1) ? 1 : all.includes(2) ? 2 : 0;
        }),
    );
    assert.deepEqual(kindsOf(union), want, `trial ${trial}`);
    for (let t = 0; t < qTiles; t++) {
      for (let r = union.offsets[t] + 1; r < union.offsets[t + 1]; r++) {
        const touches = union.kvStart[r - 1] + union.kvLength[r - 1] === union.kvStart[r];
        assert.ok(union.kvStart[r - 1] + union.kvLength[r - 1] <= union.kvStart[r], "ascending");
        assert.ok(!touches || union.partial[r - 1] !== union.partial[r], "runs are maximal");
      }
    }
  }
});

Deno.test("masks of different tile grids are refused", () => {
  const a = maskOf([[1, 0]], 2), b = maskOf([[1, 0, 2]], 3);
  assert.throws(() => unionBlockMask([a, b]), /different tile grids/);
});

Deno.test("consecutive natural-layout terms fuse into one component; others stay apart", () => {
  const tiles = { tileQ: 64, tileK: 32 };
  const components = (pattern: unknown, n = 65536) =>
    planPattern(pattern as never, n, tiles).branches[0].components.map((c) =>
      `${termsLabel(c.terms)}: ${layoutLabel(c.qLayout)}/${layoutLabel(c.kLayout)}`
    );
  // BigBird with the first 64 tokens global: its global columns take natural key order (as few
  // tiles as gathering them), so three terms share one kernel; the global rows split apart.
  const bigbird = {
    kind: "union",
    of: [
      { kind: "window", left: 192, right: 192 },
      { kind: "global", tokens: Array.from({ length: 64 }, (_, i) => i) },
      { kind: "random", blocks: 3, blockSize: 128, seed: 1 },
    ],
  };
  assert.deepEqual(components(bigbird), [
    "window(192,192) | random(3x128,seed 1) | globalCols(64 tokens): identity/identity",
    "globalRows(64 tokens): gather(64)/identity",
  ]);
  // Scattered global tokens are cheaper gathered: then only the window and random blocks fuse.
  const scattered = {
    ...bigbird,
    of: [bigbird.of[0], { kind: "global", tokens: [5, 9000, 30000] }, bigbird.of[2]],
  };
  assert.deepEqual(components(scattered).map((c) => c.split(":")[1].trim()), [
    "identity/identity",
    "identity/gather(3)",
    "gather(3)/identity",
  ]);
  // Residue layouts (stride) never fuse with natural ones.
  assert.deepEqual(
    components({
      kind: "union",
      of: [{ kind: "ring", radius: 128 }, { kind: "stride", period: 16 }],
    }),
    ["ring(128): identity/identity", "stride(16): residue(16)/residue(16)"],
  );
  assert.deepEqual(
    components(
      { kind: "union", of: [{ kind: "causal" }, { kind: "window", left: 8, right: 8 }] },
      256,
    ),
    ["causal | window(8,8): identity/identity"],
  );
});
