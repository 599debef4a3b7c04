/**
 * WGSL of the backward pass's tile kernels (DESIGN §6), FlashAttention-2's backward on register
 * tiles (compiler/gradient_tiling.ts). With P = exp(score - LSE) from the forward's LSE and
 * Δ = g dO·O_i:
 *
 *   dV_k += g P dO,   dS = P (g dO·V_k - Δ) f'(s),   dQ_q += scale dS K_k,   dK_k += scale dS Q_q.
 *
 * `gradQuery` owns query rows of one query tile (their Q, dO and statistics staged once) and
 * walks the component's BlockMask row, staging each key tile's K and V a chunk at a time;
 * `gradKey` owns keys of one key tile and walks the transposed row for every query head of its
 * key/value head, staging each query tile's Q, dO and statistics a chunk at a time. Per chunk,
 * the pair step computes scores and dO·Vᵀ as a register tile and writes P and dS to workgroup
 * memory; the product step adds them into the owned gradients, a register tile of vec4s per
 * invocation. Layouts, masks (with exclusions) and score modifiers are the forward kernel's
 * functions; the modifier's slope is written from the same program (expression_slope_wgsl.ts).
 * Sums are float32; each gradient element has one owner, which adds it into the output once,
 * so the result does not depend on timing.
 *
 * Where the call's queries are some of the N = Nk key positions, a workgroup reads the tile it
 * owns from the kernel's list in aux (its schedule row is its place in the list), query
 * positions outside the call's are padding (never loaded, never scored, never stored), and a
 * query's Q, dO, dQ and statistics row is its position minus the offset. V, dO and dV rows are
 * Dv long (DV4 vec4s, staged with a padded stride of their own) where V has a head dim of its own.
 * @module
 */
import { assert } from "../../core/errors.ts";
import { sequenceSizes } from "../../core/shape.ts";
import { codeSetOf } from "../hash_layout.ts";
import { branchLearns } from "../plan_gradients.ts";
import { GRADIENT_TILE_THREADS, type GradientTiling } from "../gradient_tiling.ts";
import { learnableOffsets } from "../../dsl/expression_check.ts";
import { HEADER_WORDS, RUN_WORDS, SLOT_WORDS } from "../schedule_buffer.ts";
import { allowedReadsHeadOrBatch, readsHash } from "../component_reads.ts";
import type { ComponentKernelOptions } from "./attention_wgsl.ts";
import { declareScoreModifier } from "./expression_wgsl.ts";
import { declareConstantReads, declareScoreSlope } from "./expression_slope_wgsl.ts";
import { declareMember } from "./kernel_module_wgsl.ts";
import { declareCodeStaging } from "./code_staging_wgsl.ts";
import { declareHashRows } from "./predicate_wgsl.ts";
import { ShaderModule } from "./shader_module.ts";
import { declareKvRow } from "./kv_row_wgsl.ts";
import { ParamReader } from "./params_wgsl.ts";
import { queryRowOf } from "./kernel_refs.ts";
import {
  gradientConstants,
  type GradientKernelOptions,
  rowsPerHead,
  valueWidths,
} from "./gradient_common_wgsl.ts";
import {
  declareSequences,
  pairInSequence,
  positionsInSequence,
  SEQUENCE_N,
} from "./sequence_wgsl.ts";

const range = (n: number) => [...Array(n).keys()];

