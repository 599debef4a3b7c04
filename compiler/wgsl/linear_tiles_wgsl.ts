/**
 * WGSL of a linear branch's cooperative steps (plan_linear.ts): a workgroup owns one chunk and
 * stages it in workgroup memory. `chunkSums` sums `φ(K)ᵀ V` and `Σ φ(K)` of a chunk; `output`
 * computes a chunk's rows of O and LSE as `(φ(Q) S + mask(φ(Q) φ(K)ᵀ) V) / den`. Each invocation
 * owns a few rows × 4 adjacent columns (`tx + 16 g` in vec4s), unrolled into scalars: WGSL
 * compilers leave loop-indexed private arrays in local memory (20x slower on the H100, see
 * attention_wgsl.ts).
 * @module
 */
import { sequenceSizes } from "../../core/shape.ts";
import type { LinearTile } from "../kernel_plan.ts";
import type { LinearKernelOptions } from "./linear_wgsl.ts";
import type { ShaderModule } from "./shader_module.ts";

/** Invocations across a tile's columns (plan_linear.ts's `COLUMN_GROUPS`). */
const COLUMN_GROUPS = 16;

/** The constants that name a cooperative tile's cut. */
function tileConstants(t: LinearTile, extra: string): string {
  const across = Math.min(COLUMN_GROUPS, t.rows);
  return `
const ROWS = ${t.rows}u;
const ROWS_EACH = ${t.rows / across}u;  // an invocation's rows: ty * ROWS_EACH + r
const BLOCK = ${t.block}u;
const TILE_V4 = ${t.valueTile / 4}u;  // vec4 columns of V per workgroup
const GROUPS = ${t.valueTile / 64}u;  // an invocation's vec4 columns: tx + 16 g
const INVOCATIONS = ${t.invocations}u;${extra}`;
}

/** Bounded reads of the staged inputs: zero past the keys, the queries, M or Dv. */
function declareReads(m: ShaderModule, query: boolean): void {
  m.declare(
    "keyPhi",
    `
fn keyPhi(kvHead: u32, key: u32, f: u32) -> f32 {
  if (key >= NK || f >= M) { return 0.0; }
  return phi[KEY_PHI + (kvHead * NK + key) * M + f];
}`,
  );
  m.declare(
    "keyValue",
    `
fn keyValue(kvHead: u32, key: u32, c4: u32) -> vec4<f32> {
  if (key >= NK || c4 >= DV4) { return vec4<f32>(0.0); }
  return vec4<f32>(vIn[(kvHead * NK + key) * DV4 + c4]);
}`,
  );
  if (!query) return;
  m.declare(
    "queryPhi",
    `
// φ of the row of query head bh at key position p.
fn queryPhi(bh: u32, p: u32, f: u32) -> f32 {
  if (p < OFFSET || p >= OFFSET + NQ || f >= M) { return 0.0; }
  return phi[(bh * NQ + p - OFFSET) * M + f];
}`,
  );
}

/**
 * `seenSums(kvHead, chunk, e)`: entry e of the sums a query of `chunk` sees before its own
 * chunk's keys (a key of it, in the backward's suffix state): the chunk's slot plus its
 * segment's (plan_linear.ts's two-level scan), or the total without causal; `seenVec4` reads
 * four adjacent entries.
 * @param m the module
 */
export function declareSeenSums(m: ShaderModule): void {
  m.declare(
    "seenSums",
    `
fn seenSums(kvHead: u32, chunk: u32, e: u32) -> f32 {
  if (!CAUSAL) { return state[stateAt(kvHead, TOTAL) + e]; }
  return state[stateAt(kvHead, chunk) + e] + state[stateAt(kvHead, CHUNKS + chunk / SEGMENT) + e];
}

fn seenVec4(kvHead: u32, chunk: u32, e: u32) -> vec4<f32> {
  return vec4<f32>(seenSums(kvHead, chunk, e), seenSums(kvHead, chunk, e + 1u),
                   seenSums(kvHead, chunk, e + 2u), seenSums(kvHead, chunk, e + 3u));
}`,
  );
}

/** 0 .. n - 1. */
function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

