/**
 * Decoding: a few query rows against a long key sequence (Nq from 1 to 64, DESIGN §7). The
 * attention kernel's workgroup holds one query tile of one head, so a decoding step would run
 * one mostly-padding tile per head, each walking every key alone, and read K and V once per
 * query head of a group. A decode kernel instead holds the call's queries of one query tile
 * for every query head of a key/value head (GQA's group shares each K and V row it reads), and
 * cuts the tile's key tiles into chunks, one workgroup each (flash-decoding); a combine pass
 * merges the chunks by log-sum-exp. The key tiles are the component's own schedule row, in its
 * own layout, so a sparse pattern's decode time follows its allowed keys: under stride(P) the
 * query at position p reads one residue class, a contiguous range in residue order.
 * @module
 */
import { type AttentionShape, sequenceSizes } from "../core/shape.ts";
import { layoutPositions } from "./layout.ts";
import type { Branch, Component, Plan } from "./plan.ts";
import type { QueryRange } from "./query_tiles.ts";
import { readsHash, stagedCodes } from "./component_reads.ts";

/** A call decodes when its queries are at most this many rows (and not every position). */
export const DECODE_MAX_QUERIES = 64;

/** Invocations of a decode workgroup. */
export const DECODE_THREADS = 256;

/** Query rows (heads × query slots) one decode workgroup holds; more go to row blocks. */
export const DECODE_MAX_ROWS = 32;

/** Split a tile's keys until the dispatch has about this many workgroups (H200: 132 SMs). */
export const DECODE_TARGET_WORKGROUPS = 2048;

/** A chunk keeps at least this many key tiles, so its fixed cost stays small. */
export const DECODE_MIN_TILES = 8;

/** The partial rows of one component stay under this many bytes (float32 O rows and LSEs). */
export const DECODE_MAX_PARTIAL_BYTES = 64 * 1024 * 1024;

/** Workgroup memory a decode kernel sizes itself for without a device: WebGPU's default. */
export const DECODE_DEFAULT_WORKGROUP_BYTES = 16384;

/** Marks a query slot of a tile that holds no query (the slot list is padded to `slots`). */
export const NO_QUERY_ROW = 0xffffffff;

/**
 * Whether a call decodes: its queries are some of the key positions, at most
 * DECODE_MAX_QUERIES rows, it is a forward pass of unpacked rows, and the caller did not turn
 * the decode kernel off.
 * @param plan the plan (its `queries`)
 * @param call what the call also does: gradients, packed sequences, the caller's choice
 * @returns true when decodable components take the decode kernel
 */
export function callDecodes(
  plan: Plan,
  call: { backward: boolean; packed: boolean; decode: boolean },
): boolean {
  return call.decode && !call.backward && !call.packed && plan.queries !== undefined &&
    plan.queries.count <= DECODE_MAX_QUERIES;
}

/**
 * Whether a component of a decoding call takes the decode kernel: its keys are positions of K
 * (not landmarks, not bucket order), and its scores are plain (no modifier, no uniform weights,
 * no hash codes). Others keep the attention kernel, which runs every kind.
 * @param c the component
 * @param branch its branch
 * @returns true for the decode kernel
 */
export function componentDecodes(c: Component, branch: Branch): boolean {
  const keysArePositions = c.kLayout.kind === "identity" || c.kLayout.kind === "residue" ||
    c.kLayout.kind === "gather";
  return keysArePositions && c.qLayout.kind !== "sorted" && !branch.score && !branch.uniform &&
    !readsHash(c) && stagedCodes(c).length === 0;
}

/** How one component's decode kernel is laid out over the GPU. */
export interface DecodeGeometry {
  /** The query tiles of the component's layout that hold queries, ascending. */
  tiles: number[];
  /** Query slots per tile: the most queries any listed tile holds. */
  slots: number;
  /**
   * Per listed tile, `slots` query row indices (`i`, the query at position `offset + i`), padded
   * with NO_QUERY_ROW; tile `r`'s slot `s` is entry `r * slots + s`.
   */
  slotRows: number[];
  /** Query rows per workgroup (at most DECODE_MAX_ROWS): heads of a group × slots, cut. */
  rows: number;
  /** Row blocks per tile: `ceil(group × slots / rows)`. */
  rowBlocks: number;
  /** Key chunks per tile and row block (one workgroup each). */
  chunks: number;
  /** Partial rows: chunks × batch·query heads × Nq. */
  partialRows: number;
}

/**
 * A component's decode geometry: which tiles hold the queries and which queries each holds,
 * the rows per workgroup, and enough key chunks for about DECODE_TARGET_WORKGROUPS workgroups
 * (each with at least DECODE_MIN_TILES key tiles, the partials within
 * DECODE_MAX_PARTIAL_BYTES).
 * @param c the component
 * @param o N, the queries, the call's shape, the device's workgroup memory
 * @returns the geometry
 * @example
 * ```ts
 * import { planPattern } from "./plan.ts";
 * import { decodeGeometry } from "./decode.ts";
 * const queries = { offset: 4095, count: 1 };
 * const plan = planPattern({ kind: "dense" }, 4096, { tileQ: 64, tileK: 64 }, { queries });
 * const shape = { batch: 1, headsQ: 8, headsKV: 2, seqLen: 1, headDim: 64, kvSeqLen: 4096 };
 * const c = plan.branches[0].components[0];
 * const g = decodeGeometry(c, { n: 4096, queries, shape, workgroupBytes: 16384 });
 * console.log(g.tiles, g.slotRows, g.rows, g.chunks); // [63] [0] 4 8
 * ```
 */
