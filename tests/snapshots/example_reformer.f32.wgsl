// ==== module 0 ====
// Weft hashBucket pre-pass (seed 2020, 32 buckets, 4 round(s), N=4096): bucket codes of Q and K

@group(0) @binding(0) var<storage, read> qIn: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> kIn: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> hash: array<u32>;

// DESIGN §2's 32-bit hash; u32 arithmetic wraps like Math.imul.
fn lowbias32(v: u32) -> u32 {
  var x = v;
  x ^= x >> 16u;
  x *= 0x7feb352du;
  x ^= x >> 15u;
  x *= 0x846ca68bu;
  x ^= x >> 16u;
  return x;
}

// vec4 d of the query (row < ROWS_Q) or key row's vector at a position, in float32.
fn rowVector(row: u32, position: u32, d: u32) -> vec4<f32> {
  if (row < ROWS_Q) { return vec4<f32>(qIn[(row * N + position) * D4 + d]); }
  return vec4<f32>(kIn[((row - ROWS_Q) * N + position) * D4 + d]);
}

const N = 4096u;
const BUCKETS = 32u;
const CHUNKS = 16u;      // histogram chunks of 256 rows per sort
const CODES = 0u;        // word offsets into the hash buffer (hash_layout.ts)
const ORDER = 131072u;
const STARTS = 262144u;
const COUNTS = 0u;      // word offset into the hashCounts buffer
const SEED = 2020u;
const NBITS = 5u;
const D4 = 16u;
const ROWS_Q = 4u;       // sorts of a round: ROWS_Q query rows, then the key rows
const ROWS = 8u;
const TILE = 55u;              // positions per workgroup
const STRIDE = 17u;          // padded row stride of the staged vectors: spreads banks

// The round's planes, R[t][p][i] = (h(seed + h(t * NBITS + p + h(i))) & 1) ? +1 : -1.
var<workgroup> planes: array<vec4<f32>, 80>;
// TILE vectors, read with consecutive invocations on consecutive vec4s.
var<workgroup> vectors: array<vec4<f32>, 935>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let sort = wg.y;
  let round = sort / ROWS;
  let row = sort % ROWS;
  for (var e = lid; e < NBITS * D4; e += 64u) {
    let plane = e / D4;
    var signs = vec4<f32>(0.0);
    for (var c = 0u; c < 4u; c++) {
      let i = (e % D4) * 4u + c;
      let bit = lowbias32(SEED + lowbias32(round * NBITS + plane + lowbias32(i))) & 1u;
      signs[c] = select(-1.0, 1.0, bit == 1u);
    }
    planes[e] = signs;
  }
  let first = wg.x * TILE;
  for (var e = lid; e < TILE * D4; e += 64u) {
    let position = first + e / D4;
    if (position < N) { vectors[(e / D4) * STRIDE + e % D4] = rowVector(row, position, e % D4); }
  }
  workgroupBarrier();
  let position = first + lid;
  if (lid >= TILE || position >= N) { return; }
  var code = 0u;
  for (var p = 0u; p < NBITS; p++) {
    var dot4 = vec4<f32>(0.0);
    for (var d = 0u; d < D4; d++) { dot4 += vectors[lid * STRIDE + d] * planes[p * D4 + d]; }
    if (dot4.x + dot4.y + dot4.z + dot4.w > 0.0) { code |= 1u << p; }
  }
  hash[CODES + sort * N + position] = code;
}


// ==== module 1 ====
// Weft hashBucket pre-pass (seed 2020, 32 buckets, 4 round(s), N=4096): bucket counts per chunk

@group(0) @binding(0) var<storage, read> hash: array<u32>;
@group(0) @binding(1) var<storage, read_write> counts: array<u32>;

const N = 4096u;
const BUCKETS = 32u;
const CHUNKS = 16u;      // histogram chunks of 256 rows per sort
const CODES = 0u;        // word offsets into the hash buffer (hash_layout.ts)
const ORDER = 131072u;
const STARTS = 262144u;
const COUNTS = 0u;      // word offset into the hashCounts buffer

var<workgroup> histogram: array<atomic<u32>, 32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let sort = wg.y;
  let chunk = wg.x;
  for (var c = lid; c < BUCKETS; c += 256u) { atomicStore(&histogram[c], 0u); }
  workgroupBarrier();
  let position = chunk * 256u + lid;
  if (position < N) { atomicAdd(&histogram[hash[CODES + sort * N + position]], 1u); }
  workgroupBarrier();
  for (var c = lid; c < BUCKETS; c += 256u) {
    counts[COUNTS + (sort * BUCKETS + c) * CHUNKS + chunk] = atomicLoad(&histogram[c]);
  }
}


