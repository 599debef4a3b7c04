// ==== module 0 ====
// Weft lowRank pre-pass: 64 landmarks of 64 rows each (N=4096), means of K and V per key/value head

@group(0) @binding(0) var<storage, read> kIn: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> vIn: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> kOut: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> vOut: array<vec4<f32>>;

fn linearIndex(wg: vec3<u32>, lid: u32, groupsX: u32) -> u32 {
  return (wg.y * groupsX + wg.x) * 256u + lid;
}

const N = 4096u;
const D4 = 16u;
const SEGMENT = 64u;
const COUNT = 64u;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = linearIndex(wg, lid, 16u); // (head, landmark, vec4) of the output
  if (i >= 4096u) { return; }
  let d = i % D4;
  let j = (i / D4) % COUNT;
  let head = i / (D4 * COUNT);
  let first = j * SEGMENT;
  let end = min(N, first + SEGMENT);
  var k = vec4<f32>(0.0);
  var v = vec4<f32>(0.0);
  for (var row = first; row < end; row++) {
    let src = (head * N + row) * D4 + d;
    k += vec4<f32>(kIn[src]);
    v += vec4<f32>(vIn[src]);
  }
  let rows = f32(end - first);
  kOut[i] = vec4<f32>(k / rows);
  vOut[i] = vec4<f32>(v / rows);
}


// ==== module 1 ====
// Weft attention kernel: intersect(lowRank(64), causal), branch 0 component 0
// allowed: lowRank(64) & causal
// layouts: q identity, k landmarks(64 of lowRank(64))
// tile 64x32, workgroup 256, N=4096, D=64, Hq=4, Hkv=4, float32

@group(0) @binding(0) var<storage, read> qIn: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> kIn: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> vIn: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> schedule: array<u32>;
@group(0) @binding(4) var<storage, read> aux: array<u32>;
@group(0) @binding(5) var<storage, read_write> oOut: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> lseOut: array<f32>;

const N = 4096u;
const KV_ROWS = 64u;     // rows per key/value head in the bound K and V (landmarks)
const D4 = 16u;          // head dim / 4: rows are read as vec4
const HQ = 4u;
const HKV = 4u;
const GROUP = 1u; // query heads per key/value head
const TILE_Q = 64u;
const TILE_K = 32u;
const THREADS = 256u;
const ROWS = 2u;          // query rows per invocation
const COLS = 8u;          // invocations sharing those rows
const KEYS = 4u;          // keys per invocation per tile: col, col + COLS, ...
const DIMS4 = 2u;         // output vec4s per row per invocation
const QK_STRIDE = 17u;     // padded row stride of the Q and K tiles: spreads banks
const P_STRIDE4 = 9u;    // P rows are vec4s of 4 keys, padded by one vec4
const SCORE_SCALE = 0.18033688011112042; // scale * log2(e): scores live in the exp2 domain
const NO_SCORE = -1.0e30;   // below any real score; never reaches exp2 unguarded
const LN2 = 0.6931471805599453;

// K for QKᵀ, then P for P·V: K is dead once the scores are in registers, and a barrier
// separates the two, so they share memory (less workgroup memory, more workgroups per SM).
var<workgroup> kpTile: array<vec4<f32>, 576>;
var<workgroup> vTile: array<vec4<f32>, 512>;
var<workgroup> rowShare: array<f32, 512>; // per-column row maxima, then row sums
var<workgroup> kPosition: array<i32, 32>;

// WGSL has no infinity literal; LSE of an empty row is -inf (DESIGN §1). The bits are a
// `let`: Tint (Dawn) refuses a constant expression whose value is infinite.
fn negativeInfinity() -> f32 {
  let bits = 0xff800000u;
  return bitcast<f32>(bits);
}

fn identityPosition(i: u32) -> i32 {
  return select(-1, i32(i), i < 4096u);
}

// Keys are the 64 pooled landmarks of lowRank(64), not positions.
fn landmarkIndex(i: u32) -> i32 {
  return select(-1, i32(i), i < 64u);
}

