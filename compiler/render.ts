/**
 * The render step: the kernel plan's modules as WGSL text. Each module is written when its
 * first kernel comes in dispatch order, since each kernel takes its block of the aux buffer's
 * parameters as its text is written; the aux words come out with the text. The only file of the
 * compiler that imports the WGSL writers (compiler/wgsl/).
 * @module
 */
import { type AttentionShape, sequenceSizes } from "../core/shape.ts";
import { AuxData } from "./aux_data.ts";
import type { CheckedCall } from "./checked_call.ts";
import type { AttentionKernel, Kernel, KernelPlanResult, SelectKernel } from "./kernel_plan.ts";
import type { Plan } from "./plan.ts";
import {
  componentKernel,
  type ComponentKernelOptions,
  sharedKernel,
} from "./wgsl/attention_wgsl.ts";
import { blendKernel, castKernel, clearKernel } from "./wgsl/elementwise_wgsl.ts";
import {
  bucketHistogramKernel,
  bucketScanKernel,
  bucketScatterKernel,
  hashCodesKernel,
} from "./wgsl/hash_sort_wgsl.ts";
import { poolingKernel } from "./wgsl/pooling_wgsl.ts";
import { blockMeansKernel, selectBlocksKernel } from "./wgsl/select_wgsl.ts";
import { selectPickKernel } from "./wgsl/select_pick_wgsl.ts";
import { selectAttentionKernel } from "./wgsl/select_attention_wgsl.ts";
import { SELECT_PICK_WORKGROUP } from "./select_attention.ts";
import { selectLanesKernel } from "./wgsl/select_lanes_wgsl.ts";
import type { PagedRows } from "./wgsl/kv_row_wgsl.ts";
import { splitCombineKernel } from "./wgsl/split_combine_wgsl.ts";
import { decodeKernel } from "./wgsl/decode_wgsl.ts";
import { decodeLanesKernel } from "./wgsl/decode_lanes_wgsl.ts";
import { decodeCombineKernel } from "./wgsl/decode_combine_wgsl.ts";
import { gradientKernel } from "./wgsl/gradient_wgsl.ts";
import { linearKernel } from "./wgsl/linear_wgsl.ts";
import { learnableConstants, learnableOffsets } from "../dsl/expression_check.ts";
import { branchFirstKernel, branchLearns } from "./plan_gradients.ts";
import {
  selectBitsKernel,
  selectGradKeyKernel,
  selectGradQueryKernel,
} from "./wgsl/select_gradient_wgsl.ts";
import { outputVec4s } from "./support_kernels.ts";

export { pipelineKey } from "./wgsl/shader_module.ts";

/** The kernel plan's WGSL: one text per module, and the aux buffer's words. */
export interface RenderedKernels {
  modules: string[];
  aux: Uint32Array;
}

/**
 * Writes every module of a kernel plan.
 * @param planned the kernel plan and what it was planned from
 * @param plan the Plan its attention kernels walk
 * @param call the checked call (shape, dtype, scale)
 * @returns the modules' WGSL and the aux words
 * @example
 * ```ts
 * import { checkCall } from "./checked_call.ts";
 * import { planPattern } from "./plan.ts";
 * import { kernelShape } from "./tiles.ts";
 * import { planKernels } from "./plan_kernels.ts";
 * import { renderKernels } from "./render.ts";
 * const call = checkCall({ kind: "causal" }, {
 *   shape: { batch: 1, headsQ: 1, headsKV: 1, seqLen: 64, headDim: 8 },
 * });
 * const tiles = kernelShape(16, 16, 2, 2)!;
 * const plan = planPattern(call.pattern, 64, tiles);
 * renderKernels(planKernels(plan, tiles, call), plan, call).modules.length; // 1
 * ```
 */
