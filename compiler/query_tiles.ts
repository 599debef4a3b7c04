/**
 * Queries that are some of the key positions (a prefill chunk, one decoding step): the plan is
 * built over the N = Nk key positions on both sides, and the call's Nq query rows are positions
 * `offset .. offset + Nq - 1` of it (row `i` at position `offset + i`). A component's query tiles
 * then hold some of the call's queries or none; only those that hold some are dispatched, one
 * workgroup each, so a decoding step (Nq = 1) runs one query tile per head whatever Nk is. The
 * kernels read which tile each workgroup runs from a list in aux, and the schedule keeps those
 * tiles' rows only. Positions of a run tile outside the queries are padding: not loaded, not
 * stored.
 * @module
 */
import { assert } from "../core/errors.ts";
import { type AttentionShape, sequenceSizes } from "../core/shape.ts";
import { type Layout, layoutPositions } from "./layout.ts";

/** The call's query rows among the key positions: `count` rows from position `offset`. */
export interface QueryRange {
  /** Position of query row 0. */
  offset: number;
  /** Query rows, Nq (fewer than the N key positions). */
  count: number;
}

/**
 * Where a call's queries sit among its keys, when they are not all of them.
 * @param shape the call's sizes
 * @param offset query row 0's position (checked: in `[0, Nk - Nq]`)
 * @returns the range, or undefined for a square call (every position is a query)
 * @example
 * ```ts
 * import { queryRange } from "./query_tiles.ts";
 * queryRange({ batch: 1, headsQ: 1, headsKV: 1, seqLen: 1, headDim: 8, kvSeqLen: 100 }, 99);
 * // { offset: 99, count: 1 }
 * queryRange({ batch: 1, headsQ: 1, headsKV: 1, seqLen: 100, headDim: 8 }, 0); // undefined
 * ```
 */
export function queryRange(shape: AttentionShape, offset: number): QueryRange | undefined {
  const { nq, nk } = sequenceSizes(shape);
  return nq === nk ? undefined : { offset, count: nq };
}

/**
 * The query tiles of a layout that hold some of the call's queries, ascending. A bucket-ordered
 * layout sorts the call's query rows only, so its first `ceil(Nq / tileQ)` tiles hold them all.
 * @param layout a component's query layout
 * @param n N, the key positions
 * @param tileQ query positions per tile
 * @param queries the call's queries
 * @returns tile indices
 * @example
 * ```ts
 * import { queryTiles } from "./query_tiles.ts";
 * queryTiles({ kind: "identity" }, 64, 8, { offset: 60, count: 4 }); // [7]
 * queryTiles({ kind: "residue", period: 4 }, 16, 4, { offset: 14, count: 2 }); // [2, 3]
 * ```
 */
export function queryTiles(
  layout: Layout,
  n: number,
  tileQ: number,
  queries: QueryRange,
): number[] {
  const tiles: number[] = [];
  if (layout.kind === "sorted") {
    for (let t = 0; t * tileQ < queries.count; t++) tiles.push(t);
    return tiles;
  }
  if (layout.kind === "identity") {
    const first = Math.floor(queries.offset / tileQ);
    const last = Math.floor((queries.offset + queries.count - 1) / tileQ);
    for (let t = first; t <= last; t++) tiles.push(t);
    return tiles;
  }
  const end = queries.offset + queries.count;
  layoutPositions(layout, n).forEach((p, i) => {
    const t = Math.floor(i / tileQ);
    if (p >= queries.offset && p < end && tiles[tiles.length - 1] !== t) tiles.push(t);
  });
  return tiles;
}

/** A schedule's rows of runs (a BlockMask, or its split, fused or paired forms). */
export interface ScheduleRows {
  offsets: Uint32Array;
  kvStart: Uint32Array;
  kvLength: Uint32Array;
  partial: Uint8Array;
  /** The runs' members, where several components share the rows (run_fusion.ts). */
  member?: Uint8Array;
}

/**
 * The rows of the listed query tiles only, in list order: row `r * perTile + s` of the result
 * is row `tiles[r] * perTile + s` of `rows` (`perTile` key chunks per query tile, split-K).
 * @param rows a schedule's rows over every query tile
 * @param tiles the query tiles to keep, ascending
 * @param perTile rows per query tile (key chunks; 1 without split-K)
 * @returns the kept rows with their runs
 * @example
 * ```ts
 * import { selectRows } from "./query_tiles.ts";
 * const rows = {
 *   offsets: Uint32Array.of(0, 1, 3), kvStart: Uint32Array.of(0, 0, 1),
 *   kvLength: Uint32Array.of(1, 1, 1), partial: Uint8Array.of(1, 0, 1),
 * };
 * const kept = selectRows(rows, [1], 1);
 * console.log(Array.from(kept.offsets), Array.from(kept.kvStart)); // [0, 2] [0, 1]
 * ```
 */
export function selectRows(
  rows: ScheduleRows,
  tiles: readonly number[],
  perTile: number,
): ScheduleRows {
  const offsets = new Uint32Array(tiles.length * perTile + 1);
  const kept: number[] = [];
  tiles.forEach((t, r) => {
    for (let s = 0; s < perTile; s++) {
      const row = t * perTile + s;
      assert(row + 1 < rows.offsets.length, "a listed query tile past the schedule");
      for (let run = rows.offsets[row]; run < rows.offsets[row + 1]; run++) kept.push(run);
      offsets[r * perTile + s + 1] = kept.length;
    }
  });
  const pick = <A extends Uint32Array | Uint8Array>(a: A, make: (n: number) => A) => {
    const out = make(kept.length);
    kept.forEach((run, i) => out[i] = a[run]);
    return out;
  };
  return {
    offsets,
    kvStart: pick(rows.kvStart, (n) => new Uint32Array(n)),
    kvLength: pick(rows.kvLength, (n) => new Uint32Array(n)),
    partial: pick(rows.partial, (n) => new Uint8Array(n)),
    ...(rows.member ? { member: pick(rows.member, (n) => new Uint8Array(n)) } : {}),
  };
}
