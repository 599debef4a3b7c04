/**
 * Candidate key tiles: for one query tile, the key tiles that may hold an allowed pair, as a
 * few index ranges derived from the atoms' geometry (a window's band, a ring's band and its
 * wrap-around, the key blocks `random` drew, a residue class range). The classifier then looks
 * only at these, so building a schedule costs about the number of tiles visited, not N^2.
 * @module
 */
import type { Atom } from "./atoms.ts";
import { countInRange } from "./classify.ts";
import { type Layout, residueGeometry, type TileSpan } from "./layout.ts";
import type { RandomTable, RandomTables } from "./random_table.ts";

/** Inclusive integer intervals, sorted and disjoint. */
type Intervals = [number, number][];

const MAX_RANDOM_QUERY_BLOCKS = 64;

/** A globalCols atom's key intervals (read only), by atom. */
const globalColumns = new WeakMap<Atom, Intervals>();
/** A random table's key intervals per query block (read only). */
const randomIntervals = new WeakMap<RandomTable, Intervals[]>();

/**
 * Key-tile index ranges `[first, last]` worth classifying for one query tile.
 * @param options the component's atoms and layouts, the query tile's span, N and key tile size
 * @returns inclusive tile-index ranges, ascending
 * @example
 * ```ts
 * import { candidateKeyTiles } from "./candidates.ts";
 * import { RandomTables } from "./random_table.ts";
 * candidateKeyTiles({
 *   atoms: [{ kind: "window", left: 16, right: 0 }],
 *   qLayout: { kind: "identity" }, kLayout: { kind: "identity" },
 *   qSpan: { lo: 64, hi: 127, contiguous: true, classLo: -1, classHi: -1 },
 *   n: 256, tileK: 32, random: new RandomTables(256),
 * }); // [[1, 3]]
 * ```
 */
export function candidateKeyTiles(options: {
  atoms: readonly Atom[];
  qLayout: Layout;
  kLayout: Layout;
  qSpan: TileSpan;
  n: number;
  tileK: number;
  random: RandomTables;
}): [number, number][] {
  const { atoms, qLayout, kLayout, qSpan, n, tileK } = options;
  if (kLayout.kind === "gather") {
    return kLayout.tokens.length ? [[0, Math.ceil(kLayout.tokens.length / tileK) - 1]] : [];
  }
  if (kLayout.kind === "residue") {
    const ownStride = qLayout.kind === "residue" && qLayout.period === kLayout.period &&
      atoms.some((a) => a.kind === "stride" && a.period === kLayout.period);
    const all: [number, number][] = [[0, Math.ceil(n / tileK) - 1]];
    if (!ownStride) return all;
    const g = residueGeometry(kLayout.period, n);
    const first = g.classStart(qSpan.classLo);
    const last = g.classStart(qSpan.classHi + 1) - 1;
    return [[Math.floor(first / tileK), Math.floor(last / tileK)]];
  }
  let keys: Intervals | undefined; // undefined: every key so far
  for (const atom of atoms) {
    const allowed = keyPositions(atom, qSpan, n, options.random);
    if (allowed) keys = keys ? intersect(keys, allowed) : allowed;
  }
  return toTiles(keys ?? [[0, n - 1]], tileK);
}

/** Positions of keys `atom` may allow for some query in the span; undefined = no limit. */
function keyPositions(
  atom: Atom,
  qs: TileSpan,
  n: number,
  random: RandomTables,
): Intervals | undefined {
  switch (atom.kind) {
    case "causal":
      return [[0, qs.hi]];
    case "window":
      return clip([[qs.lo - atom.left, qs.hi + atom.right]], n);
    case "ring": {
      const lo = qs.lo - atom.radius, hi = qs.hi + atom.radius;
      if (hi - lo + 1 >= n) return undefined;
      // The band wraps around the ends: shift the out-of-range parts by N.
      return normalizeIntervals([
        [Math.max(lo, 0), Math.min(hi, n - 1)],
        ...(lo < 0 ? [[lo + n, n - 1] as [number, number]] : []),
        ...(hi > n - 1 ? [[0, hi - n] as [number, number]] : []),
      ]);
    }
    case "globalCols": {
      // The same for every query tile: built once per atom.
      let columns = globalColumns.get(atom);
      if (!columns) {
        globalColumns.set(atom, columns = normalizeIntervals(atom.tokens.map((t) => [t, t])));
      }
      return columns;
    }
    case "globalRows":
      return countInRange(atom.tokens, qs.lo, qs.hi) === 0 ? [] : undefined;
    case "random": {
      const s = atom.blockSize;
      const qb0 = Math.floor(qs.lo / s), qb1 = Math.floor(qs.hi / s);
      if (qb1 - qb0 >= MAX_RANDOM_QUERY_BLOCKS) return undefined;
      const table = random.get(atom);
      const drawn = (qb: number) => table.drawnSorted(qb).map((kb) => [kb * s, kb * s + s - 1]);
      if (qb0 === qb1) {
        // Most query tiles lie in one query block: its key intervals, built once per block.
        let byBlock = randomIntervals.get(table);
        if (!byBlock) randomIntervals.set(table, byBlock = []);
        return byBlock[qb0] ??= clip(drawn(qb0) as Intervals, n);
      }
      const list: Intervals = [];
      for (let qb = qb0; qb <= qb1; qb++) list.push(...drawn(qb) as Intervals);
      return clip(list, n);
    }
    default:
      return undefined;
  }
}

function clip(list: Intervals, n: number): Intervals {
  return normalizeIntervals(
    list.map(([a, b]) => [Math.max(a, 0), Math.min(b, n - 1)] as [number, number]),
  );
}

/** Sorts, drops empty intervals and merges overlapping or adjacent ones. */
function normalizeIntervals(list: Intervals): Intervals {
  // One interval (a window's band, most tile ranges) needs no sort: the planner asks per tile.
  if (list.length === 1) return list[0][0] <= list[0][1] ? list : [];
  return mergeSorted(list.filter(([a, b]) => a <= b).sort((x, y) => x[0] - y[0]));
}

/** Merges overlapping or adjacent intervals of a list sorted by start (into new pairs). */
function mergeSorted(sorted: Intervals): Intervals {
  const out: Intervals = [];
  for (const [a, b] of sorted) {
    const last = out[out.length - 1];
    if (last && a <= last[1] + 1) last[1] = Math.max(last[1], b);
    else out.push([a, b]);
  }
  return out;
}

function intersect(x: Intervals, y: Intervals): Intervals {
  const out: Intervals = [];
  let i = 0, j = 0;
  while (i < x.length && j < y.length) {
    const a = Math.max(x[i][0], y[j][0]), b = Math.min(x[i][1], y[j][1]);
    if (a <= b) out.push([a, b]);
    if (x[i][1] < y[j][1]) i++;
    else j++;
  }
  return out;
}

/** Sorted, disjoint key intervals to tile ranges: already in order, so merging is enough. */
function toTiles(keys: Intervals, tileK: number): [number, number][] {
  return mergeSorted(keys.map(([a, b]) => [Math.floor(a / tileK), Math.floor(b / tileK)]));
}
