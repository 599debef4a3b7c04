/**
 * The backward pass's plan on serving shapes, on the CPU (plan_gradients.ts): gradQuery runs the
 * query tiles that hold queries; gradKey runs key tiles that some query sees (against the
 * element truth of the reference's `allowedMask`) and no more than the listed query tiles
 * visit; a component without queries has no gradient kernels; bucket-ordered and landmark
 * components' key tiles all run; square shapes given with kvSeqLen and valueDim compile their
 * backward as without; and every case of the GPU test compiles its backward in float16 too,
 * with buffers sized at Nq, Nk and Dv.
 */
import assert from "node:assert/strict";
import { compile } from "../../compiler/mod.ts";
import type { GradientKernel } from "../../compiler/kernel_plan.ts";
import { queryTiles } from "../../compiler/query_tiles.ts";
import { sequenceSizes } from "../../core/shape.ts";
import type { Pattern } from "../../dsl/schema.ts";
import { allowedMask } from "../../runtime/reference/mod.ts";

const TILES = { tileQ: 8, tileK: 8 };

/** The gradQuery and gradKey kernels of a compiled call. */
function walks(c: ReturnType<typeof compile>): GradientKernel[] {
  return c.kernelPlan.kernels.filter((k): k is GradientKernel =>
    k.kind === "gradQuery" || k.kind === "gradKey"
  );
}

Deno.test("gradKey runs the key tiles some query sees; gradQuery the tiles holding queries", () => {
  const cases: [Pattern, number, number, number][] = [
    // pattern, Nq, Nk, query offset
    [{ kind: "window", left: 3, right: 0 }, 1, 64, 63],
    [{ kind: "window", left: 3, right: 0 }, 1, 64, 10],
    [{ kind: "causal" }, 5, 37, 20],
    [{ kind: "ring", radius: 2 }, 3, 40, 0],
    [{ kind: "random", blocks: 1, blockSize: 4, seed: 3 }, 4, 37, 9],
  ];
  for (const [pattern, nq, nk, offset] of cases) {
    const shape = { batch: 1, headsQ: 2, headsKV: 1, seqLen: nq, headDim: 8, kvSeqLen: nk };
    const c = compile(pattern, { shape, queryOffset: offset, backward: true, tiles: TILES });
    const [query, key] = walks(c);
    const label = `${JSON.stringify(pattern)} Nq ${nq} at ${offset}`;
    assert.deepEqual(
      query.ownTiles,
      queryTiles({ kind: "identity" }, nk, 8, { offset, count: nq }),
      label,
    );
    assert.deepEqual(query.workgroups, [query.ownTiles!.length * query.tiling!.split, 2], label);
    // Every key tile holding a key some query is allowed: the keys with a gradient.
    const allowed = allowedMask(pattern, nk);
    const seen = new Set<number>();
    for (let q = offset; q < offset + nq; q++) {
      for (let k = 0; k < nk; k++) if (allowed(q, k)) seen.add(Math.floor(k / 8));
    }
    const listed = key.ownTiles!;
    for (const t of seen) assert.ok(listed.includes(t), `${label}: key tile ${t} runs`);
    // Natural order: the query tiles' key tiles are those of their rows, a tile's width apart.
    for (const t of listed) {
      const near = [...seen].some((s) => Math.abs(s - t) <= 1);
      assert.ok(near, `${label}: key tile ${t} is near a seen one`);
    }
    assert.deepEqual(key.workgroups, [listed.length * key.tiling!.split, 1], label);
  }
  // A decoding step with a window: one query tile, and the key tiles it visits, whatever Nk is
  // (tile 510 for the tile's rows before the query: the walk skips their pairs, as padding).
  const decode = compile({ kind: "window", left: 3, right: 0 }, {
    shape: { batch: 1, headsQ: 2, headsKV: 1, seqLen: 1, headDim: 8, kvSeqLen: 4096 },
    backward: true,
    tiles: TILES,
  });
  assert.deepEqual(walks(decode).map((k) => k.ownTiles), [[511], [510, 511]]);
});

