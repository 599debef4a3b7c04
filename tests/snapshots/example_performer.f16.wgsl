// ==== module 0 ====
// Weft linear(favor 64, causal): branch 0: linear favor: φ of Q and K rows (64 features)
// 64 features, causal, chunks of 64 positions (64), f16 inputs, float32 sums
enable f16;

@group(0) @binding(0) var<storage, read> qIn: array<vec4<f16>>;
@group(0) @binding(1) var<storage, read> kIn: array<vec4<f16>>;
@group(0) @binding(2) var<storage, read> projection: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> phi: array<f32>;

const HQ = 4u;
const HKV = 4u;
const GROUP = 1u;  // query heads per key/value head
const NQ = 4096u;
const NK = 4096u;
const OFFSET = 0u;  // query row i is key position OFFSET + i
const D4 = 16u;
const DV = 64u;
const DV4 = 16u;
const M = 64u;  // features per row
const CAUSAL = true;
const CHUNK = 64u;  // positions per chunk
const CHUNKS = 64u;
const SEGMENT = 8u;  // chunks per scan segment
const SEGMENTS = 8u;
const TOTAL = 72u;  // the slot of every chunk's sums
const SLOTS = 73u;  // each chunk's sums, each segment's, the total
const STATE = 4160u;  // M * (DV + 1)
const QROWS = 16384u;
const KEY_PHI = 1048576u;  // φ of K rows follow φ of Q rows
const ROOT = 0.3535533905932738;  // favor: x' = x * sqrt(scale)
const NORM = 0.125;  // favor: 1 / sqrt(M)
const O_BASE = 0u;
const LSE_BASE = 0u;

// A chunk's sums, per (batch, key/value head) and slot (chunk c, CHUNKS + segment s, or TOTAL):
// S = Σ φ(K) Vᵀ as M rows of DV, then z = Σ φ(K) as M values.
fn stateAt(kvHead: u32, slot: u32) -> u32 {
  return (kvHead * SLOTS + slot) * STATE;
}

fn linearIndex(wg: vec3<u32>, lid: u32, groupsX: u32) -> u32 {
  return (wg.y * groupsX + wg.x) * 256u + lid;
}

fn inputRow(row: u32, d: u32) -> vec4<f32> {
  if (row < QROWS) { return vec4<f32>(qIn[row * D4 + d]); }
  return vec4<f32>(kIn[(row - QROWS) * D4 + d]);
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = linearIndex(wg, lid, 8192u);  // (row, feature)
  if (i >= 1048576u + KEY_PHI) { return; }
  let row = i / M;
  let f = i % M;
  // exp(W x' - |x'|² / 2) / sqrt(M), x' = x * sqrt(scale)
  var square = 0.0;
  var projected = 0.0;
  for (var d = 0u; d < D4; d++) {
    let x = inputRow(row, d) * ROOT;
    square += dot(x, x);
    projected += dot(projection[f * D4 + d], x);
  }
  phi[i] = exp(projected - 0.5 * square) * NORM;
}


// ==== module 1 ====
// Weft linear(favor 64, causal): branch 0: linear favor: Σ φ(K) Vᵀ and Σ φ(K) per chunk of 64 keys
// 64 features, causal, chunks of 64 positions (64), f16 inputs, float32 sums
// tile: 64 rows x 64 columns, 16 a step, 256 invocations, 8192 bytes of workgroup memory
enable f16;

@group(0) @binding(0) var<storage, read> vIn: array<vec4<f16>>;
@group(0) @binding(1) var<storage, read> phi: array<f32>;
@group(0) @binding(2) var<storage, read_write> state: array<f32>;

const HQ = 4u;
const HKV = 4u;
const GROUP = 1u;  // query heads per key/value head
const NQ = 4096u;
const NK = 4096u;
const OFFSET = 0u;  // query row i is key position OFFSET + i
const D4 = 16u;
const DV = 64u;
const DV4 = 16u;
const M = 64u;  // features per row
const CAUSAL = true;
const CHUNK = 64u;  // positions per chunk
const CHUNKS = 64u;
const SEGMENT = 8u;  // chunks per scan segment
const SEGMENTS = 8u;
const TOTAL = 72u;  // the slot of every chunk's sums
const SLOTS = 73u;  // each chunk's sums, each segment's, the total
const STATE = 4160u;  // M * (DV + 1)
const QROWS = 16384u;
const KEY_PHI = 1048576u;  // φ of K rows follow φ of Q rows
const ROOT = 0.3535533905932738;  // favor: x' = x * sqrt(scale)
const NORM = 0.125;  // favor: 1 / sqrt(M)
const O_BASE = 0u;
const LSE_BASE = 0u;

