/**
 * Lowers a Plan to its kernel plan (kernel_plan.ts): per branch a clear where needed, one
 * attention kernel per group of components (run_fusion.ts) with a combine after a split one,
 * the pre-passes before and the blend and cast after; then the modules that share text.
 * @module
 */
import { PlanError } from "../core/errors.ts";
import { type AttentionShape, type Dtype, sequenceSizes } from "../core/shape.ts";
import { tableColumns } from "../core/paged_kv.ts";
import type { CheckedCall } from "./checked_call.ts";
import { readsHash } from "./component_reads.ts";
import {
  ELEMENTWISE_WORKGROUP,
  elementwiseWorkgroups,
  MAX_WORKGROUPS_X,
} from "./dispatch_sizes.ts";
import {
  callDecodes,
  componentDecodes,
  DECODE_DEFAULT_WORKGROUP_BYTES as DEFAULT_WORKGROUP_BYTES,
  DECODE_LANE_ROWS,
  type DecodeGeometry,
  decodeGeometry,
  type DecodeLanes,
  decodeLanes,
  type DecodeSteps,
  decodeSteps,
} from "./decode.ts";
import { type EdgePairForm, edgePairRuns, walksEdgePairs } from "./edge_pairs.ts";
import { hashLayout } from "./hash_layout.ts";
import { kernelGroups } from "./kernel_groups.ts";
import {
  branchNeedsClear,
  edgePairForm,
  edgePairsFit,
  fusionKey,
  keyChunks,
  moduleKey,
  modulePairForm,
  pairsPay,
  queryFromMemoryPays,
  writesF16Directly,
} from "./kernel_rules.ts";
import { layoutCount } from "./layout.ts";
import { type QueryRange, queryTiles } from "./query_tiles.ts";
import type { Branch, Component, Plan } from "./plan.ts";
import { fusionGroups } from "./run_fusion.ts";
import {
  blendKernel,
  castKernel,
  hashKernels,
  landmarkSets,
  own,
  poolKernel,
  read,
  written,
} from "./support_kernels.ts";
import { packSchedules } from "./schedule_buffer.ts";
import { sequenceWords } from "./packed_call.ts";
import { wholeSequence } from "../core/packed_sequences.ts";
import { type KernelShape, prefetches, type SubgroupLimits } from "./tiles.ts";
import { branchLearns, planGradients } from "./plan_gradients.ts";
import { linearKernels, linearSets } from "./plan_linear.ts";
import { learnableConstants } from "../dsl/expression_check.ts";
import { selectKernels } from "./select_attention.ts";

import type {
  AttentionKernel,
  BufferName,
  DecodeCombineKernel,
  Kernel,
  KernelPlanResult,
  ModuleEntry,
} from "./kernel_plan.ts";

/**
 * Lowers a Plan to its kernel plan.
 * @param plan the plan
 * @param tiles the kernel shape every attention kernel uses
 * @param call the checked call (shape, dtype, options)
 * @returns the kernel plan, the schedule's words and what the buffer table needs
 * @throws {PlanError} where a kernel would need more workgroups than WebGPU allows
 * @example
 * ```ts
 * import { checkCall } from "./checked_call.ts";
 * import { planPattern } from "./plan.ts";
 * import { kernelShape } from "./tiles.ts";
 * import { planKernels } from "./plan_kernels.ts";
 * const call = checkCall({ kind: "ring", radius: 4 }, {
 *   shape: { batch: 1, headsQ: 1, headsKV: 1, seqLen: 64, headDim: 8 },
 * });
 * const tiles = kernelShape(16, 16, 2, 2)!;
 * const plan = planPattern(call.pattern, 64, tiles);
 * planKernels(plan, tiles, call).kernels.kernels.map((k) => k.kind); // ["attention"]
 * ```
 */
