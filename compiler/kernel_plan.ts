/**
 * The kernel plan: what the GPU runs for a Plan, as closed, JSON-serialisable data. Every
 * dispatch in order (pre-passes, per-branch clears, attention kernels, split-K combines, the
 * gated blend, the float16 cast), each with its variant fields, its WGSL module and entry point,
 * its bindings and its workgroup counts; and the modules, each the kernels whose pipelines it
 * holds. `planKernels` (plan_kernels.ts) builds it, choosing every variant by a rule of
 * kernel_rules.ts; the WGSL renderer (render.ts) reads it and decides nothing. New kinds of
 * kernel (a backward pass's key-major dK/dV and query-major dQ kernels, its preprocessing,
 * decode kernels) are new entries of `Kernel`, rendered by a writer of their own.
 * @module
 */
import type { Dtype } from "../core/shape.ts";
import type { EdgePairForm } from "./edge_pairs.ts";
import type { HashLayout } from "./hash_layout.ts";
import type { KernelShape } from "./tiles.ts";
import type { GradientTiling } from "./gradient_tiling.ts";
import type { DecodeGeometry, DecodeLanes } from "./decode.ts";
import type { SelectChoice, SelectGeometry } from "./select_attention.ts";

/** The buffers a kernel can bind, by name; the buffer table sizes each (buffer_table.ts). */
export type BufferName =
  | `landmarkK${number}`
  | `landmarkV${number}`
  | `dLandmark${number}`
  | `linearW${number}`
  | `linearPhi${number}`
  | `linearState${number}`
  | `linearRows${number}`
  | `linearGradState${number}`
  | `selectMeans${number}`
  | `selectImportance${number}`
  | `selection${number}`
  | `selectBits${number}`
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
  | "splitLse"
  | "dO"
  | "gradStats"
  | "gradSchedule"
  | "dq"
  | "dkv"
  | "dkvPages"
  | "pageRefs"
  | "dgates"
  | "dConstRows"
  | "dConstants"
  | "learned"
  | "blockTable"
  | "sequences";

/** A storage binding: which buffer, and whether the kernel writes it. */
export interface Binding {
  /** The buffer bound (the buffer table sizes it). */
  buffer: BufferName;
  /** Bound `read_write` (the kernel writes it), else `read`. */
  writable: boolean;
}

/** What every dispatch has. */
export interface Dispatch {
  /** What it does, for people: pipeline labels, errors and the kernel plan's text. */
  label: string;
  /** Index into `KernelPlan.modules`: the WGSL module its pipeline is built from. */
  module: number;
  /** The module's entry point for this kernel: `main`, or `kernelI` in a shared module. */
  entryPoint: string;
  /** Storage bindings, in binding order. */
  bindings: Binding[];
  /** Workgroup counts `[x, y]` to dispatch. */
  workgroups: [number, number];
}

/**
 * One attention kernel (FlashAttention-2's forward pass over a component's BlockMask rows):
 * one workgroup per query tile (and key chunk) and batch·head.
 */
export interface AttentionKernel extends Dispatch {
  /** Which kind of dispatch this is (`Kernel` is a union on it). */
  kind: "attention";
  /** The branch (softmax) whose O and LSE it writes. */
  branch: number;
  /** The components it walks: the first, then those fused with it (run_fusion.ts). */
  members: number[];
  /** Query rows staged once in workgroup memory, or read from memory at every key tile. */
  querySource: "tile" | "memory";
  /** The next K/V tile loaded into registers while this one is computed, or not. */
  keyLoop: "prefetched" | "plain";
  /** A band's two half-seen corner tiles walked as one step first (edge_pairs.ts), or none. */
  edgePairs: EdgePairForm | "none";
  /**
   * write: overwrite its rows; merge: merge by log-sum-exp into earlier components' O and LSE;
   * o16: write float16 O directly; split: write a key chunk's partial rows for a combine pass.
   */
  output: "write" | "merge" | "o16" | "split";
  /** Split-K: key chunks per query tile and partial rows per chunk and head. */
  split?: { chunks: number; rows: number };
  /**
   * Where the call's queries are some of the key positions (query_tiles.ts): the query tiles
   * that hold some, ascending; workgroup x runs tile `queryTiles[x]` (key chunk aside), and no
   * other tile is dispatched. Absent: every query tile, workgroup x runs tile x.
   */
  queryTiles?: number[];
  /**
   * Its rows are packed sequences (DESIGN §5): the mask tests that query and key share a
   * sequence and the pattern at their positions within it, reading each query row's sequence
   * from the `sequences` buffer. Absent: every row is of one sequence.
   */
  packed?: true;
  /** Its slot in the schedule buffer's header. */
  scheduleSlot: number;
  /** Offset of its branch's slice of O, in vec4s. */
  oBase: number;
  /** Offset of its branch's slice of LSE, in elements. */
  lseBase: number;
}