// A chunk's sums, per (batch, key/value head) and slot (chunk c, CHUNKS + segment s, or TOTAL):
// S = Σ φ(K) Vᵀ as M rows of DV, then z = Σ φ(K) as M values.
fn stateAt(kvHead: u32, slot: u32) -> u32 {
  return (kvHead * SLOTS + slot) * STATE;
}

fn keyPhi(kvHead: u32, key: u32, f: u32) -> f32 {
  if (key >= NK || f >= M) { return 0.0; }
  return phi[KEY_PHI + (kvHead * NK + key) * M + f];
}

fn keyValue(kvHead: u32, key: u32, c4: u32) -> vec4<f32> {
  if (key >= NK || c4 >= DV4) { return vec4<f32>(0.0); }
  return vec4<f32>(vIn[(kvHead * NK + key) * DV4 + c4]);
}

const ROWS = 64u;
const ROWS_EACH = 4u;  // an invocation's rows: ty * ROWS_EACH + r
const BLOCK = 16u;
const TILE_V4 = 16u;  // vec4 columns of V per workgroup
const GROUPS = 1u;  // an invocation's vec4 columns: tx + 16 g
const INVOCATIONS = 256u;
const VALUE_TILES = 1u;
const STATE_TILES = 1u;  // per chunk

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
}

// The chunk's φ(K) (BLOCK keys × ROWS features) and V (BLOCK keys × TILE_V4).
var<workgroup> phiTile: array<f32, 1024>;
var<workgroup> valueTile: array<vec4<f32>, 256>;

@compute @workgroup_size(256)
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
  var z0 = 0.0; var sums0_0 = vec4<f32>(0.0);
  var z1 = 0.0; var sums1_0 = vec4<f32>(0.0);
  var z2 = 0.0; var sums2_0 = vec4<f32>(0.0);
  var z3 = 0.0; var sums3_0 = vec4<f32>(0.0);
  for (var k0 = 0u; k0 < keys; k0 += BLOCK) {
    for (var i = lid; i < BLOCK * ROWS; i += INVOCATIONS) {
      phiTile[i] = keyPhi(kvHead, start + k0 + i / ROWS, f0 + i % ROWS);
    }
    for (var i = lid; i < BLOCK * TILE_V4; i += INVOCATIONS) {
      valueTile[i] = keyValue(kvHead, start + k0 + i / TILE_V4, c0 + i % TILE_V4);
    }
    workgroupBarrier();
    for (var k = 0u; k < BLOCK; k++) {
      let v0 = valueTile[k * TILE_V4 + tx];
      let a0 = phiTile[k * ROWS + ty * ROWS_EACH + 0u];
      z0 += a0; sums0_0 += a0 * v0;
      let a1 = phiTile[k * ROWS + ty * ROWS_EACH + 1u];
      z1 += a1; sums1_0 += a1 * v0;
      let a2 = phiTile[k * ROWS + ty * ROWS_EACH + 2u];
      z2 += a2; sums2_0 += a2 * v0;
      let a3 = phiTile[k * ROWS + ty * ROWS_EACH + 3u];
      z3 += a3; sums3_0 += a3 * v0;
    }
    workgroupBarrier();
  }
  storeSums(kvHead, chunk, f0 + ty * ROWS_EACH + 0u, c0 + tx, array(sums0_0), z0);
  storeSums(kvHead, chunk, f0 + ty * ROWS_EACH + 1u, c0 + tx, array(sums1_0), z1);
  storeSums(kvHead, chunk, f0 + ty * ROWS_EACH + 2u, c0 + tx, array(sums2_0), z2);
  storeSums(kvHead, chunk, f0 + ty * ROWS_EACH + 3u, c0 + tx, array(sums3_0), z3);
}


// ==== module 2 ====
// Weft linear(favor 64, causal): branch 0: linear favor: prefix within 8 segments of 8 chunks
// 64 features, causal, chunks of 64 positions (64), f16 inputs, float32 sums
enable f16;

@group(0) @binding(0) var<storage, read_write> state: array<f32>;