export function planKernels(plan: Plan, tiles: KernelShape, call: CheckedCall): KernelPlanResult {
  const { shape, dtype } = call;
  const { d, dv } = sequenceSizes(shape);
  const heads = shape.batch * shape.headsQ;
  const constants = call.constantParams;
  // A decoding call's components that take the decode kernel (decode.ts): each walks its own
  // schedule rows, unsplit and unfused.
  const decoding = callDecodes(plan, call);
  const decodes = plan.branches.map((b) =>
    b.components.map((c) => decoding && componentDecodes(c, b))
  );
  // Key chunks per component, and the components each pass walks (run fusion).
  const chunks = plan.branches.map((b, i) =>
    b.components.map((c, j) =>
      decodes[i][j] ? 0 : keyChunks(c, { heads, valueDim: dv, asked: call.keySplits })
    )
  );
  const groups = plan.branches.map((b, i) =>
    fusionGroups(
      b.components,
      (j) =>
        decodes[i][j]
          ? undefined
          : fusionKey(b.components[j], { branch: b, chunks: chunks[i][j], constants }),
    )
  );
  const prefetch = call.prefetch ?? prefetches(tiles, d, dv);
  // Subgroup matrices load the query tile from workgroup memory: it is always staged.
  const fromMemory = !tiles.matrix && (call.globalQuery ?? queryFromMemoryPays(plan, dtype));
  const pairs = pairChoices(plan, tiles, call, {
    chunks,
    groups,
    prefetch,
    fromMemory,
    decodes,
  });
  // Queries that are some of the positions: each component runs the query tiles holding some.
  const queries = plan.queries;
  const runTiles = queries &&
    plan.branches.map((b) =>
      b.components.map((c) => queryTiles(c.qLayout, plan.n, c.mask.tileQ, queries))
    );
  const schedule = packSchedules(plan, shape.headDim, chunks, groups, pairs.runs, runTiles);
  const hash = hashLayout(plan, shape);
  const landmarks = landmarkSets(plan);
  // The backward pass reads the float32 O (Δ = dO·O), and decode combines merge float32 rows:
  // no float16 O written directly.
  const outputF16 = !call.backward && !decoding &&
    writesF16Directly(plan, dtype, call.pattern.kind === "gated");
  const workgroupBytes = call.limits?.maxComputeWorkgroupStorageSize ?? DEFAULT_WORKGROUP_BYTES;
  const decodeGeometries = plan.branches.map((b, i) =>
    b.components.map((c, j) =>
      decodes[i][j]
        ? decodeGeometry(c, {
          n: plan.n,
          queries: plan.queries!,
          shape,
          workgroupBytes,
          element: dtype === "f16" ? 2 : 4,
          ...(call.limits?.subgroups ? { maxRows: DECODE_LANE_ROWS } : {}),
        })
        : undefined
    )
  );
  // One branch of one decoding component whose combine writes every query row: it writes
  // float16 O itself, and no cast runs.
  const decodeWritesF16 = dtype === "f16" && !call.backward && plan.branches.length === 1 &&
    plan.branches[0].components.length === 1 &&
    combineWrites(plan.branches[0], decodeGeometries[0][0], plan.queries);

  const kernels: Kernel[] = [
    ...landmarks.map((l) => poolKernel(shape, l)),
    ...hash.sets.flatMap((set, i) => hashKernels(set, i, { shape, n: plan.n })),
  ];
  const linear = linearSets(plan, shape);
  const gated = call.pattern.kind === "gated";
  plan.branches.forEach((branch, b) => {
    // A linear branch's kernels are sums and scans of their own (plan_linear.ts).
    if (branch.linear) {
      const features = linear.find((l) => l.branch === b)!.features;
      const oName = gated ? "branchO" : "o";
      kernels.push(
        ...linearKernels(b, branch.linear, {
          shape,
          features,
          oName,
          queryOffset: call.queryOffset,
          workgroupBytes,
          unroll: call.unroll,
        }),
      );
      return;
    }
    kernels.push(...branchKernels(plan, b, {
      shape,
      slots: schedule.slots[b],
      chunks: chunks[b],
      groups: groups[b],
      runTiles: runTiles?.[b],
      decode: decodeGeometries[b],
      steps: (rows) =>
        decodeSteps({
          rows,
          headDim: d,
          element: dtype === "f16" ? 2 : 4,
          tileK: tiles.tileK,
          bytes: workgroupBytes,
        }),
      lanes: (rows) =>
        decodeLanes({
          headDim: d,
          valueDim: dv,
          rows,
          element: dtype === "f16" ? 2 : 4,
          unroll: call.unroll,
          subgroups: call.limits?.subgroups,
        }),
      pairForms: pairs.forms[b],
      dtype,
      workgroupBytes: call.limits?.maxComputeWorkgroupStorageSize,
      bindingBytes: call.limits?.maxStorageBufferBindingSize,
      subgroups: call.limits?.subgroups,
      unroll: call.unroll,
      outputF16: outputF16 || decodeWritesF16,
      gated: call.pattern.kind === "gated",
      querySource: fromMemory ? "memory" : "tile",
      keyLoop: prefetch ? "prefetched" : "plain",
    }));
  });
  if (gated) kernels.push(blendKernel(shape, plan.branches.length, call.gatesPerPosition));
  if (dtype === "f16" && !outputF16 && !decodeWritesF16) kernels.push(castKernel(shape));
  const learnable = learnableConstants(call.pattern);
  const gradients = call.backward
    ? planGradients(plan, shape, kernels, {
      gated,
      gatesPerPosition: call.gatesPerPosition,
      learnable,
      dtype,
      workgroupBytes: call.limits?.maxComputeWorkgroupStorageSize,
      paged: call.paged,
    })
    : undefined;
  if (gradients) kernels.push(...gradients.kernels);
  // Paged K and V: a kernel that reads them reads the block table too, bound after the rest.
  if (call.paged) {
    for (const k of kernels) {
      if (k.bindings.some((b) => b.buffer === "k")) k.bindings.push(read("blockTable"));
    }
  }

  return {
    kernels: {
      dtype,
      kernel: tiles,
      unroll: call.unroll,
      constantParams: constants,
      ...(call.paged
        ? {
          paged: {
            pageSize: call.paged.pageSize,
            columns: tableColumns(shape, call.paged.pageSize),
          },
        }
        : {}),
      kernels,
      modules: assignModules(
        kernels,
        (k) =>
          moduleKey(plan.branches[k.branch].components[k.members[0]], {
            branch: plan.branches[k.branch],
            outputF16: k.output === "o16",
            constants,
            hash,
          }),
      ),
    },
    schedule: schedule.words,
    edgePairs: pairs.runs.map((b) => b.map((runs) => runs?.pairs ?? 0)),
    splitRows: Math.max(
      0,
      ...plan.branches.flatMap((branch, b) =>
        branch.components.map((c, j) =>
          decodeGeometries[b][j]?.partialRows ?? chunks[b][j] * heads * c.mask.qTiles * c.mask.tileQ
        )
      ),
    ),
    landmarks,
    linear,
    hash,
    gradSchedule: gradients?.schedule ?? new Uint32Array(0),
    learned: Float32Array.from([...learnable.values()].flatMap((c) => c.values)),
    sequences: plan.packed ? sequenceWords([wholeSequence(shape)]) : new Uint32Array(0),
  };
}

