/**
 * Fusing components that share the natural layouts. A union's terms are planned one by one,
 * each minus the earlier ones, so each may pick its own layouts; but consecutive components
 * that all keep queries and keys in natural order (BigBird's window, random blocks and global
 * columns) gain nothing from being apart. Apart, each is a kernel of its own: a pipeline to
 * build, a dispatch whose workgroups reload their query tile, and an epilogue that reads and
 * rewrites O to merge by log-sum-exp. Fused, one kernel walks the union of their key tiles and
 * evaluates the OR of their terms on PARTIAL tiles.
 *
 * The union of the members' BlockMasks is exact: a tile some member covers FULL is FULL for the
 * union (the member's exclusions include everything before the group); any other visited tile
 * is PARTIAL, where the kernel evaluates the predicate per element. Tiles no member visits hold
 * no allowed pair of any of them.
 * @module
 */
import type { BlockMask } from "./block_mask.ts";
import type { Component } from "./plan.ts";

/**
 * Components with identity query and key layouts, fused where consecutive.
 * @param components one branch's components, in plan order (each excludes all earlier terms)
 * @returns the same components, each run of consecutive identity ones replaced by one
 * @example
 * ```ts
 * import { planPattern } from "./plan.ts";
 * const plan = planPattern(
 *   { kind: "union", of: [{ kind: "window", left: 8, right: 8 }, { kind: "causal" }] },
 *   256, { tileQ: 64, tileK: 32 },
 * );
 * plan.branches[0].components.length; // 1: terms [causal] and [window(8,8)], one kernel
 * ```
 */
export function fuseComponents(components: Component[]): Component[] {
  const out: Component[] = [];
  let group: Component[] = [];
  const flush = () => {
    if (group.length) out.push(group.length === 1 ? group[0] : fuse(group));
    group = [];
  };
  for (const c of components) {
    if (natural(c)) {
      group.push(c);
      continue;
    }
    flush();
    out.push(c);
  }
  flush();
  return out;
}

function natural(c: Component): boolean {
  return c.qLayout.kind === "identity" && c.kLayout.kind === "identity";
}

function fuse(group: Component[]): Component {
  return {
    terms: group.flatMap((c) => c.terms),
    // What the group's first member excludes is what every component before the group allows;
    // later members' extra exclusions are the group's own terms, which the OR covers.
    exclusions: group[0].exclusions,
    qLayout: group[0].qLayout,
    kLayout: group[0].kLayout,
    mask: unionBlockMask(group.map((c) => c.mask)),
  };
}

/**
 * The union of BlockMasks over the same tiles: per query tile, every key tile some mask visits,
 * FULL where one of them is FULL, else PARTIAL; runs ascending and maximal.
 * @param masks masks of one tile shape and tile counts
 * @returns the union
 * @example
 * ```ts
 * import { buildBlockMask } from "./block_mask.ts";
 * import { unionBlockMask } from "./fuse_components.ts";
 * import { RandomTables } from "./random_table.ts";
 * const mask = (atoms: any[]) => buildBlockMask({
 *   atoms, exclusions: [], qLayout: { kind: "identity" }, kLayout: { kind: "identity" },
 *   n: 128, tileQ: 64, tileK: 32, random: new RandomTables(128),
 * });
 * const u = unionBlockMask([mask([{ kind: "causal" }]), mask([{ kind: "window", left: 0, right: 40 }])]);
 * console.log(Array.from(u.kvStart), Array.from(u.partial)); // [0, 2, 0, 2] [1, 0, 0, 1]
 * ```
 */
export function unionBlockMask(masks: readonly BlockMask[]): BlockMask {
  const first = masks[0];
  const { qTiles, kTiles, tileQ, tileK } = first;
  for (const m of masks) {
    if (m.qTiles !== qTiles || m.kTiles !== kTiles || m.tileQ !== tileQ || m.tileK !== tileK) {
      throw new Error("unionBlockMask: masks of different tile grids");
    }
  }
  // Row by row over runs, never tile by tile: a sweep over the runs' starts and ends, counting
  // the FULL and PARTIAL runs that cover each piece between two of them (FULL wins).
  const offsets = new Uint32Array(qTiles + 1);
  const start: number[] = [], length: number[] = [], partial: number[] = [];
  const mostRuns = masks.reduce((sum, m) => sum + m.kvStart.length, 0);
  // An event is `tile * 4 + code`: code bit 1 = a run starts (else ends), bit 0 = PARTIAL.
  const events = new Int32Array(2 * mostRuns);
  for (let t = 0; t < qTiles; t++) {
    let count = 0;
    for (const m of masks) {
      for (let r = m.offsets[t]; r < m.offsets[t + 1]; r++) {
        events[count++] = m.kvStart[r] * 4 + 2 + m.partial[r];
        events[count++] = (m.kvStart[r] + m.kvLength[r]) * 4 + m.partial[r];
      }
    }
    const sorted = events.subarray(0, count).sort();
    let full = 0, part = 0;
    for (let i = 0; i < count;) {
      const at = sorted[i] >> 2;
      for (; i < count && sorted[i] >> 2 === at; i++) {
        const delta = (sorted[i] & 2) ? 1 : -1;
        if (sorted[i] & 1) part += delta;
        else full += delta;
      }
      if (i === count || (full === 0 && part === 0)) continue;
      const to = sorted[i] >> 2, p = full > 0 ? 0 : 1;
      const last = start.length - 1;
      if (last >= offsets[t] && partial[last] === p && start[last] + length[last] === at) {
        length[last] += to - at;
      } else {
        start.push(at);
        length.push(to - at);
        partial.push(p);
      }
    }
    offsets[t + 1] = start.length;
  }
  return {
    qTiles,
    kTiles,
    tileQ,
    tileK,
    offsets,
    kvStart: Uint32Array.from(start),
    kvLength: Uint32Array.from(length),
    partial: Uint8Array.from(partial),
  };
}
