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
import type { SubgroupLimits } from "./tiles.ts";

/** A call decodes when its queries are at most this many rows (and not every position). */
export const DECODE_MAX_QUERIES = 64;

/** Invocations of a decode workgroup. */
export const DECODE_THREADS = 256;

/** Query rows (heads × query slots) one decode workgroup holds; more go to row blocks. */
export const DECODE_MAX_ROWS = 32;

/** Split a tile's keys until the dispatch has about this many workgroups (H200: 132 SMs). */
export const DECODE_TARGET_WORKGROUPS = 1024;

/** A chunk keeps at least this many key tiles, so its fixed cost stays small. */
export const DECODE_MIN_TILES = 8;

/** The partial rows of one component stay under this many bytes (float32 O rows and LSEs). */
export const DECODE_MAX_PARTIAL_BYTES = 64 * 1024 * 1024;

/** Workgroup memory a decode kernel sizes itself for without a device: WebGPU's default. */
export const DECODE_DEFAULT_WORKGROUP_BYTES = 16384;

/**
 * Query rows a subgroup-form decode workgroup holds (decode_lanes_wgsl.ts): every lane keeps
 * its share of their queries and O rows in registers.
 */
export const DECODE_LANE_ROWS = 8;

/** Vec4s of a K row each lane of the subgroup form loads at most. */
const LANE_VEC4S = 4;

/**
 * Vec4s of queries and O rows a lane of the subgroup form keeps in registers at most: past it
 * the kernel spills (MLA's 8 rows of D = 192, Dv = 128 on 8 lanes, 80 vec4s a lane, decoded
 * 3.6x slower on the H200 than on 16 lanes).
 */
const LANE_REGISTER_VEC4S = 32;

/** Invocations of a subgroup-form decode workgroup (128 measured faster than 256 and 512). */
export const DECODE_LANE_THREADS = 128;

