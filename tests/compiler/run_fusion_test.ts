/**
 * Run fusion (compiler/run_fusion.ts): which components share a kernel, and the tagged runs a
 * fused kernel walks, read back from the schedule buffer the way the kernel reads them.
 */
import assert from "node:assert/strict";
import { forEachKeyTile } from "../../compiler/block_mask.ts";
import { compile } from "../../compiler/compile.ts";
import { pipelineKey } from "../../compiler/mod.ts";
import { planPattern } from "../../compiler/plan.ts";
import { fusionGroups, MAX_FUSED, TAG_SHIFT, tagRuns } from "../../compiler/run_fusion.ts";
import {
  HEADER_WORDS,
  packSchedules,
  RUN_WORDS,
  SLOT_WORDS,
} from "../../compiler/schedule_buffer.ts";
import type { Pattern } from "../../dsl/schema.ts";

const bigbird = (tokens: number[]): Pattern => ({
  kind: "union",
  of: [
    { kind: "window", left: 9, right: 9 },
    { kind: "global", tokens },
    { kind: "random", blocks: 2, blockSize: 16, seed: 4 },
  ],
});

Deno.test("run fusion: consecutive natural-layout components form one group", () => {
  // Scattered global tokens are gathered: window and random fuse, columns and rows stay apart.
  const scattered = planPattern(bigbird([0, 1, 64]), 256, { tileQ: 16, tileK: 16 });
  const layouts = scattered.branches[0].components.map((c) =>
    `${c.qLayout.kind}/${c.kLayout.kind}`
  );
  assert.deepEqual(layouts, [
    "identity/identity",
    "identity/identity",
    "identity/gather",
    "gather/identity",
  ]);
  assert.deepEqual(fusionGroups(scattered.branches[0].components, () => ""), [[0, 1], [2], [3]]);
  // Tokens filling key tile 0 cost the same in natural order, so the columns join the window's.
  const whole = planPattern(bigbird(Array.from({ length: 16 }, (_, i) => i)), 256, {
    tileQ: 16,
    tileK: 16,
  });
  const components = whole.branches[0].components;
  assert.equal(components[2].kLayout.kind, "identity");
  assert.deepEqual(fusionGroups(components, () => ""), [[0, 1, 2], [3]]);
  // A component that may not fuse (split-K, say) breaks the run.
  assert.deepEqual(fusionGroups(components, (j) => (j === 1 ? undefined : "")), [[0], [1], [2], [
    3,
  ]]);
});

Deno.test("run fusion: at most MAX_FUSED components per kernel", () => {
  const windows: Pattern = {
    kind: "union",
    of: Array.from({ length: 6 }, (_, i) => ({ kind: "window", left: 3 * i + 1, right: i })),
  };
  const plan = planPattern(windows, 256, { tileQ: 16, tileK: 16 });
  const groups = fusionGroups(plan.branches[0].components, () => "");
  assert.ok(groups.every((g) => g.length <= MAX_FUSED), JSON.stringify(groups));
  assert.deepEqual(groups.flat(), plan.branches[0].components.map((_, j) => j));
});