// ==== module 2 ====
// Weft hashBucket pre-pass (seed 2020, 32 buckets, 4 round(s), N=4096): exclusive scan of the counts, bucket-major

@group(0) @binding(0) var<storage, read_write> counts: array<u32>;
@group(0) @binding(1) var<storage, read_write> hash: array<u32>;

const N = 4096u;
const BUCKETS = 32u;
const CHUNKS = 16u;      // histogram chunks of 256 rows per sort
const CODES = 0u;        // word offsets into the hash buffer (hash_layout.ts)
const ORDER = 131072u;
const STARTS = 262144u;
const COUNTS = 0u;      // word offset into the hashCounts buffer
const TOTAL = 512u;           // BUCKETS * CHUNKS entries per sort
const PER = 2u;               // entries per invocation, consecutive

var<workgroup> partial: array<u32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let sort = wg.x;
  let base = COUNTS + sort * TOTAL;
  let lo = min(TOTAL, lid * PER);
  let hi = min(TOTAL, lo + PER);
  var sum = 0u;
  for (var e = lo; e < hi; e++) { sum += counts[base + e]; }
  partial[lid] = sum;
  workgroupBarrier();
  // Inclusive scan of the invocations' sums (Hillis-Steele).
  for (var offset = 1u; offset < 256u; offset <<= 1u) {
    let add = select(0u, partial[lid - offset], lid >= offset);
    workgroupBarrier();
    partial[lid] += add;
    workgroupBarrier();
  }
  var next = partial[lid] - sum;
  for (var e = lo; e < hi; e++) {
    let count = counts[base + e];
    counts[base + e] = next;
    if (e % CHUNKS == 0u) { hash[STARTS + sort * (BUCKETS + 1u) + e / CHUNKS] = next; }
    next += count;
  }
  if (lid == 0u) { hash[STARTS + sort * (BUCKETS + 1u) + BUCKETS] = N; }
}


// ==== module 3 ====
// Weft hashBucket pre-pass (seed 2020, 32 buckets, 4 round(s), N=4096): stable scatter into bucket order

@group(0) @binding(0) var<storage, read_write> hash: array<u32>;
@group(0) @binding(1) var<storage, read> counts: array<u32>;

const N = 4096u;
const BUCKETS = 32u;
const CHUNKS = 16u;      // histogram chunks of 256 rows per sort
const CODES = 0u;        // word offsets into the hash buffer (hash_layout.ts)
const ORDER = 131072u;
const STARTS = 262144u;
const COUNTS = 0u;      // word offset into the hashCounts buffer

var<workgroup> chunkCodes: array<u32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let sort = wg.y;
  let chunk = wg.x;
  let position = chunk * 256u + lid;
  let code = select(0xffffffffu, hash[CODES + sort * N + min(position, N - 1u)], position < N);
  chunkCodes[lid] = code;
  workgroupBarrier();
  if (position >= N) { return; }
  // Rows of this bucket earlier in the chunk go first: the order stays stable.
  var rank = 0u;
  for (var j = 0u; j < lid; j++) { rank += select(0u, 1u, chunkCodes[j] == code); }
  let index = counts[COUNTS + (sort * BUCKETS + code) * CHUNKS + chunk] + rank;
  hash[ORDER + sort * N + index] = position;
}


// ==== module 4 ====
// Weft attention kernel shared by 4 kernel(s) over 4 components (entry point kernelI runs kernel I):
// kernel 0: intersect(causal, hashBucket(32 buckets x 4 rounds)), branch 0 component 0
// kernel 1: intersect(causal, hashBucket(32 buckets x 4 rounds)), branch 0 component 1
// kernel 2: intersect(causal, hashBucket(32 buckets x 4 rounds)), branch 0 component 2
// kernel 3: intersect(causal, hashBucket(32 buckets x 4 rounds)), branch 0 component 3
// member 0 (kernel 0): allowed: causal & hashBucket(32, seed 2020) round 0; layouts: q bucket order (hashBucket 32, seed 2020, round 0), k bucket order (hashBucket 32, seed 2020, round 0)
// member 1 (kernel 1): allowed: causal & hashBucket(32, seed 2020) round 1, minus 1 earlier component(s); layouts: q bucket order (hashBucket 32, seed 2020, round 1), k bucket order (hashBucket 32, seed 2020, round 1)
// member 2 (kernel 2): allowed: causal & hashBucket(32, seed 2020) round 2, minus 2 earlier component(s); layouts: q bucket order (hashBucket 32, seed 2020, round 2), k bucket order (hashBucket 32, seed 2020, round 2)
// member 3 (kernel 3): allowed: causal & hashBucket(32, seed 2020) round 3, minus 3 earlier component(s); layouts: q bucket order (hashBucket 32, seed 2020, round 3), k bucket order (hashBucket 32, seed 2020, round 3)
// tile 64x32, workgroup 256, N=4096, D=64, Hq=4, Hkv=4, float32