const HQ = 4u;
const HKV = 4u;
const GROUP = 1u;  // query heads per key/value head
const NQ = 4096u;
const NK = 4096u;
const OFFSET = 0u;  // query row i is key position OFFSET + i
const D4 = 16u;
const DV = 64u;
const DV4 = 16u;
const M = 64u;  // features per row
const CAUSAL = true;
const CHUNK = 64u;  // positions per chunk
const CHUNKS = 64u;
const SEGMENT = 8u;  // chunks per scan segment
const SEGMENTS = 8u;
const TOTAL = 72u;  // the slot of every chunk's sums
const SLOTS = 73u;  // each chunk's sums, each segment's, the total
const STATE = 4160u;  // M * (DV + 1)
const QROWS = 16384u;
const KEY_PHI = 1048576u;  // φ of K rows follow φ of Q rows
const ROOT = 0.3535533905932738;  // favor: x' = x * sqrt(scale)
const NORM = 0.125;  // favor: 1 / sqrt(M)
const O_BASE = 0u;
const LSE_BASE = 0u;

// A chunk's sums, per (batch, key/value head) and slot (chunk c, CHUNKS + segment s, or TOTAL):
// S = Σ φ(K) Vᵀ as M rows of DV, then z = Σ φ(K) as M values.
fn stateAt(kvHead: u32, slot: u32) -> u32 {
  return (kvHead * SLOTS + slot) * STATE;
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let e = wg.x * 64u + lid;
  if (e >= STATE) { return; }
  let kvHead = wg.y / SEGMENTS;
  let first = (wg.y % SEGMENTS) * SEGMENT;  // the first slot scanned
  let count = min(SEGMENT, CHUNKS - first);
  var running = 0.0;
  for (var step = 0u; step < count; step++) {
    let at = stateAt(kvHead, first + step) + e;
    let sums = state[at];
    state[at] = running;
    running += sums;
  }
  state[stateAt(kvHead, CHUNKS + wg.y % SEGMENTS) + e] = running;
}


// ==== module 3 ====
// Weft linear(favor 64, causal): branch 0: linear favor: prefix over the 8 segments
// 64 features, causal, chunks of 64 positions (64), f16 inputs, float32 sums
enable f16;

@group(0) @binding(0) var<storage, read_write> state: array<f32>;

const HQ = 4u;
const HKV = 4u;
const GROUP = 1u;  // query heads per key/value head
const NQ = 4096u;
const NK = 4096u;
const OFFSET = 0u;  // query row i is key position OFFSET + i
const D4 = 16u;
const DV = 64u;
const DV4 = 16u;
const M = 64u;  // features per row
const CAUSAL = true;
const CHUNK = 64u;  // positions per chunk
const CHUNKS = 64u;
const SEGMENT = 8u;  // chunks per scan segment
const SEGMENTS = 8u;
const TOTAL = 72u;  // the slot of every chunk's sums
const SLOTS = 73u;  // each chunk's sums, each segment's, the total
const STATE = 4160u;  // M * (DV + 1)
const QROWS = 16384u;
const KEY_PHI = 1048576u;  // φ of K rows follow φ of Q rows
const ROOT = 0.3535533905932738;  // favor: x' = x * sqrt(scale)
const NORM = 0.125;  // favor: 1 / sqrt(M)
const O_BASE = 0u;
const LSE_BASE = 0u;

// A chunk's sums, per (batch, key/value head) and slot (chunk c, CHUNKS + segment s, or TOTAL):
// S = Σ φ(K) Vᵀ as M rows of DV, then z = Σ φ(K) as M values.
fn stateAt(kvHead: u32, slot: u32) -> u32 {
  return (kvHead * SLOTS + slot) * STATE;
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let e = wg.x * 64u + lid;
  if (e >= STATE) { return; }
  let kvHead = wg.y;
  let first = CHUNKS;  // the first slot scanned
  let count = SEGMENTS;
  var running = 0.0;
  for (var step = 0u; step < count; step++) {
    let at = stateAt(kvHead, first + step) + e;
    let sums = state[at];
    state[at] = running;
    running += sums;
  }
  state[stateAt(kvHead, TOTAL) + e] = running;
}


// ==== module 4 ====
// Weft linear(favor 64, causal): branch 0: linear favor: O and LSE, 64 query positions a workgroup
// 64 features, causal, chunks of 64 positions (64), f16 inputs, float32 sums
// tile: 64 rows x 64 columns, 16 a step, 256 invocations, 28736 bytes of workgroup memory
enable f16;

