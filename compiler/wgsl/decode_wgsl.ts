/**
 * The decode kernel (compiler/decode.ts): one workgroup per (query tile, row block, key chunk)
 * and batch·key/value head. Its rows are the tile's queries for every query head of the group,
 * so each K and V row it reads serves all of them. The chunk's key tiles are walked in steps:
 * each step scores its keys for every row into workgroup memory (one invocation per key, K read
 * once), updates the rows' running maxima and sums, and adds P·V (one invocation per value
 * vec4 and row, V rows read coalesced). The chunk's normalised partial O and LSE go to the split
 * buffers, `(chunk · BH + bh) · NQ + i`, for the decode combine pass.
 * @module
 */
import { sequenceSizes } from "../../core/shape.ts";
import type { AttentionShape, Dtype } from "../../core/shape.ts";
import type { ParamBlock } from "../aux_data.ts";
import { DECODE_THREADS, type DecodeGeometry } from "../decode.ts";
import type { Component } from "../plan.ts";
import type { QueryRange } from "../query_tiles.ts";
import { allowedReadsHeadOrBatch } from "../component_reads.ts";
import {
  declareDecodeBindings,
  declareDecodeConstants,
  decodeChunkWalk,
  decodeStepTiles,
} from "./decode_parts_wgsl.ts";
import { declareLayout } from "./layout_wgsl.ts";
import { ParamReader } from "./params_wgsl.ts";
import { declareAllowed } from "./predicate_wgsl.ts";
import { declareNegativeInfinity, ShaderModule } from "./shader_module.ts";
import { declareKvRow, type PagedRows } from "./kv_row_wgsl.ts";

/** What one decode kernel walks and where it writes. */
export interface DecodeKernelOptions {
  component: Component;
  geometry: DecodeGeometry;
  shape: AttentionShape;
  /** N, the key positions. */
  n: number;
  queries: QueryRange;
  dtype: Dtype;
  scale: number;
  /** Keys scored per step (decodeSteps). */
  stepKeys: number;
  /** Keys of K staged in workgroup memory at a time (decodeStepKeys). */
  stageKeys: number;
  /** The component's slot in the schedule buffer's header. */
  scheduleSlot: number;
  params: ParamBlock;
  /** K and V in pages (DESIGN §1): rows read through the block table. */
  paged?: PagedRows;
  /**
   * Unrolled P·V (eight keys' loads in flight, up to eight rows per lane), or compact loops for
   * software adapters, whose JIT takes minutes over the unrolled text.
   */
  unroll: boolean;
  label: string;
}

/**
 * WGSL of a decode kernel.
 * @param o the component, its geometry, the call's sizes
 * @returns the module text
 * @example
 * ```ts ignore
 * const wgsl = decodeKernel({ component, geometry, shape, n, queries, dtype: "f16", ... });
 * ```
 */