@group(0) @binding(0) var<storage, read> qIn: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> kIn: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> vIn: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> schedule: array<u32>;
@group(0) @binding(4) var<storage, read> aux: array<u32>;
@group(0) @binding(5) var<storage, read_write> oOut: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> lseOut: array<f32>;
@group(0) @binding(7) var<storage, read> hash: array<u32>; // codes, bucket order

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
var<workgroup> vTile: array<vec4<f32>, 512>;
var<workgroup> rowShare: array<f32, 512>; // per-column row maxima, then row sums
var<workgroup> kPosition: array<i32, 32>;

// WGSL has no infinity literal; LSE of an empty row is -inf (DESIGN §1). The bits are a
// `let`: Tint (Dawn) refuses a constant expression whose value is infinite.
fn negativeInfinity() -> f32 {
  let bits = 0xff800000u;
  return bitcast<f32>(bits);
}

var<private> queryRow: u32;           // batch * HQ + query head: its sorts in the hash buffer
var<private> keyRow: u32;             // batch * HKV + key/value head

// Queries in bucket order of bucket order (hashBucket 32, seed 2020, round 0):
// the GPU sort's order, queryRow's sort from word 131072.
fn bucketOrderQ131072(i: u32) -> i32 {
  if (i >= 4096u) { return -1; }
  return i32(hash[131072u + queryRow * 4096u + i]);
}

// Keys in bucket order of bucket order (hashBucket 32, seed 2020, round 0):
// the GPU sort's order, keyRow's sort from word 147456.
fn bucketOrderK147456(i: u32) -> i32 {
  if (i >= 4096u) { return -1; }
  return i32(hash[147456u + keyRow * 4096u + i]);
}

fn allowed0(q: i32, k: i32, qCodes: vec4<u32>, kCodes: vec4<u32>) -> bool {
  let own = k <= q && qCodes[0] == kCodes[0];
  return own;
}

// Queries in bucket order of bucket order (hashBucket 32, seed 2020, round 1):
// the GPU sort's order, queryRow's sort from word 163840.
fn bucketOrderQ163840(i: u32) -> i32 {
  if (i >= 4096u) { return -1; }
  return i32(hash[163840u + queryRow * 4096u + i]);
}

// Keys in bucket order of bucket order (hashBucket 32, seed 2020, round 1):
// the GPU sort's order, keyRow's sort from word 180224.
fn bucketOrderK180224(i: u32) -> i32 {
  if (i >= 4096u) { return -1; }
  return i32(hash[180224u + keyRow * 4096u + i]);
}

fn allowed1(q: i32, k: i32, qCodes: vec4<u32>, kCodes: vec4<u32>) -> bool {
  let own = k <= q && qCodes[0] == kCodes[0];
  // Allowed by earlier component 0: counted there, not here.
  let earlier0 = k <= q && qCodes[1] == kCodes[1];
  return own && !earlier0;
}

// Queries in bucket order of bucket order (hashBucket 32, seed 2020, round 2):
// the GPU sort's order, queryRow's sort from word 196608.
fn bucketOrderQ196608(i: u32) -> i32 {
  if (i >= 4096u) { return -1; }
  return i32(hash[196608u + queryRow * 4096u + i]);
}

// Keys in bucket order of bucket order (hashBucket 32, seed 2020, round 2):
// the GPU sort's order, keyRow's sort from word 212992.
fn bucketOrderK212992(i: u32) -> i32 {
  if (i >= 4096u) { return -1; }
  return i32(hash[212992u + keyRow * 4096u + i]);
}

fn allowed2(q: i32, k: i32, qCodes: vec4<u32>, kCodes: vec4<u32>) -> bool {
  let own = k <= q && qCodes[0] == kCodes[0];
  // Allowed by earlier component 0: counted there, not here.
  let earlier0 = k <= q && qCodes[1] == kCodes[1];
  // Allowed by earlier component 1: counted there, not here.
  let earlier1 = k <= q && qCodes[2] == kCodes[2];
  return own && !earlier0 && !earlier1;
}

