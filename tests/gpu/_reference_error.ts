/**
 * One pattern compiled and run on a fresh runtime, against the float64 reference: the largest
 * |O - reference| (and |LSE - reference| where asked), float16 against the float16-rounded
 * inputs. Tests that check a kernel form across dtypes share it.
 */
import type { CompileOptions, Pass } from "../../compiler/compile.ts";
import type { Pattern } from "../../dsl/schema.ts";
import { reference } from "../../runtime/reference/mod.ts";
import { createRuntime } from "../../runtime/runtime.ts";
import { normalTensor } from "../../runtime/seeded_random.ts";

export async function referenceError(
  pattern: Pattern,
  o: {
    n: number;
    headDim: number;
    dtype: "f32" | "f16";
    tiles: CompileOptions["tiles"];
    /** Seeds of Q, K and V. */
    seeds: [number, number, number];
    edgePairs?: CompileOptions["edgePairs"];
    /** Count LSE's error too. */
    lse?: boolean;
  },
): Promise<{ err: number; kernels: Pass[]; modules: number }> {
  const rt = await createRuntime({ autotune: false });
  try {
    const { n, headDim: d, dtype } = o;
    const shape = { batch: 1, headsQ: 2, headsKV: 1, seqLen: n, headDim: d };
    const compiled = rt.compile(pattern, { shape, dtype, tiles: o.tiles, edgePairs: o.edgePairs });
    const kernels = compiled.passes.filter((p) => /Weft attention kernel/.test(p.wgsl));
    const q = normalTensor(2 * n * d, o.seeds[0]), k = normalTensor(n * d, o.seeds[1]);
    const v = normalTensor(n * d, o.seeds[2]);
    const got = await rt.run(compiled, { q, k, v });
    const cast = (x: Float32Array) => dtype === "f16" ? Float16Array.from(x) : x;
    const want = reference({ pattern, shape, q: cast(q), k: cast(k), v: cast(v) });
    let err = 0;
    for (let i = 0; i < want.o.length; i++) {
      err = Math.max(err, Math.abs(Number(got.o[i]) - want.o[i]));
    }
    if (o.lse) {
      for (let i = 0; i < want.lse.length; i++) {
        err = Math.max(err, Math.abs(got.lse[i] - want.lse[i]));
      }
    }
    return { err, kernels, modules: rt.pipelines.modules };
  } finally {
    rt.destroy();
  }
}