/** Key tiles a subgroup-form decode step lists (the only barriers are one pair per step). */
export const DECODE_LANE_STEP_TILES = 64;

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
 * const g = decodeGeometry(c, { n: 4096, queries, shape, workgroupBytes: 16384, element: 4 });
 * console.log(g.tiles, g.slotRows, g.rows, g.chunks); // [63] [0] 4 8
 * ```
 */
export function decodeGeometry(
  c: Component,
  o: {
    n: number;
    queries: QueryRange;
    shape: AttentionShape;
    workgroupBytes: number;
    element: number;
    /** Rows per workgroup at most (default DECODE_MAX_ROWS; the subgroup form holds fewer). */
    maxRows?: number;
  },
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
  // As many rows as leave room for one key tile per step and a few staged keys.
  let fit = o.maxRows ?? DECODE_MAX_ROWS;
  const least = (rows: number) =>
    fixedBytes({ rows, headDim: o.shape.headDim, element: o.element, stageKeys: 8 }) +
    keyBytes(rows) * c.mask.tileK;
  while (fit > 1 && least(fit) > o.workgroupBytes) fit--;
  const rowBlocks = Math.ceil(wanted / fit);
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

/** A decode step scores at most this many key tiles. */
const MAX_STEP_TILES = 16;

/** How a decode workgroup walks its chunk: keys per softmax step, keys of K staged at a time. */
export interface DecodeSteps {
  /** Keys a step scores before its softmax update (a multiple of tileK). */
  stepKeys: number;
  /** Keys of K staged in workgroup memory at a time (a power of two, at most 64). */
  stageKeys: number;
}

/**
 * A decode kernel's steps: K staged in blocks that take at most 40% of the workgroup
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
  let stageKeys = 64;
  const stageRow = (o.headDim / 4 + 1) * 4 * o.element;
  const room = () => o.bytes - fixedBytes({ ...o, stageKeys });
  while (
    stageKeys > 1 && (stageKeys * stageRow > o.bytes * 0.4 || room() < keyBytes(o.rows) * o.tileK)
  ) {
    stageKeys /= 2;
  }
  const tiles = Math.floor(room() / (keyBytes(o.rows) * o.tileK));
  return { stepKeys: Math.max(1, Math.min(tiles, MAX_STEP_TILES)) * o.tileK, stageKeys };
}

/**
 * Workgroup memory of a decode kernel besides its step's keys: the query rows (float32), five
 * words per row (position, head, maximum, sum, rescale), the P·V reduction (a vec4 per
 * invocation), the staged K and the step's tile list.
 */
function fixedBytes(
  o: { rows: number; headDim: number; element: number; stageKeys: number },
): number {
  const stageRow = (o.headDim / 4 + 1) * 4 * o.element;
  return o.rows * o.headDim * 4 + o.rows * 5 * 4 + DECODE_THREADS * 16 +
    o.stageKeys * stageRow + MAX_STEP_TILES * 4;
}

/** Workgroup memory per key of a step: a score per row, its position and its row of K and V. */
function keyBytes(rows: number): number {
  return rows * 4 + 8;
}

/** How a subgroup-form decode workgroup splits its keys (decode_lanes_wgsl.ts). */
export interface DecodeLanes {
  /** Lanes sharing one key's K and V rows: a power of two dividing D/4 and Dv/4. */
  lanes: number;
  /** Keys a group of lanes loads at once. */
  keys: number;
  /** Float16 rows read 16 bytes per lane (two vec4<f16> in a vec4<u32>). */
  wide: boolean;
  /** Key tiles per step. */
  stepTiles: number;
  /** The device's smallest subgroup size. */
  subgroupSize: number;
  /** Whether the WGSL enables subgroups. */
  directive: boolean;
  /** Load each round's K and V one round ahead (decode_lanes_wgsl.ts). */
  prefetch: boolean;
}

/**
 * The subgroup form's split, where the device has subgroups: the fewest lanes per key that
 * leave each lane at most LANE_VEC4S vec4s of a K row and LANE_REGISTER_VEC4S vec4s of queries
 * and O rows, within a subgroup and dividing both head dims. Fewer lanes per key mean more keys
 * at once and fewer shuffles: a float16 row of D = 128 under 4 query rows takes 8 lanes, 32
 * bytes each (on the H200, GQA at Nk = 131072, dense: 584 µs against 603 on 16 lanes); 8 rows
 * take 16. Four keys are loaded at once per group, the next four while these are scored (621
 * µs against 712 for two keys and 656 for four without loading ahead, on 16 lanes); one key
 * where loops are not unrolled (software adapters).
 * @param o the head dims, rows per workgroup, unrolling, the device's subgroups
 * @returns the split, or undefined without subgroups
 * @example
 * ```ts
 * import { decodeLanes } from "./decode.ts";
 * decodeLanes({
 *   headDim: 128, valueDim: 128, rows: 4, element: 2, unroll: true,
 *   subgroups: { size: 32, directive: false },
 * });
 * // { lanes: 8, keys: 4, wide: true, stepTiles: 64, subgroupSize: 32, directive: false,
 * //   prefetch: true }
 * ```
 */
export function decodeLanes(o: {
  headDim: number;
  valueDim: number;
  rows: number;
  /** Bytes per element of K and V. */
  element: number;
  unroll: boolean;
  subgroups?: SubgroupLimits;
}): DecodeLanes | undefined {
  const sg = o.subgroups;
  if (!sg || sg.size < 1 || DECODE_LANE_THREADS % sg.size !== 0) return undefined;
  const d4 = o.headDim / 4, dv4 = o.valueDim / 4;
  const overloaded = (lanes: number) =>
    d4 / lanes > LANE_VEC4S || o.rows * (d4 + dv4) / lanes > LANE_REGISTER_VEC4S;
  let lanes = 1;
  while (
    overloaded(lanes) && lanes * 2 <= sg.size && d4 % (lanes * 2) === 0 && dv4 % (lanes * 2) === 0
  ) lanes *= 2;
  const keys = o.unroll ? 4 : 1;
  const wide = o.element === 2 && (d4 / lanes) % 2 === 0 && (dv4 / lanes) % 2 === 0;
  return {
    lanes,
    keys,
    wide,
    stepTiles: DECODE_LANE_STEP_TILES,
    subgroupSize: sg.size,
    directive: sg.directive,
    prefetch: true,
  };
}
