/**
 * The decode kernel's workgroup memory, counted from its WGSL declarations, stays within the
 * device's limit for which it was compiled, at every row count and head dim a call can give.
 */
import assert from "node:assert/strict";
import { compile } from "../../compiler/mod.ts";

const ELEMENT: Record<string, number> = { f32: 4, u32: 4, i32: 4, "vec4<f32>": 16, "vec4<f16>": 8 };

/** Bytes of the `var<workgroup>` arrays of a module. */
function workgroupBytes(wgsl: string): number {
  let bytes = 0;
  for (const m of wgsl.matchAll(/var<workgroup> \w+: array<(.+), (\d+)>;/g)) {
    assert.ok(ELEMENT[m[1]] !== undefined, `element type ${m[1]}`);
    bytes += ELEMENT[m[1]] * Number(m[2]);
  }
  return bytes;
}

/** Both element types, with and without subgroups (the subgroup form, the staged form). */
const DEVICES = [
  ["f32", undefined],
  ["f16", undefined],
  ["f32", { size: 32, directive: false }],
  ["f16", { size: 8, directive: true }],
] as const;

Deno.test("decode kernels fit the workgroup memory they are compiled for", () => {
  for (const limit of [16384, 32768, 49152]) {
    for (const headDim of [16, 64, 128, 256]) {
      for (const [headsQ, seqLen] of [[1, 1], [8, 1], [4, 10], [32, 3], [8, 64]]) {
        for (const [dtype, subgroups] of DEVICES) {
          const shape = { batch: 1, headsQ, headsKV: 1, seqLen, headDim, kvSeqLen: 4096 };
          const c = compile({ kind: "window", left: 300, right: 0 }, {
            shape,
            dtype,
            limits: {
              maxComputeWorkgroupStorageSize: limit,
              maxComputeInvocationsPerWorkgroup: 256,
              maxStorageBufferBindingSize: 2 ** 31,
              ...(subgroups ? { subgroups } : {}),
            },
          });
          const decode = c.passes.filter((p) => /Weft decode( \(subgroup lanes\))?:/.test(p.wgsl));
          assert.equal(
            decode.length,
            1,
            `${JSON.stringify(shape)} ${dtype} ${subgroups?.size}: one decode kernel`,
          );
          const used = workgroupBytes(decode[0].wgsl);
          assert.ok(
            used <= limit,
            `${JSON.stringify(shape)} ${dtype} at ${limit}: ${used} bytes of workgroup memory`,
          );
        }
      }
    }
  }
});
