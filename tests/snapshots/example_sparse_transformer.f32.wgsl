// ==== module 0 ====
// Weft attention kernel shared by 2 kernel(s) over 2 components (entry point kernelI runs kernel I):
// kernel 0: union(window(15,0), intersect(stride(16), causal)), branch 0 component 0
// kernel 1: union(window(15,0), intersect(stride(16), causal)), branch 0 component 1
// member 0 (kernel 0): allowed: window(15,0); layouts: q identity, k identity
// member 1 (kernel 1): allowed: stride(16) & causal, minus 1 earlier component(s); layouts: q residue(16), k residue(16)
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

fn allowed0(q: i32, k: i32) -> bool {
  let left0 = signedParam(0u); // window(15,0)
  let right1 = signedParam(1u); // window(15,0)
  let own = (k >= q - left0 && k <= q + right1);
  return own;
}

fn param(slot: u32) -> u32 {
  return aux[PARAMS + slot];
}

// Residue order for stride(16): index i -> class c, rank r -> position c + r * period.
// Classes c < longClasses hold longLength positions, the rest one fewer.
fn residuePosition2(i: u32) -> i32 {
  let period = param(2u); // residue(16)
  let longLength = param(3u); // residue(16): positions per long class
  let longClasses = param(4u); // residue(16): N = short length * period + this
  let shortLength = param(5u); // residue(16): positions per short class
  if (i >= 4096u) { return -1; }
  let longSpan = longClasses * longLength;
  if (i < longSpan) {
    return i32(i / longLength + (i % longLength) * period);
  }
  let j = i - longSpan;
  return i32(longClasses + j / shortLength + (j % shortLength) * period);
}

// Residue order for stride(16): index i -> class c, rank r -> position c + r * period.
// Classes c < longClasses hold longLength positions, the rest one fewer.
fn residuePosition6(i: u32) -> i32 {
  let period = param(6u); // residue(16)
  let longLength = param(7u); // residue(16): positions per long class
  let longClasses = param(8u); // residue(16): N = short length * period + this
  let shortLength = param(9u); // residue(16): positions per short class
  if (i >= 4096u) { return -1; }
  let longSpan = longClasses * longLength;
  if (i < longSpan) {
    return i32(i / longLength + (i % longLength) * period);
  }
  let j = i - longSpan;
  return i32(longClasses + j / shortLength + (j % shortLength) * period);
}

fn allowed1(q: i32, k: i32) -> bool {
  let period10 = param(10u); // stride(16)
  let left11 = signedParam(11u); // window(15,0)
  let right12 = signedParam(12u); // window(15,0)
  let own = u32(abs(q - k)) % period10 == 0u && k <= q;
  // Allowed by earlier component 0: counted there, not here.
  let earlier0 = (k >= q - left11 && k <= q + right12);
  return own && !earlier0;
}

const PAIR_BIT = 0x80000000u;       // an edge pair's second schedule word: B | PAIR_BIT

fn queryPosition(member: u32, i: u32) -> i32 {
  switch member {
    case 0u: { return identityPosition(i); }
    default: { return residuePosition2(i); }
  }
}

fn keyPosition(member: u32, i: u32) -> i32 {
  switch member {
    case 0u: { return identityPosition(i); }
    default: { return residuePosition6(i); }
  }
}

fn allowed(member: u32, q: i32, k: i32) -> bool {
  switch member {
    case 0u: { return allowed0(q, k); }
    default: { return allowed1(q, k); }
  }
}

