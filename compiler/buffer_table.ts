/**
 * The buffer table: every buffer some kernel of the plan binds, its size in bytes, and where its
 * first contents come from (a caller's tensor, or words the compiler wrote). The runtime
 * allocates and fills buffers from this table alone.
 * @module
 */
import { selectBuffers } from "./select_attention.ts";
import { selectBitsBuffer } from "./select_gradients.ts";
import { DeviceError } from "../core/errors.ts";
import { type AttentionShape, type Dtype, sequenceSizes } from "../core/shape.ts";
import { type PagedKv, tableColumns } from "../core/paged_kv.ts";
import type { BufferName, KernelPlanResult } from "./kernel_plan.ts";
import { linearSlots } from "./plan_linear.ts";

/** One buffer of a compiled call. */
export interface BufferSpec {
  /** The name kernels bind it by. */
  name: BufferName;
  /** Its size in bytes. */
  bytes: number;
  /**
   * The caller's tensor it is filled from (gates: the default gates when none are given;
   * blockTable: its first `ceil(Nk / pageSize)` columns, as u32; pageRefs: the table inverted,
   * `pageReferences`).
   */
  input?: "q" | "k" | "v" | "gates" | "dO" | "blockTable" | "pageRefs";
  /** Words the compiler wrote (the schedule, the aux parameters and data). */
  data?: Uint32Array;
}

/**
 * Sizes the buffers a kernel plan binds.
 * @param planned the kernel plan and its layouts
 * @param o the shape, dtype, branches, gate layout, the aux words, and paged K/V's layout
 * @returns one entry per bound buffer, in order of first binding
 * @example
 * ```ts ignore
 * bufferTable(planned, { shape, dtype: "f32", branches: 1, gatesPerPosition: false, aux });
 * // [{ name: "q", bytes: ..., input: "q" }, { name: "k", ... }, ...]
 * ```
 */
