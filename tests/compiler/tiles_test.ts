/**
 * The kernel shapes the autotuner may try: only shapes that fit the device, in preference
 * order, at most the number asked; and their short names round-trip.
 */
import assert from "node:assert/strict";
import {
  chooseTiles,
  compile,
  kernelFits,
  kernelShape,
  kernelShapeName,
  parseKernelShapeName,
  tuningCandidates,
} from "../../compiler/mod.ts";
import {
  type KernelShape,
  kernelStorageBytes,
  mayStageQuery,
  prefetches,
} from "../../compiler/tiles.ts";

/** What Deno reports for an H100 (Vulkan) and for Mesa llvmpipe. */
const H100 = { maxComputeWorkgroupStorageSize: 49152, maxComputeInvocationsPerWorkgroup: 1024 };
const LLVMPIPE = { maxComputeWorkgroupStorageSize: 32768, maxComputeInvocationsPerWorkgroup: 1024 };

Deno.test("tuning candidates fit the device and follow the preference order", () => {
  const names = (list: KernelShape[], d: number) => list.map((s) => kernelShapeName(s, d));
  // Float32 kernels read query rows from memory: 64x64 and 128x32 fit 48 KiB without the tile.
  assert.deepEqual(names(tuningCandidates(64, H100, "f32"), 64), [
    "64x32x2",
    "64x64x2",
    "128x32x4",
    "64x32x4",
    "32x32x4",
    "32x16x4",
  ]);
  assert.deepEqual(names(tuningCandidates(64, H100, "f32", 6, true), 64), [
    "64x32x2",
    "64x32x4",
    "32x32x4",
    "32x16x4",
    "16x16x4",
    "16x8x2",
  ]);
  // Float16 tries 4 columns of 64x32 first; 64x64 and 128x32 fit 48 KiB only with its tiles.
  assert.deepEqual(names(tuningCandidates(64, H100, "f16", 4), 64), [
    "64x32x2c4",
    "64x32x2",
    "64x64x2",
    "128x32x4",
  ]);
  assert.deepEqual(kernelShape(64, 32, 2, 16, 4), {
    tileQ: 64,
    tileK: 32,
    threads: 128,
    rowsPerThread: 2,
  });
  // At D = 16 four columns are already the widest split: the name has no suffix.
  assert.equal(kernelShapeName(tuningCandidates(16, H100, "f16", 1)[0], 16), "64x32x2");
  // At D = 16, with K and P sharing memory, 64x64 fits 32 KiB too.
  assert.deepEqual(names(tuningCandidates(16, LLVMPIPE, "f32", 2), 16), [
    "64x32x2",
    "64x64x2",
  ]);
  for (const d of [16, 32, 64, 128, 256]) {
    for (const dtype of ["f32", "f16"]) {
      const list = tuningCandidates(d, H100, dtype);
      assert.ok(list.length <= 6, `D=${d} ${dtype}`);
      for (const s of list) {
        assert.ok(kernelFits(s, d, dtype, H100), `${kernelShapeName(s, d)} D=${d}`);
      }
      // The untuned default is the first candidate.
      if (list.length) assert.deepEqual(chooseTiles(d, H100, dtype), list[0]);
    }
  }
  // A device with room for none gets none (the compiler then falls back to 4x4 tiles).
  assert.deepEqual(tuningCandidates(256, { maxComputeWorkgroupStorageSize: 4096 }), []);
});

Deno.test("kernel shape names round-trip and reject malformed names", () => {
  for (const d of [32, 64]) {
    for (const s of tuningCandidates(d, H100, "f16")) {
      assert.deepEqual(parseKernelShapeName(kernelShapeName(s, d), d), s);
    }
  }
  assert.deepEqual(parseKernelShapeName("64x32x2c4", 64)?.threads, 128);
  const bad = [
    "64x32",
    "64x32x3",
    "0x8x1",
    "x8x8",
    "64x32x2 ",
    "512x8x2",
    "64x32x2c3",
    "64x32x2c0",
  ];
  for (const name of bad) assert.equal(parseKernelShapeName(name, 32), undefined, name);
});