/**
 * A decode kernel (decode.ts): the call's few queries of one query tile for every query head
 * of a key/value head, over one chunk of the tile's key tiles; one workgroup per (listed tile,
 * row block, key chunk) and batch·key/value head. It writes partial rows for a decode combine.
 */
export interface DecodeKernel extends Dispatch {
  /** Which kind of dispatch this is (`Kernel` is a union on it). */
  kind: "decode";
  /** The branch (softmax) it serves. */
  branch: number;
  /** The component it walks. */
  component: number;
  /** Its geometry: listed tiles, their query rows, rows per workgroup, key chunks. */
  geometry: DecodeGeometry;
  /** Keys scored per step (decodeSteps). */
  stepKeys: number;
  /** Keys of K staged in workgroup memory at a time (decodeSteps). */
  stageKeys: number;
  /**
   * The subgroup form (decodeLanes): groups of lanes load keys straight into registers and sum
   * their scores by shuffles; `stepKeys` and `stageKeys` are then unused. Absent: K is staged.
   */
  lanes?: DecodeLanes;
  /** Its slot in the schedule buffer's header. */
  scheduleSlot: number;
}

/** Merges a decode kernel's key chunks by log-sum-exp into O and LSE. */
export interface DecodeCombineKernel extends Dispatch {
  /** Which kind of dispatch this is (`Kernel` is a union on it). */
  kind: "decodeCombine";
  /** The branch whose O and LSE it merges into. */
  branch: number;
  /** The component whose decode kernel wrote the chunks. */
  component: number;
  /** Key chunks per query row. */
  chunks: number;
  /** The query rows the decode kernel covered: its geometry's `slotRows`. */
  slotRows: number[];
  /**
   * `merge` into what a clear or earlier components wrote; `write` the rows outright (the
   * branch's first kernel, its rows every query row: no clear runs); `o16` the same as float16
   * into the call's O (the call's only kernel writing O: no cast runs).
   */
  output: "merge" | "write" | "o16";
  /** Offset of the branch's slice of O, in vec4s. */
  oBase: number;
  /** Offset of the branch's slice of LSE, in elements. */
  lseBase: number;
}

/** Zeroes a branch's O and LSE (-inf) before kernels that merge into it. */
export interface ClearKernel extends Dispatch {
  /** Which kind of dispatch this is (`Kernel` is a union on it). */
  kind: "clear";
  /** Rows of the branch, `B·Hq·Nq`. */
  rows: number;
  /** Offset of the branch's slice of O, in vec4s. */
  oBase: number;
  /** Offset of the branch's slice of LSE, in elements. */
  lseBase: number;
}

/** Merges a split kernel's key chunks by log-sum-exp into O and LSE. */
export interface CombineKernel extends Dispatch {
  /** Which kind of dispatch this is (`Kernel` is a union on it). */
  kind: "combine";
  /** The branch whose O and LSE it merges into. */
  branch: number;
  /** The component whose split kernel wrote the chunks. */
  component: number;
  /** Key chunks per query tile. */
  chunks: number;
  /** Partial rows per chunk and head (query tiles × tileQ). */
  rows: number;
  /** Offset of the branch's slice of O, in vec4s. */
  oBase: number;
  /** Offset of the branch's slice of LSE, in elements. */
  lseBase: number;
}

