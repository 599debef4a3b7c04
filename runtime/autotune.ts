/**
 * The autotuner: picks the kernel shape (tiles and invocation split) per adapter and kind of
 * problem by timing a few candidates, once, and remembers the choice on disk
 * (runtime/autotune_cache.ts). The best tile need not be one number per GPU: a band pattern
 * like `ring(128)` visits about `(2r + tileQ + tileK) / (2r + 1)` of its allowed area, so
 * smaller tiles can pay off where the kernel runs them well. (On the H100, 53 of the bench's
 * 54 rows chose 64x32 with two rows per invocation.)
 *
 * A choice is stored under a key (runtime/autotune_key.ts says what it holds and why): the
 * adapter, dtype, D, Hq/Hkv, size classes of B·Hq and N, and the pattern's tree of kinds.
 *
 * Tuning compiles each candidate that fits the device, runs it on seeded random inputs at the
 * given shape (warm-up as in runtime/sustained_timing.ts, then up to 3 timed samples of
 * back-to-back repetitions, stopping early once a candidate is
 * clearly slower than the best so far), and keeps the fastest median. GPU time comes from
 * timestamp queries where the adapter has them, otherwise from the wall clock around a
 * submission until the queue is idle. Software adapters (llvmpipe) keep the fallback tiles
 * unless tuning is forced: their timings say nothing about a GPU.
 * @module
 */
import {
  type AttentionShape,
  checkAttentionShape,
  chooseTiles,
  type CompiledAttention,
  type DeviceLimits,
  type Dtype,
  kernelFits,
  type KernelShape,
  kernelShape,
  kernelShapeName,
  parseKernelShapeName,
  type TileShape,
  tuningCandidates,
} from "../compiler/mod.ts";
import { assert } from "../core/errors.ts";
import { sequenceSizes } from "../core/shape.ts";
import { parsePattern } from "../dsl/schema.ts";
import { warmUp } from "./sustained_timing.ts";
import { AttentionCall, type AttentionInputs } from "./attention_call.ts";
import {
  autotuneCachePath,
  type AutotuneEntry,
  type CandidateResult,
  readAutotuneFile,
  writeAutotuneFile,
} from "./autotune_cache.ts";
import { type TuneKey, tuneKey } from "./autotune_key.ts";
import type { DeviceInfo } from "./device.ts";
import { PipelineCache } from "./pipeline_cache.ts";
import { checkShape } from "../core/input_shapes.ts";
import { normalTensor } from "./seeded_random.ts";
import { gpuWait } from "./gpu_wait.ts";

/** Untimed submissions per candidate: the first pays lazy driver compiles and cold caches. */
const WARMUP = 1;
/** Timed submissions per candidate; the median counts. */
const REPS = 3;
/** A candidate whose fastest sample is this much slower than the best median stops early. */
const CUT_OFF = 1.5;

/** What `tune` needs: the problem's shape and dtype, and knobs for tests. */
export interface TuneOptions {
  /** The problem's shape (tuning runs at it, and its key holds its size classes). */
  shape: AttentionShape;
  /** Element type (default f32). */
  dtype?: Dtype;
  /** Tune on a software adapter too (to test the code path; its timings mean nothing). */
  force?: boolean;
  /** Candidates to try instead of tiles.ts's (those over the device's limits are dropped). */
  candidates?: (TileShape & Partial<KernelShape>)[];
  /** Try at most this many candidates (default 6). */
  maxCandidates?: number;
  /**
   * Inputs at `shape` to time with (default: seeded unit normals, kept for the next tuning at
   * the same shape, since making them takes seconds at large N).
   */
  inputs?: AttentionInputs;
}

/** The tuned (or kept) kernel shape and where it came from. */
export interface TuneResult {
  /** The kernel shape `compile` will use for this key. */
  tiles: KernelShape;
  /** Its short name, e.g. "64x32x2". */
  name: string;
  /**
   * `cache`: stored earlier, no GPU work; `tuned`: timed now; `fallback`: software adapter,
   * not tuned; `default`: no candidate fits, the compiler's own choice.
   */
  source: "cache" | "tuned" | "fallback" | "default";
  /** One line saying why this shape. */
  reason: string;
  /** The key's text (the entry's name in the cache file). */
  id: string;
  /** The key's parts: adapter, dtype, D, Hq/Hkv, size classes of B·Hq and N, structure. */
  key: TuneKey;
  /** The stored entry, with every candidate's milliseconds, when tuned now or cached. */
  entry?: AutotuneEntry;
  /** Milliseconds this call took (next to nothing for a cache hit). */
  ms: number;
}

