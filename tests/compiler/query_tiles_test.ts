/**
 * Queries that are some of the key positions, on the CPU (query_tiles.ts): the query tiles
 * that hold them, per layout, against positions listed here independently; the schedule rows
 * kept for them; a decoding step dispatches one query tile per head for every kind, whatever
 * Nk is; square shapes given with kvSeqLen and valueDim compile to the same kernels and
 * schedule as without; and every case of the GPU test compiles in float16 too.
 */
import assert from "node:assert/strict";
import { compile } from "../../compiler/mod.ts";
import { queryTiles, selectRows } from "../../compiler/query_tiles.ts";
import type { Layout } from "../../compiler/layout.ts";
import type { Pattern } from "../../dsl/schema.ts";

/** Position of each index of a layout, written out plainly (not with layout.ts). */
function positions(layout: Layout, n: number): number[] {
  if (layout.kind === "identity") return Array.from({ length: n }, (_, i) => i);
  if (layout.kind === "gather") return layout.tokens;
  assert.equal(layout.kind, "residue");
  const period = (layout as { period: number }).period, out: number[] = [];
  for (let c = 0; c < period; c++) for (let p = c; p < n; p += period) out.push(p);
  return out;
}

Deno.test("query tiles: exactly the tiles holding a query, in every layout", () => {
  const layouts: Layout[] = [
    { kind: "identity" },
    { kind: "residue", period: 4 },
    { kind: "residue", period: 7 },
    { kind: "gather", tokens: [0, 3, 17, 30, 36] },
  ];
  const n = 37, tileQ = 8;
  for (const layout of layouts) {
    const at = positions(layout, n);
    for (const [offset, count] of [[36, 1], [0, 5], [3, 11], [20, 17], [12, 1]]) {
      const want: number[] = [];
      at.forEach((p, i) => {
        const t = Math.floor(i / tileQ);
        if (p >= offset && p < offset + count && !want.includes(t)) want.push(t);
      });
      assert.deepEqual(
        queryTiles(layout, n, tileQ, { offset, count }),
        want,
        `${layout.kind} ${JSON.stringify(layout)}, positions ${offset}..${offset + count - 1}`,
      );
    }
  }
  // Bucket order sorts the call's queries alone: its first ceil(Nq / tileQ) tiles.
  const sorted: Layout = { kind: "sorted", side: "q", buckets: 4, seed: 1, round: 0 };
  assert.deepEqual(queryTiles(sorted, 37, 8, { offset: 20, count: 17 }), [0, 1, 2]);
  assert.deepEqual(queryTiles(sorted, 37, 8, { offset: 36, count: 1 }), [0]);
});

Deno.test("query tiles: the schedule keeps their rows, key chunks and members with them", () => {
  // Three query tiles of two key chunks each: row t * 2 + s, one run per row.
  const rows = {
    offsets: Uint32Array.of(0, 1, 2, 3, 4, 5, 6),
    kvStart: Uint32Array.of(0, 1, 2, 3, 4, 5),
    kvLength: Uint32Array.of(1, 1, 1, 1, 1, 1),
    partial: Uint8Array.of(0, 1, 0, 1, 0, 1),
    member: Uint8Array.of(0, 0, 1, 1, 2, 2),
  };
  const kept = selectRows(rows, [0, 2], 2);
  assert.deepEqual([...kept.offsets], [0, 1, 2, 3, 4]);
  assert.deepEqual([...kept.kvStart], [0, 1, 4, 5]);
  assert.deepEqual([...kept.partial], [0, 1, 0, 1]);
  assert.deepEqual([...kept.member!], [0, 0, 2, 2]);
});

const KINDS: Pattern[] = [
  { kind: "dense" },
  { kind: "causal" },
  { kind: "window", left: 64, right: 0 },
  { kind: "ring", radius: 100 },
  { kind: "stride", period: 16 },
  { kind: "global", tokens: [0, 4095] },
  { kind: "random", blocks: 2, blockSize: 64, seed: 1 },
  { kind: "union", of: [{ kind: "lowRank", rank: 32 }, { kind: "window", left: 8, right: 8 }] },
  { kind: "hashBucket", buckets: 16, rounds: 2, seed: 1 },
  { kind: "predicate", expr: "(q, k) => (q - k) % 3 == 0" },
  {
    kind: "scored",
    pattern: { kind: "causal" },
    score: { expr: "(s, q, k) => s - 0.01 * (q - k)" },
  },
  {
    kind: "intersect",
    of: [{ kind: "window", left: 300, right: 0 }, { kind: "stride", period: 2 }],
  },
  { kind: "gated", branches: [{ kind: "ring", radius: 64 }, { kind: "stride", period: 8 }] },
];

