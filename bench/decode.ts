/**
 * `deno task bench --decode`: one decoding step against a KV cache. B = 4, Hq = 32, Hkv = 8
 * (a Llama-style GQA cache), D = 128, float16, one query row per head at the last position,
 * Nk in {16384, 131072, 1048576}; dense, window(4096) and ring(128) ∪ stride(64); and multi-head
 * latent attention's cache (`mla` rows: Hkv = 1, the shared latent head, with D = 192 for keys,
 * 128 latent and 64 rotary, and Dv = 128), dense and window(4096). Each row has
 * the GPU time (median of sustained samples), the K and V bytes the pattern's allowed keys
 * hold, those bytes per second and their share of the GPU's memory bandwidth, and with
 * `--peer` FlexAttention's and SDPA's time on the same cache (bench/peers/decode_peer.py).
 *
 * A cache past one storage binding runs in parts of one batch each (runtime/split_run.ts): the
 * row times one part, which has the shape and kernels of every other, and counts it once per
 * part, as the runtime runs them one after another.
 * @module
 */
import { type AttentionShape, sequenceSizes } from "../core/shape.ts";
import type { Pattern } from "../dsl/schema.ts";
import { allowedMask } from "../runtime/reference/mod.ts";
import type { AttentionCall } from "../runtime/attention_call.ts";
import type { Runtime } from "../runtime/runtime.ts";
import { normalTensor } from "../runtime/seeded_random.ts";
import { interleavedGpuTimes, isSoftwareAdapter, median } from "./measure.ts";
import { chooseSplit } from "../runtime/split_run.ts";

/** The caches of the decode bench: a GQA cache, or MLA's one latent head (decodeShape). */
export type DecodeCache = "gqa" | "mla";

/** A decode suite entry: name, pattern and the cache it decodes against. */
export interface DecodeEntry {
  name: string;
  pattern: Pattern;
  cache: DecodeCache;
}

const WINDOW_4096: Pattern = { kind: "window", left: 4096, right: 4096 };

/** The decode suite. */
export const DECODE_SUITE: readonly DecodeEntry[] = [
  { name: "dense", pattern: { kind: "dense" }, cache: "gqa" },
  { name: "window4096", pattern: WINDOW_4096, cache: "gqa" },
  {
    name: "ring+stride64",
    pattern: {
      kind: "union",
      of: [{ kind: "ring", radius: 128 }, { kind: "stride", period: 64 }],
    },
    cache: "gqa",
  },
  { name: "mla", pattern: { kind: "dense" }, cache: "mla" },
  { name: "mla+window4096", pattern: WINDOW_4096, cache: "mla" },
];

/**
 * The cache shape of the decode bench at Nk keys: Hq = 32 query heads on 8 key/value heads of
 * D = 128 (GQA), or on one shared head with D = 192 and Dv = 128 (MLA, examples/mla.ts).
 */
export function decodeShape(nk: number, batch = 4, cache: DecodeCache = "gqa"): AttentionShape {
  return cache === "mla"
    ? { batch, headsQ: 32, headsKV: 1, seqLen: 1, kvSeqLen: nk, headDim: 192, valueDim: 128 }
    : { batch, headsQ: 32, headsKV: 8, seqLen: 1, kvSeqLen: nk, headDim: 128 };
}

/** Memory bandwidth of the GPUs the bench has run on (their data sheets), bytes per second. */
const MEMORY_BANDWIDTH: readonly [RegExp, number][] = [
  [/\bH200\b/, 4.8e12], // HBM3e
  [/\bH100 80GB HBM3\b/, 3.35e12], // the SXM5 board
];

/**
 * The memory bandwidth of the GPU an adapter describes, where the bench knows it.
 * @param description the adapter's description (`RuntimeInfo.description`)
 * @returns bytes per second, or undefined for a GPU not in the table
 * @example
 * ```ts
 * import { memoryBandwidth } from "./decode.ts";
 * memoryBandwidth("NVIDIA H100 80GB HBM3"); // 3.35e12
 * ```
 */
export function memoryBandwidth(description: string): number | undefined {
  return MEMORY_BANDWIDTH.find(([name]) => name.test(description))?.[1];
}

