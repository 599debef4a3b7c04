/**
 * BlockMask: a component's tile schedule, in compressed-row form like FlexAttention's, with
 * consecutive key tiles of one kind stored as one run.
 *
 * For query tile `t` (in the component's query layout), runs `offsets[t] .. offsets[t+1] - 1`
 * list the key tiles to visit (in the key layout): run `r` covers key tiles
 * `kvStart[r] .. kvStart[r] + kvLength[r] - 1`, every one of them PARTIAL (`partial[r] = 1`:
 * evaluate the component's predicate, exclusions included, per element) or every one FULL (`0`:
 * every pair allowed, no mask work). Skipped (empty) tiles are in no run. `kvStart` is
 * FlexAttention's `kvIndices` with one entry per run instead of one per tile.
 *
 * Invariants: within a row, runs are ascending and disjoint, `kvLength[r] >= 1`, every tile is
 * below `kTiles`, and runs are maximal: two runs that touch (`kvStart[r] + kvLength[r] ==
 * kvStart[r+1]`) differ in kind. The visited tiles and their kinds are exactly what classifying
 * each candidate tile on its own gives.
 *
 * It is optimised for the compile step and the kernel's loop: its size is the number of runs
 * (a dense row is one run, a causal row two), not of tiles. It is built analytically from tile
 * spans: a whole range of candidate key tiles is classified at once (`rangeCoverage`), a range
 * whose tiles may differ is split where the previous row's runs ended (moved along the
 * diagonal), then bisected; so a row costs about its runs, never tile by tile or element by
 * element.
 * @module
 */
import { type Atom, Coverage } from "./atoms.ts";
import { candidateKeyTiles } from "./candidates.ts";
import { componentCoverage, KeyTileRanges, rangeCoverage } from "./component_coverage.ts";
import { type Layout, tileSpans } from "./layout.ts";
import type { HeadBatchRange } from "./predicate_classify.ts";
import type { RandomTables } from "./random_table.ts";

/** A component's tile schedule in compressed-row form (the module comment has the invariants). */
export interface BlockMask {
  /** Query tiles in the component's query layout. */
  qTiles: number;
  /** Key tiles in the component's key layout. */
  kTiles: number;
  /** Query positions per query tile. */
  tileQ: number;
  /** Key positions per key tile. */
  tileK: number;
  /** Row pointers into the run arrays; length `qTiles + 1`. */
  offsets: Uint32Array;
  /** First key tile of each run. */
  kvStart: Uint32Array;
  /** Key tiles in each run (at least 1). */
  kvLength: Uint32Array;
  /** 1 where the run's tiles are PARTIAL, 0 where FULL. */
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
  /** Heads and batches the schedule serves, for predicates that read `h` or `b` (default any). */
  domain?: HeadBatchRange;
  /** Give up (return undefined) once more tiles than this are visited: a cheaper layout won. */
  maxVisited?: number;
  /**
   * Give up too once the rows done (at least 1/256 of them) project to four times this many
   * visits over all rows. A guess for the planner's choice of layout; a mask that is returned is
   * exact either way.
   */
  projectedLimit?: number;
}