export function bufferTable(
  planned: KernelPlanResult,
  o: {
    shape: AttentionShape;
    dtype: Dtype;
    branches: number;
    gatesPerPosition: boolean;
    aux: Uint32Array;
    paged?: PagedKv;
  },
): BufferSpec[] {
  const { shape, paged } = o;
  const { nq, nk, d, dv } = sequenceSizes(shape);
  const rows = shape.batch * shape.headsQ * nq;
  const element = o.dtype === "f16" ? 2 : 4;
  // Paged K and V are their pools: every page of every key/value head.
  const keyRows = paged
    ? paged.pages * shape.headsKV * paged.pageSize
    : shape.batch * shape.headsKV * nk;
  const keys = keyRows * d * element;
  // The backward pass's dK and dV rows, per position of each sequence, paged or not.
  const gradientRows = shape.batch * shape.headsKV * nk;
  const gates = rows / nq * (o.gatesPerPosition ? nq : 1) * o.branches * 4;
  const sizes: Partial<Record<BufferName, Omit<BufferSpec, "name">>> = {
    q: { bytes: rows * d * element, input: "q" },
    k: { bytes: keys, input: "k" },
    v: { bytes: keyRows * dv * element, input: "v" },
    schedule: { bytes: planned.schedule.byteLength, data: planned.schedule },
    aux: { bytes: o.aux.byteLength, data: o.aux },
    o: { bytes: rows * dv * 4 },
    lse: { bytes: rows * o.branches * 4 },
    branchO: { bytes: rows * dv * 4 * o.branches },
    gates: { bytes: gates, input: "gates" },
    o16: { bytes: rows * dv * 2 },
    // hashBucket codes, bucket order and starts; the counting sort's scratch counts.
    hash: { bytes: planned.hash.words * 4 },
    hashCounts: { bytes: planned.hash.countWords * 4 },
    // Split-K partials (key_split.ts): one O row and one LSE per chunk, head and row.
    splitO: { bytes: planned.splitRows * dv * 4 },
    splitLse: { bytes: planned.splitRows * 4 },
    // The backward pass (plan_gradients.ts): dO in, float32 gradients out.
    dO: { bytes: rows * dv * element, input: "dO" },
    gradStats: { bytes: rows * o.branches * 4 * 4 },
    gradSchedule: { bytes: planned.gradSchedule.byteLength, data: planned.gradSchedule },
    dq: { bytes: rows * d * 4 },
    dkv: { bytes: gradientRows * (d + dv) * 4 }, // float32 dK [B, Hkv, Nk, D], then dV (Dv)
    // Paged K and V: dK and dV in the pool's shape, and the inverted block table they are
    // summed by (pageReferences: B * columns refs, then pages + 1 starts).
    dkvPages: { bytes: keyRows * (d + dv) * 4 },
    pageRefs: {
      bytes: paged ? (shape.batch * tableColumns(shape, paged.pageSize) + paged.pages + 1) * 4 : 0,
      input: "pageRefs",
    },
    dgates: { bytes: gates },
    // Learnable constants: each query row's share of their gradients, then the sums.
    dConstRows: { bytes: rows * planned.learned.length * 4 },
    dConstants: { bytes: planned.learned.length * 4 },
    learned: { bytes: planned.learned.byteLength, data: new Uint32Array(planned.learned.buffer) },
    blockTable: {
      bytes: paged ? shape.batch * tableColumns(shape, paged.pageSize) * 4 : 0,
      input: "blockTable",
    },
    // Packed sequences: each one's first query and key row (a call's lengths replace them).
    sequences: { bytes: planned.sequences.byteLength, data: planned.sequences },
  };
  // lowRank landmarks: K [B, Hkv, count, D] and V [B, Hkv, count, Dv] per rank, written by the
  // pooling pre-pass.
  for (const l of planned.landmarks) {
    const bytes = shape.batch * shape.headsKV * l.count * d * element;
    sizes[`landmarkK${l.rank}`] = { bytes };
    sizes[`landmarkV${l.rank}`] = { bytes: bytes / d * dv };
    // float32 dK, then dV
    sizes[`dLandmark${l.rank}`] = { bytes: shape.batch * shape.headsKV * l.count * (d + dv) * 4 };
  }
  // Linear branches: favor's projection, φ of Q and K rows, and per key/value head the chunks'
  // and scan segments' sums plus the total (forward and backward), and two numbers per query row.
  for (const l of planned.linear) {
    const state = shape.batch * shape.headsKV * linearSlots(l.chunks) * l.features * (dv + 1) * 4;
    sizes[`linearW${l.branch}`] = {
      bytes: l.projection.byteLength,
      data: new Uint32Array(l.projection.buffer),
    };
    sizes[`linearPhi${l.branch}`] = {
      bytes: (rows + shape.batch * shape.headsKV * nk) * l.features * 4,
    };
    sizes[`linearState${l.branch}`] = { bytes: state };
    sizes[`linearGradState${l.branch}`] = { bytes: state };
    sizes[`linearRows${l.branch}`] = { bytes: rows * 2 * 4 };
  }
  for (const k of planned.kernels.kernels) {
    if (k.kind === "selectBlocks") {
      for (const [name, bytes] of selectBuffers(k)) sizes[name] = { bytes };
    }
    if (k.kind === "selectBits") {
      const [name, bytes] = selectBitsBuffer(k);
      sizes[name] = { bytes };
    }
  }
  const bound = [
    ...new Set(planned.kernels.kernels.flatMap((k) => k.bindings.map((b) => b.buffer))),
  ];
  return bound.map((name) => ({ name, ...sizes[name]! }));
}

/**
 * Refuses a buffer table that a device cannot bind.
 * @param buffers the table
 * @param maxBindingBytes the device's maxStorageBufferBindingSize
 * @throws {DeviceError} naming the first buffer over it
 * @example
 * ```ts
 * import { checkBufferTable } from "./buffer_table.ts";
 * checkBufferTable([{ name: "q", bytes: 64 }], 1024); // fine
 * ```
 */
export function checkBufferTable(buffers: readonly BufferSpec[], maxBindingBytes: number): void {
  for (const b of buffers) {
    if (b.bytes > maxBindingBytes) {
      throw new DeviceError(
        `Tensor ${b.name} needs ${b.bytes} bytes, over this device's ` +
          `maxStorageBufferBindingSize (${maxBindingBytes}); use fewer heads or batches per call`,
      );
    }
  }
}
