/**
 * `explain`'s density and picture come from the tile schedule (FULL tiles by area, PARTIAL
 * tiles element by element); here they are checked against the reference's `allowedMask`
 * evaluated on all N² pairs, for every leaf kind, combinators, gated branches and the examples.
 * Runs without a GPU.
 */
import assert from "node:assert/strict";
import { branchMasks } from "../../cli/_mask_picture.ts";
import { planPattern } from "../../compiler/plan.ts";
import { parsePattern, type Pattern } from "../../dsl/schema.ts";
import { exampleNames, examplePattern } from "../../examples/registry.ts";
import { allowedMask } from "../../runtime/reference/mod.ts";

const PATTERNS: Pattern[] = [
  { kind: "dense" },
  { kind: "causal" },
  { kind: "window", left: 5, right: 2 },
  { kind: "ring", radius: 7 },
  { kind: "stride", period: 5 },
  { kind: "global", tokens: [0, 3, 40] },
  { kind: "random", blocks: 2, blockSize: 8, seed: 9 },
  { kind: "union", of: [{ kind: "ring", radius: 4 }, { kind: "stride", period: 7 }] },
  { kind: "intersect", of: [{ kind: "stride", period: 3 }, { kind: "causal" }] },
  {
    kind: "union",
    of: [{ kind: "window", left: 3, right: 3 }, { kind: "global", tokens: [1, 2] }, {
      kind: "random",
      blocks: 1,
      blockSize: 16,
      seed: 4,
    }],
  },
  { kind: "gated", branches: [{ kind: "ring", radius: 3 }, { kind: "stride", period: 6 }] },
];

function check(pattern: Pattern, n: number, tiles: { tileQ: number; tileK: number }): void {
  const plan = planPattern(parsePattern(pattern), n, tiles);
  const masks = branchMasks(plan);
  const branches = pattern.kind === "gated" ? pattern.branches : [pattern];
  assert.equal(masks.length, branches.length);
  branches.forEach((branch, b) => {
    const allowed = allowedMask(branch, n);
    const m = masks[b];
    const grid = new Uint8Array(m.cells * m.cells);
    let count = 0;
    for (let q = 0; q < n; q++) {
      for (let k = 0; k < n; k++) {
        if (!allowed(q, k)) continue;
        count++;
        grid[Math.floor(q / m.cellSize) * m.cells + Math.floor(k / m.cellSize)] = 1;
      }
    }
    const label = `${JSON.stringify(branch)} at N=${n}, tiles ${tiles.tileQ}x${tiles.tileK}`;
    assert.equal(m.allowed, count, `allowed pairs of ${label}`);
    assert.ok(m.visitedArea >= m.allowed, `visited area of ${label}`);
    assert.deepEqual(m.grid, grid, `picture of ${label}`);
  });
}

Deno.test("explain's density and picture match allowedMask on all N² pairs", () => {
  for (const pattern of PATTERNS) {
    for (const n of [1, 17, 64, 100, 203]) {
      // Global tokens must be < N; the largest above is 40.
      if (JSON.stringify(pattern).includes('"global"') && n <= 40) continue;
      for (const tiles of [{ tileQ: 16, tileK: 8 }, { tileQ: 64, tileK: 32 }]) {
        check(pattern, n, tiles);
      }
    }
  }
});

Deno.test("explain's density and picture match allowedMask for every example", async () => {
  for (const name of exampleNames()) {
    const pattern = (await examplePattern(name))!;
    // A hashBucket's or a select's allowed set depends on the data: explain draws no mask for
    // it (a select's sample choice: tests/cli/select_picture_test.ts).
    if (/"(hashBucket|select)"/.test(JSON.stringify(pattern))) continue;
    // Linear attention has no tile schedule: explain draws no mask for it either.
    if (JSON.stringify(pattern).includes('"linear"')) continue;
    for (const n of [64, 300]) check(pattern, n, { tileQ: 64, tileK: 16 });
  }
});
