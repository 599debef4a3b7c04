/**
 * The kernels around the attention kernels in a kernel plan: landmark pooling and the
 * hashBucket sort before them, the gated blend and the float16 cast after.
 * @module
 */
import type { AttentionShape } from "../core/shape.ts";
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
  return {
    kind: "pool",
    label: `pool K and V into ${l.count} landmarks (lowRank(${l.rank}))`,
    ...own,
    bindings: [read("k"), read("v"), written(`landmarkK${l.rank}`), written(`landmarkV${l.rank}`)],
    workgroups: elementwiseWorkgroups(heads * l.count * shape.headDim / 4),
    ...l,
  };
}

/** The hashBucket pre-pass of one code set: codes, then a stable counting sort per head and round. */
export function hashKernels(
  set: HashLayout["sets"][number],
  index: number,
  shape: AttentionShape,
): HashKernel[] {
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
      Math.ceil(shape.seqLen / codeRows(shape.headDim / 4, set.nbits)),
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
    workgroups: elementwiseWorkgroups(
      shape.batch * shape.headsQ * shape.seqLen * shape.headDim / 4,
    ),
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
    workgroups: elementwiseWorkgroups(
      shape.batch * shape.headsQ * shape.seqLen * shape.headDim / 4,
    ),
  };
}

export const read = (buffer: BufferName): Binding => ({ buffer, writable: false });

export const written = (buffer: BufferName): Binding => ({ buffer, writable: true });