// The kernel body every kernel's entry point runs (see those at the end).
fn attention(wg: vec3<u32>, lid: u32,
  MEMBER: u32, // its (first) member's layouts and mask
  SCHEDULE_SLOT: u32, // its slot in the schedule header
  PAIRS: bool, // its schedule may start a row with an edge pair (edge_pairs.ts)
  MERGE: bool, // merge into what earlier components wrote (else overwrite)
) {
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
  let slot = 2u + 2u * SCHEDULE_SLOT;
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
  if (PAIRS && run != lastRun) {
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

  let q0 = queryPosition(MEMBER, qTileIndex * TILE_Q + firstRow + 0u);
  let q1 = queryPosition(MEMBER, qTileIndex * TILE_Q + firstRow + 1u);
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
      m0_0 = allowed(MEMBER, q0, k0);
      m0_1 = allowed(MEMBER, q0, k1);
      m0_2 = allowed(MEMBER, q0, k2);
      m0_3 = allowed(MEMBER, q0, k3);
      m1_0 = allowed(MEMBER, q1, k0);
      m1_1 = allowed(MEMBER, q1, k1);
      m1_2 = allowed(MEMBER, q1, k2);
      m1_3 = allowed(MEMBER, q1, k3);
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
      let k = keyPosition(MEMBER, nextStart + i / D4);
      let src = kvBase + u32(k) * D4 + i % D4;
      nextK0 = kIn[src];
      nextV0 = vIn[src];
      nextPos0 = k;
    }
    {
      let i = lid + 256u;
      let k = keyPosition(MEMBER, nextStart + i / D4);
      let src = kvBase + u32(k) * D4 + i % D4;
      nextK1 = kIn[src];
      nextV1 = vIn[src];
      nextPos1 = k;
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
        let k = keyPosition(MEMBER, nextStart + i / D4);
        let src = kvBase + u32(k) * D4 + i % D4;
        nextK0 = kIn[src];
        nextV0 = vIn[src];
        nextPos0 = k;
      }
      {
        let i = lid + 256u;
        let k = keyPosition(MEMBER, nextStart + i / D4);
        let src = kvBase + u32(k) * D4 + i % D4;
        nextK1 = kIn[src];
        nextV1 = vIn[src];
        nextPos1 = k;
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
      let k0 = kPosition[col + 0u];
      let k1 = kPosition[col + 8u];
      let k2 = kPosition[col + 16u];
      let k3 = kPosition[col + 24u];
      m0_0 = allowed(MEMBER, q0, k0);
      m0_1 = allowed(MEMBER, q0, k1);
      m0_2 = allowed(MEMBER, q0, k2);
      m0_3 = allowed(MEMBER, q0, k3);
      m1_0 = allowed(MEMBER, q1, k0);
      m1_1 = allowed(MEMBER, q1, k1);
      m1_2 = allowed(MEMBER, q1, k2);
      m1_3 = allowed(MEMBER, q1, k3);
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
  var earlier0 = 0.0;
  var earlier1 = 0.0;
  if (MERGE) {
    earlier0 = lseOut[0u + bh * N + u32(max(q0, 0))];
    earlier1 = lseOut[0u + bh * N + u32(max(q1, 0))];
  }
  workgroupBarrier();
  if (q0 >= 0) {
    var total = 0.0;
    for (var c = 0u; c < COLS; c++) { total += rowShare[(firstRow + 0u) * COLS + c]; }
    let row = 0u + bh * N + u32(q0);
    let outBase = 0u + (bh * N + u32(q0)) * D4;
    if (MERGE) {
      if (total > 0.0) {                // else keep what earlier components wrote
        let lse = (rowMax0 + log2(total)) * LN2;
        let merged = max(earlier0, lse) + log(1.0 + exp(-abs(earlier0 - lse)));
        let wEarlier = exp(earlier0 - merged); // 0 when earlier components allowed nothing (-inf)
        let wOwn = exp(lse - merged) / total;
        oOut[outBase + col + 0u] = wEarlier * oOut[outBase + col + 0u] + wOwn * acc0_0;
        oOut[outBase + col + 8u] = wEarlier * oOut[outBase + col + 8u] + wOwn * acc0_1;
        if (col == 0u) { lseOut[row] = merged; }
      }
    } else {
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
  }
  if (q1 >= 0) {
    var total = 0.0;
    for (var c = 0u; c < COLS; c++) { total += rowShare[(firstRow + 1u) * COLS + c]; }
    let row = 0u + bh * N + u32(q1);
    let outBase = 0u + (bh * N + u32(q1)) * D4;
    if (MERGE) {
      if (total > 0.0) {                // else keep what earlier components wrote
        let lse = (rowMax1 + log2(total)) * LN2;
        let merged = max(earlier1, lse) + log(1.0 + exp(-abs(earlier1 - lse)));
        let wEarlier = exp(earlier1 - merged); // 0 when earlier components allowed nothing (-inf)
        let wOwn = exp(lse - merged) / total;
        oOut[outBase + col + 0u] = wEarlier * oOut[outBase + col + 0u] + wOwn * acc1_0;
        oOut[outBase + col + 8u] = wEarlier * oOut[outBase + col + 8u] + wOwn * acc1_1;
        if (col == 0u) { lseOut[row] = merged; }
      }
    } else {
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
}

// One entry point per kernel: the body with that kernel's settings as constant arguments
// (MEMBER, SCHEDULE_SLOT, PAIRS, MERGE), which the driver inlines and folds.
@compute @workgroup_size(256)
fn kernel0(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  attention(wg, lid, 0u, 0u, true, false);
}

@compute @workgroup_size(256)
fn kernel1(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  attention(wg, lid, 1u, 1u, false, true);
}

