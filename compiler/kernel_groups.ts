/**
 * Which component kernels of one pattern share a WGSL module. Most of a kernel is the same for
 * every component of a pattern (tiles, staging, online softmax, epilogue); what differs is small
 * (layouts, `allowed`, schedule slot, merge or overwrite, split-K, branch and hash-buffer
 * offsets). Kernels whose text differs only there (one `moduleKey`, kernel_rules.ts) share one
 * module, one entry point per kernel (compiler/wgsl/attention_wgsl.ts, `sharedKernel`).
 * @module
 */

/**
 * Members per module. Each member's pipeline still carries every member's code: the driver
 * compiles it whole when its cache is cold, and so does the GL backend (llvmpipe) every time:
 * there, eight members in one module took 597 ms of pipelines against 225 ms for eight modules
 * (N = 256, Mesa's cache off). Four covers BigBird and bounds that growth.
 */
export const MAX_MEMBERS = 4;

/**
 * Groups kernels that can share a module, in order of their first member.
 * @param kernels per kernel in dispatch order: its module key (undefined: a module of its own)
 *   and its member count (a fused kernel, run_fusion.ts, has several)
 * @returns groups of indices into `kernels`; a kernel that shares with none is a group of one
 * @example
 * ```ts
 * import { kernelGroups } from "./kernel_groups.ts";
 * kernelGroups([{ key: "a", members: 1 }, { key: undefined, members: 1 }, { key: "a", members: 2 }]);
 * // [[0, 2], [1]]
 * ```
 */
export function kernelGroups(
  kernels: readonly { key: string | undefined; members: number }[],
): number[][] {
  const groups = new Map<string, number[]>();
  const order: number[][] = [];
  const members = (group: number[]) => group.reduce((sum, i) => sum + kernels[i].members, 0);
  kernels.forEach((k, i) => {
    const group = k.key === undefined ? undefined : groups.get(k.key);
    if (group && members(group) + k.members <= MAX_MEMBERS) {
      group.push(i);
    } else {
      const fresh = [i];
      if (k.key !== undefined) groups.set(k.key, fresh);
      order.push(fresh);
    }
  });
  return order;
}
