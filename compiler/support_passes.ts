/**
 * The passes around the attention kernels: landmark pooling and the hashBucket sort before them,
 * the gated blend and the float16 cast after.
 * @module
 */
import type { Plan } from "./plan.ts";
import type { AttentionShape } from "../core/shape.ts";
import { poolingKernel } from "./wgsl/pooling_wgsl.ts";
import type { HashLayout } from "./hash_layout.ts";
import {
  bucketHistogramKernel,
  bucketScanKernel,
  bucketScatterKernel,
  hashCodesKernel,
} from "./wgsl/hash_sort_wgsl.ts";
import { blendKernel, castKernel } from "./wgsl/elementwise_wgsl.ts";
import { read, written } from "./kernel_passes.ts";
import type { CompiledAttention, Dtype, Pass } from "./compile.ts";
import { codeRows, elementwiseWorkgroups, sortCount } from "./dispatch_sizes.ts";

/** The distinct lowRank ranks a plan's components read, with their geometry. */
export function landmarkSets(plan: Plan): CompiledAttention["landmarks"] {
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

export function poolingPass(
  shape: AttentionShape,
  dtype: Dtype,
  l: { rank: number; segment: number; count: number },
): Pass {
  const heads = shape.batch * shape.headsKV, d4 = shape.headDim / 4;
  const workgroups = elementwiseWorkgroups(heads * l.count * d4);
  return {
    prePass: true,
    label: `pool K and V into ${l.count} landmarks (lowRank(${l.rank}))`,
    wgsl: poolingKernel({ heads, n: shape.seqLen, d4, ...l, dtype, groupsX: workgroups[0] }),
    bindings: [read("k"), read("v"), written(`landmarkK${l.rank}`), written(`landmarkV${l.rank}`)],
    workgroups,
  };
}

/** The hashBucket pre-pass of one code set: codes, then a stable counting sort per head and round. */
export function hashPasses(
  set: HashLayout["sets"][number],
  shape: AttentionShape,
  dtype: Dtype,
): Pass[] {
  const n = shape.seqLen, sorts = sortCount(set);
  const what = `hashBucket ${set.key}, ${set.rounds} round(s)`;
  const passes: Pass[] = [
    {
      label: `${what}: bucket codes of Q and K`,
      wgsl: hashCodesKernel({ set, n, d4: shape.headDim / 4, dtype }),
      bindings: [read("q"), read("k"), written("hash")],
      workgroups: [Math.ceil(n / codeRows(shape.headDim / 4, set.nbits)), sorts],
    },
    {
      label: `${what}: bucket counts per chunk`,
      wgsl: bucketHistogramKernel({ set, n }),
      bindings: [read("hash"), written("hashCounts")],
      workgroups: [set.chunks, sorts],
    },
    {
      label: `${what}: scan of the counts`,
      wgsl: bucketScanKernel({ set, n }),
      bindings: [written("hashCounts"), written("hash")],
      workgroups: [sorts, 1],
    },
    {
      label: `${what}: stable scatter into bucket order`,
      wgsl: bucketScatterKernel({ set, n }),
      bindings: [written("hash"), read("hashCounts")],
      workgroups: [set.chunks, sorts],
    },
  ];
  return passes.map((p) => ({ prePass: true, ...p }));
}

export function castPass(shape: AttentionShape): Pass {
  const count = shape.batch * shape.headsQ * shape.seqLen * shape.headDim / 4;
  const workgroups = elementwiseWorkgroups(count);
  return {
    label: "cast O to float16",
    wgsl: castKernel({ count, groupsX: workgroups[0] }),
    bindings: [read("o"), written("o16")],
    workgroups,
  };
}

export function blendPass(shape: AttentionShape, branches: number, perPosition: boolean): Pass {
  const workgroups = elementwiseWorkgroups(
    shape.batch * shape.headsQ * shape.seqLen * shape.headDim / 4,
  );
  return {
    label: "gated blend",
    wgsl: blendKernel({ shape, branches, perPosition, groupsX: workgroups[0] }),
    bindings: [read("branchO"), read("gates"), written("o")],
    workgroups,
  };
}
