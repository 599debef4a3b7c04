/**
 * `deno task bench --decode`: one decoding step against a KV cache. B = 4, Hq = 32, Hkv = 8
 * (a Llama-style GQA cache), D = 128, float16, one query row per head at the last position,
 * Nk in {16384, 131072, 1048576}; dense, window(4096) and ring(128) ∪ stride(64). Each row has
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
import type { Runtime } from "../runtime/runtime.ts";
import { normalTensor } from "../runtime/seeded_random.ts";
import { isSoftwareAdapter, median, sustainedGpuTimes } from "./measure.ts";

/** The decode suite: name and pattern. */
export const DECODE_SUITE: readonly { name: string; pattern: Pattern }[] = [
  { name: "dense", pattern: { kind: "dense" } },
  { name: "window4096", pattern: { kind: "window", left: 4096, right: 4096 } },
  {
    name: "ring+stride64",
    pattern: {
      kind: "union",
      of: [{ kind: "ring", radius: 128 }, { kind: "stride", period: 64 }],
    },
  },
];

/** The cache shape of the decode bench at Nk keys. */
export function decodeShape(nk: number, batch = 4): AttentionShape {
  return { batch, headsQ: 32, headsKV: 8, seqLen: 1, kvSeqLen: nk, headDim: 128 };
}

/** NVIDIA H200's HBM3e bandwidth (its data sheet), bytes per second. */
export const H200_BYTES_PER_SECOND = 4.8e12;

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
  /** bytesPerSecond over the H200's bandwidth. */
  bandwidthShare: number;
  /** Timestamp samples, ms per step of one part. */
  samples: number[];
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
  const allowed = allowedMask(pattern, nk);
  let count = 0;
  for (let k = 0; k < nk; k++) if (allowed(nk - 1, k)) count++;
  return count;
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
  const limit = rt.device.limits.maxStorageBufferBindingSize;
  for (const nk of o.nks) {
    const full = decodeShape(nk);
    const kvBytesPerBatch = full.headsKV * nk * full.headDim * 2;
    const parts = kvBytesPerBatch * full.batch <= limit ? 1 : full.batch;
    const shape = parts === 1 ? full : decodeShape(nk, 1);
    const { d, dv } = sequenceSizes(shape);
    const inputs = {
      q: fill(shape.batch * shape.headsQ * d, 1),
      k: fill(shape.batch * shape.headsKV * nk * d, 2),
      v: fill(shape.batch * shape.headsKV * nk * dv, 3),
    };
    for (const entry of suite) {
      const compiled = rt.compile(entry.pattern, { shape, dtype: "f16" });
      const call = await rt.prepare(compiled, inputs);
      let samples: number[];
      try {
        samples = await sustainedGpuTimes(call, o.reps, o.warmup);
      } finally {
        call.destroy();
      }
      const ms = median(samples) * parts;
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
        bandwidthShare: bytesPerSecond / H200_BYTES_PER_SECOND,
        samples,
        ...(peer("flex_attention") ? { flexMs: peer("flex_attention")!.ms } : {}),
        ...(peer("flex_attention")?.mask_ms
          ? { flexMaskMs: peer("flex_attention")!.mask_ms! }
          : {}),
        ...(peer("sdpa") ? { sdpaMs: peer("sdpa")!.ms } : {}),
      };
      rows.push(row);
      console.error(formatDecodeRow(row));
    }
  }
  return rows;
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
    `${(100 * r.bandwidthShare).toFixed(1)}%`.padStart(7),
    peer(r.flexMs).padStart(9),
    peer(r.sdpaMs).padStart(9),
    ratio.padStart(7),
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
  "Flex ms".padStart(9),
  "SDPA ms".padStart(9),
  "Flex/W".padStart(7),
].join("  ");
