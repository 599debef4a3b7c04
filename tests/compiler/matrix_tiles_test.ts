/**
 * The subgroup-matrix path at compile time: which devices and dtypes get it, the shapes it
 * tries, what it declares, and the refusals of tiles it cannot run. (Its results are checked
 * against the reference on a GPU with subgroup matrices: tests/gpu/matrix_path_test.ts.)
 */
import assert from "node:assert/strict";
import {
  compile,
  kernelFits,
  kernelShapeName,
  type MatrixConfig,
  parseKernelShapeName,
  tuningCandidates,
} from "../../compiler/mod.ts";
import { kernelStorageBytes, matrixConfig, prefetches } from "../../compiler/tiles.ts";
import { ShapeError } from "../../core/errors.ts";

/** What Dawn reports for the H200: f16 inputs with f32 (and f16) results, subgroups of 32. */
const configs = (result: "f16" | "f32"): MatrixConfig[] =>
  [[16, 16, 16], [16, 8, 16], [16, 8, 8]].map(([m, n, k]) => ({
    input: "f16",
    result,
    m,
    n,
    k,
    subgroupSize: 32,
  }));
const H200_DAWN = {
  maxComputeWorkgroupStorageSize: 49152,
  maxComputeInvocationsPerWorkgroup: 1024,
  matrices: [...configs("f16"), ...configs("f32")],
};
const H200_NATIVE = {
  maxComputeWorkgroupStorageSize: 49152,
  maxComputeInvocationsPerWorkgroup: 1024,
};
const shape = (seqLen: number, headDim = 64) => ({
  batch: 1,
  headsQ: 2,
  headsKV: 1,
  seqLen,
  headDim,
});

Deno.test("float16 on a device with float32-result matrices gets the matrix path first", () => {
  assert.deepEqual(matrixConfig(H200_DAWN), configs("f32")[0]);
  const names = tuningCandidates(64, H200_DAWN, "f16", 4).map((s) => kernelShapeName(s, 64));
  assert.deepEqual(names, [
    "128x32x2c4.mma16x16x16s32",
    "128x32x4c4.mma16x16x16s32",
    "64x64x2c4.mma16x16x16s32",
    "64x32x2c4.mma16x16x16s32",
  ]);
  // float32 calls, devices without matrices, and f16-result-only devices keep register tiles.
  assert.ok(tuningCandidates(64, H200_DAWN, "f32").every((s) => !s.matrix));
  assert.ok(tuningCandidates(64, H200_NATIVE, "f16").every((s) => !s.matrix));
  const halfOnly = { ...H200_NATIVE, matrices: configs("f16") };
  assert.ok(tuningCandidates(64, halfOnly, "f16").every((s) => !s.matrix));
});

Deno.test("matrix shapes fit the device's workgroup memory, at every head dim", () => {
  for (const d of [16, 32, 64, 128]) {
    const list = tuningCandidates(d, H200_DAWN, "f16", 12).filter((s) => s.matrix);
    assert.ok(list.length > 0, `D = ${d} has a matrix shape`);
    for (const s of list) {
      assert.ok(kernelStorageBytes(s, d, "f16") <= 49152, kernelShapeName(s, d));
      assert.equal(s.threads % 32, 0);
      assert.equal((s.tileQ / (s.threads / 32)) % 16, 0, "each subgroup owns whole 16-row blocks");
    }
  }
  // 64x64 at D = 128 would need 69 KiB: it is not offered.
  const big = tuningCandidates(128, H200_DAWN, "f16", 12).map((s) => kernelShapeName(s, 128));
  assert.ok(!big.some((name) => name.startsWith("64x64")), big.join(", "));
});

Deno.test("matrix shape names round-trip and fit only where the device lists the matrix", () => {
  const [first] = tuningCandidates(64, H200_DAWN, "f16", 1);
  const name = kernelShapeName(first, 64);
  assert.deepEqual(parseKernelShapeName(name, 64), first);
  assert.ok(kernelFits(first, 64, "f16", H200_DAWN));
  assert.ok(!kernelFits(first, 64, "f16", H200_NATIVE), "no matrices on the device");
  assert.ok(!kernelFits(first, 64, "f32", H200_DAWN), "float32 never runs on the matrices");
  assert.equal(parseKernelShapeName("64x64x2c4.mma16x16x16s48", 64), undefined);
});