export function decodeGeometry(
  c: Component,
  o: { n: number; queries: QueryRange; shape: AttentionShape; workgroupBytes: number },
): DecodeGeometry {
  const { tileQ } = c.mask;
  const { offset, count } = o.queries;
  // Each listed tile's query rows, in slot order.
  const perTile = new Map<number, number[]>();
  const add = (index: number, position: number) => {
    if (position < offset || position >= offset + count) return;
    const t = Math.floor(index / tileQ);
    const list = perTile.get(t) ?? [];
    list.push(position - offset);
    perTile.set(t, list);
  };
  if (c.qLayout.kind === "identity") {
    for (let p = offset; p < offset + count; p++) add(p, p);
  } else {
    layoutPositions(c.qLayout, o.n).forEach((p, i) => add(i, p));
  }
  const tiles = [...perTile.keys()].sort((a, b) => a - b);
  const slots = Math.max(1, ...tiles.map((t) => perTile.get(t)!.length));
  const slotRows = tiles.flatMap((t) => {
    const rows = perTile.get(t)!;
    return [...rows, ...new Array(slots - rows.length).fill(NO_QUERY_ROW)];
  });
  const group = o.shape.headsQ / o.shape.headsKV;
  const wanted = group * slots;
  // The rows' float32 queries take at most half the workgroup memory; scores need the rest.
  const fit = Math.floor(o.workgroupBytes / 2 / (o.shape.headDim * 4 + 16));
  const rowBlocks = Math.ceil(wanted / Math.max(1, Math.min(DECODE_MAX_ROWS, fit)));
  const rows = Math.ceil(wanted / rowBlocks);
  let longest = 0;
  for (const t of tiles) longest = Math.max(longest, rowTiles(c, t));
  const heads = o.shape.batch * o.shape.headsQ;
  const dv = sequenceSizes(o.shape).dv;
  const workgroups = Math.max(1, tiles.length * rowBlocks * o.shape.batch * o.shape.headsKV);
  const bytesPerChunk = heads * count * (dv + 1) * 4;
  const chunks = Math.max(
    1,
    Math.min(
      Math.ceil(DECODE_TARGET_WORKGROUPS / workgroups),
      Math.floor(longest / DECODE_MIN_TILES),
      Math.floor(DECODE_MAX_PARTIAL_BYTES / bytesPerChunk),
    ),
  );
  return { tiles, slots, slotRows, rows, rowBlocks, chunks, partialRows: chunks * heads * count };
}

/** Key tiles in query tile `t`'s schedule row. */
function rowTiles(c: Component, t: number): number {
  let tiles = 0;
  for (let r = c.mask.offsets[t]; r < c.mask.offsets[t + 1]; r++) tiles += c.mask.kvLength[r];
  return tiles;
}

/** How a decode workgroup walks its chunk: keys per softmax step, keys of K staged at a time. */
export interface DecodeSteps {
  /** Keys a step scores before its softmax update (a multiple of tileK). */
  stepKeys: number;
  /** Keys of K staged in workgroup memory at a time (a power of two, at most 64). */
  stageKeys: number;
}

/**
 * A decode kernel's steps: K staged in blocks that take at most a third of the workgroup
 * memory, and steps as long as the rest holds (their float32 scores for every row and key
 * positions, beside the query rows, row statistics and the P·V reduction), at most 16 key
 * tiles, at least one.
 * @param o rows per workgroup, the head dim, the element size, the key tile, the budget
 * @returns keys per step and per staged block
 * @example
 * ```ts
 * import { decodeSteps } from "./decode.ts";
 * decodeSteps({ rows: 4, headDim: 128, element: 2, tileK: 32, bytes: 49152 });
 * // { stepKeys: 512, stageKeys: 64 }
 * ```
 */
export function decodeSteps(
  o: { rows: number; headDim: number; element: number; tileK: number; bytes: number },
): DecodeSteps {
  const stageRow = (o.headDim / 4 + 1) * 4 * o.element;
  let stageKeys = 64;
  while (stageKeys > 1 && stageKeys * stageRow > o.bytes / 3) stageKeys /= 2;
  // Fixed: the query rows (float32), the row statistics, the P·V reduction (a vec4 per thread).
  const fixed = o.rows * o.headDim * 4 + o.rows * 4 * 4 + DECODE_THREADS * 16 +
    stageKeys * stageRow;
  const perKey = o.rows * 4 + 4; // a score per row, and the key's position
  const tiles = Math.floor((o.bytes - fixed) / (perKey * o.tileK));
  return { stepKeys: Math.max(1, Math.min(tiles, 16)) * o.tileK, stageKeys };
}
