/**
 * The backward pass of paged K and V (DESIGN §1, §6): dK and dV come in the pool's shape
 * `[pages, Hkv, pageSize, D]` (V: Dv), each row the sum over every (batch, position) the block
 * table places there, and 0 where none does. Held to the float64 reference's gradients of the
 * gathered K and V, scatter-summed into the pool in float64 (within 1e-4 of the largest
 * gradient, float32), and to the contiguous call on the same values: dQ bit for bit, each pool
 * row that one position names bit for bit its contiguous row, the page two sequences share
 * the float32 sum of their two rows, and unnamed pages and rows past Nk exactly 0 (their K and
 * V hold NaN, so a read would show). A chunk at an offset with GQA and Dv != D, and a decoding
 * step of a window in one page past Nk per sequence; reruns give the same bits; float16 where
 * the adapter has shader-f16 (within 1e-2). llvmpipe compiles each case's kernels afresh (paged
 * and contiguous), so the cases are few and small; tests/compiler/paged_kv_test.ts holds the
 * kernels of every kind to the same addressing on the CPU.
 */
import assert from "node:assert/strict";
import type { AttentionShape } from "../../compiler/mod.ts";
import { scatterPages, tableColumns } from "../../core/paged_kv.ts";
import { sequenceSizes } from "../../core/shape.ts";
import type { Pattern } from "../../dsl/schema.ts";
import { referenceGradients } from "../../runtime/reference/mod.ts";
import { createRuntime } from "../../runtime/runtime.ts";
import { normalTensor } from "../../runtime/seeded_random.ts";
import { gradientError } from "../../cli/_common.ts";
import { type PagedLayout, shuffledLayout, toPages } from "./_paged_inputs.ts";

const rt = await createRuntime({ autotune: false });
addEventListener("unload", () => rt.destroy());

interface Case {
  name: string;
  pattern: Pattern;
  shape: AttentionShape;
  queryOffset?: number;
  pageSize: number;
  /** Sequences 0 and 1 share the page of their first positions (a shared prompt). */
  sharedPrefix?: boolean;
}

const CASES: Case[] = [
  {
    name: "causal chunk at offset 20 (Nq 5 of Nk 37), GQA, Dv 8, a page two sequences share",
    pattern: { kind: "causal" },
    shape: { batch: 2, headsQ: 4, headsKV: 2, seqLen: 5, headDim: 16, kvSeqLen: 37, valueDim: 8 },
    queryOffset: 20,
    pageSize: 8,
    sharedPrefix: true,
  },
  {
    name: "decoding step of a window, MHA, one page past Nk per sequence",
    pattern: { kind: "window", left: 6, right: 0 },
    shape: { batch: 2, headsQ: 2, headsKV: 2, seqLen: 1, headDim: 16, kvSeqLen: 21 },
    pageSize: 32,
  },
];

/**
 * A shuffled pool with spare pages and table padding; with `sharedPrefix`, sequence 1's first
 * table entry is sequence 0's, and the page it named becomes a spare one.
 */
function layoutOf(c: Case): PagedLayout {
  const layout = shuffledLayout(c.shape, { pageSize: c.pageSize, spare: 2, padding: 1, seed: 5 });
  if (c.sharedPrefix) {
    const maxPages = layout.blockTable.length / c.shape.batch;
    layout.blockTable[maxPages] = layout.blockTable[0];
  }
  return layout;
}

/**
 * Seeded Q, dO and contiguous K and V (with `sharedPrefix`, sequence 1's first page of rows a
 * copy of sequence 0's, so the pool holds one consistent K and V), and K and V paged.
 */
