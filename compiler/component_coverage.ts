/**
 * A component's coverage of a block: its atoms minus everything an earlier component of its
 * branch allows, for one key tile (`componentCoverage`) or for a whole run of key tiles at once
 * (`rangeCoverage`, which answers only when every tile of the run would get the same answer on
 * its own). The BlockMask builder classifies runs and splits only where tiles may differ.
 * @module
 */
import { type Atom, Coverage } from "./atoms.ts";
import { classifyAll, type ClassifyContext, classifyRange, type KeyRangeSpan } from "./classify.ts";
import {
  indexSpan,
  type Layout,
  layoutCount,
  layoutIncreasing,
  type TileSpan,
  tileSpans,
} from "./layout.ts";

/** What decides a component's coverage besides the spans. */
export interface ComponentRule {
  /** The component allows the AND of these... */
  atoms: readonly Atom[];
  /** ...minus every pair one of these conjunctions (earlier components) allows. */
  exclusions: readonly (readonly Atom[])[];
}

/**
 * Coverage of the component over one block: EMPTY if its atoms are or an exclusion is FULL;
 * else PARTIAL if its atoms or an exclusion are; else FULL.
 * @param o the component's atoms and exclusions
 * @param qs query span
 * @param ks key span
 * @param ctx classifier context
 * @returns the coverage
 * @example
 * ```ts
 * import { componentCoverage } from "./component_coverage.ts";
 * import { RandomTables } from "./random_table.ts";
 * const span = (lo: number, hi: number) => ({ lo, hi, contiguous: true, classLo: -1, classHi: -1 });
 * const ctx = { n: 128, qLayout: { kind: "identity" as const }, kLayout: { kind: "identity" as const }, random: new RandomTables(128) };
 * const o = { atoms: [{ kind: "dense" as const }], exclusions: [[{ kind: "causal" as const }]] };
 * componentCoverage(o, span(0, 63), span(64, 127), ctx); // Coverage.Full: no key is causal
 * ```
 */
export function componentCoverage(
  o: ComponentRule,
  qs: TileSpan,
  ks: TileSpan,
  ctx: ClassifyContext,
): Coverage {
  let c = classifyAll(o.atoms, qs, ks, ctx);
  for (let i = 0; i < o.exclusions.length && c !== Coverage.Empty; i++) {
    const e = classifyAll(o.exclusions[i], qs, ks, ctx);
    if (e === Coverage.Full) c = Coverage.Empty;
    else if (e === Coverage.Partial) c = Coverage.Partial;
  }
  return c;
}

/**
 * `componentCoverage` of every key tile of a run at once: the answer all its tiles share, or
 * undefined when they may differ. The run is EMPTY when the atoms are EMPTY or an exclusion is
 * FULL on all of it; otherwise the atoms and every exclusion must each answer for every tile
 * (`classifyRange`).
 * @param o the component's atoms and exclusions
 * @param qs query span
 * @param ks the run's span (`KeyTileRanges.span`)
 * @param ctx classifier context
 * @returns the shared coverage, or undefined
 * @example
 * ```ts
 * import { KeyTileRanges, rangeCoverage } from "./component_coverage.ts";
 * import { RandomTables } from "./random_table.ts";
 * const identity = { kind: "identity" as const };
 * const ctx = { n: 4096, qLayout: identity, kLayout: identity, random: new RandomTables(4096) };
 * const keys = new KeyTileRanges(identity, 4096, 32);
 * const qs = { lo: 1024, hi: 1087, contiguous: true, classLo: -1, classHi: -1 };
 * const causal = { atoms: [{ kind: "causal" as const }], exclusions: [] };
 * rangeCoverage(causal, qs, keys.span(0, 31), ctx); // Coverage.Full: keys 0..1023
 * rangeCoverage(causal, qs, keys.span(32, 33), ctx); // Coverage.Partial: the diagonal tiles
 * rangeCoverage(causal, qs, keys.span(0, 33), ctx); // undefined: both kinds
 * ```
 */
export function rangeCoverage(
  o: ComponentRule,
  qs: TileSpan,
  ks: KeyRangeSpan,
  ctx: ClassifyContext,
): Coverage | undefined {
  let c = classifyRange(o.atoms, qs, ks, ctx);
  if (c === Coverage.Empty) return c;
  for (let i = 0; i < o.exclusions.length; i++) {
    const e = classifyRange(o.exclusions[i], qs, ks, ctx);
    if (e === Coverage.Full) return Coverage.Empty; // even when the atoms' answer was unknown
    if (e === undefined) c = undefined;
    else if (e === Coverage.Partial && c === Coverage.Full) c = Coverage.Partial;
  }
  return c;
}

/** The key tiles of a layout, one by one (`spans`) or several consecutive ones at once (`span`). */
export class KeyTileRanges {
  /** Each tile's own span, tile 0 first. */
  readonly spans: readonly TileSpan[];
  /** Keys the layout walks. */
  readonly count: number;
  /** Span of any run of key indices (`indexSpan`). */
  readonly indexSpan: (start: number, end: number) => TileSpan;
  /** Tile boxes only move right along the whole layout (identity, sorted gathered tokens). */
  readonly increasing: boolean;

  /**
   * @param layout the key layout
   * @param n sequence length N
   * @param tileSize keys per tile
   */
  constructor(readonly layout: Layout, n: number, readonly tileSize: number) {
    this.spans = tileSpans(layout, n, tileSize);
    this.count = layoutCount(layout, n);
    this.indexSpan = indexSpan(layout, n);
    this.increasing = layoutIncreasing(layout);
  }

  /**
   * Tiles `first..last` (`first < last`) taken together.
   * @param first first tile
   * @param last last tile
   * @returns the merged span, with the end tiles' own spans
   */
  span(first: number, last: number): KeyRangeSpan {
    const a = this.spans[first], b = this.spans[last];
    const start = first * this.tileSize, end = Math.min(this.count, (last + 1) * this.tileSize);
    // Inside one residue class positions increase along the layout too.
    const increasing = this.increasing || (a.classLo >= 0 && a.classLo === b.classHi);
    // Moving right, the first tile starts lowest and the last one ends highest.
    const s = increasing ? undefined : this.indexSpan(start, end);
    const lo = s ? s.lo : a.lo, hi = s ? s.hi : b.hi;
    return {
      lo,
      hi,
      contiguous: hi - lo + 1 === end - start,
      classLo: a.classLo,
      classHi: b.classHi,
      first: a,
      last: b,
      increasing,
    };
  }
}