@group(0) @binding(0) var<storage, read> vIn: array<vec4<f16>>;
@group(0) @binding(1) var<storage, read> phi: array<f32>;
@group(0) @binding(2) var<storage, read> state: array<f32>;
@group(0) @binding(3) var<storage, read_write> oRows: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> lse: array<f32>;

const HQ = 4u;
const HKV = 4u;
const GROUP = 1u;  // query heads per key/value head
const NQ = 4096u;
const NK = 4096u;
const OFFSET = 0u;  // query row i is key position OFFSET + i
const D4 = 16u;
const DV = 64u;
const DV4 = 16u;
const M = 64u;  // features per row
const CAUSAL = true;
const CHUNK = 64u;  // positions per chunk
const CHUNKS = 64u;
const SEGMENT = 8u;  // chunks per scan segment
const SEGMENTS = 8u;
const TOTAL = 72u;  // the slot of every chunk's sums
const SLOTS = 73u;  // each chunk's sums, each segment's, the total
const STATE = 4160u;  // M * (DV + 1)
const QROWS = 16384u;
const KEY_PHI = 1048576u;  // φ of K rows follow φ of Q rows
const ROOT = 0.3535533905932738;  // favor: x' = x * sqrt(scale)
const NORM = 0.125;  // favor: 1 / sqrt(M)
const O_BASE = 0u;
const LSE_BASE = 0u;

// A chunk's sums, per (batch, key/value head) and slot (chunk c, CHUNKS + segment s, or TOTAL):
// S = Σ φ(K) Vᵀ as M rows of DV, then z = Σ φ(K) as M values.
fn stateAt(kvHead: u32, slot: u32) -> u32 {
  return (kvHead * SLOTS + slot) * STATE;
}

fn keyPhi(kvHead: u32, key: u32, f: u32) -> f32 {
  if (key >= NK || f >= M) { return 0.0; }
  return phi[KEY_PHI + (kvHead * NK + key) * M + f];
}

fn keyValue(kvHead: u32, key: u32, c4: u32) -> vec4<f32> {
  if (key >= NK || c4 >= DV4) { return vec4<f32>(0.0); }
  return vec4<f32>(vIn[(kvHead * NK + key) * DV4 + c4]);
}

// φ of the row of query head bh at key position p.
fn queryPhi(bh: u32, p: u32, f: u32) -> f32 {
  if (p < OFFSET || p >= OFFSET + NQ || f >= M) { return 0.0; }
  return phi[(bh * NQ + p - OFFSET) * M + f];
}

fn seenSums(kvHead: u32, chunk: u32, e: u32) -> f32 {
  if (!CAUSAL) { return state[stateAt(kvHead, TOTAL) + e]; }
  return state[stateAt(kvHead, chunk) + e] + state[stateAt(kvHead, CHUNKS + chunk / SEGMENT) + e];
}

fn seenVec4(kvHead: u32, chunk: u32, e: u32) -> vec4<f32> {
  return vec4<f32>(seenSums(kvHead, chunk, e), seenSums(kvHead, chunk, e + 1u),
                   seenSums(kvHead, chunk, e + 2u), seenSums(kvHead, chunk, e + 3u));
}

const ROWS = 64u;
const ROWS_EACH = 4u;  // an invocation's rows: ty * ROWS_EACH + r
const BLOCK = 16u;
const TILE_V4 = 16u;  // vec4 columns of V per workgroup
const GROUPS = 1u;  // an invocation's vec4 columns: tx + 16 g
const INVOCATIONS = 256u;
const VALUE_TILES = 1u;
const FIRST_CHUNK = 0u;  // the first chunk with a query
const KEY_SPAN = 64u;  // keys tx + 16 j, past CHUNK when it is 8

// Row f, vec4 column c4 of the S a query of the chunk sees (0 past M or Dv), and z[f].
fn seenState(kvHead: u32, chunk: u32, f: u32, c4: u32) -> vec4<f32> {
  if (f >= M || c4 >= DV4) { return vec4<f32>(0.0); }
  return seenVec4(kvHead, chunk, f * DV + 4u * c4);
}

fn seenZ(kvHead: u32, chunk: u32, f: u32) -> f32 {
  if (f >= M) { return 0.0; }
  return seenSums(kvHead, chunk, M * DV + f);
}

