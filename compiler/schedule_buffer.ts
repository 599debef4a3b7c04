/**
 * Packs every component's BlockMask into the one `schedule` buffer the kernels read:
 *
 * - a header: `[D / 4, tileK]` (loop bounds for kernels built without unrolling), then per
 *   component (branch by branch, in order) its slot `[rowsOffset, runsOffset]`: the word where
 *   its row pointers start and the word where its runs start;
 * - per component, its row pointers (`qTiles + 1` words, counted in runs from the component's
 *   first run), then its runs, two words each: `kvStart << 1 | partial` and `kvLength`.
 *
 * Components fused into one pass (run_fusion.ts) share one slot: per query tile, every member's
 * runs in member order, the member's index in the length word's top bits
 * (`kvLength | member << TAG_SHIFT`). A component whose kernel walks edge pairs (edge_pairs.ts)
 * may start a row with one: `A << 1 | 1`, `B | PAIR_BIT`. Where the call's queries are some of
 * the key positions (query_tiles.ts), a pass's rows are those of the query tiles it runs, in the
 * order of its list.
 *
 * A kernel's WGSL names only its component's slot, never an offset or a count, so the text
 * does not change when a schedule does. Two words per run keep any N and tile count exact.
 * @module
 */
import type { BlockMask } from "./block_mask.ts";
import type { PairedRuns } from "./edge_pairs.ts";
import { splitKeyRows } from "./key_split.ts";
import type { Plan } from "./plan.ts";
import { type ScheduleRows, selectRows } from "./query_tiles.ts";
import { TAG_SHIFT, type TaggedRuns, tagRuns } from "./run_fusion.ts";

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
 * @param groups per branch, the passes' groups of component indices (run_fusion.ts; default:
 *   one component per pass). A split component is a group of its own.
 * @param paired per branch and component, its runs with edge pairs (edge_pairs.ts) where its
 *   kernel walks them; such a component is a group of its own and not split
 * @param queryTiles per branch and component, the query tiles its pass runs where the call's
 *   queries are some of the positions (query_tiles.ts): only their rows are kept, in list order
 *   (a group's from its first component)
 * @returns the words and, per branch and component, the index of its pass's header slot
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
  groups?: number[][][],
  paired?: (PairedRuns | undefined)[][],
  queryTiles?: number[][][],
): { words: Uint32Array; slots: number[][] } {
  // A group of one is its mask as it is (every run's member is 0): no copy.
  const runs: (BlockMask | TaggedRuns | PairedRuns | ScheduleRows)[] = [];
  const slots = plan.branches.map((b, i) => {
    const slotOf: number[] = [];
    const branchGroups = groups?.[i] ?? b.components.map((_, j) => [j]);
    for (const group of branchGroups) {
      const masks = group.map((j) => {
        const s = splits?.[i][j] ?? 1;
        return s > 1 ? splitKeyRows(b.components[j].mask, s) : b.components[j].mask;
      });
      for (const j of group) slotOf[j] = runs.length;
      const pairs = group.length === 1 ? paired?.[i][group[0]] : undefined;
      const rows = pairs ?? (masks.length === 1 ? masks[0] : tagRuns(masks));
      const tiles = queryTiles?.[i][group[0]];
      runs.push(tiles ? selectRows(rows, tiles, splits?.[i][group[0]] || 1) : rows);
    }
    return slotOf;
  });
  let size = HEADER_WORDS + SLOT_WORDS * runs.length;
  for (const r of runs) size += r.offsets.length + RUN_WORDS * r.kvStart.length;
  const words = new Uint32Array(size);
  words[0] = headDim / 4;
  words[1] = plan.tiles.tileK;
  let at = HEADER_WORDS + SLOT_WORDS * runs.length;
  runs.forEach((r, slot) => {
    const { offsets, kvStart, kvLength, partial } = r;
    const member = "member" in r ? r.member : undefined;
    words[HEADER_WORDS + SLOT_WORDS * slot] = at;
    words.set(offsets, at);
    at += offsets.length;
    words[HEADER_WORDS + SLOT_WORDS * slot + 1] = at;
    for (let k = 0; k < kvStart.length; k++, at += RUN_WORDS) {
      words[at] = (kvStart[k] << 1) | partial[k];
      words[at + 1] = member ? kvLength[k] | (member[k] << TAG_SHIFT) : kvLength[k];
    }
  });
  return { words, slots };
}
