/**
 * Measuring one pattern at one shape: compile, build pipelines, upload, warm up, then time
 * repeated submissions. GPU time comes from timestamp queries where the adapter has them and
 * is not a software adapter (`isSoftwareAdapter`: its timestamps mean little); otherwise from the wall clock
 * around `submit`, which awaits the queue, so it includes submission overhead.
 * @module
 */
import { type AttentionShape, type KernelShape, planTileCounts } from "../compiler/mod.ts";
import type { Pattern } from "../dsl/schema.ts";
import type { AttentionInputs } from "../runtime/attention_call.ts";
import type { Runtime } from "../runtime/runtime.ts";
import { planDensity } from "./density.ts";
import { hashBranchDensity, needsCodes } from "./hash_density.ts";
import type { CompiledAttention } from "../compiler/mod.ts";
import type { AttentionCall } from "../runtime/attention_call.ts";
import { MAX_REPEAT, type Submittable, warmUp } from "../runtime/sustained_timing.ts";
import { normalTensor } from "../runtime/seeded_random.ts";

/** Software rasterisers' adapter names: Mesa's llvmpipe, softpipe, lavapipe; SwiftShader; WARP. */
const SOFTWARE_NAMES = /llvmpipe|softpipe|lavapipe|swiftshader|microsoft basic render/i;

/**
 * Whether an adapter runs on the CPU, so its timings are not performance figures: WebGPU says
 * it is a fallback adapter, or its name is a known software rasteriser's (llvmpipe on wgpu's
 * GL backend may not be reported as a fallback).
 *
 * @param info what the runtime knows about the adapter (runtime/device.ts)
 * @returns true for a software adapter
 * @example
 * ```ts
 * import { isSoftwareAdapter } from "./measure.ts";
 * isSoftwareAdapter({ description: "llvmpipe (LLVM 15.0.6, 256 bits)", isFallback: false }); // true
 * isSoftwareAdapter({ description: "NVIDIA H200", isFallback: false }); // false
 * ```
 */
export function isSoftwareAdapter(
  info: { description: string; isFallback: boolean; vendor?: string; architecture?: string },
): boolean {
  return info.isFallback ||
    [info.description, info.vendor ?? "", info.architecture ?? ""].some((s) =>
      SOFTWARE_NAMES.test(s)
    );
}

/** Where a row's milliseconds come from: timestamp queries, or the host's clock. */
export type Timer = "gpu" | "wall";

/** Everything measured for one pattern at one shape. */
export interface Measurement {
  /** Median milliseconds per submission. */
  ms: number;
  /** Every timed sample, in order. */
  samples: number[];
  timer: Timer;
  /** Planning and WGSL generation (`compiled.compileMs`). */
  compileMs: number;
  /** Shader module and pipeline creation for every pass (zero for cached pipelines). */
  pipelineMs: number;
  /**
   * Passes whose pipeline came from the runtime's cache, of `passes`: an earlier row of the
   * same structure and shape (other numbers, e.g. stride16 then stride64) compiled it already.
   */
  pipelinesCached: number;
  /** Passes (pipelines) of the compiled pattern. */
  passes: number;
  /** Buffer allocation, uploads and bind groups (pipelines already cached). */
  prepareMs: number;
  /**
   * Wall time of the very first submission. Drivers that compile lazily (Mesa's llvmpipe JITs
   * a kernel at its first dispatch) pay their real compile cost here, not in `pipelineMs`.
   */
  firstSubmitMs: number;
  /** Back-to-back repetitions of the call in each timed sample (`ms` is per repetition). */
  repeat: number;
  tiles: { visited: number; partial: number; dense: number };
  /** Pairs computed per N², summed over branches (see `planDensity`; hashBucket: from the codes). */
  density: number;
  /** Whether `density` was counted exactly (false: hashBucket mixed with other rules, sampled). */
  densityExact: boolean;
  /** Whether `density` was counted from the run's hashBucket codes. */
  densityFromCodes?: boolean;
  /** Median GPU ms of the pre-passes alone (lowRank pooling, hashBucket codes and sort). */
  prePassMs?: number;
  /** The kernel shape compiled (tuned, or the runtime's default). */
  kernel: KernelShape;
}

/** What `measurePattern` needs besides the pattern. */
export interface MeasureOptions {
  shape: AttentionShape;
  /** Q, K, V for `shape` (shared between patterns of one shape). */
  inputs: AttentionInputs;
  /** Timed submissions; the median is reported. */
  reps: number;
  /** Untimed submissions first (pipeline warm-up, clocks, caches). */
  warmup: number;
  /** Element type (default f32). */
  dtype?: "f32" | "f16";
}

