/**
 * The benchmark's density, read off BlockMasks, against a brute-force count of the reference's
 * allowed set, for every suite pattern at N=257 (an odd N leaves ragged last tiles and
 * residue classes of unequal length). Then `bench/main.ts` end to end in a subprocess.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { chooseTiles, planPattern, type TileShape } from "../../compiler/mod.ts";
import type { Pattern } from "../../dsl/schema.ts";
import { allowedMask } from "../../runtime/reference/mod.ts";
import { landmarkAllows, landmarkRanks } from "../../runtime/reference/landmarks.ts";
import { landmarkGeometry } from "../../dsl/low_rank.ts";
import { planDensity } from "../../bench/density.ts";
import { SUITE } from "../../bench/suite.ts";
import { hashBranchDensity, needsCodes } from "../../bench/hash_density.ts";
import { hashLookup, referenceHashCodes } from "../../runtime/reference/mod.ts";
import { normalTensor } from "../../runtime/seeded_random.ts";

const N = 257;

/**
 * Allowed pairs of each branch, counted over all N² pairs with the reference's predicate, plus
 * the (query, landmark) pairs of any lowRank (pooled keys count as keys).
 */
function bruteForcePairs(pattern: Pattern, n: number): number[] {
  const branches = pattern.kind === "gated" ? pattern.branches : [pattern];
  return branches.map((b) => {
    const allows = allowedMask(b, n);
    let count = 0;
    for (let q = 0; q < n; q++) {
      for (let k = 0; k < n; k++) if (allows(q, k)) count++;
    }
    for (const rank of landmarkRanks(b)) {
      const landmark = landmarkAllows(b, n, rank);
      for (let q = 0; q < n; q++) {
        for (let j = 0; j < landmarkGeometry(n, rank).count; j++) if (landmark(q, j)) count++;
      }
    }
    return count;
  });
}

// The device's tile shape for D=64, and a small one so that N=257 crosses many tiles.
const TILE_SHAPES: TileShape[] = [chooseTiles(64), { tileQ: 16, tileK: 8 }];

for (const { name, pattern } of SUITE.filter((e) => !needsCodes(e.pattern))) {
  Deno.test(`density of ${name} at N=${N} matches a brute-force count`, () => {
    const expected = bruteForcePairs(pattern, N);
    // Work per N²: a gated pattern computes every branch's pairs.
    const expectedDensity = expected.reduce((s, x) => s + x, 0) / (N * N);
    for (const tiles of TILE_SHAPES) {
      const got = planDensity(planPattern(pattern, N, tiles));
      const where = `${name}, tile ${tiles.tileQ}x${tiles.tileK}`;
      assert.deepEqual(got.allowedPairs, expected, `${where}: allowed pairs per branch`);
      assert.equal(got.density, expectedDensity, `${where}: density`);
    }
  });
}

// hashBucket: density from codes, exact by inclusion-exclusion (one hashBucket) or sampled
// rows (mixed), against a brute-force count over the reference's allowed set with those codes.
for (
  const [label, pattern] of [
    ["hashBucket(8, 3 rounds)", { kind: "hashBucket", buckets: 8, rounds: 3, seed: 5 }],
    ["hashBucket(4, 1 round)", { kind: "hashBucket", buckets: 4, rounds: 1, seed: 6 }],
    ["causal ∩ hashBucket(4, 2 rounds)", {
      kind: "intersect",
      of: [{ kind: "causal" }, { kind: "hashBucket", buckets: 4, rounds: 2, seed: 7 }],
    }],
  ] as [string, Pattern][]
) {
  Deno.test(`density of ${label} from the codes matches a brute-force count`, () => {
    const shape = { batch: 2, headsQ: 2, headsKV: 1, seqLen: 97, headDim: 16 };
    const q = normalTensor(2 * 2 * 97 * 16, 1), k = normalTensor(2 * 97 * 16, 2);
    const codes = referenceHashCodes(pattern, shape, q, k);
    let pairs = 0;
    for (let b = 0; b < 2; b++) {
      for (let h = 0; h < 2; h++) {
        const allows = allowedMask(pattern, 97, { hash: hashLookup(codes, shape, b, h) });
        for (let i = 0; i < 97; i++) for (let j = 0; j < 97; j++) if (allows(i, j)) pairs++;
      }
    }
    const got = hashBranchDensity(pattern, shape, codes);
    assert.ok(pairs > 0, "some pairs collide");
    // Sampling takes every row here (N < 512 sampled rows), so both counts are exact.
    assert.ok(Math.abs(got.density - pairs / (4 * 97 * 97)) < 1e-12, `${label}: ${got.density}`);
    assert.equal(got.exact, pattern.kind === "hashBucket");
  });
}

Deno.test("bench/main.ts writes rows with finite ms and density in (0, 1]", async () => {
  const json = await Deno.makeTempFile({ suffix: ".json" });
  try {
    const main = fileURLToPath(new URL("../../bench/main.ts", import.meta.url));
    const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        main,
        "--n",
        "128",
        "--patterns",
        "ring,stride16",
        "--reps",
        "1",
        "--json",
        json,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const decode = (b: Uint8Array) => new TextDecoder().decode(b);
    assert.equal(code, 0, `bench failed:\n${decode(stderr)}`);
    assert.match(decode(stdout), /stride16/);
    const rows = JSON.parse(await Deno.readTextFile(json));
    assert.deepEqual(rows.map((r: { pattern: string }) => r.pattern), ["ring", "stride16"]);
    for (const r of rows) {
      assert.equal(r.n, 128);
      assert.ok(Number.isFinite(r.ms) && r.ms > 0, `${r.pattern}: ms ${r.ms}`);
      assert.ok(r.density > 0 && r.density <= 1, `${r.pattern}: density ${r.density}`);
      assert.ok(r.timer === "gpu" || r.timer === "wall", `${r.pattern}: timer ${r.timer}`);
    }
  } finally {
    await Deno.remove(json);
  }
});