/** Which components walk edge pairs, their pair runs, and the form each kernel holds them in. */
function pairChoices(
  plan: Plan,
  tiles: KernelShape,
  call: CheckedCall,
  o: {
    chunks: number[][];
    groups: number[][][];
    prefetch: boolean;
    fromMemory: boolean;
    decodes: boolean[][];
  },
) {
  const { shape, dtype } = call;
  // The pair step is written for register tiles; subgroup-matrix kernels walk single tiles.
  // Packed sequences' bands restart at every sequence: no fixed corner tiles to pair.
  const asked = tiles.matrix || plan.packed ? false : call.edgePairs ?? pairsPay(plan, dtype);
  const form = asked === false ? "wide" : edgePairForm(asked, dtype);
  const fit = edgePairsFit({
    tiles,
    headDim: shape.headDim,
    valueDim: sequenceSizes(shape).dv,
    dtype,
    stagedQuery: !o.fromMemory,
    form,
    workgroupBytes: call.limits?.maxComputeWorkgroupStorageSize,
  });
  const context = {
    n: plan.n,
    random: plan.random,
    domain: { batch: shape.batch, headsQ: shape.headsQ },
  };
  const walks = plan.branches.map((b, i) =>
    b.components.map((c, j) =>
      asked !== false && fit && !o.decodes[i][j] && walksEdgePairs(c, {
        n: plan.n,
        allRows: plan.queries === undefined,
        rowsPerThread: tiles.rowsPerThread,
        prefetch: o.prefetch,
        plain: o.chunks[i][j] === 0 &&
          o.groups[i].some((g) => g.length === 1 && g[0] === j) &&
          !b.score && !b.uniform && !readsHash(c),
      })
    )
  );
  return {
    runs: plan.branches.map((b, i) =>
      b.components.map((c, j) => walks[i][j] ? edgePairRuns(c, context) : undefined)
    ),
    forms: walks.map((b) => b.map((on) => on ? form : undefined)),
  };
}

