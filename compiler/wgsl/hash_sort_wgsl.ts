/**
 * WGSL of the hashBucket pre-pass, four dispatches per code set (layout in hash_layout.ts):
 *
 * 1. codes: every query and key row, every round: `sum_p [v · R[t][p] > 0] << p`, with the
 *    planes drawn from lowbias32 into workgroup memory and the dot products in float32;
 * 2. histogram: per sort and chunk of 256 rows, how many rows fall in each bucket;
 * 3. scan: per sort, an exclusive scan of the counts in bucket-major order, which gives each
 *    (bucket, chunk) its first index in bucket order, and each bucket its start;
 * 4. scatter: each row goes to its chunk's first index plus the rows of its bucket before it in
 *    the chunk, so the sort is stable (equal codes keep position order).
 *
 * Where the call's queries are some of the N key positions (query_tiles.ts), a query sort holds
 * only them: their codes at their positions, and its bucket order their Nq positions.
 * @module
 */
import type { HashCodeSet } from "../hash_layout.ts";
import { SORT_CHUNK } from "../hash_layout.ts";
import type { QueryRange } from "../query_tiles.ts";
import { ShaderModule } from "./shader_module.ts";
import { codeRows, CODES_WORKGROUP } from "../dispatch_sizes.ts";
import { declareKvRow, type PagedRows } from "./kv_row_wgsl.ts";

/** One code set's pass: the set, N (the key positions) and the queries among them. */
export interface SortOptions {
  set: HashCodeSet;
  n: number;
  queries?: QueryRange;
}

/**
 * WGSL conditions on whether a sort holds a position: every position below N, or where the
 * queries are some of the positions, a query sort only those (`sortHolds`, declared here).
 */
function sortSpan(m: ShaderModule, o: SortOptions) {
  const q = o.queries;
  if (!q) {
    return {
      holds: (p: string) => `${p} < N`,
      outside: (p: string) => `${p} >= N`,
      length: "N",
    };
  }
  m.declare(
    "sortHolds",
    `
// A query sort holds the call's NQ queries, positions QUERY_OFFSET .. QUERY_OFFSET + NQ - 1 of
// the N keys; a key sort every position.
const NQ = ${q.count}u;
const QUERY_OFFSET = ${q.offset}u;
const QUERY_SORTS = ${o.set.rowsQ}u;  // sorts of a round: the query rows, then the key rows
const SORT_ROWS = ${o.set.rowsQ + o.set.rowsK}u;
fn sortHolds(sort: u32, position: u32) -> bool {
  if (sort % SORT_ROWS < QUERY_SORTS) {
    return position >= QUERY_OFFSET && position < QUERY_OFFSET + NQ;
  }
  return position < N;
}
fn sortLength(sort: u32) -> u32 {
  return select(N, NQ, sort % SORT_ROWS < QUERY_SORTS);
}`,
  );
  return {
    holds: (p: string) => `sortHolds(sort, ${p})`,
    outside: (p: string) => `!sortHolds(sort, ${p})`,
    length: "sortLength(sort)",
  };
}

function header(set: HashCodeSet, n: number, what: string): ShaderModule {
  return new ShaderModule().comment(
    `Weft hashBucket pre-pass (${set.key}, ${set.rounds} round(s), N=${n}): ${what}`,
  );
}

function constants(set: HashCodeSet, n: number): string {
  return `
const N = ${n}u;
const BUCKETS = ${set.buckets}u;
const CHUNKS = ${set.chunks}u;      // histogram chunks of ${SORT_CHUNK} rows per sort
const CODES = ${set.codes}u;        // word offsets into the hash buffer (hash_layout.ts)
const ORDER = ${set.order}u;
const STARTS = ${set.starts}u;
const COUNTS = ${set.counts}u;      // word offset into the hashCounts buffer`;
}

/**
 * Codes of every (round, row, position) of one set.
 * @param o the set, N, D/4, dtype, and paged K's layout where K is paged
 * @returns the module text; dispatch `[ceil(N / 64), sortCount(set)]`
 */
