/**
 * Packed sequences' schedules against the element-level truth, over random lengths (zero query
 * rows, one row, lengths off the tiles, keys longer than queries), patterns and tile sizes:
 * (1) a branch's components partition exactly what the reference allows within each sequence,
 * (2) every pair a component allows lies in a tile its packed BlockMask visits, and no pair of
 * two sequences is allowed, (3) a FULL tile holds only pairs the component allows, all of one
 * sequence, and (4) each row's runs are ascending, disjoint and maximal. Then: the per-call data
 * is packed with compile's slots, and lengths a pattern cannot run are refused by name.
 */
import assert from "node:assert/strict";
import { forEachKeyTile } from "../../compiler/block_mask.ts";
import {
  checkCall,
  compile,
  compileChecked,
  packedCallData,
  packedPlan,
  planPattern,
} from "../../compiler/mod.ts";
import type { Component } from "../../compiler/plan.ts";
import { PlanError, ShapeError } from "../../core/errors.ts";
import { packedSequences, type Sequence } from "../../core/packed_sequences.ts";
import type { Pattern } from "../../dsl/schema.ts";
import { allowedMask } from "../../runtime/reference/mod.ts";
import { mulberry32 } from "../../runtime/seeded_random.ts";
import { componentAllows } from "./_element_truth.ts";

/** Where a row of the packed rows lies: its sequence and its position within it. */
function locate(sequences: readonly Sequence[], row: number, side: "q" | "k") {
  for (let s = 0; s < sequences.length; s++) {
    const seq = sequences[s];
    const start = side === "q" ? seq.qStart : seq.kStart;
    const length = side === "q" ? seq.qLen : seq.kLen;
    if (row >= start && row < start + length) {
      return { s, position: row - start + (side === "q" ? seq.offset : 0) };
    }
  }
  throw new Error(`row ${row} lies in no sequence`);
}

/** Checks invariants (1)-(4) for one pattern at one set of lengths and tile shape. */
function checkPacked(
  pattern: Pattern,
  seqLens: number[],
  kvSeqLens: number[],
  tiles: { tileQ: number; tileK: number },
): void {
  const nq = seqLens.reduce((a, b) => a + b), nk = kvSeqLens.reduce((a, b) => a + b);
  const shape = { batch: 1, headsQ: 1, headsKV: 1, seqLen: nq, headDim: 4, kvSeqLen: nk };
  const sequences = packedSequences(shape, seqLens, kvSeqLens);
  const natural = planPattern(pattern, nk, tiles, { packed: true });
  const plan = packedPlan(natural, sequences, shape);
  const branches = pattern.kind === "gated" ? pattern.branches : [pattern];
  const where = `${JSON.stringify(pattern)} seqLens ${seqLens} kvSeqLens ${kvSeqLens} ` +
    `tile ${tiles.tileQ}x${tiles.tileK}`;
  const qAt = Array.from({ length: nq }, (_, i) => locate(sequences, i, "q"));
  const kAt = Array.from({ length: nk }, (_, j) => locate(sequences, j, "k"));
  plan.branches.forEach((branch, b) => {
    const truth = sequences.map((seq) => allowedMask(branches[b], seq.kLen));
    for (const c of branch.components) {
      assert.deepEqual([c.qLayout.kind, c.kLayout.kind], ["identity", "identity"], where);
    }
    // A component allows a pair of packed rows within one sequence, at positions within it.
    const allows = (c: Component, i: number, j: number) =>
      qAt[i].s === kAt[j].s &&
      componentAllows(c, qAt[i].position, kAt[j].position, sequences[qAt[i].s].kLen);
    for (let i = 0; i < nq; i++) {
      for (let j = 0; j < nk; j++) {
        const owners = branch.components.filter((c) => allows(c, i, j)).length;
        const want = qAt[i].s === kAt[j].s && truth[qAt[i].s](qAt[i].position, kAt[j].position);
        assert.equal(owners, want ? 1 : 0, `${where}: rows (${i}, ${j}) have ${owners} owners`);
      }
    }
    for (const c of branch.components) checkMask(c, allows, { nq, nk, where });
  });
}

