/**
 * A linear branch's kernels (DESIGN §2, §6). Linear attention is sums, not a softmax, so it
 * needs no BlockMask: per (batch, key/value head) the keys are cut into chunks of `linearChunk`
 * positions, and a workgroup owns a chunk.
 *
 * - `features`: φ of every Q and K row (float32), one invocation per (row, feature).
 * - `chunkSums`: a workgroup per (chunk, key/value head, state tile) stages the chunk's φ(K) and
 *   V in workgroup memory, `block` keys at a time, and sums `Σ φ(K) Vᵀ` and `Σ φ(K)`; each
 *   invocation owns a few features × 4 adjacent columns.
 * - `scan` and `scanSegments`: a two-level exclusive scan over chunks, one invocation per state
 *   entry walking chunks in order (adjacent invocations, adjacent entries): first within
 *   segments of about √chunks chunks, in place, leaving each segment's total in a slot of its
 *   own; then over those totals, leaving the total after them. A chunk's prefix is its slot
 *   plus its segment's slot.
 * - `output`: a workgroup per (chunk, query head, value tile) stages φ(Q) and φ(K) of the chunk,
 *   its prefix S and z, `block` features at a time, and accumulates each (row, column) of
 *   `φ(Q) S` and the scores `φ(Q) φ(K)ᵀ` in registers; the scores, masked to keys at or before
 *   each query, go to workgroup memory, and V streams through `block` keys at a time for
 *   `scores V`. The normaliser is `φ(Q)·z` plus the scores' row sum, `O = (φ(Q) S + scores V) /
 *   den` and `LSE = log den`. Without causal, every row reads the total and no scores. The tile
 *   is the largest the device's workgroup memory holds (`outputTile`): all 64 positions of a
 *   chunk in 28.7 KB, half of them under WebGPU's default 16 KiB. Software adapters
 *   (`linearOutputTiles`) run one invocation per query row instead.
 *
 * Time and memory are linear in N: `N / chunk` workgroups per head for each cooperative step,
 * about √(N / chunk) sequential steps per scan level.
 *
 * The backward is the same scan reversed: with `a = g dO / den` and `β = -g dO·O / den` per
 * query row, a key's φ gradient and dV read the sums of `φ(Q) aᵀ` and `β φ(Q)` over the query
 * rows that see it, the chunks after its own by a suffix scan and its own chunk directly; a
 * query's φ gradient reads the forward's prefixes (still in `linearState`) the same way. Each
 * gradient row has one owning invocation, which adds into dQ or dK/dV once.
 * @module
 */
import { type AttentionShape, sequenceSizes } from "../core/shape.ts";
import { favorProjection, linearFeatureCount } from "../dsl/linear.ts";
import type { LinearPattern } from "../dsl/schema.ts";
import { elementwiseWorkgroups } from "./dispatch_sizes.ts";
import type { BufferName, KernelPlanResult, LinearKernel, LinearTile } from "./kernel_plan.ts";
import { linearChunk, linearOutputTiles, linearSegment } from "./kernel_rules.ts";
import type { Plan } from "./plan.ts";
import { own, read, written } from "./support_kernels.ts";

/** Invocations of a linear scan workgroup (and the backward's chunk sums). */
export const LINEAR_WORKGROUP = 64;

/**
 * Every linear branch's feature count, chunks and favor projection (float32).
 * @param plan the plan
 * @param shape the call's shape
 * @returns one entry per linear branch
 */
export function linearSets(plan: Plan, shape: AttentionShape): KernelPlanResult["linear"] {
  return plan.branches.flatMap((b, branch) => {
    if (!b.linear) return [];
    const where = plan.pattern.kind === "gated" ? `pattern.branches[${branch}]` : "pattern";
    const features = linearFeatureCount(b.linear, shape.headDim, where);
    const projection = b.linear.featureMap === "favor"
      ? Float32Array.from(favorProjection(b.linear.seed ?? 0, features, shape.headDim))
      : new Float32Array(0);
    const { chunks } = geometry(shape);
    return [{ branch, features, chunks, projection }];
  });
}

function geometry(shape: AttentionShape) {
  const chunk = linearChunk(shape.headsQ / shape.headsKV);
  const chunks = Math.ceil(sequenceSizes(shape).nk / chunk);
  return { chunk, chunks, segment: linearSegment(chunks) };
}

/** What the linear kernels of one branch share. */
function base(b: number, p: LinearPattern, shape: AttentionShape, features: number) {
  const { nq, dv } = sequenceSizes(shape);
  const rows = shape.batch * shape.headsQ * nq;
  return {
    ...own,
    branch: b,
    featureMap: p.featureMap,
    features,
    causal: p.causal ?? false,
    ...geometry(shape),
    oBase: b * rows * (dv / 4),
    lseBase: b * rows,
  };
}

