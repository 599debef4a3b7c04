/**
 * The decode kernel (compiler/decode.ts) against the float64 reference: the geometry's corners
 * that serving_shape_cases.json does not reach at its sizes. Key tiles cut into several chunks
 * (merged by the decode combine), a group too large for one workgroup (row blocks), a residue
 * layout whose tile holds several queries (slots), and a call with the decode kernel turned off
 * giving the same answer. O within 1e-4, LSE within 1e-4 of max(1, |LSE|). The runtime decodes
 * on GPUs only by default, so each case asks for the decode kernel.
 */
import assert from "node:assert/strict";
import type { AttentionShape, CompileOptions } from "../../compiler/mod.ts";
import type { Pattern } from "../../dsl/schema.ts";
import { reference } from "../../runtime/reference/mod.ts";
import { createRuntime } from "../../runtime/runtime.ts";
import { normalTensor } from "../../runtime/seeded_random.ts";
import { maxAbsError, maxLseError } from "../../cli/_common.ts";
import { sequenceSizes } from "../../core/shape.ts";
import { isSoftwareAdapter } from "../../bench/measure.ts";

const rt = await createRuntime({ autotune: false });
addEventListener("unload", () => rt.destroy());

/** Runs a decoding call and its reference; returns the errors and the decode kernels. */
async function decodeError(
  pattern: Pattern,
  shape: AttentionShape,
  options: Omit<CompileOptions, "shape"> = {},
) {
  const compiled = rt.compile(pattern, { shape, decode: true, ...options });
  const { nq, nk, d, dv } = sequenceSizes(shape);
  const q = normalTensor(shape.batch * shape.headsQ * nq * d, 1);
  const k = normalTensor(shape.batch * shape.headsKV * nk * d, 2);
  const v = normalTensor(shape.batch * shape.headsKV * nk * dv, 3);
  const got = await rt.run(compiled, { q, k, v });
  const want = reference({ pattern, shape, q, k, v, queryOffset: options.queryOffset });
  return {
    o: maxAbsError(got.o, want.o),
    lse: maxLseError(got.lse, want.lse),
    decodes: compiled.kernelPlan.kernels.flatMap((x) => x.kind === "decode" ? [x] : []),
  };
}

function assertClose(err: { o: number; lse: number }, label: string) {
  assert.ok(err.o <= 1e-4, `${label}: max |O - reference| ${err.o}`);
  assert.ok(err.lse <= 1e-4, `${label}: max LSE error ${err.lse}`);
}

Deno.test("decode: a long key row in several chunks, merged by the combine", async () => {
  const shape = { batch: 2, headsQ: 4, headsKV: 2, seqLen: 1, headDim: 16, kvSeqLen: 300 };
  const err = await decodeError({ kind: "causal" }, shape, { tiles: { tileQ: 8, tileK: 8 } });
  assertClose(err, "causal");
  assert.equal(err.decodes.length, 1);
  assert.ok(err.decodes[0].geometry.chunks >= 4, `chunks ${err.decodes[0].geometry.chunks}`);
  assert.deepEqual(err.decodes[0].workgroups, [err.decodes[0].geometry.chunks, 4]);
});

// On a software adapter each decode kernel's JIT takes about a minute: two cases run there, the
// others on GPUs (the runtime itself decodes on the attention kernel there).
const software = isSoftwareAdapter(rt.info);

Deno.test({
  name: "decode: a group past one workgroup's rows runs in row blocks",
  ignore: software,
  fn: async () => {
    // 32 query heads of one key/value head x 3 queries (in one or two tiles): two blocks or more.
    const shape = { batch: 1, headsQ: 32, headsKV: 1, seqLen: 3, headDim: 16, kvSeqLen: 90 };
    const err = await decodeError({ kind: "window", left: 20, right: 5 }, shape);
    assertClose(err, "window");
    assert.ok(err.decodes[0].geometry.rowBlocks >= 2, `${err.decodes[0].geometry.rowBlocks}`);
  },
});

Deno.test({
  name: "decode: residue order with several queries in one tile, and an offset",
  ignore: software,
  fn: async () => {
    // stride(3): queries 40..49 fall in the three residue classes, several per class's tiles.
    const shape = { batch: 1, headsQ: 2, headsKV: 1, seqLen: 10, headDim: 16, kvSeqLen: 80 };
    const pattern: Pattern = {
      kind: "union",
      of: [{ kind: "stride", period: 3 }, { kind: "ring", radius: 4 }],
    };
    const err = await decodeError(pattern, shape, { queryOffset: 40 });
    assertClose(err, "stride ∪ ring");
    assert.ok(err.decodes.some((k) => k.geometry.slots > 1), "a tile with several queries");
  },
});

Deno.test("decode: decode: false runs the attention kernel to the same answer", async () => {
  const shape = { batch: 1, headsQ: 4, headsKV: 2, seqLen: 2, headDim: 16, kvSeqLen: 70 };
  const on = await decodeError({ kind: "dense" }, shape);
  const off = await decodeError({ kind: "dense" }, shape, { decode: false });
  assertClose(on, "decode kernel");
  assertClose(off, "attention kernel");
  assert.equal(on.decodes.length, 1);
  assert.equal(off.decodes.length, 0);
});

