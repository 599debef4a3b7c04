/**
 * Packs every component's BlockMask into the one `schedule` buffer the kernels read:
 * per component, its row pointers (`qTiles + 1` words) then its entries, each entry
 * `kvIndex << 1 | partial`. Row pointers are relative to the component's entries.
 * @module
 */
import type { Plan } from "./plan.ts";

/** Word offsets of one component's row pointers and entries. */
export interface ScheduleOffsets {
  rows: number;
  entries: number;
}

/**
 * Packs the plan's schedules.
 * @param plan the plan
 * @returns the words and, per branch and component, where its parts start
 * @example
 * ```ts
 * import { planPattern } from "./plan.ts";
 * import { packSchedules } from "./schedule_buffer.ts";
 * const packed = packSchedules(planPattern({ kind: "causal" }, 128, { tileQ: 64, tileK: 64 }));
 * console.log(Array.from(packed.words)); // [0, 1, 3, 0, 1, 3]: row pointers, then entries
 * ```
 */
export function packSchedules(plan: Plan): { words: Uint32Array; offsets: ScheduleOffsets[][] } {
  let size = 0;
  for (const b of plan.branches) {
    for (const c of b.components) size += c.mask.offsets.length + c.mask.kvIndices.length;
  }
  const words = new Uint32Array(Math.max(size, 1));
  let at = 0;
  const offsets = plan.branches.map((b) =>
    b.components.map((c) => {
      const rows = at;
      words.set(c.mask.offsets, at);
      at += c.mask.offsets.length;
      const entries = at;
      for (let e = 0; e < c.mask.kvIndices.length; e++) {
        words[at + e] = (c.mask.kvIndices[e] << 1) | c.mask.partial[e];
      }
      at += c.mask.kvIndices.length;
      return { rows, entries };
    })
  );
  return { words, offsets };
}