export function hashCodesKernel(
  o: SortOptions & { d4: number; dtype: "f32" | "f16"; paged?: PagedRows },
): string {
  const { set, n, d4 } = o;
  const T = o.dtype;
  const m = header(set, n, "bucket codes of Q and K");
  if (T === "f16") m.enable("f16");
  m.declare(
    "bindings",
    `
@group(0) @binding(0) var<storage, read> qIn: array<vec4<${T}>>;
@group(0) @binding(1) var<storage, read> kIn: array<vec4<${T}>>;
@group(0) @binding(2) var<storage, read_write> hash: array<u32>;`,
  );
  m.declare(
    "lowbias32",
    `
// DESIGN §2's 32-bit hash; u32 arithmetic wraps like Math.imul.
fn lowbias32(v: u32) -> u32 {
  var x = v;
  x ^= x >> 16u;
  x *= 0x7feb352du;
  x ^= x >> 15u;
  x *= 0x846ca68bu;
  x ^= x >> 16u;
  return x;
}`,
  );
  const rows = codeRows(d4, set.nbits);
  const span = sortSpan(m, o);
  // Q's rows: its positions, or where the queries are some of them, query row position - offset.
  const queryRow = o.queries ? "row * NQ + position - QUERY_OFFSET" : "row * N + position";
  // K's rows: contiguous, or through the block table where K is paged.
  if (o.paged) declareKvRow(m, o.paged);
  const keyRow = o.paged ? "kvRow(row - ROWS_Q, position)" : "((row - ROWS_Q) * N + position)";
  m.declare(
    "rowVector",
    `
// vec4 d of the query (row < ROWS_Q) or key row's vector at a position, in float32.
fn rowVector(row: u32, position: u32, d: u32) -> vec4<f32> {
  if (row < ROWS_Q) { return vec4<f32>(qIn[(${queryRow}) * D4 + d]); }
  return vec4<f32>(kIn[${keyRow} * D4 + d]);
}`,
  );
  return m.render(`${constants(set, n)}
const SEED = ${set.seed}u;
const NBITS = ${set.nbits}u;
const D4 = ${d4}u;
const ROWS_Q = ${set.rowsQ}u;       // sorts of a round: ROWS_Q query rows, then the key rows
const ROWS = ${set.rowsQ + set.rowsK}u;
const TILE = ${rows}u;              // positions per workgroup
const STRIDE = ${d4 + 1}u;          // padded row stride of the staged vectors: spreads banks

// The round's planes, R[t][p][i] = (h(seed + h(t * NBITS + p + h(i))) & 1) ? +1 : -1.
var<workgroup> planes: array<vec4<f32>, ${set.nbits * d4}>;
// TILE vectors, read with consecutive invocations on consecutive vec4s.
var<workgroup> vectors: array<vec4<f32>, ${rows * (d4 + 1)}>;

@compute @workgroup_size(${CODES_WORKGROUP})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let sort = wg.y;
  let round = sort / ROWS;
  let row = sort % ROWS;
  for (var e = lid; e < NBITS * D4; e += ${CODES_WORKGROUP}u) {
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
  for (var e = lid; e < TILE * D4; e += ${CODES_WORKGROUP}u) {
    let position = first + e / D4;
    if (${
    span.holds("position")
  }) { vectors[(e / D4) * STRIDE + e % D4] = rowVector(row, position, e % D4); }
  }
  workgroupBarrier();
  let position = first + lid;
  if (lid >= TILE || ${span.outside("position")}) { return; }
  var code = 0u;
  for (var p = 0u; p < NBITS; p++) {
    var dot4 = vec4<f32>(0.0);
    for (var d = 0u; d < D4; d++) { dot4 += vectors[lid * STRIDE + d] * planes[p * D4 + d]; }
    if (dot4.x + dot4.y + dot4.z + dot4.w > 0.0) { code |= 1u << p; }
  }
  hash[CODES + sort * N + position] = code;
}`);
}

/**
 * Per-chunk bucket counts of one set.
 * @returns the module text; dispatch `[chunks, sortCount(set)]`
 */