function inputsOf(c: Case, layout: PagedLayout) {
  const { nq, nk, d, dv } = sequenceSizes(c.shape);
  const { batch: B, headsQ: Hq, headsKV: Hkv } = c.shape;
  const k = normalTensor(B * Hkv * nk * d, 2), v = normalTensor(B * Hkv * nk * dv, 3);
  if (c.sharedPrefix) {
    for (const [t, width] of [[k, d], [v, dv]] as const) {
      for (let h = 0; h < Hkv; h++) {
        const from = h * nk * width, to = (Hkv + h) * nk * width;
        t.copyWithin(to, from, from + c.pageSize * width);
      }
    }
  }
  return {
    q: normalTensor(B * Hq * nq * d, 1),
    k,
    v,
    dO: normalTensor(B * Hq * nq * dv, 4),
    kPages: toPages(k, c.shape, layout, d),
    vPages: toPages(v, c.shape, layout, dv),
  };
}

/** Compiles and runs a case's backward pass, paged or on contiguous K and V. */
async function gradientsOf(
  c: Case,
  layout: PagedLayout,
  x: ReturnType<typeof inputsOf>,
  paged: boolean,
) {
  const compiled = rt.compile(c.pattern, {
    shape: c.shape,
    queryOffset: c.queryOffset,
    backward: true,
    ...(paged ? { paged: { pageSize: c.pageSize, pages: layout.pages } } : {}),
  });
  const out = await rt.run(compiled, {
    q: x.q,
    k: paged ? x.kPages : x.k,
    v: paged ? x.vPages : x.v,
    dO: x.dO,
    ...(paged ? { blockTable: layout.blockTable } : {}),
  });
  return out.gradients!;
}

/** The bits of two float32 arrays, position by position. */
function assertSameBits(actual: ArrayLike<number>, expected: ArrayLike<number>, what: string) {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < expected.length; i++) {
    if (!Object.is(actual[i], expected[i])) {
      assert.fail(`${what}[${i}]: ${actual[i]}, expected ${expected[i]}`);
    }
  }
}

/**
 * Each pool row from the contiguous rows: the one row that names it, the float32 sum in table
 * order where several do, 0 where none does.
 */
function poolFromContiguous(
  rows: Float32Array,
  c: Case,
  layout: PagedLayout,
  width: number,
): Float32Array {
  const { nk } = sequenceSizes(c.shape);
  const { batch: B, headsKV: Hkv } = c.shape;
  const maxPages = layout.blockTable.length / B;
  const pool = new Float32Array(layout.pages * Hkv * c.pageSize * width);
  for (let b = 0; b < B; b++) {
    for (let col = 0; col < tableColumns(c.shape, c.pageSize); col++) {
      const page = layout.blockTable[b * maxPages + col];
      for (let h = 0; h < Hkv; h++) {
        for (let r = 0; r < c.pageSize && col * c.pageSize + r < nk; r++) {
          const to = ((page * Hkv + h) * c.pageSize + r) * width;
          const from = ((b * Hkv + h) * nk + col * c.pageSize + r) * width;
          for (let i = 0; i < width; i++) pool[to + i] = Math.fround(pool[to + i] + rows[from + i]);
        }
      }
    }
  }
  return pool;
}

