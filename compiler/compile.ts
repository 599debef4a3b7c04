/**
 * The compiler: Pattern -> Plan -> WGSL passes. Pure: it returns text, buffer contents, binding
 * names and dispatch sizes; the runtime owns every GPU object.
 * @module
 */
import { parsePattern } from "../dsl/schema.ts";
import { AuxData } from "./aux_data.ts";
import { checkExpressionDomain } from "./expression_domain.ts";
import { layoutCount } from "./layout.ts";
import { type Plan, planPattern, type TileShape } from "./plan.ts";
import { keySplits, MAX_KEY_SPLITS, splittable } from "./key_split.ts";
import { packSchedules } from "./schedule_buffer.ts";
import { fusionGroups } from "./run_fusion.ts";
import { type AttentionShape, checkAttentionShape } from "./shape.ts";
import {
  chooseTiles,
  DEFAULT_LIMITS,
  type DeviceLimits,
  type KernelShape,
  kernelShape,
  kernelStorageBytes,
  prefetches,
} from "./tiles.ts";
import { DeviceError, PlanError, ShapeError } from "../dsl/errors.ts";
import {
  componentKernel,
  type ComponentKernelOptions,
  type SharedKernel,
  sharedKernel,
} from "./wgsl/attention_wgsl.ts";
import { keepsOwnModule, kernelGroups } from "./kernel_groups.ts";
import { splitCombineKernel } from "./wgsl/split_combine_wgsl.ts";
import { poolingKernel } from "./wgsl/pooling_wgsl.ts";
import { type HashLayout, hashLayout } from "./hash_layout.ts";
import {
  bucketHistogramKernel,
  bucketScanKernel,
  bucketScatterKernel,
  codeRows,
  hashCodesKernel,
  sortCount,
} from "./wgsl/hash_sort_wgsl.ts";
import { readsHash } from "./wgsl/code_staging_wgsl.ts";
import { allowedReadsHeadOrBatch } from "./wgsl/predicate_wgsl.ts";
import type { Component } from "./plan.ts";
import {
  blendKernel,
  castKernel,
  clearKernel,
  elementwiseWorkgroups,
  MAX_WORKGROUPS_X,
} from "./wgsl/elementwise_wgsl.ts";

/** The buffers a pass can bind, by name; the runtime allocates each once per call shape. */
export type BufferName =
  | `landmarkK${number}`
  | `landmarkV${number}`
  | "q"
  | "k"
  | "v"
  | "schedule"
  | "aux"
  | "o"
  | "lse"
  | "branchO"
  | "gates"
  | "o16"
  | "hash"
  | "hashCounts"
  | "splitO"
  | "splitLse";

/** Element type of Q, K, V and O; LSE and every running sum are float32. */
export type Dtype = "f32" | "f16";

/** A storage binding: which buffer, and whether the kernel writes it. */
export interface Binding {
  buffer: BufferName;
  writable: boolean;
}

/** One compute dispatch: its WGSL, its bindings in binding order, its workgroup counts. */
export interface Pass {
  label: string;
  /** A pre-pass (lowRank pooling, hashBucket codes and sort): runs before any attention kernel. */
  prePass?: true;
  wgsl: string;
  /**
   * The module's entry point for this pass (default `main`): component kernels of one pattern
   * share a module (compiler/kernel_groups.ts), one entry point each.
   */
  entryPoint?: string;
  bindings: Binding[];
  workgroups: [number, number];
}