/**
 * Compiles, prepares and times one pattern.
 * @param rt the runtime
 * @param pattern the pattern (JSON form)
 * @param options shape, inputs, repetitions, warm-up submissions
 * @returns the median time and what it was measured with, compile costs, tiles and density
 * @throws whatever compiling or preparing throws (PatternError, PlanError, DeviceError, ...)
 * @example
 * ```ts ignore
 * import { createRuntime } from "../runtime/runtime.ts";
 * import { normalTensor } from "../runtime/seeded_random.ts";
 * import { measurePattern } from "./measure.ts";
 * const rt = await createRuntime();
 * const shape = { batch: 1, headsQ: 2, headsKV: 2, seqLen: 256, headDim: 64 };
 * const x = normalTensor(2 * 256 * 64, 1);
 * const m = await measurePattern(rt, { kind: "causal" }, {
 *   shape, inputs: { q: x, k: x, v: x }, reps: 3, warmup: 1,
 * });
 * console.log(m.ms, m.timer, m.density);
 * ```
 */
export async function measurePattern(
  rt: Runtime,
  pattern: Pattern,
  options: MeasureOptions,
): Promise<Measurement> {
  const compiled = rt.compile(pattern, { shape: options.shape, dtype: options.dtype });
  // Pipelines first, on their own, so their cost is not mixed with the uploads of `prepare`.
  let started = performance.now();
  const hits = rt.pipelines.hits;
  await Promise.all(compiled.passes.map((p) => rt.pipelines.get(p)));
  const pipelineMs = performance.now() - started;
  const pipelinesCached = rt.pipelines.hits - hits;
  started = performance.now();
  const call = await rt.prepare(compiled, options.inputs);
  const prepareMs = performance.now() - started;
  const useGpuTimer = rt.info.timestamps && !isSoftwareAdapter(rt.info);
  const gpu: (number | undefined)[] = [], wall: number[] = [];
  let firstSubmitMs = NaN;
  let repeat = 1;
  try {
    // Warm up for at least `warmup` submissions and, on a GPU, WARMUP_TARGET_MS of work; then
    // every sample is `repeat` back-to-back repetitions (runtime/sustained_timing.ts).
    ({ repeat, firstSubmitMs } = await warmUp(call, options.warmup, useGpuTimer));
    for (let i = 0; i < options.reps; i++) {
      const t0 = performance.now();
      const gpuMs = await call.submit(repeat);
      gpu.push(gpuMs);
      wall.push((performance.now() - t0) / repeat);
    }
  } catch (e) {
    call.destroy();
    throw e;
  }
  // Density reads the call's codes back and frees it; then the pre-passes get a call of their own.
  const density = await densityOf(compiled, call);
  const prePassMs = await timePrePasses(rt, compiled, options);
  // Timestamps on every sample, or the wall clock for all of them: never a mix.
  const timer: Timer = useGpuTimer && gpu.every((t) => t !== undefined) ? "gpu" : "wall";
  const samples = timer === "gpu" ? gpu as number[] : wall;
  return {
    ms: median(samples),
    samples,
    timer,
    compileMs: compiled.compileMs,
    pipelineMs,
    pipelinesCached,
    passes: compiled.passes.length,
    prepareMs,
    firstSubmitMs,
    repeat,
    tiles: planTileCounts(compiled.plan),
    ...density,
    ...(prePassMs === undefined ? {} : { prePassMs }),
    kernel: compiled.kernel,
  };
}

/** Pairs per N²: planned, or for a hashBucket branch counted from the codes this call used. */
async function densityOf(
  compiled: CompiledAttention,
  call: AttentionCall,
): Promise<{ density: number; densityExact: boolean; densityFromCodes?: boolean }> {
  try {
    const pattern = compiled.plan.pattern;
    if (!needsCodes(pattern)) {
      return { density: planDensity(compiled.plan).density, densityExact: true };
    }
    const { hashCodes } = await call.read();
    const branches = pattern.kind === "gated" ? pattern.branches : [pattern];
    const n = compiled.shape.seqLen;
    const planned = planDensity(compiled.plan).allowedPairs;
    let density = 0, densityExact = true;
    branches.forEach((branch, i) => {
      if (!needsCodes(branch)) {
        density += planned[i] / (n * n);
        return;
      }
      const d = hashBranchDensity(branch, compiled.shape, hashCodes!);
      density += d.density;
      densityExact &&= d.exact;
    });
    return { density, densityExact, densityFromCodes: true };
  } finally {
    call.destroy();
  }
}

/**
 * The pre-passes timed on their own (same inputs, same number of samples), where there are
 * any: the share of a call that a hashBucket's hash and sort, or a lowRank's pooling, cost.
 * They warm up and repeat for themselves: at the full call's repetition count the short
 * submissions left the GPU idle enough to drop its clocks (f16 hash64x2 read 6.3 ms, not 1.4).
 */
