/**
 * Tensors larger than one storage binding run in parts. Heads are independent, and every
 * tensor is laid out `[B, H, ...]`, so one batch and a group of key/value heads (with their
 * query heads) is one contiguous slice of every input and output. The runtime compiles the
 * pattern once for the part's shape and runs the parts one after another, freeing each part's
 * buffers before the next: GPU memory is one part's, O(part · N · D), never O(N²).
 * @module
 */
import type { AttentionShape, CompiledAttention, Dtype } from "../compiler/mod.ts";
import { sequenceSizes } from "../core/shape.ts";
import { DeviceError } from "../core/errors.ts";
import { linearChunk } from "../compiler/kernel_rules.ts";
import { linearSlots } from "../compiler/plan_linear.ts";
import type { AttentionInputs, AttentionOutputs } from "./attention_call.ts";
import type { HashCodes } from "../dsl/hash_bucket.ts";
import type { SelectedBlocks } from "./reference/selection.ts";

/** How a call is cut: `kvHeads` key/value heads (and their query heads) of one batch per part. */
export interface Split {
  /** The caller's shape. */
  full: AttentionShape;
  /** The shape each part is compiled for: batch 1, `kvHeads` kv heads. */
  part: AttentionShape;
  kvHeads: number;
}

/**
 * The largest storage binding a call at this shape needs, in bytes.
 * @param shape the sizes
 * @param dtype element type of Q, K, V
 * @param branches softmax branches (gated patterns keep one O per branch)
 * @param linearFeatures the most features of a linear branch (0 without one)
 * @returns the biggest single buffer
 * @example
 * ```ts
 * import { largestBinding } from "./split_run.ts";
 * largestBinding({ batch: 1, headsQ: 8, headsKV: 8, seqLen: 1024, headDim: 64 }, "f32", 1); // 2097152
 * ```
 */
export function largestBinding(
  shape: AttentionShape,
  dtype: Dtype,
  branches: number,
  linearFeatures = 0,
): number {
  const { batch, headsQ, headsKV } = shape;
  const { nq, nk, d, dv } = sequenceSizes(shape);
  const rows = batch * headsQ * nq;
  const element = dtype === "f16" ? 2 : 4;
  // A linear branch's φ of every Q and K row, and its chunks' sums per key/value head.
  const chunks = linearSlots(Math.ceil(nk / linearChunk(headsQ / headsKV)));
  return Math.max(
    (rows + batch * headsKV * nk) * linearFeatures * 4,
    batch * headsKV * chunks * linearFeatures * (dv + 1) * 4,
    rows * Math.max(d, dv) * 4, // float32 O (and q in f32)
    batch * headsKV * nk * Math.max(d, dv) * element,
    branches > 1 ? rows * dv * 4 * branches : 0,
    rows * branches * 4,
  );
}

/**
 * Chooses the parts for a shape whose tensors (and linear branches' sums, of `linearFeatures`
 * features at most) exceed `limit` bytes per binding: as many key/value
 * heads per part as fit (a divisor of Hkv, so every part has the same shape), one batch per part.
 * @returns the split, or undefined when the whole call fits
 * @throws {DeviceError} when even one key/value head of one batch does not fit
 */
export function chooseSplit(
  shape: AttentionShape,
  dtype: Dtype,
  branches: number,
  limit: number,
  linearFeatures = 0,
): Split | undefined {
  const bytes = (s: AttentionShape) => largestBinding(s, dtype, branches, linearFeatures);
  if (bytes(shape) <= limit) return undefined;
  const group = shape.headsQ / shape.headsKV;
  for (let kvHeads = shape.headsKV; kvHeads >= 1; kvHeads--) {
    if (shape.headsKV % kvHeads !== 0) continue;
    const part = { ...shape, batch: 1, headsKV: kvHeads, headsQ: kvHeads * group };
    if (bytes(part) <= limit) return { full: shape, part, kvHeads };
  }
  const one = { ...shape, batch: 1, headsKV: 1, headsQ: group };
  throw new DeviceError(
    `Cannot run at this shape: one batch of one key/value head (${group} query heads) at ` +
      `N=${sequenceSizes(shape).nk}, D=${shape.headDim} needs a ${bytes(one)}-byte ` +
      `buffer, over maxStorageBufferBindingSize (${limit}); use a shorter sequence`,
  );
}

/** What running in parts returns: the outputs, summed GPU time, and one part's buffer bytes. */
export type SplitOutputs = AttentionOutputs & { gpuMs?: number; peakBufferBytes: number };