// Queries in bucket order of bucket order (hashBucket 32, seed 2020, round 3):
// the GPU sort's order, queryRow's sort from word 229376.
fn bucketOrderQ229376(i: u32) -> i32 {
  if (i >= 4096u) { return -1; }
  return i32(hash[229376u + queryRow * 4096u + i]);
}

// Keys in bucket order of bucket order (hashBucket 32, seed 2020, round 3):
// the GPU sort's order, keyRow's sort from word 245760.
fn bucketOrderK245760(i: u32) -> i32 {
  if (i >= 4096u) { return -1; }
  return i32(hash[245760u + keyRow * 4096u + i]);
}

fn allowed3(q: i32, k: i32, qCodes: vec4<u32>, kCodes: vec4<u32>) -> bool {
  let own = k <= q && qCodes[0] == kCodes[0];
  // Allowed by earlier component 0: counted there, not here.
  let earlier0 = k <= q && qCodes[1] == kCodes[1];
  // Allowed by earlier component 1: counted there, not here.
  let earlier1 = k <= q && qCodes[2] == kCodes[2];
  // Allowed by earlier component 2: counted there, not here.
  let earlier2 = k <= q && qCodes[3] == kCodes[3];
  return own && !earlier0 && !earlier1 && !earlier2;
}

var<workgroup> kCodeTile: array<vec4<u32>, 32>; // staged key codes

// Codes of seed 2020, 32 buckets/0 (unused lanes 0), at a position >= 0.
fn queryCodes0(p: i32) -> vec4<u32> {
  return vec4<u32>(
    hash[0u + queryRow * N + u32(p)],
    0u,
    0u,
    0u);
}
fn keyCodes0(p: i32) -> vec4<u32> {
  return vec4<u32>(
    hash[16384u + keyRow * N + u32(p)],
    0u,
    0u,
    0u);
}

// Codes of seed 2020, 32 buckets/1; seed 2020, 32 buckets/0 (unused lanes 0), at a position >= 0.
fn queryCodes1(p: i32) -> vec4<u32> {
  return vec4<u32>(
    hash[32768u + queryRow * N + u32(p)],
    hash[0u + queryRow * N + u32(p)],
    0u,
    0u);
}
fn keyCodes1(p: i32) -> vec4<u32> {
  return vec4<u32>(
    hash[49152u + keyRow * N + u32(p)],
    hash[16384u + keyRow * N + u32(p)],
    0u,
    0u);
}

// Codes of seed 2020, 32 buckets/2; seed 2020, 32 buckets/0; seed 2020, 32 buckets/1 (unused lanes 0), at a position >= 0.
fn queryCodes2(p: i32) -> vec4<u32> {
  return vec4<u32>(
    hash[65536u + queryRow * N + u32(p)],
    hash[0u + queryRow * N + u32(p)],
    hash[32768u + queryRow * N + u32(p)],
    0u);
}
fn keyCodes2(p: i32) -> vec4<u32> {
  return vec4<u32>(
    hash[81920u + keyRow * N + u32(p)],
    hash[16384u + keyRow * N + u32(p)],
    hash[49152u + keyRow * N + u32(p)],
    0u);
}

// Codes of seed 2020, 32 buckets/3; seed 2020, 32 buckets/0; seed 2020, 32 buckets/1; seed 2020, 32 buckets/2 (unused lanes 0), at a position >= 0.
fn queryCodes3(p: i32) -> vec4<u32> {
  return vec4<u32>(
    hash[98304u + queryRow * N + u32(p)],
    hash[0u + queryRow * N + u32(p)],
    hash[32768u + queryRow * N + u32(p)],
    hash[65536u + queryRow * N + u32(p)]);
}
fn keyCodes3(p: i32) -> vec4<u32> {
  return vec4<u32>(
    hash[114688u + keyRow * N + u32(p)],
    hash[16384u + keyRow * N + u32(p)],
    hash[49152u + keyRow * N + u32(p)],
    hash[81920u + keyRow * N + u32(p)]);
}

fn queryCodes(member: u32, p: i32) -> vec4<u32> {
  switch member {
    case 0u: { return queryCodes0(p); }
    case 1u: { return queryCodes1(p); }
    case 2u: { return queryCodes2(p); }
    default: { return queryCodes3(p); }
  }
}

