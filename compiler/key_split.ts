/**
 * Split-K for components with few query tiles. BigBird's global rows are one query tile per
 * head that sees every key: a few workgroups walking thousands of key tiles one after another
 * while the rest of the GPU idles. Such a component's key tiles are cut into chunks of
 * consecutive tiles, one workgroup each; every chunk writes its normalised partial O and LSE,
 * and a combine pass merges the chunks by log-sum-exp (exact, like merging components) and
 * then into what earlier components wrote.
 * @module
 */
import type { BlockMask } from "./block_mask.ts";
import type { Component } from "./plan.ts";

/** Split until the component's dispatch has about this many workgroups. */
export const SPLIT_TARGET_WORKGROUPS = 512;

/** A chunk keeps at least this many key tiles, so its fixed cost stays small. */
export const MIN_TILES_PER_SPLIT = 16;

/** A caller may ask for at most this many chunks (`CompileOptions.keySplits`). */
export const MAX_KEY_SPLITS = 4096;

/** The partials of one component stay under this many bytes (float32 O rows and LSEs). */
export const MAX_SPLIT_BYTES = 64 * 1024 * 1024;

/**
 * Whether a component runs split (its kernel writes partials, a combine pass merges them): a
 * gathered query layout (global rows, the only layout with few query tiles at any N) over keys
 * that are positions or landmarks. It depends only on the layouts, never on the numbers, so
 * other tokens compile the same kernels; the chunk count is a runtime value.
 * @param c the component
 * @returns true when the component's kernel is the split kind
 */
export function splittable(c: Component): boolean {
  return c.qLayout.kind === "gather" && c.kLayout.kind !== "sorted";
}

/**
 * How many chunks a split component's key tiles go into: enough for about
 * SPLIT_TARGET_WORKGROUPS workgroups, each with at least MIN_TILES_PER_SPLIT key tiles, the
 * partials within MAX_SPLIT_BYTES.
 * @param c a splittable component
 * @param heads batch × query heads (the dispatch's second dimension)
 * @param valueDim Dv, the head dim of the partial O rows
 * @param forced a caller's count (tests; an integer from 1 to MAX_KEY_SPLITS, checked by
 *   compile), used for every splittable component
 * @returns at least 1
 * @example
 * ```ts
 * import { planPattern } from "./plan.ts";
 * import { keySplits } from "./key_split.ts";
 * const plan = planPattern({ kind: "global", tokens: [0, 1] }, 65536, { tileQ: 64, tileK: 32 });
 * const rows = plan.branches[0].components.find((c) => c.qLayout.kind === "gather")!;
 * keySplits(rows, 8, 64); // 64: 8 workgroups become 512, 32 key tiles each
 * ```
 */
export function keySplits(
  c: Component,
  heads: number,
  valueDim: number,
  forced?: number,
): number {
  if (forced !== undefined) return forced;
  const workgroups = c.mask.qTiles * heads;
  let longest = 0;
  for (let t = 0; t < c.mask.qTiles; t++) longest = Math.max(longest, rowTiles(c.mask, t));
  const bytesPerChunk = heads * c.mask.qTiles * c.mask.tileQ * (valueDim + 1) * 4;
  const splits = Math.min(
    Math.ceil(SPLIT_TARGET_WORKGROUPS / workgroups),
    Math.floor(longest / MIN_TILES_PER_SPLIT),
    Math.floor(MAX_SPLIT_BYTES / bytesPerChunk),
  );
  return Math.max(1, splits);
}

/**
 * The BlockMask of a split component: row `t * splits + s` holds chunk `s` of query tile
 * `t`'s key tiles (runs cut where a chunk ends; chunks of `ceil(tiles / splits)` tiles, the
 * last ones shorter or empty). Every tile of the original row is in exactly one chunk, in
 * order, with its kind.
 * @param mask the component's BlockMask
 * @param splits chunks per query tile
 * @returns a BlockMask of `qTiles * splits` rows
 * @example
 * ```ts
 * import { splitKeyRows } from "./key_split.ts";
 * const mask = {
 *   qTiles: 1, kTiles: 5, tileQ: 8, tileK: 8, offsets: Uint32Array.of(0, 2),
 *   kvStart: Uint32Array.of(0, 3), kvLength: Uint32Array.of(3, 2), partial: Uint8Array.of(0, 1),
 * };
 * const s = splitKeyRows(mask, 2); // chunks of 3 tiles: [0..2], [3..4]
 * console.log(Array.from(s.offsets), Array.from(s.kvStart), Array.from(s.kvLength)); // [0, 1, 2] [0, 3] [3, 2]
 * ```
 */
export function splitKeyRows(mask: BlockMask, splits: number): BlockMask {
  const offsets = new Uint32Array(mask.qTiles * splits + 1);
  const kvStart: number[] = [], kvLength: number[] = [], partial: number[] = [];
  for (let t = 0; t < mask.qTiles; t++) {
    const total = rowTiles(mask, t);
    const per = Math.ceil(total / splits);
    let run = mask.offsets[t], used = 0; // tiles of `run` already given to a chunk
    for (let s = 0; s < splits; s++) {
      offsets[t * splits + s] = kvStart.length;
      let budget = Math.max(0, Math.min(per, total - s * per));
      while (budget > 0) {
        const take = Math.min(mask.kvLength[run] - used, budget);
        kvStart.push(mask.kvStart[run] + used);
        kvLength.push(take);
        partial.push(mask.partial[run]);
        used += take;
        budget -= take;
        if (used === mask.kvLength[run]) [run, used] = [run + 1, 0];
      }
    }
  }
  offsets[mask.qTiles * splits] = kvStart.length;
  return {
    ...mask,
    qTiles: mask.qTiles * splits,
    offsets,
    kvStart: Uint32Array.from(kvStart),
    kvLength: Uint32Array.from(kvLength),
    partial: Uint8Array.from(partial),
  };
}

function rowTiles(mask: BlockMask, t: number): number {
  let tiles = 0;
  for (let r = mask.offsets[t]; r < mask.offsets[t + 1]; r++) tiles += mask.kvLength[r];
  return tiles;
}
