/**
 * One compiled pattern bound to device buffers: upload once, then each `submit` is one command
 * buffer holding every pass (clears, component kernels, blend) in a single compute pass, timed
 * with `timestamp-query` where the device has it. Nothing is read back until `read`.
 * @module
 */
import {
  type BufferName,
  checkBufferTable,
  type CompiledAttention,
  type PackedCallData,
} from "../compiler/mod.ts";
import { DeviceError, DeviceLostError, ShapeError } from "../core/errors.ts";
import type { HashCodes } from "../dsl/hash_bucket.ts";
import type { SelectedBlocks } from "./reference/selection.ts";
import { sequenceSizes } from "../core/shape.ts";
import { compactBlockTable, pageReferences } from "../core/paged_kv.ts";
import type { PipelineCache } from "./pipeline_cache.ts";
import { gpuWait } from "./gpu_wait.ts";

/**
 * Inputs in DESIGN §1 layout (N = Nq = Nk and Dv = D for a square call); gates
 * `[B, Hq, branches]` or `[B, Hq, Nq, branches]` (float32). A float16 call takes Float16Array
 * tensors (Float32Array ones are converted on upload).
 */
export interface AttentionInputs {
  /** Queries `[B, Hq, Nq, D]`. */
  q: Float32Array | Float16Array;
  /** Keys `[B, Hkv, Nk, D]`, or paged `[pages, Hkv, pageSize, D]` (see `blockTable`). */
  k: Float32Array | Float16Array;
  /** Values `[B, Hkv, Nk, Dv]`, or paged `[pages, Hkv, pageSize, Dv]`. */
  v: Float32Array | Float16Array;
  /** Gated patterns: per-call gates (default: the pattern's JSON gates, else 1/branches). */
  gates?: Float32Array;
  /** ∂loss/∂O `[B, Hq, Nq, Dv]`: required by a call compiled with `backward`, else unused. */
  dO?: Float32Array | Float16Array;
  /**
   * A call compiled with `paged`: `[B, maxPages]` page indices, row-major, with
   * `maxPages >= ceil(Nk / pageSize)`; key position `p` of batch `b` is row `p % pageSize` of
   * page `blockTable[b, floor(p / pageSize)]` of K and V, which are then
   * `[pages, Hkv, pageSize, D]` and `[pages, Hkv, pageSize, Dv]`. Required there, refused
   * elsewhere.
   */
  blockTable?: Int32Array | Uint32Array;
  /**
   * Packed sequences (a pattern compiled with `packed`, batch 1): the query rows of each
   * sequence, laid end to end and summing to Nq. Each sequence attends only to its own keys,
   * with positions from its start, `n` its key count and its queries its last positions.
   * Default: one sequence of every row.
   */
  seqLens?: readonly number[];
  /** The key rows of each packed sequence, summing to Nk (default `seqLens`). */
  kvSeqLens?: readonly number[];
}

/** ∂loss/∂ of the inputs, float32, from a call compiled with `backward` (DESIGN §6). */
export interface AttentionGradients {
  /** `[B, Hq, Nq, D]` */
  dq: Float32Array;
  /**
   * `[B, Hkv, Nk, D]`; paged K and V: the pool's `[pages, Hkv, pageSize, D]`, each row the sum
   * over every (batch, position) the block table places there, 0 where none does.
   */
  dk: Float32Array;
  /** `[B, Hkv, Nk, Dv]`; paged: `[pages, Hkv, pageSize, Dv]`, as dK. */
  dv: Float32Array;
  /** Gated patterns: the gates' gradient, in the compiled gate layout. */
  dgates?: Float32Array;
  /**
   * Score modifiers' learnable constants: each one's gradient by name, a number for a number
   * and an array of its length for an array.
   */
  dConstants?: Record<string, number | Float32Array>;
}

/**
 * O `[B, Hq, Nq, Dv]` in the call's dtype, LSE `[B, Hq, Nq]` (or `[branches, B, Hq, Nq]` when
 * gated).
 */
