/**
 * The runtime: a device, its pipeline cache, its autotuner, and `compile`/`tune`/`prepare`/`run`
 * bound to the device's limits. Create one per process and reuse it.
 * @module
 */
import {
  checkCall,
  compile,
  compileChecked,
  type CompiledAttention,
  type CompileOptions,
  kernelShape,
  type PackedCallData,
  packedCallData,
} from "../compiler/mod.ts";
import { packedSequences, wholeSequence } from "../core/packed_sequences.ts";
import { AttentionCall, type AttentionInputs, type AttentionOutputs } from "./attention_call.ts";
import { Autotuner, type TuneOptions, type TuneResult } from "./autotune.ts";
import { compileLimits, type DeviceInfo, openDevice } from "./device.ts";
import { PipelineCache } from "./pipeline_cache.ts";
import { checkShape } from "../core/input_shapes.ts";
import { DeviceError, DeviceLostError, ShapeError } from "../core/errors.ts";
import { chooseSplit, runSplit, type Split } from "./split_run.ts";
import { linearBranches, linearFeatureCount } from "../dsl/linear.ts";
import { checkFinite } from "./finite_check.ts";

/**
 * Software adapters (llvmpipe) run kernels correctly but compile them slowly (seconds to a
 * minute each, growing with the register tiles), and their timings mean nothing: use the
 * smallest tiles and no unrolling there.
 */
export const FALLBACK_TILES = { tileQ: 8, tileK: 8 };

/** Compile options without the limits: the runtime supplies its device's. */
export type RuntimeCompileOptions = Omit<CompileOptions, "limits">;

/** How to open a runtime. */
export interface RuntimeOptions {
  /**
   * Use and store tuned kernel shapes (default true). False keeps the untuned defaults:
   * `compile` ignores the autotune cache and `tune` times nothing.
   */
  autotune?: boolean;
  /**
   * The largest buffer one call may bind, in bytes (default and upper bound: the device's
   * maxStorageBufferBindingSize). Calls over it run in parts of whole heads (split_run.ts),
   * which bounds GPU memory per part.
   */
  maxBindingBytes?: number;
  /**
   * Which WebGPU implementation (runtime/device.ts): `native` (Deno's own) or `dawn` (npm
   * `webgpu`, with subgroup matrices on GPUs that have them). Default: WEFT_BACKEND, else native.
   */
  backend?: string;
}

/** A WebGPU device ready to run compiled patterns. */
export interface Runtime {
  /** The current WebGPU device (a new one once the device was lost). */
  readonly device: GPUDevice;
  /** The current device's adapter, features and whether it is a software fallback. */
  readonly info: DeviceInfo;
  /** The current device's compiled pipelines, with hit and miss counts. */
  readonly pipelines: PipelineCache;
  /** Tuned kernel shapes for this device, and the count of candidates it has timed. */
  readonly autotuner: Autotuner;
  /**
   * Compiles for this device's limits (no GPU work). Without `tiles`, uses the shape `tune`
   * stored for this problem's key if any, else the fallback tiles on a software adapter, else
   * the compiler's default for the limits.
   */
  compile(pattern: unknown, options: RuntimeCompileOptions): CompiledAttention;
  /**
   * Picks the kernel shape for a problem by timing a few candidates on this device, once per
   * adapter and kind of problem (runtime/autotune.ts), and stores it for `compile` and later
   * runtimes. A stored choice returns at once; a software adapter keeps the fallback tiles
   * unless `force` is set.
   */
  tune(pattern: unknown, options: TuneOptions): Promise<TuneResult>;
  /** Uploads inputs and builds pipelines; the call can then be submitted many times. */
  prepare(compiled: CompiledAttention, inputs: AttentionInputs): Promise<AttentionCall>;
  /** Runs once and reads back O and LSE, with the GPU time when timestamps are available. */
  run(
    compiled: CompiledAttention,
    inputs: AttentionInputs,
  ): Promise<AttentionOutputs & { gpuMs?: number; peakBufferBytes: number }>;
  /** How many times the device was lost and replaced (calls prepared before then must be redone). */
  readonly devicesLost: number;
  /** Destroys the current device, freeing its GPU memory; call it when done with the runtime. */
  destroy(): void;
}