/** Pools K and V into a lowRank's landmarks. */
export interface PoolKernel extends Dispatch {
  /** Which kind of dispatch this is (`Kernel` is a union on it). */
  kind: "pool";
  /** The lowRank's rank: its landmark buffers are `landmarkK{rank}` and `landmarkV{rank}`. */
  rank: number;
  /** Rows pooled into each landmark, `ceil(N / rank)`. */
  segment: number;
  /** Landmarks, `ceil(N / segment)` (dsl/low_rank.ts `landmarkGeometry`). */
  count: number;
}

/** One step of a hashBucket code set's pre-pass: codes, counts, their scan, the scatter. */
export interface HashKernel extends Dispatch {
  /** Which step: bucket codes, per-chunk counts, their scan, or the scatter into bucket order. */
  kind: "hashCodes" | "bucketCounts" | "bucketScan" | "bucketScatter";
  /** Index into the hash layout's code sets. */
  set: number;
}

/**
 * A select branch's kernels (DESIGN §2, select_attention.ts): `selectMeans` writes the block
 * means of K, `selectBlocks` each position's kept blocks (or, where the choice keeps the
 * importances in a buffer, their importances, and `selectPick` the kept blocks from them),
 * `selectAttention` the branch's O and LSE over them.
 */
export interface SelectKernel extends Dispatch {
  /** Which step of the branch. */
  kind: "selectMeans" | "selectBlocks" | "selectPick" | "selectAttention";
  /**
   * The select's branch: its buffers are `selectMeans{branch}`, `selection{branch}` and, where
   * the choice writes them, `selectImportance{branch}`.
   */
  branch: number;
  /** What the kernels are specialised on. */
  geometry: SelectGeometry;
  /** selectAttention: keys per staged tile. */
  tileK: number;
  /**
   * selectAttention: the subgroup form's split (select_lanes_wgsl.ts), where the device has
   * subgroups and the group's rows fit the lanes' registers; absent: the staged form.
   */
  lanes?: DecodeLanes;
  /**
   * selectBlocks and selectPick: the choice's form (invocations, positions per tile, how the
   * logits are computed, where the importances wait, how the blocks are picked).
   */
  choice: SelectChoice;
  /** Offset of the branch's slice of O, in vec4s. */
  oBase: number;
  /** Offset of the branch's slice of LSE, in elements. */
  lseBase: number;
}

/**
 * A select branch's backward kernels (select_gradients.ts, DESIGN §6), over the blocks the
 * forward kept: `selectBits` marks each position's kept blocks in a bitset, `selectGradQuery`
 * walks each position's kept blocks (query-major) into dQ, and `selectGradKey` walks each key
 * block's positions that kept it (key-major, testing the bitset) into dK and dV.
 */
export interface SelectGradientKernel extends Dispatch {
  /** Which step of the branch's backward pass. */
  kind: "selectBits" | "selectGradQuery" | "selectGradKey";
  /** The select's branch: it reads `selection{branch}` and `selectBits{branch}`. */
  branch: number;
  /** What the kernels are specialised on (the forward's). */
  geometry: SelectGeometry;
  /** selectGradQuery and selectGradKey: keys per staged tile. */
  tileK: number;
  /** selectGradKey: (position, query head) rows staged per step; else 0. */
  rows: number;
}

/** Blends a gated pattern's branches by their gates. */
export interface BlendKernel extends Dispatch {
  /** Which kind of dispatch this is (`Kernel` is a union on it). */
  kind: "blend";
  /** Branches it blends. */
  branches: number;
  /** Gates are `[B, Hq, N, branches]` rather than `[B, Hq, branches]`. */
  perPosition: boolean;
}

/** Converts the float32 O to float16. */
export interface CastKernel extends Dispatch {
  /** Which kind of dispatch this is (`Kernel` is a union on it). */
  kind: "cast";
}

/**
 * A kernel of the backward pass (plan_gradients.ts, DESIGN §6): `gradClear` zeroes dQ and dK/dV;
 * `gradStats` writes each branch row's LSE, gate and `Δ = g dO·O_i`; `gradQuery` walks a
 * component's BlockMask rows (query-major) into dQ; `gradKey` walks them transposed (key-major)
 * into dK and dV (a landmark component's into its landmarks', which `gradUnpool` then shares
 * among their segments' rows); `gradGates` writes the runtime gates' gradient; `gradConstants`
 * sums the rows' shares of the learnable constants' gradients (gradQuery writes them per row);
 * with paged K and V, `gradPages` sums dK and dV into the pool's shape through the inverted
 * block table (DESIGN §6).
 */
