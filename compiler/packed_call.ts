/**
 * What one call of a pattern compiled for packed sequences reads besides its tensors, rebuilt
 * for each call's lengths: the `schedule` words of every component's packed BlockMask
 * (packed_mask.ts), packed as compile packed them (same slots, fused groups and query tiles),
 * the `gradSchedule` words of a backward pass (those masks' rows and their transposes), and the
 * `sequences` words the kernels find each query row's sequence in. The kernels' WGSL names
 * neither lengths nor offsets, so new lengths run on the compiled pipelines.
 * @module
 */
import { assert } from "../core/errors.ts";
import type { Sequence } from "../core/packed_sequences.ts";
import type { CompiledAttention } from "./compile.ts";
import type { AttentionKernel } from "./kernel_plan.ts";
import { packedBlockMask } from "./packed_mask.ts";
import { checkPackedLengths } from "./packed_patterns.ts";
import type { Plan } from "./plan.ts";
import { packSchedules } from "./schedule_buffer.ts";
import { gradientSchedule } from "./plan_gradients.ts";

/** The per-call words of a packed call, in the buffers the kernels bind them as. */
export interface PackedCallData {
  /** The `schedule` buffer: every component's BlockMask for these lengths. */
  schedule: Uint32Array;
  /** The `gradSchedule` buffer of a call compiled with `backward` (else empty). */
  gradSchedule: Uint32Array;
  /** The `sequences` buffer (`sequenceWords`). */
  sequences: Uint32Array;
}

/**
 * The plan with every component's BlockMask built for these sequences.
 * @param plan a plan made with `packed` (every component in natural order)
 * @param sequences the call's sequences
 * @param shape the call's query rows, batch and query heads
 * @returns a plan of the same components with packed masks
 * @example
 * ```ts
 * import { planPattern } from "./plan.ts";
 * import { packedPlan } from "./packed_call.ts";
 * const plan = planPattern({ kind: "causal" }, 16, { tileQ: 8, tileK: 8 }, { packed: true });
 * const sequences = [{ qStart: 0, qLen: 16, kStart: 0, kLen: 16, offset: 0 }];
 * const shape = { batch: 1, headsQ: 1, seqLen: 16 };
 * Array.from(packedPlan(plan, sequences, shape).branches[0].components[0].mask.offsets); // [0, 1, 3]
 * ```
 */
export function packedPlan(
  plan: Plan,
  sequences: readonly Sequence[],
  shape: { batch: number; headsQ: number; seqLen: number },
): Plan {
  assert(plan.packed === true, "a packed schedule of a plan not made for packed sequences");
  const options = {
    sequences,
    nq: shape.seqLen,
    nk: plan.n,
    ...plan.tiles,
    random: plan.random,
    domain: { batch: shape.batch, headsQ: shape.headsQ },
  };
  return {
    ...plan,
    branches: plan.branches.map((b) => ({
      ...b,
      components: b.components.map((c) => ({ ...c, mask: packedBlockMask(c, options) })),
    })),
  };
}

/**
 * The schedule and sequences words of one packed call, after checking its lengths against the
 * pattern (global tokens, expressions at each key count).
 * @param compiled a pattern compiled with `packed`
 * @param sequences the call's sequences (`packedSequences`, checked against the shape)
 * @returns the words of the `schedule`, `gradSchedule` and `sequences` buffers
 * @throws {PlanError} a global token past a sequence's keys, or an expression that leaves i32
 *   at a sequence's key count
 * @example
 * ```ts
 * import { compile } from "./compile.ts";
 * import { packedCallData } from "./packed_call.ts";
 * import { packedSequences } from "../core/packed_sequences.ts";
 * const shape = { batch: 1, headsQ: 2, headsKV: 2, seqLen: 40, headDim: 16 };
 * const compiled = compile({ kind: "causal" }, { shape, packed: true });
 * const data = packedCallData(compiled, packedSequences(shape, [7, 30, 3]));
 * Array.from(data.sequences); // [3, 0, 7, 37, 40, 0, 7, 37, 40]
 * ```
 */
export function packedCallData(
  compiled: CompiledAttention,
  sequences: readonly Sequence[],
): PackedCallData {
  const { plan, shape } = compiled;
  checkPackedLengths(plan.pattern, sequences, shape);
  const packed = packedPlan(plan, sequences, shape);
  // Each attention kernel walks one group of its branch's components (run fusion) and, where
  // the queries are fewer than the keys, lists its query tiles: pack as compile did.
  const kernels = compiled.kernelPlan.kernels.filter((k): k is AttentionKernel =>
    k.kind === "attention"
  );
  const groups = plan.branches.map((_, b) =>
    kernels.filter((k) => k.branch === b).map((k) => k.members)
  );
  // A group's rows are its first member's (packSchedules reads no other member's list).
  const queryTiles = plan.queries
    ? plan.branches.map((b, i) => {
      const tiles: number[][] = [];
      for (const k of kernels) if (k.branch === i) tiles[k.members[0]] = k.queryTiles!;
      return b.components.map((_, j) => tiles[j] ?? []);
    })
    : undefined;
  const { words, slots } = packSchedules(
    packed,
    shape.headDim,
    undefined,
    groups,
    undefined,
    queryTiles,
  );
  for (const k of kernels) {
    assert(slots[k.branch][k.members[0]] === k.scheduleSlot, "packed schedule slots moved");
  }
  const gradSchedule = compiled.backward ? gradientSchedule(packed) : new Uint32Array(0);
  return { schedule: words, gradSchedule, sequences: sequenceWords(sequences) };
}

/**
 * The `sequences` buffer: the count S, then each sequence's first query row and one past the
 * last (S + 1 words), then its first key row and one past the last (S + 1 words). A kernel
 * finds a query row's sequence by binary search over the first list; the second gives its keys.
 * @param sequences the call's sequences
 * @returns `[S, qStart_0 .. qStart_S, kStart_0 .. kStart_S]`
 * @example
 * ```ts
 * import { sequenceWords } from "./packed_call.ts";
 * const one = { qStart: 0, qLen: 2, kStart: 0, kLen: 5, offset: 3 };
 * Array.from(sequenceWords([one])); // [1, 0, 2, 0, 5]
 * ```
 */
export function sequenceWords(sequences: readonly Sequence[]): Uint32Array {
  const count = sequences.length;
  const words = new Uint32Array(3 + 2 * count);
  words[0] = count;
  sequences.forEach((s, i) => {
    words[1 + i] = s.qStart;
    words[2 + count + i] = s.kStart;
  });
  const last = sequences[count - 1];
  words[1 + count] = last.qStart + last.qLen;
  words[2 + 2 * count] = last.kStart + last.kLen;
  return words;
}