/** Rows (at least this share of them) before a layout's visits are projected over all rows. */
const PROJECT_AFTER = 1 / 256;
/** A layout projected to this many times the best one's visits is dropped. */
const PROJECT_FACTOR = 4;

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
 * console.log(Array.from(m.offsets)); // [0, 1, 3]: row 1 has a full run and a partial one
 * console.log(Array.from(m.kvStart), Array.from(m.partial)); // [0, 0, 1] [1, 0, 1]
 * ```
 */
export function buildBlockMask(
  o: BlockMaskOptions & { maxVisited?: undefined; projectedLimit?: undefined },
): BlockMask;
export function buildBlockMask(o: BlockMaskOptions): BlockMask | undefined;
export function buildBlockMask(o: BlockMaskOptions): BlockMask | undefined {
  const qSpans = tileSpans(o.qLayout, o.n, o.tileQ);
  const keys = new KeyTileRanges(o.kLayout, o.n, o.tileK);
  const kTiles = keys.spans.length;
  const ctx = {
    n: o.n,
    qLayout: o.qLayout,
    kLayout: o.kLayout,
    random: o.random,
    domain: o.domain,
  };
  const offsets = new Uint32Array(qSpans.length + 1);
  const runs = new RunList();
  const maxVisited = o.maxVisited ?? Infinity;
  const projectedLimit = o.projectedLimit ?? Infinity;
  const projectAfter = Math.max(8, Math.ceil(qSpans.length * PROJECT_AFTER));
  const candidates = { ...o, qSpan: qSpans[0] };
  // Consecutive query tiles usually see the same runs moved right by tileQ / tileK key tiles
  // (bands, diagonals, residue classes): a candidate range that is not uniform is split first
  // where the previous row's runs started and ended, so moved. Every piece is still classified,
  // so a wrong guess costs time, never exactness.
  const shift = o.tileQ / o.tileK;
  for (let t = 0; t < qSpans.length; t++) {
    const qs = qSpans[t];
    const coverage = (first: number, last: number) =>
      first === last
        ? componentCoverage(o, qs, keys.spans[first], ctx)
        : rangeCoverage(o, qs, keys.span(first, last), ctx);
    // Classify a whole range at once; bisect only where its tiles may differ.
    const bisect = (first: number, last: number, c = coverage(first, last)) => {
      if (c === Coverage.Empty) return;
      if (c !== undefined) return runs.add(first, last, c);
      const mid = (first + last) >> 1;
      bisect(first, mid);
      bisect(mid + 1, last);
    };
    runs.startRow();
    candidates.qSpan = qs;
    for (const [from, to] of candidateKeyTiles(candidates)) {
      const last = Math.min(to, kTiles - 1);
      if (from > last) continue;
      const c = coverage(from, last);
      if (c !== undefined) {
        bisect(from, last, c);
        continue;
      }
      let first = from;
      for (const edge of runs.previousRowEdges(shift, from, last)) {
        bisect(first, edge - 1);
        first = edge;
      }
      bisect(first, last);
    }
    offsets[t + 1] = runs.count;
    if (runs.visited > maxVisited) return undefined;
    // Stride(16) in natural order at N = 65536 with 8x8 tiles would classify about 4M tiles
    // before the exact bound above stops it (0.7 s on a CPU); its first rows already tell.
    const done = t + 1;
    if (
      done >= projectAfter &&
      runs.visited / done * qSpans.length > PROJECT_FACTOR * projectedLimit
    ) return undefined;
  }
  return {
    qTiles: qSpans.length,
    kTiles,
    tileQ: o.tileQ,
    tileK: o.tileK,
    offsets,
    kvStart: Uint32Array.from(runs.start),
    kvLength: Uint32Array.from(runs.length),
    partial: Uint8Array.from(runs.partial),
  };
}

/** Runs under construction; a tile range that continues the row's last run of its kind joins it. */
class RunList {
  readonly start: number[] = [];
  readonly length: number[] = [];
  readonly partial: number[] = [];
  visited = 0;
  #rowStart = 0;
  #previousRow = 0;

  get count(): number {
    return this.start.length;
  }

  startRow(): void {
    this.#previousRow = this.#rowStart;
    this.#rowStart = this.start.length;
  }

  /**
   * Where the previous row's runs started and ended (one past), moved right by `shift` key
   * tiles (both roundings when it is not whole): those in `(first, last]`, ascending, distinct.
   */
  previousRowEdges(shift: number, first: number, last: number): number[] {
    const low = Math.floor(shift), high = Math.ceil(shift);
    const edges: number[] = [];
    for (let r = this.#previousRow; r < this.#rowStart; r++) {
      const start = this.start[r], end = start + this.length[r];
      for (const edge of [start + low, start + high, end + low, end + high]) {
        const after = edges.length === 0 || edges[edges.length - 1] < edge;
        if (edge > first && edge <= last && after) edges.push(edge);
      }
    }
    return edges;
  }

  add(first: number, last: number, c: Coverage): void {
    const kind = c === Coverage.Partial ? 1 : 0;
    const r = this.start.length - 1;
    this.visited += last - first + 1;
    if (
      r >= this.#rowStart && this.partial[r] === kind && this.start[r] + this.length[r] === first
    ) {
      this.length[r] += last - first + 1;
      return;
    }
    this.start.push(first);
    this.length.push(last - first + 1);
    this.partial.push(kind);
  }
}

/** Number of visited tiles, and how many of them are PARTIAL. O(runs). */
export function blockMaskCounts(m: BlockMask): { visited: number; partial: number } {
  let visited = 0, partial = 0;
  for (let r = 0; r < m.kvLength.length; r++) {
    visited += m.kvLength[r];
    partial += m.partial[r] * m.kvLength[r];
  }
  return { visited, partial };
}

/**
 * Calls `f` for every key tile query tile `t` visits, in order, with its kind.
 * @param m the BlockMask
 * @param t a query tile
 * @param f receives the key tile and whether it is PARTIAL
 * @example
 * ```ts
 * import { buildBlockMask, forEachKeyTile } from "./block_mask.ts";
 * import { RandomTables } from "./random_table.ts";
 * const m = buildBlockMask({
 *   atoms: [{ kind: "causal" }], exclusions: [], qLayout: { kind: "identity" },
 *   kLayout: { kind: "identity" }, n: 128, tileQ: 64, tileK: 32, random: new RandomTables(128),
 * });
 * const tiles: string[] = [];
 * forEachKeyTile(m, 1, (kt, partial) => tiles.push(`${kt}${partial ? "p" : "f"}`));
 * console.log(tiles); // ["0f", "1f", "2p", "3p"]
 * ```
 */
export function forEachKeyTile(
  m: BlockMask,
  t: number,
  f: (kTile: number, partial: boolean) => void,
): void {
  for (let r = m.offsets[t]; r < m.offsets[t + 1]; r++) {
    const end = m.kvStart[r] + m.kvLength[r], partial = m.partial[r] === 1;
    for (let kt = m.kvStart[r]; kt < end; kt++) f(kt, partial);
  }
}
