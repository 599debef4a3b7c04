/**
 * Compile cost per suite pattern on this device: plan + WGSL, then pipelines (with pipeline
 * cache hits), then the same patterns with other numbers (period, radius, window, gates) at the
 * same shape, which must compile nothing new. Run it twice on a fresh machine to see the GPU
 * driver's own shader cache at work.
 *
 *   deno run -A bench/compile_cost.ts [N]
 * @module
 */
import { createRuntime } from "../runtime/runtime.ts";
import { SUITE } from "./suite.ts";

const NEW_NUMBERS: Record<string, unknown> = {
  window256: { kind: "window", left: 200, right: 100 },
  ring: { kind: "ring", radius: 64 },
  stride16: { kind: "stride", period: 32 },
  stride64: { kind: "stride", period: 48 },
  "ring+stride16": {
    kind: "union",
    of: [{ kind: "ring", radius: 64 }, { kind: "stride", period: 32 }],
  },
  "pi-attention": {
    kind: "gated",
    branches: [{ kind: "ring", radius: 64 }, { kind: "stride", period: 32 }],
    gates: [0.3, 0.7],
  },
};

const rt = await createRuntime({ autotune: false });
const n = Number(Deno.args[0] ?? 65536);
const shape = { batch: 1, headsQ: 8, headsKV: 8, seqLen: n, headDim: 64 };
const dtypes = rt.info.shaderF16 ? ["f32", "f16"] as const : ["f32"] as const;
console.log(`compile cost on ${rt.info.description || "this adapter"}, N=${n}, D=64, H=8`);
for (const dtype of dtypes) {
  const rows = [
    ...SUITE.map((e) => [e.name, e.pattern] as const),
    ...Object.entries(NEW_NUMBERS).map(([name, p]) => [`${name} (new numbers)`, p] as const),
  ];
  for (const [name, pattern] of rows) {
    const t0 = performance.now();
    const compiled = rt.compile(pattern, { shape, dtype });
    const t1 = performance.now();
    const hits = rt.pipelines.hits;
    await Promise.all(compiled.passes.map((p) => rt.pipelines.get(p)));
    const t2 = performance.now();
    console.log(
      `${dtype} ${name.padEnd(26)} plan+wgsl ${(t1 - t0).toFixed(1).padStart(6)} ms  ` +
        `pipelines ${(t2 - t1).toFixed(1).padStart(6)} ms  ` +
        `cached ${rt.pipelines.hits - hits}/${compiled.passes.length}`,
    );
  }
}
rt.destroy();