export function bucketHistogramKernel(o: SortOptions): string {
  const { set, n } = o;
  const m = header(set, n, "bucket counts per chunk");
  const span = sortSpan(m, o);
  m.declare(
    "bindings",
    `
@group(0) @binding(0) var<storage, read> hash: array<u32>;
@group(0) @binding(1) var<storage, read_write> counts: array<u32>;`,
  );
  return m.render(`${constants(set, n)}

var<workgroup> histogram: array<atomic<u32>, ${set.buckets}>;

@compute @workgroup_size(${SORT_CHUNK})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let sort = wg.y;
  let chunk = wg.x;
  for (var c = lid; c < BUCKETS; c += ${SORT_CHUNK}u) { atomicStore(&histogram[c], 0u); }
  workgroupBarrier();
  let position = chunk * ${SORT_CHUNK}u + lid;
  if (${span.holds("position")}) { atomicAdd(&histogram[hash[CODES + sort * N + position]], 1u); }
  workgroupBarrier();
  for (var c = lid; c < BUCKETS; c += ${SORT_CHUNK}u) {
    counts[COUNTS + (sort * BUCKETS + c) * CHUNKS + chunk] = atomicLoad(&histogram[c]);
  }
}`);
}

/**
 * Exclusive scan of each sort's counts, bucket-major: counts become first indices, and each
 * bucket's start is written.
 * @returns the module text; dispatch `[sortCount(set), 1]`
 */
export function bucketScanKernel(o: SortOptions): string {
  const { set, n } = o;
  const total = set.buckets * set.chunks;
  const per = Math.ceil(total / SORT_CHUNK);
  const m = header(set, n, "exclusive scan of the counts, bucket-major");
  const span = sortSpan(m, o);
  m.declare(
    "bindings",
    `
@group(0) @binding(0) var<storage, read_write> counts: array<u32>;
@group(0) @binding(1) var<storage, read_write> hash: array<u32>;`,
  );
  return m.render(`${constants(set, n)}
const TOTAL = ${total}u;           // BUCKETS * CHUNKS entries per sort
const PER = ${per}u;               // entries per invocation, consecutive

var<workgroup> partial: array<u32, ${SORT_CHUNK}>;

@compute @workgroup_size(${SORT_CHUNK})
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
  for (var offset = 1u; offset < ${SORT_CHUNK}u; offset <<= 1u) {
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
  if (lid == 0u) { hash[STARTS + sort * (BUCKETS + 1u) + BUCKETS] = ${span.length}; }
}`);
}

/**
 * Stable scatter of positions into bucket order.
 * @returns the module text; dispatch `[chunks, sortCount(set)]`
 */
export function bucketScatterKernel(o: SortOptions): string {
  const { set, n } = o;
  const m = header(set, n, "stable scatter into bucket order");
  const span = sortSpan(m, o);
  m.declare(
    "bindings",
    `
@group(0) @binding(0) var<storage, read_write> hash: array<u32>;
@group(0) @binding(1) var<storage, read> counts: array<u32>;`,
  );
  return m.render(`${constants(set, n)}

var<workgroup> chunkCodes: array<u32, ${SORT_CHUNK}>;

@compute @workgroup_size(${SORT_CHUNK})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let sort = wg.y;
  let chunk = wg.x;
  let position = chunk * ${SORT_CHUNK}u + lid;
  let code = select(0xffffffffu, hash[CODES + sort * N + min(position, N - 1u)], ${
    span.holds("position")
  });
  chunkCodes[lid] = code;
  workgroupBarrier();
  if (${span.outside("position")}) { return; }
  // Rows of this bucket earlier in the chunk go first: the order stays stable.
  var rank = 0u;
  for (var j = 0u; j < lid; j++) { rank += select(0u, 1u, chunkCodes[j] == code); }
  let index = counts[COUNTS + (sort * BUCKETS + code) * CHUNKS + chunk] + rank;
  hash[ORDER + sort * N + index] = position;
}`);
}