fn allowed(q: i32, k: i32) -> bool {
  let own = true && min(4096, (k + 1) * 64) - 1 <= q;
  return own;
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let d4 = D4;
  let tileK = TILE_K;
  let qTileIndex = wg.x;
  let bh = wg.y;                      // batch * HQ + query head
  let kvHead = (bh / HQ) * HKV + (bh % HQ) / GROUP;
  let kvBase = kvHead * KV_ROWS * D4;
  // Invocation = (row group, column): COLS consecutive invocations share ROWS query rows; for
  // scores a column owns keys col, col + COLS, ...; for O it owns vec4 dims col, col + COLS, ...
  let col = lid % COLS;
  let firstRow = (lid / COLS) * ROWS;

  // This query tile's runs of consecutive key tiles of one kind, walked one key tile per step.
  // The slot holds where this component's row pointers and runs start (schedule_buffer.ts).
  let slot = 2u + 2u * 0u;
  let rowsAt = schedule[slot];
  let runsAt = schedule[slot + 1u];
  var run = schedule[rowsAt + qTileIndex];
  let lastRun = schedule[rowsAt + qTileIndex + 1u];
  var keyTile = 0u;
  var runEnd = 0u;
  var runPartial = false;
  // The next key tile's K, V and positions, in registers while the current tile is computed;
  // the first one's loads are issued before the query tile is staged.
  var nextK0 = vec4<f32>(0.0);
  var nextV0 = vec4<f32>(0.0);
  var nextPos0 = -1;
  var nextK1 = vec4<f32>(0.0);
  var nextV1 = vec4<f32>(0.0);
  var nextPos1 = -1;
  if (keyTile == runEnd && run != lastRun) {
    let runHead = schedule[runsAt + 2u * run]; // kvStart << 1 | partial
    keyTile = runHead >> 1u;
    runPartial = (runHead & 1u) == 1u;
    runEnd = keyTile + schedule[runsAt + 2u * run + 1u];
    run++;
  }
  var hasNext = false;
  var nextStart = 0u;
  var nextPartial = false;
  hasNext = keyTile != runEnd;
  nextStart = keyTile * TILE_K;
  nextPartial = runPartial;
  if (hasNext) {
    {
      let i = lid + 0u;
      let k = landmarkIndex(nextStart + i / D4);
      let src = kvBase + u32(max(k, 0)) * D4 + i % D4;
      nextK0 = select(vec4<f32>(0.0), kIn[src], k >= 0);
      nextV0 = select(vec4<f32>(0.0), vIn[src], k >= 0);
      nextPos0 = k;
    }
    {
      let i = lid + 256u;
      let k = landmarkIndex(nextStart + i / D4);
      let src = kvBase + u32(max(k, 0)) * D4 + i % D4;
      nextK1 = select(vec4<f32>(0.0), kIn[src], k >= 0);
      nextV1 = select(vec4<f32>(0.0), vIn[src], k >= 0);
      nextPos1 = k;
    }
  }
  let q0 = identityPosition(qTileIndex * TILE_Q + firstRow + 0u);
  let q1 = identityPosition(qTileIndex * TILE_Q + firstRow + 1u);
  let qAt0 = (bh * N + u32(max(q0, 0))) * D4; // its row of Q
  let qAt1 = (bh * N + u32(max(q1, 0))) * D4; // its row of Q
  var rowMax0 = NO_SCORE;
  var rowMax1 = NO_SCORE;
  // Row sums are this invocation's share; the shares are added over columns at the end.
  var rowSum0 = 0.0;
  var rowSum1 = 0.0;
  var acc0_0 = vec4<f32>(0.0);
  var acc0_1 = vec4<f32>(0.0);
  var acc1_0 = vec4<f32>(0.0);
  var acc1_1 = vec4<f32>(0.0);

  loop {
    if (!hasNext) { break; }
    let isPartial = nextPartial;
    workgroupBarrier();               // every read of the previous tile is done
    {
      let i = lid + 0u;
      let j = i / D4;
      if (i % D4 == 0u) { kPosition[j] = nextPos0; }
      kpTile[j * QK_STRIDE + i % D4] = nextK0;
      vTile[i] = nextV0;
    }
    {
      let i = lid + 256u;
      let j = i / D4;
      if (i % D4 == 0u) { kPosition[j] = nextPos1; }
      kpTile[j * QK_STRIDE + i % D4] = nextK1;
      vTile[i] = nextV1;
    }
    workgroupBarrier();
    keyTile++;
    if (keyTile == runEnd && run != lastRun) {
      let runHead = schedule[runsAt + 2u * run]; // kvStart << 1 | partial
      keyTile = runHead >> 1u;
      runPartial = (runHead & 1u) == 1u;
      runEnd = keyTile + schedule[runsAt + 2u * run + 1u];
      run++;
    }
    hasNext = keyTile != runEnd;
    nextStart = keyTile * TILE_K;
    nextPartial = runPartial;
    if (hasNext) {
      {
        let i = lid + 0u;
        let k = landmarkIndex(nextStart + i / D4);
        let src = kvBase + u32(max(k, 0)) * D4 + i % D4;
        nextK0 = select(vec4<f32>(0.0), kIn[src], k >= 0);
        nextV0 = select(vec4<f32>(0.0), vIn[src], k >= 0);
        nextPos0 = k;
      }
      {
        let i = lid + 256u;
        let k = landmarkIndex(nextStart + i / D4);
        let src = kvBase + u32(max(k, 0)) * D4 + i % D4;
        nextK1 = select(vec4<f32>(0.0), kIn[src], k >= 0);
        nextV1 = select(vec4<f32>(0.0), vIn[src], k >= 0);
        nextPos1 = k;
      }
    }


    // Mask first (PARTIAL tiles only): an invocation none of whose pairs is allowed skips its
    // dot products, and a warp whose rows all miss this tile (a band's corner) skips the work.
    let k0 = kPosition[col + 0u];
    let k1 = kPosition[col + 8u];
    let k2 = kPosition[col + 16u];
    let k3 = kPosition[col + 24u];
    let m0_0 = q0 >= 0 && k0 >= 0 && (!isPartial || allowed(q0, k0));
    let m0_1 = q0 >= 0 && k1 >= 0 && (!isPartial || allowed(q0, k1));
    let m0_2 = q0 >= 0 && k2 >= 0 && (!isPartial || allowed(q0, k2));
    let m0_3 = q0 >= 0 && k3 >= 0 && (!isPartial || allowed(q0, k3));
    let m1_0 = q1 >= 0 && k0 >= 0 && (!isPartial || allowed(q1, k0));
    let m1_1 = q1 >= 0 && k1 >= 0 && (!isPartial || allowed(q1, k1));
    let m1_2 = q1 >= 0 && k2 >= 0 && (!isPartial || allowed(q1, k2));
    let m1_3 = q1 >= 0 && k3 >= 0 && (!isPartial || allowed(q1, k3));
    let anyAllowed = m0_0 || m0_1 || m0_2 || m0_3 || m1_0 || m1_1 || m1_2 || m1_3;
    // Scores: a ROWS x KEYS register tile, vec4 dot products over the head dim.
    var s0_0 = 0.0;
    var s0_1 = 0.0;
    var s0_2 = 0.0;
    var s0_3 = 0.0;
    var s1_0 = 0.0;
    var s1_1 = 0.0;
    var s1_2 = 0.0;
    var s1_3 = 0.0;
    if (anyAllowed) {
      for (var d = 0u; d < d4; d++) {
        let qv0 = qIn[qAt0 + d] * SCORE_SCALE;
        let qv1 = qIn[qAt1 + d] * SCORE_SCALE;
        let kv0 = kpTile[(col + 0u) * QK_STRIDE + d];
        let kv1 = kpTile[(col + 8u) * QK_STRIDE + d];
        let kv2 = kpTile[(col + 16u) * QK_STRIDE + d];
        let kv3 = kpTile[(col + 24u) * QK_STRIDE + d];
        s0_0 += dot(qv0, kv0);
        s0_1 += dot(qv0, kv1);
        s0_2 += dot(qv0, kv2);
        s0_3 += dot(qv0, kv3);
        s1_0 += dot(qv1, kv0);
        s1_1 += dot(qv1, kv1);
        s1_2 += dot(qv1, kv2);
        s1_3 += dot(qv1, kv3);
      }
    }
    // This column's share of each row's max.
    s0_0 = select(NO_SCORE, s0_0, m0_0);
    s0_1 = select(NO_SCORE, s0_1, m0_1);
    s0_2 = select(NO_SCORE, s0_2, m0_2);
    s0_3 = select(NO_SCORE, s0_3, m0_3);
    s1_0 = select(NO_SCORE, s1_0, m1_0);
    s1_1 = select(NO_SCORE, s1_1, m1_1);
    s1_2 = select(NO_SCORE, s1_2, m1_2);
    s1_3 = select(NO_SCORE, s1_3, m1_3);
    rowShare[(firstRow + 0u) * COLS + col] = max(s0_0, max(s0_1, max(s0_2, s0_3)));
    rowShare[(firstRow + 1u) * COLS + col] = max(s1_0, max(s1_1, max(s1_2, s1_3)));
    workgroupBarrier();
    // Online softmax: rescale by the new row max, write P for the P·V product.
    var rowsLive = false;             // does any of this invocation's rows see this tile?
    {
      var tileMax = NO_SCORE;
      for (var c = 0u; c < COLS; c++) { tileMax = max(tileMax, rowShare[(firstRow + 0u) * COLS + c]); }
      let newMax = max(rowMax0, tileMax);
      let rescale = exp2(rowMax0 - newMax); // 1 while the row has seen nothing
      rowMax0 = newMax;
      rowsLive = rowsLive || tileMax > NO_SCORE;
      let p0 = select(0.0, exp2(s0_0 - newMax), s0_0 > NO_SCORE);
      let p1 = select(0.0, exp2(s0_1 - newMax), s0_1 > NO_SCORE);
      let p2 = select(0.0, exp2(s0_2 - newMax), s0_2 > NO_SCORE);
      let p3 = select(0.0, exp2(s0_3 - newMax), s0_3 > NO_SCORE);
      rowSum0 = rowSum0 * rescale + p0 + p1 + p2 + p3;
      acc0_0 *= rescale;
      acc0_1 *= rescale;
      kpTile[(firstRow + 0u) * P_STRIDE4 + (col + 0u) / 4u][(col + 0u) % 4u] = p0;
      kpTile[(firstRow + 0u) * P_STRIDE4 + (col + 8u) / 4u][(col + 8u) % 4u] = p1;
      kpTile[(firstRow + 0u) * P_STRIDE4 + (col + 16u) / 4u][(col + 16u) % 4u] = p2;
      kpTile[(firstRow + 0u) * P_STRIDE4 + (col + 24u) / 4u][(col + 24u) % 4u] = p3;
    }
    {
      var tileMax = NO_SCORE;
      for (var c = 0u; c < COLS; c++) { tileMax = max(tileMax, rowShare[(firstRow + 1u) * COLS + c]); }
      let newMax = max(rowMax1, tileMax);
      let rescale = exp2(rowMax1 - newMax); // 1 while the row has seen nothing
      rowMax1 = newMax;
      rowsLive = rowsLive || tileMax > NO_SCORE;
      let p0 = select(0.0, exp2(s1_0 - newMax), s1_0 > NO_SCORE);
      let p1 = select(0.0, exp2(s1_1 - newMax), s1_1 > NO_SCORE);
      let p2 = select(0.0, exp2(s1_2 - newMax), s1_2 > NO_SCORE);
      let p3 = select(0.0, exp2(s1_3 - newMax), s1_3 > NO_SCORE);
      rowSum1 = rowSum1 * rescale + p0 + p1 + p2 + p3;
      acc1_0 *= rescale;
      acc1_1 *= rescale;
      kpTile[(firstRow + 1u) * P_STRIDE4 + (col + 0u) / 4u][(col + 0u) % 4u] = p0;
      kpTile[(firstRow + 1u) * P_STRIDE4 + (col + 8u) / 4u][(col + 8u) % 4u] = p1;
      kpTile[(firstRow + 1u) * P_STRIDE4 + (col + 16u) / 4u][(col + 16u) % 4u] = p2;
      kpTile[(firstRow + 1u) * P_STRIDE4 + (col + 24u) / 4u][(col + 24u) % 4u] = p3;
    }
    workgroupBarrier();
    // O += P V: a ROWS x DIMS4 register tile of vec4s (rows with no allowed key add nothing).
    if (rowsLive) {
      for (var j4 = 0u; j4 < tileK / 4u; j4++) {
        let p0 = kpTile[(firstRow + 0u) * P_STRIDE4 + j4];
        let p1 = kpTile[(firstRow + 1u) * P_STRIDE4 + j4];
        let v0_0 = vTile[(j4 * 4u + 0u) * D4 + col + 0u];
        let v0_1 = vTile[(j4 * 4u + 0u) * D4 + col + 8u];
        let v1_0 = vTile[(j4 * 4u + 1u) * D4 + col + 0u];
        let v1_1 = vTile[(j4 * 4u + 1u) * D4 + col + 8u];
        let v2_0 = vTile[(j4 * 4u + 2u) * D4 + col + 0u];
        let v2_1 = vTile[(j4 * 4u + 2u) * D4 + col + 8u];
        let v3_0 = vTile[(j4 * 4u + 3u) * D4 + col + 0u];
        let v3_1 = vTile[(j4 * 4u + 3u) * D4 + col + 8u];
        acc0_0 += p0.x * v0_0;
        acc0_1 += p0.x * v0_1;
        acc1_0 += p1.x * v0_0;
        acc1_1 += p1.x * v0_1;
        acc0_0 += p0.y * v1_0;
        acc0_1 += p0.y * v1_1;
        acc1_0 += p1.y * v1_0;
        acc1_1 += p1.y * v1_1;
        acc0_0 += p0.z * v2_0;
        acc0_1 += p0.z * v2_1;
        acc1_0 += p1.z * v2_0;
        acc1_1 += p1.z * v2_1;
        acc0_0 += p0.w * v3_0;
        acc0_1 += p0.w * v3_1;
        acc1_0 += p1.w * v3_0;
        acc1_1 += p1.w * v3_1;
      }
    }
  }

  // Each row's sum is spread over its COLS invocations: add the shares.
  workgroupBarrier();
  rowShare[(firstRow + 0u) * COLS + col] = rowSum0;
  rowShare[(firstRow + 1u) * COLS + col] = rowSum1;

  workgroupBarrier();
  if (q0 >= 0) {
    var total = 0.0;
    for (var c = 0u; c < COLS; c++) { total += rowShare[(firstRow + 0u) * COLS + c]; }
    let row = 0u + bh * N + u32(q0);
    let outBase = 0u + (bh * N + u32(q0)) * D4;
    if (total == 0.0) {               // nothing allowed: O = 0, LSE = -inf
      if (col == 0u) { lseOut[row] = negativeInfinity(); }
      oOut[outBase + col + 0u] = vec4<f32>(0.0);
      oOut[outBase + col + 8u] = vec4<f32>(0.0);
    } else {
      if (col == 0u) { lseOut[row] = (rowMax0 + log2(total)) * LN2; }
      oOut[outBase + col + 0u] = acc0_0 / total;
      oOut[outBase + col + 8u] = acc0_1 / total;
    }
  }
  if (q1 >= 0) {
    var total = 0.0;
    for (var c = 0u; c < COLS; c++) { total += rowShare[(firstRow + 1u) * COLS + c]; }
    let row = 0u + bh * N + u32(q1);
    let outBase = 0u + (bh * N + u32(q1)) * D4;
    if (total == 0.0) {               // nothing allowed: O = 0, LSE = -inf
      if (col == 0u) { lseOut[row] = negativeInfinity(); }
      oOut[outBase + col + 0u] = vec4<f32>(0.0);
      oOut[outBase + col + 8u] = vec4<f32>(0.0);
    } else {
      if (col == 0u) { lseOut[row] = (rowMax1 + log2(total)) * LN2; }
      oOut[outBase + col + 0u] = acc1_0 / total;
      oOut[outBase + col + 8u] = acc1_1 / total;
    }
  }
}


