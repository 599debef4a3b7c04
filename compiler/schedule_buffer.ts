/**
 * Packs every component's BlockMask into the one `schedule` buffer the kernels read: a header
 * `[D / 4, tileK]` (loop bounds for kernels built without unrolling), then per component its
 * row pointers (`qTiles + 1` words) and its entries, each `kvIndex << 1 | partial`. Row
 * pointers are relative to the component's entries.
 * @module
 */
import type { Plan } from "./plan.ts";

/** Words before the first component: `[D / 4, tileK]`. */
export const HEADER_WORDS = 2;

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
 * const packed = packSchedules(planPattern({ kind: "causal" }, 128, { tileQ: 64, tileK: 64 }), 32);
 * console.log(Array.from(packed.words)); // [8, 64, 0, 1, 3, 0, 1, 3]: header, row pointers, entries
 * ```
 */
export function packSchedules(
  plan: Plan,
  headDim: number,
): { words: Uint32Array; offsets: ScheduleOffsets[][] } {
  let size = HEADER_WORDS;
  for (const b of plan.branches) {
    for (const c of b.components) size += c.mask.offsets.length + c.mask.kvIndices.length;
  }
  const words = new Uint32Array(size);
  words[0] = headDim / 4;
  words[1] = plan.tiles.tileK;
  let at = HEADER_WORDS;
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