/** One decode row. */
export interface DecodeRow {
  pattern: string;
  nk: number;
  /** Median GPU ms of one decoding step of the whole batch. */
  ms: number;
  /** Parts the call ran in (1: one call). */
  parts: number;
  /** Keys the query at the last position may attend to. */
  allowedKeys: number;
  /** K and V bytes of those keys, over every batch and key/value head. */
  kvBytes: number;
  /** kvBytes per second. */
  bytesPerSecond: number;
  /** bytesPerSecond over the GPU's memory bandwidth (memoryBandwidth), where known. */
  bandwidthShare?: number;
  /** Timestamp samples, ms per step of one part. */
  samples: number[];
  /** The same step with K and V in pages of PAGE_SIZE keys (a cache within one binding). */
  pagedMs?: number;
  /**
   * The same step on a rolling paged cache: a pool holding only the pages of the keys the
   * pattern allows at the last position (a sliding window's cache), every other table column
   * naming one shared page; where that pool fits one binding and the contiguous cache does not.
   */
  rollingMs?: number;
  /** Pages in the rolling pool. */
  rollingPages?: number;
  flexMs?: number;
  sdpaMs?: number;
  flexMaskMs?: number;
}

/** A row of bench/peers/decode_peer.py's JSON. */
interface DecodePeerRow {
  pattern: string;
  nk: number;
  impl: "flex_attention" | "sdpa";
  ms: number;
  mask_ms: number | null;
}

/**
 * Keys allowed for the query at position Nk - 1.
 * @param pattern the pattern
 * @param nk the keys
 * @returns the count
 */
export function allowedKeysAtLast(pattern: Pattern, nk: number): number {
  return allowedAtLast(pattern, nk).length;
}

/** The key positions allowed for the query at position Nk - 1, ascending. */
function allowedAtLast(pattern: Pattern, nk: number): number[] {
  const allowed = allowedMask(pattern, nk);
  const keys: number[] = [];
  for (let k = 0; k < nk; k++) if (allowed(nk - 1, k)) keys.push(k);
  return keys;
}

/** Float16 values for `length` elements: a seeded block repeated (timing ignores the values). */
function fill(length: number, seed: number): Float16Array {
  const block = Float16Array.from(normalTensor(Math.min(length, 1 << 20), seed));
  const out = new Float16Array(length);
  for (let at = 0; at < length; at += block.length) {
    out.set(block.subarray(0, Math.min(block.length, length - at)), at);
  }
  return out;
}

/**
 * Runs the decode bench.
 * @param rt the runtime (a GPU with timestamps; a software adapter is refused)
 * @param o Nk values, patterns, samples, warm-up, peer rows
 * @returns the rows
 */
export async function runDecodeBench(
  rt: Runtime,
  o: { nks: number[]; patterns?: string[]; reps: number; warmup: number; peer?: string },
): Promise<DecodeRow[]> {
  if (isSoftwareAdapter(rt.info) || !rt.info.timestamps) {
    throw new Error(
      "bench --decode times with timestamp queries on a GPU; this adapter is a software one " +
        "or has no timestamp-query",
    );
  }
  const peers: DecodePeerRow[] = o.peer ? JSON.parse(await Deno.readTextFile(o.peer)) : [];
  const suite = DECODE_SUITE.filter((e) => !o.patterns || o.patterns.includes(e.name));
  const rows: DecodeRow[] = [];
  for (const nk of o.nks) {
    for (const cache of ["gqa", "mla"] as const) {
      const entries = suite.filter((e) => e.cache === cache);
      if (entries.length > 0) rows.push(...await cacheRows(rt, nk, cache, entries, peers, o));
    }
  }
  return rows;
}

