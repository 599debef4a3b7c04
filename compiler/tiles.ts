/**
 * Tile shapes sized from the device: K and V tiles live in workgroup memory, so the key tile is
 * the largest power of two whose two tiles fit in `maxComputeWorkgroupStorageSize`.
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

/** Queries per workgroup: one invocation each. */
const TILE_Q = 64;
/** Per-invocation scores live in registers; beyond this they spill. */
const MAX_TILE_K = 32;

/**
 * The tile shape for a head dim on a device.
 * @param headDim D
 * @param limits the adapter's limits (defaults to WebGPU's)
 * @returns `{ tileQ, tileK }`
 * @example
 * ```ts
 * import { chooseTiles } from "./tiles.ts";
 * chooseTiles(128, { maxComputeWorkgroupStorageSize: 32768 }); // { tileQ: 64, tileK: 16 }
 * ```
 */
export function chooseTiles(headDim: number, limits: DeviceLimits = DEFAULT_LIMITS): TileShape {
  const perKey = 2 * headDim * 4 + 4; // one K row, one V row, its position
  let tileK = MAX_TILE_K;
  while (tileK > 4 && tileK * perKey > limits.maxComputeWorkgroupStorageSize) tileK /= 2;
  return { tileQ: TILE_Q, tileK };
}