/** gradQuery (dQ, query-major) or gradKey (dK and dV, key-major). */
export function gradientTileKernel(o: GradientKernelOptions): string {
  const k = o.kernel, branch = o.branches[k.branch], c = branch.components[k.component];
  assert(k.tiling !== undefined, "a gradient tile kernel without its tiling");
  const queryMajor = k.kind === "gradQuery";
  const landmarks = c.kLayout.kind === "landmarks" ? c.kLayout : undefined;
  const t = k.tiling;
  const m = new ShaderModule().comment(
    `Weft gradients: branch ${k.branch} component ${k.component}, ` +
      (queryMajor ? "dQ, query-major" : "dK and dV, key-major over the transposed mask"),
  );
  const { nk, dv } = sequenceSizes(o.shape);
  const q = o.queries;
  m.comment(
    `tile ${o.tileQ}x${o.tileK}, ${t.own} ${queryMajor ? "rows" : "keys"} per workgroup, ` +
      `chunks of ${t.chunk}, N=${nk}, ` + (q ? `Nq=${q.count} from position ${q.offset}, ` : "") +
      `D=${o.shape.headDim}, ` + (dv === o.shape.headDim ? "" : `Dv=${dv}, `) + o.dtype,
  );
  if (o.dtype === "f16") m.enable("f16");
  gradientConstants(m, o);
  m.declare(
    "bindings",
    `
@group(0) @binding(0) var<storage, read> qIn: array<vec4<${o.dtype}>>;
@group(0) @binding(1) var<storage, read> kIn: array<vec4<${o.dtype}>>;
@group(0) @binding(2) var<storage, read> vIn: array<vec4<${o.dtype}>>;
@group(0) @binding(3) var<storage, read> dO: array<vec4<${o.dtype}>>;
@group(0) @binding(4) var<storage, read> schedule: array<u32>; // the gradient schedule
@group(0) @binding(5) var<storage, read> aux: array<u32>;
@group(0) @binding(6) var<storage, read> gradStats: array<f32>; // per branch row: LSE, g, Δ
@group(0) @binding(7) var<storage, read_write> ${queryMajor ? "dq" : "dkv"}: array<vec4<f32>>; ${
      queryMajor ? "" : `// dK, then dV, per ${landmarks ? "landmark" : "key row"}`
    }`,
  );
  const keyRows = landmarks ? landmarks.count : nk;
  m.declare(
    "keyRows",
    `
const KV_ROWS = ${keyRows}u; // key rows per key/value head${
      landmarks ? ` (the pooled landmarks of lowRank(${landmarks.rank}))` : ""
    }`,
  );
  // Paged K and V: rows of K and V through the block table, bound last (the kernel plan's).
  if (o.paged) declareKvRow(m, o.paged);
  const hashed = readsHash(c);
  if (hashed) {
    // Bucket order and same-bucket masks read the codes of this head's rows (queryRow, keyRow).
    m.declare(
      "hashBinding",
      `
@group(0) @binding(8) var<storage, read> hash: array<u32>; // codes, bucket order`,
    );
    declareHashRows(m);
  }
  // Layouts and masks over the N = Nk key positions; where the queries are some of them, the
  // query layout's other positions are padding (declareMember).
  const member = {
    component: c,
    shape: o.shape,
    n: nk,
    ...(q ? { queries: q } : {}),
    hash: o.hash,
    packed: o.packed,
  } as unknown as ComponentKernelOptions;
  const { qPos, kPos } = declareMember(m, member, o.params, "allowed");
  const codes = declareCodeStaging(m, member);
  const hb = allowedReadsHeadOrBatch(c) ? ", h, b" : "";
  // Packed sequences: the key lies in the query row's sequence (staged with the row), and the
  // pattern allows their positions within it.
  const allowed = o.packed
    ? pairInSequence("q", "k", "qSequence[ri]", (q, k, n) => `allowed(${q}, ${k}, ${n}${hb})`)
    : `allowed(q, k${hb}${codes ? `, ${codes.queryCodes}(q), ${codes.keyCodes}(k)` : ""})`;
  // A branch that reads learnable constants reads them from the learned buffer, and its
  // query-major pass adds each row's share of their gradients into dConstRows.
  const learns = branchLearns(branch);
  const offsets = learns ? learnableOffsets(o.learnable) : undefined;
  const n = o.packed ? SEQUENCE_N : nk;
  if (branch.score) {
    declareScoreModifier(m, branch.score, n, offsets);
    declareScoreSlope(m, branch.score, n, offsets);
  }
  const reads = queryMajor && offsets ? declareConstantReads(m, branch.score!, n, offsets) : "";
  const constantReads = o.packed && reads ? readsInSequence(reads) : reads;
  if (learns) {
    const next = hashed ? 9 : 8;
    m.declare(
      "learnedBindings",
      queryMajor
        ? `
@group(0) @binding(${next}) var<storage, read_write> dConstRows: array<f32>; // per row
@group(0) @binding(${next + 1}) var<storage, read> learned: array<f32>; // learnable constants`
        : `
@group(0) @binding(${next}) var<storage, read> learned: array<f32>; // learnable constants`,
    );
  }
  if (o.packed) {
    // The last binding, after dq or dkv, the hash buffer and the learnable constants' buffers.
    const learned = learns ? (queryMajor ? 2 : 1) : 0;
    declareSequences(m, 8 + Number(hashed) + learned);
  }
  const [sq, sk] = o.packed ? positionsInSequence("q", "k", "qSequence[ri]") : ["q", "k"];
  const args = `s, ${sq}, ${sk}, h, b${o.packed ? ", qSequence[ri].n" : ""}`;
  const scored = branch.uniform
    ? "// Uniform weights (the ANNA estimator): every score is 0, whatever Q and K.\n" +
      "      let sm = 0.0;\n      let slope = 0.0;"
    : branch.score
    ? `let sm = scoreModifier(${args});\n      let slope = scoreModifierSlope(${args});`
    : "let sm = s;\n      let slope = 1.0;";
  const tiling = tilingConstants(o, t, queryMajor);
  const owner = ownTile(m, o, queryMajor);
  return m.render(
    tiling +
      (queryMajor
        ? queryKernel(o, t, { qPos, kPos, hashed, owner }, constantReads)
        : keyKernel(o, t, { qPos, kPos, hashed, owner })),
  )
    .replaceAll("ALLOWED", allowed)
    .replaceAll("SCORED", scored);
}

