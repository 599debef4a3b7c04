/**
 * What both forms of the decode kernel (decode_wgsl.ts, staged; decode_lanes_wgsl.ts, subgroup
 * lanes) write alike: their bindings, the constants of the call's sizes, the cut of a listed
 * tile's key tiles into chunks, and the walk that lists each step's key tiles.
 * @module
 */
import type { AttentionShape, Dtype } from "../../core/shape.ts";
import { NO_QUERY_ROW } from "../decode.ts";
import type { QueryRange } from "../query_tiles.ts";
import { queriesConstants } from "./kernel_refs.ts";
import { f32, type ShaderModule } from "./shader_module.ts";

/**
 * Declares a decode kernel's bindings: Q, K, V, the schedule, the aux data and the split
 * buffers the decode combine merges.
 * @param m the module
 * @param q Q's element type
 * @param kv the type K's and V's vec4s are read as (`f16`, `f32`, or `u32` for packed halves)
 */
export function declareDecodeBindings(m: ShaderModule, q: Dtype, kv: Dtype | "u32"): void {
  m.declare(
    "bindings",
    `
@group(0) @binding(0) var<storage, read> qIn: array<vec4<${q}>>;
@group(0) @binding(1) var<storage, read> kIn: array<vec4<${kv}>>;
@group(0) @binding(2) var<storage, read> vIn: array<vec4<${kv}>>;
@group(0) @binding(3) var<storage, read> schedule: array<u32>;
@group(0) @binding(4) var<storage, read> aux: array<u32>;
@group(0) @binding(5) var<storage, read_write> splitO: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> splitLse: array<f32>;`,
  );
}

/**
 * The constants both forms declare first: the call's sizes, the workgroup's rows, the score
 * scale. Each form adds its own after them (`extra`, already indented lines).
 * @param o the sizes, the rows, the scale and the form's own constants
 */
export function declareDecodeConstants(
  m: ShaderModule,
  o: {
    n: number;
    queries: QueryRange;
    shape: AttentionShape;
    d4: number;
    dv4: number;
    tileK: number;
    slots: number;
    rows: number;
    rowBlocks: number;
    scale: number;
    extra: string;
  },
): void {
  m.declare(
    "constants",
    `
const N = ${o.n}u;${queriesConstants(o.queries)}
const D4 = ${o.d4}u;          // head dim / 4: Q and K rows are read as vec4
const DV4 = ${o.dv4}u;         // value head dim / 4: V's and O's rows
const HQ = ${o.shape.headsQ}u;
const HKV = ${o.shape.headsKV}u;
const GROUP = ${o.shape.headsQ / o.shape.headsKV}u; // query heads per key/value head
const BH = ${o.shape.batch * o.shape.headsQ}u;       // batch * query heads
const TILE_K = ${o.tileK}u;
const SLOTS = ${o.slots}u;        // query slots per listed tile
const ROWS = ${o.rows}u;         // query rows per workgroup: row R of the tile is head R / SLOTS, slot R % SLOTS
const ROW_BLOCKS = ${o.rowBlocks}u;${o.extra}
const NO_QUERY = ${NO_QUERY_ROW}u;
const SCORE_SCALE = ${f32(o.scale * Math.LOG2E)}; // scale * log2(e): scores live in the exp2 domain
const NO_SCORE = -1.0e30;   // below any real score; never reaches exp2 unguarded
const LN2 = ${f32(Math.LN2)};`,
  );
}

/**
 * WGSL (statements of `main`) that cuts listed tile `listed`'s key tiles into `chunks` equal
 * parts and finds this workgroup's, `begin .. end`, then has invocation 0 walk the schedule's
 * runs to the first of them (`run`, `used`), for `decodeStepTiles`.
 * @param scheduleSlot the component's slot in the schedule buffer's header
 * @returns the statements
 */
export function decodeChunkWalk(scheduleSlot: number): string {
  return `  // This chunk's share of the tile's key tiles: the schedule row's runs, cut in equal parts.
  let rowsAt = schedule[${scheduleSlot * 2 + 2}u];
  let runsAt = schedule[${scheduleSlot * 2 + 3}u];
  let firstRun = schedule[rowsAt + listed];
  let lastRun = schedule[rowsAt + listed + 1u];
  var total = 0u;
  for (var run = firstRun; run < lastRun; run++) { total += schedule[runsAt + 2u * run + 1u]; }
  let per = (total + chunks - 1u) / chunks;
  let begin = min(total, chunk * per);
  let end = min(total, begin + per);
  // Invocation 0 walks the runs and lists each step's tiles for the others.
  var run = firstRun;
  var used = 0u;                       // tiles of \`run\` before the cursor
  if (lid == 0u) {
    var skip = begin;
    while (run < lastRun && skip >= schedule[runsAt + 2u * run + 1u] - used) {
      skip -= schedule[runsAt + 2u * run + 1u] - used;
      used = 0u;
      run++;
    }
    used += skip;
  }`;
}

/**
 * WGSL (statements of a step) by which invocation 0 lists the step's `count` key tiles in
 * `stepTiles` (`tile << 1 | partial`), moving the walk's cursor on.
 * @returns the statements, indented for the step loop
 */
export function decodeStepTiles(): string {
  return `    if (lid == 0u) {
      for (var t = 0u; t < count; t++) {
        let head = schedule[runsAt + 2u * run];   // kvStart << 1 | partial
        stepTiles[t] = (((head >> 1u) + used) << 1u) | (head & 1u);
        used++;
        if (used == schedule[runsAt + 2u * run + 1u]) {
          used = 0u;
          run++;
        }
      }
    }`;
}