/**
 * Opens the high-performance WebGPU adapter (a software fallback is accepted and reported in
 * `info.isFallback`).
 * @param options whether to autotune (default true)
 * @returns the runtime
 * @throws {DeviceError} when there is no adapter, with how to get one
 * @example
 * ```ts ignore
 * import { createRuntime } from "./runtime.ts";
 * const rt = await createRuntime();
 * const compiled = rt.compile({ kind: "ring", radius: 8 }, {
 *   shape: { batch: 1, headsQ: 1, headsKV: 1, seqLen: 64, headDim: 32 },
 * });
 * const x = new Float32Array(64 * 32).map(() => Math.random());
 * const { o, lse } = await rt.run(compiled, { q: x, k: x, v: x });
 * ```
 */
export async function createRuntime(options: RuntimeOptions = {}): Promise<Runtime> {
  let session = await openSession(options);
  let lostCount = 0;
  // A lost device (driver reset, `device.destroy()`) is replaced before the next call; a call
  // in flight when it happens fails once and runs again on the new device.
  const current = async () => {
    if (session.lost) {
      session = await openSession(options);
      lostCount++;
    }
    return session;
  };
  const prepare = async (compiled: CompiledAttention, inputs: AttentionInputs) => {
    const gates = checkShape(compiled.shape, {
      ...inputs,
      branches: compiled.gated ? compiled.branches : undefined,
      paged: compiled.paged,
    });
    // The blend kernel indexes gates by its compiled layout: a mismatch would read wrong gates.
    const n = compiled.shape.seqLen; // at N = 1 both layouts are the same bytes
    if (gates !== "none" && n > 1 && (gates === "position") !== compiled.gatesPerPosition) {
      throw new ShapeError(
        `Bad shape: gates are laid out ${
          gates === "position" ? "[B, Hq, N, branches]" : "[B, Hq, branches]"
        } ` +
          `but the pattern was compiled with gatesPerPosition: ${compiled.gatesPerPosition}; ` +
          `compile with gatesPerPosition: ${gates === "position"}`,
      );
    }
    const packed = packedData(compiled, inputs);
    checkFinite(inputs, compiled.paged && { shape: compiled.shape, ...compiled.paged });
    const s = await current();
    return await AttentionCall.create(
      s.device,
      s.pipelines,
      compiled,
      inputs,
      s.info.timestamps,
      packed,
    );
  };
  const runOnce = async (compiled: CompiledAttention, inputs: AttentionInputs) => {
    const call = await prepare(compiled, inputs);
    try {
      const gpuMs = await call.submit();
      return { ...(await call.read()), gpuMs, bufferBytes: call.bufferBytes() };
    } finally {
      call.destroy();
    }
  };
  const runRecovering = async (compiled: CompiledAttention, inputs: AttentionInputs) => {
    try {
      return await runOnce(compiled, inputs);
    } catch (error) {
      if (!(error instanceof DeviceLostError)) throw error;
      return await runOnce(compiled, inputs); // prepare opens a new device first
    }
  };
  return {
    get device() {
      return session.device;
    },
    get info() {
      return session.info;
    },
    get pipelines() {
      return session.pipelines;
    },
    get autotuner() {
      return session.autotuner;
    },
    get devicesLost() {
      return lostCount;
    },
    compile: (pattern, options) => session.compile(pattern, options),
    tune: async (pattern, options) => (await current()).autotuner.tune(pattern, options),
    prepare: async (compiled, inputs) => {
      if (compiled.split) {
        throw new DeviceError(
          `Cannot prepare one call: at this shape the tensors exceed one storage binding, so ` +
            `the pattern runs in ${partCount(compiled.split)} parts; use run()`,
        );
      }
      return await prepare(compiled, inputs);
    },
    async run(compiled, inputs) {
      if (!compiled.split) {
        const { bufferBytes, ...out } = await runRecovering(compiled, inputs);
        return { ...out, peakBufferBytes: bufferBytes };
      }
      checkShape(compiled.split.full, {
        ...inputs,
        branches: compiled.gated ? compiled.branches : undefined,
      });
      return await runSplit(
        compiled,
        compiled.split,
        inputs,
        (part) => runRecovering(compiled, part),
      );
    },
    destroy: () => session.device.destroy(),
  };
}

/** A paged call whose buffers one binding cannot hold: it cannot run in parts. */
function refusePagedPastBinding(compiled: CompiledAttention, limit: number): void {
  const over = compiled.buffers.find((b) => b.bytes > limit);
  if (!over) return;
  throw new DeviceError(
    `Cannot run paged K and V at this shape: buffer ${over.name} needs ${over.bytes} bytes, ` +
      `over the ${limit} one binding may hold, and a paged call does not run in parts (each ` +
      `part would bind the whole pool); use fewer pages, batches or heads per call`,
  );
}