function tilingConstants(o: GradientKernelOptions, t: GradientTiling, queryMajor: boolean) {
  const own = queryMajor ? "query rows" : "keys", other = queryMajor ? "keys" : "query rows";
  return `
const TILE_Q = ${o.tileQ}u;
const TILE_K = ${o.tileK}u;
const THREADS = ${GRADIENT_TILE_THREADS}u;
const SPLIT = ${t.split}u;  // workgroups per ${queryMajor ? "query" : "key"} tile
const OWN = ${t.own}u;      // ${own} this workgroup owns
const CHUNK = ${t.chunk}u;  // ${other} staged at a time
const ROW4 = D4 + 1u;   // a staged row's vec4s, padded against bank conflicts${
    valueWidths(o).vec4s === "D4"
      ? ""
      : "\nconst ROWV4 = DV4 + 1u; // a staged V or dO row's vec4s, padded the same way"
  }
const PAIR_STRIDE = ${queryMajor ? "CHUNK" : "OWN"} + 1u; // a pair tile's row (one per query row)
const PAIR_ROWS = ${t.pairRows}u; // the pair step's invocations: PAIR_ROWS x PAIR_COLS
const PAIR_COLS = ${t.pairCols}u;
const OUT_ROWS = ${t.outRows}u;   // the product step's: OUT_ROWS x OUT_COLS
const OUT_COLS = ${t.outCols}u;
`;
}

/** Which tile a workgroup owns, and its row of the gradient schedule. */
interface Owner {
  /** The `let` lines that set `ownTile` (and `scheduleRow` where they differ). */
  lines: string;
  /** The WGSL naming the workgroup's row of the gradient schedule. */
  row: string;
}

/**
 * The tile a workgroup owns: tile `wg.x / SPLIT`, or where the kernel runs a list of tiles
 * (`ownTiles`, the queries some of the positions), entry `wg.x / SPLIT` of that list in aux,
 * whose schedule rows are in list order.
 */
function ownTile(m: ShaderModule, o: GradientKernelOptions, queryMajor: boolean): Owner {
  const tiles = o.kernel.ownTiles;
  if (!tiles) return { lines: "  let ownTile = wg.x / SPLIT;", row: "ownTile" };
  const reader = new ParamReader(m, o.params);
  const what = queryMajor
    ? "query tile(s) that hold the call's queries"
    : "key tile(s) the queries visit";
  const list = reader.dataOffset(
    "ownTiles",
    o.params.aux.tileList(tiles),
    `aux offset of the ${tiles.length} ${what}`,
  );
  return {
    lines: `${reader.lines.join("\n")}
  let scheduleRow = wg.x / SPLIT;     // this tile's row of the gradient schedule
  let ownTile = aux[${list} + scheduleRow]; // one of the ${what}`,
    row: "scheduleRow",
  };
}

/**
 * The tiles a workgroup walks: a bucket-ordered (hashBucket) component's bucket range, else the
 * runs of its row of the gradient schedule.
 */
function walk(o: GradientKernelOptions, queryMajor: boolean, body: string, row: string): string {
  const c = o.branches[o.kernel.branch].components[o.kernel.component];
  return c.kLayout.kind === "sorted" ? bucketWalk(o, queryMajor, body) : runs(o, body, row);
}

/**
 * A bucket-ordered component's tiles, read from the forward's codes as its forward does
 * (key_loop_wgsl.ts, `bucketRange`): this tile's rows, in bucket order, span buckets
 * `first..last`, so the other side's rows that share a bucket with them are one range of that
 * side's bucket order, `[starts[first], starts[last + 1])`, every tile of it PARTIAL (the
 * same-bucket mask picks the pairs). Query-major: this query tile's keys (kvHead's starts);
 * key-major: this key tile's queries (query head bh's starts).
 */
