/**
 * The kernel shapes the autotuner may try: only shapes that fit the device, in preference
 * order, at most the number asked; and their short names round-trip.
 */
import assert from "node:assert/strict";
import {
  chooseTiles,
  kernelFits,
  kernelShape,
  kernelShapeName,
  parseKernelShapeName,
  tuningCandidates,
} from "../../compiler/mod.ts";
import { type KernelShape, kernelStorageBytes, prefetches } from "../../compiler/tiles.ts";

/** What Deno reports for an H100 (Vulkan) and for Mesa llvmpipe. */
const H100 = { maxComputeWorkgroupStorageSize: 49152, maxComputeInvocationsPerWorkgroup: 1024 };
const LLVMPIPE = { maxComputeWorkgroupStorageSize: 32768, maxComputeInvocationsPerWorkgroup: 1024 };

Deno.test("tuning candidates fit the device and follow the preference order", () => {
  const names = (list: KernelShape[], d: number) => list.map((s) => kernelShapeName(s, d));
  assert.deepEqual(names(tuningCandidates(64, H100, "f32"), 64), [
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
  // A narrow key tile: K is 8 x 17, P 128 x 3.
  const narrow = kernelShape(128, 8, 4, 16)!;
  assert.equal(
    kernelStorageBytes(narrow, 64, "f32"),
    16 * (128 * 17 + 128 * 3 + 8 * 16) + 4 * (128 * 8 + 8),
  );
  assert.ok(prefetches(s, 64)); // 2 vec4s of K per invocation
  assert.ok(!prefetches(kernelShape(8, 16, 2, 16)!, 64)); // 8
});
