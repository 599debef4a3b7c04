/**
 * BlockMask: a component's tile schedule, in compressed-row form like FlexAttention's.
 *
 * For query tile `t` (in the component's query layout), entries `offsets[t] .. offsets[t+1]`
 * list the key tiles to visit (`kvIndices`, ascending, in the key layout) and whether each is
 * PARTIAL (`partial[e] = 1`: evaluate the component's predicate, exclusions included, per
 * element) or FULL (`0`: every pair allowed, no mask work). Skipped tiles are absent. It is
 * optimised for the kernel's loop: one contiguous run of entries per workgroup, built
 * analytically from tile spans in time proportional to the candidates, never element by element.
 * @module
 */
import { type Atom, Coverage } from "./atoms.ts";
import { candidateKeyTiles } from "./candidates.ts";
import { classifyAll } from "./classify.ts";
import { type Layout, tileSpans } from "./layout.ts";
import type { RandomTables } from "./random_table.ts";

export interface BlockMask {
  /** Query tiles and key tiles in the component's layouts. */
  qTiles: number;
  kTiles: number;
  tileQ: number;
  tileK: number;
  /** Row pointers into `kvIndices` and `partial`; length `qTiles + 1`. */
  offsets: Uint32Array;
  /** Key tile of each visited entry. */
  kvIndices: Uint32Array;
  /** 1 where the entry is PARTIAL, 0 where FULL. */
  partial: Uint8Array;
}

/** Everything that decides one component's schedule. */
export interface BlockMaskOptions {
  /** The component allows the AND of these. */
  atoms: readonly Atom[];
  /** Earlier components of the same branch: a pair any of them allows is excluded here. */
  exclusions: readonly (readonly Atom[])[];
  qLayout: Layout;
  kLayout: Layout;
  n: number;
  tileQ: number;
  tileK: number;
  random: RandomTables;
  /** Give up (return undefined) once more tiles than this are visited: a cheaper layout won. */
  maxVisited?: number;
}

/**
 * Builds the schedule of one component.
 * @param o atoms, exclusions, layouts, N, tile shape, random tables
 * @returns the component's BlockMask
 * @example
 * ```ts
 * import { buildBlockMask } from "./block_mask.ts";
 * import { RandomTables } from "./random_table.ts";
 * const m = buildBlockMask({
 *   atoms: [{ kind: "causal" }], exclusions: [], qLayout: { kind: "identity" },
 *   kLayout: { kind: "identity" }, n: 128, tileQ: 64, tileK: 64, random: new RandomTables(128),
 * });
 * console.log(m.kvIndices.length); // 3: one full tile, two diagonal partial ones
 * ```
 */
export function buildBlockMask(o: BlockMaskOptions & { maxVisited?: undefined }): BlockMask;
export function buildBlockMask(o: BlockMaskOptions): BlockMask | undefined;
export function buildBlockMask(o: BlockMaskOptions): BlockMask | undefined {
  const qSpans = tileSpans(o.qLayout, o.n, o.tileQ);
  const kSpans = tileSpans(o.kLayout, o.n, o.tileK);
  const ctx = { n: o.n, qLayout: o.qLayout, kLayout: o.kLayout, random: o.random };
  const offsets = new Uint32Array(qSpans.length + 1);
  const kv: number[] = [];
  const partial: number[] = [];
  const maxVisited = o.maxVisited ?? Infinity;
  for (let t = 0; t < qSpans.length; t++) {
    const qs = qSpans[t];
    const ranges = candidateKeyTiles({ ...o, qSpan: qs });
    for (const [first, last] of ranges) {
      for (let kt = first; kt <= last && kt < kSpans.length; kt++) {
        const ks = kSpans[kt];
        let c = classifyAll(o.atoms, qs, ks, ctx);
        for (const excluded of o.exclusions) {
          if (c === Coverage.Empty) break;
          const e = classifyAll(excluded, qs, ks, ctx);
          if (e === Coverage.Full) c = Coverage.Empty;
          else if (e === Coverage.Partial) c = Coverage.Partial;
        }
        if (c === Coverage.Empty) continue;
        kv.push(kt);
        partial.push(c === Coverage.Partial ? 1 : 0);
      }
    }
    offsets[t + 1] = kv.length;
    if (kv.length > maxVisited) return undefined;
  }
  return {
    qTiles: qSpans.length,
    kTiles: kSpans.length,
    tileQ: o.tileQ,
    tileK: o.tileK,
    offsets,
    kvIndices: Uint32Array.from(kv),
    partial: Uint8Array.from(partial),
  };
}

/** Number of visited tiles, and how many of them are PARTIAL. */
export function blockMaskCounts(m: BlockMask): { visited: number; partial: number } {
  let partial = 0;
  for (const p of m.partial) partial += p;
  return { visited: m.kvIndices.length, partial };
}
