/**
 * Paged K and V on the kernels (DESIGN §1): a call reading K and V from a pool of pages through
 * a shuffled block table gives the contiguous call's O and LSE bit for bit, and hashBucket
 * codes too, for every kind that reads K or V (dense, causal, a window with edge pairs, stride
 * in residue order, a union, lowRank's pooling, hashBucket's codes), on decoding steps
 * (Nq = 1), prefill chunks and square calls, MHA, GQA and MQA, page sizes from 1 to past Nk,
 * and both within the float64 reference's tolerance. Spare pages, table padding and the rows
 * past Nk of a sequence's last page hold NaN, so a read of anything the table does not name
 * would show. A grown pool with a new table reuses the pipelines; bad tables are refused
 * naming the entry; a paged call past one binding is refused.
 */
import assert from "node:assert/strict";
import type { AttentionShape } from "../../compiler/mod.ts";
import { DataError, DeviceError, ShapeError } from "../../core/errors.ts";
import { gatherPages } from "../../core/paged_kv.ts";
import { sequenceSizes } from "../../core/shape.ts";
import type { Pattern } from "../../dsl/schema.ts";
import { hashCodeMismatches, reference } from "../../runtime/reference/mod.ts";
import { createRuntime } from "../../runtime/runtime.ts";
import { normalTensor } from "../../runtime/seeded_random.ts";
import { maxAbsError, maxLseError } from "../../cli/_common.ts";
import { type PagedLayout, shuffledLayout, toPages } from "./_paged_inputs.ts";

const rt = await createRuntime({ autotune: false });
addEventListener("unload", () => rt.destroy());

interface PagedCase {
  name: string;
  pattern: Pattern;
  shape: AttentionShape;
  queryOffset?: number;
  pageSize: number;
  /** A kernel form the case is there for, checked on its kernel plan. */
  form?: "edge pairs" | "residue order";
}

const CASES: PagedCase[] = [
  {
    name: "dense, decoding step, GQA",
    pattern: { kind: "dense" },
    shape: { batch: 2, headsQ: 4, headsKV: 2, seqLen: 1, headDim: 16, kvSeqLen: 45 },
    pageSize: 8,
  },
  {
    name: "causal, prefill chunk, MQA",
    pattern: { kind: "causal" },
    shape: { batch: 2, headsQ: 2, headsKV: 1, seqLen: 7, headDim: 16, kvSeqLen: 45 },
    pageSize: 16,
  },
  {
    name: "window with edge pairs, square call, pages smaller than a tile",
    pattern: { kind: "window", left: 8, right: 8 },
    shape: { batch: 1, headsQ: 2, headsKV: 2, seqLen: 64, headDim: 16 },
    pageSize: 4,
    form: "edge pairs",
  },
  {
    name: "stride in residue order, chunk at an offset, a value head dim of its own",
    pattern: { kind: "stride", period: 5 },
    shape: { batch: 2, headsQ: 2, headsKV: 2, seqLen: 12, headDim: 16, kvSeqLen: 53, valueDim: 8 },
    queryOffset: 20,
    pageSize: 8,
    form: "residue order",
  },
  {
    name: "union of a ring and a stride, decoding step, one position per page",
    pattern: { kind: "union", of: [{ kind: "ring", radius: 4 }, { kind: "stride", period: 7 }] },
    shape: { batch: 2, headsQ: 2, headsKV: 1, seqLen: 1, headDim: 16, kvSeqLen: 30 },
    pageSize: 1,
  },
  {
    name: "causal with lowRank landmarks pooled from the pages, chunk, V of its own width",
    pattern: { kind: "union", of: [{ kind: "causal" }, { kind: "lowRank", rank: 6 }] },
    shape: { batch: 1, headsQ: 4, headsKV: 2, seqLen: 5, headDim: 16, kvSeqLen: 38, valueDim: 24 },
    pageSize: 8,
  },
  {
    name: "hashBucket codes of paged keys, decoding step, one page past Nk",
    pattern: { kind: "hashBucket", buckets: 4, rounds: 1, seed: 5 },
    shape: { batch: 2, headsQ: 2, headsKV: 2, seqLen: 1, headDim: 16, kvSeqLen: 27 },
    pageSize: 64,
  },
];

/** Seeded Q and contiguous K and V at a shape, and the same K and V paged. */
function inputsOf(shape: AttentionShape, layout: PagedLayout, seed: number) {
  const { nq, nk, d, dv } = sequenceSizes(shape);
  const { batch: B, headsQ: Hq, headsKV: Hkv } = shape;
  const k = normalTensor(B * Hkv * nk * d, seed + 1);
  const v = normalTensor(B * Hkv * nk * dv, seed + 2);
  return {
    q: normalTensor(B * Hq * nq * d, seed),
    k,
    v,
    kPages: toPages(k, shape, layout, d),
    vPages: toPages(v, shape, layout, dv),
  };
}