/** What the autotuner needs from its runtime. */
export interface AutotunerDeps {
  /** The device candidates are timed on. */
  device: GPUDevice;
  /** What it is: the key's adapter part, and whether timings mean anything. */
  info: DeviceInfo;
  /** Its limits: candidates that do not fit are dropped. */
  limits: DeviceLimits;
  /** The runtime's compile with an explicit kernel shape (its unrolling, its limits). */
  compile(
    pattern: unknown,
    options: { shape: AttentionShape; dtype: Dtype; tiles: KernelShape },
  ): CompiledAttention;
  /** The kernel shape a software adapter keeps (the runtime's fallback tiles), at Dv. */
  fallback(valueDim: number): KernelShape;
  /** False: store and use nothing; `tune` returns the untuned default. */
  enabled: boolean;
}

/** Tunes kernel shapes for one runtime's device and remembers them (see the module comment). */
export class Autotuner {
  /** Candidates timed by this autotuner: a cache hit adds none. */
  measuredCandidates = 0;
  /** The cache file (`autotuneCachePath`), or undefined when tunings stay in memory. */
  readonly cachePath: string | undefined = autotuneCachePath();
  #entries?: Map<string, AutotuneEntry>;
  /** Tunings run one at a time: concurrent GPU work would spoil the timings. */
  #queue: Promise<unknown> = Promise.resolve();
  #inputs?: { id: string; inputs: AttentionInputs };

  /**
   * An autotuner that has timed nothing yet; the cache file is read on first use.
   * @param deps the runtime's device, info, limits and compile
   */
  constructor(readonly deps: AutotunerDeps) {}

  /**
   * The tuning key of a problem.
   * @param pattern the pattern (JSON form)
   * @param shape the attention shape
   * @param dtype element type
   * @returns the key's parts and text, or undefined for input `compile` would refuse
   * @example
   * ```ts ignore
   * rt.autotuner.key({ kind: "union", of: [{ kind: "ring", radius: 8 }, { kind: "causal" }] },
   *   { batch: 1, headsQ: 8, headsKV: 2, seqLen: 3000, headDim: 64 }, "f32")?.id;
   * // "NVIDIA H100 ... | f32 D=64 Hq/Hkv=4 B*Hq<=8 N<=4096 | union(ring,causal)"
   * ```
   */
  key(
    pattern: unknown,
    shape: AttentionShape,
    dtype: Dtype,
  ): { id: string; key: TuneKey } | undefined {
    return tuneKey(this.deps.info, pattern, shape, dtype);
  }

  /**
   * The stored choice for a problem, if any: what `compile` uses when no tiles are given.
   * Reads the cache file on first use; no GPU work.
   * @param pattern the pattern (JSON form)
   * @param shape the attention shape
   * @param dtype element type
   * @returns the kernel shape, or undefined when nothing (usable) is stored
   */
  cached(pattern: unknown, shape: AttentionShape, dtype: Dtype): KernelShape | undefined {
    if (!this.deps.enabled) return undefined;
    const k = this.key(pattern, shape, dtype);
    const entry = k && this.#load().get(k.id);
    return entry && this.#usable(entry.tiles, shape, dtype);
  }

  /**
   * The kernel shape for a problem: stored, or found now by timing the candidates (and
   * stored). Software adapters keep the fallback tiles unless `force` is set.
   * @param pattern the pattern (JSON form)
   * @param options shape, dtype, and test knobs (force, candidates)
   * @returns the choice, where it came from and the candidates' times
   * @throws whatever compiling throws when every candidate fails (PatternError, PlanError, ...)
   */
  tune(pattern: unknown, options: TuneOptions): Promise<TuneResult> {
    const run = this.#queue.then(() => this.#tune(pattern, options));
    this.#queue = run.catch(() => {});
    return run;
  }

