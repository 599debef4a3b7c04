// ==== module 0 ====
// Weft attention kernel shared by 2 kernel(s) over 4 components (entry point kernelI runs kernel I):
// kernel 0: union(window(192,192), global(64 tokens), random(3x128)), branch 0 components 0+1+2
// kernel 1: union(window(192,192), global(64 tokens), random(3x128)), branch 0 component 3, key tiles in 7 chunks
// member 0 (kernel 0): allowed: window(192,192); layouts: q identity, k identity
// member 1 (kernel 0): allowed: random(3x128,seed 1), minus 1 earlier component(s); layouts: q identity, k identity
// member 2 (kernel 0): allowed: globalCols(64 tokens), minus 2 earlier component(s); layouts: q identity, k identity
// member 3 (kernel 1): allowed: globalRows(64 tokens), minus 3 earlier component(s); layouts: q gather(64), k identity
// tile 64x32, workgroup 128, N=4096, D=64, Hq=8, Hkv=8, float16 products summed in float16 over short chunks, float32 running sums
enable f16;

@group(0) @binding(0) var<storage, read> qIn: array<vec4<f16>>;
@group(0) @binding(1) var<storage, read> kIn: array<vec4<f16>>;
@group(0) @binding(2) var<storage, read> vIn: array<vec4<f16>>;
@group(0) @binding(3) var<storage, read> schedule: array<u32>;
@group(0) @binding(4) var<storage, read> aux: array<u32>;
@group(0) @binding(5) var<storage, read_write> oOut: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> lseOut: array<f32>;

const N = 4096u;
const KV_ROWS = 4096u;     // rows per key/value head in the bound K and V
const D4 = 16u;          // head dim / 4: rows are read as vec4
const HQ = 8u;
const HKV = 8u;
const GROUP = 1u; // query heads per key/value head
const TILE_Q = 64u;
const TILE_K = 32u;
const THREADS = 128u;
const ROWS = 2u;          // query rows per invocation
const COLS = 4u;          // invocations sharing those rows
const KEYS = 8u;          // keys per invocation per tile: col, col + COLS, ...
const DIMS4 = 4u;         // output vec4s per row per invocation
const QK_STRIDE = 17u;     // padded row stride of the Q and K tiles: spreads banks
const P_STRIDE4 = 9u;    // P rows are vec4s of 4 keys, padded by one vec4
const SCORE_SCALE = 0.18033688011112042; // scale * log2(e): scores live in the exp2 domain
const NO_SCORE = -1.0e30;   // below any real score; never reaches exp2 unguarded
const LN2 = 0.6931471805599453;
const BH = 8u;         // batch * query heads

var<workgroup> qTile: array<vec4<f16>, 1088>;
// K for QKᵀ, then P for P·V: K is dead once the scores are in registers, and a barrier
// separates the two, so they share memory (less workgroup memory, more workgroups per SM).
var<workgroup> kpTile: array<vec4<f16>, 576>;
var<workgroup> vTile: array<vec4<f16>, 512>;
var<workgroup> rowShare: array<f32, 256>; // per-column row maxima, then row sums
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
  let left0 = signedParam(0u); // window(192,192)
  let right1 = signedParam(1u); // window(192,192)
  let own = (k >= q - left0 && k <= q + right1);
  return own;
}

// Is key block k / size among the blocks drawn for query block q / size (table in aux)?
fn randomAllows(table: u32, blocks: u32, size: i32, q: i32, k: i32) -> bool {
  let row = table + u32(q / size) * blocks;
  let kb = u32(k / size);
  for (var j = 0u; j < blocks; j++) {
    if (aux[row + j] == kb) { return true; }
  }
  return false;
}

fn param(slot: u32) -> u32 {
  return aux[PARAMS + slot];
}

fn allowed1(q: i32, k: i32) -> bool {
  let table2 = param(2u); // random(3x128,seed 1): aux offset
  let blocks3 = param(3u); // random(3x128,seed 1)
  let blockSize4 = signedParam(4u); // random(3x128,seed 1)
  let left5 = signedParam(5u); // window(192,192)
  let right6 = signedParam(6u); // window(192,192)
  let own = randomAllows(table2, blocks3, blockSize4, q, k);
  // Allowed by earlier component 0: counted there, not here.
  let earlier0 = (k >= q - left5 && k <= q + right6);
  return own && !earlier0;
}

fn inBitset(base: u32, position: i32) -> bool {
  let i = u32(position);
  return ((aux[base + (i >> 5u)] >> (i & 31u)) & 1u) == 1u;
}

fn allowed2(q: i32, k: i32) -> bool {
  let bitset7 = param(7u); // globalCols(64 tokens): aux offset
  let left8 = signedParam(8u); // window(192,192)
  let right9 = signedParam(9u); // window(192,192)
  let table10 = param(10u); // random(3x128,seed 1): aux offset
  let blocks11 = param(11u); // random(3x128,seed 1)
  let blockSize12 = signedParam(12u); // random(3x128,seed 1)
  let own = inBitset(bitset7, k);
  // Allowed by earlier component 0: counted there, not here.
  let earlier0 = (k >= q - left8 && k <= q + right9);
  // Allowed by earlier component 1: counted there, not here.
  let earlier1 = randomAllows(table10, blocks11, blockSize12, q, k);
  return own && !earlier0 && !earlier1;
}