export function renderKernels(
  planned: KernelPlanResult,
  plan: Plan,
  call: CheckedCall,
): RenderedKernels {
  const { kernels, modules } = planned.kernels;
  const aux = new AuxData(plan.n, plan.random, call.constantParams);
  const texts: string[] = new Array(modules.length);
  for (const k of kernels) {
    if (texts[k.module] !== undefined) continue;
    const module = modules[k.module];
    if (k.kind !== "attention") {
      texts[k.module] = renderOther(k, { planned, plan, call, aux });
      continue;
    }
    const options = module.kernels.map((i) =>
      attentionOptions(kernels[i] as AttentionKernel, { planned, plan, call, aux })
    );
    texts[k.module] = module.shared
      ? sharedKernel(options, module.edgePairs).wgsl
      : componentKernel(options[0]);
  }
  return { modules: texts, aux: aux.finish() };
}

interface RenderContext {
  planned: KernelPlanResult;
  plan: Plan;
  call: CheckedCall;
  aux: AuxData;
}

/** The WGSL writer's options for one attention kernel of the plan. */
function attentionOptions(k: AttentionKernel, o: RenderContext): ComponentKernelOptions {
  const branch = o.plan.branches[k.branch];
  const [first, ...fused] = k.members.map((j) => branch.components[j]);
  const { kernel } = o.planned.kernels;
  return {
    component: first,
    ...(fused.length ? { fused } : {}),
    shape: o.call.shape,
    n: o.plan.n,
    ...(o.plan.queries ? { queries: o.plan.queries } : {}),
    ...(k.queryTiles ? { queryTiles: k.queryTiles } : {}),
    ...(k.packed ? { packed: true } : {}),
    scale: o.call.scale,
    aux: o.aux,
    scheduleSlot: k.scheduleSlot,
    oBase: k.oBase,
    lseBase: k.lseBase,
    merge: k.output === "merge",
    unroll: o.planned.kernels.unroll,
    prefetch: k.keyLoop === "prefetched",
    globalQuery: k.querySource === "memory",
    edgePairs: k.edgePairs === "none" ? undefined : k.edgePairs,
    split: k.split,
    dtype: o.planned.kernels.dtype,
    outputF16: k.output === "o16",
    score: branch.score,
    ...(branchLearns(branch)
      ? { learned: learnableOffsets(learnableConstants(o.call.pattern)) }
      : {}),
    uniform: branch.uniform,
    hash: o.planned.hash,
    threads: kernel.threads,
    rowsPerThread: kernel.rowsPerThread,
    ...(kernel.matrix
      ? {
        matrix: kernel.matrix,
        matrixMajorness: o.call.limits?.matrixMajorness,
        queryParts: kernel.queryParts,
        bandSplit: kernel.bandSplit,
      }
      : {}),
    ...pagedRows(k, o),
    label: `${branch.label}, ${k.label}`,
  };
}

/**
 * A kernel's paged K and V reads: the page size, the table's columns and where the kernel plan
 * bound the table; nothing for a kernel that does not bind it (contiguous K and V, or pooled
 * landmarks).
 */
function pagedRows(k: Kernel, o: RenderContext): { paged?: PagedRows } {
  const paged = o.planned.kernels.paged;
  const binding = k.bindings.findIndex((b) => b.buffer === "blockTable");
  if (!paged || binding < 0) return {};
  return { paged: { ...paged, headsKV: o.call.shape.headsKV, binding } };
}

