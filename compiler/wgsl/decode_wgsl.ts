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
import { DECODE_THREADS, type DecodeGeometry, NO_QUERY_ROW } from "../decode.ts";
import type { Component } from "../plan.ts";
import type { QueryRange } from "../query_tiles.ts";
import { allowedReadsHeadOrBatch } from "../component_reads.ts";
import { queriesConstants } from "./kernel_refs.ts";
import { declareLayout } from "./layout_wgsl.ts";
import { ParamReader } from "./params_wgsl.ts";
import { declareAllowed } from "./predicate_wgsl.ts";
import { declareNegativeInfinity, f32, ShaderModule } from "./shader_module.ts";

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
  /** Keys scored per step (decodeStepKeys). */
  stepKeys: number;
  /** The component's slot in the schedule buffer's header. */
  scheduleSlot: number;
  params: ParamBlock;
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
  const keySlices = Math.max(1, Math.floor(lanes / rows));
  const laneRows = Math.floor(lanes / keySlices);
  const rowsPerLane = Math.ceil(rows / laneRows);
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
  m.declare(
    "bindings",
    `
@group(0) @binding(0) var<storage, read> qIn: array<vec4<${T}>>;
@group(0) @binding(1) var<storage, read> kIn: array<vec4<${T}>>;
@group(0) @binding(2) var<storage, read> vIn: array<vec4<${T}>>;
@group(0) @binding(3) var<storage, read> schedule: array<u32>;
@group(0) @binding(4) var<storage, read> aux: array<u32>;
@group(0) @binding(5) var<storage, read_write> splitO: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> splitLse: array<f32>;`,
  );
  m.declare(
    "constants",
    `
const N = ${o.n}u;${queriesConstants(o.queries)}
const D4 = ${d4}u;          // head dim / 4: Q and K rows are read as vec4
const DV4 = ${dv4}u;         // value head dim / 4: V's and O's rows
const HQ = ${o.shape.headsQ}u;
const HKV = ${o.shape.headsKV}u;
const GROUP = ${o.shape.headsQ / o.shape.headsKV}u; // query heads per key/value head
const BH = ${o.shape.batch * o.shape.headsQ}u;       // batch * query heads
const TILE_K = ${tileK}u;
const SLOTS = ${g.slots}u;        // query slots per listed tile
const ROWS = ${rows}u;         // query rows per workgroup: row R of the tile is head R / SLOTS, slot R % SLOTS
const ROW_BLOCKS = ${g.rowBlocks}u;
const STEP_KEYS = ${o.stepKeys}u;   // keys scored per step
const STEP_TILES = ${o.stepKeys / tileK}u;
const THREADS = ${DECODE_THREADS}u;
const PER_ROW = ${perRow}u;      // invocations per row in the max and sum reductions
const LANES = ${lanes}u;        // P·V: invocations per value vec4
const KEY_SLICES = ${keySlices}u;   // P·V: lanes of a row split its keys this many ways
const LANE_ROWS = ${laneRows}u;    // P·V: rows side by side in one key slice
const NO_QUERY = ${NO_QUERY_ROW}u;
const SCORE_SCALE = ${f32(o.scale * Math.LOG2E)}; // scale * log2(e): scores live in the exp2 domain
const NO_SCORE = -1.0e30;   // below any real score; never reaches exp2 unguarded
const LN2 = ${f32(Math.LN2)};`,
  );
  m.declare(
    "workgroupMemory",
    `
var<workgroup> qRows: array<vec4<f32>, ${rows * d4}>;     // the rows' queries, scaled
var<workgroup> rowPosition: array<i32, ${rows}>;         // each row's query position, -1: none
var<workgroup> rowHead: array<u32, ${rows}>;             // each row's batch * HQ + head
var<workgroup> scores: array<f32, ${rows * o.stepKeys}>;  // a step's scores, then its P
var<workgroup> stepPosition: array<i32, ${o.stepKeys}>;  // a step's key positions, -1: none
var<workgroup> stepTiles: array<u32, ${
      o.stepKeys / tileK
    }>;  // a step's key tiles: tile << 1 | partial
var<workgroup> rowMax: array<f32, ${rows}>;
var<workgroup> rowSum: array<f32, ${rows}>;
var<workgroup> rowScale: array<f32, ${rows}>;
var<workgroup> share: array<vec4<f32>, ${DECODE_THREADS}>; // reductions: partial maxima, sums, P·V slices`,
  );
  const negInf = declareNegativeInfinity(m);
  const kPos = declareLayout(m, c.kLayout, o.n, o.params);
  declareAllowed(m, { atoms: c.atoms, exclusions: c.exclusions, n: o.n, params: o.params });
  const reader = new ParamReader(m, o.params);
  reader.unsigned("chunks", g.chunks, "key chunks per listed tile and row block");
  const slotRows = reader.dataOffset(
    "slotRows",
    o.params.aux.tileList(g.slotRows),
    `aux offset of the query rows of the ${g.tiles.length} listed tile(s), ${g.slots} slot(s) each`,
  );

  // Scores of one key for every row, four rows at a time (four float32 sums in registers).
  const scoreBlocks: string[] = [];
  for (let r0 = 0; r0 < rows; r0 += 4) {
    const rs = [0, 1, 2, 3].map((j) => r0 + j).filter((r) => r < rows);
    scoreBlocks.push(`      {
${rs.map((r) => `        var s${r - r0} = 0.0;`).join("\n")}
        for (var d = 0u; d < D4; d++) {
          let kv = vec4<f32>(kIn[kAt + d]);
${rs.map((r) => `          s${r - r0} += dot(qRows[${r}u * D4 + d], kv);`).join("\n")}
        }
${
      rs.map((r) =>
        `        scores[${r}u * STEP_KEYS + kk] = select(NO_SCORE, s${r - r0}, ` +
        `rowPosition[${r}u] >= 0 && (!partial || ${allowedCall(r, readsHead)}));`
      ).join("\n")
    }
      }`);
  }
  const rowsOfLane = Array.from({ length: rowsPerLane }, (_, j) => j);

  return m.render(`
@compute @workgroup_size(${DECODE_THREADS})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
${reader.lines.join("\n")}
  let chunk = wg.x % chunks;
  let block = (wg.x / chunks) % ROW_BLOCKS;
  let listed = wg.x / (chunks * ROW_BLOCKS);   // which listed tile: its schedule row
  let batch = wg.y / HKV;
  let kvHead = wg.y % HKV;
  let kBase = wg.y * N * D4;
  let vBase = wg.y * N * DV4;

  // The rows: head kvHead * GROUP + R / SLOTS of the group, the query in slot R % SLOTS.
  for (var r = lid; r < ROWS; r += THREADS) {
    let tileRow = block * ROWS + r;
    var query = NO_QUERY;
    if (tileRow < GROUP * SLOTS) { query = aux[slotRows + listed * SLOTS + tileRow % SLOTS]; }
    let head = batch * HQ + kvHead * GROUP + min(tileRow / SLOTS, GROUP - 1u);
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

  // This chunk's share of the tile's key tiles: the schedule row's runs, cut in equal parts.
  let rowsAt = schedule[${o.scheduleSlot * 2 + 2}u];
  let runsAt = schedule[${o.scheduleSlot * 2 + 3}u];
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
  }

  // P·V: invocation = (lane, value vec4); a lane's rows are rowLane, rowLane + LANE_ROWS, ...
  let dd = lid % DV4;
  let lane = lid / DV4;
  let slice = lane / LANE_ROWS;
  let rowLane = lane % LANE_ROWS;
  let pvLive = lane < LANES && slice < KEY_SLICES;
${rowsOfLane.map((j) => `  var acc${j} = vec4<f32>(0.0);`).join("\n")}
  // Reductions: invocation = (row, part); PER_ROW parts per row.
  let redRow = min(lid / PER_ROW, ROWS - 1u);
  let part = lid % PER_ROW;
  let redLive = lid / PER_ROW < ROWS;

  for (var done = begin; done < end; done += STEP_TILES) {
    let count = min(STEP_TILES, end - done);
    let keys = count * TILE_K;
    if (lid == 0u) {
      for (var t = 0u; t < count; t++) {
        let head = schedule[runsAt + 2u * run];   // kvStart << 1 | partial
        stepTiles[t] = (((head >> 1u) + used) << 1u) | (head & 1u);
        used++;
        if (used == schedule[runsAt + 2u * run + 1u]) {
          used = 0u;
          run++;
        }
      }
    }
    workgroupBarrier();

    // Scores: one invocation per key, every row; FULL tiles allow every pair.
    for (var kk = lid; kk < STEP_KEYS; kk += THREADS) {
      var position = -1;
      var partial = false;
      if (kk < keys) {
        let word = stepTiles[kk / TILE_K];
        partial = (word & 1u) == 1u;
        position = ${kPos}((word >> 1u) * TILE_K + kk % TILE_K);
      }
      stepPosition[kk] = position;
      let kAt = kBase + u32(max(position, 0)) * D4;
      if (position < 0) {
        for (var r = 0u; r < ROWS; r++) { scores[r * STEP_KEYS + kk] = NO_SCORE; }
        continue;
      }
${scoreBlocks.join("\n")}
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

    // P·V over the step's keys: V rows read once per lane, coalesced over the value vec4s.
    if (pvLive) {
${
    rowsOfLane.map((j) =>
      `      let r${j} = min(rowLane + ${j}u * LANE_ROWS, ROWS - 1u);\n      acc${j} *= rowScale[r${j}];`
    ).join("\n")
  }
      for (var kk = slice; kk < keys; kk += KEY_SLICES) {
        let position = stepPosition[kk];
        if (position < 0) { continue; }
        let v = vec4<f32>(vIn[vBase + u32(position) * DV4 + dd]);
${rowsOfLane.map((j) => `        acc${j} += scores[r${j} * STEP_KEYS + kk] * v;`).join("\n")}
      }
    }
    workgroupBarrier();               // the next step overwrites the tiles, scores and positions
  }

  // The key slices of a row add up (a lane holds one row when there are several slices).
  if (KEY_SLICES > 1u) {
    share[lid] = acc0;
    workgroupBarrier();
    if (pvLive && slice == 0u) {
      for (var s = 1u; s < KEY_SLICES; s++) { acc0 += share[((s * LANE_ROWS + rowLane) * DV4) + dd]; }
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

/** The mask test of row `r` against the key at `position`. */
function allowedCall(r: number, readsHead: boolean): string {
  const q = `rowPosition[${r}u]`;
  return readsHead
    ? `allowed(${q}, position, i32(rowHead[${r}u] % HQ), i32(rowHead[${r}u] / HQ))`
    : `allowed(${q}, position)`;
}
