/**
 * Kernel shapes sized from the device. The K and V tiles, the P tile and, where the kernel
 * stages it, the query tile live in workgroup memory, so only candidates whose tiles fit
 * `maxComputeWorkgroupStorageSize` are possible; without timings the most preferred of them
 * wins (`chooseTiles`), and a runtime that can time kernels picks among the first few by
 * measuring (`tuningCandidates`, used by runtime/autotune.ts). Within a workgroup, invocations
 * own `rowsPerThread` query rows and split keys and output dims `cols` ways (see the kernel's
 * geometry).
 * @module
 */
import { type EdgePairForm, vTileLength } from "./edge_pairs.ts";
import type { TileShape } from "./plan.ts";

/** The adapter limits the compiler sizes tiles from. */
export interface DeviceLimits {
  /** Bytes of workgroup memory: the staged tiles must fit. */
  maxComputeWorkgroupStorageSize: number;
  /** Invocations per workgroup (default 256): a kernel shape's `threads` may not exceed it. */
  maxComputeInvocationsPerWorkgroup?: number;
  /** Largest storage binding in bytes; compile refuses tensors past it when given. */
  maxStorageBufferBindingSize?: number;
  /**
   * Subgroup-matrix shapes the device multiplies (Dawn's `chromium-experimental-subgroup-matrix`):
   * where one fits, float16 kernels compute QKᵀ and P·V on them (matrix_tiles.ts).
   */
  matrices?: MatrixConfig[];
  /**
   * How the device's WGSL spells a matrix load's and store's majorness: `template`
   * (`subgroupMatrixLoad<T, col_major>(p, offset, stride)`, current Dawn) or `argument` (a
   * bool argument, the first form, which current Dawn compiles with a deprecation warning per
   * call). Default `argument`.
   */
  matrixMajorness?: "template" | "argument";
  /**
   * Subgroups, where the device was created with them: the decode kernel then sums a key's
   * dot products across lanes by shuffles instead of staging K (decode_lanes_wgsl.ts).
   */
  subgroups?: SubgroupLimits;
}

/** The subgroups a device offers kernels. */
export interface SubgroupLimits {
  /** The smallest subgroup size the device runs (a power of two). */
  size: number;
  /** Whether its WGSL wants `enable subgroups;` (Tint does; naga refuses the line). */
  directive: boolean;
}

/** One subgroup-matrix shape: an M x K by K x N product, accumulated as M x N. */
export interface MatrixConfig {
  /** Element type of the left and right matrices. */
  input: "f16";
  /** Element type of the result. */
  result: "f16" | "f32";
  /** Rows of the left matrix and of the result. */
  m: number;
  /** Columns of the right matrix and of the result. */
  n: number;
  /** Columns of the left matrix, rows of the right one: the product's reduction. */
  k: number;
  /** Invocations per subgroup (the adapter's one subgroup size). */
  subgroupSize: number;
}

/** WebGPU's default limits: what every adapter guarantees. */
export const DEFAULT_LIMITS: DeviceLimits = {
  maxComputeWorkgroupStorageSize: 16384,
  maxComputeInvocationsPerWorkgroup: 256,
};

/** A tile shape plus how the kernel's invocations split it. */
export interface KernelShape extends TileShape {
  /** Invocations per workgroup. */
  threads: number;
  /** Query rows each invocation owns. */
  rowsPerThread: number;
  /**
   * QKᵀ and P·V on subgroup matrices of this shape (float16 inputs, float32 results); each of
   * the `threads / subgroupSize` subgroups owns an equal band of the query rows. Absent: register
   * tiles on the CUDA cores. The softmax keeps the invocations' split either way.
   */
  matrix?: MatrixConfig;
  /**
   * Matrix kernels only: the query tile goes through workgroup memory in this many parts of
   * D / queryParts dims each, every part's left matrices loaded before the next is staged, so
   * that a tile of long rows (D = 128) needs only a part of its bytes at once. Absent: 1.
   */
  queryParts?: number;
  /**
   * Matrix kernels only: two subgroups share each band of query rows (2), one scoring the first
   * half of the key tile's N-blocks and holding O for the first half of D's, the other the
   * second halves, so each loads half of K and V as matrices (Q is held by both). Absent: 1.
   */
  bandSplit?: number;
}