Deno.test("workgroup memory: K and P share one region; prefetch where 4 vec4s of K fit", () => {
  const s = kernelShape(64, 32, 2, 16)!; // D = 64: 256 invocations, 8 columns
  // Q 64 x 17 vec4s; K (32 x 17) and P (64 x 9) in one region of the larger; V 32 x 16; then
  // 64 x 8 row shares and 32 key positions in words.
  const region = Math.max(32 * 17, 64 * 9);
  assert.equal(
    kernelStorageBytes(s, 64, "f32"),
    16 * (64 * 17 + region + 32 * 16) + 4 * (512 + 32),
  );
  assert.equal(kernelStorageBytes(s, 64, "f16"), 8 * (64 * 17 + region + 32 * 16) + 4 * (512 + 32));
  // Without the query tile (query rows read from memory).
  assert.equal(kernelStorageBytes(s, 64, "f32", false), 16 * (region + 32 * 16) + 4 * (512 + 32));
  // A narrow key tile: K is 8 x 17, P 128 x 3.
  const narrow = kernelShape(128, 8, 4, 16)!;
  assert.equal(
    kernelStorageBytes(narrow, 64, "f32"),
    16 * (128 * 17 + 128 * 3 + 8 * 16) + 4 * (128 * 8 + 8),
  );
  assert.ok(prefetches(s, 64)); // 2 vec4s of K per invocation
  assert.ok(!prefetches(kernelShape(8, 16, 2, 16)!, 64)); // 8
});

/** Bytes of the workgroup arrays a WGSL module declares. */
function declaredBytes(wgsl: string): number {
  const size: Record<string, number> = { "vec4<f32>": 16, "vec4<f16>": 8, f32: 4, i32: 4, u32: 4 };
  let total = 0;
  for (const m of wgsl.matchAll(/var<workgroup> \w+: array<(.+), (\d+)>;/g)) {
    assert.ok(size[m[1]], `element type ${m[1]}`);
    total += size[m[1]] * Number(m[2]);
  }
  return total;
}

Deno.test("the fit check counts exactly what the kernels declare, query tile where staged", () => {
  const shape = { batch: 1, headsQ: 2, headsKV: 2, seqLen: 512, headDim: 64 };
  for (const name of ["64x32x2", "64x32x2c4", "64x64x2", "32x16x4", "128x32x4"]) {
    const tiles = parseKernelShapeName(name, 64)!;
    for (const dtype of ["f32", "f16"] as const) {
      for (const pattern of [{ kind: "dense" }, { kind: "ring", radius: 40 }]) {
        for (const globalQuery of [undefined, true, false]) {
          for (const edgePairs of [false, "wide", "narrow"] as const) {
            const passes = compile(pattern, { shape, dtype, tiles, globalQuery, edgePairs }).passes
              .filter((p) => /Weft attention kernel/.test(p.wgsl));
            assert.equal(passes.length, 1);
            const staged = /var<workgroup> qTile/.test(passes[0].wgsl);
            // Rings walk edge pairs where asked; dense never does.
            const form = pattern.kind === "ring" && edgePairs ? edgePairs : undefined;
            assert.equal(/PAIR_BIT/.test(passes[0].wgsl), form !== undefined);
            const label = `${name} ${dtype} ${pattern.kind} globalQuery ${globalQuery} ${form}`;
            assert.equal(
              declaredBytes(passes[0].wgsl),
              kernelStorageBytes(tiles, 64, dtype, staged, form),
              label,
            );
            // Without a pattern, the bound assumes the tile wherever a pattern may stage it.
            if (globalQuery === undefined && staged) assert.ok(mayStageQuery(dtype), label);
          }
        }
      }
    }
  }
});

Deno.test("a shape that fits only without the query tile compiles unless the tile is asked for", () => {
  const shape = { batch: 1, headsQ: 2, headsKV: 2, seqLen: 512, headDim: 64 };
  const tiles = parseKernelShapeName("64x64x2", 64)!; // f32: 36,096 bytes, 53,504 with Q
  const wgsl = compile({ kind: "dense" }, { shape, tiles, limits: H100 }).passes[0].wgsl;
  assert.ok(!/var<workgroup> qTile/.test(wgsl));
  assert.throws(
    () => compile({ kind: "dense" }, { shape, tiles, limits: H100, globalQuery: false }),
    /query tile staged\) needs 53504 bytes of workgroup memory; this device allows 49152/,
  );
  // Float16 stages the tile for dense rows and fits either way (27,904 bytes).
  assert.ok(kernelFits(tiles, 64, "f16", H100));
});

Deno.test("an N past 65535 query tiles is refused before planning, naming the largest N", () => {
  const shape = { batch: 1, headsQ: 1, headsKV: 1, seqLen: 2 ** 30, headDim: 64 };
  const started = performance.now();
  assert.throws(
    () => compile({ kind: "ring", radius: 128 }, { shape, tiles: { tileQ: 32, tileK: 32 } }),
    /N=1073741824 in query tiles of 32 rows needs 33554432 query tiles .* \(N <= 2097120\) or larger/,
  );
  assert.ok(performance.now() - started < 1000, "refused at once, not after planning");
  // The largest N these tiles dispatch still compiles.
  const edge = { ...shape, seqLen: 65535 * 32 };
  assert.equal(
    compile({ kind: "ring", radius: 128 }, { shape: edge, tiles: { tileQ: 32, tileK: 32 } })
      .kernelPlan.kernels[0].workgroups[0],
    65535,
  );
});
