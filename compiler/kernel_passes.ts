/**
 * The attention passes of a plan: per branch a clear where needed, one kernel per component
 * group (run_fusion.ts) and split-K's combine passes (`branchPasses`); then each kernel's WGSL,
 * written in pass order, alone or in a module shared with kernels of the same skeleton
 * (`lowerKernels`, kernel_groups.ts).
 * @module
 */
import { PlanError } from "../core/errors.ts";
import type { AuxData } from "./aux_data.ts";
import type { Binding, BufferName, Dtype, Pass } from "./compile.ts";
import type { EdgePairForm } from "./edge_pairs.ts";
import type { HashLayout } from "./hash_layout.ts";
import { kernelGroups } from "./kernel_groups.ts";
import { layoutCount } from "./layout.ts";
import type { Component, Plan } from "./plan.ts";
import type { packSchedules } from "./schedule_buffer.ts";
import type { AttentionShape } from "../core/shape.ts";
import type { KernelShape } from "./tiles.ts";
import {
  componentKernel,
  type ComponentKernelOptions,
  type SharedKernel,
  sharedKernel,
} from "./wgsl/attention_wgsl.ts";
import { clearKernel } from "./wgsl/elementwise_wgsl.ts";
import { splitCombineKernel } from "./wgsl/split_combine_wgsl.ts";
import { readsHash } from "./component_reads.ts";
import { elementwiseWorkgroups, MAX_WORKGROUPS_X } from "./dispatch_sizes.ts";

/**
 * One branch's passes: a clear where its first component does not write every row, then per
 * group of components (run_fusion.ts) a kernel pass, with a combine pass after a split-K one.
 * Kernels stay pending (`PendingPass`) until `lowerKernels` writes their WGSL.
 */
export function branchPasses(o: {
  plan: Plan;
  b: number;
  shape: AttentionShape;
  scale: number;
  aux: AuxData;
  packed: ReturnType<typeof packSchedules>;
  gated: boolean;
  unroll: boolean;
  prefetch: boolean;
  globalQuery: boolean;
  /** Per component: its kernel walks edge pairs (edge_pairs.ts). */
  edgePairs: (EdgePairForm | undefined)[];
  kernel: KernelShape;
  dtype: Dtype;
  directF16: boolean;
  hash: HashLayout;
  /** Key chunks per component (0: not a split component). */
  splits: number[];
  /** The passes' groups of component indices (run_fusion.ts). */
  groups: number[][];
}): PendingPass[] {
  const { shape, b } = o;
  const heads = shape.batch * shape.headsQ;
  const rows = heads * shape.seqLen;
  const d4 = shape.headDim / 4;
  const oBase = b * rows * d4, lseBase = b * rows;
  const oName: BufferName = o.directF16 ? "o16" : o.gated ? "branchO" : "o";
  const components = o.plan.branches[b].components;
  // Every row is written by a component whose query layout covers all N positions; otherwise clear.
  const firstCoversAll = components.length > 0 && components[0].qLayout.kind !== "gather";
  const passes: PendingPass[] = [];
  if (!firstCoversAll) {
    const workgroups = elementwiseWorkgroups(rows);
    passes.push({
      label: `branch ${b}: clear`,
      wgsl: clearKernel({ rows, d4, oBase, lseBase, groupsX: workgroups[0] }),
      bindings: [written(oName), written("lse")],
      workgroups,
    });
  }
  o.groups.forEach((group) => {
    const j = group[0], component = components[j];
    const label = group.length > 1
      ? `branch ${b} components ${group.join("+")}`
      : `branch ${b} component ${j}`;
    const chunks = o.splits[j];
    const qTiles = Math.ceil(layoutCount(component.qLayout, shape.seqLen) / component.mask.tileQ);
    const split = chunks > 0 ? { chunks, rows: qTiles * component.mask.tileQ } : undefined;
    const splitNote = split ? `, key tiles in ${chunks} chunks` : "";
    const workgroupsX = qTiles * Math.max(chunks, 1);
    if (workgroupsX > MAX_WORKGROUPS_X) {
      const need = split
        ? `${qTiles} query tiles x ${chunks} key chunks = ${workgroupsX} workgroups`
        : `${qTiles} query tiles (one workgroup each)`;
      const fix = split ? "ask for fewer keySplits" : "use a shorter sequence or larger tiles";
      throw new PlanError(
        `Cannot compile: ${label} needs ${need}, over WebGPU's ${MAX_WORKGROUPS_X} ` +
          `workgroups per dimension; ${fix}`,
      );
    }
    passes.push({
      label: `${label}${splitNote}`,
      kernel: {
        component,
        ...(group.length > 1 ? { fused: group.slice(1).map((i) => components[i]) } : {}),
        shape,
        scale: o.scale,
        aux: o.aux,
        scheduleSlot: o.packed.slots[b][j],
        oBase,
        lseBase,
        merge: j > 0 || !firstCoversAll,
        unroll: o.unroll,
        prefetch: o.prefetch,
        globalQuery: o.globalQuery,
        edgePairs: o.edgePairs[j],
        split,
        dtype: o.dtype,
        outputF16: o.directF16,
        score: o.plan.branches[b].score,
        uniform: o.plan.branches[b].uniform,
        hash: o.hash,
        threads: o.kernel.threads,
        rowsPerThread: o.kernel.rowsPerThread,
        label: `${o.plan.branches[b].label}, ${label}${splitNote}`,
      },
      bindings: [
        ...keyBuffers(component).map(read),
        written(split ? "splitO" : oName),
        written(split ? "splitLse" : "lse"),
        ...(readsHash(component) ? [read("hash")] : []),
      ],
      workgroups: [workgroupsX, heads],
    });
    if (!split) return;
    const workgroups = elementwiseWorkgroups(heads * split.rows);
    passes.push({
      label: `${label}: combine ${chunks} chunks`,
      wgsl: () =>
        splitCombineKernel({
          qLayout: component.qLayout,
          n: shape.seqLen,
          d4,
          heads,
          chunks,
          rows: split.rows,
          oBase,
          lseBase,
          params: o.aux.paramBlock(),
          label: `${o.plan.branches[b].label}, ${label}`,
        }),
      bindings: [read("splitO"), read("splitLse"), read("aux"), written(oName), written("lse")],
      workgroups,
    });
  });
  return passes;
}

