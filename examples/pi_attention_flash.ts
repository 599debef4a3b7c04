/**
 * seed 000's `PiAttentionFlash` (section 3.2), computed exactly: a causal local window (the
 * seed's FlashAttention call with `window_size=(w, w), causal=True`) and a down-sampled-keys
 * branch, fused 0.5/0.5. The seed down-samples K and V by taking every P-th row, attends those,
 * and interpolates the output back to N; here the down-sampled keys are the means of P-row
 * segments (`lowRank(ceil(N / P))`) and every query attends them exactly, so nothing is
 * interpolated and the kernel and its float64 reference agree.
 *
 * Run `deno run -A examples/pi_attention_flash.ts` to check it on the GPU against the float64
 * reference.
 * @module
 */
import { causal, gated, intersect, lowRank, window } from "../dsl/builders.ts";
import { mainExample } from "./_verify.ts";

/** The seed's window (its `window_size`). */
export const WINDOW = 512;
/** The seed's π: one down-sampled key per this many tokens. */
export const PI = 16;

/** One line: the paper and what the pattern keeps. */
export const description =
  `PiAttentionFlash (seed 000 §3.2), exact: 0.5 causal window(${WINDOW}) + 0.5 lowRank(N/${PI})`;

/** The pattern at sequence length `n` (the landmark count follows N). */
export function piFlashPattern(n: number) {
  return gated(
    [intersect(window(WINDOW, WINDOW), causal()), lowRank(Math.ceil(n / PI))],
    [0.5, 0.5],
  );
}

/** At N = 4096. */
export const pattern = piFlashPattern(4096);

if (import.meta.main) {
  const shape = { batch: 1, headsQ: 2, headsKV: 2, seqLen: 1024, headDim: 64 };
  await mainExample({ name: "pi_attention_flash", pattern: piFlashPattern(shape.seqLen), shape });
}