/**
 * One branch's kernels: a clear where its first kernel does not write every row, then per
 * group of components (run_fusion.ts) an attention kernel, with a combine after a split one.
 */
function branchKernels(plan: Plan, b: number, o: {
  shape: AttentionShape;
  slots: number[];
  chunks: number[];
  groups: number[][];
  /** Per component, the query tiles it runs, where the queries are some of the positions. */
  runTiles?: number[][];
  /** Per component, its decode geometry where it takes the decode kernel. */
  decode: (DecodeGeometry | undefined)[];
  /** A decode workgroup's steps, for a workgroup of this many rows. */
  steps: (rows: number) => DecodeSteps;
  /** The subgroup form's split for a workgroup of this many rows, where the device has one. */
  lanes: (rows: number) => DecodeLanes | undefined;
  pairForms: (EdgePairForm | undefined)[];
  dtype: Dtype;
  workgroupBytes?: number;
  /** The device's largest storage binding, for a select branch's importances. */
  bindingBytes?: number;
  /** The device's subgroups and unrolling, for a select branch's attention form. */
  subgroups?: SubgroupLimits;
  unroll: boolean;
  outputF16: boolean;
  gated: boolean;
  querySource: AttentionKernel["querySource"];
  keyLoop: AttentionKernel["keyLoop"];
}): Kernel[] {
  const { shape } = o;
  const heads = shape.batch * shape.headsQ;
  const rows = heads * shape.seqLen;
  const oBase = b * rows * (sequenceSizes(shape).dv / 4), lseBase = b * rows;
  const oName = o.outputF16 ? "o16" : o.gated ? "branchO" : "o";
  const select = plan.branches[b].select;
  if (select) {
    return selectKernels(select, b, { ...o, oName, oBase, lseBase });
  }
  const components = plan.branches[b].components;
  // A decode combine merges, so a branch that starts with one is cleared first, unless that
  // combine writes every query row itself.
  const firstWrites = combineWrites(plan.branches[b], o.decode[0], plan.queries);
  const clear = branchNeedsClear(plan.branches[b]) || (o.decode[0] !== undefined && !firstWrites);
  const learns = branchLearns(plan.branches[b]); // reads learnable constants
  const kernels: Kernel[] = [];
  if (clear) {
    kernels.push({
      kind: "clear",
      label: `branch ${b}: clear`,
      ...own,
      bindings: [written(oName), written("lse")],
      workgroups: elementwiseWorkgroups(rows),
      rows,
      oBase,
      lseBase,
    });
  }
  for (const group of o.groups) {
    const j = group[0], component = components[j];
    const decode = o.decode[j];
    // No listed tile holds a query (global rows elsewhere): nothing to add.
    if (decode?.tiles.length === 0) continue;
    if (decode) {
      kernels.push(...decodeKernels(b, j, decode, {
        shape,
        slot: o.slots[j],
        steps: o.steps(decode.rows),
        lanes: o.lanes(decode.rows),
        oName,
        output: j === 0 && firstWrites ? (o.outputF16 ? "o16" : "write") : "merge",
        oBase,
        lseBase,
      }));
      continue;
    }
    const label = group.length > 1
      ? `branch ${b} components ${group.join("+")}`
      : `branch ${b} component ${j}`;
    const chunks = o.chunks[j];
    // Split-K partial rows are indexed by layout index, over every query tile of the layout.
    const qTiles = Math.ceil(layoutCount(component.qLayout, plan.n) / component.mask.tileQ);
    const split = chunks > 0 ? { chunks, rows: qTiles * component.mask.tileQ } : undefined;
    const splitNote = split ? `, key tiles in ${chunks} chunks` : "";
    const runTiles = o.runTiles?.[j];
    // None of its query tiles holds a query (global rows elsewhere): it has nothing to add, and
    // a gathered layout never writes a branch first (the branch is cleared).
    if (runTiles?.length === 0) continue;
    const dispatched = runTiles?.length ?? qTiles;
    checkWorkgroups(label, dispatched, chunks);
    kernels.push({
      kind: "attention",
      label: `${label}${splitNote}`,
      ...own,
      bindings: [
        ...keyBuffers(component).map(read),
        written(split ? "splitO" : oName),
        written(split ? "splitLse" : "lse"),
        ...(readsHash(component) ? [read("hash")] : []),
        ...(learns ? [read("learned")] : []),
        ...(plan.packed ? [read("sequences")] : []),
      ],
      workgroups: [dispatched * Math.max(chunks, 1), heads],
      branch: b,
      members: group,
      querySource: o.querySource,
      keyLoop: o.keyLoop,
      edgePairs: o.pairForms[j] ?? "none",
      output: split ? "split" : o.outputF16 ? "o16" : j > 0 || clear ? "merge" : "write",
      ...(split ? { split } : {}),
      ...(runTiles ? { queryTiles: runTiles } : {}),
      ...(plan.packed ? { packed: true as const } : {}),
      scheduleSlot: o.slots[j],
      oBase,
      lseBase,
    });
    if (!split) continue;
    kernels.push({
      kind: "combine",
      label: `${label}: combine ${chunks} chunks`,
      ...own,
      bindings: [read("splitO"), read("splitLse"), read("aux"), written(oName), written("lse")],
      workgroups: elementwiseWorkgroups(heads * split.rows),
      branch: b,
      component: j,
      chunks,
      rows: split.rows,
      oBase,
      lseBase,
    });
  }
  return kernels;
}

