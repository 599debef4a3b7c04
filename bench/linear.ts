/**
 * `deno task bench --linear`: linear attention's time against N (DESIGN §2, plan_linear.ts),
 * elu1 and causal by default, B=1, H=8, D=64, at N = 16384, 65536 and 262144. Each row gives the
 * forward's GPU time (median of sustained samples) and the time per position, so linearity can
 * be read off: a constant ns/position means time linear in N. Without timestamps (software
 * adapters) the wall clock of a submission is reported instead and says so.
 * @module
 */
import type { Runtime } from "../runtime/runtime.ts";
import { normalTensor } from "../runtime/seeded_random.ts";
import type { LinearPattern } from "../dsl/schema.ts";
import { median, sustainedGpuTimes } from "./measure.ts";

/** One measured row. */
export interface LinearRow {
  pattern: string;
  dtype: "f32" | "f16";
  n: number;
  ms: number;
  /** ms / N, in nanoseconds per position. */
  nsPerPosition: number;
  /** GPU timestamps, or the wall clock of a submission (software adapters). */
  clock: "gpu" | "wall";
}

/** The table's header. */
export const LINEAR_HEADER =
  "pattern                 dtype       N          ms   ns/position  clock";

/**
 * A row as one line of the table.
 * @param r the row
 * @returns the line
 */
export function formatLinearRow(r: LinearRow): string {
  return `${r.pattern.padEnd(22)}  ${r.dtype.padEnd(5)} ${String(r.n).padStart(7)} ` +
    `${r.ms.toFixed(3).padStart(11)} ${r.nsPerPosition.toFixed(2).padStart(13)}  ${r.clock}`;
}

/**
 * Times linear attention at each N.
 * @param rt the runtime
 * @param o the sizes, the feature map (`elu1` or `favor:m`), causal, dtype, reps and warmup
 * @returns one row per N
 */
export async function runLinearBench(rt: Runtime, o: {
  ns: number[];
  heads: number;
  headDim: number;
  dtype: "f32" | "f16";
  featureMap: string;
  causal: boolean;
  reps: number;
  warmup: number;
}): Promise<LinearRow[]> {
  const [map, m] = o.featureMap.split(":");
  if (map !== "elu1" && map !== "favor") {
    throw new Error(`--feature-map must be elu1 or favor:M, got "${o.featureMap}"`);
  }
  const pattern: LinearPattern = map === "favor"
    ? { kind: "linear", featureMap: "favor", features: Number(m ?? 64), causal: o.causal }
    : { kind: "linear", featureMap: "elu1", causal: o.causal };
  const name = `linear ${map === "favor" ? `favor ${pattern.features}` : "elu1"}` +
    (o.causal ? " causal" : "");
  const rows: LinearRow[] = [];
  for (const n of o.ns) {
    const shape = { batch: 1, headsQ: o.heads, headsKV: o.heads, seqLen: n, headDim: o.headDim };
    const size = o.heads * n * o.headDim;
    const x = (seed: number) =>
      o.dtype === "f16" ? Float16Array.from(normalTensor(size, seed)) : normalTensor(size, seed);
    const compiled = rt.compile(pattern, { shape, dtype: o.dtype });
    const call = await rt.prepare(compiled, { q: x(1), k: x(2), v: x(3) });
    try {
      let samples: number[] = [], clock: LinearRow["clock"] = "gpu";
      if (rt.info.timestamps) samples = await sustainedGpuTimes(call, o.reps, o.warmup);
      if (samples.length === 0) {
        clock = "wall";
        for (let i = 0; i < o.warmup; i++) await call.submit(1);
        for (let i = 0; i < o.reps; i++) {
          const t0 = performance.now();
          await call.submit(1);
          samples.push(performance.now() - t0);
        }
      }
      const ms = median(samples);
      rows.push({ pattern: name, dtype: o.dtype, n, ms, nsPerPosition: ms / n * 1e6, clock });
    } finally {
      call.destroy();
    }
  }
  return rows;
}
