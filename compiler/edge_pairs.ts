/**
 * Edge pairs: at each end of a band a query tile visits a key tile that only half of its rows
 * see. With 64x32 tiles, ring(128)'s query tile [64t, 64t + 63] visits ten key tiles: the first
 * (keys 64t - 128 .. 64t - 97) only its rows 0-31 see, the last (64t + 160 .. 64t + 191) only
 * rows 32-63. A kernel with edge pairs walks such two tiles as one step, each half of its rows
 * scoring its own tile, so the band costs nine steps instead of ten: it visits 18,432 keys
 * per tile for ring(128)'s 16,448 allowed pairs (0.892) instead of 20,480 (0.803), the bound of
 * any rectangular 64-row tile.
 *
 * The pair is the row's first run in the schedule (schedule_buffer.ts): `A << 1 | 1` and
 * `B | PAIR_BIT`, A the upper half's tile and B the lower half's; A and B are then in no other
 * run. Which tiles each half sees comes from classifying the PARTIAL tiles per half.
 * @module
 */
import { Coverage } from "./atoms.ts";
import { componentCoverage } from "./component_coverage.ts";
import { tileSpans } from "./layout.ts";
import type { Component } from "./plan.ts";
import type { HeadBatchRange } from "./predicate_classify.ts";
import type { RandomTables } from "./random_table.ts";

/**
 * How a kernel holds an edge pair's tiles (edge_pair_wgsl.ts): wide, both K tiles then both V
 * tiles side by side in a larger V tile; narrow, in the plain tiles, the halves' P·V one after
 * the other.
 */
export type EdgePairForm = "wide" | "narrow";

/** Workgroup vec4s of a kernel's V tile: the plain tile, or what its edge pairs need. */
export function vTileLength(tileK: number, d4: number, form?: EdgePairForm): number {
  return form === "wide" ? 2 * tileK * (d4 + 1) : form === "narrow" ? tileK * (d4 + 1) : tileK * d4;
}

/** Set in a pair run's second word: the run is an edge pair, the rest is B's key tile. */
export const PAIR_BIT = 0x80000000;

/** A schedule's runs (BlockMask's arrays), where a row's first run may be an edge pair. */
export interface PairedRuns {
  offsets: Uint32Array;
  kvStart: Uint32Array;
  /** Run length, or `B | PAIR_BIT` for an edge pair. */
  kvLength: Uint32Array;
  partial: Uint8Array;
  /** Query tiles whose first run is an edge pair. */
  pairs: number;
}

/**
 * The component's runs with an edge pair first in every query tile that has one: the first key
 * tile only the upper half of its rows sees, and the last one only the lower half sees. Only
 * PARTIAL tiles can be either (a FULL tile's halves both see it), so only they are classified
 * again, per half (`componentCoverage`, the BlockMask's own rule: EMPTY is exact).
 * @param c the component (identity layouts; its mask's tileQ even)
 * @param o N, the random tables and the heads and batches of the plan
 * @returns the runs, or undefined when no query tile has a pair
 */
export function edgePairRuns(
  c: Component,
  o: { n: number; random: RandomTables; domain?: HeadBatchRange },
): PairedRuns | undefined {
  const m = c.mask;
  const halves = tileSpans(c.qLayout, o.n, m.tileQ / 2);
  const keys = tileSpans(c.kLayout, o.n, m.tileK);
  const ctx = {
    n: o.n,
    qLayout: c.qLayout,
    kLayout: c.kLayout,
    random: o.random,
    domain: o.domain,
  };
  const sees = (half: number, kt: number) =>
    half < halves.length && componentCoverage(c, halves[half], keys[kt], ctx) !== Coverage.Empty;
  const offsets = new Uint32Array(m.qTiles + 1);
  const kvStart: number[] = [], kvLength: number[] = [], partial: number[] = [];
  let pairs = 0;
  for (let t = 0; t < m.qTiles; t++) {
    let a = -1, b = -1;
    for (let r = m.offsets[t]; r < m.offsets[t + 1]; r++) {
      if (!m.partial[r]) continue;
      for (let kt = m.kvStart[r]; kt < m.kvStart[r] + m.kvLength[r]; kt++) {
        const upper = sees(2 * t, kt), lower = sees(2 * t + 1, kt);
        if (upper && !lower && a < 0) a = kt;
        if (lower && !upper) b = kt;
      }
    }
    const paired = a >= 0 && b >= 0;
    if (paired) {
      kvStart.push(a), kvLength.push((b | PAIR_BIT) >>> 0), partial.push(1);
      pairs++;
    }
    for (let r = m.offsets[t]; r < m.offsets[t + 1]; r++) {
      const from = m.kvStart[r], to = from + m.kvLength[r];
      // A and B leave their runs (splitting one where they sit inside it).
      let at = from;
      for (const cut of paired ? [a, b].sort((x, y) => x - y) : []) {
        if (cut < at || cut >= to) continue;
        if (cut > at) kvStart.push(at), kvLength.push(cut - at), partial.push(m.partial[r]);
        at = cut + 1;
      }
      if (at < to) kvStart.push(at), kvLength.push(to - at), partial.push(m.partial[r]);
    }
    offsets[t + 1] = kvStart.length;
  }
  if (pairs === 0) return undefined;
  return {
    offsets,
    kvStart: Uint32Array.from(kvStart),
    kvLength: Uint32Array.from(kvLength),
    partial: Uint8Array.from(partial),
    pairs,
  };
}

/**
 * Whether a component's kernel walks edge pairs: a band (window or ring) in natural order on a
 * complete grid (every position a query, N a multiple of both tile sizes), alone in its pass
 * and not split, with no
 * score modifier or hash codes, the prefetched key loop, and rows that split into halves at an
 * invocation boundary. Structural only: the WGSL must not change with the band's numbers, so a
 * radius that yields no pair runs the same pipeline (the kernel then skips the step).
 */
export function walksEdgePairs(
  c: Component,
  o: {
    n: number;
    /** Every position is a query (a square call): else any query tile may hold padding. */
    allRows: boolean;
    rowsPerThread: number;
    prefetch: boolean;
    /** Alone in its pass, not split, no score modifier or uniform weights, reads no codes. */
    plain: boolean;
  },
): boolean {
  const { tileQ, tileK } = c.mask;
  return o.plain && o.allRows && o.prefetch && c.qLayout.kind === "identity" &&
    c.kLayout.kind === "identity" &&
    c.atoms.some((a) => a.kind === "window" || a.kind === "ring") &&
    o.n % tileQ === 0 && o.n % tileK === 0 && tileQ % (2 * o.rowsPerThread) === 0;
}