export interface GradientKernel extends Dispatch {
  /** Which kind of dispatch this is (`Kernel` is a union on it). */
  kind:
    | "gradClear"
    | "gradStats"
    | "gradQuery"
    | "gradKey"
    | "gradUnpool"
    | "gradGates"
    | "gradConstants"
    | "gradPages";
  /** The branch (0 for gradClear, gradGates, gradConstants and gradPages). */
  branch: number;
  /** The component of the branch (gradQuery and gradKey; else 0). */
  component: number;
  /** Its rows in the gradient schedule (gradQuery: the BlockMask's, gradKey: transposed). */
  scheduleSlot: number;
  /** gradQuery and gradKey: how a workgroup splits its tile and stages the other side's. */
  tiling?: GradientTiling;
  /**
   * gradQuery and gradKey where the queries are some of the positions (plan_gradients.ts): the
   * tiles it runs, ascending, tile `ownTiles[x / split]` at workgroup x (its schedule slot holds
   * their rows, in this order). Absent: every tile runs, tile `x / split`.
   */
  ownTiles?: number[];
}

/**
 * How a cooperative linear workgroup cuts its work (`chunkSums`, `gradChunkSums`, `output`):
 * 16 invocations across `valueTile` columns of V (4 adjacent each, `valueTile / 64` groups of
 * them), `invocations / 16` across its `rows`.
 */
export interface LinearTile {
  /** Rows it owns: features of the sums (chunk sums) or query positions of a chunk (output). */
  rows: number;
  /** Columns of V (or dO) it owns, a multiple of 64; `ceil(Dv / valueTile)` tiles cover Dv. */
  valueTile: number;
  /** Depth staged in workgroup memory per step: keys (chunk sums), features then keys (output). */
  block: number;
  /** Invocations per workgroup. */
  invocations: number;
  /** Bytes of workgroup memory it declares. */
  bytes: number;
}

/**
 * One step of a linear branch (DESIGN §2, plan_linear.ts): `features` writes φ of every Q and K
 * row; `chunkSums` each key chunk's `Σ φ(K) Vᵀ` and `Σ φ(K)`, a workgroup per chunk; `scan`
 * turns them into exclusive prefixes within segments of `segment` chunks and `scanSegments`
 * scans the segments' totals, leaving the total last; `output` each chunk's O and LSE, a
 * workgroup per (chunk, query head), from the chunk's prefix plus its own keys as a masked
 * matrix product (one invocation per query row, without `tile`, on software adapters). The
 * backward: `gradRows` each query row's `r = g / den` and `β = -g dO·O / den`; `gradChunkSums`
 * each query chunk's `Σ φ(Q) r dOᵀ` and `Σ β φ(Q)` over the key/value head's query heads;
 * `gradScan` and `gradScanSegments` their suffixes; `gradQuery` and `gradKey` add dQ, and dK
 * and dV, one invocation per row.
 */
export interface LinearKernel extends Dispatch {
  /** Which kind of dispatch this is (`Kernel` is a union on it). */
  kind: "linear";
  /** Which step of the linear branch. */
  step:
    | "features"
    | "chunkSums"
    | "scan"
    | "scanSegments"
    | "output"
    | "gradRows"
    | "gradChunkSums"
    | "gradScan"
    | "gradScanSegments"
    | "gradQuery"
    | "gradKey";
  /** The branch it computes. */
  branch: number;
  /** The feature map. */
  featureMap: "elu1" | "favor";
  /** Its features per row (D for elu1). */
  features: number;
  /** Keys `k <= q` only (chunked scan), or every key (one total). */
  causal: boolean;
  /** Positions per chunk (linearChunk). */
  chunk: number;
  /** Chunks over the Nk positions. */
  chunks: number;
  /** Chunks per segment of the two-level scan (linearSegment). */
  segment: number;
  /** How a cooperative step's workgroup cuts its work; absent for one invocation per item. */
  tile?: LinearTile;
  /** Offset of its branch's slice of O, in vec4s. */
  oBase: number;
  /** Offset of its branch's slice of LSE, in elements. */
  lseBase: number;
}

