/**
 * The decode kernel's subgroup form (compiler/decode.ts), for devices with subgroups: the same
 * workgroups, chunks and partial rows as the staged form (decode_wgsl.ts), but no key passes
 * through workgroup memory. The workgroup's invocations form groups of LANES consecutive
 * lanes of one subgroup; a group takes KEYS consecutive keys at a time, each lane loading its
 * vec4s of their K and V rows straight into registers, so every load of a step is in flight at
 * once and the only barriers are one per step of key tiles. A key's score for each query row
 * is the lanes' partial dot products summed by a butterfly of `subgroupShuffleXor` (every lane
 * ends with the same bits), and each group keeps its own running maximum, sum and O rows in
 * registers. At the end the groups merge by log-sum-exp: within a subgroup by shuffles, then
 * across subgroups in a fixed order through workgroup memory, so results are bitwise the same
 * from run to run.
 * @module
 */
import { sequenceSizes } from "../../core/shape.ts";
import type { AttentionShape, Dtype } from "../../core/shape.ts";
import type { ParamBlock } from "../aux_data.ts";
import { DECODE_LANE_THREADS, type DecodeGeometry } from "../decode.ts";
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
import { laneMerge, laneMergeMemory } from "./lane_merge_wgsl.ts";
import { declareNegativeInfinity, ShaderModule } from "./shader_module.ts";
import { declareKvRow, type PagedRows } from "./kv_row_wgsl.ts";

/** What one subgroup-form decode kernel walks and where it writes. */
export interface DecodeLanesKernelOptions {
  component: Component;
  geometry: DecodeGeometry;
  shape: AttentionShape;
  /** N, the key positions. */
  n: number;
  queries: QueryRange;
  dtype: Dtype;
  scale: number;
  /** Key tiles listed per step (one barrier pair each). */
  stepTiles: number;
  /** Lanes that share one key's row (a power of two, at most `subgroupSize`). */
  lanes: number;
  /** Keys a group loads at once. */
  keys: number;
  /**
   * Float16 K and V read 16 bytes per lane (a vec4<u32> of eight halves, unpacked in pairs):
   * lane l holds
   * vec4s 2l, 2l + 1, 2(l + LANES), ... of its rows. Needs an even number of vec4s per lane.
   */
  wide: boolean;
  /**
   * Load each round's K and V words one round ahead, so a group's loads stay in flight while
   * it scores the keys it holds (more bytes in flight than the memory's latency needs).
   */
  prefetch: boolean;
  /** The device's smallest subgroup size: groups within it merge by shuffles. */
  subgroupSize: number;
  /** Whether the WGSL needs `enable subgroups;` (Tint does; naga refuses the line). */
  subgroupDirective: boolean;
  /** The component's slot in the schedule buffer's header. */
  scheduleSlot: number;
  params: ParamBlock;
  /** K and V in pages (DESIGN §1): rows read through the block table. */
  paged?: PagedRows;
  label: string;
}

/**
 * WGSL of a subgroup-form decode kernel.
 * @param o the component, its geometry, the call's sizes, the lanes and keys per group
 * @returns the module text
 * @example
 * ```ts ignore
 * const wgsl = decodeLanesKernel({ component, geometry, lanes: 16, keys: 4, ... });
 * ```
 */