/** The rows of the entries that decode against one cache at Nk keys. */
async function cacheRows(
  rt: Runtime,
  nk: number,
  cache: DecodeCache,
  entries: readonly DecodeEntry[],
  peers: readonly DecodePeerRow[],
  o: { reps: number; warmup: number },
): Promise<DecodeRow[]> {
  const rows: DecodeRow[] = [];
  const limit = rt.device.limits.maxStorageBufferBindingSize;
  const bandwidth = memoryBandwidth(rt.info.description);
  const full = decodeShape(nk, 4, cache);
  // Past one binding the runtime runs parts of one batch and some key/value heads.
  const split = chooseSplit(full, "f16", 1, limit);
  const shape = split?.part ?? full;
  const parts = split ? full.batch * (full.headsKV / split.kvHeads) : 1;
  const { d, dv } = sequenceSizes(shape);
  const inputs = {
    q: fill(shape.batch * shape.headsQ * d, 1),
    k: fill(shape.batch * shape.headsKV * nk * d, 2),
    v: fill(shape.batch * shape.headsKV * nk * dv, 3),
  };
  for (const entry of entries) {
    // The contiguous step and its paged (or rolling) counterpart, sampled in turn.
    const call = await rt.prepare(rt.compile(entry.pattern, { shape, dtype: "f16" }), inputs);
    let paged: AttentionCall | undefined;
    let rolling: { call: AttentionCall; pages: number } | undefined;
    let samples: number[], otherSamples: number[] | undefined;
    try {
      if (parts === 1) paged = await pagedCall(rt, entry.pattern, shape, inputs);
      else rolling = await rollingCall(rt, entry.pattern, full, limit);
      const other = paged ?? rolling?.call;
      [samples, otherSamples] = await interleavedGpuTimes(
        other ? [call, other] : [call],
        o.reps,
        o.warmup,
        true,
        DECODE_MAX_REPEAT,
      );
    } finally {
      call.destroy();
      paged?.destroy();
      rolling?.call.destroy();
    }
    const ms = median(samples) * parts;
    const pagedMs = paged ? median(otherSamples!) : undefined;
    const allowedKeys = allowedKeysAtLast(entry.pattern, nk);
    const kvBytes = full.batch * full.headsKV * allowedKeys * (d + dv) * 2;
    const bytesPerSecond = kvBytes / (ms / 1e3);
    const peer = (impl: DecodePeerRow["impl"]) =>
      peers.find((p) => p.pattern === entry.name && p.nk === nk && p.impl === impl);
    const row: DecodeRow = {
      pattern: entry.name,
      nk,
      ms,
      parts,
      allowedKeys,
      kvBytes,
      bytesPerSecond,
      ...(bandwidth ? { bandwidthShare: bytesPerSecond / bandwidth } : {}),
      samples,
      ...(pagedMs === undefined ? {} : { pagedMs }),
      ...(rolling ? { rollingMs: median(otherSamples!), rollingPages: rolling.pages } : {}),
      ...(peer("flex_attention") ? { flexMs: peer("flex_attention")!.ms } : {}),
      ...(peer("flex_attention")?.mask_ms ? { flexMaskMs: peer("flex_attention")!.mask_ms! } : {}),
      ...(peer("sdpa") ? { sdpaMs: peer("sdpa")!.ms } : {}),
    };
    rows.push(row);
    console.error(formatDecodeRow(row));
  }
  return rows;
}

/**
 * Repetitions a sample may take: enough for 40 ms samples of the shortest steps (about 0.05
 * ms). With the bench's usual 64, a sample of such a step was 3 ms of work between read-backs,
 * and the H200's clock governor held the SMs near 700 MHz instead of 1980 (nvidia-smi), which
 * made those steps 2.5-3x slower than a GPU kept busy (as a serving loop keeps it, and as
 * FlexAttention's CUDA-graph replays are timed).
 */
export const DECODE_MAX_REPEAT = 1024;

/** Keys per page of the paged rows: vLLM's default block size. */
export const PAGE_SIZE = 16;