// Query position p's O at vec4 columns c4 + 16 g, and its LSE from the first column.
fn writeRow(bh: u32, p: u32, c4: u32, acc: array<vec4<f32>, GROUPS>, den: f32) {
  if (p < OFFSET || p >= OFFSET + NQ) { return; }
  let row = bh * NQ + p - OFFSET;
  for (var g = 0u; g < GROUPS; g++) {
    if (c4 + 16u * g >= DV4) { break; }
    oRows[O_BASE + row * DV4 + c4 + 16u * g] = acc[g] / den;
  }
  if (c4 == 0u) { lse[LSE_BASE + row] = log(den); }
}

// A row's score of the chunk's key, kept for a key at or before the row's query position.
fn keepScore(row: u32, key: u32, score: f32, start: u32, first: u32) {
  if (key < CHUNK) { scores[row * CHUNK + key] = select(0.0, score, start + key <= first + row); }
}

var<workgroup> queryTile: array<f32, 1024>;  // φ(Q), ROWS × BLOCK features
var<workgroup> valueTile: array<vec4<f32>, 256>;  // S rows, then V rows
var<workgroup> zTile: array<f32, 16>;
var<workgroup> keyTile: array<f32, 1024>;  // φ(K), BLOCK features × KEY_SPAN keys
var<workgroup> scores: array<f32, 4096>;  // masked φ(Q) φ(K)ᵀ, ROWS × CHUNK

