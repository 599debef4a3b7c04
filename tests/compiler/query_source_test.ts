/**
 * Where kernels read the query rows by default, from their WGSL: float32 kernels from global
 * memory at every key tile; float16 ones too, except in patterns with rows that see every key
 * tile (dense, causal, global rows), which stage the query tile once (compile.ts,
 * `queryFromMemoryPays`). An explicit `globalQuery` wins. Both forms are checked against the
 * reference in tests/gpu/query_source_test.ts.
 */
import assert from "node:assert/strict";
import { compile } from "../../compiler/mod.ts";

/** Per attention pass: where its query rows come from. */
function sources(pattern: unknown, dtype: "f32" | "f16", globalQuery?: boolean): string[] {
  const shape = { batch: 1, headsQ: 2, headsKV: 2, seqLen: 256, headDim: 32 };
  return compile(pattern, { shape, dtype, tiles: { tileQ: 32, tileK: 16 }, globalQuery }).passes
    .filter((p) => /Weft attention kernel/.test(p.wgsl))
    .map((p) => {
      const staged = /var<workgroup> qTile/.test(p.wgsl);
      const read = /qIn\[qAt0 \+ d\]/.test(p.wgsl);
      assert.notEqual(staged, read, `${p.label}: exactly one source of query rows`);
      return staged ? "tile" : "memory";
    });
}

const bigBird = {
  kind: "union",
  of: [
    { kind: "window", left: 16, right: 16 },
    { kind: "global", tokens: [0, 1] },
    { kind: "random", blocks: 1, blockSize: 16, seed: 1 },
  ],
};

Deno.test("float32 kernels read query rows from memory, whatever the pattern", () => {
  assert.deepEqual(sources({ kind: "dense" }, "f32"), ["memory"]);
  assert.deepEqual(sources({ kind: "ring", radius: 8 }, "f32"), ["memory"]);
  assert.ok(sources(bigBird, "f32").every((s) => s === "memory"));
});

Deno.test("float16 kernels stage the query tile only where rows see every key tile", () => {
  assert.deepEqual(sources({ kind: "ring", radius: 8 }, "f16"), ["memory"]);
  assert.deepEqual(sources({ kind: "stride", period: 4 }, "f16"), ["memory"]);
  assert.deepEqual(sources({ kind: "dense" }, "f16"), ["tile"]);
  assert.deepEqual(sources({ kind: "causal" }, "f16"), ["tile"]);
  const mixed = { kind: "union", of: [{ kind: "causal" }, { kind: "stride", period: 4 }] };
  assert.ok(sources(mixed, "f16").every((s) => s === "tile"), "one choice per pattern");
  assert.ok(sources(bigBird, "f16").every((s) => s === "tile"));
});

Deno.test("an explicit globalQuery overrides the default", () => {
  assert.deepEqual(sources({ kind: "dense" }, "f16", true), ["memory"]);
  assert.deepEqual(sources({ kind: "ring", radius: 8 }, "f32", false), ["tile"]);
});
