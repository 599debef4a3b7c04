/**
 * Run fusion: consecutive components of one branch that read queries and keys in natural order
 * (BigBird's window, random blocks and global columns) are walked by one kernel. Each query
 * tile's runs are every member's runs, one member after the other, each run tagged with its
 * member, whose `allowed` the kernel evaluates on that run's PARTIAL tiles.
 *
 * Apart, each member is a pass of its own: a pipeline to build, and workgroups that stage the
 * query tile again, then read, merge and rewrite O by log-sum-exp. Fused, the members' pairs
 * still stay disjoint (each component excludes the earlier ones), so a key tile two members
 * visit is simply visited twice, each time with its own mask: the online softmax sums over the
 * union either way.
 * @module
 */
import type { BlockMask } from "./block_mask.ts";
import type { Component } from "./plan.ts";

/** Members one pass may walk: the kernel's module holds at most four (kernel_groups.ts). */
export const MAX_FUSED = 4;

/** Run tags live above the run length in its second word: lengths stay below 2^24. */
export const TAG_SHIFT = 24;

/**
 * Groups a branch's components into passes: runs of consecutive components with natural layouts
 * and one fusion key, at most MAX_FUSED each; every other component is a group of its own.
 * @param components the branch's components, in plan order
 * @param key what component j's kernel text depends on beyond its layouts and mask (whether its
 *   mask reads the head and batch, say); undefined: it may not share a pass (split-K, hash codes)
 * @returns groups of component indices covering 0..n-1 in order
 * @example
 * ```ts ignore
 * fusionGroups(bigbird.components, (j) => (j < 3 ? "" : undefined)); // [[0, 1, 2], [3]]
 * ```
 */
export function fusionGroups(
  components: readonly Component[],
  key: (j: number) => string | undefined,
): number[][] {
  const keyOf = (j: number) =>
    components[j].qLayout.kind === "identity" && components[j].kLayout.kind === "identity"
      ? key(j)
      : undefined;
  const groups: number[][] = [];
  components.forEach((_, j) => {
    const last = groups[groups.length - 1];
    const k = keyOf(j);
    if (last && k !== undefined && keyOf(last[0]) === k && last.length < MAX_FUSED) last.push(j);
    else groups.push([j]);
  });
  return groups;
}

/** One pass's runs: per query tile, every member's runs in member order, each with its tag. */
export interface TaggedRuns {
  offsets: Uint32Array;
  kvStart: Uint32Array;
  kvLength: Uint32Array;
  partial: Uint8Array;
  /** The run's member: 0 for the group's first component, 1 for the next, ... */
  member: Uint8Array;
}

/**
 * The runs of a group of BlockMasks over the same query tiles, concatenated per query tile.
 * @param masks the members' masks, in member order
 * @returns the tagged runs
 * @example
 * ```ts ignore
 * tagRuns([window.mask, random.mask]).member; // 0s for the window's runs, 1s for the random's
 * ```
 */
export function tagRuns(masks: readonly BlockMask[]): TaggedRuns {
  const qTiles = masks[0].qTiles;
  if (masks.some((m) => m.qTiles !== qTiles)) {
    throw new Error("Weft internal error: fused components over different query tiles");
  }
  const total = masks.reduce((sum, m) => sum + m.kvStart.length, 0);
  const out: TaggedRuns = {
    offsets: new Uint32Array(qTiles + 1),
    kvStart: new Uint32Array(total),
    kvLength: new Uint32Array(total),
    partial: new Uint8Array(total),
    member: new Uint8Array(total),
  };
  let at = 0;
  for (let t = 0; t < qTiles; t++) {
    masks.forEach((m, member) => {
      for (let r = m.offsets[t]; r < m.offsets[t + 1]; r++, at++) {
        if (masks.length > 1 && m.kvLength[r] >= 2 ** TAG_SHIFT) {
          throw new Error(`Weft internal error: a run of ${m.kvLength[r]} key tiles`);
        }
        out.kvStart[at] = m.kvStart[r];
        out.kvLength[at] = m.kvLength[r];
        out.partial[at] = m.partial[r];
        out.member[at] = member;
      }
    });
    out.offsets[t + 1] = at;
  }
  return out;
}