@compute @workgroup_size(256)
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
  var den0 = 0.0; var acc0_0 = vec4<f32>(0.0); var dot0_0 = 0.0; var dot0_1 = 0.0; var dot0_2 = 0.0; var dot0_3 = 0.0;
  var den1 = 0.0; var acc1_0 = vec4<f32>(0.0); var dot1_0 = 0.0; var dot1_1 = 0.0; var dot1_2 = 0.0; var dot1_3 = 0.0;
  var den2 = 0.0; var acc2_0 = vec4<f32>(0.0); var dot2_0 = 0.0; var dot2_1 = 0.0; var dot2_2 = 0.0; var dot2_3 = 0.0;
  var den3 = 0.0; var acc3_0 = vec4<f32>(0.0); var dot3_0 = 0.0; var dot3_1 = 0.0; var dot3_2 = 0.0; var dot3_3 = 0.0;
  for (var f0 = 0u; f0 < M; f0 += BLOCK) {
    for (var i = lid; i < ROWS * BLOCK; i += INVOCATIONS) {
      queryTile[i] = queryPhi(bh, first + i / BLOCK, f0 + i % BLOCK);
    }
    for (var i = lid; i < CHUNK * BLOCK; i += INVOCATIONS) {
      // read along a key's features, store feature-major for the score loop
      keyTile[(i % BLOCK) * KEY_SPAN + i / BLOCK] = keyPhi(kvHead, start + i / BLOCK, f0 + i % BLOCK);
    }
    for (var i = lid; i < BLOCK * TILE_V4; i += INVOCATIONS) {
      valueTile[i] = seenState(kvHead, chunk, f0 + i / TILE_V4, c0 + i % TILE_V4);
    }
    if (lid < BLOCK) { zTile[lid] = seenZ(kvHead, chunk, f0 + lid); }
    workgroupBarrier();
    for (var f = 0u; f < BLOCK; f++) {
      let z = zTile[f]; let s0 = valueTile[f * TILE_V4 + tx];
      let phiK0 = keyTile[f * KEY_SPAN + tx];
      let phiK1 = keyTile[f * KEY_SPAN + 16u + tx];
      let phiK2 = keyTile[f * KEY_SPAN + 32u + tx];
      let phiK3 = keyTile[f * KEY_SPAN + 48u + tx];
      let a0 = queryTile[(ty * ROWS_EACH + 0u) * BLOCK + f];
      den0 += a0 * z; acc0_0 += a0 * s0;
      dot0_0 += a0 * phiK0; dot0_1 += a0 * phiK1; dot0_2 += a0 * phiK2; dot0_3 += a0 * phiK3;
      let a1 = queryTile[(ty * ROWS_EACH + 1u) * BLOCK + f];
      den1 += a1 * z; acc1_0 += a1 * s0;
      dot1_0 += a1 * phiK0; dot1_1 += a1 * phiK1; dot1_2 += a1 * phiK2; dot1_3 += a1 * phiK3;
      let a2 = queryTile[(ty * ROWS_EACH + 2u) * BLOCK + f];
      den2 += a2 * z; acc2_0 += a2 * s0;
      dot2_0 += a2 * phiK0; dot2_1 += a2 * phiK1; dot2_2 += a2 * phiK2; dot2_3 += a2 * phiK3;
      let a3 = queryTile[(ty * ROWS_EACH + 3u) * BLOCK + f];
      den3 += a3 * z; acc3_0 += a3 * s0;
      dot3_0 += a3 * phiK0; dot3_1 += a3 * phiK1; dot3_2 += a3 * phiK2; dot3_3 += a3 * phiK3;
    }
    workgroupBarrier();
  }
  // The scores of keys at or before each query position, then their sum with V.
  keepScore(ty * ROWS_EACH + 0u, tx, dot0_0, start, first);
  keepScore(ty * ROWS_EACH + 0u, 16u + tx, dot0_1, start, first);
  keepScore(ty * ROWS_EACH + 0u, 32u + tx, dot0_2, start, first);
  keepScore(ty * ROWS_EACH + 0u, 48u + tx, dot0_3, start, first);
  keepScore(ty * ROWS_EACH + 1u, tx, dot1_0, start, first);
  keepScore(ty * ROWS_EACH + 1u, 16u + tx, dot1_1, start, first);
  keepScore(ty * ROWS_EACH + 1u, 32u + tx, dot1_2, start, first);
  keepScore(ty * ROWS_EACH + 1u, 48u + tx, dot1_3, start, first);
  keepScore(ty * ROWS_EACH + 2u, tx, dot2_0, start, first);
  keepScore(ty * ROWS_EACH + 2u, 16u + tx, dot2_1, start, first);
  keepScore(ty * ROWS_EACH + 2u, 32u + tx, dot2_2, start, first);
  keepScore(ty * ROWS_EACH + 2u, 48u + tx, dot2_3, start, first);
  keepScore(ty * ROWS_EACH + 3u, tx, dot3_0, start, first);
  keepScore(ty * ROWS_EACH + 3u, 16u + tx, dot3_1, start, first);
  keepScore(ty * ROWS_EACH + 3u, 32u + tx, dot3_2, start, first);
  keepScore(ty * ROWS_EACH + 3u, 48u + tx, dot3_3, start, first);
  workgroupBarrier();
  let keys = first + ROWS - start;  // up to the workgroup's last query position
  for (var k0 = 0u; k0 < keys; k0 += BLOCK) {
    for (var i = lid; i < BLOCK * TILE_V4; i += INVOCATIONS) {
      valueTile[i] = keyValue(kvHead, start + k0 + i / TILE_V4, c0 + i % TILE_V4);
    }
    workgroupBarrier();
    for (var key = 0u; key < BLOCK; key++) {
      let v0 = valueTile[key * TILE_V4 + tx];
      let w0 = scores[(ty * ROWS_EACH + 0u) * CHUNK + k0 + key];
      den0 += w0; acc0_0 += w0 * v0;
      let w1 = scores[(ty * ROWS_EACH + 1u) * CHUNK + k0 + key];
      den1 += w1; acc1_0 += w1 * v0;
      let w2 = scores[(ty * ROWS_EACH + 2u) * CHUNK + k0 + key];
      den2 += w2; acc2_0 += w2 * v0;
      let w3 = scores[(ty * ROWS_EACH + 3u) * CHUNK + k0 + key];
      den3 += w3; acc3_0 += w3 * v0;
    }
    workgroupBarrier();
  }
  writeRow(bh, first + ty * ROWS_EACH + 0u, c0 + tx, array(acc0_0), den0);
  writeRow(bh, first + ty * ROWS_EACH + 1u, c0 + tx, array(acc1_0), den1);
  writeRow(bh, first + ty * ROWS_EACH + 2u, c0 + tx, array(acc2_0), den2);
  writeRow(bh, first + ty * ROWS_EACH + 3u, c0 + tx, array(acc3_0), den3);
}


// ==== module 5 ====
// Weft cast: O float32 -> float16
enable f16;

@group(0) @binding(0) var<storage, read> oIn: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> oOut: array<vec4<f16>>;

fn linearIndex(wg: vec3<u32>, lid: u32, groupsX: u32) -> u32 {
  return (wg.y * groupsX + wg.x) * 256u + lid;
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = linearIndex(wg, lid, 1024u);
  if (i >= 262144u) { return; }
  oOut[i] = vec4<f16>(oIn[i]);
}