async function timePrePasses(
  rt: Runtime,
  compiled: CompiledAttention,
  options: MeasureOptions,
): Promise<number | undefined> {
  const passes = compiled.passes.filter((p) => p.prePass);
  if (passes.length === 0 || !rt.info.timestamps || isSoftwareAdapter(rt.info)) return undefined;
  const call = await rt.prepare({ ...compiled, passes }, options.inputs);
  try {
    return median(await sustainedGpuTimes(call, options.reps, options.warmup));
  } finally {
    call.destroy();
  }
}

/**
 * A prepared call's sustained GPU times: warmed up (`warmUp`), then `samples` submissions of
 * the repetition count the warm-up chose; the GPU ms per repetition of those that report one.
 * @param call the call (left alive: the caller destroys it)
 * @param samples timed submissions
 * @param warmup untimed submissions at least
 * @param sustained false on software adapters: no sustained warm-up (`warmUp`)
 * @returns the GPU times, empty when no submission reported one
 * @example
 * ```ts
 * import { sustainedGpuTimes } from "./measure.ts";
 * const fake = { submit: (repeat = 1) => Promise.resolve(5 + 0 * repeat) };
 * await sustainedGpuTimes(fake, 3, 1); // [5, 5, 5]
 * ```
 */
export async function sustainedGpuTimes(
  call: Submittable,
  samples: number,
  warmup: number,
  sustained = true,
): Promise<number[]> {
  return (await interleavedGpuTimes([call], samples, warmup, sustained))[0];
}

/**
 * Several prepared calls' sustained GPU times, sampled in turn (a sample of each, then the next
 * round), so that their ratios compare the calls under one GPU state: the clock governor moves
 * a GPU's clocks with its recent load (the H200's SMs ran 700 to 1980 MHz within one bench), and
 * calls timed one after the other can meet different clocks.
 * @param calls the calls (left alive: the caller destroys them)
 * @param samples timed submissions of each
 * @param warmup untimed submissions of each at least (`warmUp`)
 * @param sustained false on software adapters: no sustained warm-up
 * @param maxRepeat the most repetitions per sample (`sustainedRepeat`)
 * @returns each call's GPU times, in the calls' order
 * @example
 * ```ts
 * import { interleavedGpuTimes } from "./measure.ts";
 * const fake = (ms: number) => ({ submit: (repeat = 1) => Promise.resolve(ms + 0 * repeat) });
 * await interleavedGpuTimes([fake(5), fake(2)], 2, 1); // [[5, 5], [2, 2]]
 * ```
 */
export async function interleavedGpuTimes(
  calls: readonly Submittable[],
  samples: number,
  warmup: number,
  sustained = true,
  maxRepeat = MAX_REPEAT,
): Promise<number[][]> {
  const repeats: number[] = [];
  for (const call of calls) {
    repeats.push((await warmUp(call, warmup, sustained, maxRepeat)).repeat);
  }
  const times = calls.map((): number[] => []);
  for (let i = 0; i < samples; i++) {
    for (const [j, call] of calls.entries()) {
      const ms = await call.submit(repeats[j]);
      if (ms !== undefined && !Number.isNaN(ms)) times[j].push(ms);
    }
  }
  return times;
}

/**
 * The median; the mean of the two middle values for an even count.
 * @param xs samples (at least one)
 * @returns the median, NaN for no samples
 * @example
 * ```ts
 * import { median } from "./measure.ts";
 * median([3, 1, 2]); // 2
 * ```
 */
export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/**
 * Times the forward and backward pass together (`backward: true`, a seeded dO): the bench's
 * `--backward` column. On a software adapter the wall clock stands in, as for the forward.
 * @param rt the runtime
 * @param pattern the pattern
 * @param options shape, inputs, repetitions, warm-up submissions, dtype
 * @returns the median milliseconds of one forward and backward call
 * @throws whatever compiling or preparing throws (a PlanError for what the backward does not
 *   cover)
 */
export async function measureForwardBackward(
  rt: Runtime,
  pattern: Pattern,
  options: MeasureOptions,
): Promise<number> {
  const compiled = rt.compile(pattern, {
    shape: options.shape,
    dtype: options.dtype,
    backward: true,
  });
  const { batch, headsQ, seqLen, headDim } = options.shape;
  const values = normalTensor(batch * headsQ * seqLen * headDim, 9);
  const dO = options.dtype === "f16" ? Float16Array.from(values) : values;
  const call = await rt.prepare(compiled, { ...options.inputs, dO });
  try {
    const gpu = rt.info.timestamps && !isSoftwareAdapter(rt.info);
    if (gpu) return median(await sustainedGpuTimes(call, options.reps, options.warmup));
    const { repeat } = await warmUp(call, options.warmup, false);
    const wall: number[] = [];
    for (let i = 0; i < options.reps; i++) {
      const t0 = performance.now();
      await call.submit(repeat);
      wall.push((performance.now() - t0) / repeat);
    }
    return median(wall);
  } finally {
    call.destroy();
  }
}