/**
 * Runs every part and assembles the outputs in the full shape's layout.
 *
 * @param compiled compiled for `split.part`
 * @param split the parts
 * @param inputs the full-shape inputs (already checked)
 * @param runPart runs one part and reports its outputs, time and buffer bytes
 * @returns full O and LSE, the summed GPU time, the largest part's buffer bytes
 */
export async function runSplit(
  compiled: CompiledAttention,
  split: Split,
  inputs: AttentionInputs,
  runPart: (
    inputs: AttentionInputs,
  ) => Promise<AttentionOutputs & { gpuMs?: number; bufferBytes: number }>,
): Promise<SplitOutputs> {
  const { batch: B, headsQ: Hq, headsKV: Hkv } = split.full;
  // N: query rows; Nk: key and value rows; D: Q's and K's head dim; Dv: V's and O's.
  const { nq: N, nk: Nk, d: D, dv: Dv } = sequenceSizes(split.full);
  const group = Hq / Hkv, partQ = split.kvHeads * group;
  const branches = compiled.branches;
  const gateCount = inputs.gates ? inputs.gates.length / (B * Hq) : 0; // per head: branches or N·branches
  const half = compiled.dtype === "f16";
  const o = half ? new Float16Array(B * Hq * N * Dv) : new Float32Array(B * Hq * N * Dv);
  const lse = new Float32Array(branches * B * Hq * N);
  let gpuMs: number | undefined = 0, peakBufferBytes = 0;
  const hashCodes: HashCodes = new Map();
  const selectedBlocks: SelectedBlocks[] = [];
  for (let b = 0; b < B; b++) {
    for (let kv0 = 0; kv0 < Hkv; kv0 += split.kvHeads) {
      const h0 = b * Hq + kv0 * group; // first query row-block of this part
      const k0 = b * Hkv + kv0;
      const out = await runPart({
        q: inputs.q.subarray(h0 * N * D, (h0 + partQ) * N * D),
        k: inputs.k.subarray(k0 * Nk * D, (k0 + split.kvHeads) * Nk * D),
        v: inputs.v.subarray(k0 * Nk * Dv, (k0 + split.kvHeads) * Nk * Dv),
        gates: inputs.gates?.subarray(h0 * gateCount, (h0 + partQ) * gateCount),
        // Packed sequences split the rows, the same in every head.
        seqLens: inputs.seqLens,
        kvSeqLens: inputs.kvSeqLens,
      });
      o.set(out.o as typeof o, h0 * N * Dv);
      // LSE is [B, Hq, N], or [branches, B, Hq, N] when gated: place each branch's slice.
      for (let i = 0; i < (compiled.gated ? branches : 1); i++) {
        lse.set(
          out.lse.subarray(i * partQ * N, (i + 1) * partQ * N),
          ((i * B + b) * Hq + kv0 * group) * N,
        );
      }
      // Kept blocks are [B, Hkv, N, blocks]: this part's heads are one slice.
      for (const part of out.selectedBlocks ?? []) {
        let full = selectedBlocks.find((s) => s.branch === part.branch);
        if (!full) {
          const chosen = new Int32Array(B * Hkv * Nk * part.blocks);
          selectedBlocks.push(full = { branch: part.branch, blocks: part.blocks, chosen });
        }
        full.chosen.set(part.chosen, k0 * Nk * part.blocks);
      }
      // Codes are [rounds][B][Hq][N] and [rounds][B][Hkv][Nk]: each round's rows of this part
      // go to their heads.
      for (const [key, part] of out.hashCodes ?? []) {
        let full = hashCodes.get(key);
        if (!full) {
          const r = part.rounds;
          full = {
            rounds: r,
            q: new Uint32Array(r * B * Hq * N),
            k: new Uint32Array(r * B * Hkv * Nk),
          };
          hashCodes.set(key, full);
        }
        for (let t = 0; t < part.rounds; t++) {
          full.q.set(
            part.q.subarray(t * partQ * N, (t + 1) * partQ * N),
            (t * B * Hq + h0) * N,
          );
          full.k.set(
            part.k.subarray(t * split.kvHeads * Nk, (t + 1) * split.kvHeads * Nk),
            (t * B * Hkv + k0) * Nk,
          );
        }
      }
      gpuMs = out.gpuMs === undefined || gpuMs === undefined ? undefined : gpuMs + out.gpuMs;
      peakBufferBytes = Math.max(peakBufferBytes, out.bufferBytes);
    }
  }
  return {
    o,
    lse,
    gpuMs,
    peakBufferBytes,
    ...(hashCodes.size ? { hashCodes } : {}),
    ...(selectedBlocks.length ? { selectedBlocks } : {}),
  };
}