/**
 * A linear branch's forward kernels: φ of every row, chunk sums, the two scan levels, each
 * chunk's O and LSE.
 * @param b the branch
 * @param p its pattern
 * @param o the shape, its feature count, the O buffer it writes (`o` or `branchO`), the first
 * query's key position and the device's workgroup memory
 * @returns the kernels, in order
 */
export function linearKernels(
  b: number,
  p: LinearPattern,
  o: {
    shape: AttentionShape;
    features: number;
    oName: BufferName;
    queryOffset: number;
    workgroupBytes: number;
    /** Whether loops are unrolled: GPUs, not software adapters (`linearOutputTiles`). */
    unroll: boolean;
  },
): LinearKernel[] {
  const { shape, features } = o;
  const { nq, nk, dv } = sequenceSizes(shape);
  const common = base(b, p, shape, features);
  const kv = shape.batch * shape.headsKV;
  const rowsQ = shape.batch * shape.headsQ * nq;
  const w = p.featureMap === "favor" ? [read(`linearW${b}`)] : [];
  const label = `branch ${b}: linear ${p.featureMap}`;
  const sums = sumsTile(features, dv, common.chunk);
  const out = linearOutputTiles(o.unroll)
    ? outputTile({ ...common, dv, workgroupBytes: o.workgroupBytes })
    : undefined;
  // Chunks before the first query's hold no query: no output workgroup.
  const blocks = out &&
    (common.chunks - Math.floor(o.queryOffset / common.chunk)) * (common.chunk / out.rows);
  return [
    {
      ...common,
      kind: "linear",
      step: "features",
      label: `${label}: φ of Q and K rows (${features} features)`,
      bindings: [read("q"), read("k"), ...w, written(`linearPhi${b}`)],
      workgroups: elementwiseWorkgroups((rowsQ + kv * nk) * features),
    },
    {
      ...common,
      kind: "linear",
      step: "chunkSums",
      label: `${label}: Σ φ(K) Vᵀ and Σ φ(K) per chunk of ${common.chunk} keys`,
      bindings: [read("v"), read(`linearPhi${b}`), written(`linearState${b}`)],
      tile: sums,
      workgroups: [common.chunks, kv * stateTiles(features, dv, sums)],
    },
    ...scanKernels(common, { b, label, kv, state: features * (dv + 1), backward: false }),
    {
      ...common,
      kind: "linear",
      step: "output",
      label: `${label}: O and LSE, ` +
        (out ? `${out.rows} query positions a workgroup` : "one query row an invocation"),
      bindings: [
        read("v"),
        read(`linearPhi${b}`),
        read(`linearState${b}`),
        written(o.oName),
        written("lse"),
      ],
      ...(out
        ? {
          tile: out,
          workgroups: [blocks! * Math.ceil(dv / out.valueTile), shape.batch * shape.headsQ],
        }
        : { workgroups: elementwiseWorkgroups(rowsQ) }),
    },
  ];
}

/** The two scan levels over a state buffer: within segments, then over the segments' totals. */
function scanKernels(
  common: ReturnType<typeof base>,
  o: { b: number; label: string; kv: number; state: number; backward: boolean },
): LinearKernel[] {
  const buffer: BufferName = o.backward ? `linearGradState${o.b}` : `linearState${o.b}`;
  const way = o.backward ? "suffix" : "prefix";
  const entries = Math.ceil(o.state / LINEAR_WORKGROUP);
  const segments = Math.ceil(common.chunks / common.segment);
  return [{
    ...common,
    kind: "linear",
    step: o.backward ? "gradScan" : "scan",
    label: `${o.label}: ${way} within ${segments} segments of ${common.segment} chunks`,
    bindings: [written(buffer)],
    workgroups: [entries, segments * o.kv],
  }, {
    ...common,
    kind: "linear",
    step: o.backward ? "gradScanSegments" : "scanSegments",
    label: `${o.label}: ${way} over the ${segments} segments`,
    bindings: [written(buffer)],
    workgroups: [entries, o.kv],
  }];
}

/** Invocations across a cooperative tile's columns; each owns 4 adjacent columns. */
const COLUMN_GROUPS = 16;

/** A tile's columns of V: 64 per group of 16 invocations, at most 128. */
function valueColumns(dv: number): number {
  return 64 * Math.min(2, Math.ceil(dv / 64));
}

/**
 * The chunk sums' tile: up to 64 features × 128 columns (4 × 2 vec4 sums an invocation), 16
 * keys staged a step, 12 KiB at most, under WebGPU's default 16 KiB of workgroup memory.
 */
function sumsTile(features: number, dv: number, chunk: number): LinearTile {
  const rows = Math.min(64, COLUMN_GROUPS * Math.ceil(features / COLUMN_GROUPS));
  const valueTile = valueColumns(dv);
  const block = Math.min(16, chunk);
  return { rows, valueTile, block, invocations: 256, bytes: 4 * block * (rows + valueTile) };
}

/** Workgroups per chunk of a sums step: feature tiles × value tiles. */
function stateTiles(features: number, dv: number, tile: LinearTile): number {
  return Math.ceil(features / tile.rows) * Math.ceil(dv / tile.valueTile);
}