/** Every kind of dispatch. */
export type Kernel =
  | AttentionKernel
  | ClearKernel
  | CombineKernel
  | DecodeKernel
  | DecodeCombineKernel
  | PoolKernel
  | HashKernel
  | SelectKernel
  | SelectGradientKernel
  | BlendKernel
  | CastKernel
  | GradientKernel
  | LinearKernel;

/**
 * One WGSL module: the kernels whose pipelines it holds (indices into `kernels`). Attention
 * modules of several kernels (or a fused one) are shared: one body, an entry point per kernel.
 */
export interface ModuleEntry {
  /** Indices into `KernelPlan.kernels` of the kernels built from it. */
  kernels: number[];
  /** One body with an entry point per kernel (`kernelI`), else a single `main`. */
  shared: boolean;
  /** The edge-pair form its V tile is sized for, where a kernel of it walks pairs. */
  edgePairs?: EdgePairForm;
}

/** The kernel plan of one compile. */
export interface KernelPlan {
  /** Element type of Q, K, V and O. */
  dtype: Dtype;
  /** Tile shape and invocation split of every attention kernel. */
  kernel: KernelShape;
  /** Constant inner loop bounds (unrolled by GPU compilers), or read from the schedule. */
  unroll: boolean;
  /** The pattern's numbers baked into the WGSL, or read from the aux buffer. */
  constantParams: boolean;
  /**
   * K and V in pages (DESIGN §1): every kernel that binds `k` and `v` also binds `blockTable`,
   * last, and reads each row through it. `columns` is the table's row length as uploaded,
   * `ceil(N / pageSize)`. Absent where K and V are contiguous.
   */
  paged?: { pageSize: number; columns: number };
  /** Every dispatch, in the order they run. */
  kernels: Kernel[];
  /** The WGSL modules the kernels' pipelines are built from. */
  modules: ModuleEntry[];
}

/** What the kernel plan needs besides itself: schedule words and the layouts buffers follow. */
export interface KernelPlanResult {
  kernels: KernelPlan;
  /** The schedule buffer's words (schedule_buffer.ts). */
  schedule: Uint32Array;
  /** Per branch and component: query tiles whose schedule row starts with an edge pair. */
  edgePairs: number[][];
  /** Rows of the split-K partials; 0 without split-K. */
  splitRows: number;
  /** lowRank landmarks per rank. */
  landmarks: { rank: number; segment: number; count: number }[];
  /**
   * Per linear branch: its feature count, chunks, and favor's projection rounded to float32
   * (the `linearW{branch}` buffer; empty for elu1).
   */
  linear: { branch: number; features: number; chunks: number; projection: Float32Array }[];
  hash: HashLayout;
  /** The gradient schedule's words (plan_gradients.ts), empty without a backward pass. */
  gradSchedule: Uint32Array;
  /**
   * The score modifiers' learnable constants, one after another (`learnableOffsets`): the
   * `learned` buffer's float32 values, which kernels read them from; empty when none.
   */
  learned: Float32Array;
  /**
   * Packed sequences (`CompileOptions.packed`): the `sequences` buffer's words for one sequence
   * of every row, which a call with lengths replaces (packed_call.ts); empty otherwise.
   */
  sequences: Uint32Array;
}

/**
 * Whether a kernel runs before every attention kernel and only prepares their inputs (landmark
 * pooling, the hashBucket codes and sort): the bench times these apart.
 * @param k a kernel of the plan
 * @returns true for a pre-pass
 * @example
 * ```ts ignore
 * isPrePass({ kind: "pool", ... }); // true
 * ```
 */
export function isPrePass(k: Kernel): boolean {
  return PRE_PASSES.has(k.kind);
}

const PRE_PASSES = new Set<Kernel["kind"]>([
  "pool",
  "hashCodes",
  "bucketCounts",
  "bucketScan",
  "bucketScatter",
  "selectMeans",
  "selectBlocks",
  "selectPick",
]);