/**
 * A pass whose WGSL is written later, in pass order: a component kernel (its options) or a
 * function of the module text. Order matters: each kernel takes its aux parameter block when
 * its text is written.
 */
type PendingPass =
  | Omit<Pass, "wgsl"> & { kernel: ComponentKernelOptions }
  | Omit<Pass, "wgsl"> & { wgsl: string | (() => string) };

/**
 * Writes the passes' WGSL in order. Component kernels that `kernelGroups` puts together share
 * one module, written at its first member, each member's pass with its own entry point.
 */
export function lowerKernels(pending: PendingPass[]): Pass[] {
  const kernels = pending.flatMap((p) => "kernel" in p ? [p.kernel] : []);
  const groupOf = new Map<ComponentKernelOptions, ComponentKernelOptions[]>();
  for (const indices of kernelGroups(kernels)) {
    const group = indices.map((i) => kernels[i]);
    for (const kernel of group) groupOf.set(kernel, group);
  }
  const shared = new Map<ComponentKernelOptions[], SharedKernel>();
  return pending.map((p) => {
    if (!("kernel" in p)) {
      const { wgsl, ...rest } = p;
      return { ...rest, wgsl: typeof wgsl === "string" ? wgsl : wgsl() };
    }
    const { kernel, ...rest } = p;
    const group = groupOf.get(kernel)!;
    if (group.length === 1 && !kernel.fused) return { ...rest, wgsl: componentKernel(kernel) };
    let module = shared.get(group);
    if (!module) shared.set(group, module = sharedKernel(group));
    return { ...rest, wgsl: module.wgsl, entryPoint: module.entryPoints[group.indexOf(kernel)] };
  });
}

/** What a component's kernel binds before O and LSE: landmark components read pooled K and V. */
function keyBuffers(c: Component): BufferName[] {
  const l = c.kLayout;
  return l.kind === "landmarks"
    ? ["q", `landmarkK${l.rank}`, `landmarkV${l.rank}`, "schedule", "aux"]
    : ["q", "k", "v", "schedule", "aux"];
}

export const read = (buffer: BufferName): Binding => ({ buffer, writable: false });

export const written = (buffer: BufferName): Binding => ({ buffer, writable: true });
