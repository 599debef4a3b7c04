/**
 * Schedules against the element-level truth: over many random patterns, shapes and tile sizes,
 * (1) a branch's components partition exactly the reference's allowed set, (2) every pair a
 * component allows lies in a tile its BlockMask visits, and (3) a FULL tile holds only pairs
 * the component allows. Together these are what the kernel needs to be exact.
 */
import assert from "node:assert/strict";
import { forEachKeyTile } from "../../compiler/block_mask.ts";
import { layoutPositions } from "../../compiler/layout.ts";
import { type Component, planPattern, planTileCounts } from "../../compiler/plan.ts";
import type { Pattern } from "../../dsl/schema.ts";
import { allowedMask } from "../../runtime/reference/mod.ts";
import { mulberry32 } from "../../runtime/seeded_random.ts";
import { componentAllows } from "./_element_truth.ts";

/** Checks invariants (1)-(3) for one pattern at one N and tile shape. */
function checkSchedules(pattern: Pattern, n: number, tileQ: number, tileK: number): void {
  const plan = planPattern(pattern, n, { tileQ, tileK });
  const branches = pattern.kind === "gated" ? pattern.branches : [pattern];
  plan.branches.forEach((branch, b) => {
    const truth = allowedMask(branches[b], n);
    const where = `${JSON.stringify(branches[b])} N=${n} tile ${tileQ}x${tileK}`;
    for (let q = 0; q < n; q++) {
      for (let k = 0; k < n; k++) {
        const owners = branch.components.filter((c) => componentAllows(c, q, k, n)).length;
        assert.equal(
          owners,
          truth(q, k) ? 1 : 0,
          `${where}: pair (${q}, ${k}) has ${owners} owners`,
        );
      }
    }
    for (const c of branch.components) checkMask(c, n, where);
  });
}

function checkMask(c: Component, n: number, where: string): void {
  const qPos = layoutPositions(c.qLayout, n), kPos = layoutPositions(c.kLayout, n);
  const m = c.mask;
  for (let t = 0; t < m.qTiles; t++) {
    const visited = new Map<number, number>();
    forEachKeyTile(m, t, (kt, partial) => {
      assert.ok(!visited.has(kt), `${where}: tile (${t}, ${kt}) is listed twice`);
      visited.set(kt, partial ? 1 : 0);
    });
    for (let kt = 0; kt < m.kTiles; kt++) {
      let any = false, all = true;
      for (let i = t * m.tileQ; i < Math.min(qPos.length, (t + 1) * m.tileQ); i++) {
        for (let j = kt * m.tileK; j < Math.min(kPos.length, (kt + 1) * m.tileK); j++) {
          const a = componentAllows(c, qPos[i], kPos[j], n);
          any ||= a;
          all &&= a;
        }
      }
      const kind = visited.get(kt);
      assert.ok(
        !any || kind !== undefined,
        `${where}: tile (${t}, ${kt}) holds allowed pairs but is skipped`,
      );
      assert.ok(
        kind !== 0 || all,
        `${where}: tile (${t}, ${kt}) is FULL but not every pair is allowed`,
      );
    }
  }
}

function randomLeaf(rand: () => number, n: number): Pattern {
  const int = (lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo + 1));
  switch (int(0, 6)) {
    case 0:
      return { kind: "causal" };
    case 1:
      return { kind: "window", left: int(0, n), right: int(0, n / 2) };
    case 2:
      return { kind: "ring", radius: int(0, n) };
    case 3:
      return { kind: "stride", period: int(1, n + 2) };
    case 4:
      return { kind: "global", tokens: Array.from({ length: int(0, 4) }, () => int(0, n - 1)) };
    case 5:
      return { kind: "random", blocks: int(1, 3), blockSize: int(1, 40), seed: int(0, 1000) };
    default:
      return { kind: "dense" };
  }
}

function randomPattern(rand: () => number, n: number, depth: number): Pattern {
  const r = rand();
  if (depth === 0 || r < 0.4) return randomLeaf(rand, n);
  const members = Array.from(
    { length: 1 + Math.floor(rand() * 3) },
    () => randomPattern(rand, n, depth - 1),
  );
  return r < 0.75 ? { kind: "union", of: members } : { kind: "intersect", of: members };
}

Deno.test("schedules: every leaf kind at edge sizes", () => {
  const leaves: Pattern[] = [
    { kind: "dense" },
    { kind: "causal" },
    { kind: "window", left: 5, right: 2 },
    { kind: "ring", radius: 3 },
    { kind: "ring", radius: 40 },
    { kind: "stride", period: 1 },
    { kind: "stride", period: 7 },
    { kind: "stride", period: 16 },
    { kind: "stride", period: 200 },
    { kind: "global", tokens: [0, 13, 96] },
    { kind: "random", blocks: 3, blockSize: 8, seed: 1 },
    { kind: "random", blocks: 2, blockSize: 24, seed: 7 },
  ];
  for (const n of [1, 2, 33, 97]) {
    for (const p of leaves) {
      const fitted = p.kind === "global" ? { ...p, tokens: p.tokens.filter((t) => t < n) } : p;
      for (const [tq, tk] of [[8, 4], [16, 16], [64, 32]]) checkSchedules(fitted, n, tq, tk);
    }
  }
});

Deno.test("schedules: random unions and intersections match the reference", () => {
  const rand = mulberry32(2026); // seeded so that a failure reproduces
  for (let i = 0; i < 150; i++) {
    const n = 1 + Math.floor(rand() * 90);
    const pattern = randomPattern(rand, n, 2);
    const [tq, tk] = [[4, 4], [8, 4], [16, 8], [32, 16]][Math.floor(rand() * 4)];
    checkSchedules(pattern, n, tq, tk);
  }
});

Deno.test("schedules: gated branches are planned separately", () => {
  checkSchedules(
    { kind: "gated", branches: [{ kind: "ring", radius: 4 }, { kind: "stride", period: 5 }] },
    61,
    8,
    4,
  );
});

Deno.test("tiles visited: stride(16) and ring(128) at N = 4096 stay near their density", () => {
  const n = 4096, tiles = { tileQ: 64, tileK: 32 };
  const dense = (n / tiles.tileQ) * (n / tiles.tileK);
  const stride = planTileCounts(planPattern({ kind: "stride", period: 16 }, n, tiles));
  // Residue order makes stride block-diagonal: exactly 1/16 when tiles don't straddle classes.
  assert.ok(stride.visited <= dense / 16 + n / tiles.tileQ, `stride visited ${stride.visited}`);
  const ring = planTileCounts(planPattern({ kind: "ring", radius: 128 }, n, tiles));
  // The band is 2r+1 keys wide, plus one key tile on each side where it starts mid-tile.
  const band = ((2 * 128 + tiles.tileQ) / n) * dense + 2 * (n / tiles.tileQ);
  assert.ok(ring.visited <= band, `ring visited ${ring.visited} > ${band}`);
});
