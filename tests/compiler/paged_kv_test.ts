/**
 * Paged K and V on the CPU (DESIGN §1, compiler/wgsl/kv_row_wgsl.ts): every kernel that binds K
 * and V binds the block table last and reads their rows through `kvRow`, and its WGSL differs
 * from the contiguous kernel's only in those addresses (the arithmetic is the same text); the
 * pool's page count is in no pipeline; K and V's buffers are the pool; bad `paged` options and
 * paged packed sequences are refused naming the field. The backward pass's tile kernels read K
 * and V the same way, and its last kernel, `gradPages`, sums dK and dV into the pool's shape
 * from contiguous rows; its pipelines too are the same for any pool.
 */
import assert from "node:assert/strict";
import { compile, type CompileOptions, pipelineKey } from "../../compiler/mod.ts";
import { ShapeError } from "../../core/errors.ts";
import type { Pattern } from "../../dsl/schema.ts";

const LIMITS = {
  maxComputeWorkgroupStorageSize: 49152,
  maxComputeInvocationsPerWorkgroup: 1024,
  maxStorageBufferBindingSize: 2 ** 31,
};

/** A square call (edge pairs, shared modules), a prefill chunk and a decoding step. */
const SHAPES: CompileOptions["shape"][] = [
  { batch: 2, headsQ: 4, headsKV: 2, seqLen: 256, headDim: 32 },
  { batch: 2, headsQ: 4, headsKV: 1, seqLen: 40, headDim: 32, kvSeqLen: 200 },
  { batch: 3, headsQ: 2, headsKV: 2, seqLen: 1, headDim: 16, kvSeqLen: 129, valueDim: 24 },
];

const PATTERNS: Pattern[] = [
  { kind: "dense" },
  { kind: "causal" },
  { kind: "window", left: 32, right: 32 },
  { kind: "stride", period: 8 },
  { kind: "union", of: [{ kind: "ring", radius: 16 }, { kind: "stride", period: 16 }] },
  { kind: "union", of: [{ kind: "causal" }, { kind: "lowRank", rank: 8 }] },
  { kind: "hashBucket", buckets: 4, rounds: 2, seed: 3 },
  { kind: "union", of: [{ kind: "window", left: 8, right: 0 }, { kind: "global", tokens: [0] }] },
  {
    kind: "gated",
    branches: [{ kind: "ring", radius: 8 }, { kind: "stride", period: 4 }],
    gates: [0.5, 0.5],
  },
];

/**
 * The WGSL of a paged kernel with what paging adds taken out (the header line, the table's
 * binding, the `kvRow` block), and of the contiguous one with its per-head bases taken out;
 * what is left must agree line by line except where a row of K or V is addressed.
 */
function addressLinesOnly(contiguous: string, paged: string, label: string): void {
  const pagedLines = paged
    .replace(/\n\/\/ Paged K and V[\s\S]*?\nfn kvRow[\s\S]*?\n\}\n/, "\n")
    .split("\n")
    .filter((line) =>
      line !== "" && !/K and V in pages of|var<storage, read> blockTable/.test(line)
    );
  const contiguousLines = contiguous.split("\n")
    .filter((line) => line !== "" && !/let kvBase = |let vBase = |^const KV_ROWS/.test(line));
  assert.equal(pagedLines.length, contiguousLines.length, `${label}: line count`);
  pagedLines.forEach((line, i) => {
    if (line === contiguousLines[i]) return;
    assert.match(line, /kvRow\(/, `${label}: line ${i} differs but reads no row:\n${line}`);
    assert.match(
      contiguousLines[i],
      /kvBase \+ |vBase \+ |\(head \* N \+ row\)|\(\(row - ROWS_Q\) \* N \+ position\)|kvHead \* N \+ /,
      `${label}: line ${i}, contiguous:\n${contiguousLines[i]}\npaged:\n${line}`,
    );
  });
}

