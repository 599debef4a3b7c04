/**
 * Kernel shapes sized from the device. The query tile, the K and V tiles and the P tile live in
 * workgroup memory, so the largest candidate whose tiles fit `maxComputeWorkgroupStorageSize`
 * wins; within a workgroup, invocations own `rowsPerThread` query rows and split keys and output
 * dims `cols` ways (see the kernel's geometry).
 * @module
 */
import type { TileShape } from "./plan.ts";

/** The adapter limits the compiler sizes tiles from. */
export interface DeviceLimits {
  maxComputeWorkgroupStorageSize: number;
  maxComputeInvocationsPerWorkgroup?: number;
}

/** WebGPU's default limits: what every adapter guarantees. */
export const DEFAULT_LIMITS: DeviceLimits = {
  maxComputeWorkgroupStorageSize: 16384,
  maxComputeInvocationsPerWorkgroup: 256,
};

/** A tile shape plus how the kernel's invocations split it. */
export interface KernelShape extends TileShape {
  threads: number;
  rowsPerThread: number;
}

/**
 * Candidates in order of preference: (tileQ, tileK, rows per invocation). The order comes from
 * sweeps on the H100 at N = 16384, D = 64 (docs/BENCHMARKS.md): 256 invocations of two rows
 * each beat 128 of four and 64 of eight (dense f32 39.9 vs 46.2 vs 78.6 ms), and with float16
 * arithmetic 64x32 beat 64x64 (dense f16 24.0 vs 26.7 ms).
 */
const CANDIDATES: [number, number, number][] = [
  [64, 32, 2],
  [64, 64, 2],
  [64, 32, 4],
  [32, 32, 4],
  [32, 16, 4],
  [16, 16, 4],
  [16, 8, 2],
  [8, 8, 2],
];

/**
 * Workgroup memory of a kernel shape, in bytes (float32 tiles).
 * @param s the kernel shape
 * @param headDim D
 * @param dtype element type of the staged tiles ("f32" or "f16")
 * @returns bytes of workgroup memory the kernel declares
 * @example
 * ```ts
 * import { kernelStorageBytes } from "./tiles.ts";
 * kernelStorageBytes({ tileQ: 32, tileK: 32, threads: 64, rowsPerThread: 4 }, 64); // 31360
 * ```
 */
export function kernelStorageBytes(s: KernelShape, headDim: number, dtype = "f32"): number {
  const d4 = headDim / 4;
  const cols = s.threads / (s.tileQ / s.rowsPerThread);
  const vec4Bytes = dtype === "f16" ? 8 : 16;
  // Q, K (padded rows), V and P (padded by one vec4) in the element type; row shares and key
  // positions in 32-bit words.
  return vec4Bytes * (s.tileQ * (d4 + 1) + s.tileK * (d4 + 1) + s.tileK * d4) +
    (vec4Bytes / 4) * s.tileQ * (s.tileK + 4) + 4 * (s.tileQ * cols + s.tileK);
}

/**
 * The kernel shape for a head dim on a device.
 * @param headDim D (a multiple of 4)
 * @param limits the adapter's limits (defaults to WebGPU's)
 * @param dtype element type of the staged tiles ("f32" or "f16")
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
): KernelShape {
  const maxThreads = limits.maxComputeInvocationsPerWorkgroup ?? 256;
  const d4 = headDim / 4;
  for (const [tileQ, tileK, rowsPerThread] of CANDIDATES) {
    const shape = kernelShape(tileQ, tileK, rowsPerThread, d4);
    if (!shape || shape.threads > maxThreads) continue;
    if (kernelStorageBytes(shape, headDim, dtype) <= limits.maxComputeWorkgroupStorageSize) {
      return shape;
    }
  }
  return kernelShape(4, 4, 1, d4)!;
}

/**
 * A kernel shape with `cols` = the largest of 8, 4, 2, 1 dividing both tileK and D/4.
 * @param tileQ queries per workgroup
 * @param tileK keys per tile
 * @param rowsPerThread query rows per invocation
 * @param d4 D / 4
 * @returns the shape, or undefined when rowsPerThread does not divide tileQ
 * @example
 * ```ts
 * import { kernelShape } from "./tiles.ts";
 * kernelShape(16, 8, 4, 16); // { tileQ: 16, tileK: 8, threads: 32, rowsPerThread: 4 }
 * ```
 */
export function kernelShape(
  tileQ: number,
  tileK: number,
  rowsPerThread: number,
  d4: number,
): KernelShape | undefined {
  if (tileQ % rowsPerThread !== 0) return undefined;
  const cols = [8, 4, 2, 1].find((c) => tileK % c === 0 && d4 % c === 0)!;
  return { tileQ, tileK, threads: (tileQ / rowsPerThread) * cols, rowsPerThread };
}