fn keyCodes(member: u32, p: i32) -> vec4<u32> {
  switch member {
    case 0u: { return keyCodes0(p); }
    case 1u: { return keyCodes1(p); }
    case 2u: { return keyCodes2(p); }
    default: { return keyCodes3(p); }
  }
}

fn queryPosition(member: u32, i: u32) -> i32 {
  switch member {
    case 0u: { return bucketOrderQ131072(i); }
    case 1u: { return bucketOrderQ163840(i); }
    case 2u: { return bucketOrderQ196608(i); }
    default: { return bucketOrderQ229376(i); }
  }
}

fn keyPosition(member: u32, i: u32) -> i32 {
  switch member {
    case 0u: { return bucketOrderK147456(i); }
    case 1u: { return bucketOrderK180224(i); }
    case 2u: { return bucketOrderK212992(i); }
    default: { return bucketOrderK245760(i); }
  }
}

fn allowed(member: u32, q: i32, k: i32, qc: vec4<u32>, kc: vec4<u32>) -> bool {
  switch member {
    case 0u: { return allowed0(q, k, qc, kc); }
    case 1u: { return allowed1(q, k, qc, kc); }
    case 2u: { return allowed2(q, k, qc, kc); }
    default: { return allowed3(q, k, qc, kc); }
  }
}