/**
 * Candidates in order of preference: (tileQ, tileK, rows per invocation[, columns]). The order
 * comes from sweeps on the H100 and H200 at N = 16384, D = 64: 256
 * invocations of two rows each beat 128 of four and 64 of eight (dense f32 39.9 vs 46.2 vs 78.6
 * ms), and with float16 arithmetic 64x32 beat 64x64 (dense f16 24.0 vs 26.7 ms). Columns
 * default to the widest split (`kernelShape`); float16 does better with 4 columns of 64x32,
 * each invocation owning 8 keys and 16 output dims (dense f16 20.8 vs 23.5 ms on the H200),
 * float32 does not (37.5 ms either way, ring and window slower). Float32 kernels, which read
 * query rows from memory, fit 64x64 in 48 KiB: on the H200 it runs dense 5% faster than 64x32
 * (30.3 vs 31.9 ms) and bands slower (ring(128) 2.65 vs 2.40 ms), so the tuner decides per
 * pattern. The order is the untuned default and the autotuner's trying order: the likely winner
 * goes first and sets the bar that slower candidates are cut off against.
 */
const CANDIDATES: [number, number, number, number?][] = [
  [64, 32, 2],
  [64, 64, 2],
  [128, 32, 4],
  [64, 32, 4],
  [32, 32, 4],
  [32, 16, 4],
  [16, 16, 4],
  [16, 8, 2],
  [8, 8, 2],
];
const CANDIDATES_F16: [number, number, number, number?][] = [[64, 32, 2, 4], ...CANDIDATES];

/**
 * Subgroup-matrix candidates, (tileQ, tileK, subgroups, rows per invocation): a subgroup owns
 * tileQ / subgroups query rows (a multiple of the matrix M) against the whole key tile. Tried
 * before the register-tile candidates wherever the device lists a float16 shape with float32
 * results.
 */
const MATRIX_CANDIDATES: [number, number, number, number][] = [
  [128, 32, 8, 2],
  [128, 32, 4, 4],
  [64, 64, 4, 2],
  [64, 32, 4, 2],
  [64, 64, 2, 2],
  [32, 64, 2, 2],
  [32, 32, 2, 2],
  [16, 32, 1, 2],
  [16, 16, 1, 2],
];

/**
 * The subgroup-matrix shape float16 kernels use on a device: a float16 one with float32
 * results (scores and P·V need float32 sums), the largest first.
 * @param limits the device's limits and matrices
 * @returns the shape, or undefined where the device has none
 */
export function matrixConfig(limits?: DeviceLimits): MatrixConfig | undefined {
  const usable = (limits?.matrices ?? []).filter((c) => c.input === "f16" && c.result === "f32");
  return usable.sort((a, b) => b.m * b.n * b.k - a.m * a.n * a.k)[0];
}

/** Whether the device multiplies this subgroup-matrix shape. */
export function hasMatrix(limits: DeviceLimits, c: MatrixConfig): boolean {
  return (limits.matrices ?? []).some((x) =>
    x.input === c.input && x.result === c.result && x.m === c.m && x.n === c.n && x.k === c.k &&
    x.subgroupSize === c.subgroupSize
  );
}

/**
 * A subgroup-matrix kernel shape, or undefined where the matrices do not tile it: each
 * subgroup's rows a multiple of M, tileK and D multiples of N and K, and the invocations'
 * softmax split dividing the tile.
 */
