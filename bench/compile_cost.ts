/**
 * Compile cost per suite pattern on this device: plan + WGSL, then shader modules and pipelines,
 * each pattern with a pipeline cache of its own (no pattern borrows another's pipelines); then
 * the same pattern with other numbers (period, radius, window, gates) at the same shape, which
 * must compile nothing new (cache hits). Round 1 is each pattern's first compile in the process
 * (V8 still compiling the planner's code paths); later rounds are warm. Run it twice on a fresh
 * machine to see the GPU driver's own shader cache at work.
 *
 *   deno run -A bench/compile_cost.ts [N] [--rounds R]
 * @module
 */
import { parseArgs } from "node:util";
import { createRuntime } from "../runtime/runtime.ts";
import { PipelineCache } from "../runtime/pipeline_cache.ts";
import { median } from "./measure.ts";
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

const { values, positionals } = parseArgs({
  args: Deno.args,
  allowPositionals: true,
  options: { rounds: { type: "string" } },
});
const rt = await createRuntime({ autotune: false });
const n = Number(positionals[0] ?? 65536);
const rounds = Number(values.rounds ?? 2);
const shape = { batch: 1, headsQ: 8, headsKV: 8, seqLen: n, headDim: 64 };
const dtypes = rt.info.shaderF16 ? ["f32", "f16"] as const : ["f32"] as const;
/** Totals (plan + WGSL + pipelines) of rounds 2 and later, by dtype and row. */
const warm = new Map<string, number[]>();
console.log(`compile cost on ${rt.info.description || "this adapter"}, N=${n}, D=64, H=8`);
for (let round = 1; round <= rounds; round++) {
  for (const dtype of dtypes) {
    for (const { name, pattern } of SUITE) {
      const cache = new PipelineCache(rt.device);
      const measure = async (label: string, p: unknown) => {
        const t0 = performance.now();
        const compiled = rt.compile(p, { shape, dtype });
        const t1 = performance.now();
        const [hits, modules] = [cache.hits, cache.modules];
        await Promise.all(compiled.passes.map((pass) => cache.get(pass)));
        const t2 = performance.now();
        const row = `${dtype} ${label}`;
        if (round > 1) warm.set(row, [...warm.get(row) ?? [], t2 - t0]);
        console.log(
          `round ${round} ${dtype} ${label.padEnd(26)} plan+wgsl ${
            (t1 - t0).toFixed(1).padStart(6)
          } ms` +
            `  pipelines ${(t2 - t1).toFixed(1).padStart(6)} ms  total ${
              (t2 - t0).toFixed(1).padStart(6)
            }` +
            ` ms  modules ${cache.modules - modules}  cached ${
              cache.hits - hits
            }/${compiled.passes.length}`,
        );
      };
      await measure(name, pattern);
      if (NEW_NUMBERS[name]) await measure(`${name} (new numbers)`, NEW_NUMBERS[name]);
    }
  }
}
if (warm.size) {
  console.log(`\nmedian total over rounds 2-${rounds} (ms), min-max:`);
  for (const [row, totals] of warm) {
    const sorted = [...totals].sort((a, b) => a - b);
    console.log(
      `${row.padEnd(34)} ${median(totals).toFixed(1).padStart(6)}  ` +
        `${sorted[0].toFixed(1)}-${sorted[sorted.length - 1].toFixed(1)}`,
    );
  }
}
rt.destroy();
