/**
 * The BlockMask of a landmark component (a lowRank term): queries in natural order against the
 * `count` landmarks of one rank. Without causal every tile is FULL. With causal, query q sees
 * landmark j once its last row `min(N, (j+1)·segment) - 1` is `<= q`, which grows with j, so a
 * query tile sees a FULL prefix of landmark tiles, then PARTIAL ones, then nothing. Earlier
 * landmark components of the branch (exclusions) make every visited tile PARTIAL: the kernel's
 * predicate then drops what they counted.
 * @module
 */
import type { Atom } from "./atoms.ts";
import type { BlockMask } from "./block_mask.ts";

/**
 * Builds a landmark component's schedule.
 * @param o the component's atoms and exclusions, N, tile shape, the landmarks' geometry
 * @returns the BlockMask over (query tiles, landmark tiles)
 * @example
 * ```ts
 * import { landmarkBlockMask } from "./landmark_mask.ts";
 * const m = landmarkBlockMask({ atoms: [{ kind: "lowRank", rank: 4 }, { kind: "causal" }], exclusions: [],
 *   n: 16, tileQ: 8, tileK: 2, segment: 4, count: 4 });
 * Array.from(m.partial); // [1, 0, 1]: rows 0-7 see landmark 0-1 partly; rows 8-15 see 0-1 fully, 2-3 partly
 * ```
 */
export function landmarkBlockMask(o: {
  atoms: readonly Atom[];
  exclusions: readonly (readonly Atom[])[];
  n: number;
  tileQ: number;
  tileK: number;
  segment: number;
  count: number;
}): BlockMask {
  const qTiles = Math.ceil(o.n / o.tileQ), kTiles = Math.ceil(o.count / o.tileK);
  const causal = o.atoms.some((a) => a.kind === "causal");
  const lastRow = (j: number) => Math.min(o.n, (j + 1) * o.segment) - 1;
  const offsets = new Uint32Array(qTiles + 1);
  const start: number[] = [], length: number[] = [], partial: number[] = [];
  for (let t = 0; t < qTiles; t++) {
    const q0 = t * o.tileQ, q1 = Math.min(o.n, q0 + o.tileQ) - 1;
    for (let kt = 0; kt < kTiles; kt++) {
      const j0 = kt * o.tileK, j1 = Math.min(o.count, j0 + o.tileK) - 1;
      if (causal && lastRow(j0) > q1) break; // no later landmark is visible either
      const kind = o.exclusions.length > 0 || (causal && lastRow(j1) > q0) ? 1 : 0;
      const r = start.length - 1;
      if (r >= offsets[t] && partial[r] === kind && start[r] + length[r] === kt) length[r]++;
      else {
        start.push(kt);
        length.push(1);
        partial.push(kind);
      }
    }
    offsets[t + 1] = start.length;
  }
  return {
    qTiles,
    kTiles,
    tileQ: o.tileQ,
    tileK: o.tileK,
    offsets,
    kvStart: Uint32Array.from(start),
    kvLength: Uint32Array.from(length),
    partial: Uint8Array.from(partial),
  };
}