export interface CompileOptions {
  shape: AttentionShape;
  /** Element type of the inputs and O (default f32); f16 needs the adapter's `shader-f16`. */
  dtype?: Dtype;
  /** Softmax scale; defaults to 1 / sqrt(D). */
  scale?: number;
  /** The adapter's limits; tiles are sized from them (WebGPU defaults otherwise). */
  limits?: DeviceLimits;
  /** Override the tile shape (tests use small tiles to exercise many tiles at small N). */
  tiles?: TileShape & Partial<KernelShape>;
  /**
   * Constant inner loop bounds, which GPU compilers unroll (default). Software adapters want
   * false: llvmpipe spent 30-60 s compiling each unrolled kernel, about 5 s otherwise.
   */
  unroll?: boolean;
  /**
   * Load the next K/V tile into registers while the current one is computed (default: when the
   * tile needs at most 4 vec4s of K per invocation).
   */
  prefetch?: boolean;
  /** Gated patterns: gates given per position `[B, Hq, N, branches]` rather than `[B, Hq, branches]`. */
  gatesPerPosition?: boolean;
  /**
   * Bake the pattern's numbers (windows, radii, periods, residue geometry, aux offsets) into
   * the WGSL as constants. By default (false) kernels read them from the aux buffer, so a
   * pattern of the same structure with other numbers reuses the compiled pipelines; constants
   * let a GPU compiler turn the residue layout's divisions into multiplications, at the price
   * of a new pipeline for every new number.
   */
  constantParams?: boolean;
  /**
   * Chunks to split the key tiles of every gathered-query component into (split-K,
   * key_split.ts). Default: chosen per component, so that global rows fill the GPU. A runtime
   * value: it changes no kernel.
   */
  keySplits?: number;
  /**
   * Read each query row from global memory at every key tile instead of staging the query tile
   * in workgroup memory. Default: float32 always; float16 unless a component is dense or
   * causal (`queryFromMemoryPays`).
   */
  globalQuery?: boolean;
}

/** Everything the runtime needs to run a pattern at one shape. */
export interface CompiledAttention {
  plan: Plan;
  shape: AttentionShape;
  dtype: Dtype;
  scale: number;
  passes: Pass[];
  /** Contents of the `schedule` and `aux` buffers. */
  schedule: Uint32Array;
  aux: Uint32Array;
  /** Number of softmax branches; LSE is `[branches, B, Hq, N]` when gated, else `[B, Hq, N]`. */
  branches: number;
  gated: boolean;
  gatesPerPosition: boolean;
  /** Default gates `[branches]` (JSON gates or 1/branches) used when no gate tensor is given. */
  defaultGates: number[];
  /** The kernel shape every component kernel was generated for (tiles and invocation split). */
  kernel: KernelShape;
  /** Milliseconds spent planning and generating WGSL. */
  compileMs: number;
  /** lowRank landmarks per rank: buffers `landmarkK{rank}` / `landmarkV{rank}` of `[B, Hkv, count, D]`. */
  landmarks: { rank: number; segment: number; count: number }[];
  /** hashBucket codes, bucket order and counts: the `hash` and `hashCounts` buffers. */
  hash: HashLayout;
  /** Rows of the split-K partials (`splitO` of `[rows, D]` and `splitLse`); 0 without split-K. */
  splitRows: number;
  /**
   * Set by the runtime when the caller's tensors exceed one storage binding: `shape` is then one
   * part (one batch, `kvHeads` key/value heads) of `split.full`, and `Runtime.run` runs the parts.
   */
  split?: { full: AttentionShape; part: AttentionShape; kvHeads: number };
}

/**
 * Compiles a pattern for one shape.
 *
 * @param pattern a pattern object or JSON value (checked here)
 * @param options shape, scale, device limits, tile override
 * @returns the plan, WGSL passes and buffer contents
 * @throws {PatternError} bad pattern; {ShapeError} bad shape; {PlanError} unplannable at this N
 * @example
 * ```ts
 * import { compile } from "./compile.ts";
 * const c = compile({ kind: "stride", period: 16 }, {
 *   shape: { batch: 1, headsQ: 8, headsKV: 8, seqLen: 4096, headDim: 64 },
 * });
 * console.log(c.passes.length); // 1
 * ```
 */
