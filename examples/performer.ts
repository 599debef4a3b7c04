/**
 * Performer (Choromanski et al., 2021): attention as linear attention over FAVOR+ positive
 * random features, `φ(x) = exp(W x' - |x'|²/2) / sqrt(m)`, whose dot products estimate the
 * softmax kernel `exp(scale q·k)` without forming the N×N scores; causal here, as a decoder
 * uses it, so time grows linearly with N. `hybrid` blends it with a sliding window of exact
 * softmax attention per head, as hybrid models pair a local softmax with a linear global path.
 *
 * Run `deno run -A examples/performer.ts` to check both on the GPU against the float64
 * reference.
 * @module
 */
import { gated, linear, window } from "../dsl/builders.ts";
import { EXIT_FAILURE, runMain } from "../cli/_common.ts";
import { TOLERANCE, verifyExample } from "./_verify.ts";

/** Random features per row (m). */
export const FEATURES = 64;
/** Keys before each query in the hybrid's softmax window. */
export const WINDOW = 64;

/** One line: the paper and what the pattern keeps. */
export const description =
  `Performer: causal linear attention over ${FEATURES} FAVOR+ random features`;

/** `linear({ featureMap: "favor", features: 64, seed: 0, causal: true })`. */
export const pattern = linear({ featureMap: "favor", features: FEATURES, seed: 0, causal: true });

/** A window of softmax attention and the Performer path, half each. */
export const hybrid = gated([window(WINDOW, 0), pattern], [0.5, 0.5]);

if (import.meta.main) {
  await runMain(async () => {
    const shape = { batch: 1, headsQ: 2, headsKV: 2, seqLen: 256, headDim: 64 };
    let ok = true;
    for (const [name, p] of [["performer", pattern], ["window + performer", hybrid]] as const) {
      const { errorO, errorLse } = await verifyExample({ name, pattern: p, shape });
      ok &&= errorO <= TOLERANCE && errorLse <= TOLERANCE;
    }
    console.log(ok ? `ok (tolerance ${TOLERANCE})` : `FAILED: above tolerance ${TOLERANCE}`);
    return ok ? 0 : EXIT_FAILURE;
  });
}