/** An invocation's register tile: rows, vec4 column groups and (output) score keys. */
function registers(t: LinearTile, chunk = 0) {
  return {
    R: range(t.rows / Math.min(COLUMN_GROUPS, t.rows)),
    G: range(t.valueTile / 64),
    J: range(Math.ceil(chunk / COLUMN_GROUPS)),
  };
}

/** Column `16 g + tx` of a tile, in WGSL. */
function column(g: number): string {
  return g ? `${16 * g}u + tx` : "tx";
}

/**
 * A chunk's `S = φ(K)ᵀ V` (ROWS features × TILE_V4 vec4 columns of a workgroup) and `z = Σ φ(K)`:
 * BLOCK keys of φ(K) and V staged a step. The register tile is scalars (`sums{r}_{g}`, `z{r}`).
 */
export function chunkSumsMain(m: ShaderModule, o: LinearKernelOptions): string {
  const t = o.kernel.tile!;
  const { dv } = sequenceSizes(o.shape);
  const { R, G } = registers(t);
  declareReads(m, false);
  const valueTiles = Math.ceil(dv / t.valueTile);
  const stateTiles = Math.ceil(o.kernel.features / t.rows) * valueTiles;
  m.declare(
    "tile",
    tileConstants(
      t,
      `\nconst VALUE_TILES = ${valueTiles}u;\nconst STATE_TILES = ${stateTiles}u;  // per chunk`,
    ),
  );
  m.declare(
    "storeSums",
    `
// Feature f's sums at vec4 columns c4 + 16 g, and its z from the workgroup's first column.
fn storeSums(kvHead: u32, chunk: u32, f: u32, c4: u32, sums: array<vec4<f32>, GROUPS>, z: f32) {
  if (f >= M) { return; }
  let out = stateAt(kvHead, chunk);
  for (var g = 0u; g < GROUPS; g++) {
    if (c4 + 16u * g >= DV4) { break; }
    let at = out + f * DV + 4u * (c4 + 16u * g);
    let s = sums[g];
    state[at] = s.x;
    state[at + 1u] = s.y;
    state[at + 2u] = s.z;
    state[at + 3u] = s.w;
  }
  if (c4 == 0u) { state[out + M * DV + f] = z; }
}`,
  );
  const accumulate = R.map((r) => `
      let a${r} = phiTile[k * ROWS + ty * ROWS_EACH + ${r}u];
      z${r} += a${r};${G.map((g) => ` sums${r}_${g} += a${r} * v${g};`).join("")}`).join("");
  return `
// The chunk's φ(K) (BLOCK keys × ROWS features) and V (BLOCK keys × TILE_V4).
var<workgroup> phiTile: array<f32, ${t.block * t.rows}>;
var<workgroup> valueTile: array<vec4<f32>, ${t.block * t.valueTile / 4}>;

@compute @workgroup_size(${t.invocations})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let chunk = wg.x;
  let kvHead = wg.y / STATE_TILES;
  let tile = wg.y % STATE_TILES;
  let f0 = (tile / VALUE_TILES) * ROWS;     // the workgroup's first feature
  let c0 = (tile % VALUE_TILES) * TILE_V4;  // and first vec4 column
  let start = chunk * CHUNK;
  let keys = min(CHUNK, NK - start);
  let ty = lid / 16u;
  let tx = lid % 16u;
${
    R.map((r) =>
      `  var z${r} = 0.0;${G.map((g) => ` var sums${r}_${g} = vec4<f32>(0.0);`).join("")}`
    ).join("\n")
  }
  for (var k0 = 0u; k0 < keys; k0 += BLOCK) {
    for (var i = lid; i < BLOCK * ROWS; i += INVOCATIONS) {
      phiTile[i] = keyPhi(kvHead, start + k0 + i / ROWS, f0 + i % ROWS);
    }
    for (var i = lid; i < BLOCK * TILE_V4; i += INVOCATIONS) {
      valueTile[i] = keyValue(kvHead, start + k0 + i / TILE_V4, c0 + i % TILE_V4);
    }
    workgroupBarrier();
    for (var k = 0u; k < BLOCK; k++) {
     ${G.map((g) => ` let v${g} = valueTile[k * TILE_V4 + ${column(g)}];`).join("")}${accumulate}
    }
    workgroupBarrier();
  }${
    R.map((r) =>
      `\n  storeSums(kvHead, chunk, f0 + ty * ROWS_EACH + ${r}u, c0 + tx, array(${
        G.map((g) => `sums${r}_${g}`).join(", ")
      }), z${r});`
    ).join("")
  }
}`;
}

