/**
 * Kernel shapes side by side on this adapter: each shape is first checked against the float64
 * reference (dense, a ring, a window-and-stride union; GQA 2:1), then timed on dense and on band
 * and stride patterns, sustained (as the bench) and sampled in turn with the other shapes, so
 * that their ratios hold under one GPU state, with its cold pipeline creation. This is how the
 * float16 column split was chosen, on the H200.
 *
 * ```sh
 * deno run -A bench/kernel_variants.ts --shapes 64x32x2,64x32x2c4 --dtype f16,f32
 * deno run -A bench/kernel_variants.ts --shapes 64x32x2c4 --dtype f16 --no-prefetch --jobs dense
 * deno run -A bench/kernel_variants.ts --backend dawn --dtype f16 \
 *   --shapes 64x64x2c4.mma16x16x16s32,64x32x2c4.mma16x16x16s32,64x32x2c4
 * ```
 * Matrix shapes (`.mma MxNxK s subgroup`) run where the backend's device lists that matrix.
 * @module
 */
import { parseArgs } from "node:util";
import { type KernelShape, parseKernelShapeName } from "../compiler/mod.ts";
import type { Pattern } from "../dsl/schema.ts";
import { reference } from "../runtime/reference/mod.ts";
import { createRuntime } from "../runtime/runtime.ts";
import { normalTensor } from "../runtime/seeded_random.ts";
import { interleavedGpuTimes, median } from "./measure.ts";

const USAGE = `Usage: deno run -A bench/kernel_variants.ts [options]

  --shapes LIST     kernel shapes, e.g. 64x32x2,64x32x2c4 (tileQ x tileK x rows[c columns])
  --dtype LIST      f32, f16 (default: both where the adapter has shader-f16)
  --head-dim D      head dim (default 64)
  --jobs LIST       dense, ring, window256, stride16 (default: all)
  --backend B       native (default: WEFT_BACKEND, else native) or dawn
  --prefetch        the prefetched key loop even where the rule would not (matrix shapes)
  --no-prefetch     the plain key loop instead of the prefetched one
  --no-unroll       loop bounds from the schedule header (no unrolling)
  --check-n N       sequence length of the reference check (default 512)
  --help            show this`;

/** The timed problems: dense at a size that fills the GPU, the sparse ones at N = 65536. */
const JOBS: { name: string; pattern: Pattern; n: number }[] = [
  { name: "dense", pattern: { kind: "dense" }, n: 16384 },
  { name: "ring", pattern: { kind: "ring", radius: 128 }, n: 65536 },
  { name: "window256", pattern: { kind: "window", left: 256, right: 256 }, n: 65536 },
  { name: "stride16", pattern: { kind: "stride", period: 16 }, n: 65536 },
];

const CHECKS: Pattern[] = [
  { kind: "dense" },
  { kind: "ring", radius: 40 },
  { kind: "union", of: [{ kind: "window", left: 70, right: 0 }, { kind: "stride", period: 16 }] },
];

const { values } = parseArgs({
  args: Deno.args,
  options: {
    shapes: { type: "string" },
    dtype: { type: "string" },
    "head-dim": { type: "string" },
    jobs: { type: "string" },
    backend: { type: "string" },
    prefetch: { type: "boolean" },
    "no-prefetch": { type: "boolean" },
    "no-unroll": { type: "boolean" },
    "check-n": { type: "string" },
    help: { type: "boolean" },
  },
});
if (values.help || !values.shapes) {
  console.log(USAGE);
  Deno.exit(values.help ? 0 : 2);
}
const headDim = Number(values["head-dim"] ?? 64);
const checkN = Number(values["check-n"] ?? 512);
const shapes = values.shapes.split(",").map((name) => {
  const s = parseKernelShapeName(name.trim(), headDim);
  if (!s) throw new Error(`--shapes: "${name}" is not a kernel shape at D=${headDim}`);
  return { name: name.trim(), kernel: s };
});
const jobs = values.jobs
  ? values.jobs.split(",").map((j) => {
    const job = JOBS.find((x) => x.name === j.trim());
    if (!job) throw new Error(`--jobs: "${j}" is none of ${JOBS.map((x) => x.name).join(", ")}`);
    return job;
  })
  : JOBS;

