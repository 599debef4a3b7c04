/**
 * Dispatch sizes that planning needs before any WGSL exists: the elementwise kernels' workgroup
 * counts, WebGPU's per-dimension limit, and the hashBucket pre-pass's rows per workgroup and
 * sorts per code set. The kernels that run at these sizes (compiler/wgsl/) read them from here.
 * @module
 */
import type { HashCodeSet } from "./hash_layout.ts";

/** Invocations per workgroup of the elementwise kernels. */
export const ELEMENTWISE_WORKGROUP = 256;
/** WebGPU allows at most 65535 workgroups per dimension; longer ranges use y as well. */
export const MAX_WORKGROUPS_X = 65535;

/**
 * Workgroup counts covering `count` invocations.
 * @param count invocations needed
 * @returns `[x, y]` workgroups
 * @example
 * ```ts
 * import { elementwiseWorkgroups } from "./dispatch_sizes.ts";
 * elementwiseWorkgroups(1000); // [4, 1]
 * ```
 */
export function elementwiseWorkgroups(count: number): [number, number] {
  return workgroupGrid(Math.ceil(count / ELEMENTWISE_WORKGROUP));
}

/**
 * `groups` workgroups (at least one) as x by y, x within WebGPU's limit per dimension.
 * @param groups workgroups wanted
 * @returns the dispatch's x and y
 * @example
 * ```ts
 * import { workgroupGrid } from "./dispatch_sizes.ts";
 * workgroupGrid(70000); // [35000, 2]
 * ```
 */
export function workgroupGrid(groups: number): [number, number] {
  const y = Math.ceil(Math.max(1, groups) / MAX_WORKGROUPS_X);
  return [Math.ceil(Math.max(1, groups) / y), y];
}

/** Invocations of a select's workgroups: one workgroup per (position, key/value head). */
export const SELECT_WORKGROUP = 64;

/**
 * Invocations of a select's choice of blocks (one workgroup per tile of positions and key/value
 * head): enough that a tile's (position, query head) rows, 64 at the bench's 8 positions of 8
 * heads, each get an invocation per block lane.
 */
export const SELECT_CHOICE_WORKGROUP = 256;

/**
 * The choice's invocations where loops are not unrolled (software adapters): llvmpipe's compile
 * time grows with the workgroup, 8 s at 256 and 1.5 s at 64 for a test-sized kernel.
 */
export const SELECT_CHOICE_WORKGROUP_SOFTWARE = 64;

/** Invocations of the codes kernel per workgroup (rows). */
export const CODES_WORKGROUP = 64;

/** Sorts of a code set: one per (round, query or key/value row). */
export function sortCount(set: HashCodeSet): number {
  return set.rounds * (set.rowsQ + set.rowsK);
}

/**
 * Positions per codes workgroup: one per invocation, fewer where the planes and the staged
 * vectors would pass WebGPU's default 16 KiB of workgroup memory.
 * @param d4 head dim / 4
 * @param nbits planes per round
 * @returns positions per workgroup
 * @example
 * ```ts
 * import { codeRows } from "./dispatch_sizes.ts";
 * codeRows(16, 6); // 54: 1.5 KiB of planes, 272 bytes per staged vector
 * ```
 */
export function codeRows(d4: number, nbits: number): number {
  const vec4Slots = 1024 - nbits * d4;
  return Math.max(1, Math.min(CODES_WORKGROUP, Math.floor(vec4Slots / (d4 + 1))));
}