/** A decoding component's two kernels: its chunks' partial rows, then their combine. */
function decodeKernels(
  b: number,
  j: number,
  geometry: DecodeGeometry,
  o: {
    shape: AttentionShape;
    slot: number;
    steps: DecodeSteps;
    lanes?: DecodeLanes;
    oName: BufferName;
    output: DecodeCombineKernel["output"];
    oBase: number;
    lseBase: number;
  },
): Kernel[] {
  const label = `branch ${b} component ${j}`;
  const { chunks, rowBlocks, tiles } = geometry;
  const entries = o.shape.batch * o.shape.headsQ * geometry.slotRows.length;
  checkWorkgroups(`${label} (decode)`, tiles.length * rowBlocks, chunks);
  const dv4 = sequenceSizes(o.shape).dv / 4;
  const rowsPerGroup = Math.floor(ELEMENTWISE_WORKGROUP / dv4);
  return [{
    kind: "decode",
    label: `${label}: decode${o.lanes ? " (subgroup lanes)" : ""}, ${geometry.rows} rows per ` +
      `workgroup, keys in ${chunks} chunks`,
    ...own,
    bindings: [
      read("q"),
      read("k"),
      read("v"),
      read("schedule"),
      read("aux"),
      written("splitO"),
      written("splitLse"),
    ],
    workgroups: [tiles.length * rowBlocks * chunks, o.shape.batch * o.shape.headsKV],
    branch: b,
    component: j,
    geometry,
    ...o.steps,
    ...(o.lanes ? { lanes: o.lanes } : {}),
    scheduleSlot: o.slot,
  }, {
    kind: "decodeCombine",
    label: `${label}: combine ${chunks} chunks`,
    ...own,
    bindings: [read("splitO"), read("splitLse"), read("aux"), written(o.oName), written("lse")],
    workgroups: elementwiseWorkgroups(Math.ceil(entries / rowsPerGroup) * ELEMENTWISE_WORKGROUP),
    branch: b,
    component: j,
    chunks,
    slotRows: geometry.slotRows,
    output: o.output,
    oBase: o.oBase,
    lseBase: o.lseBase,
  }];
}