Deno.test("decoding: one query tile per head for every kind, whatever Nk is", () => {
  const shape = { batch: 2, headsQ: 4, headsKV: 2, seqLen: 1, headDim: 64, kvSeqLen: 4096 };
  for (const pattern of KINDS) {
    for (const decode of [true, false]) {
      const c = compile(pattern, { shape, decode });
      const kernels = c.kernelPlan.kernels;
      const walking = kernels.filter((k) => k.kind === "attention" || k.kind === "decode");
      assert.ok(walking.length > 0, pattern.kind);
      for (const k of walking) {
        const label = `${pattern.kind}, ${k.label}`;
        if (k.kind === "decode") {
          // The group's heads share a workgroup: one per key chunk and batch·key/value head.
          assert.ok(decode, `${label}: decode kernels only where asked`);
          assert.deepEqual(k.geometry.tiles.length, 1, `${label}: one query tile`);
          assert.deepEqual(k.geometry.rows, 2, `${label}: the group's two query heads`);
          assert.deepEqual(k.workgroups, [k.geometry.chunks, 4], label);
        } else {
          assert.deepEqual(k.queryTiles?.length, 1, `${label}: one query tile`);
          assert.deepEqual(k.workgroups, [k.split?.chunks ?? 1, 8], label);
        }
      }
      // Components with keys at positions of K decode: not hashBucket's bucket order, not a
      // score modifier's (lowRank's landmarks keep the attention kernel beside a decoded window).
      const decoded = kernels.some((k) => k.kind === "decode");
      assert.equal(decoded, decode && !/hashBucket|scored/.test(JSON.stringify(pattern)));
      const landmarks = kernels.some((k) =>
        k.kind === "attention" && k.bindings.some((b) => b.buffer.startsWith("landmarkK"))
      );
      assert.equal(landmarks || !/lowRank/.test(JSON.stringify(pattern)), true);
    }
  }
  // The square call at Nk runs every query tile.
  const square = compile({ kind: "dense" }, {
    shape: { batch: 2, headsQ: 4, headsKV: 2, seqLen: 4096, headDim: 64 },
    tiles: { tileQ: 64, tileK: 32 },
  });
  assert.deepEqual(square.passes[0].workgroups, [64, 8]);
  // Global rows that are not the query run nothing at all.
  const global = compile({ kind: "global", tokens: [0, 7] }, { shape, decode: false });
  assert.deepEqual(global.kernelPlan.kernels.map((k) => k.label), [
    "branch 0 component 0",
  ]);
});

Deno.test("fused components run the query tiles of their natural order together", () => {
  const pattern: Pattern = {
    kind: "union",
    of: [
      { kind: "window", left: 3, right: 2 },
      { kind: "random", blocks: 1, blockSize: 4, seed: 5 },
    ],
  };
  const shape = { batch: 1, headsQ: 2, headsKV: 1, seqLen: 11, headDim: 16, kvSeqLen: 37 };
  const c = compile(pattern, {
    shape,
    queryOffset: 3,
    tiles: { tileQ: 8, tileK: 8 },
    decode: false,
  });
  const attention = c.kernelPlan.kernels.filter((k) => k.kind === "attention");
  assert.deepEqual(attention.map((k) => [k.members, k.queryTiles, k.workgroups]), [
    [[0, 1], [0, 1], [2, 2]], // positions 3..13: query tiles 0 and 1
  ]);
});

Deno.test("square shapes given with kvSeqLen and valueDim compile as without", () => {
  const shape = { batch: 1, headsQ: 2, headsKV: 1, seqLen: 4096, headDim: 32 };
  for (const pattern of KINDS) {
    const plain = compile(pattern, { shape });
    const given = compile(pattern, {
      shape: { ...shape, kvSeqLen: 4096, valueDim: 32 },
      queryOffset: 0,
    });
    assert.deepEqual(given.passes, plain.passes, pattern.kind);
    assert.deepEqual(given.buffers, plain.buffers, pattern.kind);
  }
});

Deno.test("every serving case compiles in float16, naming the queries and Dv", async () => {
  const { cases } = JSON.parse(
    await Deno.readTextFile(new URL("../gpu/serving_shape_cases.json", import.meta.url)),
  );
  for (const c of cases) {
    const compiled = compile(c.pattern, {
      shape: { ...c.shape, headDim: 16 },
      dtype: "f16",
      queryOffset: c.queryOffset,
      keySplits: c.keySplits,
      gatesPerPosition: c.gates === "position",
    });
    const kernels = compiled.modules.filter((m) => /Weft (attention kernel|decode:)/.test(m));
    assert.ok(kernels.length > 0, c.name);
    for (const wgsl of kernels) {
      assert.match(wgsl, /^enable f16;/m, c.name);
      if (c.shape.kvSeqLen !== undefined) {
        assert.match(wgsl, /const NQ = \d+u;/, c.name);
        assert.match(wgsl, /const QUERY_OFFSET = \d+;/, c.name);
      }
      if (c.shape.valueDim !== undefined) assert.match(wgsl, /const DV4 = \d+u;/, c.name);
    }
  }
});