export function decodeLanesKernel(o: DecodeLanesKernelOptions): string {
  const c = o.component, g = o.geometry, T = o.dtype;
  const { tileK } = c.mask;
  const d4 = o.shape.headDim / 4, dv4 = sequenceSizes(o.shape).dv / 4;
  const kv = d4 / o.lanes, vv = dv4 / o.lanes; // vec4s of a K row and a V row per lane
  const rows = g.rows;
  const stepTiles = o.stepTiles;
  // Keys a group takes together share one step tile where KEYS divides the tile.
  const shareTile = tileK % o.keys === 0;
  const partialOf = (j: number) => shareTile ? "partial" : `partial${j}`;
  const blocks = DECODE_LANE_THREADS / o.subgroupSize; // merge units: one subgroup's groups each
  const readsHead = allowedReadsHeadOrBatch(c);
  const R = range(rows), J = range(o.keys), KV = range(kv), VV = range(vv);
  const each = <T>(xs: T[], f: (x: T) => string, sep = "\n") => xs.map(f).join(sep);
  // The row vec4 a lane's slot v holds.
  const slot = (v: number) =>
    o.wide ? `2u * (lane + ${Math.floor(v / 2) * o.lanes}u) + ${v % 2}u` : `lane + ${v * o.lanes}u`;
  // A K or V row's words a lane loads: vec4<u32>s of eight halves (wide) or vec4s.
  const words = (count: number) => range(o.wide ? count / 2 : count);
  const wordType = o.wide ? "vec4<u32>" : `vec4<${T}>`;
  const wordAt = (name: string, j: number, width: string, p: number) =>
    o.wide
      ? `${name}In[row${j} * (${width} / 2u) + lane + ${p * o.lanes}u]`
      : `${name}In[row${j} * ${width} + lane + ${p * o.lanes}u]`;
  // The round's words as float32 vec4s k{j}_{v} / v{j}_{v}.
  const unpack = (name: string, j: number, count: number) =>
    words(count).map((p) =>
      o.wide
        ? `      let ${name}${j}_${
          2 * p
        } = vec4<f32>(unpack2x16float(round.${name}w${j}_${p}.x), unpack2x16float(round.${name}w${j}_${p}.y));
      let ${name}${j}_${
          2 * p + 1
        } = vec4<f32>(unpack2x16float(round.${name}w${j}_${p}.z), unpack2x16float(round.${name}w${j}_${p}.w));`
        : `      let ${name}${j}_${p} = vec4<f32>(round.${name}w${j}_${p});`
    ).join("\n");

  const m = new ShaderModule()
    .comment(`Weft decode (subgroup lanes): ${o.label}`)
    .comment(
      `${rows} query rows (heads x query slots) per workgroup, groups of ${o.lanes} lanes ` +
        `taking ${o.keys} keys at a time, steps of ${o.stepTiles} key tiles of ${tileK}, ` +
        `N=${o.n}, Nq=${o.queries.count} from position ${o.queries.offset}, ` +
        `D=${o.shape.headDim}, Dv=${dv4 * 4}, Hq=${o.shape.headsQ}, Hkv=${o.shape.headsKV}, ` +
        `${T === "f16" ? "float16 inputs, " : ""}float32 math`,
    );
  if (T === "f16") m.enable("f16");
  if (o.subgroupDirective) m.enable("subgroups");
  declareDecodeBindings(m, T, o.wide ? "u32" : T);
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
const STEP_TILES = ${stepTiles}u;  // key tiles per step
const THREADS = ${DECODE_LANE_THREADS}u;
const LANES = ${o.lanes}u;        // lanes sharing a key: lane l holds vec4s l, l + LANES, ... of its rows
const GROUPS = ${DECODE_LANE_THREADS / o.lanes}u;      // groups of LANES lanes per workgroup
const KEYS = ${o.keys}u;         // keys a group loads at once
const SUBGROUP = ${o.subgroupSize}u;     // the device's smallest subgroup: its groups merge by shuffles
const UNITS = ${blocks}u;        // subgroup-sized units, merged in order through workgroup memory`,
  });
  m.declare(
    "workgroupMemory",
    `
var<workgroup> stepTiles: array<u32, ${stepTiles}>;  // a step's key tiles: tile << 1 | partial
${laneMergeMemory(blocks, rows, dv4)}`,
  );
  const negInf = declareNegativeInfinity(m);
  if (o.paged) declareKvRow(m, o.paged);
  const rowOf = (position: string) =>
    o.paged ? `kvRow(kvHead, ${position})` : `kvHead * N + ${position}`;
  const kPos = declareLayout(m, c.kLayout, o.n, o.params);
  declareAllowed(m, { atoms: c.atoms, exclusions: c.exclusions, n: o.n, params: o.params });
  // A group's round: KEYS consecutive keys of the step from `first`, their positions (-1 past
  // the step), whether their tiles are partial, and the lane's words of their K and V rows.
  const partials = shareTile ? ["partial"] : J.map((j) => `partial${j}`);
  const fields = [
    ...J.map((j) => `key${j}: i32`),
    ...partials.map((name) => `${name}: bool`),
    ...J.flatMap((j) => [
      ...words(kv).map((p) => `kw${j}_${p}: ${wordType}`),
      ...words(vv).map((p) => `vw${j}_${p}: ${wordType}`),
    ]),
  ];
  const fetchKey = (j: number) =>
    `  let row${j} = select(0u, ${rowOf(`u32(max(r.key${j}, 0))`)}, r.key${j} >= 0);
${each(words(kv), (p) => `  r.kw${j}_${p} = ${wordAt("k", j, "D4", p)};`)}
${each(words(vv), (p) => `  r.vw${j}_${p} = ${wordAt("v", j, "DV4", p)};`)}`;
  m.declare(
    "roundKeys",
    `
struct RoundKeys {
${fields.map((f) => `  ${f},`).join("\n")}
}

// Keys past the step read row 0 (always there) and have no position.
fn roundKeys(first: u32, keys: u32, kvHead: u32, lane: u32) -> RoundKeys {
  var r: RoundKeys;
${
      shareTile
        ? `  // KEYS divides TILE_K: the round's keys lie in one tile of the step, or past it.
  let tile = stepTiles[min(first / TILE_K, STEP_TILES - 1u)];
  r.partial = (tile & 1u) == 1u;
${
          each(J, (j) =>
            `  r.key${j} = select(-1, ${kPos}((tile >> 1u) * TILE_K + first % TILE_K + ${j}u), first < keys);
${fetchKey(j)}`)
        }`
        : each(J, (j) =>
          `  let tile${j} = stepTiles[min((first + ${j}u) / TILE_K, STEP_TILES - 1u)];
  r.partial${j} = (tile${j} & 1u) == 1u;
  r.key${j} = select(-1, ${kPos}((tile${j} >> 1u) * TILE_K + (first + ${j}u) % TILE_K), first + ${j}u < keys);
${fetchKey(j)}`)
    }
  return r;
}`,
  );
  const reader = new ParamReader(m, o.params);
  reader.unsigned("chunks", g.chunks, "key chunks per listed tile and row block");
  const slotRows = reader.dataOffset(
    "slotRows",
    o.params.aux.tileList(g.slotRows),
    `aux offset of the query rows of the ${g.tiles.length} listed tile(s), ${g.slots} slot(s) each`,
  );
  const allowed = (r: number, j: number) =>
    readsHead
      ? `allowed(pos${r}, key${j}, i32(head${r} % HQ), i32(head${r} / HQ))`
      : `allowed(pos${r}, key${j})`;
  // Butterfly masks: within a key's lanes (the score), then across the groups of a subgroup.
  const laneMasks = masks(1, o.lanes);
  const groupMasks = masks(o.lanes, o.subgroupSize);
  const probabilities = (r: number, most: string) =>
    each(
      J,
      (j) => `        let p${j} = select(0.0, exp2(s${r}_${j} - ${most}), s${r}_${j} > NO_SCORE);`,
    );
  // Each row's running maximum, sum and O, rescaled every round.
  const eagerUpdate = () =>
    `      // Each row's running maximum, sum and O: rescaled once per KEYS keys.
${
      each(R, (r) =>
        `      {
        let most = max(max${r}, ${maxOf(J.map((j) => `s${r}_${j}`))});
        let rescale = exp2(max${r} - most);   // 1 while the row has seen nothing
        max${r} = most;
${probabilities(r, "most")}
        sum${r} = sum${r} * rescale + ${J.map((j) => `p${j}`).join(" + ")};
${
          each(VV, (w) =>
            `        acc${r}_${w} = acc${r}_${w} * rescale + ${
              J.map((j) => `p${j} * pv${j}_${w}`).join(" + ")
            };`)
        }
      }`)
    }`;
  return m.render(`
@compute @workgroup_size(${DECODE_LANE_THREADS})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
${reader.lines.join("\n")}
  let chunk = wg.x % chunks;
  let block = (wg.x / chunks) % ROW_BLOCKS;
  let listed = wg.x / (chunks * ROW_BLOCKS);   // which listed tile: its schedule row
  let kvHead = wg.y;                   // batch * HKV + key/value head
  let batch = kvHead / HKV;
  let lane = lid % LANES;
  let group = lid / LANES;

  // The rows, in every lane's registers: head kvHead * GROUP + R / SLOTS of the group, the query
  // in slot R % SLOTS; the lane's vec4s of each query, scaled.
${
    each(R, (r) =>
      `  let tileRow${r} = block * ROWS + ${r}u;
  var query${r} = NO_QUERY;
  if (tileRow${r} < GROUP * SLOTS) { query${r} = aux[${slotRows} + listed * SLOTS + tileRow${r} % SLOTS]; }
  let head${r} = batch * HQ + (kvHead % HKV) * GROUP + min(tileRow${r} / SLOTS, GROUP - 1u);
  let pos${r} = select(-1, QUERY_OFFSET + i32(query${r}), query${r} != NO_QUERY);
  let qRow${r} = (head${r} * NQ + u32(max(pos${r} - QUERY_OFFSET, 0))) * D4;
${
        each(KV, (v) =>
          `  let q${r}_${v} = select(vec4<f32>(0.0), vec4<f32>(qIn[qRow${r} + ${
            slot(v)
          }]) * SCORE_SCALE, pos${r} >= 0);`)
      }
  var max${r} = NO_SCORE;
  var sum${r} = 0.0;
${each(VV, (w) => `  var acc${r}_${w} = vec4<f32>(0.0);`)}`)
  }

${decodeChunkWalk(o.scheduleSlot)}

  for (var done = begin; done < end; done += STEP_TILES) {
    let count = min(STEP_TILES, end - done);
    let keys = count * TILE_K;
${decodeStepTiles()}
    workgroupBarrier();
    // Group g takes keys (i * GROUPS + g) * KEYS .. + KEYS - 1 of the step, all lanes the same
    // trip count (the shuffles need every lane); keys past the step have no position.
    let rounds = (keys + GROUPS * KEYS - 1u) / (GROUPS * KEYS);
${
    o.prefetch
      ? `    // Each round holds its words, loaded a round ahead, and loads the next round's.
    var ahead = roundKeys(group * KEYS, keys, kvHead, lane);
    for (var i = 0u; i < rounds; i++) {
      let round = ahead;
      ahead = roundKeys(((i + 1u) * GROUPS + group) * KEYS, keys, kvHead, lane);`
      : `    for (var i = 0u; i < rounds; i++) {
      let round = roundKeys((i * GROUPS + group) * KEYS, keys, kvHead, lane);`
  }
${each(partials, (name) => `      let ${name} = round.${name};`)}
${
    each(J, (j) =>
      `      let key${j} = round.key${j};
${unpack("k", j, kv)}
${unpack("v", j, vv)}`)
  }
      // Scores: the lanes' partial dot products, summed across the key's lanes.
${
    each(R, (r) =>
      each(J, (j) =>
        `      var s${r}_${j} = ${
          each(KV, (v) =>
            `dot(q${r}_${v}, k${j}_${v})`, " + ")
        };
${each(laneMasks, (mask) => `      s${r}_${j} += subgroupShuffleXor(s${r}_${j}, ${mask}u);`)}
      s${r}_${j} = select(NO_SCORE, s${r}_${j}, key${j} >= 0 && pos${r} >= 0 && (!${
          partialOf(j)
        } || ${allowed(r, j)}));`))
  }
      // A key past the step (row 0 of the pool) or one in a partial tile that no row sees may
      // hold anything (a rolling cache's shared page): its V must add nothing, not 0 * inf.
      // Full tiles' keys skip the test.
${
    each(J, (j) =>
      `${each(VV, (w) => `      var pv${j}_${w} = v${j}_${w};`)}
      if ((${partialOf(j)} || key${j} < 0) && !(${
        R.map((r) => `s${r}_${j} > NO_SCORE`).join(" || ")
      })) {
${each(VV, (w) => `        pv${j}_${w} = vec4<f32>(0.0);`)}
      }`)
  }
${eagerUpdate()}
    }
    workgroupBarrier();               // the next step overwrites the tiles
  }

${
    laneMerge({
      rows,
      slots: vv,
      rowsName: "ROWS",
      width: "DV4",
      slot,
      masks: groupMasks,
      indent: "  ",
    })
  }

  // The chunk's normalised partial rows, for the decode combine.
  for (var e = lid; e < ROWS * DV4; e += THREADS) {
    let r = e / DV4;
    let dd = e % DV4;
    var pos = -1;
    var head = 0u;
    var most = NO_SCORE;
    var total = 0.0;
${
    each(R, (r) =>
      `    if (r == ${r}u) { pos = pos${r}; head = head${r}; most = most${r}; total = total${r}; }`)
  }
    if (pos >= 0) {
      let at = (chunk * BH + head) * NQ + u32(pos - QUERY_OFFSET);
      splitO[at * DV4 + dd] = select(vec4<f32>(0.0), outRows[e] / total, total > 0.0);
      if (dd == 0u) {
        splitLse[at] = select(${negInf}(), (most + log2(total)) * LN2, total > 0.0);
      }
    }
  }
}`);
}

/** 0 .. n - 1. */
function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

/** Powers of two from `from` up to (not including) `below`: a butterfly's xor masks. */
function masks(from: number, below: number): number[] {
  const out: number[] = [];
  for (let mask = from; mask < below; mask *= 2) out.push(mask);
  return out;
}

/** WGSL max of one or more f32 expressions. */
function maxOf(xs: string[]): string {
  return xs.reduce((a, b) => `max(${a}, ${b})`);
}
