/**
 * bench/matrix_floors.ts cuts parts out of the generated matrix kernel as text: each cut must
 * still find its target in the kernels the compiler emits now (else a floor would silently time
 * the unchanged kernel), and only the cut's part may go.
 */
import assert from "node:assert/strict";
import { compile, type MatrixConfig, parseKernelShapeName } from "../../compiler/mod.ts";
import { FLOORS, floorWgsl } from "../../bench/matrix_floors.ts";

const matrices: MatrixConfig[] = [[16, 16, 16], [16, 8, 16]].map(([m, n, k]) => ({
  input: "f16",
  result: "f32",
  m,
  n,
  k,
  subgroupSize: 32,
}));
const limits = {
  maxComputeWorkgroupStorageSize: 49152,
  maxComputeInvocationsPerWorkgroup: 1024,
  matrices,
  matrixMajorness: "template" as const,
};

function denseKernel(shape: string, headDim: number): string {
  const tiles = parseKernelShapeName(shape, headDim)!;
  const compiled = compile({ kind: "dense" }, {
    shape: { batch: 1, headsQ: 8, headsKV: 8, seqLen: 16384, headDim },
    dtype: "f16",
    limits,
    tiles,
  });
  return compiled.passes.find((p) => /Weft attention kernel/.test(p.wgsl))!.wgsl;
}

const count = (text: string, pattern: RegExp) =>
  (text.match(new RegExp(pattern, "g")) ?? []).length;

for (
  const [shape, d] of [
    ["128x32x2c4.mma16x16x16s32", 64],
    ["64x32x2c4.mma16x16x16s32", 128],
    ["128x32x4c4.mma16x8x16s32", 64],
  ] as const
) {
  Deno.test(`every floor cuts its part of the ${shape} kernel at D = ${d}`, () => {
    const wgsl = denseKernel(shape, d);
    for (const { name } of FLOORS) {
      const cut = floorWgsl(wgsl, name);
      if (name === "as-compiled") assert.equal(cut, wgsl);
      else assert.notEqual(cut, wgsl, name);
    }
    const products = /subgroupMatrixMultiplyAccumulate/;
    const noQk = floorWgsl(wgsl, "no-qk");
    assert.equal(count(noQk, /subgroupMatrixMultiplyAccumulate\(qm/), 0);
    assert.equal(count(noQk, products), count(wgsl, /subgroupMatrixMultiplyAccumulate\(pm/));
    assert.equal(count(floorWgsl(wgsl, "no-score-reads"), /= mmaOut\[\(firstRow/), 0);
    assert.equal(count(floorWgsl(wgsl, "no-kv-loads"), /[kv]In\[/), 0);
    assert.equal(count(floorWgsl(wgsl, "no-staging"), /put(KP|V)\((j|\(i \/ D4\)) \*/), 0);
    assert.equal(count(floorWgsl(wgsl, "no-staging"), /putKP\(r \*/), 1, "Q is still staged");
    // The softmax's cuts leave both products and every matrix store.
    const only = floorWgsl(wgsl, "matrices-only");
    assert.equal(count(only, products), count(wgsl, products));
    assert.equal(count(only, /subgroupMatrixStore/), count(wgsl, /subgroupMatrixStore/));
    assert.equal(count(only, /exp2\(s/), 0);
  });
}

Deno.test("a floor that finds no target, or an unknown one, says which", () => {
  assert.throws(() => floorWgsl("fn main() {}", "no-qk"), /floor no-qk: the kernel has no/);
  assert.throws(() => floorWgsl("", "no-such"), /"no-such" is none of as-compiled/);
});
