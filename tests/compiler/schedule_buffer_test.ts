/**
 * The packed schedule buffer, read the way the kernel reads it (header slot -> row pointers ->
 * runs of `[kvStart << 1 | partial, kvLength]`), gives back every component's BlockMask tile for
 * tile; and a kernel's WGSL names only its slot, so it does not change when other components'
 * schedules do.
 */
import assert from "node:assert/strict";
import { forEachKeyTile } from "../../compiler/block_mask.ts";
import { compile } from "../../compiler/compile.ts";
import { pipelineKey } from "../../compiler/mod.ts";
import { planPattern } from "../../compiler/plan.ts";
import {
  HEADER_WORDS,
  packSchedules,
  RUN_WORDS,
  SLOT_WORDS,
} from "../../compiler/schedule_buffer.ts";
import type { Pattern } from "../../dsl/schema.ts";
import { memberSettings } from "./_member_settings.ts";
import { words } from "./_buffers.ts";

/** The kernel's walk (key_loop_wgsl.ts), in TypeScript: the key tiles of one query tile. */
function kernelWalk(words: Uint32Array, slot: number, qTile: number): [number, boolean][] {
  const header = HEADER_WORDS + SLOT_WORDS * slot;
  const rowsAt = words[header], runsAt = words[header + 1];
  const tiles: [number, boolean][] = [];
  for (let run = words[rowsAt + qTile]; run < words[rowsAt + qTile + 1]; run++) {
    const head = words[runsAt + RUN_WORDS * run];
    const length = words[runsAt + RUN_WORDS * run + 1];
    for (let kt = head >>> 1; kt < (head >>> 1) + length; kt++) tiles.push([kt, (head & 1) === 1]);
  }
  return tiles;
}

Deno.test("schedule buffer: the kernel's walk gives back every component's tiles", () => {
  const patterns: Pattern[] = [
    { kind: "causal" },
    { kind: "union", of: [{ kind: "ring", radius: 20 }, { kind: "stride", period: 7 }] },
    {
      kind: "union",
      of: [
        { kind: "window", left: 30, right: 30 },
        { kind: "global", tokens: [0, 1, 2, 100] },
        { kind: "random", blocks: 2, blockSize: 16, seed: 3 },
      ],
    },
    { kind: "gated", branches: [{ kind: "ring", radius: 9 }, { kind: "stride", period: 5 }] },
  ];
  for (const pattern of patterns) {
    const plan = planPattern(pattern, 300, { tileQ: 16, tileK: 8 });
    const { words, slots } = packSchedules(plan, 64);
    assert.deepEqual(Array.from(words.subarray(0, 2)), [16, 8], "header [D / 4, tileK]");
    let expectedSlot = 0;
    plan.branches.forEach((branch, b) => {
      branch.components.forEach((c, j) => {
        assert.equal(slots[b][j], expectedSlot++, "slots count components branch by branch");
        for (let t = 0; t < c.mask.qTiles; t++) {
          const want: [number, boolean][] = [];
          forEachKeyTile(c.mask, t, (kt, partial) => want.push([kt, partial]));
          assert.deepEqual(
            kernelWalk(words, slots[b][j], t),
            want,
            `${JSON.stringify(pattern)} branch ${b} component ${j} query tile ${t}`,
          );
        }
      });
    });
    // Every word is a header word, a row pointer or a run word: nothing else is packed.
    const components = plan.branches.flatMap((b) => b.components);
    const size = HEADER_WORDS + components.reduce(
      (sum, c) => sum + SLOT_WORDS + c.mask.qTiles + 1 + RUN_WORDS * c.mask.kvStart.length,
      0,
    );
    assert.equal(words.length, size);
  }
});

Deno.test("schedule buffer: a kernel's WGSL does not depend on other components' schedules", () => {
  // Branch 0 has one run per row (radius 2) or three (radius 40): branch 1's rows and runs move.
  // Both branches' kernels share one module; branch 1's pipeline reads slot 1.
  const shape = { batch: 1, headsQ: 2, headsKV: 2, seqLen: 512, headDim: 32 };
  const tiles = { tileQ: 32, tileK: 32 };
  const causalPass = (first: Pattern) => {
    const c = compile({ kind: "gated", branches: [first, { kind: "causal" }] }, { shape, tiles });
    return { pass: c.passes.find((p) => p.label === "branch 1 component 0")!, c };
  };
  const a = causalPass({ kind: "ring", radius: 2 }), b = causalPass({ kind: "ring", radius: 40 });
  assert.notEqual(words(a.c, "schedule").length, words(b.c, "schedule").length);
  assert.equal(pipelineKey(a.pass.wgsl), pipelineKey(b.pass.wgsl));
  assert.deepEqual(memberSettings(a.pass), memberSettings(b.pass));
  assert.equal(memberSettings(a.pass)?.SCHEDULE_SLOT, 1);
  assert.ok(a.pass.wgsl.includes(`let slot = ${HEADER_WORDS}u + ${SLOT_WORDS}u * SCHEDULE_SLOT;`));
  // A kernel of its own (a scored branch keeps its module) names its slot in the text.
  const scored = compile({
    kind: "gated",
    branches: [{ kind: "ring", radius: 2 }, {
      kind: "scored",
      pattern: { kind: "causal" },
      score: { expr: "s * 0.5" },
    }],
  }, { shape, tiles }).passes.find((p) => p.label === "branch 1 component 0")!;
  assert.equal(scored.entryPoint, undefined);
  assert.ok(scored.wgsl.includes(`let slot = ${HEADER_WORDS}u + ${SLOT_WORDS}u * 1u;`), "slot 1");
});