Deno.test("decode: a rolling paged cache, columns no query reaches sharing one junk page", async () => {
  // window(40) over 300 keys: the query at 299 reads positions 259..299, pages 32..37 of 8
  // keys; every other column of the table names page 0, which holds large junk values.
  const shape = { batch: 2, headsQ: 4, headsKV: 2, seqLen: 1, headDim: 16, kvSeqLen: 300 };
  const pattern: Pattern = { kind: "window", left: 40, right: 0 };
  const pageSize = 8, columns = Math.ceil(300 / pageSize), held = [32, 33, 34, 35, 36, 37];
  const pages = 1 + shape.batch * held.length;
  const { d } = sequenceSizes(shape);
  const q = normalTensor(shape.batch * shape.headsQ * d, 1);
  const k = normalTensor(shape.batch * shape.headsKV * 300 * d, 2);
  const v = normalTensor(shape.batch * shape.headsKV * 300 * d, 3);
  const table = new Int32Array(shape.batch * columns);
  const pool = (x: Float32Array) => {
    const out = new Float32Array(pages * shape.headsKV * pageSize * d).fill(3e4);
    for (let b = 0; b < shape.batch; b++) {
      held.forEach((c, i) => {
        const page = 1 + b * held.length + i;
        table[b * columns + c] = page;
        for (let h = 0; h < shape.headsKV; h++) {
          const rows = Math.min(pageSize, 300 - c * pageSize);
          const from = ((b * shape.headsKV + h) * 300 + c * pageSize) * d;
          out.set(x.subarray(from, from + rows * d), (page * shape.headsKV + h) * pageSize * d);
        }
      });
    }
    return out;
  };
  const compiled = rt.compile(pattern, { shape, decode: true, paged: { pageSize, pages } });
  const got = await rt.run(compiled, { q, k: pool(k), v: pool(v), blockTable: table });
  const want = reference({ pattern, shape, q, k, v });
  assertClose({ o: maxAbsError(got.o, want.o), lse: maxLseError(got.lse, want.lse) }, "rolling");
});

Deno.test("decode: the runtime takes the decode kernel by default only where loops unroll", () => {
  // Software adapters (llvmpipe) JIT a decode kernel for about a minute: they keep the
  // attention kernel unless asked (DESIGN §7).
  const shape = { batch: 1, headsQ: 4, headsKV: 2, seqLen: 1, headDim: 16, kvSeqLen: 70 };
  const decodes = (options: { unroll?: boolean }) =>
    rt.compile({ kind: "causal" }, { shape, ...options }).kernelPlan.kernels
      .some((k) => k.kind === "decode");
  assert.equal(decodes({}), !rt.info.isFallback, `isFallback ${rt.info.isFallback}`);
  assert.equal(decodes({ unroll: true }), true);
  assert.equal(decodes({ unroll: false }), false);
});

Deno.test({
  name: "decode: a lone decoding component writes O itself: no clear, no float16 cast",
  ignore: !rt.info.shaderF16,
  fn: async () => {
    // One branch of one component covering every query: its combine writes float16 O and LSE.
    const shape = { batch: 2, headsQ: 4, headsKV: 2, seqLen: 2, headDim: 16, kvSeqLen: 300 };
    const half = await decodeError({ kind: "window", left: 50, right: 0 }, shape, {
      dtype: "f16",
      tiles: { tileQ: 8, tileK: 8 },
    });
    assert.ok(half.o <= 5e-3 && half.lse <= 5e-3, `float16: O ${half.o}, LSE ${half.lse}`);
    const kinds = rt.compile({ kind: "window", left: 50, right: 0 }, {
      shape,
      dtype: "f16",
      decode: true,
      tiles: { tileQ: 8, tileK: 8 },
    }).kernelPlan.kernels.map((k) => k.kind === "decodeCombine" ? `${k.kind}:${k.output}` : k.kind);
    assert.deepEqual(kinds, ["decode", "decodeCombine:o16"]);
    // A second component merges into the first's rows; the first still writes them (no clear).
    const pattern: Pattern = {
      kind: "union",
      of: [{ kind: "window", left: 20, right: 0 }, { kind: "stride", period: 16 }],
    };
    const union = await decodeError(pattern, shape, { tiles: { tileQ: 8, tileK: 8 } });
    assertClose(union, "window ∪ stride");
    const outputs = union.decodes.map((k) => k.component);
    assert.deepEqual(outputs, [0, 1]);
    const kernels = rt.compile(pattern, {
      shape,
      decode: true,
      tiles: { tileQ: 8, tileK: 8 },
    }).kernelPlan.kernels;
    assert.deepEqual(
      kernels.flatMap((k) => k.kind === "decodeCombine" ? [k.output] : []),
      ["write", "merge"],
    );
    assert.equal(kernels.some((k) => k.kind === "clear"), false);
  },
});