export function matrixShape(
  tileQ: number,
  tileK: number,
  subgroups: number,
  rowsPerThread: number,
  headDim: number,
  config: MatrixConfig,
  queryParts = 1,
  bandSplit = 1,
): KernelShape | undefined {
  const threads = subgroups * config.subgroupSize;
  const rowGroups = tileQ / rowsPerThread;
  const cols = threads / rowGroups;
  const d4 = headDim / 4;
  const fits = Number.isInteger(rowGroups) && Number.isInteger(cols) && cols >= 1 &&
    tileK % cols === 0 && d4 % cols === 0 && ((tileQ * bandSplit) / subgroups) % config.m === 0 &&
    tileK % config.n === 0 && tileK % config.k === 0 && headDim % config.n === 0 &&
    headDim % config.k === 0 && queryPartFits(headDim, queryParts, config) &&
    bandSplitFits(tileK, subgroups, headDim, config, cols, bandSplit);
  if (!fits) return undefined;
  return {
    tileQ,
    tileK,
    threads,
    rowsPerThread,
    matrix: config,
    ...(queryParts > 1 ? { queryParts } : {}),
    ...(bandSplit > 1 ? { bandSplit } : {}),
  };
}

/**
 * Whether two subgroups can share each band (`bandSplit` 2; matrixShape checks that bands are
 * whole M-row blocks): pairs of subgroups, the key tile's and D's N-blocks in two equal halves,
 * and O's passes through the matrices' results (`matrixOutColumns`) holding half a pass of each
 * half's dims, in whole N-blocks and whole runs of a row's vec4 columns (4 * cols dims).
 */
function bandSplitFits(
  tileK: number,
  subgroups: number,
  headDim: number,
  config: MatrixConfig,
  cols: number,
  split: number,
): boolean {
  if (split === 1) return true;
  if (split !== 2 || subgroups % 2 !== 0) return false;
  const { columns, passes } = matrixOutColumns(tileK, headDim, cols);
  const half = (passes > 1 ? columns : headDim) / 2;
  return (tileK / config.n) % 2 === 0 &&
    (headDim / config.n) % 2 === 0 && half % config.n === 0 && half % (4 * cols) === 0 &&
    (headDim / 2) % (4 * cols) === 0;
}

/** Whether the query tile splits into `parts` of whole matrix steps (1, 2 or 4 parts). */
function queryPartFits(headDim: number, parts: number, config: MatrixConfig): boolean {
  return [1, 2, 4].includes(parts) && (headDim / parts) % config.k === 0 &&
    (headDim / parts) % 4 === 0;
}

/**
 * Workgroup memory of a kernel shape, in bytes.
 * @param s the kernel shape
 * @param headDim D
 * @param dtype element type of the staged tiles ("f32" or "f16")
 * @param stagedQuery whether the kernel stages its query tile in workgroup memory; kernels that
 *   read query rows from global memory (compile.ts, `globalQuery`) declare no query tile
 * @param edgePairs how the kernel holds edge pairs (edge_pairs.ts), if it walks them: its V
 *   tile holds two padded K tiles (wide) or one (narrow)
 * @param valueDim Dv, the V tile's head dim (default D)
 * @returns bytes of workgroup memory the kernel declares
 * @example
 * ```ts
 * import { kernelStorageBytes } from "./tiles.ts";
 * kernelStorageBytes({ tileQ: 32, tileK: 32, threads: 64, rowsPerThread: 4 }, 64); // 26752
 * kernelStorageBytes({ tileQ: 32, tileK: 32, threads: 64, rowsPerThread: 4 }, 64, "f32", false); // 18048
 * ```
 */
export function kernelStorageBytes(
  s: KernelShape,
  headDim: number,
  dtype = "f32",
  stagedQuery = true,
  edgePairs?: EdgePairForm,
  valueDim = headDim,
): number {
  const d4 = headDim / 4;
  const cols = s.threads / (s.tileQ / s.rowsPerThread);
  if (s.matrix) return matrixStorageBytes(s, headDim, cols);
  const vec4Bytes = dtype === "f16" ? 8 : 16;
  // Q, K (padded rows), V and P (padded by one vec4) in the element type, K and P sharing
  // memory; row shares and key positions in 32-bit words.
  const q = stagedQuery ? s.tileQ * (d4 + 1) : 0;
  const kOrP = Math.max(s.tileK * (d4 + 1), s.tileQ * (s.tileK / 4 + 1));
  const v = vTileLength(s.tileK, valueDim / 4, edgePairs);
  return vec4Bytes * (q + kOrP + v) + 4 * (s.tileQ * cols + s.tileK);
}