export function compile(pattern: unknown, options: CompileOptions): CompiledAttention {
  const started = performance.now();
  // 1. Check the input once, at the boundary.
  const parsed = parsePattern(pattern);
  const shape = options.shape;
  checkAttentionShape(shape);
  // TypeScript predicates and scores must stay in i32 and never divide by 0 at this shape.
  checkExpressionDomain(parsed, { n: shape.seqLen, batch: shape.batch, headsQ: shape.headsQ });
  const scale = options.scale ?? 1 / Math.sqrt(shape.headDim);
  if (!Number.isFinite(scale) || scale === 0) {
    throw new ShapeError(`Bad options: scale must be a finite nonzero number, got ${scale}`);
  }
  const splitsAsked = options.keySplits;
  if (
    splitsAsked !== undefined &&
    !(Number.isInteger(splitsAsked) && splitsAsked >= 1 && splitsAsked <= MAX_KEY_SPLITS)
  ) {
    throw new ShapeError(
      `Bad options: keySplits must be an integer from 1 to ${MAX_KEY_SPLITS}, got ${splitsAsked}`,
    );
  }
  const dtype = options.dtype ?? "f32";
  if (dtype !== "f32" && dtype !== "f16") {
    throw new ShapeError(`Bad options: dtype must be "f32" or "f16", got ${JSON.stringify(dtype)}`);
  }
  if (options.limits) {
    checkBufferSizes(
      shape,
      dtype,
      parsed.kind === "gated" ? parsed.branches.length : 1,
      options.limits,
    );
  }
  // 2. Size tiles from the device's workgroup storage.
  const tiles = options.tiles
    ? options.tiles.threads
      ? options.tiles as KernelShape
      : kernelShape(options.tiles.tileQ, options.tiles.tileK, 2, shape.headDim / 4)!
    : chooseTiles(shape.headDim, options.limits, dtype);
  // 3. Plan: branches of disjoint components, each with layouts and a BlockMask.
  // Only a real device's limits are binding; without them the WGSL is text to read.
  if (options.limits) checkKernelFits(tiles, shape.headDim, dtype, options.limits);
  const plan = planPattern(parsed, shape.seqLen, { tileQ: tiles.tileQ, tileK: tiles.tileK }, {
    domain: { batch: shape.batch, headsQ: shape.headsQ },
  });
  // 4. Pack every component's BlockMask into one schedule buffer; split the key tiles of
  // components with too few query tiles to fill the GPU.
  const heads = shape.batch * shape.headsQ;
  const splits = plan.branches.map((b) =>
    b.components.map((c) =>
      splittable(c) ? keySplits(c, heads, shape.headDim, options.keySplits) : 0
    )
  );
  // Consecutive natural-layout components of a branch are walked by one kernel (run_fusion.ts)
  // where they could share a module anyway (no split-K either), with masks of one signature.
  const constants = options.constantParams ?? false;
  const groups = plan.branches.map((b, i) =>
    fusionGroups(b.components, (j) => {
      const c = b.components[j];
      const own = splits[i][j] > 0 || keepsOwnModule(c, { ...b, constants });
      return own ? undefined : String(allowedReadsHeadOrBatch(c));
    })
  );
  const packed = packSchedules(plan, shape.headDim, splits, groups);
  // 5. Generate the passes: per branch, clear if needed, then one kernel per component; blend.
  // The pattern's numbers go to aux as runtime parameters: the WGSL depends on its structure.
  const aux = new AuxData(shape.seqLen, plan.random, constants);
  const gated = parsed.kind === "gated";
  const unroll = options.unroll ?? true;
  // Registers for the next K/V tile where the tile needs few of them (compiler/tiles.ts).
  const prefetch = options.prefetch ?? prefetches(tiles, shape.headDim);
  const globalQuery = options.globalQuery ?? queryFromMemoryPays(plan, dtype);
  // A float16 call with one kernel that writes every row writes O as float16 itself.
  const components = plan.branches[0].components;
  const directF16 = dtype === "f16" && !gated && components.length === 1 &&
    components[0].qLayout.kind !== "gather";
  const landmarks = landmarkSets(plan);
  const hash = hashLayout(plan, shape);
  checkHashFits(hash, options.limits);
  // Pre-passes: pool landmarks; hash Q and K and sort each head by bucket.
  const passes = landmarks.map((l) => poolingPass(shape, dtype, l));
  passes.push(...hash.sets.flatMap((set) => hashPasses(set, shape, dtype)));
  passes.push(...lowerKernels(plan.branches.flatMap((_, b) =>
    branchPasses({
      plan,
      b,
      shape,
      scale,
      aux,
      packed,
      gated,
      unroll,
      prefetch,
      globalQuery,
      kernel: tiles,
      dtype,
      directF16,
      hash,
      splits: splits[b],
      groups: groups[b],
    })
  )));
  const branches = plan.branches.length;
  const gatesPerPosition = gated && (options.gatesPerPosition ?? false);
  if (gated) passes.push(blendPass(shape, branches, gatesPerPosition));
  // 6. Other float16 calls accumulate O in float32 and convert once at the end.
  if (dtype === "f16" && !directF16) passes.push(castPass(shape));
  return {
    plan,
    shape,
    dtype,
    scale,
    passes,
    schedule: packed.words,
    aux: aux.finish(),
    branches,
    gated,
    gatesPerPosition,
    defaultGates: plan.gates ?? new Array(branches).fill(1 / branches),
    kernel: tiles,
    compileMs: performance.now() - started,
    landmarks,
    hash,
    splitRows: Math.max(
      0,
      ...plan.branches.flatMap((branch, b) =>
        branch.components.map((c, j) => splits[b][j] * heads * c.mask.qTiles * c.mask.tileQ)
      ),
    ),
  };
}

