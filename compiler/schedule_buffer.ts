/**
 * Packs every component's BlockMask into the one `schedule` buffer the kernels read:
 *
 * - a header: `[D / 4, tileK]` (loop bounds for kernels built without unrolling), then per
 *   component (branch by branch, in order) its slot `[rowsOffset, runsOffset]`: the word where
 *   its row pointers start and the word where its runs start;
 * - per component, its row pointers (`qTiles + 1` words, counted in runs from the component's
 *   first run), then its runs, two words each: `kvStart << 1 | partial` and `kvLength`.
 *
 * A kernel's WGSL names only its component's slot, never an offset or a count, so the text
 * does not change when a schedule does. Two words per run keep any N and tile count exact.
 * @module
 */
import { splitKeyRows } from "./key_split.ts";
import type { Plan } from "./plan.ts";

/** Words before the first component slot: `[D / 4, tileK]`. */
export const HEADER_WORDS = 2;

/** Words per component slot in the header: `[rowsOffset, runsOffset]`. */
export const SLOT_WORDS = 2;

/** Words per run: `kvStart << 1 | partial`, `kvLength`. */
export const RUN_WORDS = 2;

/**
 * Packs the plan's schedules.
 * @param plan the plan
 * @param headDim head dim D
 * @param splits per branch and component, the chunks its key tiles are split into (default, 0
 *   or 1: row t is query tile t; with S, row `t * S + s` is chunk s of query tile t,
 *   key_split.ts)
 * @returns the words and, per branch and component, the index of its header slot
 * @example
 * ```ts
 * import { planPattern } from "./plan.ts";
 * import { packSchedules } from "./schedule_buffer.ts";
 * const packed = packSchedules(planPattern({ kind: "causal" }, 128, { tileQ: 64, tileK: 64 }), 32);
 * // header [D/4, tileK, rowsOffset 4, runsOffset 7]; row pointers [0, 1, 3];
 * // runs: tile 0 partial; then tile 0 full, tile 1 partial (each `kvStart << 1 | partial`, 1)
 * console.log(Array.from(packed.words)); // [8, 64, 4, 7, 0, 1, 3, 1, 1, 0, 1, 3, 1]
 * console.log(packed.slots); // [[0]]
 * ```
 */
export function packSchedules(
  plan: Plan,
  headDim: number,
  splits?: number[][],
): { words: Uint32Array; slots: number[][] } {
  const components = plan.branches.flatMap((b, i) =>
    b.components.map((c, j) => {
      const s = splits?.[i][j] ?? 1;
      return s > 1 ? { ...c, mask: splitKeyRows(c.mask, s) } : c;
    })
  );
  let size = HEADER_WORDS + SLOT_WORDS * components.length;
  for (const c of components) size += c.mask.offsets.length + RUN_WORDS * c.mask.kvStart.length;
  const words = new Uint32Array(size);
  words[0] = headDim / 4;
  words[1] = plan.tiles.tileK;
  let at = HEADER_WORDS + SLOT_WORDS * components.length;
  components.forEach((c, slot) => {
    const { offsets, kvStart, kvLength, partial } = c.mask;
    words[HEADER_WORDS + SLOT_WORDS * slot] = at;
    words.set(offsets, at);
    at += offsets.length;
    words[HEADER_WORDS + SLOT_WORDS * slot + 1] = at;
    for (let r = 0; r < kvStart.length; r++, at += RUN_WORDS) {
      words[at] = (kvStart[r] << 1) | partial[r];
      words[at + 1] = kvLength[r];
    }
  });
  let slot = 0;
  const slots = plan.branches.map((b) => b.components.map(() => slot++));
  return { words, slots };
}