/**
 * Padding of the subgroup-matrix tiles' rows, in elements: float16 rows of D + 8 and tileK + 8
 * keep every row 16-byte aligned (what matrix loads want) and put the 8 rows a load reads at
 * once in distinct banks.
 */
export const MATRIX_PAD = 8;
/** Padding of the float32 rows the matrices store (scores, P·V): 16-byte aligned rows. */
export const MATRIX_OUT_PAD = 4;

/**
 * Columns of the float32 array the matrices store into: a tile of scores (tileK), and O, which
 * passes through it only when rows are rescaled and once at the end, in D / tileK passes of
 * tileK columns where tileK is narrower than D and each invocation's vec4 columns (4 * cols
 * apart) fall whole into a pass; else in one pass of D.
 * @param tileK keys per tile
 * @param headDim D
 * @param cols invocations sharing a row
 * @returns the columns and the passes O takes
 */
export function matrixOutColumns(
  tileK: number,
  headDim: number,
  cols: number,
): { columns: number; passes: number } {
  const passes = tileK < headDim && headDim % tileK === 0 && tileK % (4 * cols) === 0
    ? headDim / tileK
    : 1;
  return { columns: passes > 1 ? tileK : Math.max(tileK, headDim), passes };
}

/**
 * The padded float16 row of one part of a matrix kernel's query tile (`queryParts`).
 * @param headDim D
 * @param queryParts the parts the tile is staged in (default 1)
 * @returns D / queryParts + MATRIX_PAD
 */
export function matrixQueryRow(headDim: number, queryParts = 1): number {
  return headDim / queryParts + MATRIX_PAD;
}

/**
 * Workgroup memory of a subgroup-matrix kernel: the query tile (or a part of it), then K, then
 * P, in one float16 array; V; the matrices' float32 results (S, then O, `matrixOutColumns`); row
 * shares, key positions and the rescaling flag.
 */
function matrixStorageBytes(s: KernelShape, headDim: number, cols: number): number {
  const qk = headDim + MATRIX_PAD, p = s.tileK + MATRIX_PAD;
  const kp = Math.max(s.tileQ * matrixQueryRow(headDim, s.queryParts), s.tileK * qk, s.tileQ * p);
  const v = s.tileK * qk;
  const out = s.tileQ * (matrixOutColumns(s.tileK, headDim, cols).columns + MATRIX_OUT_PAD);
  return 2 * (kp + v) + 4 * out + 4 * (s.tileQ * cols + s.tileK) + RESCALE_FLAG_BYTES;
}

/** The matrix kernels' rescaling flag: 16 bytes, as all their workgroup variables. */
const RESCALE_FLAG_BYTES = 16;

/**
 * Whether a kernel may stage its query tile, where the caller has not said (no pattern yet):
 * float32 kernels never do (compile.ts, `queryFromMemoryPays`, reads query rows from memory
 * for every float32 pattern); float16 ones do for patterns with rows that see every key tile,
 * so a float16 bound counts the tile. The default of the fit checks below.
 * @param dtype element type ("f32" or "f16")
 * @returns true for float16
 */
export function mayStageQuery(dtype: string): boolean {
  return dtype === "f16";
}

/**
 * Registers per invocation that hold the next K/V tile (one vec4 of K and one of V each) are
 * at most this many: more would cost occupancy more than the hidden load latency gains.
 */
const MAX_PREFETCH_SLOTS = 4;