for (const c of CASES) {
  Deno.test(`paged backward: ${c.name}`, async () => {
    const layout = layoutOf(c);
    const x = inputsOf(c, layout);
    const { batch: B, headsQ: Hq, headsKV: Hkv } = c.shape;
    const { nq, d, dv } = sequenceSizes(c.shape);
    const got = await gradientsOf(c, layout, x, true);
    assert.equal(got.dq.length, B * Hq * nq * d, "dQ is [B, Hq, Nq, D]");
    assert.equal(got.dk.length, layout.pages * Hkv * c.pageSize * d, "dK is the pool's shape");
    assert.equal(got.dv.length, layout.pages * Hkv * c.pageSize * dv, "dV is the pool's shape");

    // Against the float64 reference of the K and V the table gathers, summed into the pool.
    const want = referenceGradients({
      pattern: c.pattern,
      shape: c.shape,
      queryOffset: c.queryOffset,
      q: x.q,
      k: x.k,
      v: x.v,
      dO: x.dO,
    });
    const pool = { shape: c.shape, pageSize: c.pageSize, pages: layout.pages };
    const { worst, largest } = gradientError(got, {
      dq: want.dq,
      dk: scatterPages(want.dk, layout.blockTable, { ...pool, width: d }),
      dv: scatterPages(want.dv, layout.blockTable, { ...pool, width: dv }),
    });
    assert.ok(largest > 1e-2, `the gradients are not all zero (largest ${largest})`);
    assert.ok(worst <= 1e-4 * largest, `max |GPU - reference| ${worst}, largest ${largest}`);

    // Against the contiguous call: the same arithmetic, the pool sum aside.
    const plain = await gradientsOf(c, layout, x, false);
    assertSameBits(got.dq, plain.dq, "dQ");
    assertSameBits(got.dk, poolFromContiguous(plain.dk, c, layout, d), "dK pool");
    assertSameBits(got.dv, poolFromContiguous(plain.dv, c, layout, dv), "dV pool");

    // Pages no one names are 0 (their K and V are NaN); so are rows past Nk (checked above).
    const maxPages = layout.blockTable.length / B, columns = tableColumns(c.shape, c.pageSize);
    const named = new Set<number>();
    for (let b = 0; b < B; b++) {
      for (let col = 0; col < columns; col++) named.add(layout.blockTable[b * maxPages + col]);
    }
    const spare = [...Array(layout.pages).keys()].filter((page) => !named.has(page));
    assert.ok(spare.length >= 2, "the pool has pages no one names");
    for (const [grad, width] of [[got.dk, d], [got.dv, dv]] as const) {
      const size = Hkv * c.pageSize * width;
      for (const page of spare) {
        assert.ok(grad.subarray(page * size, (page + 1) * size).every((x) => Object.is(x, 0)));
      }
    }
    if (c.sharedPrefix) {
      // Both sequences' rows of the shared page have gradients: the pool's row is their sum.
      const { nk } = sequenceSizes(c.shape);
      assert.equal(layout.blockTable[maxPages], layout.blockTable[0]);
      for (const b of [0, 1]) {
        const at = b * Hkv * nk * d;
        assert.ok(plain.dk.subarray(at, at + c.pageSize * d).some((x) => x !== 0), `batch ${b}`);
      }
    }

    // The same bits on a rerun.
    const again = await gradientsOf(c, layout, x, true);
    for (const name of ["dq", "dk", "dv"] as const) assertSameBits(again[name], got[name], name);
  });
}

// Float16 needs the adapter's shader-f16 (llvmpipe's GL path has none): inputs and dO in
// float16, sums in float32, within 1e-2 of the largest gradient of the reference on the same
// float16-rounded values.
Deno.test({
  name: "paged backward in float16 matches the reference within 1e-2",
  ignore: !rt.info.shaderF16,
  fn: async () => {
    for (const c of CASES) {
      const layout = layoutOf(c);
      const x = inputsOf(c, layout);
      const [q, k, v, dO, kPages, vPages] = [x.q, x.k, x.v, x.dO, x.kPages, x.vPages]
        .map((t) => Float16Array.from(t));
      const { d, dv } = sequenceSizes(c.shape);
      const pool = { shape: c.shape, pageSize: c.pageSize, pages: layout.pages };
      const compiled = rt.compile(c.pattern, {
        shape: c.shape,
        queryOffset: c.queryOffset,
        dtype: "f16",
        backward: true,
        paged: { pageSize: c.pageSize, pages: layout.pages },
      });
      const out = await rt.run(compiled, {
        q,
        k: kPages,
        v: vPages,
        dO,
        blockTable: layout.blockTable,
      });
      const want = referenceGradients({
        pattern: c.pattern,
        shape: c.shape,
        queryOffset: c.queryOffset,
        q,
        k,
        v,
        dO,
      });
      const { worst, largest } = gradientError(out.gradients!, {
        dq: want.dq,
        dk: scatterPages(want.dk, layout.blockTable, { ...pool, width: d }),
        dv: scatterPages(want.dv, layout.blockTable, { ...pool, width: dv }),
      });
      assert.ok(worst <= 1e-2 * largest, `${c.name}: max |GPU - reference| ${worst} of ${largest}`);
    }
  },
});