/**
 * The output's tile, the largest that fits the device's workgroup memory: every query position
 * of the chunk (φ(K) staged once for all of them), then more columns of V, then 16 features a
 * step; halving the rows last. Its memory: φ(Q) `rows × block`, φ(K) `block × chunk`, S (then V)
 * `block × valueTile`, z `block`, and the scores `rows × chunk` (causal only), all float32.
 * @param o the chunk, Dv, whether causal, and the device's workgroup memory in bytes
 * @returns the tile
 * @example
 * ```ts
 * import { outputTile } from "./plan_linear.ts";
 * outputTile({ chunk: 64, dv: 64, causal: true, workgroupBytes: 16384 }).rows; // 32
 * ```
 */
export function outputTile(o: {
  chunk: number;
  dv: number;
  causal: boolean;
  workgroupBytes: number;
}): LinearTile {
  const bytes = (rows: number, valueTile: number, block: number) =>
    4 * (rows * block + block * valueTile + block +
      (o.causal ? block * o.chunk + rows * o.chunk : 0));
  const columns = [...new Set([valueColumns(o.dv), 64])];
  for (let rows = o.chunk; rows >= 1; rows /= 2) {
    for (const valueTile of columns) {
      for (const block of [...new Set([Math.min(16, o.chunk), Math.min(8, o.chunk)])]) {
        const size = bytes(rows, valueTile, block);
        if (size <= o.workgroupBytes) {
          const invocations = COLUMN_GROUPS * Math.min(COLUMN_GROUPS, rows);
          return { rows, valueTile, block, invocations, bytes: size };
        }
      }
    }
  }
  throw new Error(
    `Weft internal error: no linear output tile fits ${o.workgroupBytes} bytes of workgroup ` +
      `memory (WebGPU guarantees 16384)`,
  );
}

/**
 * State slots per (batch, key/value head) of a linear branch: each chunk's sums, each scan
 * segment's, then the total.
 * @param chunks chunks over the key positions
 * @returns the slots
 * @example
 * ```ts
 * import { linearSlots } from "./plan_linear.ts";
 * linearSlots(4096); // 4096 chunks + 64 segments + the total = 4161
 * ```
 */
export function linearSlots(chunks: number): number {
  return chunks + Math.ceil(chunks / linearSegment(chunks)) + 1;
}

/**
 * A linear branch's backward kernels, after the forward's and the gradient clear.
 * @param b the branch
 * @param p its pattern
 * @param o the shape, its feature count, the O buffer it wrote, and whether gated
 * @returns the kernels, in order
 */
export function linearGradientKernels(
  b: number,
  p: LinearPattern,
  o: { shape: AttentionShape; features: number; oName: BufferName; gated: boolean },
): LinearKernel[] {
  const { shape, features } = o;
  const { nq, nk, dv } = sequenceSizes(shape);
  const common = base(b, p, shape, features);
  const kv = shape.batch * shape.headsKV;
  const rowsQ = shape.batch * shape.headsQ * nq;
  const w = p.featureMap === "favor" ? [read(`linearW${b}`)] : [];
  const state = features * (dv + 1);
  const label = `gradients: branch ${b} linear ${p.featureMap}`;
  return [
    {
      ...common,
      kind: "linear",
      step: "gradRows",
      label: `${label}: g / den and -g dO·O / den per query row`,
      bindings: [
        read("dO"),
        read(o.oName),
        read("lse"),
        ...(o.gated ? [read("gates")] : []),
        written(`linearRows${b}`),
      ],
      workgroups: elementwiseWorkgroups(rowsQ),
    },
    {
      ...common,
      kind: "linear",
      step: "gradChunkSums",
      label: `${label}: Σ φ(Q) aᵀ and Σ β φ(Q) per chunk of ${common.chunk} positions`,
      bindings: [
        read("dO"),
        read(`linearPhi${b}`),
        read(`linearRows${b}`),
        written(`linearGradState${b}`),
      ],
      workgroups: [common.chunks, kv],
    },
    ...scanKernels(common, { b, label, kv, state, backward: true }),
    {
      ...common,
      kind: "linear",
      step: "gradQuery",
      label: `${label}: dQ per query row`,
      bindings: [
        read("q"),
        read("v"),
        read("dO"),
        ...w,
        read(`linearPhi${b}`),
        read(`linearState${b}`),
        read(`linearRows${b}`),
        written("dq"),
      ],
      workgroups: elementwiseWorkgroups(rowsQ),
    },
    {
      ...common,
      kind: "linear",
      step: "gradKey",
      label: `${label}: dK and dV per key row`,
      bindings: [
        read("k"),
        read("v"),
        read("dO"),
        ...w,
        read(`linearPhi${b}`),
        read(`linearGradState${b}`),
        read(`linearRows${b}`),
        written("dkv"),
      ],
      workgroups: elementwiseWorkgroups(kv * nk),
    },
  ];
}