export interface AttentionOutputs {
  /** The attention output `[B, Hq, Nq, Dv]` (Float16Array for a float16 call). */
  o: Float32Array | Float16Array;
  /** Log-sum-exp of each row's scores: `[B, Hq, Nq]`, or `[branches, B, Hq, Nq]` when gated. */
  lse: Float32Array;
  /**
   * The hashBucket codes the GPU used, per code key (`hashCodeKey`): `q` `[rounds][B][Hq][Nq]`,
   * `k` `[rounds][B][Hkv][Nk]`; give them to `reference` to check O on the same allowed sets.
   */
  hashCodes?: HashCodes;
  /**
   * The blocks each select branch kept, `[B, Hkv, N, blocks]` ascending with -1 past the kept
   * ones; give them to `reference` (`selectedBlocks`) to check O on the same allowed sets, and
   * to `selectionDisagreements` to check the choice itself.
   */
  selectedBlocks?: SelectedBlocks[];
  /** A call compiled with `backward`: the gradients for the dO it was given. */
  gradients?: AttentionGradients;
}

const STORAGE = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC;

/** Buffers, bind groups and pipelines of one compiled pattern at one shape. */
export class AttentionCall {
  readonly #buffers = new Map<BufferName, GPUBuffer>();
  readonly #steps: {
    pipeline: GPUComputePipeline;
    bindGroup: GPUBindGroup;
    workgroups: [number, number];
  }[] = [];
  #timing?: { querySet: GPUQuerySet; resolve: GPUBuffer; read: GPUBuffer };
  #lost?: GPUDeviceLostInfo;

  private constructor(readonly device: GPUDevice, readonly compiled: CompiledAttention) {
    device.lost.then((info) => this.#lost = info);
  }

  /**
   * Runs a device step; if it fails because the device was lost, says so as a DeviceLostError.
   * WebGPU reports the failure (a rejected map) before or after the `lost` promise settles, so
   * a failure waits briefly for it before it is called something else.
   */
  async #onDevice<T>(what: string, step: () => Promise<T>): Promise<T> {
    if (this.#lost) throw this.#lostError(what);
    try {
      return await step();
    } catch (error) {
      await Promise.race([this.device.lost, new Promise((r) => setTimeout(r, 100))]);
      if (this.#lost) throw this.#lostError(what);
      throw error;
    }
  }

  #lostError(what: string): DeviceLostError {
    const { reason, message } = this.#lost!;
    return new DeviceLostError(
      `Cannot ${what}: the GPU device was lost (${reason}${message ? `: ${message}` : ""}); ` +
        `this call's buffers and pipelines are gone. Prepare it again (Runtime.run opens a new ` +
        `device and runs again by itself)`,
    );
  }

  /**
   * Allocates and uploads the buffers and builds pipelines (cached) and bind groups.
   * @param device the device
   * @param cache the device's pipeline cache
   * @param compiled the compiled pattern
   * @param inputs q, k, v (and gates) as float32
   * @param timestamps whether to time submissions with timestamp-query
   * @param packed a packed call's schedule, gradient schedule and sequences words for its
   *   lengths (packed_call.ts), which replace the compiled ones
   * @returns a call ready to submit
   */
  static async create(
    device: GPUDevice,
    cache: PipelineCache,
    compiled: CompiledAttention,
    inputs: AttentionInputs,
    timestamps: boolean,
    packed?: PackedCallData,
  ): Promise<AttentionCall> {
    const call = new AttentionCall(device, compiled);
    call.#allocate(inputs, packed);
    for (const pass of compiled.passes) {
      const pipeline = await cache.get(pass);
      device.pushErrorScope("validation");
      const bindGroup = device.createBindGroup({
        label: pass.label,
        layout: pipeline.getBindGroupLayout(0),
        entries: pass.bindings.map((b, binding) => ({
          binding,
          resource: { buffer: call.#buffers.get(b.buffer)! },
        })),
      });
      const error = await gpuWait(device, `binding ${pass.label}`, device.popErrorScope());
      if (error) throw new DeviceError(`Cannot bind buffers of ${pass.label}: ${error.message}`);
      call.#steps.push({ pipeline, bindGroup, workgroups: pass.workgroups });
    }
    if (timestamps) {
      call.#timing = {
        querySet: device.createQuerySet({ type: "timestamp", count: 2 }),
        resolve: device.createBuffer({
          size: 16,
          usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
        }),
        read: device.createBuffer({
          size: 16,
          usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
        }),
      };
    }
    return call;
  }

  /**
   * Allocates every buffer of the compiled buffer table and fills those with first contents: a
   * packed call's own schedule and sequences words where given (their sizes follow the lengths).
   */
  #allocate(inputs: AttentionInputs, packed?: PackedCallData): void {
    const { gated, buffers } = this.compiled;
    const half = this.compiled.dtype === "f16";
    const asDtype = (x: Float32Array | Float16Array) =>
      half ? (x instanceof Float16Array ? x : Float16Array.from(x)) : (
        x instanceof Float32Array ? x : Float32Array.from(x)
      );
    const tensors = {
      q: asDtype(inputs.q),
      k: asDtype(inputs.k),
      v: asDtype(inputs.v),
      gates: gated ? inputs.gates ?? this.#defaultGates() : new Float32Array(1),
      dO: this.compiled.backward ? asDtype(this.#dO(inputs)) : new Float32Array(1),
      // The columns the kernels read, so their row stride is the compiled one.
      blockTable: this.compiled.paged
        ? compactBlockTable(this.compiled.shape, this.compiled.paged.pageSize, inputs.blockTable!)
        : new Uint32Array(1),
      // A paged backward pass sums dK and dV into the pool through the table inverted.
      pageRefs: this.compiled.paged && this.compiled.backward
        ? pageReferences(this.compiled.shape, this.compiled.paged, inputs.blockTable!)
        : new Uint32Array(1),
    };
    checkBufferTable(buffers, this.device.limits.maxStorageBufferBindingSize);
    const perCall: Partial<Record<BufferName, Uint32Array>> = packed
      ? {
        schedule: packed.schedule,
        sequences: packed.sequences,
        ...(this.compiled.backward ? { gradSchedule: packed.gradSchedule } : {}),
      }
      : {};
    for (const spec of buffers) {
      const words = perCall[spec.name];
      const buffer = this.device.createBuffer({
        label: spec.name,
        size: align4(words?.byteLength ?? spec.bytes),
        usage: STORAGE,
      });
      this.#buffers.set(spec.name, buffer);
      // Written whole, as bytes: offsets and sizes of a typed array would count elements, and
      // Dawn's binding knows no Float16Array (its element size reads as 0: SIGFPE).
      const data = spec.input ? tensors[spec.input] : words ?? spec.data;
      if (data) this.device.queue.writeBuffer(buffer, 0, bytesOf(data));
    }
  }

  /** dO of a backward call: given, and shaped as O. */
  #dO(inputs: AttentionInputs): Float32Array | Float16Array {
    const shape = this.compiled.shape;
    const { nq, dv } = sequenceSizes(shape);
    const count = shape.batch * shape.headsQ * nq * dv;
    // The formula names Nq and Dv only where the shape has them, as the inputs' checks do.
    const formula = `B*Hq*${shape.kvSeqLen === undefined ? "N" : "Nq"}*` +
      (shape.valueDim === undefined ? "D" : "Dv");
    if (!inputs.dO) {
      throw new ShapeError(
        "Bad input: dO is required: the call was compiled with backward (dO is ∂loss/∂O, " +
          `${formula} = ${count} elements)`,
      );
    }
    if (inputs.dO.length !== count) {
      throw new ShapeError(
        `Bad input: dO has ${inputs.dO.length} elements, expected ${formula} = ${count}`,
      );
    }
    return inputs.dO;
  }

  /** Gates `[B, Hq, branches]` repeated from the JSON gates (or 1/branches). */
  #defaultGates(): Float32Array {
    const { shape, defaultGates } = this.compiled;
    const perPosition = this.compiled.gatesPerPosition ? shape.seqLen : 1;
    const out = new Float32Array(shape.batch * shape.headsQ * perPosition * defaultGates.length);
    for (let i = 0; i < out.length; i++) out[i] = defaultGates[i % defaultGates.length];
    return out;
  }

  /**
   * Encodes every pass into one command buffer and submits it.
   * @param repeat encode the whole call this many times back to back in that command buffer
   *   (benchmarks: a GPU left idle between short submissions drops its clocks, so timing one
   *   short call at a time measured up to 5x slower on the H100; a CUDA-event loop of launches
   *   avoids the same effect). Every repetition recomputes the same O and LSE.
   * @returns GPU milliseconds per repetition from timestamp queries, or undefined without them
   */
  submit(repeat = 1): Promise<number | undefined> {
    return this.#onDevice("submit", () => this.#submit(repeat));
  }

  async #submit(repeat: number): Promise<number | undefined> {
    const encoder = this.device.createCommandEncoder();
    const timing = this.#timing;
    const pass = encoder.beginComputePass(
      timing
        ? {
          timestampWrites: {
            querySet: timing.querySet,
            beginningOfPassWriteIndex: 0,
            endOfPassWriteIndex: 1,
          },
        }
        : {},
    );
    for (let r = 0; r < repeat; r++) {
      for (const step of this.#steps) {
        pass.setPipeline(step.pipeline);
        pass.setBindGroup(0, step.bindGroup);
        pass.dispatchWorkgroups(step.workgroups[0], step.workgroups[1]);
      }
    }
    pass.end();
    if (timing) {
      encoder.resolveQuerySet(timing.querySet, 0, 2, timing.resolve, 0);
      encoder.copyBufferToBuffer(timing.resolve, 0, timing.read, 0, 16);
    }
    this.device.queue.submit([encoder.finish()]);
    if (!timing) {
      await gpuWait(this.device, "a submitted call", this.device.queue.onSubmittedWorkDone());
      return undefined;
    }
    await gpuWait(this.device, "a timing read-back", timing.read.mapAsync(GPUMapMode.READ));
    const [begin, end] = new BigUint64Array(timing.read.getMappedRange().slice(0));
    timing.read.unmap();
    return Number(end - begin) / 1e6 / repeat;
  }

  /**
   * Copies O and LSE back to the host.
   * @returns the outputs as float32
   */
  read(): Promise<AttentionOutputs> {
    return this.#onDevice("read O and LSE", () => this.#read());
  }

  async #read(): Promise<AttentionOutputs> {
    const half = this.compiled.dtype === "f16";
    const hashed = this.compiled.hash.sets.length > 0;
    const backward = this.compiled.backward;
    const learnt = backward && this.compiled.learnable.length > 0;
    const [o, lse, hash, dq, dkv, dgates, dConstants] = await Promise.all([
      this.#readBuffer(half ? "o16" : "o"),
      this.#readBuffer("lse"),
      hashed ? this.#readBuffer("hash") : undefined,
      backward ? this.#readBuffer("dq") : undefined,
      backward ? this.#readBuffer(this.compiled.paged ? "dkvPages" : "dkv") : undefined,
      backward && this.#buffers.has("dgates") ? this.#readBuffer("dgates") : undefined,
      learnt ? this.#readBuffer("dConstants") : undefined,
    ]);
    const selectedBlocks = await this.#selectedBlocks();
    const keys = dkv ? new Float32Array(dkv) : undefined;
    // dK [B, Hkv, Nk, D], then dV; paged, the pools [pages, Hkv, pageSize, D], then dV's.
    const { shape, paged } = this.compiled;
    const { nk, d } = sequenceSizes(shape);
    const keyRows = paged ? paged.pages * paged.pageSize : shape.batch * nk;
    const dkLength = keyRows * shape.headsKV * d;
    return {
      o: half ? new Float16Array(o) : new Float32Array(o),
      lse: new Float32Array(lse),
      ...(hash ? { hashCodes: this.#hashCodes(new Uint32Array(hash)) } : {}),
      ...(selectedBlocks.length ? { selectedBlocks } : {}),
      ...(dq && keys
        ? {
          gradients: {
            dq: new Float32Array(dq),
            dk: keys.slice(0, dkLength),
            dv: keys.slice(dkLength),
            ...(dgates ? { dgates: new Float32Array(dgates) } : {}),
            ...(dConstants ? { dConstants: this.#constants(new Float32Array(dConstants)) } : {}),
          },
        }
        : {}),
    };
  }

  /** Each select branch's kept blocks, its `0xffffffff` padding read as -1. */
  async #selectedBlocks(): Promise<SelectedBlocks[]> {
    const chosen = this.compiled.kernelPlan.kernels.flatMap((k) =>
      k.kind === "selectBlocks" ? [{ branch: k.branch, blocks: k.geometry.blocks }] : []
    );
    return await Promise.all(chosen.map(async (s) => ({
      ...s,
      chosen: new Int32Array(await this.#readBuffer(`selection${s.branch}`)),
    })));
  }

  /** The learnable constants' gradients by name, from their entries in `dConstants`. */
  #constants(entries: Float32Array): Record<string, number | Float32Array> {
    return Object.fromEntries(
      this.compiled.learnable.map((c) => [
        c.name,
        c.scalar ? entries[c.offset] : entries.slice(c.offset, c.offset + c.size),
      ]),
    );
  }

  /**
   * The codes of every set, from sort order (hash_layout.ts) to `[rounds][B][Hq][Nq]` and
   * `[rounds][B][Hkv][Nk]`. A query sort is as long as a key sort, with each query's code at its
   * position: the queries' Nq positions from the query offset.
   */
  #hashCodes(words: Uint32Array): HashCodes {
    const { nq, nk: n } = sequenceSizes(this.compiled.shape);
    const from = this.compiled.queryOffset;
    const codes: HashCodes = new Map();
    for (const set of this.compiled.hash.sets) {
      const rows = set.rowsQ + set.rowsK;
      const q = new Uint32Array(set.rounds * set.rowsQ * nq);
      const k = new Uint32Array(set.rounds * set.rowsK * n);
      for (let t = 0; t < set.rounds; t++) {
        const first = set.codes + t * rows * n;
        for (let row = 0; row < set.rowsQ; row++) {
          const at = first + row * n + from;
          q.set(words.subarray(at, at + nq), (t * set.rowsQ + row) * nq);
        }
        k.set(words.subarray(first + set.rowsQ * n, first + rows * n), t * set.rowsK * n);
      }
      codes.set(set.key, { rounds: set.rounds, q, k });
    }
    return codes;
  }

  async #readBuffer(name: BufferName): Promise<ArrayBuffer> {
    const source = this.#buffers.get(name)!;
    const staging = this.device.createBuffer({
      size: source.size,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    const encoder = this.device.createCommandEncoder();
    encoder.copyBufferToBuffer(source, 0, staging, 0, source.size);
    this.device.queue.submit([encoder.finish()]);
    await gpuWait(this.device, `reading ${name} back`, staging.mapAsync(GPUMapMode.READ));
    const data = staging.getMappedRange().slice(0);
    staging.unmap();
    staging.destroy();
    return data;
  }

  /** Total bytes of the device buffers this call holds. */
  bufferBytes(): number {
    let total = 0;
    for (const b of this.#buffers.values()) total += b.size;
    return total;
  }

  /** Frees the device buffers. */
  destroy(): void {
    for (const b of this.#buffers.values()) b.destroy();
    this.#timing?.querySet.destroy();
    this.#timing?.resolve.destroy();
    this.#timing?.read.destroy();
  }
}

function align4(n: number): number {
  return Math.max(4, Math.ceil(n / 4) * 4);
}

/** A typed array's bytes, as a Uint8Array over the same memory. */
function bytesOf(x: ArrayBufferView): Uint8Array<ArrayBuffer> {
  return new Uint8Array(x.buffer as ArrayBuffer, x.byteOffset, x.byteLength);
}