/**
 * Whether the kernel loads the next K/V tile into registers while computing the current one.
 * Each register slot holds one vec4 of K and the same vec4 of V, so V's rows must be as wide as
 * K's: a value head dim of its own loads its tiles between two barriers.
 * @param s the kernel shape
 * @param headDim D
 * @param valueDim Dv (default D)
 * @returns true when Dv == D and each invocation holds at most MAX_PREFETCH_SLOTS vec4s of K
 *   (and of V)
 * @example
 * ```ts
 * import { kernelShape, prefetches } from "./tiles.ts";
 * prefetches(kernelShape(64, 32, 2, 16)!, 64); // true: 2 vec4s of K and 2 of V per invocation
 * ```
 */
export function prefetches(s: KernelShape, headDim: number, valueDim = headDim): boolean {
  return valueDim === headDim &&
    Math.ceil((s.tileK * headDim / 4) / s.threads) <= MAX_PREFETCH_SLOTS;
}

/**
 * The kernel shape for a head dim on a device: the first candidate that fits. Runtimes that can
 * time kernels refine this per pattern with the autotuner (runtime/autotune.ts).
 * @param headDim D (a multiple of 4)
 * @param limits the adapter's limits (defaults to WebGPU's)
 * @param dtype element type of the staged tiles ("f32" or "f16")
 * @param stagedQuery whether the kernel stages its query tile (default `mayStageQuery`)
 * @param valueDim Dv, the head dim of V and O (default D)
 * @returns tile shape and invocation split
 * @example
 * ```ts
 * import { chooseTiles } from "./tiles.ts";
 * chooseTiles(64, { maxComputeWorkgroupStorageSize: 49152 }); // { tileQ: 64, tileK: 32, threads: 256, rowsPerThread: 2 }
 * ```
 */
export function chooseTiles(
  headDim: number,
  limits: DeviceLimits = DEFAULT_LIMITS,
  dtype = "f32",
  stagedQuery = mayStageQuery(dtype),
  valueDim = headDim,
): KernelShape {
  return tuningCandidates(headDim, limits, dtype, 1, stagedQuery, valueDim)[0] ??
    kernelShape(4, 4, 1, valueDim / 4)!;
}

/**
 * The candidates that fit a device, in order of preference: what the autotuner times. Every
 * candidate fits, so trying one can fail only through a bug, never through the device's limits.
 * @param headDim D (a multiple of 4)
 * @param limits the adapter's limits
 * @param dtype element type of the staged tiles ("f32" or "f16")
 * @param max at most this many (the most preferred)
 * @param stagedQuery whether the kernels stage their query tile (default `mayStageQuery`)
 * @param valueDim Dv, the head dim of V and O (default D); subgroup matrices need Dv == D
 * @returns up to `max` kernel shapes, possibly none on a very small device
 * @example
 * ```ts
 * import { tuningCandidates, kernelShapeName } from "./tiles.ts";
 * const limits = { maxComputeWorkgroupStorageSize: 49152, maxComputeInvocationsPerWorkgroup: 1024 };
 * tuningCandidates(64, limits, "f32", 3).map((s) => kernelShapeName(s, 64)); // ["64x32x2", "64x64x2", "128x32x4"]
 * ```
 */
export function tuningCandidates(
  headDim: number,
  limits: DeviceLimits,
  dtype = "f32",
  max = 6,
  stagedQuery = mayStageQuery(dtype),
  valueDim = headDim,
): KernelShape[] {
  const out: KernelShape[] = [];
  const config = dtype === "f16" && valueDim === headDim ? matrixConfig(limits) : undefined;
  for (const [tileQ, tileK, subgroups, rowsPerThread] of config ? MATRIX_CANDIDATES : []) {
    if (out.length >= max) break;
    const shape = matrixShape(tileQ, tileK, subgroups, rowsPerThread, headDim, config!);
    if (shape && kernelFits(shape, headDim, dtype, limits, true)) out.push(shape);
  }
  for (const [tileQ, tileK, rowsPerThread, cols] of dtype === "f16" ? CANDIDATES_F16 : CANDIDATES) {
    if (out.length >= max) break;
    const shape = kernelShape(tileQ, tileK, rowsPerThread, valueDim / 4, cols);
    if (shape && kernelFits(shape, headDim, dtype, limits, stagedQuery, valueDim)) out.push(shape);
  }
  return out;
}