// ==== module 2 ====
// Weft select pre-pass: means of K over 64 blocks of 64 rows (N=4096)

@group(0) @binding(0) var<storage, read> kIn: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> means: array<vec4<f32>>;

fn linearIndex(wg: vec3<u32>, lid: u32, groupsX: u32) -> u32 {
  return (wg.y * groupsX + wg.x) * 256u + lid;
}

const N = 4096u;
const D4 = 16u;
const BLOCK = 64u;
const COUNT = 64u;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = linearIndex(wg, lid, 16u); // (head, vec4, block) of the means
  if (i >= 4096u) { return; }
  let j = i % COUNT;
  let d = (i / COUNT) % D4;
  let head = i / (D4 * COUNT);
  let first = j * BLOCK;
  let end = min(N, first + BLOCK);
  var sum = vec4<f32>(0.0);
  for (var row = first; row < end; row++) { sum += vec4<f32>(kIn[(head * N + row) * D4 + d]); }
  means[i] = sum / f32(end - first);
}


// ==== module 3 ====
// Weft select: 16 of 64 blocks of 64 rows per position (N=4096, 1 initial, 2 local, causal), importance summed over 1 query heads; tiles of 2 positions, 1 block slots per invocation, logits held in registers; workgroup 256

@group(0) @binding(0) var<storage, read> qIn: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> means: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> kept: array<u32>;

/** How many blocks compete for position pos: 0 .. the result - 1, those whose last row is <= pos. */
fn competingBlocks(pos: u32) -> u32 {
  return select((pos + 1u) / 64u, 64u, pos + 1u >= 4096u);
}

fn add(a: f32, b: f32) -> f32 { return a + b; }

const N = 4096u;
const D4 = 16u;
const GROUP = 1u;
const COUNT = 64u;
const BLOCKS = 16u;
const W = 256u;
const TP = 2u;  // positions per tile
const PW = 128u;  // invocations choosing each position's blocks
const ROUNDS = 15u;  // slots past the initial blocks, one pick each
const GRID_X = 2048u;
const QSCALE = 0.18033688011112042; // scale * log2(e): logits in base 2
const NO_SCORE = -1.0e30;  // below any real logit; never reaches exp2 unguarded
const EMPTY = 0xffffffffu;
const R = 2u;  // rows of a tile: (position, query head), position-major
const SLOTS = 1u;  // blocks t + W s, s < SLOTS, per invocation
const PARTS = 128u;  // invocations per row folding its W partials

