/**
 * `deno task explain` at the sizes people try: N past what any plan can dispatch is one line
 * naming --seq-len and the largest N (it used to plan first, and at N = 2^31 - 1 crash out of
 * memory), N = 1,048,576 and 65536 explain and draw, and `--no-picture` skips the slow part.
 */
import assert from "node:assert/strict";
import { runScript } from "./_run_script.ts";
import { planPattern } from "../../compiler/mod.ts";
import { pictureWork } from "../../cli/_mask_picture.ts";

function assertOneLineError(r: { code: number; stderr: string }, says: RegExp) {
  assert.equal(r.code, 2, r.stderr);
  const lines = r.stderr.trimEnd().split("\n");
  assert.equal(lines.length, 1, r.stderr);
  assert.match(lines[0], /^error: /);
  assert.match(lines[0], says);
}

Deno.test("explain: an N past 65535 query tiles is one line naming --seq-len and the largest N", async () => {
  const stride = '{"kind":"stride","period":16}';
  // The default tiles are 32 queries tall: 65535 x 32 = 2097120 compiles, one more does not.
  const over = await explain([stride, "--seq-len", "2097121"]);
  assertOneLineError(over, /--seq-len 2097121 .*at most 2097120 .*--tiles 256xK: up to 16776960/);
  // The largest --seq-len the flag takes: refused at once, not planned until memory runs out.
  const huge = await explain(['{"kind":"dense"}', "--seq-len", "2147483647"]);
  assertOneLineError(huge, /--seq-len 2147483647 .*at most 2097120/);
  assert.ok(huge.seconds < 30, `took ${huge.seconds} s`);
  const tall = await explain([stride, "--seq-len", "16776961", "--tiles", "256x16"]);
  assertOneLineError(tall, /--seq-len 16776961 .*at most 16776960 with query tiles of 256/);
  const both = await explain([stride, "--seq-len", "64", "--no-picture", "--svg", "/dev/null"]);
  assertOneLineError(both, /--no-picture .*--svg/);
});

Deno.test("explain: N = 1048576 draws ring(128); dense with --no-picture is plan and WGSL only", async () => {
  const ring = await explain(['{"kind":"ring","radius":128}', "--seq-len", "1048576"]);
  assert.equal(ring.code, 0, ring.stderr);
  assert.match(ring.stdout, /N=1048576, tile \d+x\d+: \d+ of \d+ tiles visited/);
  assert.match(ring.stdout, /ring\(128\): 0\.0245% \(269484032 pairs/);
  assert.match(ring.stdout, /mask of ring\(128\) \(tile-level: a cell is 16384x16384 positions/);
  assert.match(ring.stdout, /reach \(on cells of 1024 positions/);
  assert.match(ring.stdout, /@compute/);
  assert.equal(ring.stderr, "", "no note: this plan is quick to draw");

  const dense = await explain(['{"kind":"dense"}', "--seq-len", "1048576", "--no-picture"]);
  assert.equal(dense.code, 0, dense.stderr);
  assert.match(dense.stdout, /2147483648 of 2147483648 tiles visited/);
  assert.match(dense.stdout, /density, mask pictures and reach: skipped \(--no-picture\)/);
  assert.doesNotMatch(dense.stdout, /^mask of /m);
  assert.match(dense.stdout, /@compute/);
  assert.ok(dense.seconds < 60, `took ${dense.seconds} s`);
});

Deno.test("explain: N = 65536 draws everything, --png included", async () => {
  const png = await Deno.makeTempFile({ suffix: ".png" });
  try {
    const r = await explain(["pi_attention", "--seq-len", "65536", "--png", png]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /mask of branch 1: stride\(16\)/);
    assert.match(r.stdout, /wrote the \d+x\d+ mask picture to /);
    assert.ok((await Deno.stat(png)).size > 1000);
  } finally {
    await Deno.remove(png);
  }
});

Deno.test("pictureWork counts the visited tiles and the pairs of partial tiles", () => {
  const tiles = { tileQ: 32, tileK: 16 };
  const dense = pictureWork(planPattern({ kind: "dense" }, 1 << 20, tiles));
  assert.deepEqual(dense, { tiles: 2 ** 31, pairs: 0 });
  const causal = pictureWork(planPattern({ kind: "causal" }, 1024, tiles));
  assert.equal(causal.tiles, 32 * 33);
  assert.equal(causal.pairs, 32 * 2 * 32 * 16); // two partial key tiles per query tile
  // lowRank landmarks add no pairs of positions: nothing to walk for them.
  const lowRank = pictureWork(planPattern({ kind: "lowRank", rank: 8 }, 1024, tiles));
  assert.deepEqual(lowRank, { tiles: 0, pairs: 0 });
});

/** `deno task explain` with these arguments. */
function explain(args: string[]) {
  return runScript("cli/explain.ts", args);
}