/**
 * Whether a branch's first component decodes and its combine can write the branch's rows
 * outright: its rows are positions (not gathered) and its listed slots hold every query.
 */
function combineWrites(
  branch: Branch,
  first: DecodeGeometry | undefined,
  queries: QueryRange | undefined,
): boolean {
  if (!first || !queries || branchNeedsClear(branch)) return false;
  const held = new Set(first.slotRows);
  for (let i = 0; i < queries.count; i++) if (!held.has(i)) return false;
  return true;
}

/** WebGPU allows at most 65535 workgroups per dimension. */
function checkWorkgroups(label: string, qTiles: number, chunks: number): void {
  const workgroupsX = qTiles * Math.max(chunks, 1);
  if (workgroupsX <= MAX_WORKGROUPS_X) return;
  const need = chunks > 0
    ? `${qTiles} query tiles x ${chunks} key chunks = ${workgroupsX} workgroups`
    : `${qTiles} query tiles (one workgroup each)`;
  const fix = chunks > 0 ? "ask for fewer keySplits" : "use a shorter sequence or larger tiles";
  throw new PlanError(
    `Cannot compile: ${label} needs ${need}, over WebGPU's ${MAX_WORKGROUPS_X} ` +
      `workgroups per dimension; ${fix}`,
  );
}

/**
 * Numbers the modules in order of first use, grouping attention kernels with one module key
 * (kernel_groups.ts); sets each kernel's module and entry point.
 */
function assignModules(
  kernels: Kernel[],
  keyOf: (k: AttentionKernel) => string | undefined,
): ModuleEntry[] {
  const attention = kernels.flatMap((k, i) => k.kind === "attention" ? [i] : []);
  const groups = kernelGroups(attention.map((i) => {
    const k = kernels[i] as AttentionKernel;
    return { key: keyOf(k), members: k.members.length };
  })).map((g) => g.map((x) => attention[x]));
  const groupOf = new Map(groups.flatMap((g) => g.map((i) => [i, g] as const)));
  const modules: ModuleEntry[] = [];
  const numbered = new Map<readonly number[], number>();
  kernels.forEach((k, i) => {
    const group = groupOf.get(i);
    if (!group) {
      k.module = modules.push({ kernels: [i], shared: false }) - 1;
      return;
    }
    let index = numbered.get(group);
    if (index === undefined) {
      const members = group.map((x) => kernels[x] as AttentionKernel);
      const shared = group.length > 1 || members[0].members.length > 1;
      const pairs = modulePairForm(
        shared
          ? members.map((x) => x.edgePairs === "none" ? undefined : x.edgePairs)
          : [members[0].edgePairs === "none" ? undefined : members[0].edgePairs],
      );
      index = modules.push({ kernels: group, shared, ...(pairs ? { edgePairs: pairs } : {}) }) -
        1;
      numbered.set(group, index);
    }
    k.module = index;
    if (modules[index].shared) k.entryPoint = `kernel${group.indexOf(i)}`;
  });
  return modules;
}

/** What a component's kernel binds before O and LSE: landmark components read pooled K and V. */
function keyBuffers(c: Component): BufferName[] {
  const l = c.kLayout;
  return l.kind === "landmarks"
    ? ["q", `landmarkK${l.rank}`, `landmarkV${l.rank}`, "schedule", "aux"]
    : ["q", "k", "v", "schedule", "aux"];
}