Deno.test("paged K/V: only the addresses of K and V rows change, in every kernel that reads them", () => {
  for (const shape of SHAPES) {
    for (const pattern of PATTERNS) {
      for (const dtype of ["f32", "f16"] as const) {
        const options = { shape, dtype, limits: LIMITS };
        const plain = compile(pattern, options);
        const paged = compile(pattern, { ...options, paged: { pageSize: 16, pages: 40 } });
        const label = `${JSON.stringify(pattern)} at ${JSON.stringify(shape)} ${dtype}`;
        assert.equal(paged.passes.length, plain.passes.length, label);
        assert.equal(paged.kernelPlan.paged?.pageSize, 16);
        let reading = 0;
        paged.passes.forEach((pass, i) => {
          const names = pass.bindings.map((b) => b.buffer);
          const contiguous = plain.passes[i];
          if (!names.includes("k")) {
            // Landmark keys, the sort, clears, blends: untouched.
            assert.equal(pass.wgsl, contiguous.wgsl, `${label}: ${pass.label}`);
            assert.ok(!names.includes("blockTable"), `${label}: ${pass.label} binds no table`);
            return;
          }
          reading++;
          assert.deepEqual(names, [...contiguous.bindings.map((b) => b.buffer), "blockTable"]);
          assert.match(
            pass.wgsl,
            new RegExp(`@binding\\(${names.length - 1}\\) var<storage, read> blockTable`),
          );
          assert.doesNotMatch(pass.wgsl, /kvBase|vBase|KV_ROWS/, `${label}: ${pass.label}`);
          addressLinesOnly(contiguous.wgsl, pass.wgsl, `${label}: ${pass.label}`);
        });
        assert.ok(reading > 0, `${label}: some kernel reads K`);
      }
    }
  }
});

Deno.test("paged K/V: the pool's size is in the buffers, never in a pipeline", () => {
  const shape = { batch: 2, headsQ: 4, headsKV: 2, seqLen: 1, headDim: 16, kvSeqLen: 100 };
  const pattern: Pattern = {
    kind: "union",
    of: [{ kind: "causal" }, { kind: "lowRank", rank: 4 }],
  };
  const small = compile(pattern, { shape, paged: { pageSize: 8, pages: 26 } });
  const large = compile(pattern, { shape, paged: { pageSize: 8, pages: 5000 } });
  assert.deepEqual(
    small.passes.map((p) => pipelineKey(p.wgsl)),
    large.passes.map((p) => pipelineKey(p.wgsl)),
  );
  const bytes = (c: typeof small, name: string) => c.buffers.find((b) => b.name === name)?.bytes;
  assert.equal(bytes(small, "k"), 26 * 2 * 8 * 16 * 4, "k: [pages, Hkv, pageSize, D] float32");
  assert.equal(bytes(large, "v"), 5000 * 2 * 8 * 16 * 4);
  // The table as uploaded: [B, ceil(Nk / pageSize)] u32.
  assert.deepEqual(small.buffers.find((b) => b.name === "blockTable"), {
    name: "blockTable",
    bytes: 2 * 13 * 4,
    input: "blockTable",
  });
  // Another page size is another constant of the kernels.
  const other = compile(pattern, { shape, paged: { pageSize: 16, pages: 26 } });
  const reader = small.passes.findIndex((p) => p.bindings.some((b) => b.buffer === "blockTable"));
  assert.notEqual(pipelineKey(other.passes[reader].wgsl), pipelineKey(small.passes[reader].wgsl));
});

Deno.test("paged K/V: bad options are refused naming the field", () => {
  const shape = { batch: 1, headsQ: 1, headsKV: 1, seqLen: 64, headDim: 16 };
  const refused = (paged: unknown, field: RegExp, extra: Partial<CompileOptions> = {}) =>
    assert.throws(
      () => compile({ kind: "causal" }, { shape, paged: paged as never, ...extra }),
      (e) => e instanceof ShapeError && field.test(e.message),
      JSON.stringify(paged),
    );
  for (const pageSize of [0, 3, 12, 1.5, -4, 131072, NaN]) {
    refused({ pageSize, pages: 4 }, /paged\.pageSize must be a power of two from 1 to 65536/);
  }
  for (const pages of [0, -1, 2.5]) refused({ pageSize: 16, pages }, /paged\.pages must be/);
  refused({ pageSize: 16, pages: 4 }, /packed sequences .*contiguous K and V/, { packed: true });
  // The extremes of the range compile.
  for (const pageSize of [1, 65536]) {
    compile({ kind: "causal" }, { shape, paged: { pageSize, pages: 1 } });
  }
});