/**
 * Whether a kernel shape fits a device's workgroup memory and invocation limit.
 * @param s the kernel shape
 * @param headDim D
 * @param dtype element type of the staged tiles ("f32" or "f16")
 * @param limits the adapter's limits
 * @param stagedQuery whether the kernel stages its query tile (default `mayStageQuery`)
 * @param valueDim Dv (default D)
 * @returns true when a pipeline of this shape is within the limits
 * @example
 * ```ts
 * import { kernelFits, kernelShape } from "./tiles.ts";
 * const limits = { maxComputeWorkgroupStorageSize: 49152 };
 * kernelFits(kernelShape(64, 64, 2, 16)!, 64, "f32", limits); // true: 36,096 bytes, no query tile
 * kernelFits(kernelShape(64, 64, 2, 16)!, 64, "f32", limits, true); // false: 53,504 with it
 * ```
 */
export function kernelFits(
  s: KernelShape,
  headDim: number,
  dtype: string,
  limits: DeviceLimits,
  stagedQuery = mayStageQuery(dtype),
  valueDim = headDim,
): boolean {
  const maxThreads = limits.maxComputeInvocationsPerWorkgroup ??
    DEFAULT_LIMITS.maxComputeInvocationsPerWorkgroup!;
  if (s.matrix && !(dtype === "f16" && hasMatrix(limits, s.matrix) && stagedQuery)) return false;
  return s.threads <= maxThreads &&
    kernelStorageBytes(s, headDim, dtype, stagedQuery, undefined, valueDim) <=
      limits.maxComputeWorkgroupStorageSize;
}

/**
 * A kernel shape's short name, `tileQ x tileK x rowsPerThread`, with `c` and the column count
 * when the columns are not `kernelShape`'s widest split (the invocation count follows from
 * these and the output head dim): how reports and the autotune cache write it. Matrix shapes add
 * `.mma` with the matrix and subgroup size, `q` with the query tile's parts where it has more than
 * one, and `h` where subgroups share bands (`128x32x2c4.mma16x16x16s32q2h2`).
 * @param s the kernel shape
 * @param headDim the output head dim (Dv, which is D unless V has one of its own), which the
 *   widest split depends on
 * @returns e.g. "64x32x2", or "64x32x2c4" for 4 columns of 64x32 at D = 64
 * @example
 * ```ts
 * import { kernelShapeName } from "./tiles.ts";
 * kernelShapeName({ tileQ: 64, tileK: 32, threads: 256, rowsPerThread: 2 }, 64); // "64x32x2"
 * kernelShapeName({ tileQ: 64, tileK: 32, threads: 128, rowsPerThread: 2 }, 64); // "64x32x2c4"
 * ```
 */
export function kernelShapeName(s: KernelShape, headDim: number): string {
  const base = `${s.tileQ}x${s.tileK}x${s.rowsPerThread}`;
  const cols = s.threads / (s.tileQ / s.rowsPerThread);
  const m = s.matrix;
  const parts = (s.queryParts ?? 1) > 1 ? `q${s.queryParts}` : "";
  const split = (s.bandSplit ?? 1) > 1 ? `h${s.bandSplit}` : "";
  if (m) return `${base}c${cols}.mma${m.m}x${m.n}x${m.k}s${m.subgroupSize}${parts}${split}`;
  return cols === widestColumns(s.tileK, headDim / 4) ? base : `${base}c${cols}`;
}

/** `tileQ x tileK x rows [c cols] [.mma M x N x K s size [q parts] [h split]]`. */
const SHAPE_NAME =
  /^(\d+)x(\d+)x(\d+)(?:c(\d+))?(?:\.mma(\d+)x(\d+)x(\d+)s(\d+)(?:q(\d+))?(?:h(\d+))?)?$/;

