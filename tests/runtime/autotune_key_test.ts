/**
 * The autotuner's key: the pattern's structure, the size classes, and the key text that names
 * an entry in the cache file. No adapter needed.
 */
import assert from "node:assert/strict";
import {
  keyText,
  patternStructure,
  powerOfTwoAtLeast,
  tuneKey,
} from "../../runtime/autotune_key.ts";
import type { DeviceInfo } from "../../runtime/device.ts";

const H100: DeviceInfo = {
  description: "NVIDIA H100 80GB HBM3",
  vendor: "nvidia",
  architecture: "hopper",
  deviceId: "8960",
  isFallback: false,
  features: [],
  timestamps: true,
  shaderF16: true,
  backend: "native",
  webgpu: "deno 2.9.6",
  matrices: [],
};
const H100_KEY = {
  adapter: {
    vendor: "nvidia",
    architecture: "hopper",
    deviceId: "8960",
    description: "NVIDIA H100 80GB HBM3",
    webgpu: "deno 2.9.6",
  },
  dtype: "f32" as const,
  headDim: 64,
  group: 1,
  gridHeads: 8,
  seqLenClass: 4096,
  structure: "union(ring,stride)",
};

Deno.test("a key holds the adapter, dtype, D, grouping, size classes and structure", () => {
  const pattern = { kind: "union", of: [{ kind: "ring", radius: 8 }, { kind: "causal" }] };
  const k = tuneKey(
    H100,
    pattern,
    { batch: 3, headsQ: 8, headsKV: 2, seqLen: 3000, headDim: 64 },
    "f16",
  );
  assert.deepEqual(k?.key, {
    adapter: { ...H100_KEY.adapter, webgpu: `deno ${Deno.version.deno}` },
    dtype: "f16",
    headDim: 64,
    group: 4,
    gridHeads: 32,
    seqLenClass: 4096,
    structure: "union(ring,causal)",
  });
  assert.equal(k?.id, keyText(k!.key));
  // Input compile would refuse has no key (compile then throws its own error).
  const shape = { batch: 1, headsQ: 8, headsKV: 8, seqLen: 64, headDim: 64 };
  assert.equal(tuneKey(H100, { kind: 3 }, shape, "f32"), undefined);
  assert.equal(tuneKey(H100, pattern, { ...shape, headDim: 6 }, "f32"), undefined);
  assert.equal(tuneKey(H100, pattern, { ...shape, headsKV: 3 }, "f32"), undefined);
});

Deno.test("the pattern structure is the kinds tree without numbers, in order", () => {
  assert.equal(patternStructure({ kind: "ring", radius: 128 }), "ring");
  assert.equal(
    patternStructure({
      kind: "gated",
      branches: [
        { kind: "window", left: 1, right: 2 },
        {
          kind: "intersect",
          of: [{ kind: "random", blocks: 1, blockSize: 8, seed: 3 }, {
            kind: "causal",
          }],
        },
      ],
    }),
    "gated(window,intersect(random,causal))",
  );
  assert.notEqual(
    patternStructure({ kind: "union", of: [{ kind: "ring" }, { kind: "stride" }] }),
    patternStructure({ kind: "union", of: [{ kind: "stride" }, { kind: "ring" }] }),
  );
  for (const bad of [null, 3, "dense", {}, { kind: "union", of: 1 }, { kind: "union", of: [7] }]) {
    assert.equal(patternStructure(bad), undefined, JSON.stringify(bad));
  }
});

Deno.test("size classes are powers of two at least the size", () => {
  assert.deepEqual([1, 2, 3, 64, 65, 4096, 4097].map(powerOfTwoAtLeast), [
    1,
    2,
    4,
    64,
    128,
    4096,
    8192,
  ]);
});

Deno.test("the key text names every part", () => {
  assert.equal(
    keyText(H100_KEY),
    "NVIDIA H100 80GB HBM3 [vendor nvidia, arch hopper, device 8960, deno 2.9.6] | " +
      "f32 D=64 Hq/Hkv=1 B*Hq<=8 N<=4096 | union(ring,stride)",
  );
});

Deno.test("serving shapes add Nk's class and Dv; a square shape given with them does not", () => {
  const pattern = { kind: "causal" };
  const shape = { batch: 1, headsQ: 8, headsKV: 2, seqLen: 1, headDim: 64 };
  const decode = tuneKey(H100, pattern, { ...shape, kvSeqLen: 3000, valueDim: 128 }, "f32")!;
  assert.equal(decode.key.kvSeqLenClass, 4096);
  assert.equal(decode.key.valueDim, 128);
  assert.match(decode.id, /\| f32 D=64 Dv=128 Hq\/Hkv=4 B\*Hq<=8 N<=1 Nk<=4096 \| causal$/);
  const square = { ...shape, seqLen: 3000 };
  assert.equal(
    tuneKey(H100, pattern, { ...square, kvSeqLen: 3000, valueDim: 64 }, "f32")!.id,
    tuneKey(H100, pattern, square, "f32")!.id,
  );
  // A shape the kernels refuse has no key.
  assert.equal(tuneKey(H100, pattern, { ...shape, kvSeqLen: 3000, valueDim: 6 }, "f32"), undefined);
});