var<workgroup> importance: array<f32, 128>;  // [position, block]: -1 not competing, -2 kept
// The importance phase's scratch, then the argmax (W).
var<workgroup> scratch: array<f32, 512>;
var<workgroup> bestBlock: array<u32, 256>;
var<workgroup> qTile: array<vec4<f32>, 32>;  // the tile's rows of Q, scaled
var<workgroup> rowMax: array<f32, 2>;
var<workgroup> rowSum: array<f32, 2>;
var<workgroup> chosen: array<u32, 32>;
var<workgroup> chosenCount: array<u32, 2>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let head = wg.y; // batch * Hkv + key/value head
  for (var tile = wg.x; tile * TP < N; tile += GRID_X) {
    let first = tile * TP;
    // Blocks that compete for some position of the tile: the rest are never scored.
    let end = competingBlocks(min(first + TP, N) - 1u);
    for (var e = t; e < TP * COUNT; e += W) { importance[e] = -1.0; }
    // Competing blocks of each position of the tile (none past N).
    let end0 = select(0u, competingBlocks(first + 0u), first + 0u < N);
    let end1 = select(0u, competingBlocks(first + 1u), first + 1u < N);
    for (var e = t; e < R * D4; e += W) {
      let r = e / D4;
      let pos = min(first + r / GROUP, N - 1u);
      qTile[e] = vec4<f32>(qIn[((head * GROUP + r % GROUP) * N + pos) * D4 + e % D4]) * QSCALE;
    }
    workgroupBarrier();
    // Logits (base 2) of blocks t + W s against every row, held in registers: only the slots
    // that hold a competing block for some position of the tile are scored.
    var l0_0 = 0.0;
    var l1_0 = 0.0;
    switch min(SLOTS, (end + W - 1u) / W) {
      case 1u: {
        for (var d = 0u; d < D4; d++) {
          let m0 = means[(head * D4 + d) * COUNT + min(t + 0u, COUNT - 1u)];
          { let x = qTile[0u * D4 + d]; l0_0 += dot(x, m0); }
          { let x = qTile[1u * D4 + d]; l1_0 += dot(x, m0); }
        }
      }
      default: {}
    }
    // Each row's maximum, then its sum of exp2(logit - maximum), over its competing blocks.
    scratch[0u * W + t] = max(NO_SCORE, select(NO_SCORE, l0_0, t + 0u < end0));
    scratch[1u * W + t] = max(NO_SCORE, select(NO_SCORE, l1_0, t + 0u < end1));
    workgroupBarrier();
    if (t < R * PARTS) {
      let base = (t / PARTS) * W;
      var x = scratch[base + t % PARTS];
      for (var i = t % PARTS + PARTS; i < W; i += PARTS) { x = max(x, scratch[base + i]); }
      scratch[base + t % PARTS] = x;
    }
    workgroupBarrier();
    if (t < R) {
      var x = scratch[t * W];
      for (var i = 1u; i < PARTS; i++) { x = max(x, scratch[t * W + i]); }
      rowMax[t] = x;
    }
    workgroupBarrier();
    // The logits become exp2(logit - maximum), 0 where not competing: the sums' terms and,
    // divided by the sums, the probabilities.
    l0_0 = select(0.0, exp2(l0_0 - rowMax[0]), t + 0u < end0);
    scratch[0u * W + t] = l0_0;
    l1_0 = select(0.0, exp2(l1_0 - rowMax[1]), t + 0u < end1);
    scratch[1u * W + t] = l1_0;
    workgroupBarrier();
    if (t < R * PARTS) {
      let base = (t / PARTS) * W;
      var x = scratch[base + t % PARTS];
      for (var i = t % PARTS + PARTS; i < W; i += PARTS) { x = add(x, scratch[base + i]); }
      scratch[base + t % PARTS] = x;
    }
    workgroupBarrier();
    if (t < R) {
      var x = scratch[t * W];
      for (var i = 1u; i < PARTS; i++) { x = add(x, scratch[t * W + i]); }
      rowSum[t] = x;
    }
    workgroupBarrier();
    // Each competing block's importance: its probabilities under the position's heads, in order.
    if (t + 0u < end0) {
      importance[0u * COUNT + t + 0u] = l0_0 / rowSum[0];
    }
    if (t + 0u < end1) {
      importance[1u * COUNT + t + 0u] = l1_0 / rowSum[1];
    }
    workgroupBarrier();
    // Forced blocks take the first slots: the initial ones, then the local ones after them.
    if (t < TP && first + t < N) {
      let own = (first + t) / 64u;
      var taken = 0u;
      for (var j = 0u; j < min(1u, COUNT); j++) {
        chosen[t * BLOCKS + taken] = j;
        importance[t * COUNT + j] = -2.0;
        taken++;
      }
      for (var j = max(1u, own + 1u - min(own + 1u, 2u)); j <= own; j++) {
        chosen[t * BLOCKS + taken] = j;
        importance[t * COUNT + j] = -2.0;
        taken++;
      }
      chosenCount[t] = taken;
    }
    workgroupBarrier();

    // The most important of the other candidates, one per round, by the position's PW
    // invocations (importances of candidates are >= 0). Every round runs, so that the barriers
    // stay in uniform control flow.
    let p = t / PW;
    let pl = t % PW;
    for (var round = 0u; round < ROUNDS; round++) {
      var mine = -1.0;
      var mineBlock = COUNT;
      for (var j = pl; j < end; j += PW) {
        let x = importance[p * COUNT + j];
        if (x > mine) {
          mine = x;
          mineBlock = j;
        }
      }
      scratch[t] = mine;
      bestBlock[t] = mineBlock;
      workgroupBarrier();
      for (var stride = PW / 2u; stride > 0u; stride = stride / 2u) {
        if (pl < stride) {
          let a = scratch[t];
          let b = scratch[t + stride];
          if (b > a || (b == a && bestBlock[t + stride] < bestBlock[t])) {
            scratch[t] = b;
            bestBlock[t] = bestBlock[t + stride];
          }
        }
        workgroupBarrier();
      }
      if (pl == 0u && first + p < N && scratch[t] >= 0.0 && chosenCount[p] < BLOCKS) {
        chosen[p * BLOCKS + chosenCount[p]] = bestBlock[t];
        importance[p * COUNT + bestBlock[t]] = -2.0;
        chosenCount[p] += 1u;
      }
      workgroupBarrier();
    }
    for (var e = t; e < TP * BLOCKS; e += W) {
      let p = e / BLOCKS;
      let s = e % BLOCKS;
      if (first + p < N) {
        let count = chosenCount[p];
        let out = (head * N + first + p) * BLOCKS;
        if (s < count) {
          let x = chosen[p * BLOCKS + s];
          var rank = 0u;
          for (var k = 0u; k < count; k++) { rank += select(0u, 1u, chosen[p * BLOCKS + k] < x); }
          kept[out + rank] = x;
        } else {
          kept[out + s] = EMPTY;
        }
      }
    }

    workgroupBarrier();  // the next tile overwrites the tile's rows, importances and choice
  }
}


// ==== module 4 ====
// Weft select attention: 16 kept blocks of 64 keys per position (N=4096, causal), rows = 1 query heads of a key/value head, key tiles of 32; workgroup 64

@group(0) @binding(0) var<storage, read> qIn: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> kIn: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> vIn: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> kept: array<u32>;
@group(0) @binding(4) var<storage, read_write> oOut: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> lseOut: array<f32>;

// WGSL has no infinity literal; LSE of an empty row is -inf (DESIGN §1). The bits are a
// `let`: Tint (Dawn) refuses a constant expression whose value is infinite.
fn negativeInfinity() -> f32 {
  let bits = 0xff800000u;
  return bitcast<f32>(bits);
}

const N = 4096u;
const D4 = 16u;
const GROUP = 1u;
const BLOCKS = 16u;
const BLOCK = 64u;
const TK = 32u;
const TILES = 2u; // key tiles per block
const W = 64u;
const GRID_X = 4096u;
const PAIRS = 16u; // (query head, vec4) pairs of O per position
const OWN = 1u; // of them per invocation
const QSCALE = 0.18033688011112042; // scale * log2(e): scores in base 2
const LN2 = 0.6931471805599453;

var<workgroup> qs: array<vec4<f32>, 16>;
var<workgroup> ks: array<vec4<f32>, 512>;
var<workgroup> vs: array<vec4<f32>, 512>;
var<workgroup> p: array<f32, 32>;
var<workgroup> rowMax: array<f32, 1>;
var<workgroup> rowSum: array<f32, 1>;
var<workgroup> rowScale: array<f32, 1>;
var<workgroup> blockList: array<u32, 16>;

/** Key key of a kept block is attended by position pos: inside N and at or before pos. */
fn keyAllowed(key: u32, pos: u32) -> bool {
  return key < N && key <= pos;
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let head = wg.y; // batch * Hkv + key/value head; its query heads are head * GROUP + h
  for (var pos = wg.x; pos < N; pos += GRID_X) {
    for (var i = t; i < PAIRS; i += W) {
      qs[i] = vec4<f32>(qIn[((head * GROUP + i / D4) * N + pos) * D4 + i % D4]) * QSCALE;
    }
    if (t < GROUP) {
      rowMax[t] = negativeInfinity();
      rowSum[t] = 0.0;
    }
    if (t < BLOCKS) { blockList[t] = kept[(head * N + pos) * BLOCKS + t]; }
    var acc: array<vec4<f32>, OWN>;
    for (var i = 0u; i < OWN; i++) { acc[i] = vec4<f32>(0.0); }
    workgroupBarrier();
    for (var slot = 0u; slot < BLOCKS; slot++) {
      let block = blockList[slot]; // 0xffffffff: an empty slot
      for (var tile = 0u; tile < TILES; tile++) {
        let first = block * BLOCK + tile * TK;
        let inBlock = min(TK, BLOCK - tile * TK);
        for (var i = t; i < TK * D4; i += W) {
          let key = first + i / D4;
          var kv = vec4<f32>(0.0);
          var vv = vec4<f32>(0.0);
          if (block != 0xffffffffu && i / D4 < inBlock && key < N) {
            kv = vec4<f32>(kIn[(head * N + key) * D4 + i % D4]);
            vv = vec4<f32>(vIn[(head * N + key) * D4 + i % D4]);
          }
          ks[i] = kv;
          vs[i] = vv;
        }
        workgroupBarrier();
        for (var i = t; i < GROUP * TK; i += W) {
          let h = i / TK;
          let k = i % TK;
          var s = negativeInfinity();
          if (block != 0xffffffffu && k < inBlock && keyAllowed(first + k, pos)) {
            var dotted = 0.0;
            for (var d = 0u; d < D4; d++) { dotted += dot(qs[h * D4 + d], ks[k * D4 + d]); }
            s = dotted;
          }
          p[i] = s;
        }
        workgroupBarrier();
        // Each head's new running maximum (a short serial scan per head), then every
        // invocation exponentiates its own (head, key) scores: the exp2s run in parallel.
        if (t < GROUP) {
          let old = rowMax[t];
          var top = old;
          for (var k = 0u; k < TK; k++) { top = max(top, p[t * TK + k]); }
          rowMax[t] = top;
          rowScale[t] = select(1.0, exp2(old - top), top != negativeInfinity());
        }
        workgroupBarrier();
        for (var i = t; i < GROUP * TK; i += W) {
          let top = rowMax[i / TK];
          p[i] = select(0.0, exp2(p[i] - top), top != negativeInfinity());
        }
        workgroupBarrier();
        // P·V into O; the invocation of a head's first vec4 also carries its running sum.
        for (var i = 0u; i < OWN; i++) {
          let pair = t + i * W;
          if (pair < PAIRS) {
            let h = pair / D4;
            let d = pair % D4;
            var a = acc[i] * rowScale[h];
            var added = 0.0;
            for (var k = 0u; k < TK; k++) {
              let e = p[h * TK + k];
              a += e * vs[k * D4 + d];
              added += e;
            }
            acc[i] = a;
            if (d == 0u) { rowSum[h] = rowSum[h] * rowScale[h] + added; }
          }
        }
        workgroupBarrier();
      }
    }
    for (var i = 0u; i < OWN; i++) {
      let pair = t + i * W;
      if (pair < PAIRS) {
        let h = pair / D4;
        let sum = rowSum[h];
        var out = vec4<f32>(0.0);
        if (sum > 0.0) { out = acc[i] / sum; }
        oOut[262144u + ((head * GROUP + h) * N + pos) * D4 + pair % D4] = out;
      }
    }
    if (t < GROUP) {
      let sum = rowSum[t];
      var lse = negativeInfinity();
      if (sum > 0.0) { lse = (rowMax[t] + log2(sum)) * LN2; }
      lseOut[16384u + (head * GROUP + t) * N + pos] = lse;
    }
    workgroupBarrier();
  }
}


