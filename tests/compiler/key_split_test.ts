/**
 * Split-K schedules: every key tile of a query tile lands in exactly one chunk, in order, with
 * its kind; only gathered-query components split, into as many chunks as fill the GPU, and
 * the chunk count changes no kernel.
 */
import assert from "node:assert/strict";
import { compile } from "../../compiler/mod.ts";
import {
  keySplits,
  SPLIT_TARGET_WORKGROUPS,
  splitKeyRows,
  splittable,
} from "../../compiler/key_split.ts";
import { pipelineKey } from "../../compiler/mod.ts";
import { planPattern } from "../../compiler/plan.ts";
import { bytes } from "./_buffers.ts";
import type { BlockMask } from "../../compiler/block_mask.ts";
import type { Pattern } from "../../dsl/schema.ts";

/** Every visited tile of row t as [tile, partial], in order. */
function tilesOf(mask: BlockMask, t: number): [number, number][] {
  const out: [number, number][] = [];
  for (let r = mask.offsets[t]; r < mask.offsets[t + 1]; r++) {
    for (let i = 0; i < mask.kvLength[r]; i++) out.push([mask.kvStart[r] + i, mask.partial[r]]);
  }
  return out;
}

const BIGBIRD: Pattern = {
  kind: "union",
  of: [
    { kind: "window", left: 40, right: 40 },
    { kind: "global", tokens: [0, 3, 77, 200] },
    { kind: "random", blocks: 2, blockSize: 16, seed: 5 },
  ],
};

Deno.test("split rows cover each query tile's key tiles once, in order, kinds kept", () => {
  const plan = planPattern(BIGBIRD, 1000, { tileQ: 8, tileK: 8 });
  for (const c of plan.branches[0].components) {
    for (const splits of [1, 2, 3, 7, 200]) {
      const s = splitKeyRows(c.mask, splits);
      assert.equal(s.qTiles, c.mask.qTiles * splits);
      assert.equal(s.offsets.length, s.qTiles + 1);
      for (let t = 0; t < c.mask.qTiles; t++) {
        const want = tilesOf(c.mask, t);
        const chunks = Array.from({ length: splits }, (_, i) => tilesOf(s, t * splits + i));
        assert.deepEqual(chunks.flat(), want, `splits ${splits}, row ${t}`);
        const per = Math.ceil(want.length / splits);
        for (const chunk of chunks) assert.ok(chunk.length <= per);
      }
      for (let r = 0; r < s.kvLength.length; r++) assert.ok(s.kvLength[r] >= 1);
    }
  }
});

Deno.test("only global rows split, into chunks that fill the GPU; the count is a number", () => {
  const tiles = { tileQ: 64, tileK: 32 };
  const componentsAt = (n: number) => planPattern(BIGBIRD, n, tiles).branches[0].components;
  const rowsAt = (n: number) => componentsAt(n).find((c) => c.qLayout.kind === "gather")!;
  assert.deepEqual(componentsAt(65536).map(splittable), [false, false, false, true]);
  // One query tile of 4 global rows per head, 2048 key tiles each: 8 heads -> 512 workgroups.
  assert.equal(keySplits(rowsAt(65536), 8, 64), SPLIT_TARGET_WORKGROUPS / 8);
  // Short rows are not worth it: at N = 512 a row is 16 key tiles.
  assert.equal(keySplits(rowsAt(512), 8, 64), 1);
  // Many heads fill the GPU without splitting.
  assert.equal(keySplits(rowsAt(65536), 512, 64), 1);
  // The compiled call: a split kernel and a combine pass, partials sized for every chunk.
  const shape = { batch: 1, headsQ: 8, headsKV: 8, seqLen: 65536, headDim: 64 };
  const compiled = compile(BIGBIRD, { shape, tiles });
  const split = compiled.passes.find((p) => /key tiles in 64 chunks/.test(p.label))!;
  assert.deepEqual(split.workgroups, [64, 8]);
  assert.ok(compiled.passes.some((p) => /combine 64 chunks/.test(p.label)));
  assert.equal(bytes(compiled, "splitLse") / 4, 64 * 8 * 64);
  // The chunk count and the token count are runtime values: the same pipelines.
  const other: Pattern = {
    kind: "union",
    of: [
      { kind: "window", left: 40, right: 40 },
      { kind: "global", tokens: Array.from({ length: 100 }, (_, i) => 3 * i) },
      { kind: "random", blocks: 2, blockSize: 16, seed: 5 },
    ],
  };
  const wgsl = (p: Pattern, keySplits?: number) =>
    compile(p, { shape, tiles, keySplits }).passes.map((x) => pipelineKey(x.wgsl));
  assert.deepEqual(wgsl(other, 1), wgsl(BIGBIRD));
  assert.equal(
    bytes(compile(other, { shape, tiles }), "splitLse") / 4,
    keySplits(
      planPattern(other, 65536, tiles).branches[0].components[3],
      8,
      64,
    ) * 8 * 128,
  );
});
