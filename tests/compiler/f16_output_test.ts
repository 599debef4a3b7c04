/**
 * Float16 output: a call with one kernel covering every row writes O as float16 itself (no
 * float32 O, no cast pass); a call whose kernels merge, or a gated one, still accumulates in
 * float32 and casts once at the end. The golden tests check the numbers of both paths.
 */
import assert from "node:assert/strict";
import { compile } from "../../compiler/mod.ts";

const shape = { batch: 1, headsQ: 2, headsKV: 2, seqLen: 256, headDim: 64 };
const buffersOf = (pattern: unknown) =>
  compile(pattern, { shape, dtype: "f16" }).passes.map((p) =>
    `${p.label.split(":")[0]}: ${
      p.bindings.filter((b) => b.writable).map((b) => b.buffer).join(",")
    }`
  );

Deno.test("one kernel writes float16 O directly", () => {
  assert.deepEqual(buffersOf({ kind: "ring", radius: 8 }), ["branch 0 component 0: o16,lse"]);
  const wgsl = compile({ kind: "ring", radius: 8 }, { shape, dtype: "f16" }).passes[0].wgsl;
  assert.match(wgsl, /var<storage, read_write> oOut: array<vec4<f16>>/);
  // f32 calls are unchanged.
  const f32 = compile({ kind: "ring", radius: 8 }, { shape }).passes;
  assert.deepEqual(f32.map((p) => p.bindings.at(-2)!.buffer), ["o"]);
});

Deno.test("merging or gated float16 calls accumulate in float32 and cast once", () => {
  const union = buffersOf({
    kind: "union",
    of: [{ kind: "ring", radius: 8 }, { kind: "stride", period: 16 }],
  });
  assert.deepEqual(union, [
    "branch 0 component 0: o,lse",
    "branch 0 component 1: o,lse",
    "cast O to float16: o16",
  ]);
  const gated = buffersOf({
    kind: "gated",
    branches: [{ kind: "ring", radius: 8 }, { kind: "causal" }],
  });
  assert.equal(gated.at(-1), "cast O to float16: o16");
  assert.ok(gated.some((p) => p.startsWith("gated blend: o")));
  // Global rows are gathered: a clear pass comes first, so the kernel merges into it.
  const global = buffersOf({ kind: "global", tokens: [0, 5] });
  assert.equal(global.at(-1), "cast O to float16: o16");
});