  async #tune(pattern: unknown, options: TuneOptions): Promise<TuneResult> {
    const started = performance.now();
    const { shape } = options;
    const dtype = options.dtype ?? "f32";
    // Bad input fails here with the compiler's own errors, even where nothing gets compiled.
    parsePattern(pattern);
    checkAttentionShape(shape);
    const k = this.key(pattern, shape, dtype);
    assert(k !== undefined, "a checked pattern and shape have a tuning key");
    const { info, enabled } = this.deps;
    const { d, dv } = sequenceSizes(shape);
    const untuned = (source: "fallback" | "default", reason: string): TuneResult => {
      const tiles = info.isFallback
        ? this.deps.fallback(dv)
        : chooseTiles(d, this.#limits(shape), dtype, undefined, dv);
      const name = kernelShapeName(tiles, dv);
      return { ...k, tiles, name, source, reason, ms: performance.now() - started };
    };
    if (!enabled) {
      return untuned(
        "default",
        "autotuning is off for this runtime (createRuntime({ autotune: false }))",
      );
    }
    const stored = this.#load().get(k.id);
    const storedTiles = stored && this.#usable(stored.tiles, shape, dtype);
    if (stored && storedTiles) {
      return {
        ...k,
        tiles: storedTiles,
        name: stored.tiles,
        source: "cache",
        reason:
          `cached${this.cachePath ? ` in ${this.cachePath}` : ""} (tuned ${stored.tunedAt}): ` +
          describe(stored),
        entry: stored,
        ms: performance.now() - started,
      };
    }
    if (info.isFallback && !options.force) {
      return untuned(
        "fallback",
        `software adapter (${info.description}): its timings mean nothing, so the fallback ` +
          `tiles stay (force: true tunes anyway)`,
      );
    }
    const candidates = this.#candidates(options, dtype);
    if (candidates.length === 0) {
      return untuned("default", "no tile candidate fits this device's workgroup limits");
    }
    const entry = await this.#measureAll(pattern, options, dtype, candidates, k.key);
    this.#load().set(k.id, entry);
    if (this.cachePath) await writeAutotuneFile(this.cachePath, new Map([[k.id, entry]]));
    return {
      ...k,
      tiles: this.#usable(entry.tiles, shape, dtype)!,
      name: entry.tiles,
      source: "tuned",
      reason: `fastest of ${candidates.length} candidates: ${describe(entry)}`,
      entry,
      ms: performance.now() - started,
    };
  }

