/**
 * The compiler: Pattern -> Plan -> WGSL passes. Pure: it returns text, buffer contents, binding
 * names and dispatch sizes; the runtime owns every GPU object.
 * @module
 */
import { parsePattern } from "../dsl/schema.ts";
import { branchPasses, lowerKernels } from "./kernel_passes.ts";
import { checkBufferSizes, checkHashFits, checkKernelFits } from "./device_checks.ts";
import { blendPass, castPass, hashPasses, landmarkSets, poolingPass } from "./support_passes.ts";
import { AuxData } from "./aux_data.ts";
import { checkExpressionDomain } from "../dsl/expression_domain.ts";
import { type Plan, planPattern, type TileShape } from "./plan.ts";
import { keySplits, MAX_KEY_SPLITS, splittable } from "./key_split.ts";
import { packSchedules } from "./schedule_buffer.ts";
import { type EdgePairForm, edgePairRuns, walksEdgePairs } from "./edge_pairs.ts";
import { fusionGroups } from "./run_fusion.ts";
import { type AttentionShape, checkAttentionShape, type Dtype } from "../core/shape.ts";
import {
  chooseTiles,
  type DeviceLimits,
  type KernelShape,
  kernelShape,
  kernelStorageBytes,
  mayStageQuery,
  prefetches,
} from "./tiles.ts";
import { ShapeError } from "../core/errors.ts";
import { keepsOwnModule } from "./kernel_groups.ts";
import { type HashLayout, hashLayout } from "./hash_layout.ts";
import { allowedReadsHeadOrBatch, readsHash } from "./component_reads.ts";

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

export type { Dtype } from "../core/shape.ts";

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
  /**
   * Walk each band's two corner key tiles that only half of a query tile's rows see as one
   * step (edge_pairs.ts): ring(128) in 9 steps of 64x32 instead of 10. Only for bands (window,
   * ring) in natural order on a complete grid, and where the larger V tile fits. true picks
   * the form by dtype: float16 wide, float32 narrow (edge_pair_wgsl.ts); a module shared with
   * kernels that walk no pairs holds them narrow. Default: float32 always, float16 where the
   * pattern has one attention kernel (`pairsPay`: compile time).
   */
  edgePairs?: boolean | EdgePairForm;
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
  /**
   * Per branch and component, the query tiles whose schedule starts with an edge pair
   * (edge_pairs.ts): each saves one key-tile step. 0 where the kernel walks none.
   */
  edgePairs: number[][];
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
  // 2. Size tiles from the device's workgroup storage. Before the plan only the dtype and the
  // option say whether the query tile is staged; the fit is checked again once it is known.
  const tiles = options.tiles
    ? options.tiles.threads
      ? options.tiles as KernelShape
      : kernelShape(options.tiles.tileQ, options.tiles.tileK, 2, shape.headDim / 4)!
    : chooseTiles(
      shape.headDim,
      options.limits,
      dtype,
      options.globalQuery === undefined ? mayStageQuery(dtype) : !options.globalQuery,
    );
  // 3. Plan: branches of disjoint components, each with layouts and a BlockMask.
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
      // hashBucket components stage codes per kernel: not fused (they may share a module).
      const own = splits[i][j] > 0 || readsHash(c) || keepsOwnModule(c, { ...b, constants });
      return own ? undefined : String(allowedReadsHeadOrBatch(c));
    })
  );
  // Registers for the next K/V tile where the tile needs few of them (compiler/tiles.ts).
  const prefetch = options.prefetch ?? prefetches(tiles, shape.headDim);
  const globalQuery = options.globalQuery ?? queryFromMemoryPays(plan, dtype);
  // Only a real device's limits are binding; without them the WGSL is text to read.
  if (options.limits) checkKernelFits(tiles, shape.headDim, dtype, options.limits, !globalQuery);
  // Bands walk their two half-seen corner tiles as one step (edge_pairs.ts) where asked and
  // where the larger V tile fits.
  const asked = options.edgePairs ?? pairsPay(plan, dtype);
  const form: EdgePairForm = asked === true
    ? (dtype === "f16" ? "wide" : "narrow")
    : asked || "wide";
  const pairsFit = !options.limits ||
    kernelStorageBytes(tiles, shape.headDim, dtype, !globalQuery, form) <=
      options.limits.maxComputeWorkgroupStorageSize;
  const edgePairs = plan.branches.map((b, i) =>
    b.components.map((c, j) =>
      asked !== false && pairsFit && walksEdgePairs(c, {
        n: shape.seqLen,
        rowsPerThread: tiles.rowsPerThread,
        prefetch,
        plain: splits[i][j] === 0 && groups[i].some((g) => g.length === 1 && g[0] === j) &&
          !b.score && !b.uniform && !readsHash(c),
      })
    )
  );
  const domain = { batch: shape.batch, headsQ: shape.headsQ };
  const context = { n: shape.seqLen, random: plan.random, domain };
  const paired = plan.branches.map((b, i) =>
    b.components.map((c, j) => edgePairs[i][j] ? edgePairRuns(c, context) : undefined)
  );
  const pairForms = edgePairs.map((b) => b.map((on) => on ? form : undefined));
  const packed = packSchedules(plan, shape.headDim, splits, groups, paired);
  // 5. Generate the passes: per branch, clear if needed, then one kernel per component; blend.
  // The pattern's numbers go to aux as runtime parameters: the WGSL depends on its structure.
  const aux = new AuxData(shape.seqLen, plan.random, constants);
  const gated = parsed.kind === "gated";
  const unroll = options.unroll ?? true;
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
      edgePairs: pairForms[b],
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
    edgePairs: paired.map((b) => b.map((runs) => runs?.pairs ?? 0)),
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

/**
 * Whether band kernels walk edge pairs unless the caller says. The pair step is a second copy of
 * a tile step's WGSL, and the WGSL front end is most of a compile: on the H200 host (warm
 * medians, docs/BENCHMARKS.md, fourteenth session) pairs took float16 ring(128) from 11.8 to
 * 33.9 ms, and πAttention, ring ∪ stride(16) and window(256) ∪ lowRank(256), whose band shares
 * the pattern with another kernel, from 19-26 to 54-57 ms, past the 50 ms a compile may take,
 * for 1-2% of their time. So float16 pairs only a pattern of one attention kernel (ring 9%
 * faster, window(256) 3%); float32, whose compiles are shorter, pairs every band (ring 4%,
 * window(256) 4%, the others 1-2%; compile at most 27 ms).
 */
function pairsPay(plan: Plan, dtype: Dtype): boolean {
  return dtype === "f32" || plan.branches.flatMap((b) => b.components).length === 1;
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
  // tiles.ts sizes candidates before the plan on this: float32 never stages (`mayStageQuery`).
  if (dtype === "f32") return true;
  const longRows = new Set(["dense", "causal", "globalRows"]);
  return !plan.branches.some((b) =>
    b.components.some((c) => c.atoms.some((a) => longRows.has(a.kind)))
  );
}