/**
 * A packed call's schedule and sequences words for its lengths (one sequence of every row when
 * it gives none); undefined for a call compiled without `packed`, which may give no lengths.
 */
function packedData(
  compiled: CompiledAttention,
  inputs: AttentionInputs,
): PackedCallData | undefined {
  const { seqLens, kvSeqLens } = inputs;
  if (!compiled.packed) {
    if (seqLens === undefined && kvSeqLens === undefined) return undefined;
    throw new ShapeError(
      `Bad input: ${
        seqLens ? "seqLens" : "kvSeqLens"
      } gives packed sequences, but the pattern was compiled ` +
        "without packed: true; compile with packed: true (batch 1) to run them",
    );
  }
  if (seqLens === undefined && kvSeqLens !== undefined) {
    throw new ShapeError("Bad input: kvSeqLens needs seqLens (the packed sequences' query rows)");
  }
  const sequences = seqLens === undefined
    ? [wholeSequence(compiled.shape)]
    : packedSequences(compiled.shape, seqLens, kvSeqLens);
  return packedCallData(compiled, sequences);
}

function partCount(split: Split): number {
  return split.full.batch * (split.full.headsKV / split.kvHeads);
}

/** One device and what was built on it. */
interface Session {
  device: GPUDevice;
  info: DeviceInfo;
  pipelines: PipelineCache;
  autotuner: Autotuner;
  compile(pattern: unknown, options: RuntimeCompileOptions): CompiledAttention;
  /** Set once the device is lost. */
  lost?: GPUDeviceLostInfo;
}

async function openSession(runtimeOptions: RuntimeOptions): Promise<Session> {
  const { device, info } = await openDevice(runtimeOptions.backend);
  const pipelines = new PipelineCache(device);
  const limits = compileLimits(device, info);
  const compileFor = (pattern: unknown, options: RuntimeCompileOptions) =>
    compile(pattern, { ...options, unroll: options.unroll ?? !info.isFallback, limits });
  const fallback = (valueDim: number) =>
    kernelShape(FALLBACK_TILES.tileQ, FALLBACK_TILES.tileK, 2, valueDim / 4)!;
  const autotuner = new Autotuner({
    device,
    info,
    limits,
    compile: compileFor,
    fallback,
    enabled: runtimeOptions.autotune ?? true,
  });
  const session: Session = {
    device,
    info,
    pipelines,
    autotuner,
    compile: (pattern, options) => {
      // The door, once, at the caller's shape; the binding limit is checked on the part that
      // one call binds (the buffer table, in compileChecked). The device's unroll goes in
      // here, since the door settles the options that default to it (decode).
      const unroll = options.unroll ?? !info.isFallback;
      const call = checkCall(pattern, { ...options, unroll, limits: undefined });
      const branches = call.pattern.kind === "gated" ? call.pattern.branches.length : 1;
      const bindingLimit = Math.min(
        runtimeOptions.maxBindingBytes ?? Infinity,
        device.limits.maxStorageBufferBindingSize,
      );
      // Paged K and V are one pool that every batch and head reads through the table: a paged
      // call runs whole, and one past a binding is refused below.
      const split = call.paged ? undefined : chooseSplit(
        call.shape,
        call.dtype,
        branches,
        bindingLimit,
        Math.max(
          0,
          ...linearBranches(call.pattern).map(([i, p]) =>
            linearFeatureCount(p, call.shape.headDim, `pattern.branches[${i}]`)
          ),
        ),
      );
      if (split && call.backward) {
        throw new DeviceError(
          `Cannot run the backward pass in parts: its tensors need more than one storage ` +
            `binding (${device.limits.maxStorageBufferBindingSize} bytes); use fewer heads or ` +
            `batches per call`,
        );
      }
      const shape = split?.part ?? call.shape;
      const compiled = compileChecked({
        ...call,
        shape,
        limits,
        unroll,
        tiles: options.tiles ??
          autotuner.cached(call.pattern, shape, call.dtype) ??
          (info.isFallback ? FALLBACK_TILES : undefined),
      });
      if (call.paged) refusePagedPastBinding(compiled, bindingLimit);
      return split ? { ...compiled, split } : compiled;
    },
  };
  device.lost.then((lost) => session.lost = lost);
  return session;
}