function branchPasses(o: {
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
 * Whether the kernels read query rows from global memory at every key tile rather than stage
 * the query tile once. Measured on the H200 (docs/BENCHMARKS.md, twelfth session): in float32
 * every pattern got faster (interleaved A/B: ring 17%, stride(64) 16%, window(256) 12%, dense
 * 8%), since 17 KB less workgroup memory per workgroup lets more of them share an SM. In
 * float16, whose query tile is 8.5 KB, the sparse patterns got faster (ring 7%, window(256) 6%,
 * stride(64) 3%), but dense got 2.8% slower and BigBird 3.8%: rows that see every key tile
 * (dense, causal, global rows) pay the staging once against many reads. The choice is per
 * pattern, so a shared module's kernels agree.
 */
function queryFromMemoryPays(plan: Plan, dtype: Dtype): boolean {
  if (dtype === "f32") return true;
  const longRows = new Set(["dense", "causal", "globalRows"]);
  return !plan.branches.some((b) =>
    b.components.some((c) => c.atoms.some((a) => longRows.has(a.kind)))
  );
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
function lowerKernels(pending: PendingPass[]): Pass[] {
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

/**
 * A pipeline over the device's workgroup memory is an error at best; on the H100 through Deno
 * it hung. Refuse it here, with the numbers.
 */
function checkKernelFits(tiles: KernelShape, headDim: number, dtype: Dtype, limits: DeviceLimits) {
  const bytes = kernelStorageBytes(tiles, headDim, dtype);
  if (bytes > limits.maxComputeWorkgroupStorageSize) {
    throw new PlanError(
      `Cannot compile: tile ${tiles.tileQ}x${tiles.tileK} at D=${headDim} (${dtype}) needs ${bytes} ` +
        `bytes of workgroup memory; this device allows ${limits.maxComputeWorkgroupStorageSize}. ` +
        `Use smaller tiles or leave tiles unset`,
    );
  }
  const maxThreads = limits.maxComputeInvocationsPerWorkgroup ??
    DEFAULT_LIMITS.maxComputeInvocationsPerWorkgroup!;
  if (tiles.threads > maxThreads) {
    throw new PlanError(
      `Cannot compile: tile ${tiles.tileQ}x${tiles.tileK} uses ${tiles.threads} invocations per ` +
        `workgroup; this device allows ${maxThreads}`,
    );
  }
}

/**
 * Every tensor must fit one storage binding. Refused here, before any allocation, with the
 * tensor's name and the numbers; splitting over (batch, head) is the caller's way out today.
 */
function checkBufferSizes(
  shape: AttentionShape,
  dtype: Dtype,
  branches: number,
  limits: DeviceLimits,
): void {
  const limit = limits.maxStorageBufferBindingSize;
  if (limit === undefined) return;
  const { batch: b, headsQ, headsKV, seqLen: n, headDim: d } = shape;
  const element = dtype === "f16" ? 2 : 4;
  const sizes: [string, number][] = [
    ["q", b * headsQ * n * d * element],
    ["k", b * headsKV * n * d * element],
    ["v", b * headsKV * n * d * element],
    ["o (float32 accumulator)", b * headsQ * n * d * 4],
    ["lse", b * headsQ * n * branches * 4],
  ];
  if (branches > 1) sizes.push(["per-branch O", b * headsQ * n * d * 4 * branches]);
  for (const [name, bytes] of sizes) {
    if (bytes > limit) {
      throw new DeviceError(
        `Cannot compile for this device: tensor ${name} needs ${bytes} bytes, over ` +
          `maxStorageBufferBindingSize (${limit}); run fewer batches or heads per call`,
      );
    }
  }
}

/** What a component's kernel binds before O and LSE: landmark components read pooled K and V. */
function keyBuffers(c: Component): BufferName[] {
  const l = c.kLayout;
  return l.kind === "landmarks"
    ? ["q", `landmarkK${l.rank}`, `landmarkV${l.rank}`, "schedule", "aux"]
    : ["q", "k", "v", "schedule", "aux"];
}

/** The distinct lowRank ranks a plan's components read, with their geometry. */
function landmarkSets(plan: Plan): CompiledAttention["landmarks"] {
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

function poolingPass(
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
function hashPasses(set: HashLayout["sets"][number], shape: AttentionShape, dtype: Dtype): Pass[] {
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

/** One dispatch dimension holds every sort, and each buffer one binding. */
function checkHashFits(hash: HashLayout, limits?: DeviceLimits): void {
  for (const set of hash.sets) {
    if (sortCount(set) > 65535) {
      throw new PlanError(
        `Cannot plan hashBucket ${set.key}: ${set.rounds} rounds x ${set.rowsQ + set.rowsK} ` +
          `query and key/value heads is ${sortCount(set)} sorts, over 65535 per dispatch; ` +
          `run fewer batches or heads per call`,
      );
    }
  }
  const limit = limits?.maxStorageBufferBindingSize;
  const words = Math.max(hash.words, hash.countWords);
  if (limit !== undefined && words * 4 > limit) {
    throw new DeviceError(
      `Cannot compile for this device: the hashBucket buffers need ${words * 4} bytes, over ` +
        `maxStorageBufferBindingSize (${limit}); use fewer rounds, buckets, batches or heads per call`,
    );
  }
}

function castPass(shape: AttentionShape): Pass {
  const count = shape.batch * shape.headsQ * shape.seqLen * shape.headDim / 4;
  const workgroups = elementwiseWorkgroups(count);
  return {
    label: "cast O to float16",
    wgsl: castKernel({ count, groupsX: workgroups[0] }),
    bindings: [read("o"), written("o16")],
    workgroups,
  };
}

function blendPass(shape: AttentionShape, branches: number, perPosition: boolean): Pass {
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

const read = (buffer: BufferName): Binding => ({ buffer, writable: false });
const written = (buffer: BufferName): Binding => ({ buffer, writable: true });