  #candidates(options: TuneOptions, dtype: Dtype): KernelShape[] {
    const { d, dv } = sequenceSizes(options.shape);
    const limits = this.#limits(options.shape);
    const max = options.maxCandidates ?? 6;
    if (!options.candidates) return tuningCandidates(d, limits, dtype, max, undefined, dv);
    return options.candidates
      .map((t) =>
        t.threads && t.rowsPerThread
          ? t as KernelShape
          : kernelShape(t.tileQ, t.tileK, t.rowsPerThread ?? 2, dv / 4)
      )
      .filter((s): s is KernelShape =>
        s !== undefined && kernelFits(s, d, dtype, limits, undefined, dv)
      )
      .slice(0, max);
  }

  /**
   * The device's limits for a problem's candidates: subgroup matrices run square calls only
   * (queries against as many keys, V as wide as K), as compile's own choice does.
   */
  #limits(shape: AttentionShape): DeviceLimits {
    const { nq, nk, d, dv } = sequenceSizes(shape);
    return nq === nk && dv === d ? this.deps.limits : { ...this.deps.limits, matrices: undefined };
  }

  async #measureAll(
    pattern: unknown,
    options: TuneOptions,
    dtype: Dtype,
    candidates: KernelShape[],
    key: TuneKey,
  ): Promise<AutotuneEntry> {
    const { info, device } = this.deps;
    const gpuTimer = info.timestamps && !info.isFallback;
    // Gates do not change the time: the kernels run with the pattern's default ones.
    const given = options.inputs &&
      { q: options.inputs.q, k: options.inputs.k, v: options.inputs.v };
    if (given) checkShape(options.shape, given);
    const inputs = given ?? this.#seededInputs(options.shape, dtype);
    // Its own pipeline cache: the losers' pipelines go with it, and the runtime's cache (and
    // its hit counts) only ever sees kernels that are actually used.
    const pipelines = new PipelineCache(device);
    const results: CandidateResult[] = [];
    let best: { ms: number; tiles: string } | undefined;
    let firstError: unknown;
    for (const tiles of candidates) {
      const name = kernelShapeName(tiles, sequenceSizes(options.shape).dv);
      try {
        const compiled = this.deps.compile(pattern, { shape: options.shape, dtype, tiles });
        const call = await AttentionCall.create(device, pipelines, compiled, inputs, gpuTimer);
        this.measuredCandidates++;
        let samples: number[];
        try {
          // Without timestamps, submit already waits for the queue; the wait is explicit here.
          // On a GPU, warm up and time back-to-back repetitions (runtime/sustained_timing.ts).
          const repeat = gpuTimer ? (await warmUp(call)).repeat : 1;
          const submit = gpuTimer ? () => call.submit(repeat) : async () => {
            await call.submit();
            await gpuWait(device, "a tuning call", device.queue.onSubmittedWorkDone());
            return undefined;
          };
          samples = await timeSubmissions(submit, best?.ms ?? Infinity);
        } finally {
          call.destroy();
        }
        const ms = median(samples);
        results.push({ tiles: name, ms, samples });
        if (!best || ms < best.ms) best = { ms, tiles: name };
      } catch (e) {
        firstError ??= e;
        results.push({ tiles: name, error: (e as Error).message ?? String(e) });
      }
    }
    if (!best) throw firstError;
    return {
      key,
      tiles: best.tiles,
      timer: gpuTimer ? "gpu" : "wall",
      shape: { ...options.shape },
      candidates: results,
      tunedAt: new Date().toISOString(),
    };
  }

  /** Seeded unit-normal Q, K, V at a shape, kept for the next tuning at the same shape. */
  #seededInputs(shape: AttentionShape, dtype: Dtype): AttentionInputs {
    const { nq, nk, d, dv } = sequenceSizes(shape);
    const id = `${dtype} ${shape.batch} ${shape.headsQ} ${shape.headsKV} ${nq} ${nk} ${d} ${dv}`;
    if (this.#inputs?.id === id) return this.#inputs.inputs;
    const make = (heads: number, rows: number, width: number, seed: number) => {
      const x = normalTensor(shape.batch * heads * rows * width, seed);
      return dtype === "f16" ? Float16Array.from(x) : x;
    };
    const inputs = {
      q: make(shape.headsQ, nq, d, 1),
      k: make(shape.headsKV, nk, d, 2),
      v: make(shape.headsKV, nk, dv, 3),
    };
    this.#inputs = { id, inputs };
    return inputs;
  }

  #usable(name: string, shape: AttentionShape, dtype: Dtype): KernelShape | undefined {
    const { d, dv } = sequenceSizes(shape);
    const s = parseKernelShapeName(name, dv);
    return s && kernelFits(s, d, dtype, this.#limits(shape), undefined, dv) ? s : undefined;
  }

  #load(): Map<string, AutotuneEntry> {
    this.#entries ??= this.cachePath ? readAutotuneFile(this.cachePath) : new Map();
    return this.#entries;
  }
}

/**
 * Times one candidate: 1 warm-up, then up to 3 timed submissions, stopping as soon as even the
 * fastest sample is 1.5 times the best median so far: it will not win, and at large N each
 * submission of a poor candidate can cost a good part of a second.
 * @param submit one submission, run to completion; returns its GPU milliseconds, or undefined
 *   to be timed by the wall clock
 * @param bestMs the best candidate's median so far (Infinity for the first)
 * @returns the timed samples, 1 to 3
 * @example
 * ```ts
 * import { timeSubmissions } from "./autotune.ts";
 * const times = [9, 4, 5, 6];
 * await timeSubmissions(() => Promise.resolve(times.shift()), 1); // [4]: 4 > 1.5 * 1, cut off
 * ```
 */
export async function timeSubmissions(
  submit: () => Promise<number | undefined>,
  bestMs: number,
): Promise<number[]> {
  const samples: number[] = [];
  for (let i = 0; i < WARMUP + REPS; i++) {
    const t0 = performance.now();
    const gpuMs = await submit();
    const wallMs = performance.now() - t0;
    if (i < WARMUP) continue;
    samples.push(gpuMs ?? wallMs);
    if (Math.min(...samples) > CUT_OFF * bestMs) break;
  }
  return samples;
}

/** "64x32x2 (64x32x2 1.23 ms; 32x32x4 2.90 ms (cut off), gpu timer)": every candidate, in order. */
function describe(entry: AutotuneEntry): string {
  return `${entry.tiles} (` +
    entry.candidates.map((c) =>
      c.error !== undefined
        ? `${c.tiles} failed`
        : `${c.tiles} ${c.ms!.toPrecision(3)} ms${c.samples!.length < REPS ? " (cut off)" : ""}`
    ).join("; ") + `, ${entry.timer} timer)`;
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}
