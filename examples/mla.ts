/**
 * Multi-head latent attention (DeepSeek-V2's MLA) as Weft runs it. MLA caches one compressed
 * latent vector per position (128 values) and one rotary key (64 values), shared by every head.
 * With the up-projections absorbed into the queries and the output, attention runs on the cache
 * directly: a single key/value head (MQA), keys of D = 192 (the latent, then the rotary part),
 * values of Dv = 128 (the latent itself, so V is K's first 128 columns), and every query head's
 * query of 192 values. Each head's 128-wide output is the latent that its own up-projection
 * turns into the head's value, outside attention.
 *
 * The example fills a latent cache for a prompt, runs the prompt (a square causal call), then
 * decodes step by step, appending one position and running one query row per head against every
 * cached key (Nq = 1, Nk growing, Dv != D; the decode kernel on GPUs), under causal attention and
 * under a sparse pattern (a sliding window ∪ a stride). Every call is checked against the
 * float64 reference.
 *
 * Run `deno run -A examples/mla.ts [steps]` (any adapter; each new cache length compiles its
 * kernels, since N is a constant of the WGSL: a few seconds a step on llvmpipe).
 * @module
 */
import { causal, stride, union, window } from "../dsl/builders.ts";
import type { Pattern } from "../dsl/schema.ts";
import { reference } from "../runtime/reference/mod.ts";
import { createRuntime, type Runtime } from "../runtime/runtime.ts";
import { normalTensor } from "../runtime/seeded_random.ts";

/** Values of the compressed latent each position caches (DeepSeek-V2: 512; 128 here). */
export const LATENT = 128;
/** Values of the decoupled rotary key each position caches, shared by every head. */
export const ROPE = 64;
/** Query heads; MLA's cache is one key/value head for all of them. */
export const HEADS_Q = 8;

/** The patterns the example decodes under. */
export const PATTERNS: readonly { name: string; pattern: Pattern }[] = [
  { name: "causal", pattern: causal() },
  { name: "window(32) ∪ stride(16)", pattern: union(window(32, 0), stride(16)) },
];

/** One verified call. */
export interface MlaCall {
  pattern: string;
  /** Query rows per head (the prompt's length, or 1 for a decoding step). */
  queries: number;
  /** Cached positions the queries attend over. */
  keys: number;
  /** max |O - reference| over the call's rows. */
  error: number;
}

/**
 * The MLA cache of `n` positions: K `[1, 1, n, LATENT + ROPE]` (each row the latent, then the
 * rotary key) and V `[1, 1, n, LATENT]`, the latents again.
 * @param latent the latents, `n` rows of LATENT
 * @param rope the rotary keys, `n` rows of ROPE
 * @returns K and V as the kernels take them
 */
export function mlaCache(
  latent: Float32Array,
  rope: Float32Array,
): { k: Float32Array; v: Float32Array } {
  const n = latent.length / LATENT;
  const k = new Float32Array(n * (LATENT + ROPE));
  for (let p = 0; p < n; p++) {
    k.set(latent.subarray(p * LATENT, (p + 1) * LATENT), p * (LATENT + ROPE));
    k.set(rope.subarray(p * ROPE, (p + 1) * ROPE), p * (LATENT + ROPE) + LATENT);
  }
  return { k, v: latent.slice() };
}

/**
 * Runs the prompt and `steps` decoding steps under each pattern, each against the reference.
 * @param rt the runtime
 * @param o the prompt's length and the decoding steps
 * @returns one entry per call
 */
export async function runMla(
  rt: Runtime,
  o: { prompt: number; steps: number },
): Promise<MlaCall[]> {
  const total = o.prompt + o.steps;
  // The cache each position would write: its latent and its rotary key.
  const latent = normalTensor(total * LATENT, 21), rope = normalTensor(total * ROPE, 22);
  const calls: MlaCall[] = [];
  for (const { name, pattern } of PATTERNS) {
    // [queries, keys]: the prompt as one square call, then one query per step.
    const runs = [
      [o.prompt, o.prompt],
      ...Array.from({ length: o.steps }, (_, s) => [1, o.prompt + s + 1]),
    ];
    for (const [queries, keys] of runs) {
      const { k, v } = mlaCache(latent.subarray(0, keys * LATENT), rope.subarray(0, keys * ROPE));
      const shape = {
        batch: 1,
        headsQ: HEADS_Q,
        headsKV: 1,
        seqLen: queries,
        kvSeqLen: keys,
        headDim: LATENT + ROPE,
        valueDim: LATENT,
      };
      // The absorbed queries: each head's latent part and rotary part, for the last positions.
      const q = normalTensor(HEADS_Q * queries * (LATENT + ROPE), 100 + keys);
      const compiled = rt.compile(pattern, { shape });
      const got = await rt.run(compiled, { q, k, v });
      const want = reference({ pattern, shape, q, k, v });
      let error = 0;
      got.o.forEach((x, i) => error = Math.max(error, Math.abs(x - want.o[i])));
      calls.push({ pattern: name, queries, keys, error });
    }
  }
  return calls;
}

if (import.meta.main) {
  const steps = Number(Deno.args[0] ?? 4);
  const rt = await createRuntime({ autotune: false });
  try {
    console.log(
      `MLA: one latent key/value head for ${HEADS_Q} query heads, D = ${LATENT} + ${ROPE} ` +
        `(latent + rotary), Dv = ${LATENT} (the latent), on ${rt.info.description}`,
    );
    let worst = 0;
    for (const c of await runMla(rt, { prompt: 48, steps })) {
      const what = c.queries === 1 ? "decode step" : `prompt of ${c.queries}`;
      console.log(
        `  ${c.pattern.padEnd(24)} ${what.padEnd(14)} ${c.keys} keys: max |O - ref| ${c.error}`,
      );
      worst = Math.max(worst, c.error);
    }
    console.log(`max abs error vs float64 reference: ${worst}`);
    if (!(worst <= 1e-4)) Deno.exit(1);
  } finally {
    rt.destroy();
  }
}