// ==== module 5 ====
// Weft attention kernel: intersect(window(512,0), causal), branch 2 component 0
// allowed: window(512,0) & causal
// layouts: q identity, k identity
// tile 64x32, workgroup 256, N=4096, D=64, Hq=4, Hkv=4, float32

@group(0) @binding(0) var<storage, read> qIn: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> kIn: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> vIn: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> schedule: array<u32>;
@group(0) @binding(4) var<storage, read> aux: array<u32>;
@group(0) @binding(5) var<storage, read_write> oOut: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> lseOut: array<f32>;

const N = 4096u;
const KV_ROWS = 4096u;     // rows per key/value head in the bound K and V
const D4 = 16u;          // head dim / 4: rows are read as vec4
const HQ = 4u;
const HKV = 4u;
const GROUP = 1u; // query heads per key/value head
const TILE_Q = 64u;
const TILE_K = 32u;
const THREADS = 256u;
const ROWS = 2u;          // query rows per invocation
const COLS = 8u;          // invocations sharing those rows
const KEYS = 4u;          // keys per invocation per tile: col, col + COLS, ...
const DIMS4 = 2u;         // output vec4s per row per invocation
const QK_STRIDE = 17u;     // padded row stride of the Q and K tiles: spreads banks
const P_STRIDE4 = 9u;    // P rows are vec4s of 4 keys, padded by one vec4
const SCORE_SCALE = 0.18033688011112042; // scale * log2(e): scores live in the exp2 domain
const NO_SCORE = -1.0e30;   // below any real score; never reaches exp2 unguarded
const LN2 = 0.6931471805599453;

// K for QKᵀ, then P for P·V: K is dead once the scores are in registers, and a barrier
// separates the two, so they share memory (less workgroup memory, more workgroups per SM).
var<workgroup> kpTile: array<vec4<f32>, 576>;
var<workgroup> vTile: array<vec4<f32>, 544>; // also an edge pair's K_B (padded rows)
var<workgroup> rowShare: array<f32, 512>; // per-column row maxima, then row sums
var<workgroup> kPosition: array<i32, 32>;

// WGSL has no infinity literal; LSE of an empty row is -inf (DESIGN §1). The bits are a
// `let`: Tint (Dawn) refuses a constant expression whose value is infinite.
fn negativeInfinity() -> f32 {
  let bits = 0xff800000u;
  return bitcast<f32>(bits);
}

fn identityPosition(i: u32) -> i32 {
  return select(-1, i32(i), i < 4096u);
}

// This kernel's pattern parameters start at aux[PARAMS]: runtime values, so a pattern of the
// same structure with other numbers runs on the same pipeline.
const PARAMS = 0u;

// Signed parameters are stored as their two's complement.
fn signedParam(slot: u32) -> i32 {
  return bitcast<i32>(aux[PARAMS + slot]);
}

fn allowed(q: i32, k: i32) -> bool {
  let left0 = signedParam(0u); // window(512,0)
  let right1 = signedParam(1u); // window(512,0)
  let own = (k >= q - left0 && k <= q + right1) && k <= q;
  return own;
}