/** A decode step with the inputs' K and V cut into pages of PAGE_SIZE keys, the pages shuffled. */
function pagedCall(
  rt: Runtime,
  pattern: Pattern,
  shape: AttentionShape,
  inputs: { q: Float16Array; k: Float16Array; v: Float16Array },
): Promise<AttentionCall> {
  const { nk, d, dv } = sequenceSizes(shape);
  const perBatch = Math.ceil(nk / PAGE_SIZE), pages = shape.batch * perBatch;
  // Page j of the pool holds batch b's columns c where order[b * perBatch + c] = j.
  const order = Array.from({ length: pages }, (_, i) => i);
  let seed = 7;
  for (let i = pages - 1; i > 0; i--) {
    seed = (seed * 1103515245 + 12345) >>> 0;
    const j = seed % (i + 1);
    [order[i], order[j]] = [order[j], order[i]];
  }
  const toPages = (x: Float16Array, width: number) => {
    const out = new Float16Array(pages * shape.headsKV * PAGE_SIZE * width);
    for (let b = 0; b < shape.batch; b++) {
      for (let c = 0; c < perBatch; c++) {
        const page = order[b * perBatch + c];
        for (let h = 0; h < shape.headsKV; h++) {
          const rows = Math.min(PAGE_SIZE, nk - c * PAGE_SIZE);
          const from = ((b * shape.headsKV + h) * nk + c * PAGE_SIZE) * width;
          out.set(
            x.subarray(from, from + rows * width),
            ((page * shape.headsKV + h) * PAGE_SIZE) * width,
          );
        }
      }
    }
    return out;
  };
  const compiled = rt.compile(pattern, {
    shape,
    dtype: "f16",
    paged: { pageSize: PAGE_SIZE, pages },
  });
  return rt.prepare(compiled, {
    q: inputs.q,
    k: toPages(inputs.k, d),
    v: toPages(inputs.v, dv),
    blockTable: Int32Array.from(order),
  });
}

/**
 * A decoding step of the whole batch on a rolling paged cache: the pool holds page 0, shared
 * by every table column whose positions the pattern never allows at the last position, then
 * each sequence's pages of allowed keys. Undefined where that pool exceeds one binding.
 */
async function rollingCall(
  rt: Runtime,
  pattern: Pattern,
  shape: AttentionShape,
  limit: number,
): Promise<{ call: AttentionCall; pages: number } | undefined> {
  const { nk, d, dv } = sequenceSizes(shape);
  const columns = Math.ceil(nk / PAGE_SIZE);
  const held = [...new Set(allowedAtLast(pattern, nk).map((k) => Math.floor(k / PAGE_SIZE)))];
  const pages = 1 + shape.batch * held.length;
  if (pages * shape.headsKV * PAGE_SIZE * Math.max(d, dv) * 2 > limit) return undefined;
  const table = new Int32Array(shape.batch * columns);
  for (let b = 0; b < shape.batch; b++) {
    held.forEach((c, i) => table[b * columns + c] = 1 + b * held.length + i);
  }
  const compiled = rt.compile(pattern, {
    shape,
    dtype: "f16",
    paged: { pageSize: PAGE_SIZE, pages },
  });
  const call = await rt.prepare(compiled, {
    q: fill(shape.batch * shape.headsQ * d, 1),
    k: fill(pages * shape.headsKV * PAGE_SIZE * d, 2),
    v: fill(pages * shape.headsKV * PAGE_SIZE * dv, 3),
    blockTable: table,
  });
  return { call, pages };
}

/**
 * One row as a line of the table.
 * @param r the row
 * @returns the line
 */
export function formatDecodeRow(r: DecodeRow): string {
  const peer = (ms?: number) => ms === undefined ? "-" : ms.toFixed(4);
  const ratio = r.flexMs === undefined ? "-" : (r.flexMs / r.ms).toFixed(2);
  return [
    r.pattern.padEnd(14),
    String(r.nk).padStart(8),
    r.ms.toFixed(4).padStart(9),
    (r.parts > 1 ? `${r.parts} parts` : "").padStart(8),
    String(r.allowedKeys).padStart(8),
    (r.bytesPerSecond / 1e9).toFixed(0).padStart(7),
    (r.bandwidthShare === undefined ? "-" : `${(100 * r.bandwidthShare).toFixed(1)}%`)
      .padStart(7),
    (r.pagedMs === undefined ? "-" : (r.pagedMs / r.ms).toFixed(3)).padStart(7),
    peer(r.flexMs).padStart(9),
    peer(r.sdpaMs).padStart(9),
    ratio.padStart(7),
    peer(r.rollingMs).padStart(9),
  ].join("  ");
}

/** The table's header line. */
export const DECODE_HEADER = [
  "pattern".padEnd(14),
  "Nk".padStart(8),
  "Weft ms".padStart(9),
  "".padStart(8),
  "keys".padStart(8),
  "GB/s".padStart(7),
  "of BW".padStart(7),
  "paged/".padStart(7),
  "Flex ms".padStart(9),
  "SDPA ms".padStart(9),
  "Flex/W".padStart(7),
  "rolling".padStart(9),
].join("  ");