Deno.test("the matrix kernel stages Q, multiplies on subgroup matrices and walks no pairs", () => {
  const compiled = compile({ kind: "ring", radius: 128 }, {
    shape: shape(4096),
    dtype: "f16",
    limits: H200_DAWN,
  });
  assert.equal(compiled.kernel.matrix?.m, 16);
  const attention = compiled.kernelPlan.kernels.filter((k) => k.kind === "attention");
  assert.ok(attention.every((k) => k.querySource === "tile" && k.edgePairs === "none"));
  const wgsl = compiled.passes.find((p) => /Weft attention kernel/.test(p.wgsl))!.wgsl;
  for (
    const needle of [
      "enable chromium_experimental_subgroup_matrix;",
      "@builtin(subgroup_id) sg: u32",
      "subgroupMatrixMultiplyAccumulate(qm0_0, kt0, s0)",
      "subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>>(&kpTile, 16u * QK_ROW + 0u, true",
      "subgroupMatrixStore(&mmaOut",
      "var<workgroup> mmaOut: array<f32, 4608>;", // 128 rows of 32 + 4
    ]
  ) {
    assert.ok(wgsl.includes(needle), needle);
  }
  // The scalar path's tiles and arithmetic are not there.
  assert.ok(!/\bqTile\b/.test(wgsl));
  assert.ok(!/fma\(qv/.test(wgsl));
});

Deno.test("the majorness is spelt as the device compiles it", () => {
  const wgsl = (majorness?: "template" | "argument") =>
    compile({ kind: "causal" }, {
      shape: shape(1024),
      dtype: "f16",
      limits: { ...H200_DAWN, ...(majorness ? { matrixMajorness: majorness } : {}) },
    }).passes[0].wgsl;
  const current = wgsl("template");
  assert.ok(
    current.includes(
      "subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>, col_major>(&kpTile, 0u * QK_ROW + 0u, QK_ROW)",
    ),
  );
  assert.ok(current.includes("subgroupMatrixStore<row_major>(&mmaOut, "));
  assert.ok(!/subgroupMatrix(Load|Store)\([^)]*, (true|false), /.test(current));
  // The first spelling, a bool argument, is the default.
  for (const first of [wgsl(), wgsl("argument")]) {
    assert.ok(first.includes("(&kpTile, 0u * QK_ROW + 0u, true, QK_ROW)"));
    assert.ok(!first.includes("col_major"));
  }
});

Deno.test("every kind of kernel compiles on the matrix path", () => {
  const patterns = [
    { kind: "dense" },
    { kind: "causal" },
    { kind: "stride", period: 16 },
    { kind: "union", of: [{ kind: "ring", radius: 64 }, { kind: "stride", period: 16 }] },
    { kind: "union", of: [{ kind: "window", left: 64, right: 64 }, { kind: "lowRank", rank: 64 }] },
    { kind: "global", tokens: [0, 5, 9] },
    { kind: "hashBucket", buckets: 8, rounds: 2, seed: 3 },
    { kind: "predicate", expr: "(q + 2 * k) % 3 == 0" },
    {
      kind: "gated",
      branches: [{ kind: "ring", radius: 32 }, { kind: "stride", period: 8 }],
    },
  ];
  for (const p of patterns) {
    for (const n of [1000, 4096]) {
      const c = compile(p, { shape: shape(n), dtype: "f16", limits: H200_DAWN });
      assert.ok(c.kernel.matrix, JSON.stringify(p));
      const kernels = c.passes.filter((x) => /Weft attention kernel/.test(x.wgsl));
      assert.ok(kernels.length > 0);
      for (const k of kernels) assert.ok(k.wgsl.includes("subgroupMatrixStore"), k.label);
    }
  }
});

Deno.test("matrix tiles the call cannot use are refused, naming the field", () => {
  const tiles = {
    tileQ: 64,
    tileK: 64,
    threads: 128,
    rowsPerThread: 2,
    matrix: configs("f32")[0],
  };
  const refusal = (options: Record<string, unknown>) => {
    try {
      compile({ kind: "dense" }, { shape: shape(256), dtype: "f16", tiles, ...options });
    } catch (e) {
      assert.ok(e instanceof ShapeError, String(e));
      return e.message;
    }
    assert.fail("compiled");
  };
  assert.match(refusal({ dtype: "f32" }), /tiles\.matrix needs dtype "f16"/);
  assert.match(refusal({ globalQuery: true }), /globalQuery must not be true/);
  assert.match(
    refusal({ tiles: { ...tiles, threads: 96 } }),
    /do not tile into 16x16x16 subgroup matrices/,
  );
  assert.match(refusal({ shape: shape(256, 40) }), /D multiples of 16/);
});

/** Bytes of a WGSL workgroup declaration's type (the types the matrix kernels declare). */
function declarationBytes(type: string): number {
  const scalar: Record<string, number> = { f16: 2, f32: 4, i32: 4, u32: 4 };
  const array = /^array<(.+), (\d+)>$/.exec(type);
  if (array) return declarationBytes(array[1]) * Number(array[2]);
  const vector = /^vec(\d)<(\w+)>$/.exec(type);
  if (vector) return Number(vector[1]) * scalar[vector[2]];
  if (type in scalar) return scalar[type];
  throw new Error(`unknown workgroup type ${type}`);
}

Deno.test("a matrix kernel's workgroup variables are multiples of 16 bytes", () => {
  const patterns = [
    { kind: "dense" },
    { kind: "ring", radius: 40 },
    { kind: "global", tokens: [0, 5, 9] },
    { kind: "gated", branches: [{ kind: "ring", radius: 32 }, { kind: "stride", period: 8 }] },
  ];
  for (const p of patterns) {
    for (
      const [name, d] of [
        ["64x64x2c4.mma16x16x16s32", 64],
        ["128x32x4c4.mma16x16x16s32", 64],
        ["128x32x2c4.mma16x16x16s32q4", 64],
        ["128x32x2c4.mma16x16x16s32q2", 128],
      ] as const
    ) {
      const tiles = parseKernelShapeName(name, d)!;
      const c = compile(p, { shape: shape(4096, d), dtype: "f16", limits: H200_DAWN, tiles });
      const kernels = c.passes.filter((x) => x.wgsl.includes("subgroupMatrixLoad"));
      assert.ok(kernels.length > 0, JSON.stringify(p));
      for (const k of kernels) {
        const declarations = [...k.wgsl.matchAll(/var<workgroup> (\w+): ([^;]+);/g)];
        assert.ok(declarations.length > 0);
        for (const [, name, type] of declarations) {
          assert.equal(declarationBytes(type) % 16, 0, `${k.label}: ${name}: ${type}`);
        }
        // What the fit checks count is what the kernel declares.
        const declared = declarations.reduce((sum, [, , type]) => sum + declarationBytes(type), 0);
        assert.equal(declared, kernelStorageBytes(tiles, d, "f16"), `${name}, ${k.label}`);
      }
    }
  }
});

Deno.test("the query tile staged in parts lets 128-row tiles prefetch at D = 128", () => {
  const whole = parseKernelShapeName("128x32x2c4.mma16x16x16s32", 128)!;
  const halves = parseKernelShapeName("128x32x2c4.mma16x16x16s32q2", 128)!;
  assert.equal(halves.queryParts, 2);
  assert.equal(kernelShapeName(halves, 128), "128x32x2c4.mma16x16x16s32q2");
  assert.ok(!kernelFits(whole, 128, "f16", H200_DAWN), "the whole query tile needs 64 KiB");
  assert.ok(kernelFits(halves, 128, "f16", H200_DAWN));
  assert.ok(prefetches(halves, 128), "4 vec4s of K and V per invocation");
  // One name per shape, and parts of whole matrix steps only.
  assert.equal(parseKernelShapeName("128x32x2c4.mma16x16x16s32q1", 128), undefined);
  assert.equal(parseKernelShapeName("128x32x2c4.mma16x16x16s32q3", 128), undefined);
  assert.equal(parseKernelShapeName("128x32x2c4.mma16x16x16s32q4", 32), undefined);
  // Not offered by the tuner (yet): the candidates keep a whole query tile.
  assert.ok(tuningCandidates(128, H200_DAWN, "f16", 12).every((s) => !s.queryParts));

  const wgsl = compile({ kind: "ring", radius: 40 }, {
    shape: shape(1024, 128),
    dtype: "f16",
    limits: H200_DAWN,
    tiles: halves,
  }).passes[0].wgsl;
  // Two staging loops, each followed by its part's loads: dims 0..63 then 64..127 of Q, each
  // read from the part's own row (Q_ROW) at offsets 0..48 within the part.
  assert.equal((wgsl.match(/i < TILE_Q \* Q_PART4/g) ?? []).length, 2);
  const loads = [
    ...wgsl.matchAll(
      /let qm0_(\d) = subgroupMatrixLoad[^(]*\(&kpTile, \(band \+ 0u\) \* Q_ROW \+ (\d+)u, (?:false, )?Q_ROW\)/g,
    ),
  ];
  assert.deepEqual(loads.map((m) => [Number(m[1]), Number(m[2])]), [
    [0, 0],
    [1, 16],
    [2, 32],
    [3, 48],
    [4, 0],
    [5, 16],
    [6, 32],
    [7, 48],
  ]);
  const secondPart = wgsl.indexOf("D4 + 16u + i % Q_PART4");
  assert.ok(secondPart > wgsl.indexOf("let qm0_3") && secondPart < wgsl.indexOf("let qm0_4"));
  assert.match(wgsl, /const Q_ROW = 72u;/);
  assert.match(wgsl, /var nextK3 = /, "the next K/V tile is prefetched");
});

Deno.test("queryParts the matrices cannot take are refused, naming the field", () => {
  const tiles = parseKernelShapeName("128x32x2c4.mma16x16x16s32", 64)!;
  const compileWith = (t: Record<string, unknown>) => () =>
    compile({ kind: "dense" }, {
      shape: shape(256),
      dtype: "f16",
      limits: H200_DAWN,
      tiles: t as never,
    });
  assert.throws(compileWith({ ...tiles, queryParts: 3 }), /tiles\.queryParts must be 1, 2 or 4/);
  assert.throws(compileWith({ ...tiles, queryParts: 8 }), /got 8/);
  const registers = tuningCandidates(64, H200_NATIVE, "f16", 1)[0];
  assert.throws(
    compileWith({ ...registers, queryParts: 2 }),
    /applies to subgroup-matrix tiles only/,
  );
});

/**
 * Checks, from a matrix kernel's text, that every accumulator slot of the collection after the
 * key loop reads the dims that the result matrices stored at its columns: the layout of O's
 * passes through `mmaOut`, worked out for both parts of a split band.
 */
function checkCollectLayout(wgsl: string, cols: number, n: number, split: number): number {
  const collect = wgsl.slice(
    wgsl.indexOf("// O from the result matrices"),
    wgsl.indexOf("// Each row's sum"),
  );
  const partDims = Number(/let partDims = part \* (\d+)u;/.exec(wgsl)?.[1] ?? 0);
  const passes = collect.split(/workgroupBarrier\(\);\s+\/\/ read: the next pass may store/);
  let checked = 0;
  for (const pass of passes) {
    // Column -> dim, per part, from the stores of this pass.
    const dimAt = [new Map<number, number>(), new Map<number, number>()];
    const stores = pass.matchAll(
      /subgroupMatrixStore<row_major>\(&mmaOut, \(band \+ \d+u\) \* OUT_ROW \+ (part \* (\d+)u \+ )?(\d+)u, o\d+_(\d+), OUT_ROW\)/g,
    );
    for (const [, , half, column, block] of stores) {
      for (let part = 0; part < split; part++) {
        const at = part * Number(half ?? 0) + Number(column);
        for (let e = 0; e < n; e++) {
          dimAt[part].set(at + e, part * partDims + Number(block) * n + e);
        }
      }
    }
    const reads = pass.matchAll(/\(col \+ (\d+)u\) \* 4u; acc\d+_(\d+) \+=/g);
    for (const [, offset, d] of reads) {
      for (let col = 0; col < cols; col++) {
        const column = 4 * (col + Number(offset)), dim = 4 * (col + Number(d) * cols);
        // Some part's matrices stored the dims this slot adds, at the columns it reads.
        const found = dimAt.some((m) => [0, 1, 2, 3].every((e) => m.get(column + e) === dim + e));
        assert.ok(found, `acc _${d} at column ${column} (col ${col}) reads dims ${dim}..`);
        checked++;
      }
    }
  }
  return checked;
}

Deno.test("bands split between two subgroups: each loads half of K and V, O's layout holds", () => {
  const limits = { ...H200_DAWN, matrixMajorness: "template" as const };
  for (
    const [name, d, passes] of [
      ["128x32x2c4.mma16x16x16s32h2", 64, 2],
      ["128x32x4c4.mma16x16x16s32h2", 64, 2],
      ["64x32x1c4.mma16x16x16s32h2", 128, 4],
      ["128x32x2c4.mma16x16x16s32q2h2", 128, 4],
      ["128x32x2c4.mma16x16x16s32", 64, 2],
    ] as const
  ) {
    const tiles = parseKernelShapeName(name, d)!;
    assert.equal(kernelShapeName(tiles, d), name);
    assert.ok(kernelFits(tiles, d, "f16", limits), name);
    const split = tiles.bandSplit ?? 1;
    const wgsl = compile({ kind: "dense" }, { shape: shape(1024, d), dtype: "f16", limits, tiles })
      .passes[0].wgsl;
    const cols = tiles.threads / (tiles.tileQ / tiles.rowsPerThread);
    // Every (row, vec4 column) slot of O is read once, from where its dims were stored.
    const slots = tiles.rowsPerThread * (d / 4 / cols) * cols;
    assert.equal(checkCollectLayout(wgsl, cols, 16, split), slots, name);
    assert.equal((wgsl.match(/\/\/ O's dims/g) ?? []).length, 2 * passes, name); // rescale, collect
    // K and V as matrices: each subgroup loads its half of the key tile's and of D's blocks.
    const kLoads = (wgsl.match(/let kt\d+ = /g) ?? []).length;
    const vLoads = (wgsl.match(/let vm\d+ = /g) ?? []).length;
    assert.equal(kLoads, (tiles.tileK / 16 / split) * (d / 16), name);
    assert.equal(vLoads, (d / 16 / split) * (tiles.tileK / 16), name);
  }
  // The check fails where the part's offset is dropped from O's stores.
  const tiles = parseKernelShapeName("128x32x2c4.mma16x16x16s32h2", 64)!;
  const wgsl = compile({ kind: "dense" }, { shape: shape(1024), dtype: "f16", limits, tiles })
    .passes[0].wgsl.replaceAll("part * 16u + ", "");
  assert.throws(() => checkCollectLayout(wgsl, 4, 16, 2), /reads dims/);
});

Deno.test("bandSplit the tiles cannot take is refused, naming the field", () => {
  const limits = H200_DAWN;
  const compileWith = (t: Record<string, unknown>, d = 64) => () =>
    compile({ kind: "dense" }, { shape: shape(256, d), dtype: "f16", limits, tiles: t as never });
  const tiles = parseKernelShapeName("128x32x2c4.mma16x16x16s32", 64)!;
  assert.throws(compileWith({ ...tiles, bandSplit: 3 }), /tiles\.bandSplit must be 1 or 2/);
  // D = 16 has one block of 16 dims: it cannot be halved.
  const narrow = parseKernelShapeName("128x32x2c4.mma16x16x16s32", 16)!;
  assert.throws(compileWith({ ...narrow, bandSplit: 2 }, 16), /bandSplit must be 1 or 2, and 2/);
  assert.equal(parseKernelShapeName("128x32x2c4.mma16x16x16s32h2", 16), undefined);
  assert.equal(parseKernelShapeName("128x32x2c4.mma16x16x16s32h1", 64), undefined);
  const registers = tuningCandidates(64, H200_NATIVE, "f16", 1)[0];
  assert.throws(compileWith({ ...registers, bandSplit: 2 }), /applies to subgroup-matrix tiles/);
  assert.ok(tuningCandidates(64, H200_DAWN, "f16", 12).every((s) => !s.bandSplit));
});