// Gathered layout: 64 token positions, sorted, stored in aux from offset `tokens`.
fn gatherPosition13(i: u32) -> i32 {
  let tokens = param(13u); // gather(64): aux offset
  let count = param(14u); // gather(64): token count
  if (i >= count) { return -1; }
  return i32(aux[tokens + i]);
}

fn allowed3(q: i32, k: i32) -> bool {
  let bitset15 = param(15u); // globalRows(64 tokens): aux offset
  let left16 = signedParam(16u); // window(192,192)
  let right17 = signedParam(17u); // window(192,192)
  let table18 = param(18u); // random(3x128,seed 1): aux offset
  let blocks19 = param(19u); // random(3x128,seed 1)
  let blockSize20 = signedParam(20u); // random(3x128,seed 1)
  let bitset21 = param(21u); // globalCols(64 tokens): aux offset
  let own = inBitset(bitset15, q);
  // Allowed by earlier component 0: counted there, not here.
  let earlier0 = (k >= q - left16 && k <= q + right17);
  // Allowed by earlier component 1: counted there, not here.
  let earlier1 = randomAllows(table18, blocks19, blockSize20, q, k);
  // Allowed by earlier component 2: counted there, not here.
  let earlier2 = inBitset(bitset21, k);
  return own && !earlier0 && !earlier1 && !earlier2;
}

fn queryPosition(member: u32, i: u32) -> i32 {
  switch member {
    case 0u, 1u, 2u: { return identityPosition(i); }
    default: { return gatherPosition13(i); }
  }
}

fn allowed(member: u32, q: i32, k: i32) -> bool {
  switch member {
    case 0u: { return allowed0(q, k); }
    case 1u: { return allowed1(q, k); }
    case 2u: { return allowed2(q, k); }
    default: { return allowed3(q, k); }
  }
}