/** Same bits, NaN and -Infinity included. */
function assertSameBits(a: ArrayLike<number>, b: ArrayLike<number>, what: string): void {
  assert.equal(a.length, b.length, `${what}: length`);
  for (let i = 0; i < a.length; i++) {
    if (!Object.is(a[i], b[i])) assert.fail(`${what}[${i}]: paged ${b[i]}, contiguous ${a[i]}`);
  }
}

// Each case runs in the kernels the device picks, and again with the decode kernel asked for
// where it applies (a GPU picks it by default; a software adapter would not test it otherwise):
// Nq of at most 64 and keys that are positions of K, not bucket order.
const RUNS = CASES.flatMap((c) => [
  { c, decode: undefined },
  ...(sequenceSizes(c.shape).nq <= 64 && !c.form && c.pattern.kind !== "hashBucket"
    ? [{ c, decode: true }]
    : []),
]);

for (const { c, decode } of RUNS) {
  const kernel = decode ? ", decode kernel" : "";
  Deno.test(`paged K/V: ${c.name}${kernel}, bit for bit the contiguous call`, async () => {
    const layout = shuffledLayout(c.shape, { pageSize: c.pageSize, spare: 3, padding: 2, seed: 9 });
    const x = inputsOf(c.shape, layout, 11);
    // Residue order is the layout of the fewest tiles at small tiles; on a GPU's larger default
    // tiles natural order can win, so this case names the tiles.
    const tiles = c.form === "residue order" ? { tiles: { tileQ: 8, tileK: 8 } } : {};
    const options = { shape: c.shape, queryOffset: c.queryOffset, decode, ...tiles };
    const contiguous = await rt.run(rt.compile(c.pattern, options), { q: x.q, k: x.k, v: x.v });
    const compiled = rt.compile(c.pattern, {
      ...options,
      paged: { pageSize: layout.pageSize, pages: layout.pages },
    });
    if (decode) {
      assert.ok(compiled.kernelPlan.kernels.some((k) => k.kind === "decode"), "a decode kernel");
    }
    if (c.form === "edge pairs") {
      assert.ok(
        compiled.kernelPlan.kernels.some((k) => k.kind === "attention" && k.edgePairs !== "none"),
      );
    }
    if (c.form === "residue order") {
      assert.equal(compiled.plan.branches[0].components[0].kLayout.kind, "residue");
    }
    const paged = await rt.run(compiled, {
      q: x.q,
      k: x.kPages,
      v: x.vPages,
      blockTable: layout.blockTable,
    });
    assertSameBits(contiguous.o, paged.o, "O");
    assertSameBits(contiguous.lse, paged.lse, "LSE");
    for (const [key, codes] of contiguous.hashCodes ?? []) {
      const pagedCodes = paged.hashCodes?.get(key);
      assertSameBits(codes.q, pagedCodes!.q, `${key} query codes`);
      assertSameBits(codes.k, pagedCodes!.k, `${key} key codes`);
    }
    // And against the float64 reference of the gathered K and V.
    const { d, dv } = sequenceSizes(c.shape);
    const gather = (pages: Float32Array, width: number) =>
      gatherPages(pages, layout.blockTable, { shape: c.shape, pageSize: c.pageSize, width });
    const k = gather(x.kPages, d), v = gather(x.vPages, dv);
    assertSameBits(x.k, k, "gathered K");
    if (paged.hashCodes) {
      for (const m of hashCodeMismatches(c.pattern, c.shape, x.q, k, paged.hashCodes)) {
        assert.deepEqual([m.queries, m.keys], [0, 0], `hashBucket codes of ${m.key}`);
      }
    }
    const want = reference({
      pattern: c.pattern,
      shape: c.shape,
      queryOffset: c.queryOffset,
      q: x.q,
      k,
      v,
      hashCodes: paged.hashCodes,
    });
    assert.ok(
      maxAbsError(paged.o, want.o) <= 1e-4,
      `max |O - reference| ${maxAbsError(paged.o, want.o)}`,
    );
    assert.ok(maxLseError(paged.lse, want.lse) <= 1e-4, "LSE");
  });
}

Deno.test({
  name: "paged K/V in float16: bit for bit the contiguous call",
  ignore: !rt.info.shaderF16,
  fn: async () => {
    for (const c of CASES.slice(0, 3)) {
      const layout = shuffledLayout(c.shape, {
        pageSize: c.pageSize,
        spare: 2,
        padding: 0,
        seed: 3,
      });
      const x = inputsOf(c.shape, layout, 5);
      const h = (values: Float32Array) => Float16Array.from(values);
      const options = { shape: c.shape, dtype: "f16" as const };
      const contiguous = await rt.run(rt.compile(c.pattern, options), {
        q: h(x.q),
        k: h(x.k),
        v: h(x.v),
      });
      const paged = await rt.run(
        rt.compile(c.pattern, { ...options, paged: { pageSize: c.pageSize, pages: layout.pages } }),
        { q: h(x.q), k: h(x.kPages), v: h(x.vPages), blockTable: layout.blockTable },
      );
      assertSameBits(contiguous.o, paged.o, `${c.name}: O`);
      assertSameBits(contiguous.lse, paged.lse, `${c.name}: LSE`);
    }
  },
});