const PAIR_BIT = 0x80000000u;       // an edge pair's second schedule word: B | PAIR_BIT

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let d4 = D4;
  let tileK = TILE_K;
  let qTileIndex = wg.x;
  let bh = wg.y;                      // batch * HQ + query head
  let kvHead = (bh / HQ) * HKV + (bh % HQ) / GROUP;
  let kvBase = kvHead * KV_ROWS * D4;
  // Invocation = (row group, column): COLS consecutive invocations share ROWS query rows; for
  // scores a column owns keys col, col + COLS, ...; for O it owns vec4 dims col, col + COLS, ...
  let col = lid % COLS;
  let firstRow = (lid / COLS) * ROWS;

  // This query tile's runs of consecutive key tiles of one kind, walked one key tile per step.
  // The slot holds where this component's row pointers and runs start (schedule_buffer.ts).
  let slot = 2u + 2u * 1u;
  let rowsAt = schedule[slot];
  let runsAt = schedule[slot + 1u];
  var run = schedule[rowsAt + qTileIndex];
  let lastRun = schedule[rowsAt + qTileIndex + 1u];
  var keyTile = 0u;
  var runEnd = 0u;
  var runPartial = false;
  // An edge pair (edge_pairs.ts) is the row's first run, `A << 1 | 1` and `B | PAIR_BIT`:
  // one step before the loop, rows 0 .. TILE_Q / 2 - 1 on key tile A and the others on B.
  var hasPair = false;
  var pairA = 0u;
  var pairB = 0u;
  if (run != lastRun) {
    let pairWord = schedule[runsAt + 2u * run + 1u];
    if ((pairWord & PAIR_BIT) != 0u) {
      hasPair = true;
      pairA = (schedule[runsAt + 2u * run] >> 1u) * TILE_K;
      pairB = (pairWord & ~PAIR_BIT) * TILE_K;
      run++;
    }
  }
  var pairVA0 = vec4<f32>(0.0);
  var pairVB0 = vec4<f32>(0.0);
  var pairVA1 = vec4<f32>(0.0);
  var pairVB1 = vec4<f32>(0.0);
  if (hasPair) {
    {
      let i = lid + 0u;
      let j = i / D4;
      let srcA = kvBase + (pairA + j) * D4 + i % D4;
      let srcB = kvBase + (pairB + j) * D4 + i % D4;
      kpTile[j * QK_STRIDE + i % D4] = kIn[srcA];
      vTile[j * QK_STRIDE + i % D4] = kIn[srcB];
      pairVA0 = vIn[srcA];
      pairVB0 = vIn[srcB];
    }
    {
      let i = lid + 256u;
      let j = i / D4;
      let srcA = kvBase + (pairA + j) * D4 + i % D4;
      let srcB = kvBase + (pairB + j) * D4 + i % D4;
      kpTile[j * QK_STRIDE + i % D4] = kIn[srcA];
      vTile[j * QK_STRIDE + i % D4] = kIn[srcB];
      pairVA1 = vIn[srcA];
      pairVB1 = vIn[srcB];
    }
  }

  let q0 = i32(qTileIndex * TILE_Q + firstRow + 0u);
  let q1 = i32(qTileIndex * TILE_Q + firstRow + 1u);
  let qAt0 = (bh * N + u32(max(q0, 0))) * D4; // its row of Q
  let qAt1 = (bh * N + u32(max(q1, 0))) * D4; // its row of Q
  var rowMax0 = NO_SCORE;
  var rowMax1 = NO_SCORE;
  // Row sums are this invocation's share; the shares are added over columns at the end.
  var rowSum0 = 0.0;
  var rowSum1 = 0.0;
  var acc0_0 = vec4<f32>(0.0);
  var acc0_1 = vec4<f32>(0.0);
  var acc1_0 = vec4<f32>(0.0);
  var acc1_1 = vec4<f32>(0.0);
  var pairLive = false;              // does any of this invocation's rows see its pair tile?
  if (hasPair) {
    workgroupBarrier();               // K_A and K_B are staged
    let lower = firstRow >= TILE_Q / 2u;
    let kTileStart = select(pairA, pairB, lower);
    let isPartial = true;             // corners of a band: every pair asks `allowed`
    // A complete grid (no padding): FULL tiles allow every pair, PARTIAL ones ask `allowed`.
    var m0_0 = true;
    var m0_1 = true;
    var m0_2 = true;
    var m0_3 = true;
    var m1_0 = true;
    var m1_1 = true;
    var m1_2 = true;
    var m1_3 = true;
    if (isPartial) {
      let k0 = i32(kTileStart + col + 0u);
      let k1 = i32(kTileStart + col + 8u);
      let k2 = i32(kTileStart + col + 16u);
      let k3 = i32(kTileStart + col + 24u);
      m0_0 = allowed(q0, k0);
      m0_1 = allowed(q0, k1);
      m0_2 = allowed(q0, k2);
      m0_3 = allowed(q0, k3);
      m1_0 = allowed(q1, k0);
      m1_1 = allowed(q1, k1);
      m1_2 = allowed(q1, k2);
      m1_3 = allowed(q1, k3);
    }
    let anyAllowed = m0_0 || m0_1 || m0_2 || m0_3 || m1_0 || m1_1 || m1_2 || m1_3;
    var s0_0 = 0.0;
    var s0_1 = 0.0;
    var s0_2 = 0.0;
    var s0_3 = 0.0;
    var s1_0 = 0.0;
    var s1_1 = 0.0;
    var s1_2 = 0.0;
    var s1_3 = 0.0;
    if (lower) {
      // Scores: a ROWS x KEYS register tile, vec4 dot products over the head dim.
      if (anyAllowed) {
        for (var d = 0u; d < d4; d++) {
          let qv0 = qIn[qAt0 + d] * SCORE_SCALE;
          let qv1 = qIn[qAt1 + d] * SCORE_SCALE;
          let kv0 = vTile[(col + 0u) * QK_STRIDE + d];
          let kv1 = vTile[(col + 8u) * QK_STRIDE + d];
          let kv2 = vTile[(col + 16u) * QK_STRIDE + d];
          let kv3 = vTile[(col + 24u) * QK_STRIDE + d];
          s0_0 += dot(qv0, kv0);
          s0_1 += dot(qv0, kv1);
          s0_2 += dot(qv0, kv2);
          s0_3 += dot(qv0, kv3);
          s1_0 += dot(qv1, kv0);
          s1_1 += dot(qv1, kv1);
          s1_2 += dot(qv1, kv2);
          s1_3 += dot(qv1, kv3);
        }
      }
    } else {
      // Scores: a ROWS x KEYS register tile, vec4 dot products over the head dim.
      if (anyAllowed) {
        for (var d = 0u; d < d4; d++) {
          let qv0 = qIn[qAt0 + d] * SCORE_SCALE;
          let qv1 = qIn[qAt1 + d] * SCORE_SCALE;
          let kv0 = kpTile[(col + 0u) * QK_STRIDE + d];
          let kv1 = kpTile[(col + 8u) * QK_STRIDE + d];
          let kv2 = kpTile[(col + 16u) * QK_STRIDE + d];
          let kv3 = kpTile[(col + 24u) * QK_STRIDE + d];
          s0_0 += dot(qv0, kv0);
          s0_1 += dot(qv0, kv1);
          s0_2 += dot(qv0, kv2);
          s0_3 += dot(qv0, kv3);
          s1_0 += dot(qv1, kv0);
          s1_1 += dot(qv1, kv1);
          s1_2 += dot(qv1, kv2);
          s1_3 += dot(qv1, kv3);
        }
      }
    }
    if (isPartial) {
      s0_0 = select(NO_SCORE, s0_0, m0_0);
      s0_1 = select(NO_SCORE, s0_1, m0_1);
      s0_2 = select(NO_SCORE, s0_2, m0_2);
      s0_3 = select(NO_SCORE, s0_3, m0_3);
      s1_0 = select(NO_SCORE, s1_0, m1_0);
      s1_1 = select(NO_SCORE, s1_1, m1_1);
      s1_2 = select(NO_SCORE, s1_2, m1_2);
      s1_3 = select(NO_SCORE, s1_3, m1_3);
    }
    rowShare[(firstRow + 0u) * COLS + col] = max(s0_0, max(s0_1, max(s0_2, s0_3)));
    rowShare[(firstRow + 1u) * COLS + col] = max(s1_0, max(s1_1, max(s1_2, s1_3)));
    workgroupBarrier();               // every score is read: K_A and K_B are dead
    var rowsLive = false;
    {
      var tileMax = NO_SCORE;
      for (var c = 0u; c < COLS; c++) { tileMax = max(tileMax, rowShare[(firstRow + 0u) * COLS + c]); }
      let newMax = max(rowMax0, tileMax);
      let rescale = exp2(rowMax0 - newMax); // 1 while the row has seen nothing
      rowMax0 = newMax;
      rowsLive = rowsLive || tileMax > NO_SCORE;
      let p0 = select(0.0, exp2(s0_0 - newMax), s0_0 > NO_SCORE);
      let p1 = select(0.0, exp2(s0_1 - newMax), s0_1 > NO_SCORE);
      let p2 = select(0.0, exp2(s0_2 - newMax), s0_2 > NO_SCORE);
      let p3 = select(0.0, exp2(s0_3 - newMax), s0_3 > NO_SCORE);
      rowSum0 = rowSum0 * rescale + p0 + p1 + p2 + p3;
      acc0_0 *= rescale;
      acc0_1 *= rescale;
      kpTile[(firstRow + 0u) * P_STRIDE4 + (col + 0u) / 4u][(col + 0u) % 4u] = p0;
      kpTile[(firstRow + 0u) * P_STRIDE4 + (col + 8u) / 4u][(col + 8u) % 4u] = p1;
      kpTile[(firstRow + 0u) * P_STRIDE4 + (col + 16u) / 4u][(col + 16u) % 4u] = p2;
      kpTile[(firstRow + 0u) * P_STRIDE4 + (col + 24u) / 4u][(col + 24u) % 4u] = p3;
    }
    {
      var tileMax = NO_SCORE;
      for (var c = 0u; c < COLS; c++) { tileMax = max(tileMax, rowShare[(firstRow + 1u) * COLS + c]); }
      let newMax = max(rowMax1, tileMax);
      let rescale = exp2(rowMax1 - newMax); // 1 while the row has seen nothing
      rowMax1 = newMax;
      rowsLive = rowsLive || tileMax > NO_SCORE;
      let p0 = select(0.0, exp2(s1_0 - newMax), s1_0 > NO_SCORE);
      let p1 = select(0.0, exp2(s1_1 - newMax), s1_1 > NO_SCORE);
      let p2 = select(0.0, exp2(s1_2 - newMax), s1_2 > NO_SCORE);
      let p3 = select(0.0, exp2(s1_3 - newMax), s1_3 > NO_SCORE);
      rowSum1 = rowSum1 * rescale + p0 + p1 + p2 + p3;
      acc1_0 *= rescale;
      acc1_1 *= rescale;
      kpTile[(firstRow + 1u) * P_STRIDE4 + (col + 0u) / 4u][(col + 0u) % 4u] = p0;
      kpTile[(firstRow + 1u) * P_STRIDE4 + (col + 8u) / 4u][(col + 8u) % 4u] = p1;
      kpTile[(firstRow + 1u) * P_STRIDE4 + (col + 16u) / 4u][(col + 16u) % 4u] = p2;
      kpTile[(firstRow + 1u) * P_STRIDE4 + (col + 24u) / 4u][(col + 24u) % 4u] = p3;
    }
    pairLive = rowsLive;
    {
      let i = lid + 0u;
      vTile[i] = pairVA0;
    }
    {
      let i = lid + 256u;
      vTile[i] = pairVA1;
    }
  }
  // The next key tile's K, V and positions, in registers while the current tile is computed;
  // the first one's loads are issued before the query tile is staged.
  var nextK0 = vec4<f32>(0.0);
  var nextV0 = vec4<f32>(0.0);
  var nextK1 = vec4<f32>(0.0);
  var nextV1 = vec4<f32>(0.0);
  if (keyTile == runEnd && run != lastRun) {
    let runHead = schedule[runsAt + 2u * run]; // kvStart << 1 | partial
    keyTile = runHead >> 1u;
    runPartial = (runHead & 1u) == 1u;
    runEnd = keyTile + schedule[runsAt + 2u * run + 1u];
    run++;
  }
  var hasNext = false;
  var nextStart = 0u;
  var nextPartial = false;
  hasNext = keyTile != runEnd;
  nextStart = keyTile * TILE_K;
  nextPartial = runPartial;
  if (hasNext) {
    {
      let i = lid + 0u;
      let src = kvBase + (nextStart + i / D4) * D4 + i % D4;
      nextK0 = kIn[src];
      nextV0 = vIn[src];
    }
    {
      let i = lid + 256u;
      let src = kvBase + (nextStart + i / D4) * D4 + i % D4;
      nextK1 = kIn[src];
      nextV1 = vIn[src];
    }
  }
  if (hasPair) {
    // The upper half adds P·V_A, then V_B replaces V_A and the lower half adds P·V_B.
    workgroupBarrier();               // P and V_A are staged
    let lower = firstRow >= TILE_Q / 2u;
    var rowsLive = pairLive && !lower;
    // O += P V: a ROWS x DIMS4 register tile of vec4s (rows with no allowed key add nothing).
    if (rowsLive) {
      for (var j4 = 0u; j4 < tileK / 4u; j4++) {
        let p0 = kpTile[(firstRow + 0u) * P_STRIDE4 + j4];
        let p1 = kpTile[(firstRow + 1u) * P_STRIDE4 + j4];
        let v0_0 = vTile[(j4 * 4u + 0u) * D4 + col + 0u];
        let v0_1 = vTile[(j4 * 4u + 0u) * D4 + col + 8u];
        let v1_0 = vTile[(j4 * 4u + 1u) * D4 + col + 0u];
        let v1_1 = vTile[(j4 * 4u + 1u) * D4 + col + 8u];
        let v2_0 = vTile[(j4 * 4u + 2u) * D4 + col + 0u];
        let v2_1 = vTile[(j4 * 4u + 2u) * D4 + col + 8u];
        let v3_0 = vTile[(j4 * 4u + 3u) * D4 + col + 0u];
        let v3_1 = vTile[(j4 * 4u + 3u) * D4 + col + 8u];
        acc0_0 += p0.x * v0_0;
        acc0_1 += p0.x * v0_1;
        acc1_0 += p1.x * v0_0;
        acc1_1 += p1.x * v0_1;
        acc0_0 += p0.y * v1_0;
        acc0_1 += p0.y * v1_1;
        acc1_0 += p1.y * v1_0;
        acc1_1 += p1.y * v1_1;
        acc0_0 += p0.z * v2_0;
        acc0_1 += p0.z * v2_1;
        acc1_0 += p1.z * v2_0;
        acc1_1 += p1.z * v2_1;
        acc0_0 += p0.w * v3_0;
        acc0_1 += p0.w * v3_1;
        acc1_0 += p1.w * v3_0;
        acc1_1 += p1.w * v3_1;
      }
    }
    workgroupBarrier();               // every read of V_A is done
    {
      let i = lid + 0u;
      vTile[i] = pairVB0;
    }
    {
      let i = lid + 256u;
      vTile[i] = pairVB1;
    }
    workgroupBarrier();
    rowsLive = pairLive && lower;
    // O += P V: a ROWS x DIMS4 register tile of vec4s (rows with no allowed key add nothing).
    if (rowsLive) {
      for (var j4 = 0u; j4 < tileK / 4u; j4++) {
        let p0 = kpTile[(firstRow + 0u) * P_STRIDE4 + j4];
        let p1 = kpTile[(firstRow + 1u) * P_STRIDE4 + j4];
        let v0_0 = vTile[(j4 * 4u + 0u) * D4 + col + 0u];
        let v0_1 = vTile[(j4 * 4u + 0u) * D4 + col + 8u];
        let v1_0 = vTile[(j4 * 4u + 1u) * D4 + col + 0u];
        let v1_1 = vTile[(j4 * 4u + 1u) * D4 + col + 8u];
        let v2_0 = vTile[(j4 * 4u + 2u) * D4 + col + 0u];
        let v2_1 = vTile[(j4 * 4u + 2u) * D4 + col + 8u];
        let v3_0 = vTile[(j4 * 4u + 3u) * D4 + col + 0u];
        let v3_1 = vTile[(j4 * 4u + 3u) * D4 + col + 8u];
        acc0_0 += p0.x * v0_0;
        acc0_1 += p0.x * v0_1;
        acc1_0 += p1.x * v0_0;
        acc1_1 += p1.x * v0_1;
        acc0_0 += p0.y * v1_0;
        acc0_1 += p0.y * v1_1;
        acc1_0 += p1.y * v1_0;
        acc1_1 += p1.y * v1_1;
        acc0_0 += p0.z * v2_0;
        acc0_1 += p0.z * v2_1;
        acc1_0 += p1.z * v2_0;
        acc1_1 += p1.z * v2_1;
        acc0_0 += p0.w * v3_0;
        acc0_1 += p0.w * v3_1;
        acc1_0 += p1.w * v3_0;
        acc1_1 += p1.w * v3_1;
      }
    }
  }

  loop {
    if (!hasNext) { break; }
    let isPartial = nextPartial;
    let kTileStart = nextStart;
    workgroupBarrier();               // every read of the previous tile is done
    {
      let i = lid + 0u;
      let j = i / D4;
      kpTile[j * QK_STRIDE + i % D4] = nextK0;
      vTile[i] = nextV0;
    }
    {
      let i = lid + 256u;
      let j = i / D4;
      kpTile[j * QK_STRIDE + i % D4] = nextK1;
      vTile[i] = nextV1;
    }
    workgroupBarrier();
    keyTile++;
    if (keyTile == runEnd && run != lastRun) {
      let runHead = schedule[runsAt + 2u * run]; // kvStart << 1 | partial
      keyTile = runHead >> 1u;
      runPartial = (runHead & 1u) == 1u;
      runEnd = keyTile + schedule[runsAt + 2u * run + 1u];
      run++;
    }
    hasNext = keyTile != runEnd;
    nextStart = keyTile * TILE_K;
    nextPartial = runPartial;
    if (hasNext) {
      {
        let i = lid + 0u;
        let src = kvBase + (nextStart + i / D4) * D4 + i % D4;
        nextK0 = kIn[src];
        nextV0 = vIn[src];
      }
      {
        let i = lid + 256u;
        let src = kvBase + (nextStart + i / D4) * D4 + i % D4;
        nextK1 = kIn[src];
        nextV1 = vIn[src];
      }
    }


    // A complete grid (no padding): FULL tiles allow every pair, PARTIAL ones ask `allowed`.
    var m0_0 = true;
    var m0_1 = true;
    var m0_2 = true;
    var m0_3 = true;
    var m1_0 = true;
    var m1_1 = true;
    var m1_2 = true;
    var m1_3 = true;
    if (isPartial) {
      let k0 = i32(kTileStart + col + 0u);
      let k1 = i32(kTileStart + col + 8u);
      let k2 = i32(kTileStart + col + 16u);
      let k3 = i32(kTileStart + col + 24u);
      m0_0 = allowed(q0, k0);
      m0_1 = allowed(q0, k1);
      m0_2 = allowed(q0, k2);
      m0_3 = allowed(q0, k3);
      m1_0 = allowed(q1, k0);
      m1_1 = allowed(q1, k1);
      m1_2 = allowed(q1, k2);
      m1_3 = allowed(q1, k3);
    }
    let anyAllowed = m0_0 || m0_1 || m0_2 || m0_3 || m1_0 || m1_1 || m1_2 || m1_3;
    // Scores: a ROWS x KEYS register tile, vec4 dot products over the head dim.
    var s0_0 = 0.0;
    var s0_1 = 0.0;
    var s0_2 = 0.0;
    var s0_3 = 0.0;
    var s1_0 = 0.0;
    var s1_1 = 0.0;
    var s1_2 = 0.0;
    var s1_3 = 0.0;
    if (anyAllowed) {
      for (var d = 0u; d < d4; d++) {
        let qv0 = qIn[qAt0 + d] * SCORE_SCALE;
        let qv1 = qIn[qAt1 + d] * SCORE_SCALE;
        let kv0 = kpTile[(col + 0u) * QK_STRIDE + d];
        let kv1 = kpTile[(col + 8u) * QK_STRIDE + d];
        let kv2 = kpTile[(col + 16u) * QK_STRIDE + d];
        let kv3 = kpTile[(col + 24u) * QK_STRIDE + d];
        s0_0 += dot(qv0, kv0);
        s0_1 += dot(qv0, kv1);
        s0_2 += dot(qv0, kv2);
        s0_3 += dot(qv0, kv3);
        s1_0 += dot(qv1, kv0);
        s1_1 += dot(qv1, kv1);
        s1_2 += dot(qv1, kv2);
        s1_3 += dot(qv1, kv3);
      }
    }
    // This column's share of each row's max.
    if (isPartial) {
      s0_0 = select(NO_SCORE, s0_0, m0_0);
      s0_1 = select(NO_SCORE, s0_1, m0_1);
      s0_2 = select(NO_SCORE, s0_2, m0_2);
      s0_3 = select(NO_SCORE, s0_3, m0_3);
      s1_0 = select(NO_SCORE, s1_0, m1_0);
      s1_1 = select(NO_SCORE, s1_1, m1_1);
      s1_2 = select(NO_SCORE, s1_2, m1_2);
      s1_3 = select(NO_SCORE, s1_3, m1_3);
    }
    rowShare[(firstRow + 0u) * COLS + col] = max(s0_0, max(s0_1, max(s0_2, s0_3)));
    rowShare[(firstRow + 1u) * COLS + col] = max(s1_0, max(s1_1, max(s1_2, s1_3)));
    workgroupBarrier();
    // Online softmax: rescale by the new row max, write P for the P·V product.
    var rowsLive = false;             // does any of this invocation's rows see this tile?
    {
      var tileMax = NO_SCORE;
      for (var c = 0u; c < COLS; c++) { tileMax = max(tileMax, rowShare[(firstRow + 0u) * COLS + c]); }
      let newMax = max(rowMax0, tileMax);
      let rescale = exp2(rowMax0 - newMax); // 1 while the row has seen nothing
      rowMax0 = newMax;
      rowsLive = rowsLive || tileMax > NO_SCORE;
      let p0 = select(0.0, exp2(s0_0 - newMax), s0_0 > NO_SCORE);
      let p1 = select(0.0, exp2(s0_1 - newMax), s0_1 > NO_SCORE);
      let p2 = select(0.0, exp2(s0_2 - newMax), s0_2 > NO_SCORE);
      let p3 = select(0.0, exp2(s0_3 - newMax), s0_3 > NO_SCORE);
      rowSum0 = rowSum0 * rescale + p0 + p1 + p2 + p3;
      acc0_0 *= rescale;
      acc0_1 *= rescale;
      kpTile[(firstRow + 0u) * P_STRIDE4 + (col + 0u) / 4u][(col + 0u) % 4u] = p0;
      kpTile[(firstRow + 0u) * P_STRIDE4 + (col + 8u) / 4u][(col + 8u) % 4u] = p1;
      kpTile[(firstRow + 0u) * P_STRIDE4 + (col + 16u) / 4u][(col + 16u) % 4u] = p2;
      kpTile[(firstRow + 0u) * P_STRIDE4 + (col + 24u) / 4u][(col + 24u) % 4u] = p3;
    }
    {
      var tileMax = NO_SCORE;
      for (var c = 0u; c < COLS; c++) { tileMax = max(tileMax, rowShare[(firstRow + 1u) * COLS + c]); }
      let newMax = max(rowMax1, tileMax);
      let rescale = exp2(rowMax1 - newMax); // 1 while the row has seen nothing
      rowMax1 = newMax;
      rowsLive = rowsLive || tileMax > NO_SCORE;
      let p0 = select(0.0, exp2(s1_0 - newMax), s1_0 > NO_SCORE);
      let p1 = select(0.0, exp2(s1_1 - newMax), s1_1 > NO_SCORE);
      let p2 = select(0.0, exp2(s1_2 - newMax), s1_2 > NO_SCORE);
      let p3 = select(0.0, exp2(s1_3 - newMax), s1_3 > NO_SCORE);
      rowSum1 = rowSum1 * rescale + p0 + p1 + p2 + p3;
      acc1_0 *= rescale;
      acc1_1 *= rescale;
      kpTile[(firstRow + 1u) * P_STRIDE4 + (col + 0u) / 4u][(col + 0u) % 4u] = p0;
      kpTile[(firstRow + 1u) * P_STRIDE4 + (col + 8u) / 4u][(col + 8u) % 4u] = p1;
      kpTile[(firstRow + 1u) * P_STRIDE4 + (col + 16u) / 4u][(col + 16u) % 4u] = p2;
      kpTile[(firstRow + 1u) * P_STRIDE4 + (col + 24u) / 4u][(col + 24u) % 4u] = p3;
    }
    workgroupBarrier();
    // O += P V: a ROWS x DIMS4 register tile of vec4s (rows with no allowed key add nothing).
    if (rowsLive) {
      for (var j4 = 0u; j4 < tileK / 4u; j4++) {
        let p0 = kpTile[(firstRow + 0u) * P_STRIDE4 + j4];
        let p1 = kpTile[(firstRow + 1u) * P_STRIDE4 + j4];
        let v0_0 = vTile[(j4 * 4u + 0u) * D4 + col + 0u];
        let v0_1 = vTile[(j4 * 4u + 0u) * D4 + col + 8u];
        let v1_0 = vTile[(j4 * 4u + 1u) * D4 + col + 0u];
        let v1_1 = vTile[(j4 * 4u + 1u) * D4 + col + 8u];
        let v2_0 = vTile[(j4 * 4u + 2u) * D4 + col + 0u];
        let v2_1 = vTile[(j4 * 4u + 2u) * D4 + col + 8u];
        let v3_0 = vTile[(j4 * 4u + 3u) * D4 + col + 0u];
        let v3_1 = vTile[(j4 * 4u + 3u) * D4 + col + 8u];
        acc0_0 += p0.x * v0_0;
        acc0_1 += p0.x * v0_1;
        acc1_0 += p1.x * v0_0;
        acc1_1 += p1.x * v0_1;
        acc0_0 += p0.y * v1_0;
        acc0_1 += p0.y * v1_1;
        acc1_0 += p1.y * v1_0;
        acc1_1 += p1.y * v1_1;
        acc0_0 += p0.z * v2_0;
        acc0_1 += p0.z * v2_1;
        acc1_0 += p1.z * v2_0;
        acc1_1 += p1.z * v2_1;
        acc0_0 += p0.w * v3_0;
        acc0_1 += p0.w * v3_1;
        acc1_0 += p1.w * v3_0;
        acc1_1 += p1.w * v3_1;
      }
    }
  }

  // Each row's sum is spread over its COLS invocations: add the shares.
  workgroupBarrier();
  rowShare[(firstRow + 0u) * COLS + col] = rowSum0;
  rowShare[(firstRow + 1u) * COLS + col] = rowSum1;

  workgroupBarrier();
  if (q0 >= 0) {
    var total = 0.0;
    for (var c = 0u; c < COLS; c++) { total += rowShare[(firstRow + 0u) * COLS + c]; }
    let row = 32768u + bh * N + u32(q0);
    let outBase = 524288u + (bh * N + u32(q0)) * D4;
    if (total == 0.0) {               // nothing allowed: O = 0, LSE = -inf
      if (col == 0u) { lseOut[row] = negativeInfinity(); }
      oOut[outBase + col + 0u] = vec4<f32>(0.0);
      oOut[outBase + col + 8u] = vec4<f32>(0.0);
    } else {
      if (col == 0u) { lseOut[row] = (rowMax0 + log2(total)) * LN2; }
      oOut[outBase + col + 0u] = acc0_0 / total;
      oOut[outBase + col + 8u] = acc0_1 / total;
    }
  }
  if (q1 >= 0) {
    var total = 0.0;
    for (var c = 0u; c < COLS; c++) { total += rowShare[(firstRow + 1u) * COLS + c]; }
    let row = 32768u + bh * N + u32(q1);
    let outBase = 524288u + (bh * N + u32(q1)) * D4;
    if (total == 0.0) {               // nothing allowed: O = 0, LSE = -inf
      if (col == 0u) { lseOut[row] = negativeInfinity(); }
      oOut[outBase + col + 0u] = vec4<f32>(0.0);
      oOut[outBase + col + 8u] = vec4<f32>(0.0);
    } else {
      if (col == 0u) { lseOut[row] = (rowMax1 + log2(total)) * LN2; }
      oOut[outBase + col + 0u] = acc1_0 / total;
      oOut[outBase + col + 8u] = acc1_1 / total;
    }
  }
}


// ==== module 6 ====
// Weft gated blend: out = sum of 3 branch outputs times their gates
// gates [B, Hq, branches]

@group(0) @binding(0) var<storage, read> branchOut: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> gates: array<f32>;
@group(0) @binding(2) var<storage, read_write> oOut: array<vec4<f32>>;

fn linearIndex(wg: vec3<u32>, lid: u32, groupsX: u32) -> u32 {
  return (wg.y * groupsX + wg.x) * 256u + lid;
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = linearIndex(wg, lid, 1024u);   // one vec4 of one output row
  if (i >= 262144u) { return; }
  let row = i / 16u;                            // (batch * Hq + head) * N + position
  let gateBase = (row / 4096u) * 3u;
  var sum = vec4<f32>(0.0);
  for (var b = 0u; b < 3u; b++) {
    sum += gates[gateBase + b] * branchOut[b * 262144u + i];
  }
  oOut[i] = sum;
}