function bucketWalk(o: GradientKernelOptions, queryMajor: boolean, body: string): string {
  const l = o.branches[o.kernel.branch].components[o.kernel.component].kLayout;
  assert(l.kind === "sorted", "a bucket walk of a static mask");
  const set = codeSetOf(o.hash, l);
  const n = sequenceSizes(o.shape).nk, rows = set.rowsQ + set.rowsK, starts = set.buckets + 1;
  const round = l.round * rows;
  // This side's sorts: query rows first in a round, then key rows. A query sort holds the
  // call's queries only (NQ of them, where they are some of the positions).
  const mine = queryMajor
    ? { row: "bh", first: round, count: rowsPerHead(o) }
    : { row: "kvHead", first: round + set.rowsQ, count: "N" };
  const other = queryMajor
    ? { row: "kvHead", first: round + set.rowsQ, tile: "TILE_K" }
    : { row: "bh", first: round, tile: "TILE_Q" };
  const tile = queryMajor ? "TILE_Q" : "TILE_K";
  return `  // Bucket order (round ${l.round}): this tile's rows span buckets first..last; the other
  // side's rows of those buckets are one range of its bucket order, every tile PARTIAL.
  let orderAt = ${set.order + mine.first * n}u + ${mine.row} * N;
  let firstRow = hash[orderAt + ownTile * ${tile}];
  let lastRow = hash[orderAt + min(${mine.count}, ownTile * ${tile} + ${tile}) - 1u];
  let codesAt = ${set.codes + mine.first * n}u + ${mine.row} * N;
  let firstBucket = hash[codesAt + firstRow];
  let lastBucket = hash[codesAt + lastRow];
  let startsAt = ${set.starts + other.first * starts}u + ${other.row} * ${starts}u;
  let tileEnd = (hash[startsAt + lastBucket + 1u] + ${other.tile} - 1u) / ${other.tile};
  let partial = true;
  for (var tile = hash[startsAt + firstBucket] / ${other.tile}; tile < tileEnd; tile++) {
${body}
  }`;
}

/** The walk over schedule row `row`'s runs, each tile `tile` with `partial` set. */
function runs(o: GradientKernelOptions, body: string, row: string): string {
  return `  // The runs of this tile's row of the gradient schedule (slot ${o.kernel.scheduleSlot}).
  let slot = ${HEADER_WORDS}u + ${SLOT_WORDS}u * ${o.kernel.scheduleSlot}u;
  let rowsAt = schedule[slot];
  let runsAt = schedule[slot + 1u];
  for (var run = schedule[rowsAt + ${row}]; run < schedule[rowsAt + ${row} + 1u]; run++) {
    let head = schedule[runsAt + ${RUN_WORDS}u * run]; // start << 1 | partial
    let partial = (head & 1u) == 1u;
    for (var tile = head >> 1u; tile < (head >> 1u) + schedule[runsAt + ${RUN_WORDS}u * run + 1u]; tile++) {
${body}
    }
  }`;
}

/** Packed sequences: the staged query rows' sequences (gradient_tiling.ts counts them). */
function querySequences(o: GradientKernelOptions, rows: number): string {
  return o.packed ? `\nvar<workgroup> qSequence: array<Sequence, ${rows}>;` : "";
}

/**
 * A learnable constant's reads for a packed pair: the row's `q` and the key's `k` become their
 * positions within the row's sequence (`r`), and `n` its key count, in a block of their own.
 */
function readsInSequence(reads: string): string {
  const [q, k] = positionsInSequence("q", "k", "qSequence[r]");
  const inner = reads.split("\n").map((line) => `            ${line.trimStart()}`);
  return [
    "        {",
    "          // Positions within the row's sequence and its key count, as the modifier reads them.",
    `          let within = vec3<i32>(${q}, ${k}, qSequence[r].n);`,
    "          {",
    "            let q = within.x;",
    "            let k = within.y;",
    `            let ${SEQUENCE_N} = within.z;`,
    ...inner,
    "          }",
    "        }",
  ].join("\n");
}

/** The loop over a tile's chunks; one block, `c0` = 0, when one chunk is the whole tile. */
function chunkLoop(chunk: number, tile: number, name: string): string {
  return chunk === tile
    ? "{ let c0 = 0u; // the whole tile is one chunk"
    : `for (var c0 = 0u; c0 < ${name}; c0 += CHUNK) {`;
}

/** Indents every line of a block by `by` spaces. */
function indent(text: string, by: number): string {
  const pad = " ".repeat(by);
  return text.split("\n").map((l) => (l ? pad + l : l)).join("\n");
}

/**
 * The pair step: a register tile of scores and dO·Vᵀ, rows `pairRow + i PAIR_ROWS` (query rows of
 * qT, dOT) and columns `pairCol + j PAIR_COLS` (keys of kT, vT); then each pair's mask and `body`,
 * which sees `q`, `k`, `s` (the scaled score), `dp` (dO·V), `ri`, `kj` (the pair's row and key
 * in the tiles), `sm` and `slope`, and writes the pair tiles. With V's own head dim (`ownValue`)
 * the scores sum over D4 and dO·V over DV4, in two loops; otherwise one loop does both.
 */