export function decodeKernel(o: DecodeKernelOptions): string {
  const c = o.component, g = o.geometry, T = o.dtype;
  const { tileK } = c.mask;
  const d4 = o.shape.headDim / 4, dv4 = sequenceSizes(o.shape).dv / 4;
  const rows = g.rows;
  const lanes = Math.floor(DECODE_THREADS / dv4); // P·V invocations per value vec4
  // A P·V lane holds up to 8 rows' sums (2 in compact form), so each V vec4 it loads serves
  // them all; at least enough that the lanes cover every row.
  const rowsPerLane = Math.max(Math.ceil(rows / lanes), Math.min(rows, o.unroll ? 8 : 2));
  const laneRows = Math.ceil(rows / rowsPerLane);
  const keySlices = Math.max(1, Math.floor(lanes / laneRows));
  const stageKeys = o.stageKeys;
  const perRow = Math.floor(DECODE_THREADS / rows); // invocations per row in the reductions
  const readsHead = allowedReadsHeadOrBatch(c);

  const m = new ShaderModule()
    .comment(`Weft decode: ${o.label}`)
    .comment(
      `${rows} query rows (heads x query slots) per workgroup, key chunks of tile ${tileK} ` +
        `steps of ${o.stepKeys} keys, N=${o.n}, Nq=${o.queries.count} from position ` +
        `${o.queries.offset}, D=${o.shape.headDim}, Dv=${dv4 * 4}, Hq=${o.shape.headsQ}, ` +
        `Hkv=${o.shape.headsKV}, ${T === "f16" ? "float16 inputs, " : ""}float32 math`,
    );
  if (T === "f16") m.enable("f16");
  declareDecodeBindings(m, T, T);
  declareDecodeConstants(m, {
    n: o.n,
    queries: o.queries,
    shape: o.shape,
    d4,
    dv4,
    tileK,
    slots: g.slots,
    rows,
    rowBlocks: g.rowBlocks,
    scale: o.scale,
    extra: `
const STEP_KEYS = ${o.stepKeys}u;   // keys scored per step
const STEP_TILES = ${o.stepKeys / tileK}u;
const THREADS = ${DECODE_THREADS}u;
const PER_ROW = ${perRow}u;      // invocations per row in the max and sum reductions
const LANES = ${lanes}u;        // P·V: invocations per value vec4
const KEY_SLICES = ${keySlices}u;   // P·V: lanes of a row split its keys this many ways
const LANE_ROWS = ${laneRows}u;    // P·V: lanes side by side in one key slice, rows r, r + LANE_ROWS, ...
const STAGE_KEYS = ${stageKeys}u;   // keys of K staged at a time, read coalesced
const STAGE_STRIDE = ${d4 + 1}u;   // padded row stride of the staged K: spreads banks`,
  });
  m.declare(
    "workgroupMemory",
    `
var<workgroup> qRows: array<vec4<f32>, ${rows * d4}>;     // the rows' queries, scaled
var<workgroup> kStage: array<vec4<${T}>, ${stageKeys * (d4 + 1)}>; // STAGE_KEYS rows of K
var<workgroup> rowPosition: array<i32, ${rows}>;         // each row's query position, -1: none
var<workgroup> rowHead: array<u32, ${rows}>;             // each row's batch * HQ + head
var<workgroup> scores: array<f32, ${rows * o.stepKeys}>;  // a step's scores, then its P
var<workgroup> stepPosition: array<i32, ${o.stepKeys}>;  // a step's key positions, -1: none
var<workgroup> stepRow: array<u32, ${o.stepKeys}>;       // their rows of K and V (row 0: none)
var<workgroup> stepTiles: array<u32, ${
      o.stepKeys / tileK
    }>;  // a step's key tiles: tile << 1 | partial
var<workgroup> rowMax: array<f32, ${rows}>;
var<workgroup> rowSum: array<f32, ${rows}>;
var<workgroup> rowScale: array<f32, ${rows}>;
var<workgroup> share: array<vec4<f32>, ${DECODE_THREADS}>; // reductions: partial maxima, sums, P·V slices`,
  );
  const negInf = declareNegativeInfinity(m);
  if (o.paged) declareKvRow(m, o.paged);
  // Row `position` of the workgroup's key/value head in K (width D4) or V (DV4), as a vec4 index.
  // The row of K and V (in rows of D, or Dv, values) of the workgroup's key/value head at a
  // position: found once per key of a step, so the loads of K and V read it from memory.
  m.declare(
    "vKey",
    `
// Vec4 dd of the V row of step key kk; zero for a key without a position (its P is 0, and a
// page the table does not name may hold anything, NaN included).
fn vKey(kk: u32, dd: u32) -> vec4<f32> {
  return select(vec4<f32>(0.0), vec4<f32>(vIn[stepRow[kk] * DV4 + dd]), stepPosition[kk] >= 0);
}`,
  );
  const rowOf = (position: string) =>
    o.paged ? `kvRow(kvHead, ${position})` : `kvHead * N + ${position}`;
  const kPos = declareLayout(m, c.kLayout, o.n, o.params);
  declareAllowed(m, { atoms: c.atoms, exclusions: c.exclusions, n: o.n, params: o.params });
  const reader = new ParamReader(m, o.params);
  reader.unsigned("chunks", g.chunks, "key chunks per listed tile and row block");
  const slotRows = reader.dataOffset(
    "slotRows",
    o.params.aux.tileList(g.slotRows),
    `aux offset of the query rows of the ${g.tiles.length} listed tile(s), ${g.slots} slot(s) each`,
  );

  // K's vec4s of one stage: invocation lid loads vec4s lid, lid + THREADS, ... of its rows.
  const perThread = Math.ceil((stageKeys * d4) / DECODE_THREADS);
  const stageSlots = Array.from({ length: perThread }, (_, i) => i);
  const loadStage = (base: string) =>
    stageSlots.map((i) =>
      `    {
      let e = lid + ${i * DECODE_THREADS}u;
      let key = ${base} + e / D4;
      next${i} = vec4<${T}>(0.0);
      if (e < STAGE_KEYS * D4 && key < keys && stepPosition[key] >= 0) {
        next${i} = kIn[stepRow[key] * D4 + e % D4];
      }
    }`
    ).join("\n");
  const storeStage = stageSlots.map((i) =>
    `      {
        let e = lid + ${i * DECODE_THREADS}u;
        if (e < STAGE_KEYS * D4) { kStage[(e / D4) * STAGE_STRIDE + e % D4] = next${i}; }
      }`
  ).join("\n");
  // P·V keys whose V loads are in flight together.
  const UNROLL = o.unroll ? 8 : 1;
  const unrolled = Array.from({ length: UNROLL }, (_, u) => u);
  const rowsOfLane = Array.from({ length: rowsPerLane }, (_, j) => j);

  return m.render(`
@compute @workgroup_size(${DECODE_THREADS})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
${reader.lines.join("\n")}
  let chunk = wg.x % chunks;
  let block = (wg.x / chunks) % ROW_BLOCKS;
  let listed = wg.x / (chunks * ROW_BLOCKS);   // which listed tile: its schedule row
  let kvHead = wg.y;                   // batch * HKV + key/value head
  let batch = kvHead / HKV;

  // The rows: head kvHead * GROUP + R / SLOTS of the group, the query in slot R % SLOTS.
  for (var r = lid; r < ROWS; r += THREADS) {
    let tileRow = block * ROWS + r;
    var query = NO_QUERY;
    if (tileRow < GROUP * SLOTS) { query = aux[${slotRows} + listed * SLOTS + tileRow % SLOTS]; }
    let head = batch * HQ + (kvHead % HKV) * GROUP + min(tileRow / SLOTS, GROUP - 1u);
    rowHead[r] = head;
    rowPosition[r] = select(-1, QUERY_OFFSET + i32(query), query != NO_QUERY);
    rowMax[r] = NO_SCORE;
    rowSum[r] = 0.0;
  }
  workgroupBarrier();
  for (var e = lid; e < ROWS * D4; e += THREADS) {
    let r = e / D4;
    let live = rowPosition[r] >= 0;
    let row = rowHead[r] * NQ + u32(max(rowPosition[r] - QUERY_OFFSET, 0));
    qRows[e] = select(vec4<f32>(0.0), vec4<f32>(qIn[row * D4 + e % D4]) * SCORE_SCALE, live);
  }

${decodeChunkWalk(o.scheduleSlot)}

  // P·V: invocation = (lane, value vec4); a lane's rows are rowLane, rowLane + LANE_ROWS, ...
  let dd = lid % DV4;
  let lane = lid / DV4;
  let slice = lane / LANE_ROWS;
  let rowLane = lane % LANE_ROWS;
  let pvLive = lane < LANES && slice < KEY_SLICES;
${rowsOfLane.map((j) => `  var acc${j} = vec4<f32>(0.0);`).join("\n")}
${stageSlots.map((i) => `  var next${i} = vec4<${T}>(0.0); // K of the next stage`).join("\n")}
  // Reductions: invocation = (row, part); PER_ROW parts per row.
  let redRow = min(lid / PER_ROW, ROWS - 1u);
  let part = lid % PER_ROW;
  let redLive = lid / PER_ROW < ROWS;

  for (var done = begin; done < end; done += STEP_TILES) {
    let count = min(STEP_TILES, end - done);
    let keys = count * TILE_K;
${decodeStepTiles()}
    workgroupBarrier();

    // The step's key positions, one invocation per key.
    for (var kk = lid; kk < STEP_KEYS; kk += THREADS) {
      var position = -1;
      if (kk < keys) { position = ${kPos}((stepTiles[kk / TILE_K] >> 1u) * TILE_K + kk % TILE_K); }
      stepPosition[kk] = position;
      stepRow[kk] = select(0u, ${rowOf("u32(max(position, 0))")}, position >= 0);
    }
    // Scores, STAGE_KEYS keys at a time: K loaded coalesced into registers one stage ahead (its
    // loads in flight while the stage before is scored), staged, then one invocation per
    // (row, key); FULL tiles allow every pair.
    workgroupBarrier();               // positions written
${loadStage("0u")}
    for (var base = 0u; base < keys; base += STAGE_KEYS) {
      workgroupBarrier();             // the last stage's K read
${storeStage}
      workgroupBarrier();
${loadStage("base + STAGE_KEYS")}
      let j = lid % STAGE_KEYS;
      let kk = base + j;
      let position = stepPosition[min(kk, STEP_KEYS - 1u)];
      let partial = kk < keys && (stepTiles[kk / TILE_K] & 1u) == 1u;
      for (var r = lid / STAGE_KEYS; r < ROWS; r += THREADS / STAGE_KEYS) {
        // Four partial sums: four independent chains of products instead of one long one.
        var parts = vec4<f32>(0.0);
        for (var d = 0u; d + 3u < D4; d += 4u) {
          parts += vec4<f32>(
            dot(qRows[r * D4 + d], vec4<f32>(kStage[j * STAGE_STRIDE + d])),
            dot(qRows[r * D4 + d + 1u], vec4<f32>(kStage[j * STAGE_STRIDE + d + 1u])),
            dot(qRows[r * D4 + d + 2u], vec4<f32>(kStage[j * STAGE_STRIDE + d + 2u])),
            dot(qRows[r * D4 + d + 3u], vec4<f32>(kStage[j * STAGE_STRIDE + d + 3u])),
          );
        }
        for (var d = D4 - D4 % 4u; d < D4; d++) {
          parts.x += dot(qRows[r * D4 + d], vec4<f32>(kStage[j * STAGE_STRIDE + d]));
        }
        let s = parts.x + parts.y + parts.z + parts.w;
        let live = kk < keys && position >= 0 && rowPosition[r] >= 0 &&
          (!partial || ${allowedCall(readsHead)});
        if (kk < keys) { scores[r * STEP_KEYS + kk] = select(NO_SCORE, s, live); }
      }
    }
    workgroupBarrier();

    // Each row's step maximum, then its running maximum and the rescale of what came before.
    var most = NO_SCORE;
    if (redLive) {
      for (var kk = part; kk < keys; kk += PER_ROW) { most = max(most, scores[redRow * STEP_KEYS + kk]); }
    }
    share[lid].x = most;
    workgroupBarrier();
    if (lid < ROWS) {
      var stepMax = NO_SCORE;
      for (var p = 0u; p < PER_ROW; p++) { stepMax = max(stepMax, share[lid * PER_ROW + p].x); }
      let newMax = max(rowMax[lid], stepMax);
      rowScale[lid] = exp2(rowMax[lid] - newMax); // 1 while the row has seen nothing
      rowMax[lid] = newMax;
    }
    workgroupBarrier();
    var sum = 0.0;
    if (redLive) {
      let rowMost = rowMax[redRow];
      for (var kk = part; kk < keys; kk += PER_ROW) {
        let s = scores[redRow * STEP_KEYS + kk];
        let p = select(0.0, exp2(s - rowMost), s > NO_SCORE);
        scores[redRow * STEP_KEYS + kk] = p;
        sum += p;
      }
    }
    share[lid].x = sum;
    workgroupBarrier();
    if (lid < ROWS) {
      var stepSum = 0.0;
      for (var p = 0u; p < PER_ROW; p++) { stepSum += share[lid * PER_ROW + p].x; }
      rowSum[lid] = rowSum[lid] * rowScale[lid] + stepSum;
    }

    // P·V over the step's keys: each V vec4 loaded once per lane for all its rows, eight keys
    // in flight.
    if (pvLive) {
${
    rowsOfLane.map((j) =>
      `      let r${j} = min(rowLane + ${j}u * LANE_ROWS, ROWS - 1u);
      acc${j} *= rowScale[r${j}];`
    ).join("\n")
  }
      var kk = slice;
${
    UNROLL === 1
      ? ""
      : `      for (; kk + ${UNROLL - 1}u * KEY_SLICES < keys; kk += ${UNROLL}u * KEY_SLICES) {
${unrolled.map((u) => `        let v${u} = vKey(kk + ${u}u * KEY_SLICES, dd);`).join("\n")}
${
        rowsOfLane.map((j) =>
          unrolled.map((u) =>
            `        acc${j} += scores[r${j} * STEP_KEYS + kk + ${u}u * KEY_SLICES] * v${u};`
          ).join("\n")
        ).join("\n")
      }
      }
`
  }
      for (; kk < keys; kk += KEY_SLICES) {
        let v = vKey(kk, dd);
${rowsOfLane.map((j) => `        acc${j} += scores[r${j} * STEP_KEYS + kk] * v;`).join("\n")}
      }
    }
    workgroupBarrier();               // the next step overwrites the tiles, scores and positions
  }

  // The key slices of a row add up, one accumulator at a time.
  if (KEY_SLICES > 1u) {
${
    rowsOfLane.map((j) =>
      `    workgroupBarrier();
    share[lid] = acc${j};
    workgroupBarrier();
    if (pvLive && slice == 0u) {
      for (var s = 1u; s < KEY_SLICES; s++) { acc${j} += share[((s * LANE_ROWS + rowLane) * DV4) + dd]; }
    }`
    ).join("\n")
  }
  }
  if (!pvLive || slice != 0u) { return; }
${
    rowsOfLane.map((j) =>
      `  {
    let r = rowLane + ${j}u * LANE_ROWS;
    if (r < ROWS && rowPosition[r] >= 0) {
      let at = (chunk * BH + rowHead[r]) * NQ + u32(rowPosition[r] - QUERY_OFFSET);
      let l = rowSum[r];
      splitO[at * DV4 + dd] = select(vec4<f32>(0.0), acc${j} / l, l > 0.0);
      if (dd == 0u) {
        splitLse[at] = select(${negInf}(), (rowMax[r] + log2(l)) * LN2, l > 0.0);
      }
    }
  }`
    ).join("\n")
  }
}`);
}

/** The mask test of row `r` against the key at `position` (WGSL names). */
function allowedCall(readsHead: boolean): string {
  return readsHead
    ? "allowed(rowPosition[r], position, i32(rowHead[r] % HQ), i32(rowHead[r] / HQ))"
    : "allowed(rowPosition[r], position)";
}
