/**
 * How the backward pass's tile kernels (gradQuery, gradKey) split their work: register tiles as
 * in the forward, sized to the device's workgroup memory.
 *
 * A workgroup owns part of one BlockMask tile (its "own" rows: query rows for gradQuery, keys
 * for gradKey), keeps their inputs in workgroup memory and their gradients in registers, and
 * walks the other side's tiles in chunks of `chunk` rows. Each chunk is two register-tiled
 * steps: the pair step (scores and dO·Vᵀ of chunk x own pairs, then P and dS into workgroup
 * memory) and the product step (dQ += dS K, or dV += Pᵀ dO and dK += dSᵀ Q).
 * @module
 */
import { PlanError } from "../core/errors.ts";
import type { Dtype } from "../core/shape.ts";

/**
 * Invocations of a gradQuery or gradKey workgroup. On the H200 (f16, N = 65536, D = 64) 256
 * beat 128 and 64: dense's backward 2.36 s against 2.61 and 4.16, ring(128)'s 14.2 ms against
 * 16.5 and 26.8.
 */
export const GRADIENT_TILE_THREADS = 256;

/** The workgroup's split of one gradient tile kernel. */
export interface GradientTiling {
  /** Workgroups per BlockMask tile: each owns `own` of its rows (or keys). */
  split: number;
  /** Rows (gradQuery) or keys (gradKey) a workgroup owns. */
  own: number;
  /** Rows of the other side's tile staged at a time. */
  chunk: number;
  /** The pair step's invocation grid, `pairRows x pairCols`: its rows (query rows). */
  pairRows: number;
  /** The pair step's invocation grid: its columns (keys). */
  pairCols: number;
  /** The product step's grid, `outRows x outCols`: its rows (owned rows or keys). */
  outRows: number;
  /** The product step's grid: its columns (vec4s of the head dim). */
  outCols: number;
  /** Workgroup memory the kernel declares, in bytes. */
  bytes: number;
}

/** WebGPU's default workgroup storage, used when the device's limit is unknown. */
const DEFAULT_WORKGROUP_BYTES = 16384;

/** The largest divisor of `n` that is at most `cap`. */
function divisorAtMost(n: number, cap: number): number {
  for (let d = Math.min(n, cap); d > 1; d--) if (n % d === 0) return d;
  return 1;
}

/** The head dims a gradient tile kernel stages: Q and K rows of D, V and dO rows of Dv. */
export interface GradientDims {
  headDim: number;
  valueDim: number;
}

/**
 * Workgroup memory of one tiling: the own side's two input tiles (Q and dO, or K and V) and the
 * chunk's two, in the input's type with rows padded by one vec4 (no bank conflicts when
 * invocations read different rows), two float32 pair tiles (P and dS; dScore and the score for
 * learnable constants), per-row words (positions, LSE, gate, Δ), and for packed sequences each
 * query row's sequence (four words). Q and K rows hold D elements, V and dO rows Dv.
 */
function tilingBytes(
  own: number,
  chunk: number,
  o: { dims: GradientDims; dtype: Dtype; queryRows: number },
): number {
  const element = o.dtype === "f16" ? 2 : 4;
  const row = (o.dims.headDim / 4 + 1) * 4 * element;
  const valueRow = (o.dims.valueDim / 4 + 1) * 4 * element;
  return (own + chunk) * (row + valueRow) + 2 * 4 * chunk * (own + 1) + 4 * 4 * (own + chunk) +
    4 * 4 * o.queryRows;
}

/** The greatest common divisor of two positive integers. */
function gcd(a: number, b: number): number {
  return b === 0 ? a : gcd(b, a % b);
}

/**
 * The tiling of a gradient tile kernel: the largest own part (fewest workgroups per tile), then
 * the largest chunk, that fit the device's workgroup memory, preferring chunks of at least 16.
 * @param kind gradQuery (own rows = query tile, chunks of key tiles) or gradKey
 * @param tiles the BlockMask's tile sizes
 * @param dims D and Dv
 * @param dtype the inputs' type
 * @param workgroupBytes the device's maxComputeWorkgroupStorageSize, if known
 * @param packed packed sequences: each staged query row's sequence takes workgroup memory too
 * @returns the tiling
 * @throws {PlanError} when not even one row of each fits
 */
export function gradientTiling(
  kind: "gradQuery" | "gradKey",
  tiles: { tileQ: number; tileK: number },
  dims: GradientDims,
  dtype: Dtype,
  workgroupBytes = DEFAULT_WORKGROUP_BYTES,
  packed = false,
): GradientTiling {
  const bytesOf = (own: number, chunk: number) =>
    tilingBytes(own, chunk, {
      dims,
      dtype,
      queryRows: packed ? (kind === "gradQuery" ? own : chunk) : 0,
    });
  const [ownTile, otherTile] = kind === "gradQuery"
    ? [tiles.tileQ, tiles.tileK]
    : [tiles.tileK, tiles.tileQ];
  const halves = (n: number) => {
    const out = [n];
    while (out[out.length - 1] % 2 === 0) out.push(out[out.length - 1] / 2);
    return out;
  };
  for (const minChunk of [Math.min(16, otherTile), 1]) {
    for (const own of halves(ownTile)) {
      for (const chunk of halves(otherTile)) {
        if (chunk < minChunk) break;
        const bytes = bytesOf(own, chunk);
        if (bytes > workgroupBytes) continue;
        const pairCols = divisorAtMost(kind === "gradQuery" ? chunk : own, 8);
        const pairRows = divisorAtMost(
          kind === "gradQuery" ? own : chunk,
          GRADIENT_TILE_THREADS / pairCols,
        );
        // gradQuery's product columns are dQ's (D); gradKey's are dK's (D) and dV's (Dv) alike.
        const columns = kind === "gradQuery"
          ? dims.headDim / 4
          : gcd(dims.headDim / 4, dims.valueDim / 4);
        const outCols = divisorAtMost(columns, 8);
        const outRows = divisorAtMost(own, GRADIENT_TILE_THREADS / outCols);
        return { split: ownTile / own, own, chunk, pairRows, pairCols, outRows, outCols, bytes };
      }
    }
  }
  const dimsText = `D=${dims.headDim}` +
    (dims.valueDim === dims.headDim ? "" : ` and Dv=${dims.valueDim}`);
  throw new PlanError(
    `Cannot compile the backward pass: tile ${tiles.tileQ}x${tiles.tileK} at ${dimsText} ` +
      `needs ${bytesOf(1, 1)} bytes of workgroup memory for one row of its ` +
      `gradient kernels; this device allows ${workgroupBytes}`,
  );
}