Deno.test("paged K/V: a grown pool and a new table reuse the compiled pipelines", async () => {
  const c = CASES[0];
  const first = shuffledLayout(c.shape, { pageSize: 8, spare: 0, padding: 0, seed: 1 });
  const grown = shuffledLayout(c.shape, { pageSize: 8, spare: 20, padding: 5, seed: 2 });
  const x = inputsOf(c.shape, first, 21);
  const run = (layout: PagedLayout, k: Float32Array, v: Float32Array) =>
    rt.run(
      rt.compile(c.pattern, { shape: c.shape, paged: { pageSize: 8, pages: layout.pages } }),
      { q: x.q, k, v, blockTable: layout.blockTable },
    );
  const before = await run(first, x.kPages, x.vPages);
  const misses = rt.pipelines.misses;
  const { d } = sequenceSizes(c.shape);
  const after = await run(grown, toPages(x.k, c.shape, grown, d), toPages(x.v, c.shape, grown, d));
  assert.equal(rt.pipelines.misses, misses, "no pipeline compiled for the grown pool");
  assertSameBits(before.o, after.o, "O");
});

Deno.test("paged K/V: bad tables and paged tensors are refused naming them", async () => {
  const c = CASES[0];
  const layout = shuffledLayout(c.shape, { pageSize: 8, spare: 1, padding: 1, seed: 4 });
  const x = inputsOf(c.shape, layout, 31);
  const compiled = rt.compile(c.pattern, {
    shape: c.shape,
    paged: { pageSize: 8, pages: layout.pages },
  });
  const refused = async (
    inputs: Partial<Parameters<typeof rt.run>[1]>,
    error: new (...args: never[]) => Error,
    says: RegExp,
  ) =>
    await assert.rejects(
      () => rt.run(compiled, { q: x.q, k: x.kPages, v: x.vPages, ...inputs }),
      (e) => e instanceof error && says.test(e.message),
      String(says),
    );
  // Two sequences of 45 keys in pages of 8: 6 columns are read, maxPages is 7.
  await refused({}, ShapeError, /blockTable is required: .*maxPages >= ceil\(Nk \/ pageSize\) = 6/);
  await refused(
    { blockTable: new Int32Array(11) },
    ShapeError,
    /blockTable has 11 elements, expected \[B, maxPages\] with B = 2 and maxPages >= .* = 6/,
  );
  await refused({ blockTable: new Int32Array(10) }, ShapeError, /blockTable has 10 elements/);
  const table = (at: number, value: number) => {
    const t = layout.blockTable.slice();
    t[at] = value;
    return t;
  };
  await refused(
    { blockTable: table(7 + 2, layout.pages) },
    DataError,
    new RegExp(`blockTable\\[1, 2\\] is ${layout.pages}; .*\\[0, ${layout.pages}\\)`),
  );
  await refused({ blockTable: table(0, -1) }, DataError, /blockTable\[0, 0\] is -1/);
  // The padding column is neither read nor checked.
  await rt.run(compiled, {
    q: x.q,
    k: x.kPages,
    v: x.vPages,
    blockTable: table(6, 1e6) as Int32Array,
  });
  await refused(
    { k: x.k, blockTable: layout.blockTable },
    ShapeError,
    /paged k has 2880 elements, expected pages\*Hkv\*pageSize\*D = 13\*2\*8\*16 = 3328/,
  );
  // A NaN in a row the call reads is refused; in rows it does not read (spare pages) it is not.
  const k = x.kPages.slice();
  k[layout.blockTable[0] * 2 * 8 * 16 + 3] = NaN;
  await refused({ k, blockTable: layout.blockTable }, DataError, /k\[\d+\] is NaN/);
  // A contiguous call given a table.
  const plain = rt.compile(c.pattern, { shape: c.shape });
  await assert.rejects(
    () => rt.run(plain, { q: x.q, k: x.k, v: x.v, blockTable: layout.blockTable }),
    (e) => e instanceof ShapeError && /not compiled with paged K and V/.test(e.message),
  );
});

Deno.test("paged K/V: a call past one binding is refused, not run in parts", async () => {
  const small = await createRuntime({ autotune: false, maxBindingBytes: 4000 });
  try {
    const shape = { batch: 2, headsQ: 2, headsKV: 2, seqLen: 1, headDim: 16, kvSeqLen: 37 };
    assert.throws(
      () => small.compile({ kind: "causal" }, { shape, paged: { pageSize: 8, pages: 10 } }),
      (e) =>
        e instanceof DeviceError &&
        /buffer k needs 10240 bytes, over the 4000 .*does not run in parts/.test(e.message),
    );
  } finally {
    small.destroy();
  }
});
