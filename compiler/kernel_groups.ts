/**
 * Which component kernels of one pattern share a WGSL module. Most of a kernel is the same for
 * every component of a pattern (tiles, staging, online softmax, epilogue); what differs is small
 * (layouts, `allowed`, schedule slot, merge or overwrite, split-K, branch and hash-buffer
 * offsets). wgpu parses and validates every module on the CPU, about 17 ms for a float16 kernel
 * on the H200 host, so kernels that differ only there share one module, one entry point per
 * member (`sharedKernel`).
 * hashBucket kernels share with each other (their rounds' codes, order and bucket starts are
 * member settings too). Kernels with more in their text (landmark K/V, a score modifier, a
 * float16 O, uniform weights) keep modules of their own.
 * @module
 */
import type { Component } from "./plan.ts";
import type { ComponentKernelOptions } from "./wgsl/attention_wgsl.ts";
import { codeSetOf } from "./hash_layout.ts";
import { allowedReadsHeadOrBatch, readsHash, stagedCodes } from "./component_reads.ts";

/**
 * Groups kernels that can share a module, in order of their first member.
 * @param kernels the pattern's component kernels, in pass order
 * @returns groups of indices into `kernels`; a kernel that shares with none is a group of one
 * @example
 * ```ts ignore
 * kernelGroups([window, random, globalCols]); // [[0, 1, 2]]
 * ```
 */
export function kernelGroups(kernels: readonly ComponentKernelOptions[]): number[][] {
  const groups = new Map<string, number[]>();
  const order: number[][] = [];
  // A module's members are its kernels' components: a fused kernel (run_fusion.ts) has several.
  const members = (group: number[]) =>
    group.reduce((sum, i) => sum + 1 + (kernels[i].fused?.length ?? 0), 0);
  kernels.forEach((k, i) => {
    const key = skeletonKey(k);
    const group = key === undefined ? undefined : groups.get(key);
    if (group && members(group) + 1 + (k.fused?.length ?? 0) <= MAX_MEMBERS) {
      group.push(i);
    } else {
      const fresh = [i];
      if (key !== undefined) groups.set(key, fresh);
      order.push(fresh);
    }
  });
  return order;
}

/**
 * Members per module. Each member's pipeline still carries every member's code: the driver
 * compiles it whole when its cache is cold, and so does the GL backend (llvmpipe) every time:
 * there, eight members in one module took 597 ms of pipelines against 225 ms for eight modules
 * (N = 256, Mesa's cache off). Four covers BigBird and bounds that growth.
 */
const MAX_MEMBERS = 4;

/**
 * Whether a component's kernel keeps a module of its own: its text holds more than a member's
 * layouts, mask, code staging and hash offsets (landmark K/V, a score modifier, a float16 O,
 * uniform weights, baked numbers). Run fusion (run_fusion.ts) asks the same, before the kernels
 * exist, and also keeps hashBucket components apart.
 * @param c the component
 * @param o its branch's score modifier and uniform weights, its O, and whether numbers are baked
 * @returns true when it shares no module
 */
export function keepsOwnModule(
  c: Component,
  o: { score?: unknown; uniform?: boolean; outputF16?: boolean; constants: boolean },
): boolean {
  return o.score !== undefined || (o.uniform ?? false) || (o.outputF16 ?? false) ||
    o.constants || c.kLayout.kind === "landmarks";
}

/** Everything the shared part of a kernel's text depends on; undefined: keeps its own module. */
function skeletonKey(k: ComponentKernelOptions): string | undefined {
  const c = k.component;
  if (keepsOwnModule(c, { ...k, constants: k.aux.constants })) return undefined;
  return JSON.stringify([
    k.dtype,
    k.shape,
    k.scale,
    c.mask.tileQ,
    c.mask.tileK,
    k.threads,
    k.rowsPerThread,
    k.unroll,
    k.prefetch ?? false,
    k.globalQuery ?? false,
    allowedReadsHeadOrBatch(c),
    // hashBucket: the hash binding, staged codes, and a bucket range (its stride) for a schedule.
    readsHash(c),
    stagedCodes(c).length > 0,
    c.kLayout.kind === "sorted" ? ["bucket range", codeSetOf(k.hash!, c.kLayout).buckets] : "runs",
  ]);
}