/** The WGSL of a kernel other than attention: each kind has its writer. */
function renderOther(k: Exclude<Kernel, AttentionKernel>, o: RenderContext): string {
  const shape: AttentionShape = o.call.shape;
  const d4 = shape.headDim / 4, dv4 = sequenceSizes(shape).dv / 4;
  const dtype = o.planned.kernels.dtype;
  // A hashBucket pre-pass's code set, over the N key positions (and the queries among them).
  const sort = (set: number) => ({
    set: o.planned.hash.sets[set],
    n: o.plan.n,
    ...(o.plan.queries ? { queries: o.plan.queries } : {}),
  });
  switch (k.kind) {
    case "clear":
      return clearKernel({
        rows: k.rows,
        d4: dv4,
        oBase: k.oBase,
        lseBase: k.lseBase,
        groupsX: k.workgroups[0],
      });
    case "combine": {
      const branch = o.plan.branches[k.branch];
      const component = branch.components[k.component];
      const label = `branch ${k.branch} component ${k.component}`;
      return splitCombineKernel({
        qLayout: component.qLayout,
        n: o.plan.n,
        ...(o.plan.queries ? { queries: o.plan.queries } : {}),
        d4: dv4,
        heads: shape.batch * shape.headsQ,
        chunks: k.chunks,
        rows: k.rows,
        oBase: k.oBase,
        lseBase: k.lseBase,
        params: o.aux.paramBlock(),
        label: `${branch.label}, ${label}`,
      });
    }
    case "decode": {
      const branch = o.plan.branches[k.branch];
      if (k.lanes) {
        return decodeLanesKernel({
          component: branch.components[k.component],
          geometry: k.geometry,
          shape,
          n: o.plan.n,
          queries: o.plan.queries!,
          dtype,
          scale: o.call.scale,
          stepTiles: k.lanes.stepTiles,
          lanes: k.lanes.lanes,
          keys: k.lanes.keys,
          wide: k.lanes.wide,
          prefetch: k.lanes.prefetch,
          subgroupSize: k.lanes.subgroupSize,
          subgroupDirective: k.lanes.directive,
          scheduleSlot: k.scheduleSlot,
          params: o.aux.paramBlock(),
          ...pagedRows(k, o),
          label: `${branch.label}, branch ${k.branch} component ${k.component}`,
        });
      }
      return decodeKernel({
        component: branch.components[k.component],
        geometry: k.geometry,
        shape,
        n: o.plan.n,
        queries: o.plan.queries!,
        dtype,
        scale: o.call.scale,
        stepKeys: k.stepKeys,
        stageKeys: k.stageKeys,
        unroll: o.planned.kernels.unroll,
        scheduleSlot: k.scheduleSlot,
        params: o.aux.paramBlock(),
        ...pagedRows(k, o),
        label: `${branch.label}, branch ${k.branch} component ${k.component}`,
      });
    }
    case "decodeCombine":
      return decodeCombineKernel({
        queries: o.plan.queries!,
        dv4,
        heads: shape.batch * shape.headsQ,
        chunks: k.chunks,
        slotRows: k.slotRows,
        output: k.output,
        oBase: k.oBase,
        lseBase: k.lseBase,
        params: o.aux.paramBlock(),
        label: `${o.plan.branches[k.branch].label}, branch ${k.branch} component ${k.component}`,
      });
    case "pool":
      return poolingKernel({
        heads: shape.batch * shape.headsKV,
        n: o.plan.n,
        d4,
        dv4,
        segment: k.segment,
        count: k.count,
        dtype,
        groupsX: k.workgroups[0],
        ...pagedRows(k, o),
      });
    case "hashCodes":
      return hashCodesKernel({ ...sort(k.set), d4, dtype, ...pagedRows(k, o) });
    case "bucketCounts":
      return bucketHistogramKernel(sort(k.set));
    case "bucketScan":
      return bucketScanKernel(sort(k.set));
    case "bucketScatter":
      return bucketScatterKernel(sort(k.set));
    case "selectMeans":
      return blockMeansKernel(k.geometry, k.workgroups[0]);
    case "selectBlocks":
    case "selectPick":
      return renderChoiceKernel(k, o.call.scale);
    case "selectAttention":
      if (k.lanes) {
        return selectLanesKernel(k.geometry, {
          scale: o.call.scale,
          groupsX: k.workgroups[0],
          oBase: k.oBase,
          lseBase: k.lseBase,
          lanes: k.lanes,
        });
      }
      return selectAttentionKernel(k.geometry, {
        scale: o.call.scale,
        tileK: k.tileK,
        groupsX: k.workgroups[0],
        oBase: k.oBase,
        lseBase: k.lseBase,
      });
    case "selectBits":
      return selectBitsKernel(k.geometry, k.workgroups[0]);
    case "selectGradQuery":
    case "selectGradKey": {
      const options = {
        scale: o.call.scale,
        tileK: k.tileK,
        rows: k.rows,
        groupsX: k.workgroups[0],
        branch: k.branch,
        queryRows: shape.batch * shape.headsQ * shape.seqLen,
      };
      return k.kind === "selectGradQuery"
        ? selectGradQueryKernel(k.geometry, options)
        : selectGradKeyKernel(k.geometry, options);
    }
    case "blend":
      return blendKernel({
        shape,
        branches: k.branches,
        perPosition: k.perPosition,
        groupsX: k.workgroups[0],
      });
    case "cast":
      return castKernel({
        count: outputVec4s(shape),
        groupsX: k.workgroups[0],
      });
    case "linear":
      return linearKernel({
        kernel: k,
        shape,
        dtype,
        scale: o.call.scale,
        queryOffset: o.call.queryOffset,
        unroll: o.planned.kernels.unroll,
        ...(o.call.pattern.kind === "gated"
          ? {
            gates: { branches: o.plan.branches.length, perPosition: o.call.gatesPerPosition },
          }
          : {}),
        label: o.plan.branches[k.branch].label,
      });
    case "gradClear":
    case "gradStats":
    case "gradQuery":
    case "gradKey":
    case "gradUnpool":
    case "gradGates":
    case "gradConstants":
    case "gradPages": {
      // The branch's normalised O: where its first kernel writes it (vec4 offset).
      const first = branchFirstKernel(o.planned.kernels.kernels, k.branch);
      const gated = o.call.pattern.kind === "gated";
      return gradientKernel({
        kernel: k,
        shape,
        ...(o.plan.queries ? { queries: o.plan.queries } : {}),
        dtype,
        scale: o.call.scale,
        branches: o.plan.branches,
        ...(gated ? { gates: { perPosition: o.call.gatesPerPosition } } : {}),
        oOffset: (first?.oBase ?? 0) * 4,
        tileQ: o.plan.tiles.tileQ,
        tileK: o.plan.tiles.tileK,
        params: o.aux.paramBlock(),
        hash: o.planned.hash,
        learnable: learnableConstants(o.call.pattern),
        ...(o.plan.packed ? { packed: true } : {}),
        ...pagedRows(k, o),
        ...(k.kind === "gradPages" ? { pool: o.planned.kernels.paged } : {}),
      });
    }
  }
}

/**
 * The WGSL of a select branch's choice kernel (selectBlocks or selectPick), which needs only the
 * kernel and the softmax scale: compiler/select_forms.ts renders other forms with it.
 * @param k the kernel
 * @param scale the call's softmax scale
 * @returns the module text
 * @throws {Error} for another kind, or a selectPick whose pick is not subgroup lanes (a bug)
 * @example
 * ```ts ignore
 * renderChoiceKernel(kernel, 0.125);
 * ```
 */
export function renderChoiceKernel(k: SelectKernel, scale: number): string {
  if (k.kind === "selectBlocks") {
    return selectBlocksKernel(k.geometry, { scale, groupsX: k.workgroups[0], ...k.choice });
  }
  if (k.kind !== "selectPick" || k.choice.pick.kind !== "lanes") {
    throw new Error(`Weft internal error: ${k.kind} is not a choice kernel picking by lanes`);
  }
  return selectPickKernel(k.geometry, {
    groupsX: k.workgroups[0],
    invocations: SELECT_PICK_WORKGROUP,
    pick: k.choice.pick,
  });
}