// The kernel body every kernel's entry point runs (see those at the end).
fn attention(wg: vec3<u32>, lid: u32,
  MEMBER: u32, // its (first) member's layouts and mask
  SCHEDULE_SLOT: u32, // its slot in the schedule header
  FUSED: bool, // its runs name their member (run_fusion.ts)
  SPLIT: bool, // split-K: write a chunk's partial rows for the combine pass
  SPLIT_PARAMS: u32, // slot of its chunk count (partial rows in the next)
) {
  let d4 = D4;
  let tileK = TILE_K;
  // Split-K members (SPLIT) walk chunk `split` of query tile `qTileIndex`; others have one.
  let splits = select(1u, param(SPLIT_PARAMS), SPLIT); // key chunks per query tile
  let splitRows = param(SPLIT_PARAMS + 1u); // partial rows per chunk and head (SPLIT only)
  let scheduleRow = wg.x;
  let qTileIndex = wg.x / splits;
  let split = wg.x % splits;
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
  var run = schedule[rowsAt + scheduleRow];
  let lastRun = schedule[rowsAt + scheduleRow + 1u];
  var keyTile = 0u;
  var runEnd = 0u;
  var runPartial = false;
  var runMember = MEMBER;        // whose mask this run's PARTIAL tiles use
  // The next key tile's K, V and positions, in registers while the current tile is computed;
  // the first one's loads are issued before the query tile is staged.
  var nextK0 = vec4<f16>(0.0);
  var nextV0 = vec4<f16>(0.0);
  var nextPos0 = -1;
  var nextK1 = vec4<f16>(0.0);
  var nextV1 = vec4<f16>(0.0);
  var nextPos1 = -1;
  var nextK2 = vec4<f16>(0.0);
  var nextV2 = vec4<f16>(0.0);
  var nextPos2 = -1;
  var nextK3 = vec4<f16>(0.0);
  var nextV3 = vec4<f16>(0.0);
  var nextPos3 = -1;
  if (keyTile == runEnd && run != lastRun) {
    let runHead = schedule[runsAt + 2u * run]; // kvStart << 1 | partial
    keyTile = runHead >> 1u;
    runPartial = (runHead & 1u) == 1u;
    let runWord = schedule[runsAt + 2u * run + 1u]; // kvLength | member << 24
    runEnd = keyTile + (runWord & 16777215u);
    runMember = MEMBER + select(0u, runWord >> 24u, FUSED);
    run++;
  }
  var hasNext = false;
  var nextStart = 0u;
  var nextPartial = false;
  var nextMember = MEMBER;
  hasNext = keyTile != runEnd;
  nextStart = keyTile * TILE_K;
  nextPartial = runPartial;
  nextMember = runMember;
  if (hasNext) {
    {
      let i = lid + 0u;
      let k = identityPosition(nextStart + i / D4);
      let src = kvBase + u32(max(k, 0)) * D4 + i % D4;
      nextK0 = select(vec4<f16>(0.0), kIn[src], k >= 0);
      nextV0 = select(vec4<f16>(0.0), vIn[src], k >= 0);
      nextPos0 = k;
    }
    {
      let i = lid + 128u;
      let k = identityPosition(nextStart + i / D4);
      let src = kvBase + u32(max(k, 0)) * D4 + i % D4;
      nextK1 = select(vec4<f16>(0.0), kIn[src], k >= 0);
      nextV1 = select(vec4<f16>(0.0), vIn[src], k >= 0);
      nextPos1 = k;
    }
    {
      let i = lid + 256u;
      let k = identityPosition(nextStart + i / D4);
      let src = kvBase + u32(max(k, 0)) * D4 + i % D4;
      nextK2 = select(vec4<f16>(0.0), kIn[src], k >= 0);
      nextV2 = select(vec4<f16>(0.0), vIn[src], k >= 0);
      nextPos2 = k;
    }
    {
      let i = lid + 384u;
      let k = identityPosition(nextStart + i / D4);
      let src = kvBase + u32(max(k, 0)) * D4 + i % D4;
      nextK3 = select(vec4<f16>(0.0), kIn[src], k >= 0);
      nextV3 = select(vec4<f16>(0.0), vIn[src], k >= 0);
      nextPos3 = k;
    }
  }
  // Stage the query tile, pre-scaled, in workgroup memory.
  for (var i = lid; i < TILE_Q * D4; i += THREADS) {
    let r = i / D4;
    let q = queryPosition(MEMBER, qTileIndex * TILE_Q + r);
    let src = (bh * N + u32(max(q, 0))) * D4 + i % D4;
    qTile[r * QK_STRIDE + i % D4] = select(vec4<f16>(0.0), qIn[src] * SCORE_SCALE, q >= 0);
  }
  let q0 = queryPosition(MEMBER, qTileIndex * TILE_Q + firstRow + 0u);
  let q1 = queryPosition(MEMBER, qTileIndex * TILE_Q + firstRow + 1u);
  var rowMax0 = NO_SCORE;
  var rowMax1 = NO_SCORE;
  // Row sums are this invocation's share; the shares are added over columns at the end.
  var rowSum0 = 0.0;
  var rowSum1 = 0.0;
  var acc0_0 = vec4<f32>(0.0);
  var acc0_1 = vec4<f32>(0.0);
  var acc0_2 = vec4<f32>(0.0);
  var acc0_3 = vec4<f32>(0.0);
  var acc1_0 = vec4<f32>(0.0);
  var acc1_1 = vec4<f32>(0.0);
  var acc1_2 = vec4<f32>(0.0);
  var acc1_3 = vec4<f32>(0.0);

  loop {
    if (!hasNext) { break; }
    let isPartial = nextPartial;
    let tileMember = nextMember;
    workgroupBarrier();               // every read of the previous tile is done
    {
      let i = lid + 0u;
      let j = i / D4;
      if (i % D4 == 0u) { kPosition[j] = nextPos0; }
      kpTile[j * QK_STRIDE + i % D4] = nextK0;
      vTile[i] = nextV0;
    }
    {
      let i = lid + 128u;
      let j = i / D4;
      if (i % D4 == 0u) { kPosition[j] = nextPos1; }
      kpTile[j * QK_STRIDE + i % D4] = nextK1;
      vTile[i] = nextV1;
    }
    {
      let i = lid + 256u;
      let j = i / D4;
      if (i % D4 == 0u) { kPosition[j] = nextPos2; }
      kpTile[j * QK_STRIDE + i % D4] = nextK2;
      vTile[i] = nextV2;
    }
    {
      let i = lid + 384u;
      let j = i / D4;
      if (i % D4 == 0u) { kPosition[j] = nextPos3; }
      kpTile[j * QK_STRIDE + i % D4] = nextK3;
      vTile[i] = nextV3;
    }
    workgroupBarrier();
    keyTile++;
    if (keyTile == runEnd && run != lastRun) {
      let runHead = schedule[runsAt + 2u * run]; // kvStart << 1 | partial
      keyTile = runHead >> 1u;
      runPartial = (runHead & 1u) == 1u;
      let runWord = schedule[runsAt + 2u * run + 1u]; // kvLength | member << 24
      runEnd = keyTile + (runWord & 16777215u);
      runMember = MEMBER + select(0u, runWord >> 24u, FUSED);
      run++;
    }
    hasNext = keyTile != runEnd;
    nextStart = keyTile * TILE_K;
    nextPartial = runPartial;
    nextMember = runMember;
    if (hasNext) {
      {
        let i = lid + 0u;
        let k = identityPosition(nextStart + i / D4);
        let src = kvBase + u32(max(k, 0)) * D4 + i % D4;
        nextK0 = select(vec4<f16>(0.0), kIn[src], k >= 0);
        nextV0 = select(vec4<f16>(0.0), vIn[src], k >= 0);
        nextPos0 = k;
      }
      {
        let i = lid + 128u;
        let k = identityPosition(nextStart + i / D4);
        let src = kvBase + u32(max(k, 0)) * D4 + i % D4;
        nextK1 = select(vec4<f16>(0.0), kIn[src], k >= 0);
        nextV1 = select(vec4<f16>(0.0), vIn[src], k >= 0);
        nextPos1 = k;
      }
      {
        let i = lid + 256u;
        let k = identityPosition(nextStart + i / D4);
        let src = kvBase + u32(max(k, 0)) * D4 + i % D4;
        nextK2 = select(vec4<f16>(0.0), kIn[src], k >= 0);
        nextV2 = select(vec4<f16>(0.0), vIn[src], k >= 0);
        nextPos2 = k;
      }
      {
        let i = lid + 384u;
        let k = identityPosition(nextStart + i / D4);
        let src = kvBase + u32(max(k, 0)) * D4 + i % D4;
        nextK3 = select(vec4<f16>(0.0), kIn[src], k >= 0);
        nextV3 = select(vec4<f16>(0.0), vIn[src], k >= 0);
        nextPos3 = k;
      }
    }


    // Mask first (PARTIAL tiles only): an invocation none of whose pairs is allowed skips its
    // dot products, and a warp whose rows all miss this tile (a band's corner) skips the work.
    let k0 = kPosition[col + 0u];
    let k1 = kPosition[col + 4u];
    let k2 = kPosition[col + 8u];
    let k3 = kPosition[col + 12u];
    let k4 = kPosition[col + 16u];
    let k5 = kPosition[col + 20u];
    let k6 = kPosition[col + 24u];
    let k7 = kPosition[col + 28u];
    let m0_0 = q0 >= 0 && k0 >= 0 && (!isPartial || allowed(tileMember, q0, k0));
    let m0_1 = q0 >= 0 && k1 >= 0 && (!isPartial || allowed(tileMember, q0, k1));
    let m0_2 = q0 >= 0 && k2 >= 0 && (!isPartial || allowed(tileMember, q0, k2));
    let m0_3 = q0 >= 0 && k3 >= 0 && (!isPartial || allowed(tileMember, q0, k3));
    let m0_4 = q0 >= 0 && k4 >= 0 && (!isPartial || allowed(tileMember, q0, k4));
    let m0_5 = q0 >= 0 && k5 >= 0 && (!isPartial || allowed(tileMember, q0, k5));
    let m0_6 = q0 >= 0 && k6 >= 0 && (!isPartial || allowed(tileMember, q0, k6));
    let m0_7 = q0 >= 0 && k7 >= 0 && (!isPartial || allowed(tileMember, q0, k7));
    let m1_0 = q1 >= 0 && k0 >= 0 && (!isPartial || allowed(tileMember, q1, k0));
    let m1_1 = q1 >= 0 && k1 >= 0 && (!isPartial || allowed(tileMember, q1, k1));
    let m1_2 = q1 >= 0 && k2 >= 0 && (!isPartial || allowed(tileMember, q1, k2));
    let m1_3 = q1 >= 0 && k3 >= 0 && (!isPartial || allowed(tileMember, q1, k3));
    let m1_4 = q1 >= 0 && k4 >= 0 && (!isPartial || allowed(tileMember, q1, k4));
    let m1_5 = q1 >= 0 && k5 >= 0 && (!isPartial || allowed(tileMember, q1, k5));
    let m1_6 = q1 >= 0 && k6 >= 0 && (!isPartial || allowed(tileMember, q1, k6));
    let m1_7 = q1 >= 0 && k7 >= 0 && (!isPartial || allowed(tileMember, q1, k7));
    let anyAllowed = m0_0 || m0_1 || m0_2 || m0_3 || m0_4 || m0_5 || m0_6 || m0_7 || m1_0 || m1_1 || m1_2 || m1_3 || m1_4 || m1_5 || m1_6 || m1_7;
    // Scores: a ROWS x KEYS register tile; half products per chunk, float32 across chunks.
    var s0_0 = 0.0;
    var s0_1 = 0.0;
    var s0_2 = 0.0;
    var s0_3 = 0.0;
    var s0_4 = 0.0;
    var s0_5 = 0.0;
    var s0_6 = 0.0;
    var s0_7 = 0.0;
    var s1_0 = 0.0;
    var s1_1 = 0.0;
    var s1_2 = 0.0;
    var s1_3 = 0.0;
    var s1_4 = 0.0;
    var s1_5 = 0.0;
    var s1_6 = 0.0;
    var s1_7 = 0.0;
    if (anyAllowed) {
      for (var d0 = 0u; d0 < d4; d0 += 16u) {
        var h0_0 = vec4<f16>(0.0);
        var h0_1 = vec4<f16>(0.0);
        var h0_2 = vec4<f16>(0.0);
        var h0_3 = vec4<f16>(0.0);
        var h0_4 = vec4<f16>(0.0);
        var h0_5 = vec4<f16>(0.0);
        var h0_6 = vec4<f16>(0.0);
        var h0_7 = vec4<f16>(0.0);
        var h1_0 = vec4<f16>(0.0);
        var h1_1 = vec4<f16>(0.0);
        var h1_2 = vec4<f16>(0.0);
        var h1_3 = vec4<f16>(0.0);
        var h1_4 = vec4<f16>(0.0);
        var h1_5 = vec4<f16>(0.0);
        var h1_6 = vec4<f16>(0.0);
        var h1_7 = vec4<f16>(0.0);
        for (var d = d0; d < min(d0 + 16u, d4); d++) {
          let qv0 = qTile[(firstRow + 0u) * QK_STRIDE + d];
          let qv1 = qTile[(firstRow + 1u) * QK_STRIDE + d];
          let kv0 = kpTile[(col + 0u) * QK_STRIDE + d];
          let kv1 = kpTile[(col + 4u) * QK_STRIDE + d];
          let kv2 = kpTile[(col + 8u) * QK_STRIDE + d];
          let kv3 = kpTile[(col + 12u) * QK_STRIDE + d];
          let kv4 = kpTile[(col + 16u) * QK_STRIDE + d];
          let kv5 = kpTile[(col + 20u) * QK_STRIDE + d];
          let kv6 = kpTile[(col + 24u) * QK_STRIDE + d];
          let kv7 = kpTile[(col + 28u) * QK_STRIDE + d];
          h0_0 = fma(qv0, kv0, h0_0);
          h0_1 = fma(qv0, kv1, h0_1);
          h0_2 = fma(qv0, kv2, h0_2);
          h0_3 = fma(qv0, kv3, h0_3);
          h0_4 = fma(qv0, kv4, h0_4);
          h0_5 = fma(qv0, kv5, h0_5);
          h0_6 = fma(qv0, kv6, h0_6);
          h0_7 = fma(qv0, kv7, h0_7);
          h1_0 = fma(qv1, kv0, h1_0);
          h1_1 = fma(qv1, kv1, h1_1);
          h1_2 = fma(qv1, kv2, h1_2);
          h1_3 = fma(qv1, kv3, h1_3);
          h1_4 = fma(qv1, kv4, h1_4);
          h1_5 = fma(qv1, kv5, h1_5);
          h1_6 = fma(qv1, kv6, h1_6);
          h1_7 = fma(qv1, kv7, h1_7);
        }
        let pair0_0 = h0_0.xy + h0_0.zw;
        s0_0 += f32(pair0_0.x) + f32(pair0_0.y);
        let pair0_1 = h0_1.xy + h0_1.zw;
        s0_1 += f32(pair0_1.x) + f32(pair0_1.y);
        let pair0_2 = h0_2.xy + h0_2.zw;
        s0_2 += f32(pair0_2.x) + f32(pair0_2.y);
        let pair0_3 = h0_3.xy + h0_3.zw;
        s0_3 += f32(pair0_3.x) + f32(pair0_3.y);
        let pair0_4 = h0_4.xy + h0_4.zw;
        s0_4 += f32(pair0_4.x) + f32(pair0_4.y);
        let pair0_5 = h0_5.xy + h0_5.zw;
        s0_5 += f32(pair0_5.x) + f32(pair0_5.y);
        let pair0_6 = h0_6.xy + h0_6.zw;
        s0_6 += f32(pair0_6.x) + f32(pair0_6.y);
        let pair0_7 = h0_7.xy + h0_7.zw;
        s0_7 += f32(pair0_7.x) + f32(pair0_7.y);
        let pair1_0 = h1_0.xy + h1_0.zw;
        s1_0 += f32(pair1_0.x) + f32(pair1_0.y);
        let pair1_1 = h1_1.xy + h1_1.zw;
        s1_1 += f32(pair1_1.x) + f32(pair1_1.y);
        let pair1_2 = h1_2.xy + h1_2.zw;
        s1_2 += f32(pair1_2.x) + f32(pair1_2.y);
        let pair1_3 = h1_3.xy + h1_3.zw;
        s1_3 += f32(pair1_3.x) + f32(pair1_3.y);
        let pair1_4 = h1_4.xy + h1_4.zw;
        s1_4 += f32(pair1_4.x) + f32(pair1_4.y);
        let pair1_5 = h1_5.xy + h1_5.zw;
        s1_5 += f32(pair1_5.x) + f32(pair1_5.y);
        let pair1_6 = h1_6.xy + h1_6.zw;
        s1_6 += f32(pair1_6.x) + f32(pair1_6.y);
        let pair1_7 = h1_7.xy + h1_7.zw;
        s1_7 += f32(pair1_7.x) + f32(pair1_7.y);
      }
    }
    // This column's share of each row's max.
    s0_0 = select(NO_SCORE, s0_0, m0_0);
    s0_1 = select(NO_SCORE, s0_1, m0_1);
    s0_2 = select(NO_SCORE, s0_2, m0_2);
    s0_3 = select(NO_SCORE, s0_3, m0_3);
    s0_4 = select(NO_SCORE, s0_4, m0_4);
    s0_5 = select(NO_SCORE, s0_5, m0_5);
    s0_6 = select(NO_SCORE, s0_6, m0_6);
    s0_7 = select(NO_SCORE, s0_7, m0_7);
    s1_0 = select(NO_SCORE, s1_0, m1_0);
    s1_1 = select(NO_SCORE, s1_1, m1_1);
    s1_2 = select(NO_SCORE, s1_2, m1_2);
    s1_3 = select(NO_SCORE, s1_3, m1_3);
    s1_4 = select(NO_SCORE, s1_4, m1_4);
    s1_5 = select(NO_SCORE, s1_5, m1_5);
    s1_6 = select(NO_SCORE, s1_6, m1_6);
    s1_7 = select(NO_SCORE, s1_7, m1_7);
    rowShare[(firstRow + 0u) * COLS + col] = max(s0_0, max(s0_1, max(s0_2, max(s0_3, max(s0_4, max(s0_5, max(s0_6, s0_7)))))));
    rowShare[(firstRow + 1u) * COLS + col] = max(s1_0, max(s1_1, max(s1_2, max(s1_3, max(s1_4, max(s1_5, max(s1_6, s1_7)))))));
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
      let p4 = select(0.0, exp2(s0_4 - newMax), s0_4 > NO_SCORE);
      let p5 = select(0.0, exp2(s0_5 - newMax), s0_5 > NO_SCORE);
      let p6 = select(0.0, exp2(s0_6 - newMax), s0_6 > NO_SCORE);
      let p7 = select(0.0, exp2(s0_7 - newMax), s0_7 > NO_SCORE);
      rowSum0 = rowSum0 * rescale + p0 + p1 + p2 + p3 + p4 + p5 + p6 + p7;
      acc0_0 *= rescale;
      acc0_1 *= rescale;
      acc0_2 *= rescale;
      acc0_3 *= rescale;
      kpTile[(firstRow + 0u) * P_STRIDE4 + (col + 0u) / 4u][(col + 0u) % 4u] = f16(p0);
      kpTile[(firstRow + 0u) * P_STRIDE4 + (col + 4u) / 4u][(col + 4u) % 4u] = f16(p1);
      kpTile[(firstRow + 0u) * P_STRIDE4 + (col + 8u) / 4u][(col + 8u) % 4u] = f16(p2);
      kpTile[(firstRow + 0u) * P_STRIDE4 + (col + 12u) / 4u][(col + 12u) % 4u] = f16(p3);
      kpTile[(firstRow + 0u) * P_STRIDE4 + (col + 16u) / 4u][(col + 16u) % 4u] = f16(p4);
      kpTile[(firstRow + 0u) * P_STRIDE4 + (col + 20u) / 4u][(col + 20u) % 4u] = f16(p5);
      kpTile[(firstRow + 0u) * P_STRIDE4 + (col + 24u) / 4u][(col + 24u) % 4u] = f16(p6);
      kpTile[(firstRow + 0u) * P_STRIDE4 + (col + 28u) / 4u][(col + 28u) % 4u] = f16(p7);
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
      let p4 = select(0.0, exp2(s1_4 - newMax), s1_4 > NO_SCORE);
      let p5 = select(0.0, exp2(s1_5 - newMax), s1_5 > NO_SCORE);
      let p6 = select(0.0, exp2(s1_6 - newMax), s1_6 > NO_SCORE);
      let p7 = select(0.0, exp2(s1_7 - newMax), s1_7 > NO_SCORE);
      rowSum1 = rowSum1 * rescale + p0 + p1 + p2 + p3 + p4 + p5 + p6 + p7;
      acc1_0 *= rescale;
      acc1_1 *= rescale;
      acc1_2 *= rescale;
      acc1_3 *= rescale;
      kpTile[(firstRow + 1u) * P_STRIDE4 + (col + 0u) / 4u][(col + 0u) % 4u] = f16(p0);
      kpTile[(firstRow + 1u) * P_STRIDE4 + (col + 4u) / 4u][(col + 4u) % 4u] = f16(p1);
      kpTile[(firstRow + 1u) * P_STRIDE4 + (col + 8u) / 4u][(col + 8u) % 4u] = f16(p2);
      kpTile[(firstRow + 1u) * P_STRIDE4 + (col + 12u) / 4u][(col + 12u) % 4u] = f16(p3);
      kpTile[(firstRow + 1u) * P_STRIDE4 + (col + 16u) / 4u][(col + 16u) % 4u] = f16(p4);
      kpTile[(firstRow + 1u) * P_STRIDE4 + (col + 20u) / 4u][(col + 20u) % 4u] = f16(p5);
      kpTile[(firstRow + 1u) * P_STRIDE4 + (col + 24u) / 4u][(col + 24u) % 4u] = f16(p6);
      kpTile[(firstRow + 1u) * P_STRIDE4 + (col + 28u) / 4u][(col + 28u) % 4u] = f16(p7);
    }
    workgroupBarrier();
    // O += P V: a ROWS x DIMS4 register tile; half products per chunk of keys, float32 across.
    // Rows with no allowed key in this tile add nothing.
    if (rowsLive) {
      for (var c0 = 0u; c0 < tileK / 4u; c0 += 16u) {
        var pv0_0 = vec4<f16>(0.0);
        var pv0_1 = vec4<f16>(0.0);
        var pv0_2 = vec4<f16>(0.0);
        var pv0_3 = vec4<f16>(0.0);
        var pv1_0 = vec4<f16>(0.0);
        var pv1_1 = vec4<f16>(0.0);
        var pv1_2 = vec4<f16>(0.0);
        var pv1_3 = vec4<f16>(0.0);
        for (var j4 = c0; j4 < min(c0 + 16u, tileK / 4u); j4++) {
          let p0 = kpTile[(firstRow + 0u) * P_STRIDE4 + j4];
          let p1 = kpTile[(firstRow + 1u) * P_STRIDE4 + j4];
          let v0_0 = vTile[(j4 * 4u + 0u) * D4 + col + 0u];
          let v0_1 = vTile[(j4 * 4u + 0u) * D4 + col + 4u];
          let v0_2 = vTile[(j4 * 4u + 0u) * D4 + col + 8u];
          let v0_3 = vTile[(j4 * 4u + 0u) * D4 + col + 12u];
          let v1_0 = vTile[(j4 * 4u + 1u) * D4 + col + 0u];
          let v1_1 = vTile[(j4 * 4u + 1u) * D4 + col + 4u];
          let v1_2 = vTile[(j4 * 4u + 1u) * D4 + col + 8u];
          let v1_3 = vTile[(j4 * 4u + 1u) * D4 + col + 12u];
          let v2_0 = vTile[(j4 * 4u + 2u) * D4 + col + 0u];
          let v2_1 = vTile[(j4 * 4u + 2u) * D4 + col + 4u];
          let v2_2 = vTile[(j4 * 4u + 2u) * D4 + col + 8u];
          let v2_3 = vTile[(j4 * 4u + 2u) * D4 + col + 12u];
          let v3_0 = vTile[(j4 * 4u + 3u) * D4 + col + 0u];
          let v3_1 = vTile[(j4 * 4u + 3u) * D4 + col + 4u];
          let v3_2 = vTile[(j4 * 4u + 3u) * D4 + col + 8u];
          let v3_3 = vTile[(j4 * 4u + 3u) * D4 + col + 12u];
          pv0_0 = fma(vec4<f16>(p0.x), v0_0, pv0_0);
          pv0_1 = fma(vec4<f16>(p0.x), v0_1, pv0_1);
          pv0_2 = fma(vec4<f16>(p0.x), v0_2, pv0_2);
          pv0_3 = fma(vec4<f16>(p0.x), v0_3, pv0_3);
          pv1_0 = fma(vec4<f16>(p1.x), v0_0, pv1_0);
          pv1_1 = fma(vec4<f16>(p1.x), v0_1, pv1_1);
          pv1_2 = fma(vec4<f16>(p1.x), v0_2, pv1_2);
          pv1_3 = fma(vec4<f16>(p1.x), v0_3, pv1_3);
          pv0_0 = fma(vec4<f16>(p0.y), v1_0, pv0_0);
          pv0_1 = fma(vec4<f16>(p0.y), v1_1, pv0_1);
          pv0_2 = fma(vec4<f16>(p0.y), v1_2, pv0_2);
          pv0_3 = fma(vec4<f16>(p0.y), v1_3, pv0_3);
          pv1_0 = fma(vec4<f16>(p1.y), v1_0, pv1_0);
          pv1_1 = fma(vec4<f16>(p1.y), v1_1, pv1_1);
          pv1_2 = fma(vec4<f16>(p1.y), v1_2, pv1_2);
          pv1_3 = fma(vec4<f16>(p1.y), v1_3, pv1_3);
          pv0_0 = fma(vec4<f16>(p0.z), v2_0, pv0_0);
          pv0_1 = fma(vec4<f16>(p0.z), v2_1, pv0_1);
          pv0_2 = fma(vec4<f16>(p0.z), v2_2, pv0_2);
          pv0_3 = fma(vec4<f16>(p0.z), v2_3, pv0_3);
          pv1_0 = fma(vec4<f16>(p1.z), v2_0, pv1_0);
          pv1_1 = fma(vec4<f16>(p1.z), v2_1, pv1_1);
          pv1_2 = fma(vec4<f16>(p1.z), v2_2, pv1_2);
          pv1_3 = fma(vec4<f16>(p1.z), v2_3, pv1_3);
          pv0_0 = fma(vec4<f16>(p0.w), v3_0, pv0_0);
          pv0_1 = fma(vec4<f16>(p0.w), v3_1, pv0_1);
          pv0_2 = fma(vec4<f16>(p0.w), v3_2, pv0_2);
          pv0_3 = fma(vec4<f16>(p0.w), v3_3, pv0_3);
          pv1_0 = fma(vec4<f16>(p1.w), v3_0, pv1_0);
          pv1_1 = fma(vec4<f16>(p1.w), v3_1, pv1_1);
          pv1_2 = fma(vec4<f16>(p1.w), v3_2, pv1_2);
          pv1_3 = fma(vec4<f16>(p1.w), v3_3, pv1_3);
        }
        acc0_0 += vec4<f32>(pv0_0);
        acc0_1 += vec4<f32>(pv0_1);
        acc0_2 += vec4<f32>(pv0_2);
        acc0_3 += vec4<f32>(pv0_3);
        acc1_0 += vec4<f32>(pv1_0);
        acc1_1 += vec4<f32>(pv1_1);
        acc1_2 += vec4<f32>(pv1_2);
        acc1_3 += vec4<f32>(pv1_3);
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
    var row = 0u + bh * N + u32(q0);
    var outBase = 0u + (bh * N + u32(q0)) * D4;
    if (SPLIT) {                      // a chunk's partial row, for the combine pass
      row = (split * BH + bh) * splitRows + qTileIndex * TILE_Q + firstRow + 0u;
      outBase = row * D4;
    }
    if (total == 0.0) {               // nothing allowed: O = 0, LSE = -inf
      if (col == 0u) { lseOut[row] = negativeInfinity(); }
      oOut[outBase + col + 0u] = vec4<f32>(0.0);
      oOut[outBase + col + 4u] = vec4<f32>(0.0);
      oOut[outBase + col + 8u] = vec4<f32>(0.0);
      oOut[outBase + col + 12u] = vec4<f32>(0.0);
    } else {
      if (col == 0u) { lseOut[row] = (rowMax0 + log2(total)) * LN2; }
      oOut[outBase + col + 0u] = acc0_0 / total;
      oOut[outBase + col + 4u] = acc0_1 / total;
      oOut[outBase + col + 8u] = acc0_2 / total;
      oOut[outBase + col + 12u] = acc0_3 / total;
    }
  }
  if (q1 >= 0) {
    var total = 0.0;
    for (var c = 0u; c < COLS; c++) { total += rowShare[(firstRow + 1u) * COLS + c]; }
    var row = 0u + bh * N + u32(q1);
    var outBase = 0u + (bh * N + u32(q1)) * D4;
    if (SPLIT) {                      // a chunk's partial row, for the combine pass
      row = (split * BH + bh) * splitRows + qTileIndex * TILE_Q + firstRow + 1u;
      outBase = row * D4;
    }
    if (total == 0.0) {               // nothing allowed: O = 0, LSE = -inf
      if (col == 0u) { lseOut[row] = negativeInfinity(); }
      oOut[outBase + col + 0u] = vec4<f32>(0.0);
      oOut[outBase + col + 4u] = vec4<f32>(0.0);
      oOut[outBase + col + 8u] = vec4<f32>(0.0);
      oOut[outBase + col + 12u] = vec4<f32>(0.0);
    } else {
      if (col == 0u) { lseOut[row] = (rowMax1 + log2(total)) * LN2; }
      oOut[outBase + col + 0u] = acc1_0 / total;
      oOut[outBase + col + 4u] = acc1_1 / total;
      oOut[outBase + col + 8u] = acc1_2 / total;
      oOut[outBase + col + 12u] = acc1_3 / total;
    }
  }
}

// One entry point per kernel: the body with that kernel's settings as constant arguments
// (MEMBER, SCHEDULE_SLOT, FUSED, SPLIT, SPLIT_PARAMS), which the driver inlines and folds.
@compute @workgroup_size(128)
fn kernel0(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  attention(wg, lid, 0u, 0u, true, false, 0u);
}

@compute @workgroup_size(128)
fn kernel1(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  attention(wg, lid, 3u, 1u, false, true, 22u);
}


// ==== module 1 ====
// Weft split-K combine: union(window(192,192), global(64 tokens), random(3x128)), branch 0 component 3
// each query row's key chunks merged by log-sum-exp

@group(0) @binding(0) var<storage, read> splitO: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> splitLse: array<f32>;
@group(0) @binding(2) var<storage, read> aux: array<u32>;
@group(0) @binding(3) var<storage, read_write> oOut: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> lseOut: array<f32>;

const N = 4096u;
const D4 = 16u;
const BH = 8u;

fn linearIndex(wg: vec3<u32>, lid: u32, groupsX: u32) -> u32 {
  return (wg.y * groupsX + wg.x) * 256u + lid;
}

// WGSL has no infinity literal; LSE of an empty row is -inf (DESIGN §1). The bits are a
// `let`: Tint (Dawn) refuses a constant expression whose value is infinite.
fn negativeInfinity() -> f32 {
  let bits = 0xff800000u;
  return bitcast<f32>(bits);
}

// This kernel's pattern parameters start at aux[PARAMS]: runtime values, so a pattern of the
// same structure with other numbers runs on the same pipeline.
const PARAMS = 24u;

fn param(slot: u32) -> u32 {
  return aux[PARAMS + slot];
}

// Gathered layout: 64 token positions, sorted, stored in aux from offset `tokens`.
fn gatherPosition0(i: u32) -> i32 {
  let tokens = param(0u); // gather(64): aux offset
  let count = param(1u); // gather(64): token count
  if (i >= count) { return -1; }
  return i32(aux[tokens + i]);
}

@compute @workgroup_size(256)
fn main(
  @builtin(workgroup_id) wg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
  @builtin(num_workgroups) groups: vec3<u32>, // the dispatch follows the token count
) {
  let splits = param(2u); // key chunks per query row
  let splitRows = param(3u); // partial rows per chunk and head
  let index = linearIndex(wg, lid, groups.x);
  if (index >= BH * splitRows) { return; }
  let bh = index / splitRows;
  let i = index % splitRows;
  let q = gatherPosition0(i);
  if (q < 0) { return; }
  let row = 0u + bh * N + u32(q);
  let outBase = 0u + (bh * N + u32(q)) * D4;
  var most = negativeInfinity();
  for (var s = 0u; s < splits; s++) { most = max(most, splitLse[(s * BH + bh) * splitRows + i]); }
  if (most == negativeInfinity()) { return; } // no chunk allowed anything: keep earlier rows
  var sum = 0.0;
  for (var s = 0u; s < splits; s++) { sum += exp(splitLse[(s * BH + bh) * splitRows + i] - most); }
  let lse = most + log(sum);
  // Merge with what earlier components wrote (a clear pass or a component always ran first):
  // weight 0 for -inf on either side.
  let earlier = lseOut[row];
  let merged = max(earlier, lse) + log(1.0 + exp(-abs(earlier - lse)));
  let wEarlier = exp(earlier - merged);
  let wOwn = exp(lse - merged);
  for (var d = 0u; d < D4; d++) {
    var acc = vec4<f32>(0.0);
    for (var s = 0u; s < splits; s++) {
      let part = (s * BH + bh) * splitRows + i;
      acc += exp(splitLse[part] - lse) * splitO[part * D4 + d];
    }
    oOut[outBase + d] = wEarlier * oOut[outBase + d] + wOwn * acc;
  }
  lseOut[row] = merged;
}


// ==== module 2 ====
// Weft cast: O float32 -> float16
enable f16;

@group(0) @binding(0) var<storage, read> oIn: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> oOut: array<vec4<f16>>;

fn linearIndex(wg: vec3<u32>, lid: u32, groupsX: u32) -> u32 {
  return (wg.y * groupsX + wg.x) * 256u + lid;
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = linearIndex(wg, lid, 2048u);
  if (i >= 524288u) { return; }
  oOut[i] = vec4<f16>(oIn[i]);
}