Deno.test("run fusion: a fused slot walks every member's tiles in member order, tagged", () => {
  const plan = planPattern(bigbird(Array.from({ length: 16 }, (_, i) => i)), 300, {
    tileQ: 16,
    tileK: 8,
  });
  const components = plan.branches[0].components;
  const groups = [fusionGroups(components, (j) => (j < 3 ? "" : undefined))];
  assert.deepEqual(groups[0][0], [0, 1, 2]);
  const { words, slots } = packSchedules(plan, 64, undefined, groups);
  assert.deepEqual(slots[0], [0, 0, 0, 1], "the fused members share slot 0");
  const header = HEADER_WORDS + SLOT_WORDS * slots[0][0];
  const rowsAt = words[header], runsAt = words[header + 1];
  const tagged = tagRuns(components.slice(0, 3).map((c) => c.mask));
  for (let t = 0; t < components[0].mask.qTiles; t++) {
    const want: [number, number, boolean][] = [];
    components.slice(0, 3).forEach((c, member) =>
      forEachKeyTile(c.mask, t, (kt, partial) => want.push([member, kt, partial]))
    );
    const got: [number, number, boolean][] = [];
    for (let run = words[rowsAt + t]; run < words[rowsAt + t + 1]; run++) {
      const head = words[runsAt + RUN_WORDS * run], word = words[runsAt + RUN_WORDS * run + 1];
      const member = word >>> TAG_SHIFT, length = word & (2 ** TAG_SHIFT - 1);
      assert.equal(member, tagged.member[run]);
      for (let kt = head >>> 1; kt < (head >>> 1) + length; kt++) {
        got.push([member, kt, (head & 1) === 1]);
      }
    }
    assert.deepEqual(got, want, `query tile ${t}`);
  }
  // Some query tile visits one key tile for two members: each pass masks its own pairs.
  let shared = 0;
  for (let t = 0; t < components[0].mask.qTiles; t++) {
    const seen = new Map<number, number>();
    components.slice(0, 3).forEach((c) =>
      forEachKeyTile(c.mask, t, (kt) => seen.set(kt, (seen.get(kt) ?? 0) + 1))
    );
    for (const count of seen.values()) if (count > 1) shared++;
  }
  assert.ok(shared > 0, "the case where members share key tiles is covered");
});

Deno.test("run fusion: kernels that may not fuse keep a pass each", () => {
  const shape = { batch: 1, headsQ: 2, headsKV: 2, seqLen: 256, headDim: 32 };
  const tiles = { tileQ: 16, tileK: 16 };
  const labels = (pattern: Pattern, constantParams?: boolean) =>
    compile(pattern, { shape, tiles, constantParams }).passes.map((p) => p.label);
  const union: Pattern = {
    kind: "union",
    of: [{ kind: "window", left: 5, right: 5 }, {
      kind: "random",
      blocks: 1,
      blockSize: 16,
      seed: 1,
    }],
  };
  assert.deepEqual(labels(union), ["branch 0 components 0+1"]);
  // Masks of another signature (one reads the head and batch) keep kernels of their own; two
  // that both read them fuse.
  const byHead = { kind: "predicate", expr: "(q, k, n, h, b) => (h + b + q) % 3 != 1" } as const;
  const ring = { kind: "ring", radius: 2 } as const;
  assert.deepEqual(labels({ kind: "union", of: [ring, byHead] }), [
    "branch 0 component 0",
    "branch 0 component 1",
  ]);
  const byHead2 = { kind: "predicate", expr: "(q, k, n, h) => k <= q + h" } as const;
  assert.deepEqual(labels({ kind: "union", of: [byHead2, byHead] }), ["branch 0 components 0+1"]);
  // Baked numbers keep kernels of their own (each is its own module), and so do scored ones.
  assert.deepEqual(labels(union, true), ["branch 0 component 0", "branch 0 component 1"]);
  const scored = compile({ kind: "scored", pattern: union, score: { expr: "s * 0.5" } }, {
    shape,
    tiles,
  });
  assert.deepEqual(scored.passes.map((p) => p.label), [
    "branch 0 component 0",
    "branch 0 component 1",
  ]);
});

Deno.test("run fusion: new numbers keep the kernels unless the global tokens change layout", () => {
  const shape = { batch: 1, headsQ: 2, headsKV: 2, seqLen: 512, headDim: 32 };
  const tiles = { tileQ: 16, tileK: 16 };
  const pattern = (window: number, seed: number, tokens: number): Pattern => ({
    kind: "union",
    of: [
      { kind: "window", left: window, right: window },
      { kind: "global", tokens: Array.from({ length: tokens }, (_, i) => i) },
      { kind: "random", blocks: 2, blockSize: 32, seed },
    ],
  });
  const kernels = (p: Pattern) =>
    compile(p, { shape, tiles }).passes.map((x) => `${pipelineKey(x.wgsl)}@${x.entryPoint}`);
  const first = kernels(pattern(20, 1, 32));
  // Other window, seed and a token count that still fills whole key tiles: the same pipelines.
  assert.deepEqual(kernels(pattern(7, 5, 32)), first);
  assert.deepEqual(kernels(pattern(20, 1, 64)), first);
  // 24 tokens half-fill a tile: gathered, a kernel of their own.
  assert.notDeepEqual(kernels(pattern(20, 1, 24)), first);
});