const rt = await createRuntime({ autotune: false, backend: values.backend });
const dtypes = (values.dtype ?? (rt.info.shaderF16 ? "f16,f32" : "f32")).split(",") as (
  | "f32"
  | "f16"
)[];
console.log(
  `kernel variants on ${rt.info.description} [${rt.info.webgpu}], D=${headDim}` +
    (rt.info.isFallback ? " (software adapter: reference checks only, no timing)" : ""),
);
const options = (kernel: KernelShape, dtype: "f32" | "f16") => ({
  dtype,
  tiles: kernel,
  prefetch: values["no-prefetch"] ? false : values.prefetch ? true : undefined,
  unroll: values["no-unroll"] ? false : undefined,
});

for (const dtype of dtypes) {
  for (const { name, kernel } of shapes) {
    if (kernel.matrix && dtype !== "f16") continue; // matrices multiply float16 only
    // 1. Correct first, on fresh inputs: float32 within 1e-4 of float64, float16 within 5e-3.
    const shape = { batch: 1, headsQ: 2, headsKV: 1, seqLen: checkN, headDim };
    const q = normalTensor(2 * checkN * headDim, 11);
    const k = normalTensor(checkN * headDim, 12);
    const v = normalTensor(checkN * headDim, 13);
    const asDtype = (x: Float32Array) => dtype === "f16" ? Float16Array.from(x) : x;
    for (const pattern of CHECKS) {
      const out = await rt.run(rt.compile(pattern, { shape, ...options(kernel, dtype) }), {
        q,
        k,
        v,
      });
      const want = reference({ pattern, shape, q: asDtype(q), k: asDtype(k), v: asDtype(v) });
      let err = 0;
      for (let i = 0; i < want.o.length; i++) {
        const d = Math.abs(Number(out.o[i]) - want.o[i]);
        err = Number.isNaN(d) ? Infinity : Math.max(err, d);
      }
      const ok = err <= (dtype === "f16" ? 5e-3 : 1e-4);
      console.log(
        `check ${dtype} ${name} ${pattern.kind}: max |O - ref| ${err.toExponential(2)} ${
          ok ? "ok" : "FAIL"
        }`,
      );
      if (!ok) Deno.exitCode = 1;
    }
  }
  // 2. Timed: each job's shapes (of this dtype) sampled in turn, so that their ratios share one
  // GPU state (timings move with clocks between runs); cold pipeline creation per shape. A
  // software adapter's timings mean nothing (and N = 65536 would take hours there): checks only.
  if (rt.info.isFallback) continue;
  const timed = shapes.filter(({ kernel }) => !(kernel.matrix && dtype !== "f16"));
  for (const job of jobs) {
    const shape = { batch: 1, headsQ: 8, headsKV: 8, seqLen: job.n, headDim };
    const count = 8 * job.n * headDim;
    const inputs = {
      q: normalTensor(count, 1),
      k: normalTensor(count, 2),
      v: normalTensor(count, 3),
    };
    const calls = [], pipelineMs: number[] = [];
    try {
      for (const { kernel } of timed) {
        const compiled = rt.compile(job.pattern, { shape, ...options(kernel, dtype) });
        const t0 = performance.now();
        await Promise.all(compiled.passes.map((p) => rt.pipelines.get(p)));
        pipelineMs.push(performance.now() - t0);
        calls.push(await rt.prepare(compiled, inputs));
      }
      const samples = await interleavedGpuTimes(calls, 7, 2, rt.info.timestamps);
      timed.forEach(({ name }, i) => {
        const ms = median(samples[i]);
        const tflops = 4 * 8 * job.n * job.n * headDim / (ms * 1e-3) / 1e12;
        console.log(
          `time ${dtype} ${name.padEnd(10)} ${job.name.padEnd(9)} N=${job.n}: ${
            ms.toFixed(3)
          } ms ` +
            `(dense-eq ${tflops.toFixed(1)} TFLOP/s), pipelines ${pipelineMs[i].toFixed(0)} ms, ` +
            `samples ${Math.min(...samples[i]).toFixed(3)}-${Math.max(...samples[i]).toFixed(3)}`,
        );
      });
    } finally {
      for (const call of calls) call.destroy();
    }
  }
}
rt.destroy();
Deno.exit(Deno.exitCode); // as the bench does: nothing left to wait for
