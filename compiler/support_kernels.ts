/**
 * The kernels around the attention kernels in a kernel plan: landmark pooling and the
 * hashBucket sort before them, the gated blend and the float16 cast after.
 * @module
 */
import { type AttentionShape, sequenceSizes } from "../core/shape.ts";
import { codeRows, elementwiseWorkgroups, sortCount } from "./dispatch_sizes.ts";
import type { HashLayout } from "./hash_layout.ts";
import type {
  Binding,
  BlendKernel,
  BufferName,
  CastKernel,
  HashKernel,
  KernelPlanResult,
  PoolKernel,
} from "./kernel_plan.ts";
import type { Plan } from "./plan.ts";

/** A kernel's module and entry point before the kernel plan numbers the modules. */
export const own = { module: -1, entryPoint: "main" };

/** The distinct lowRank ranks a plan's components read, with their geometry. */
export function landmarkSets(plan: Plan): KernelPlanResult["landmarks"] {
  const byRank = new Map<number, { rank: number; segment: number; count: number }>();
  for (const b of plan.branches) {
    for (const c of b.components) {
      const l = c.kLayout;
      if (l.kind === "landmarks") {
        byRank.set(l.rank, { rank: l.rank, segment: l.segment, count: l.count });
      }
    }
  }
  return [...byRank.values()].sort((a, b) => a.rank - b.rank);
}

export function poolKernel(
  shape: AttentionShape,
  l: { rank: number; segment: number; count: number },
): PoolKernel {
  const heads = shape.batch * shape.headsKV;
  // One invocation per vec4 of a landmark's K row or V row, whichever is wider.
  const { d, dv } = sequenceSizes(shape);
  return {
    kind: "pool",
    label: `pool K and V into ${l.count} landmarks (lowRank(${l.rank}))`,
    ...own,
    bindings: [read("k"), read("v"), written(`landmarkK${l.rank}`), written(`landmarkV${l.rank}`)],
    workgroups: elementwiseWorkgroups(heads * l.count * Math.max(d, dv) / 4),
    ...l,
  };
}

/**
 * The hashBucket pre-pass of one code set: codes, then a stable counting sort per head and
 * round, each over the N key positions (`o.n`).
 */
export function hashKernels(
  set: HashLayout["sets"][number],
  index: number,
  o: { shape: AttentionShape; n: number },
): HashKernel[] {
  const { shape, n } = o;
  const sorts = sortCount(set);
  const what = `hashBucket ${set.key}, ${set.rounds} round(s)`;
  const step = (
    kind: HashKernel["kind"],
    label: string,
    bindings: Binding[],
    workgroups: [number, number],
  ): HashKernel => ({ kind, label: `${what}: ${label}`, ...own, bindings, workgroups, set: index });
  return [
    step("hashCodes", "bucket codes of Q and K", [read("q"), read("k"), written("hash")], [
      Math.ceil(n / codeRows(shape.headDim / 4, set.nbits)),
      sorts,
    ]),
    step("bucketCounts", "bucket counts per chunk", [read("hash"), written("hashCounts")], [
      set.chunks,
      sorts,
    ]),
    step("bucketScan", "scan of the counts", [written("hashCounts"), written("hash")], [sorts, 1]),
    step("bucketScatter", "stable scatter into bucket order", [
      written("hash"),
      read("hashCounts"),
    ], [set.chunks, sorts]),
  ];
}

export function blendKernel(
  shape: AttentionShape,
  branches: number,
  perPosition: boolean,
): BlendKernel {
  return {
    kind: "blend",
    label: "gated blend",
    ...own,
    bindings: [read("branchO"), read("gates"), written("o")],
    workgroups: elementwiseWorkgroups(outputVec4s(shape)),
    branches,
    perPosition,
  };
}

export function castKernel(shape: AttentionShape): CastKernel {
  return {
    kind: "cast",
    label: "cast O to float16",
    ...own,
    bindings: [read("o"), written("o16")],
    workgroups: elementwiseWorkgroups(outputVec4s(shape)),
  };
}

/**
 * The vec4s of O, `[B, Hq, Nq, Dv]`, that the blend and the cast write one invocation each.
 * @param shape the call's sizes
 * @returns `B·Hq·Nq·Dv / 4`
 * @example
 * ```ts
 * import { outputVec4s } from "./support_kernels.ts";
 * outputVec4s({ batch: 1, headsQ: 2, headsKV: 1, seqLen: 3, headDim: 8, valueDim: 16 }); // 24
 * ```
 */
export function outputVec4s(shape: AttentionShape): number {
  const { nq, dv } = sequenceSizes(shape);
  return shape.batch * shape.headsQ * nq * dv / 4;
}

export const read = (buffer: BufferName): Binding => ({ buffer, writable: false });

export const written = (buffer: BufferName): Binding => ({ buffer, writable: true });