Deno.test("paged K/V backward: the tile kernels read K and V through kvRow; gradPages sums into pages", () => {
  for (const shape of SHAPES) {
    for (const pattern of PATTERNS) {
      const options = { shape, limits: LIMITS, backward: true };
      const plain = compile(pattern, options);
      const paged = compile(pattern, { ...options, paged: { pageSize: 16, pages: 40 } });
      const label = `${JSON.stringify(pattern)} at ${JSON.stringify(shape)}`;
      // The same kernels, and one more: gradPages, last.
      assert.equal(paged.passes.length, plain.passes.length + 1, label);
      const last = paged.kernelPlan.kernels.at(-1)!;
      assert.equal(last.kind, "gradPages", label);
      assert.deepEqual(last.bindings.map((b) => [b.buffer, b.writable]), [
        ["dkv", false],
        ["pageRefs", false],
        ["dkvPages", true],
      ]);
      plain.passes.forEach((contiguous, i) => {
        const pass = paged.passes[i];
        if (!pass.label.startsWith("gradients: ") || pass.wgsl === contiguous.wgsl) return;
        // A tile kernel over keys that are positions: it reads K and V through the table.
        const names = pass.bindings.map((b) => b.buffer);
        assert.deepEqual(names, [...contiguous.bindings.map((b) => b.buffer), "blockTable"]);
        const lines = (wgsl: string) =>
          wgsl.replace(/\n\/\/ Paged K and V[\s\S]*?\nfn kvRow[\s\S]*?\n\}\n/, "\n")
            .split("\n").filter((line) =>
              line !== "" && !/var<storage, read> blockTable/.test(line)
            );
        const a = lines(contiguous.wgsl), b = lines(pass.wgsl);
        assert.equal(a.length, b.length, `${label}: ${pass.label}`);
        let reads = 0;
        a.forEach((line, j) => {
          if (line === b[j]) return;
          reads++;
          assert.match(
            line,
            /let src = \(kvHead \* KV_ROWS \+ u32\(max\(kp, 0\)\)\) \* DV?4 \+ d;/,
          );
          assert.match(b[j], /let src = kvRow\(kvHead, u32\(max\(kp, 0\)\)\) \* DV?4 \+ d;/);
        });
        assert.ok(reads > 0, `${label}: ${pass.label} reads no K row`);
      });
    }
  }
});

Deno.test("paged K/V backward: gradients' buffers, and no pool size in a pipeline", () => {
  const shape = {
    batch: 3,
    headsQ: 4,
    headsKV: 2,
    seqLen: 5,
    headDim: 16,
    kvSeqLen: 100,
    valueDim: 8,
  };
  const pattern: Pattern = {
    kind: "union",
    of: [{ kind: "causal" }, { kind: "lowRank", rank: 4 }],
  };
  const small = compile(pattern, { shape, backward: true, paged: { pageSize: 8, pages: 40 } });
  const large = compile(pattern, { shape, backward: true, paged: { pageSize: 8, pages: 5000 } });
  assert.deepEqual(
    small.passes.map((p) => pipelineKey(p.wgsl)),
    large.passes.map((p) => pipelineKey(p.wgsl)),
  );
  const bytes = (name: string) => small.buffers.find((b) => b.name === name)?.bytes;
  // Contiguous rows per sequence position, then the pools; the table inverted: B * 13 refs and
  // pages + 1 starts.
  assert.equal(bytes("dkv"), 3 * 2 * 100 * (16 + 8) * 4);
  assert.equal(bytes("dkvPages"), 40 * 2 * 8 * (16 + 8) * 4);
  assert.deepEqual(small.buffers.find((b) => b.name === "pageRefs"), {
    name: "pageRefs",
    bytes: (3 * 13 + 41) * 4,
    input: "pageRefs",
  });
  // One invocation per vec4 of the pools.
  assert.deepEqual(small.kernelPlan.kernels.at(-1)!.workgroups, [
    Math.ceil(40 * 2 * 8 * (4 + 2) / 256),
    1,
  ]);
});
