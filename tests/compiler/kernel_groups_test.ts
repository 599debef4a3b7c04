/**
 * Component kernels of one pattern share a WGSL module where only their layouts, masks, slots,
 * merge mode, split-K and branch offsets differ (compiler/kernel_groups.ts); each pass's entry
 * point runs the shared body with its member's settings. Kernels with more of their own keep their modules, and a pattern of
 * one component keeps the plain kernel.
 */
import assert from "node:assert/strict";
import { compile } from "../../compiler/compile.ts";
import type { Pattern } from "../../dsl/schema.ts";
import { memberSettings } from "./_member_settings.ts";

const shape = { batch: 1, headsQ: 2, headsKV: 2, seqLen: 256, headDim: 32 };
const tiles = { tileQ: 16, tileK: 16 };
const kernels = (pattern: Pattern, keySplits?: number) =>
  compile(pattern, { shape, tiles, keySplits }).passes.filter((p) =>
    /components? [\d+]+(, key tiles in \d+ chunks)?$/.test(p.label)
  );

Deno.test("kernel groups: BigBird's component kernels share one module", () => {
  const bigbird: Pattern = {
    kind: "union",
    of: [
      { kind: "window", left: 9, right: 9 },
      { kind: "global", tokens: [0, 1, 64] },
      { kind: "random", blocks: 2, blockSize: 16, seed: 4 },
    ],
  };
  const passes = kernels(bigbird, 3);
  // The window and random blocks are one kernel (run_fusion.ts); the scattered global columns
  // are gathered, and the global rows (a gathered query layout) split K.
  assert.deepEqual(passes.map((p) => p.label), [
    "branch 0 components 0+1",
    "branch 0 component 2",
    "branch 0 component 3, key tiles in 3 chunks",
  ]);
  assert.equal(new Set(passes.map((p) => p.wgsl)).size, 1);
  assert.deepEqual(passes.map((p) => p.entryPoint), ["kernel0", "kernel1", "kernel2"]);
  const settings = passes.map((p) => memberSettings(p)!);
  assert.deepEqual(settings.map((s) => s.MEMBER), [0, 2, 3]);
  assert.deepEqual(settings.map((s) => s.FUSED), [true, false, false]);
  // The first writes, the later ones merge; the split one writes its chunks.
  assert.deepEqual(settings.map((s) => s.MERGE), [false, true, false]);
  assert.deepEqual(settings.map((s) => s.SPLIT), [false, false, true]);
  assert.equal(new Set(settings.map((s) => s.SCHEDULE_SLOT)).size, 3);
  const wgsl = passes[0].wgsl;
  for (const name of ["allowed0", "allowed1", "allowed2", "allowed3"]) {
    assert.ok(wgsl.includes(`fn ${name}(q: i32, k: i32) -> bool`), name);
  }
  // No override: wgpu translates the module once, not once per pipeline.
  assert.doesNotMatch(wgsl, /override/);
  assert.match(wgsl, /fn queryPosition\(member: u32, i: u32\) -> i32/);
});

Deno.test("kernel groups: gated branches share a module and differ in their offsets", () => {
  const pi: Pattern = {
    kind: "gated",
    branches: [{ kind: "ring", radius: 8 }, { kind: "stride", period: 4 }],
  };
  const [ring, stride] = kernels(pi);
  assert.equal(ring.wgsl, stride.wgsl);
  const rows = shape.headsQ * shape.seqLen;
  const [a, b] = [memberSettings(ring)!, memberSettings(stride)!];
  assert.deepEqual([a.LSE_BASE, b.LSE_BASE], [0, rows]);
  assert.deepEqual([a.O_BASE, b.O_BASE], [0, rows * 8]);
  assert.equal(a.MERGE, undefined, "both overwrite: no MERGE to choose");
});

Deno.test("kernel groups: one component keeps the plain kernel; landmarks keep their own", () => {
  const [ring] = kernels({ kind: "ring", radius: 8 });
  assert.equal(ring.entryPoint, undefined);
  assert.match(ring.wgsl, /@compute @workgroup_size\(\d+\)\nfn main\(/);
  assert.doesNotMatch(ring.wgsl, /fn attention\(/);
  const lowRank = kernels({
    kind: "union",
    of: [{ kind: "window", left: 8, right: 8 }, { kind: "lowRank", rank: 16 }],
  });
  assert.equal(lowRank.length, 2);
  assert.notEqual(lowRank[0].wgsl, lowRank[1].wgsl);
  assert.ok(lowRank.every((p) => p.entryPoint === undefined));
});

Deno.test("kernel groups: at most four members share a module", () => {
  const passes = kernels({
    kind: "union",
    of: [
      { kind: "window", left: 5, right: 5 },
      { kind: "stride", period: 7 },
      { kind: "stride", period: 11 },
      { kind: "global", tokens: [1, 50] },
      { kind: "random", blocks: 1, blockSize: 16, seed: 3 },
      { kind: "ring", radius: 3 },
      { kind: "stride", period: 13 },
    ],
  });
  // A module's members are its kernels' components (a fused kernel walks several).
  const componentsOf = (label: string) => label.match(/components? ([\d+]+)/)![1].split("+");
  const members = new Map<string, number>();
  for (const p of passes) {
    members.set(p.wgsl, (members.get(p.wgsl) ?? 0) + componentsOf(p.label).length);
  }
  const total = passes.reduce((sum, p) => sum + componentsOf(p.label).length, 0);
  assert.ok(total > 4, `${total} components`);
  assert.ok(members.size >= 2, `${members.size} modules`);
  for (const [wgsl, count] of members) {
    assert.ok(count <= 4, `${count} members in one module`);
    if (count > 1) assert.match(wgsl, new RegExp(`over ${count} components`));
  }
});

Deno.test("kernel groups: a hashBucket's rounds share a module, each with its own hash offsets", () => {
  const rounds = kernels({ kind: "hashBucket", buckets: 8, rounds: 3, seed: 1 });
  assert.equal(rounds.length, 3);
  assert.equal(new Set(rounds.map((p) => p.wgsl)).size, 1);
  const settings = rounds.map((p) => memberSettings(p)!);
  // Each round's query order, codes and key bucket starts are its own part of the hash buffer.
  for (const name of ["ORDER_AT", "CODES_AT", "STARTS_AT"]) {
    assert.equal(new Set(settings.map((s) => s[name])).size, 3, name);
  }
  // The first round writes, the later ones merge and skip what earlier rounds allowed.
  assert.deepEqual(settings.map((s) => s.MERGE), [false, true, true]);
  assert.match(rounds[0].wgsl, /fn queryCodes\(member: u32, p: i32\) -> vec4<u32>/);
  // A window after the hash reads codes (it excludes the hash pairs) but walks BlockMask runs:
  // it keeps a module apart from the rounds' bucket ranges.
  const mixed = kernels({
    kind: "union",
    of: [{ kind: "hashBucket", buckets: 8, rounds: 2, seed: 1 }, {
      kind: "window",
      left: 4,
      right: 4,
    }],
  });
  assert.equal(mixed.length, 3);
  assert.equal(new Set(mixed.map((p) => p.wgsl)).size, 2);
  // Uniform weights (no dot products) keep modules of their own.
  const uniform = kernels({
    kind: "hashBucket",
    buckets: 8,
    rounds: 2,
    seed: 1,
    weights: "uniform",
  });
  assert.ok(uniform.every((p) => p.entryPoint === undefined));
});