function checkMask(
  c: Component,
  allows: (c: Component, i: number, j: number) => boolean,
  o: { nq: number; nk: number; where: string },
): void {
  const m = c.mask;
  for (let t = 0; t < m.qTiles; t++) {
    const visited = new Map<number, number>();
    let last = -1, lastKind = -1;
    for (let r = m.offsets[t]; r < m.offsets[t + 1]; r++) {
      assert.ok(m.kvStart[r] > last, `${o.where}: row ${t}'s runs overlap or descend`);
      assert.ok(
        m.kvStart[r] !== last + 1 || m.partial[r] !== lastKind,
        `${o.where}: row ${t}'s runs are not maximal`,
      );
      last = m.kvStart[r] + m.kvLength[r] - 1;
      lastKind = m.partial[r];
    }
    forEachKeyTile(m, t, (kt, partial) => visited.set(kt, partial ? 1 : 0));
    for (let kt = 0; kt < m.kTiles; kt++) {
      let any = false, all = true;
      for (let i = t * m.tileQ; i < Math.min(o.nq, (t + 1) * m.tileQ); i++) {
        for (let j = kt * m.tileK; j < Math.min(o.nk, (kt + 1) * m.tileK); j++) {
          const a = allows(c, i, j);
          any ||= a;
          all &&= a;
        }
      }
      const kind = visited.get(kt);
      assert.ok(!any || kind !== undefined, `${o.where}: tile (${t}, ${kt}) skipped`);
      assert.ok(kind !== 0 || all, `${o.where}: tile (${t}, ${kt}) FULL, not every pair allowed`);
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
      return { kind: "ring", radius: int(0, n / 2) };
    case 3:
      return { kind: "stride", period: int(1, n + 2) };
    case 4:
      return { kind: "global", tokens: Array.from({ length: int(0, 2) }, () => int(0, n - 1)) };
    case 5:
      return { kind: "predicate", expr: "(q, k, n) => (q + k) % 3 != 0 && k < n - 1" };
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

/** Random lengths: some sequences with no query rows, some of one row or one key. */
function randomLengths(rand: () => number): { seqLens: number[]; kvSeqLens: number[] } {
  const count = 1 + Math.floor(rand() * 5);
  const kvSeqLens = Array.from({ length: count }, () => 1 + Math.floor(rand() * 20));
  const square = rand() < 0.4;
  const seqLens = kvSeqLens.map((k) => square ? k : Math.floor(rand() * (k + 1)));
  if (!seqLens.some((q) => q > 0)) seqLens[0] = 1;
  return { seqLens, kvSeqLens };
}

Deno.test("packed schedules: every packable leaf over sequences off the tiles", () => {
  const leaves: Pattern[] = [
    { kind: "dense" },
    { kind: "causal" },
    { kind: "window", left: 3, right: 1 },
    { kind: "ring", radius: 2 },
    { kind: "ring", radius: 9 },
    { kind: "stride", period: 3 },
    { kind: "global", tokens: [0] },
    { kind: "predicate", expr: "(q, k, n) => k >= n - 3 || q == k" },
  ];
  const lengths = [
    { seqLens: [5, 1, 13, 3], kvSeqLens: [5, 1, 13, 3] },
    { seqLens: [2, 0, 1, 7], kvSeqLens: [9, 4, 1, 8] },
    { seqLens: [1], kvSeqLens: [19] },
    { seqLens: [8, 8], kvSeqLens: [8, 8] },
  ];
  for (const p of leaves) {
    for (const l of lengths) {
      for (
        const tiles of [{ tileQ: 4, tileK: 4 }, { tileQ: 8, tileK: 4 }, { tileQ: 2, tileK: 8 }]
      ) {
        checkPacked(p, l.seqLens, l.kvSeqLens, tiles);
      }
    }
  }
});

Deno.test("packed schedules: random unions and intersections match the reference", () => {
  const rand = mulberry32(23); // seeded so that a failure reproduces
  for (let i = 0; i < 120; i++) {
    const { seqLens, kvSeqLens } = randomLengths(rand);
    const shortest = Math.min(...kvSeqLens);
    const pattern = randomPattern(rand, shortest, 2);
    const [tileQ, tileK] = [[4, 4], [8, 4], [4, 8], [16, 8]][Math.floor(rand() * 4)];
    checkPacked(pattern, seqLens, kvSeqLens, { tileQ, tileK });
  }
});

Deno.test("packed schedules: gated branches each get their packed masks", () => {
  const pattern: Pattern = {
    kind: "gated",
    branches: [{ kind: "ring", radius: 1 }, { kind: "causal" }],
  };
  checkPacked(pattern, [3, 6, 2], [7, 6, 5], { tileQ: 4, tileK: 4 });
});

Deno.test("packed call data: compile's slots, one sequence by default, words per sequence", () => {
  const shape = { batch: 1, headsQ: 2, headsKV: 1, seqLen: 30, headDim: 8, kvSeqLen: 45 };
  const pattern: Pattern = {
    kind: "union",
    of: [{ kind: "window", left: 2, right: 0 }, { kind: "global", tokens: [0, 1] }],
  };
  const compiled = compile(pattern, { shape, packed: true, tiles: { tileQ: 8, tileK: 8 } });
  assert.equal(compiled.packed, true);
  const attention = compiled.kernelPlan.kernels.filter((k) => k.kind === "attention");
  assert.ok(attention.length > 0 && attention.every((k) => k.packed && k.edgePairs === "none"));
  // Compiled: one sequence of every row, its queries the last positions.
  const whole = packedCallData(compiled, packedSequences(shape, [30], [45]));
  const table = (name: string) => compiled.buffers.find((b) => b.name === name)!.data!;
  assert.deepEqual(whole.schedule, table("schedule"));
  assert.deepEqual(Array.from(table("sequences")), [1, 0, 30, 0, 45]);
  // Other lengths: other schedule words in the same format, the sequences' first rows.
  const data = packedCallData(compiled, packedSequences(shape, [10, 1, 19], [12, 3, 30]));
  assert.deepEqual(Array.from(data.sequences), [3, 0, 10, 11, 30, 0, 12, 15, 45]);
  assert.deepEqual(data.schedule.subarray(0, 2), table("schedule").subarray(0, 2));
});

Deno.test("packed call data: lengths the pattern cannot run are refused by name", () => {
  const shape = { batch: 1, headsQ: 1, headsKV: 1, seqLen: 12, headDim: 4 };
  const compiled = compile({ kind: "global", tokens: [0, 5] }, { shape, packed: true });
  assert.throws(
    () => packedCallData(compiled, packedSequences(shape, [8, 4])),
    (e) =>
      e instanceof PlanError &&
      /pattern\.tokens\[1\]: global token must be < N \(4\), got 5: packed sequence 1 has kvSeqLens 4/
        .test(e.message),
  );
  const big = { ...shape, seqLen: 3000 };
  const cube = compile({ kind: "predicate", expr: "(q, k, n) => q * k * n > 5" }, {
    shape: big,
    packed: true,
  });
  assert.throws(
    () => packedCallData(cube, packedSequences(big, [1000, 2000])),
    (e) => e instanceof PlanError && /pattern\.expr: .*i32.*N=2000/.test(e.message),
  );
  assert.throws(
    () => packedSequences(shape, [8, 3]),
    (e) => e instanceof ShapeError && /seqLens sum to 11 and kvSeqLens to 11/.test(e.message),
  );
});

Deno.test("packed float16 kernels keep register tiles when a tuned shape names matrices", () => {
  const shape = { batch: 1, headsQ: 2, headsKV: 2, seqLen: 256, headDim: 64 };
  const matrix = { input: "f16" as const, result: "f32" as const, m: 8, n: 8, k: 8 };
  // As the runtime passes a tile shape the autotuner stored for the unpacked problem.
  const compiled = compileChecked({
    ...checkCall({ kind: "causal" }, { shape, packed: true, dtype: "f16" }),
    tiles: {
      tileQ: 32,
      tileK: 32,
      threads: 64,
      rowsPerThread: 2,
      matrix: { ...matrix, subgroupSize: 32 },
    },
  });
  assert.equal(compiled.kernel.matrix, undefined);
  assert.ok(compiled.modules.every((m) => !m.includes("subgroup_matrix")));
  // The float16 kernels find each row's sequence as the float32 ones do.
  assert.ok(compiled.modules.some((m) => m.includes("enable f16") && m.includes("fn sequenceOf")));
});