// The kernel body every kernel's entry point runs (see those at the end).
fn attention(wg: vec3<u32>, lid: u32,
  MEMBER: u32, // its (first) member's layouts and mask
  SCHEDULE_SLOT: u32, // its slot in the schedule header
  MERGE: bool, // merge into what earlier components wrote (else overwrite)
  ORDER_AT: u32, // its round's query order in hash
  CODES_AT: u32, // its round's query codes in hash
  STARTS_AT: u32, // its round's key bucket starts
) {
  let d4 = D4;
  let tileK = TILE_K;
  let qTileIndex = wg.x;
  let bh = wg.y;                      // batch * HQ + query head
  let kvHead = (bh / HQ) * HKV + (bh % HQ) / GROUP;
  let kvBase = kvHead * KV_ROWS * D4;
  queryRow = bh;                     // whose hashBucket codes and order to read
  keyRow = kvHead;
  // Invocation = (row group, column): COLS consecutive invocations share ROWS query rows; for
  // scores a column owns keys col, col + COLS, ...; for O it owns vec4 dims col, col + COLS, ...
  let col = lid % COLS;
  let firstRow = (lid / COLS) * ROWS;

  // Bucket order (each member's round): the tile's queries span buckets
  // first..last, whose keys are one range of the key order; every tile of it is PARTIAL.
  let orderAt = ORDER_AT + bh * N;
  let firstQuery = hash[orderAt + qTileIndex * TILE_Q];
  let lastQuery = hash[orderAt + min(N, qTileIndex * TILE_Q + TILE_Q) - 1u];
  let firstBucket = hash[CODES_AT + bh * N + firstQuery];
  let lastBucket = hash[CODES_AT + bh * N + lastQuery];
  let startsAt = STARTS_AT + kvHead * 33u;
  var keyTile = hash[startsAt + firstBucket] / TILE_K;
  var runEnd = (hash[startsAt + lastBucket + 1u] + TILE_K - 1u) / TILE_K;
  var runPartial = true;
  var run = 0u;                       // one run: the loop ends with it
  let lastRun = 0u;
  let runsAt = 0u;
  // The next key tile's K, V and positions, in registers while the current tile is computed;
  // the first one's loads are issued before the query tile is staged.
  var nextK0 = vec4<f32>(0.0);
  var nextV0 = vec4<f32>(0.0);
  var nextPos0 = -1;
  var nextCodes0 = vec4<u32>(0u);
  var nextK1 = vec4<f32>(0.0);
  var nextV1 = vec4<f32>(0.0);
  var nextPos1 = -1;
  var nextCodes1 = vec4<u32>(0u);
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
      let src = kvBase + u32(max(k, 0)) * D4 + i % D4;
      nextK0 = select(vec4<f32>(0.0), kIn[src], k >= 0);
      nextV0 = select(vec4<f32>(0.0), vIn[src], k >= 0);
      nextPos0 = k;
      if (i % D4 == 0u) { nextCodes0 = keyCodes(MEMBER, max(k, 0)); }
    }
    {
      let i = lid + 256u;
      let k = keyPosition(MEMBER, nextStart + i / D4);
      let src = kvBase + u32(max(k, 0)) * D4 + i % D4;
      nextK1 = select(vec4<f32>(0.0), kIn[src], k >= 0);
      nextV1 = select(vec4<f32>(0.0), vIn[src], k >= 0);
      nextPos1 = k;
      if (i % D4 == 0u) { nextCodes1 = keyCodes(MEMBER, max(k, 0)); }
    }
  }
  let q0 = queryPosition(MEMBER, qTileIndex * TILE_Q + firstRow + 0u);
  let q1 = queryPosition(MEMBER, qTileIndex * TILE_Q + firstRow + 1u);
  let qCodes0 = queryCodes(MEMBER, max(q0, 0));
  let qCodes1 = queryCodes(MEMBER, max(q1, 0));
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
      if (i % D4 == 0u) { kPosition[j] = nextPos0; kCodeTile[j] = nextCodes0; }
      kpTile[j * QK_STRIDE + i % D4] = nextK0;
      vTile[i] = nextV0;
    }
    {
      let i = lid + 256u;
      let j = i / D4;
      if (i % D4 == 0u) { kPosition[j] = nextPos1; kCodeTile[j] = nextCodes1; }
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
        let src = kvBase + u32(max(k, 0)) * D4 + i % D4;
        nextK0 = select(vec4<f32>(0.0), kIn[src], k >= 0);
        nextV0 = select(vec4<f32>(0.0), vIn[src], k >= 0);
        nextPos0 = k;
        if (i % D4 == 0u) { nextCodes0 = keyCodes(MEMBER, max(k, 0)); }
      }
      {
        let i = lid + 256u;
        let k = keyPosition(MEMBER, nextStart + i / D4);
        let src = kvBase + u32(max(k, 0)) * D4 + i % D4;
        nextK1 = select(vec4<f32>(0.0), kIn[src], k >= 0);
        nextV1 = select(vec4<f32>(0.0), vIn[src], k >= 0);
        nextPos1 = k;
        if (i % D4 == 0u) { nextCodes1 = keyCodes(MEMBER, max(k, 0)); }
      }
    }


    // Mask first (PARTIAL tiles only): an invocation none of whose pairs is allowed skips its
    // dot products, and a warp whose rows all miss this tile (a band's corner) skips the work.
    let k0 = kPosition[col + 0u];
    let k1 = kPosition[col + 8u];
    let k2 = kPosition[col + 16u];
    let k3 = kPosition[col + 24u];
    let kc0 = kCodeTile[col + 0u];
    let kc1 = kCodeTile[col + 8u];
    let kc2 = kCodeTile[col + 16u];
    let kc3 = kCodeTile[col + 24u];
    let m0_0 = q0 >= 0 && k0 >= 0 && (!isPartial || allowed(MEMBER, q0, k0, qCodes0, kc0));
    let m0_1 = q0 >= 0 && k1 >= 0 && (!isPartial || allowed(MEMBER, q0, k1, qCodes0, kc1));
    let m0_2 = q0 >= 0 && k2 >= 0 && (!isPartial || allowed(MEMBER, q0, k2, qCodes0, kc2));
    let m0_3 = q0 >= 0 && k3 >= 0 && (!isPartial || allowed(MEMBER, q0, k3, qCodes0, kc3));
    let m1_0 = q1 >= 0 && k0 >= 0 && (!isPartial || allowed(MEMBER, q1, k0, qCodes1, kc0));
    let m1_1 = q1 >= 0 && k1 >= 0 && (!isPartial || allowed(MEMBER, q1, k1, qCodes1, kc1));
    let m1_2 = q1 >= 0 && k2 >= 0 && (!isPartial || allowed(MEMBER, q1, k2, qCodes1, kc2));
    let m1_3 = q1 >= 0 && k3 >= 0 && (!isPartial || allowed(MEMBER, q1, k3, qCodes1, kc3));
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
// (MEMBER, SCHEDULE_SLOT, MERGE, ORDER_AT, CODES_AT, STARTS_AT), which the driver inlines and folds.
@compute @workgroup_size(256)
fn kernel0(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  attention(wg, lid, 0u, 0u, false, 131072u, 0u, 262276u);
}

@compute @workgroup_size(256)
fn kernel1(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  attention(wg, lid, 1u, 1u, true, 163840u, 32768u, 262540u);
}

@compute @workgroup_size(256)
fn kernel2(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  attention(wg, lid, 2u, 2u, true, 196608u, 65536u, 262804u);
}

@compute @workgroup_size(256)
fn kernel3(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  attention(wg, lid, 3u, 3u, true, 229376u, 98304u, 263068u);
}

