/**
 * The decode bench's packed-batch row: 8 causal sequences of unequal lengths summing to 65536,
 * packed end to end in one call (B = 1, H = 8, D = 64, float16), against the same sequences run
 * one by one, and against dense attention at N = 65536 for its efficiency: dense time × the
 * allowed fraction / packed time. A second set of lengths then runs on the same compiled
 * pattern, and the row says how many pipelines it created (none: the lengths are data).
 * @module
 */
import type { Runtime } from "../runtime/runtime.ts";
import { normalTensor } from "../runtime/seeded_random.ts";
import { median, sustainedGpuTimes } from "./measure.ts";
import type { AttentionInputs } from "../runtime/attention_call.ts";
import type { CompiledAttention } from "../compiler/mod.ts";

/** The packed sequences' lengths: unequal, not multiples of a tile, summing to 65536. */
export const PACKED_LENGTHS = [16000, 12345, 9300, 8111, 7000, 6200, 4500, 2080];

/** Another set of lengths with the same sum: it must run on the same pipelines. */
export const OTHER_LENGTHS = [30000, 20000, 10000, 5536];

/** The packed-batch row. */
export interface PackedRow {
  lengths: number[];
  /** Median GPU ms of the packed call. */
  packedMs: number;
  /** Sum over the sequences of each one's median GPU ms run alone. */
  oneByOneMs: number;
  /** Dense attention at N = 65536 on the same heads, median GPU ms. */
  denseMs: number;
  /** Allowed pairs over N²: Σ L(L+1)/2 / 65536². */
  allowedFraction: number;
  /** denseMs × allowedFraction / packedMs. */
  efficiency: number;
  /** Pipelines the second set of lengths created (0: all cache hits). */
  newPipelines: number;
}

const HEADS = 8, HEAD_DIM = 64, N = 65536;

/** Seeded float16 Q, K, V of `rows` rows per head. */
function inputsOf(rows: number): AttentionInputs {
  const x = (seed: number) => Float16Array.from(normalTensor(HEADS * rows * HEAD_DIM, seed));
  return { q: x(1), k: x(2), v: x(3) };
}

/** Median sustained GPU ms of one prepared call. */
async function timeCall(
  rt: Runtime,
  compiled: CompiledAttention,
  inputs: AttentionInputs,
  o: { reps: number; warmup: number },
): Promise<number> {
  const call = await rt.prepare(compiled, inputs);
  try {
    return median(await sustainedGpuTimes(call, o.reps, o.warmup));
  } finally {
    call.destroy();
  }
}

/**
 * Measures the packed-batch row.
 * @param rt the runtime (a GPU with timestamps)
 * @param o samples and warm-up per timing
 * @returns the row
 */
export async function packedBatchRow(
  rt: Runtime,
  o: { reps: number; warmup: number },
): Promise<PackedRow> {
  const shape = (n: number) => ({
    batch: 1,
    headsQ: HEADS,
    headsKV: HEADS,
    seqLen: n,
    headDim: HEAD_DIM,
  });
  const inputs = inputsOf(N);
  const packed = rt.compile({ kind: "causal" }, { shape: shape(N), dtype: "f16", packed: true });
  const packedMs = await timeCall(rt, packed, { ...inputs, seqLens: PACKED_LENGTHS }, o);
  const misses = rt.pipelines.misses;
  await timeCall(rt, packed, { ...inputs, seqLens: OTHER_LENGTHS }, { reps: 1, warmup: 1 });
  const newPipelines = rt.pipelines.misses - misses;
  let oneByOneMs = 0;
  for (const n of PACKED_LENGTHS) {
    const compiled = rt.compile({ kind: "causal" }, { shape: shape(n), dtype: "f16" });
    oneByOneMs += await timeCall(rt, compiled, inputsOf(n), o);
  }
  const dense = rt.compile({ kind: "dense" }, { shape: shape(N), dtype: "f16" });
  const denseMs = await timeCall(rt, dense, inputs, o);
  const allowed = PACKED_LENGTHS.reduce((sum, l) => sum + l * (l + 1) / 2, 0);
  const allowedFraction = allowed / (N * N);
  return {
    lengths: PACKED_LENGTHS,
    packedMs,
    oneByOneMs,
    denseMs,
    allowedFraction,
    efficiency: denseMs * allowedFraction / packedMs,
    newPipelines,
  };
}

/**
 * The row as text.
 * @param r the row
 * @returns one line
 */
export function formatPackedRow(r: PackedRow): string {
  return `packed batch: 8 causal sequences summing to ${N} (B=1 H=${HEADS} D=${HEAD_DIM} f16): ` +
    `packed ${r.packedMs.toFixed(3)} ms, one by one ${r.oneByOneMs.toFixed(3)} ms ` +
    `(${(r.oneByOneMs / r.packedMs).toFixed(2)}x), dense ${r.denseMs.toFixed(2)} ms x allowed ` +
    `${r.allowedFraction.toFixed(4)} / packed = efficiency ${r.efficiency.toFixed(3)}; ` +
    `other lengths created ${r.newPipelines} pipeline(s)`;
}