function pairStep(
  rowsOf: number,
  colsOf: number,
  defaults: string,
  body: string,
  ownValue: boolean,
): string {
  const I = range(rowsOf), J = range(colsOf);
  const grid = (f: (i: number, j: number) => string) =>
    I.flatMap((i) => J.map((j) => f(i, j))).join("\n");
  const row4 = ownValue ? "ROWV4" : "ROW4";
  const scoreLoads = [
    I.map((i) => `    let qv${i} = vec4<f32>(qT[(pairRow + ${i}u * PAIR_ROWS) * ROW4 + d]);`).join(
      "\n",
    ),
    J.map((j) => `    let kv${j} = vec4<f32>(kT[(pairCol + ${j}u * PAIR_COLS) * ROW4 + d]);`).join(
      "\n",
    ),
  ];
  const valueLoads = [
    I.map((i) => `    let dov${i} = vec4<f32>(dOT[(pairRow + ${i}u * PAIR_ROWS) * ${row4} + d]);`)
      .join("\n"),
    J.map((j) => `    let vv${j} = vec4<f32>(vT[(pairCol + ${j}u * PAIR_COLS) * ${row4} + d]);`)
      .join("\n"),
  ];
  const loops = ownValue
    ? `  for (var d = 0u; d < D4; d++) {
${scoreLoads.join("\n")}
${grid((i, j) => `    s${i}_${j} += dot(qv${i}, kv${j});`)}
  }
  for (var d = 0u; d < DV4; d++) {
${valueLoads.join("\n")}
${grid((i, j) => `    dp${i}_${j} += dot(dov${i}, vv${j});`)}
  }`
    : `  for (var d = 0u; d < D4; d++) {
${scoreLoads[0]}
${valueLoads[0]}
${scoreLoads[1]}
${valueLoads[1]}
${
      grid((i, j) =>
        `    s${i}_${j} += dot(qv${i}, kv${j});\n    dp${i}_${j} += dot(dov${i}, vv${j});`
      )
    }
  }`;
  return `if (pairLive) {
${grid((i, j) => `  var s${i}_${j} = 0.0;\n  var dp${i}_${j} = 0.0;`)}
${loops}
${
    grid((i, j) =>
      `  {
    let ri = pairRow + ${i}u * PAIR_ROWS;
    let kj = pairCol + ${j}u * PAIR_COLS;
    let q = qPosition[ri];
    let k = kPosition[kj];
    let dp = dp${i}_${j};
${defaults}
    if (q >= 0 && k >= 0 && (!partial || ALLOWED)) {
      let s = SCALE * s${i}_${j};
      SCORED
${body}
    }
${"    "}WRITES
  }`
    )
  }
}`;
}

/**
 * Stages `count` query rows from layout index `first`: their positions, statistics (LSE, gate,
 * Δ of branch `b`), Q and dO (and, packed, their sequences); rows past the layout or outside
 * the call's queries (position -1) are zeros. dO rows of V's own head dim are staged in a loop
 * of their own.
 */
function stageQueries(
  o: GradientKernelOptions,
  qPos: string,
  count: string,
  first: string,
): string {
  const T = o.dtype, b = o.kernel.branch, V = valueWidths(o).vec4s;
  const padding = `// -1 past the end of the layout${o.queries ? " or outside the queries" : ""}`;
  const row = queryRowOf(o, "qp", true);
  const dO = (stride: string) =>
    `dOT[r * ${stride} + d] = select(vec4<${T}>(0.0), dO[row * ${V} + d], qp >= 0);`;
  return `for (var i = lid; i < ${count} * D4; i += THREADS) {
  let r = i / D4;
  let d = i % D4;
  let qp = ${qPos}(${first} + r); ${padding}
  let row = ${row};
  if (d == 0u) {
    qPosition[r] = qp;${o.packed ? "\n    qSequence[r] = sequenceOf(qp);" : ""}
    let stats = (${b}u * ROWS + row) * 4u;
    lseT[r] = gradStats[stats];
    gateT[r] = gradStats[stats + 1u];
    deltaT[r] = gradStats[stats + 2u];
  }
  qT[r * ROW4 + d] = select(vec4<${T}>(0.0), qIn[row * D4 + d], qp >= 0);${
    V === "D4" ? `\n  ${dO("ROW4")}\n}` : `
}
for (var i = lid; i < ${count} * DV4; i += THREADS) {
  let r = i / DV4;
  let d = i % DV4;
  let qp = ${qPos}(${first} + r);
  let row = ${row};
  ${dO("ROWV4")}
}`
  }`;
}

/**
 * Stages `count` keys from layout index `first` of key/value head `kvHead` (batch · Hkv +
 * head): their positions, K and V; keys past the layout (position -1) are zeros. V rows of
 * their own head dim are staged in a loop of their own. Paged K and V are read through the
 * block table (`kvRow`); landmarks and contiguous K and V by the head's rows.
 */
