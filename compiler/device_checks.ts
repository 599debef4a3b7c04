/**
 * What compile refuses before any GPU object exists, with the numbers: a kernel over the
 * device's workgroup memory or invocations, a tensor over one storage binding, hashBucket
 * sorts or buffers past a dispatch or a binding.
 * @module
 */
import { type AttentionShape, sequenceSizes } from "../core/shape.ts";
import {
  DEFAULT_LIMITS,
  type DeviceLimits,
  type KernelShape,
  kernelStorageBytes,
} from "./tiles.ts";
import { DeviceError, PlanError } from "../core/errors.ts";
import type { HashLayout } from "./hash_layout.ts";
import type { Dtype } from "../core/shape.ts";
import type { PagedKv } from "../core/paged_kv.ts";
import { MAX_WORKGROUPS_X, sortCount } from "./dispatch_sizes.ts";

/**
 * A pipeline over the device's workgroup memory is an error at best; on the H100 through Deno
 * it hung. Refuse it here, with the numbers, counting the query tile only where the kernel
 * stages it (`stagedQuery`).
 */
export function checkKernelFits(
  tiles: KernelShape,
  shape: AttentionShape,
  dtype: Dtype,
  limits: DeviceLimits,
  stagedQuery: boolean,
) {
  const { d, dv } = sequenceSizes(shape);
  const bytes = kernelStorageBytes(tiles, d, dtype, stagedQuery, undefined, dv);
  if (bytes > limits.maxComputeWorkgroupStorageSize) {
    const dims = dv === d ? `D=${d}` : `D=${d}, Dv=${dv}`;
    throw new PlanError(
      `Cannot compile: tile ${tiles.tileQ}x${tiles.tileK} at ${dims} (${dtype}, query tile ` +
        `${stagedQuery ? "staged" : "read from memory"}) needs ${bytes} bytes of workgroup ` +
        `memory; this device allows ${limits.maxComputeWorkgroupStorageSize}. ` +
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
 * Paged K and V are their pools of pages.
 */
export function checkBufferSizes(
  shape: AttentionShape,
  dtype: Dtype,
  branches: number,
  limits: DeviceLimits,
  paged?: PagedKv,
): void {
  const limit = limits.maxStorageBufferBindingSize;
  if (limit === undefined) return;
  const { batch: b, headsQ, headsKV } = shape;
  const { nq, nk, d, dv } = sequenceSizes(shape);
  const element = dtype === "f16" ? 2 : 4;
  const keyRows = paged ? paged.pages * headsKV * paged.pageSize : b * headsKV * nk;
  const sizes: [string, number][] = [
    ["q", b * headsQ * nq * d * element],
    ["k", keyRows * d * element],
    ["v", keyRows * dv * element],
    ["o (float32 accumulator)", b * headsQ * nq * dv * 4],
    ["lse", b * headsQ * nq * branches * 4],
  ];
  if (branches > 1) sizes.push(["per-branch O", b * headsQ * nq * dv * 4 * branches]);
  for (const [name, bytes] of sizes) {
    if (bytes > limit) {
      throw new DeviceError(
        `Cannot compile for this device: tensor ${name} needs ${bytes} bytes, over ` +
          `maxStorageBufferBindingSize (${limit}); run fewer batches or heads per call`,
      );
    }
  }
}

/** One dispatch dimension holds every sort, and each buffer one binding. */
export function checkHashFits(hash: HashLayout, limits?: DeviceLimits): void {
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

/**
 * Every pattern has a component whose queries are all N positions, one workgroup per query
 * tile: past WebGPU's 65535 the call is refused before planning, whose memory grows with N.
 * @param n N
 * @param tiles the kernel shape
 * @throws {PlanError} naming the largest N these tiles can dispatch
 */
export function checkQueryTiles(n: number, tiles: KernelShape): void {
  const qTiles = Math.ceil(n / tiles.tileQ);
  if (qTiles <= MAX_WORKGROUPS_X) return;
  throw new PlanError(
    `Cannot compile: N=${n} in query tiles of ${tiles.tileQ} rows needs ${qTiles} query tiles ` +
      `(one workgroup each), over WebGPU's ${MAX_WORKGROUPS_X} workgroups per dimension; use a shorter ` +
      `sequence (N <= ${MAX_WORKGROUPS_X * tiles.tileQ}) or larger query tiles`,
  );
}