/**
 * ROWS query positions of a chunk, for one query head and TILE_V4 vec4 columns: `φ(Q) S`,
 * `φ(Q)·z` and (causal) the scores `φ(Q) φ(K)ᵀ` over BLOCK features a step, then the masked
 * scores times V over BLOCK keys a step; O and LSE from their sums. The register tile is
 * scalars: `acc{r}_{g}` (O's numerator), `den{r}` and `dot{r}_{j}` (scores).
 */
export function outputMain(m: ShaderModule, o: LinearKernelOptions): string {
  const k = o.kernel, t = k.tile!;
  const { dv } = sequenceSizes(o.shape);
  const keySpan = COLUMN_GROUPS * Math.ceil(k.chunk / COLUMN_GROUPS);
  const { R, G, J } = registers(t, k.causal ? k.chunk : 0);
  declareReads(m, true);
  declareSeenSums(m);
  m.declare(
    "tile",
    tileConstants(
      t,
      `
const VALUE_TILES = ${Math.ceil(dv / t.valueTile)}u;
const FIRST_CHUNK = ${Math.floor(o.queryOffset / k.chunk)}u;  // the first chunk with a query` +
        (k.causal
          ? `\nconst KEY_SPAN = ${keySpan}u;  // keys tx + 16 j, past CHUNK when it is 8`
          : ""),
    ),
  );
  m.declare(
    "seenState",
    `
// Row f, vec4 column c4 of the S a query of the chunk sees (0 past M or Dv), and z[f].
fn seenState(kvHead: u32, chunk: u32, f: u32, c4: u32) -> vec4<f32> {
  if (f >= M || c4 >= DV4) { return vec4<f32>(0.0); }
  return seenVec4(kvHead, chunk, f * DV + 4u * c4);
}

fn seenZ(kvHead: u32, chunk: u32, f: u32) -> f32 {
  if (f >= M) { return 0.0; }
  return seenSums(kvHead, chunk, M * DV + f);
}`,
  );
  m.declare(
    "writeRow",
    `
// Query position p's O at vec4 columns c4 + 16 g, and its LSE from the first column.
fn writeRow(bh: u32, p: u32, c4: u32, acc: array<vec4<f32>, GROUPS>, den: f32) {
  if (p < OFFSET || p >= OFFSET + NQ) { return; }
  let row = bh * NQ + p - OFFSET;
  for (var g = 0u; g < GROUPS; g++) {
    if (c4 + 16u * g >= DV4) { break; }
    oRows[O_BASE + row * DV4 + c4 + 16u * g] = acc[g] / den;
  }
  if (c4 == 0u) { lse[LSE_BASE + row] = log(den); }
}`,
  );
  if (k.causal) {
    m.declare(
      "keepScore",
      `
// A row's score of the chunk's key, kept for a key at or before the row's query position.
fn keepScore(row: u32, key: u32, score: f32, start: u32, first: u32) {
  if (key < CHUNK) { scores[row * CHUNK + key] = select(0.0, score, start + key <= first + row); }
}`,
    );
  }
  const row = (r: number) => `ty * ROWS_EACH + ${r}u`;
  const causalTiles = `
var<workgroup> keyTile: array<f32, ${t.block * keySpan}>;  // φ(K), BLOCK features × KEY_SPAN keys
var<workgroup> scores: array<f32, ${t.rows * k.chunk}>;  // masked φ(Q) φ(K)ᵀ, ROWS × CHUNK`;
  const stageKeys = `
    for (var i = lid; i < CHUNK * BLOCK; i += INVOCATIONS) {
      // read along a key's features, store feature-major for the score loop
      keyTile[(i % BLOCK) * KEY_SPAN + i / BLOCK] = keyPhi(kvHead, start + i / BLOCK, f0 + i % BLOCK);
    }`;
  const featureStep = `
      let z = zTile[f];${
    G.map((g) => ` let s${g} = valueTile[f * TILE_V4 + ${column(g)}];`).join("")
  }${J.map((j) => `\n      let phiK${j} = keyTile[f * KEY_SPAN + ${column(j)}];`).join("")}` +
    R.map((r) => `
      let a${r} = queryTile[(${row(r)}) * BLOCK + f];
      den${r} += a${r} * z;${G.map((g) => ` acc${r}_${g} += a${r} * s${g};`).join("")}${
      J.length ? `\n     ${J.map((j) => ` dot${r}_${j} += a${r} * phiK${j};`).join("")}` : ""
    }`).join("");
  const scoresTimesV = `
  // The scores of keys at or before each query position, then their sum with V.${
    R.map((r) =>
      J.map((j) => `\n  keepScore(${row(r)}, ${column(j)}, dot${r}_${j}, start, first);`).join("")
    ).join("")
  }
  workgroupBarrier();
  let keys = first + ROWS - start;  // up to the workgroup's last query position
  for (var k0 = 0u; k0 < keys; k0 += BLOCK) {
    for (var i = lid; i < BLOCK * TILE_V4; i += INVOCATIONS) {
      valueTile[i] = keyValue(kvHead, start + k0 + i / TILE_V4, c0 + i % TILE_V4);
    }
    workgroupBarrier();
    for (var key = 0u; key < BLOCK; key++) {
     ${G.map((g) => ` let v${g} = valueTile[key * TILE_V4 + ${column(g)}];`).join("")}${
    R.map((r) => `
      let w${r} = scores[(${row(r)}) * CHUNK + k0 + key];
      den${r} += w${r};${G.map((g) => ` acc${r}_${g} += w${r} * v${g};`).join("")}`).join("")
  }
    }
    workgroupBarrier();
  }`;
  return `
var<workgroup> queryTile: array<f32, ${t.rows * t.block}>;  // φ(Q), ROWS × BLOCK features
var<workgroup> valueTile: array<vec4<f32>, ${t.block * t.valueTile / 4}>;  // S rows, then V rows
var<workgroup> zTile: array<f32, ${t.block}>;${k.causal ? causalTiles : ""}

@compute @workgroup_size(${t.invocations})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let bh = wg.y;  // batch * HQ + query head
  let kvHead = (bh / HQ) * HKV + (bh % HQ) / GROUP;
  let block = wg.x / VALUE_TILES;
  let c0 = (wg.x % VALUE_TILES) * TILE_V4;  // the workgroup's first vec4 column
  let chunk = FIRST_CHUNK + block / (CHUNK / ROWS);
  let start = chunk * CHUNK;                            // the chunk's first key position
  let first = start + (block % (CHUNK / ROWS)) * ROWS;  // the workgroup's first query position
  let ty = lid / 16u;
  let tx = lid % 16u;
${
    R.map((r) =>
      `  var den${r} = 0.0;${G.map((g) => ` var acc${r}_${g} = vec4<f32>(0.0);`).join("")}${
        J.map((j) => ` var dot${r}_${j} = 0.0;`).join("")
      }`
    ).join("\n")
  }
  for (var f0 = 0u; f0 < M; f0 += BLOCK) {
    for (var i = lid; i < ROWS * BLOCK; i += INVOCATIONS) {
      queryTile[i] = queryPhi(bh, first + i / BLOCK, f0 + i % BLOCK);
    }${k.causal ? stageKeys : ""}
    for (var i = lid; i < BLOCK * TILE_V4; i += INVOCATIONS) {
      valueTile[i] = seenState(kvHead, chunk, f0 + i / TILE_V4, c0 + i % TILE_V4);
    }
    if (lid < BLOCK) { zTile[lid] = seenZ(kvHead, chunk, f0 + lid); }
    workgroupBarrier();
    for (var f = 0u; f < BLOCK; f++) {${featureStep}
    }
    workgroupBarrier();
  }${k.causal ? scoresTimesV : ""}${
    R.map((r) =>
      `\n  writeRow(bh, first + ${row(r)}, c0 + tx, array(${
        G.map((g) => `acc${r}_${g}`).join(", ")
      }), den${r});`
    ).join("")
  }
}`;
}