function stageKeys(
  o: GradientKernelOptions,
  kPos: string,
  count: string,
  first: string,
  kvHead: string,
): string {
  const T = o.dtype;
  const ownValue = valueWidths(o).vec4s === "DV4";
  const row = o.paged
    ? `kvRow(${kvHead}, u32(max(kp, 0)))`
    : `(${kvHead} * KV_ROWS + u32(max(kp, 0)))`;
  return `for (var i = lid; i < ${count} * D4; i += THREADS) {
  let j = i / D4;
  let d = i % D4;
  let kp = ${kPos}(${first} + j); // -1 past the end of the layout
  if (d == 0u) { kPosition[j] = kp; }
  let src = ${row} * D4 + d;
  kT[j * ROW4 + d] = select(vec4<${T}>(0.0), kIn[src], kp >= 0);${
    ownValue
      ? `
}
for (var i = lid; i < ${count} * DV4; i += THREADS) {
  let j = i / DV4;
  let d = i % DV4;
  let kp = ${kPos}(${first} + j);
  let src = ${row} * DV4 + d;
  vT[j * ROWV4 + d] = select(vec4<${T}>(0.0), vIn[src], kp >= 0);
}`
      : `
  vT[j * ROW4 + d] = select(vec4<${T}>(0.0), vIn[src], kp >= 0);
}`
  }`;
}

/** How a tile kernel names its member's layouts, whether it reads codes, and its tile. */
interface TileRefs {
  qPos: string;
  kPos: string;
  hashed: boolean;
  owner: Owner;
}

function queryKernel(
  o: GradientKernelOptions,
  t: GradientTiling,
  refs: TileRefs,
  constantReads: string,
): string {
  const { qPos, kPos, hashed, owner } = refs;
  const T = o.dtype;
  const d4 = o.shape.headDim / 4, dv4 = sequenceSizes(o.shape).dv / 4;
  const rowsOf = t.own / t.pairRows, colsOf = t.chunk / t.pairCols;
  const BI = range(t.own / t.outRows), CI = range(o.shape.headDim / 4 / t.outCols);
  const learns = constantReads !== "";
  const pairs = pairStep(
    rowsOf,
    colsOf,
    `    var ds = 0.0;${learns ? "\n    var dScore = 0.0;" : ""}`,
    `      ${learns ? "dScore" : "let dScore"} = exp(sm - lseT[ri]) * (gateT[ri] * dp - deltaT[ri]);
      ds = dScore * slope;`,
    dv4 !== d4,
  ).replaceAll(
    "WRITES",
    `dsT[ri * PAIR_STRIDE + kj] = ds;${learns ? " dScoreT[ri * PAIR_STRIDE + kj] = dScore;" : ""}`,
  );
  // The learnable constants' shares are per query row: one invocation sums each row's, in order.
  const constants = learns
    ? `
      // Each row's share of the learnable constants' gradients, added by its one owner.
      for (var r = lid; r < OWN; r += THREADS) {
        let q = qPosition[r];
        let row = ${queryRowOf(o, "q", true)};
        for (var kj = 0u; kj < CHUNK; kj++) {
          let dScore = dScoreT[r * PAIR_STRIDE + kj];
          if (dScore != 0.0) {
            let k = kPosition[kj];
            var qk = 0.0;
            for (var d = 0u; d < D4; d++) {
              qk += dot(vec4<f32>(qT[r * ROW4 + d]), vec4<f32>(kT[kj * ROW4 + d]));
            }
            let s = SCALE * qk;
${indent(constantReads, 4)}
          }
        }
      }
      workgroupBarrier();`
    : "";
  const body = `      ${chunkLoop(t.chunk, o.tileK, "TILE_K")}
        workgroupBarrier();           // every read of the previous chunk is done
${indent(stageKeys(o, kPos, "CHUNK", "tile * TILE_K + c0", "kvHead"), 8)}
        workgroupBarrier();
${indent(pairs, 8)}
        workgroupBarrier();${constants}
        if (outLive) {
          // dQ += dS K: rows outRow + i OUT_ROWS, vec4 columns outCol + c OUT_COLS.
          for (var kj = 0u; kj < CHUNK; kj++) {
${
    CI.map((c) => `            let kv${c} = vec4<f32>(kT[kj * ROW4 + outCol + ${c}u * OUT_COLS]);`)
      .join("\n")
  }
${
    BI.map((i) => `            let ds${i} = dsT[(outRow + ${i}u * OUT_ROWS) * PAIR_STRIDE + kj];`)
      .join("\n")
  }
${BI.flatMap((i) => CI.map((c) => `            acc${i}_${c} += ds${i} * kv${c};`)).join("\n")}
          }
        }
      }`;
  return `
var<workgroup> qT: array<vec4<${T}>, ${t.own * (d4 + 1)}>;
var<workgroup> dOT: array<vec4<${T}>, ${t.own * (dv4 + 1)}>;
var<workgroup> kT: array<vec4<${T}>, ${t.chunk * (d4 + 1)}>;
var<workgroup> vT: array<vec4<${T}>, ${t.chunk * (dv4 + 1)}>;
var<workgroup> dsT: array<f32, ${t.own * (t.chunk + 1)}>;${
    learns ? `\nvar<workgroup> dScoreT: array<f32, ${t.own * (t.chunk + 1)}>;` : ""
  }
var<workgroup> qPosition: array<i32, ${t.own}>;${querySequences(o, t.own)}
var<workgroup> lseT: array<f32, ${t.own}>;
var<workgroup> gateT: array<f32, ${t.own}>;
var<workgroup> deltaT: array<f32, ${t.own}>;
var<workgroup> kPosition: array<i32, ${t.chunk}>;

@compute @workgroup_size(${GRADIENT_TILE_THREADS})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let bh = wg.y;                      // batch * HQ + query head
  let h = i32(bh % HQ);
  let b = i32(bh / HQ);
  let kvHead = (bh / HQ) * HKV + (bh % HQ) / GROUP;${
    hashed
      ? "\n  queryRow = bh;                     // whose codes and bucket order to read\n  keyRow = kvHead;"
      : ""
  }
${owner.lines}
  let first = ownTile * TILE_Q + (wg.x % SPLIT) * OWN; // this workgroup's first query index
${indent(stageQueries(o, qPos, "OWN", "first"), 2)}
  let pairRow = lid / PAIR_COLS;
  let pairCol = lid % PAIR_COLS;
  let pairLive = lid < PAIR_ROWS * PAIR_COLS;
  let outRow = lid / OUT_COLS;
  let outCol = lid % OUT_COLS;
  let outLive = lid < OUT_ROWS * OUT_COLS;
${BI.flatMap((i) => CI.map((c) => `  var acc${i}_${c} = vec4<f32>(0.0);`)).join("\n")}
${walk(o, true, body, owner.row)}
  if (!outLive) { return; }
${
    BI.map((i) =>
      `  {
    let q = qPosition[outRow + ${i}u * OUT_ROWS];
    if (q >= 0) {
      let row = ${queryRowOf(o, "q")};
${
        CI.map((c) => `      dq[row * D4 + outCol + ${c}u * OUT_COLS] += SCALE * acc${i}_${c};`)
          .join("\n")
      }
    }
  }`
    ).join("\n")
  }
}`;
}

