/**
 * Very long sequences: gated πAttention (ring 128 + stride 16) at N = 262144 on the GPU, checked
 * against the float64 reference on sampled rows, with GPU time and peak buffer bytes; then the
 * same with a binding cap that forces the call into parts (split_run.ts).
 *
 * ```sh
 * deno run -A bench/long_sequence.ts [--n 262144] [--heads 8] [--dtype f32] [--cap-mib 256]
 * ```
 * @module
 */
import { parseArgs } from "node:util";
import { gated, ring, stride } from "../dsl/builders.ts";
import { referenceRows } from "../runtime/reference/mod.ts";
import { createRuntime } from "../runtime/runtime.ts";
import { normalTensor } from "../runtime/seeded_random.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    n: { type: "string", default: "262144" },
    heads: { type: "string", default: "8" },
    dtype: { type: "string", default: "f32" },
    "cap-mib": { type: "string", default: "256" },
  },
});
const n = Number(values.n), heads = Number(values.heads), dtype = values.dtype as "f32" | "f16";
const shape = { batch: 1, headsQ: heads, headsKV: heads, seqLen: n, headDim: 64 };
const pattern = gated([ring(128), stride(16)], [0.5, 0.5]);
const size = heads * n * 64;
const started = performance.now();
const [q, k, v] = [1, 2, 3].map((seed) => normalTensor(size, seed));
console.error(
  `inputs ${(3 * size * 4 / 2 ** 20).toFixed(0)} MiB in ${
    (performance.now() - started).toFixed(0)
  } ms`,
);
// Rows that touch both ends (the ring wraps), both stride seams, and every head.
const rows = [0, 1, 127, 128, n / 2, n - 129, n - 2, n - 1].flatMap((pos, i) => [
  { b: 0, h: i % heads, q: pos },
  { b: 0, h: (i + 3) % heads, q: (pos * 7919 + 13) % n },
]);
const t0 = performance.now();
const want = referenceRows({ pattern, shape, q, k, v }, rows);
console.error(`reference for ${rows.length} rows in ${(performance.now() - t0).toFixed(0)} ms`);

const inputs = dtype === "f16"
  ? { q: Float16Array.from(q), k: Float16Array.from(k), v: Float16Array.from(v) }
  : { q, k, v };
for (const cap of [undefined, Number(values["cap-mib"]) * 2 ** 20]) {
  const rt = await createRuntime({ autotune: false, maxBindingBytes: cap });
  try {
    const compiled = rt.compile(pattern, { shape, dtype });
    const parts = compiled.split
      ? compiled.split.full.batch * compiled.split.full.headsKV / compiled.split.kvHeads
      : 1;
    const times: number[] = [];
    let out;
    for (let i = 0; i < 3; i++) {
      out = await rt.run(compiled, inputs);
      if (out.gpuMs !== undefined) times.push(out.gpuMs);
    }
    let errO = 0, errLse = 0;
    for (const row of want) {
      const at = (row.b * heads + row.h) * n + row.q;
      for (let d = 0; d < 64; d++) errO = Math.max(errO, Math.abs(out!.o[at * 64 + d] - row.o[d]));
      row.lse.forEach((l, i) =>
        errLse = Math.max(errLse, Math.abs(out!.lse[i * heads * n + at] - l))
      );
    }
    times.sort((a, b) => a - b);
    console.log(JSON.stringify({
      device: rt.info.description,
      n,
      heads,
      dtype,
      cap_bytes: cap ?? rt.device.limits.maxStorageBufferBindingSize,
      parts,
      gpu_ms_median: times[Math.floor(times.length / 2)],
      gpu_ms_all: times,
      peak_buffer_bytes: out!.peakBufferBytes,
      sampled_rows: rows.length,
      max_error_o: errO,
      max_error_lse: errLse,
    }));
  } finally {
    rt.destroy();
  }
}