/**
 * The kernel shape a `kernelShapeName` names, at a head dim.
 * @param name e.g. "64x32x2", "64x32x2c4" or "128x32x2c4.mma16x16x16s32q2"
 * @param headDim the output head dim (Dv; a multiple of 4)
 * @returns the shape, or undefined when the name is malformed, rowsPerThread does not divide
 *   tileQ, or the columns do not divide tileK and D / 4
 * @example
 * ```ts
 * import { parseKernelShapeName } from "./tiles.ts";
 * parseKernelShapeName("16x8x2", 32); // { tileQ: 16, tileK: 8, threads: 64, rowsPerThread: 2 }
 * parseKernelShapeName("64x32x2c4", 64); // { tileQ: 64, tileK: 32, threads: 128, rowsPerThread: 2 }
 * ```
 */
export function parseKernelShapeName(name: string, headDim: number): KernelShape | undefined {
  const m = SHAPE_NAME.exec(name);
  if (!m) return undefined;
  const [tileQ, tileK, rows] = [Number(m[1]), Number(m[2]), Number(m[3])];
  const cols = m[4] === undefined ? undefined : Number(m[4]);
  if ([tileQ, tileK, rows, cols ?? 1].some((x) => x < 1 || x > 256)) return undefined;
  if (m[5] !== undefined) {
    const [mm, n, k, size] = [m[5], m[6], m[7], m[8]].map(Number);
    if (cols === undefined || [mm, n, k, size].some((x) => x < 1 || x > 128)) return undefined;
    const config: MatrixConfig = { input: "f16", result: "f32", m: mm, n, k, subgroupSize: size };
    const subgroups = (tileQ / rows) * cols / size;
    if (!Number.isInteger(subgroups)) return undefined;
    const parts = m[9] === undefined ? 1 : Number(m[9]);
    const split = m[10] === undefined ? 1 : Number(m[10]);
    if (m[9] === "1" || m[10] === "1") return undefined; // one name per shape
    return matrixShape(tileQ, tileK, subgroups, rows, headDim, config, parts, split);
  }
  return kernelShape(tileQ, tileK, rows, headDim / 4, cols);
}

/**
 * A kernel shape: `tileQ / rowsPerThread` row groups of `cols` invocations each, `cols` by
 * default the largest of 8, 4, 2, 1 dividing both tileK and Dv/4 (a column owns some keys of
 * the scores and some vec4s of each output row).
 * @param tileQ queries per workgroup
 * @param tileK keys per tile
 * @param rowsPerThread query rows per invocation
 * @param d4 Dv / 4, the output row's vec4s (D / 4 unless V has a head dim of its own)
 * @param cols invocations sharing a row group (default: the widest split)
 * @returns the shape, or undefined when rowsPerThread does not divide tileQ or `cols` does not
 *   divide tileK and Dv / 4
 * @example
 * ```ts
 * import { kernelShape } from "./tiles.ts";
 * kernelShape(16, 8, 4, 16); // { tileQ: 16, tileK: 8, threads: 32, rowsPerThread: 4 }
 * kernelShape(64, 32, 2, 16, 4); // { tileQ: 64, tileK: 32, threads: 128, rowsPerThread: 2 }
 * ```
 */
export function kernelShape(
  tileQ: number,
  tileK: number,
  rowsPerThread: number,
  d4: number,
  cols = widestColumns(tileK, d4),
): KernelShape | undefined {
  if (tileQ % rowsPerThread !== 0) return undefined;
  if (!Number.isInteger(cols) || cols < 1 || tileK % cols !== 0 || d4 % cols !== 0) {
    return undefined;
  }
  return { tileQ, tileK, threads: (tileQ / rowsPerThread) * cols, rowsPerThread };
}

/** The widest column split: the largest of 8, 4, 2, 1 dividing both tileK and Dv/4. */
function widestColumns(tileK: number, d4: number): number {
  return [8, 4, 2, 1].find((c) => tileK % c === 0 && d4 % c === 0)!;
}