function keyKernel(o: GradientKernelOptions, t: GradientTiling, refs: TileRefs): string {
  const { qPos, kPos, hashed, owner } = refs;
  const b = o.kernel.branch, T = o.dtype;
  const LAND = o.branches[b].components[o.kernel.component].kLayout.kind === "landmarks" ? "" : "+";
  const d4 = o.shape.headDim / 4, dv4 = sequenceSizes(o.shape).dv / 4;
  const ownValue = dv4 !== d4, row4 = ownValue ? "ROWV4" : "ROW4";
  const rowsOf = t.chunk / t.pairRows, colsOf = t.own / t.pairCols;
  // dK's vec4 columns (CK of them per invocation) and dV's (CV); the same where Dv = D.
  const BI = range(t.own / t.outRows), CK = d4 / t.outCols, CV = dv4 / t.outCols;
  const CI = range(Math.max(CK, CV));
  const pairs = pairStep(
    rowsOf,
    colsOf,
    "    var pg = 0.0;\n    var ds = 0.0;",
    `      let p = exp(sm - lseT[ri]);
      pg = p * gateT[ri];
      ds = p * (gateT[ri] * dp - deltaT[ri]) * slope;`,
    ownValue,
  ).replaceAll("WRITES", "pgT[ri * PAIR_STRIDE + kj] = pg; dsT[ri * PAIR_STRIDE + kj] = ds;");
  const body = `      ${chunkLoop(t.chunk, o.tileQ, "TILE_Q")}
        workgroupBarrier();           // every read of the previous chunk is done
${indent(stageQueries(o, qPos, "CHUNK", "tile * TILE_Q + c0"), 8)}
        workgroupBarrier();
${indent(pairs, 8)}
        workgroupBarrier();
        if (outLive) {
          // dV += Pᵀ g dO, dK += dSᵀ Q: keys outRow + i OUT_ROWS, vec4 columns outCol + c OUT_COLS.
          for (var r = 0u; r < CHUNK; r++) {
${
    range(CK).map((c) =>
      `            let qv${c} = vec4<f32>(qT[r * ROW4 + outCol + ${c}u * OUT_COLS]);`
    ).join("\n")
  }
${
    range(CV).map((c) =>
      `            let dov${c} = vec4<f32>(dOT[r * ${row4} + outCol + ${c}u * OUT_COLS]);`
    ).join("\n")
  }
${
    BI.map((i) => `            let pg${i} = pgT[r * PAIR_STRIDE + outRow + ${i}u * OUT_ROWS];`)
      .join("\n")
  }
${
    BI.map((i) => `            let ds${i} = dsT[r * PAIR_STRIDE + outRow + ${i}u * OUT_ROWS];`)
      .join("\n")
  }
${
    BI.flatMap((i) =>
      CI.flatMap((c) => [
        ...(c < CV ? [`            dv${i}_${c} += pg${i} * dov${c};`] : []),
        ...(c < CK ? [`            dk${i}_${c} += ds${i} * qv${c};`] : []),
      ])
    ).join("\n")
  }
          }
        }
      }`;
  return `
var<workgroup> kT: array<vec4<${T}>, ${t.own * (d4 + 1)}>;
var<workgroup> vT: array<vec4<${T}>, ${t.own * (dv4 + 1)}>;
var<workgroup> qT: array<vec4<${T}>, ${t.chunk * (d4 + 1)}>;
var<workgroup> dOT: array<vec4<${T}>, ${t.chunk * (dv4 + 1)}>;
var<workgroup> pgT: array<f32, ${t.chunk * (t.own + 1)}>; // g P, per query row of the chunk
var<workgroup> dsT: array<f32, ${t.chunk * (t.own + 1)}>;
var<workgroup> kPosition: array<i32, ${t.own}>;
var<workgroup> qPosition: array<i32, ${t.chunk}>;${querySequences(o, t.chunk)}
var<workgroup> lseT: array<f32, ${t.chunk}>;
var<workgroup> gateT: array<f32, ${t.chunk}>;
var<workgroup> deltaT: array<f32, ${t.chunk}>;

@compute @workgroup_size(${GRADIENT_TILE_THREADS})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let kvHead = wg.y;                  // batch * HKV + key/value head
  let b = i32(kvHead / HKV);${
    hashed ? "\n  keyRow = kvHead;                   // whose codes and bucket order to read" : ""
  }
${owner.lines}
  let first = ownTile * TILE_K + (wg.x % SPLIT) * OWN; // this workgroup's first key index
${indent(stageKeys(o, kPos, "OWN", "first", "kvHead"), 2)}
  let pairRow = lid / PAIR_COLS;
  let pairCol = lid % PAIR_COLS;
  let pairLive = lid < PAIR_ROWS * PAIR_COLS;
  let outRow = lid / OUT_COLS;
  let outCol = lid % OUT_COLS;
  let outLive = lid < OUT_ROWS * OUT_COLS;
${
    BI.flatMap((i) =>
      CI.flatMap((c) => [
        ...(c < CK ? [`  var dk${i}_${c} = vec4<f32>(0.0);`] : []),
        ...(c < CV ? [`  var dv${i}_${c} = vec4<f32>(0.0);`] : []),
      ])
    ).join("\n")
  }
  // Every query head of this key/value head, one after another: their sums add here.
  for (var group = 0u; group < GROUP; group++) {
    let bh = (kvHead / HKV) * HQ + (kvHead % HKV) * GROUP + group;
    let h = i32(bh % HQ);${hashed ? "\n    queryRow = bh;" : ""}
${indent(walk(o, false, body, owner.row), 2)}
  }
  if (!outLive) { return; }
  // Landmarks are written (gradUnpool adds them to their rows next); key rows add.${
    ownValue ? " dV's rows\n  // (DV4 vec4s each) follow every row of dK." : ""
  }
  let rows = (KEY_ROWS / N) * KV_ROWS;
${
    BI.map((i) =>
      `  {
    let k = kPosition[outRow + ${i}u * OUT_ROWS];
    if (k >= 0) {
      let row = kvHead * KV_ROWS + u32(k);
${
        CI.flatMap((c) => [
          ...(c < CK
            ? [`      dkv[row * D4 + outCol + ${c}u * OUT_COLS] ${LAND}= SCALE * dk${i}_${c};`]
            : []),
          ...(c < CV
            ? [
              ownValue
                ? `      dkv[rows * D4 + row * DV4 + outCol + ${c}u * OUT_COLS] ${LAND}= dv${i}_${c};`
                : `      dkv[(rows + row) * D4 + outCol + ${c}u * OUT_COLS] ${LAND}= dv${i}_${c};`,
            ]
            : []),
        ]).join("\n")
      }
    }
  }`
    ).join("\n")
  }
}`;
}