Deno.test("the backward runs nothing for components without queries, all bucket and landmark keys", () => {
  const shape = { batch: 1, headsQ: 2, headsKV: 1, seqLen: 3, headDim: 8, kvSeqLen: 37 };
  // Global rows whose tokens are not queries: only the global columns have gradient kernels.
  const global = compile({ kind: "global", tokens: [0, 5] }, {
    shape,
    backward: true,
    tiles: TILES,
  });
  assert.deepEqual(walks(global).map((k) => [k.kind, k.component]), [
    ["gradQuery", 0],
    ["gradKey", 0],
  ]);
  // Bucket order: the query sort holds the 3 queries (one tile); every key tile runs.
  const hash = compile({ kind: "hashBucket", buckets: 4, rounds: 1, seed: 1 }, {
    shape,
    backward: true,
    tiles: TILES,
  });
  const [hq, hk] = walks(hash);
  assert.deepEqual([hq.ownTiles, hq.workgroups], [[0], [1, 2]]);
  assert.deepEqual([hk.ownTiles, hk.workgroups[0]], [undefined, 5]);
  // Landmarks: gradKey writes every landmark's gradient, which gradUnpool reads.
  const landmarks = compile({
    kind: "union",
    of: [{ kind: "lowRank", rank: 3 }, { kind: "causal" }],
  }, {
    shape,
    backward: true,
    tiles: TILES,
  });
  const landmarkKey = walks(landmarks).find((k) =>
    k.kind === "gradKey" && k.bindings.some((b) => b.buffer.startsWith("dLandmark"))
  )!;
  assert.equal(landmarkKey.ownTiles, undefined);
});

Deno.test("square shapes given with kvSeqLen and valueDim compile their backward as without", () => {
  const shape = { batch: 1, headsQ: 2, headsKV: 1, seqLen: 64, headDim: 16 };
  const patterns: Pattern[] = [
    { kind: "causal" },
    { kind: "stride", period: 5 },
    { kind: "hashBucket", buckets: 4, rounds: 1, seed: 1 },
    { kind: "gated", branches: [{ kind: "ring", radius: 2 }, { kind: "lowRank", rank: 4 }] },
  ];
  for (const pattern of patterns) {
    const plain = compile(pattern, { shape, backward: true, tiles: TILES });
    const given = compile(pattern, {
      shape: { ...shape, kvSeqLen: 64, valueDim: 16 },
      queryOffset: 0,
      backward: true,
      tiles: TILES,
    });
    assert.deepEqual(given.passes, plain.passes, pattern.kind);
    assert.deepEqual(given.buffers, plain.buffers, pattern.kind);
  }
});

Deno.test("every serving case compiles its backward in float16, buffers at Nq, Nk and Dv", async () => {
  const { cases } = JSON.parse(
    await Deno.readTextFile(new URL("../gpu/serving_shape_cases.json", import.meta.url)),
  );
  for (const c of cases) {
    const shape = { ...c.shape, headDim: 16 };
    const compiled = compile(c.pattern, {
      shape,
      dtype: "f16",
      queryOffset: c.queryOffset,
      keySplits: c.keySplits,
      gatesPerPosition: c.gates === "position",
      backward: true,
    });
    const tileKernels = compiled.modules.filter((m) => /Weft gradients: .*-major/.test(m));
    assert.ok(tileKernels.length > 0, c.name);
    for (const wgsl of tileKernels) {
      assert.match(wgsl, /^enable f16;/m, c.name);
      if (c.shape.kvSeqLen !== undefined) assert.match(wgsl, /const NQ = \d+u;/, c.name);
      if (c.shape.valueDim !== undefined) assert.match(wgsl, /const DV4 = DV \/ 4u;/, c.name);
    }
    const { nq, nk, d, dv } = sequenceSizes(shape);
    const rows = shape.batch * shape.headsQ * nq, keys = shape.batch * shape.headsKV * nk;
    const bytes = Object.fromEntries(compiled.buffers.map((b) => [b.name, b.bytes]));
    assert.equal(bytes.dO, rows * dv * 2, `${c.name}: dO [B, Hq, Nq, Dv] in float16`);
    assert.equal(bytes.dq, rows * d * 4, `${c.name}: dQ [B, Hq, Nq, D]`);
    assert.equal(bytes.dkv, keys * (d + dv) * 4, `${c.name}: dK [B, Hkv, Nk, D], then dV`);
  }
});
