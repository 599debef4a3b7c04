/**
 * The decode kernel's subgroup form (compiler/decode.ts, decode_lanes_wgsl.ts): where a device
 * has subgroups its decoding calls take it, with lanes per key that divide both head dims, the
 * `enable subgroups;` line only where the device's WGSL wants it, and the staged form without
 * subgroups. The GPU tests (tests/gpu/decode_test.ts) check its answers.
 */
import assert from "node:assert/strict";
import { compile, type DeviceLimits } from "../../compiler/mod.ts";
import { decodeLanes } from "../../compiler/decode.ts";

const LIMITS: DeviceLimits = {
  maxComputeWorkgroupStorageSize: 49152,
  maxComputeInvocationsPerWorkgroup: 256,
  maxStorageBufferBindingSize: 2 ** 31,
};

Deno.test("decodeLanes: at most four vec4s of K and 32 of queries and O a lane, within a subgroup", () => {
  const lanes = (headDim: number, valueDim: number, size: number, rows = 4) =>
    decodeLanes({
      headDim,
      valueDim,
      rows,
      element: 2,
      unroll: true,
      subgroups: { size, directive: false },
    });
  assert.equal(lanes(128, 128, 32)?.lanes, 8); // four vec4s of K, 4 × 64 / 8 = 32 of Q and O
  assert.equal(lanes(128, 128, 32)?.wide, true);
  assert.equal(lanes(128, 128, 32, 8)?.lanes, 16); // 8 rows: 64 vec4s on 8 lanes is too many
  assert.equal(lanes(128, 128, 32, 1)?.lanes, 8);
  assert.equal(lanes(128, 128, 4)?.lanes, 4); // no more lanes than a subgroup
  assert.equal(lanes(64, 64, 32)?.lanes, 4);
  assert.equal(lanes(16, 16, 32)?.lanes, 1);
  assert.equal(lanes(192, 128, 32)?.lanes, 16); // MLA: D = 192, Dv = 128
  assert.equal(lanes(192, 128, 32, 8)?.lanes, 16); // 40 vec4s, but 32 lanes do not divide 48
  assert.equal(lanes(192, 128, 32)?.wide, false); // three vec4s of K per lane
  assert.equal(lanes(128, 24, 32)?.lanes, 2); // Dv / 4 = 6
  assert.equal(lanes(20, 20, 32)?.lanes, 1); // D / 4 = 5: one lane per key, no shuffles
  const f32 = decodeLanes({
    headDim: 128,
    valueDim: 128,
    rows: 4,
    element: 4,
    unroll: true,
    subgroups: { size: 32, directive: false },
  });
  assert.equal(f32?.wide, false);
  assert.equal(
    decodeLanes({ headDim: 128, valueDim: 128, rows: 4, element: 2, unroll: true }),
    undefined,
  );
});

Deno.test("decoding calls take the subgroup form where the device has subgroups", () => {
  const shape = { batch: 2, headsQ: 8, headsKV: 2, seqLen: 1, headDim: 128, kvSeqLen: 4096 };
  const decodeKernels = (limits: DeviceLimits) => {
    const c = compile({ kind: "window", left: 300, right: 0 }, { shape, dtype: "f16", limits });
    const kernels = c.kernelPlan.kernels.flatMap((k) => k.kind === "decode" ? [k] : []);
    const wgsl = c.passes.filter((p) => /Weft decode/.test(p.wgsl)).map((p) => p.wgsl);
    return { kernels, wgsl };
  };
  const native = decodeKernels({ ...LIMITS, subgroups: { size: 32, directive: false } });
  assert.equal(native.kernels.length, 1);
  assert.deepEqual(native.kernels[0].lanes?.lanes, 8);
  assert.match(native.wgsl[0], /subgroupShuffleXor/);
  assert.doesNotMatch(native.wgsl[0], /enable subgroups;/);
  assert.doesNotMatch(native.wgsl[0], /var<workgroup> kStage/);
  const tint = decodeKernels({ ...LIMITS, subgroups: { size: 32, directive: true } });
  assert.match(tint.wgsl[0], /enable subgroups;/);
  const staged = decodeKernels(LIMITS);
  assert.equal(staged.kernels[0].lanes, undefined);
  assert.doesNotMatch(staged.wgsl[0], /subgroupShuffleXor/);
});
